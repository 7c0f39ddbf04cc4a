//! A DaemonSet: it controls its pods directly.

use super::cache::WorkloadCache;
use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::{ConsumerKind, Touched, typed};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave, WorkloadKind};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct DaemonSets;

impl ConsumerKind for DaemonSets {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::DaemonSet
    }

    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        let api = typed::api::<DaemonSet>(client, namespace.as_deref());
        futures::future::ready(Some(typed::watch(api, cache, self.kind(), cache_daemonset))).boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        typed::list::<DaemonSet>(client, namespace, selector, cache_daemonset).boxed()
    }

    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        typed::patch::<DaemonSet>(client, patch).boxed()
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        _pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        (controller.kind == "DaemonSet").then(|| controller.name.clone())
    }
}

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
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
        batch: None,
    }
}
