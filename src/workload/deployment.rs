//! A Deployment: its ReplicaSets are named `<deployment>-<pod-template-hash>`, and each of
//! their pods carries the hash as a label, so a pod's ReplicaSet names its Deployment.

use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::typed::{Controls, Typed, apps_body};
use crate::model::consumer::{ConsumerObservation, Wave, WorkloadKind};
use crate::model::reason;
use k8s_openapi::api::apps::v1::Deployment;

/// Label the ReplicaSet controller puts on its pods; a ReplicaSet named `<deployment>-<hash>`
/// belongs to that Deployment.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The registry's adapter.
pub static DEPLOYMENTS: Typed<Deployment> = Typed {
    kind: WorkloadKind::Deployment,
    convert: cache_deployment,
    body: Some(apps_body),
    controls: Controls::ThroughReplicaSets(POD_TEMPLATE_HASH_LABEL),
};

/// Caches a Deployment.
pub fn cache_deployment(deployment: &Deployment) -> CachedWorkload {
    cached(
        &deployment.metadata,
        observe(deployment),
        &deployment.spec.template,
    )
}

/// What a Deployment says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn observe(deployment: &Deployment) -> ConsumerObservation {
    let spec = deployment.spec.clone();
    let status = deployment.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let progress_deadline_exceeded = status.conditions.iter().flatten().any(|condition| {
        condition.type_.as_deref() == Some("Progressing")
            && condition.reason.as_deref() == Some(reason::PROGRESS_DEADLINE_EXCEEDED)
    });
    ConsumerObservation {
        kind: WorkloadKind::Deployment,
        namespace: deployment.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(deployment.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: deployment.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&deployment.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: spec.paused.unwrap_or(false),
        progress_deadline_exceeded,
        on_delete_strategy: false,
        desired: spec.replicas.unwrap_or(1),
        total: status.replicas.unwrap_or(0),
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
