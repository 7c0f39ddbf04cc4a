//! A StatefulSet: it controls its pods directly.

use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::typed::{Controls, Typed, apps_body};
use crate::model::consumer::{ConsumerObservation, Wave, WorkloadKind};
use k8s_openapi::api::apps::v1::StatefulSet;

/// The registry's adapter.
pub static STATEFULSETS: Typed<StatefulSet> = Typed {
    kind: WorkloadKind::StatefulSet,
    convert: cache_statefulset,
    body: Some(apps_body),
    controls: Controls::Directly,
};

/// Caches a StatefulSet.
pub fn cache_statefulset(statefulset: &StatefulSet) -> CachedWorkload {
    cached(
        &statefulset.metadata,
        observe(statefulset),
        &statefulset.spec.template,
    )
}

/// What a StatefulSet says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn observe(statefulset: &StatefulSet) -> ConsumerObservation {
    let spec = statefulset.spec.clone();
    let status = statefulset.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let on_delete_strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        == Some("OnDelete");
    ConsumerObservation {
        kind: WorkloadKind::StatefulSet,
        namespace: statefulset.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(statefulset.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: statefulset.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&statefulset.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy,
        desired: spec.replicas.unwrap_or(1),
        total: status.replicas,
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        template_rotation,
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
        batch: None,
    }
}
