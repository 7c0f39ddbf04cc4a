//! A Deployment: its ReplicaSets are named `<deployment>-<pod-template-hash>`, and each of
//! their pods carries the hash as a label, so a pod's ReplicaSet names its Deployment.

use super::cache::WorkloadCache;
use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::{ConsumerKind, Touched, typed};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave, WorkloadKind};
use crate::model::reason;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label the ReplicaSet controller puts on its pods; a ReplicaSet named `<deployment>-<hash>`
/// belongs to that Deployment.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

pub struct Deployments;

impl ConsumerKind for Deployments {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Deployment
    }

    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        let api = typed::api::<Deployment>(client, namespace.as_deref());
        futures::future::ready(Some(typed::watch(
            api,
            cache,
            self.kind(),
            cache_deployment,
        )))
        .boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        typed::list::<Deployment>(client, namespace, selector, cache_deployment).boxed()
    }

    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        typed::patch::<Deployment>(client, patch).boxed()
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        if controller.kind != "ReplicaSet" {
            return None;
        }
        let hash = pod_labels.get(POD_TEMPLATE_HASH_LABEL)?;
        controller
            .name
            .strip_suffix(&format!("-{hash}"))
            .map(str::to_string)
    }
}

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
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
        batch: None,
    }
}
