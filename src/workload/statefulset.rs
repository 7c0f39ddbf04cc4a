//! A StatefulSet: it controls its pods directly.

use super::cache::WorkloadCache;
use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::{ConsumerKind, Touched, typed};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave, WorkloadKind};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct StatefulSets;

impl ConsumerKind for StatefulSets {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::StatefulSet
    }

    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        let api = typed::api::<StatefulSet>(client, namespace.as_deref());
        futures::future::ready(Some(typed::watch(
            api,
            cache,
            self.kind(),
            cache_statefulset,
        )))
        .boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        typed::list::<StatefulSet>(client, namespace, selector, cache_statefulset).boxed()
    }

    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        typed::patch::<StatefulSet>(client, patch).boxed()
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        _pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        (controller.kind == "StatefulSet").then(|| controller.name.clone())
    }
}

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
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
        batch: None,
    }
}
