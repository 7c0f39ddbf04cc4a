//! A DaemonSet: it controls its pods directly.

use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::typed::{Controls, Typed, apps_body};
use crate::model::consumer::{ConsumerObservation, Wave, WorkloadKind};
use k8s_openapi::api::apps::v1::DaemonSet;

/// The registry's adapter.
pub static DAEMONSETS: Typed<DaemonSet> = Typed {
    kind: WorkloadKind::DaemonSet,
    convert: cache_daemonset,
    body: Some(apps_body),
    controls: Controls::Directly,
};

/// Caches a DaemonSet.
pub fn cache_daemonset(daemonset: &DaemonSet) -> CachedWorkload {
    cached(
        &daemonset.metadata,
        observe(daemonset),
        &daemonset.spec.template,
    )
}

/// What a DaemonSet says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn observe(daemonset: &DaemonSet) -> ConsumerObservation {
    let spec = daemonset.spec.clone();
    let status = daemonset.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let on_delete_strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        == Some("OnDelete");
    ConsumerObservation {
        kind: WorkloadKind::DaemonSet,
        namespace: daemonset.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(daemonset.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: daemonset.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&daemonset.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy,
        desired: status.desired_number_scheduled,
        total: status.current_number_scheduled,
        updated: status.updated_number_scheduled.unwrap_or(0),
        ready: status.number_ready,
        available: status.number_available.unwrap_or(0),
        template_rotation,
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
        batch: None,
    }
}
