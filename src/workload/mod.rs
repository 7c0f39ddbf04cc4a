//! Consumer workloads, one file per kind behind one trait ([`ConsumerKind`]): how a kind is
//! watched into the compact cache ([`cache::WorkloadCache`]), listed for the CLI, patched, and
//! which pods it controls. The controller, [`crate::apply`], [`crate::pods`] and the CLI ask the
//! registry ([`adapter`], [`every`]) and never name a kind.
//!
//! The kinds k8s-openapi types share one adapter ([`typed::Typed`]); a kind file gives what
//! differs. Adding a consumer kind is one file here plus its registration: a line in
//! [`crate::model::consumer`]'s `kinds!` list and an arm in [`adapter`] (which does not compile
//! until the kind is registered); a capability left out of its `impl` does not compile either.
//! What to patch and whether a consumer is verified is decided in [`crate::decide::consumers`].

pub mod cache;
mod cronjob;
mod daemonset;
mod deployment;
mod job;
mod rollout;
mod statefulset;
pub mod template;
mod typed;

use crate::model::consumer::{ConsumerPatch, WorkloadKind};
use cache::WorkloadCache;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
pub use rollout::rollout_resource;
use std::collections::BTreeMap;
use std::sync::Arc;
pub use template::CachedWorkload;

/// The field manager of repoints (variables and the rotation stamp) on consumers.
pub const CONSUMERS_MANAGER: &str = "streamingtoken.io/consumers";
/// Restarts apply only the template annotation and label. A field manager of their own: under
/// server-side apply, an apply that omits a field its manager owned removes it, so a restart
/// applied by the repointing manager would strip the environment variable it had set.
pub const RESTARTS_MANAGER: &str = "streamingtoken.io/restarts";

/// A labelled workload a watch saw change: enough to wake the StreamingToken it names.
#[derive(Debug, Clone)]
pub struct Touched {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything the operator does with one kind of consumer workload.
pub trait ConsumerKind: Sync {
    /// The kind this adapter serves.
    fn kind(&self) -> WorkloadKind;

    /// Starts the watch of this kind's objects labelled `streamingtoken.io/token` in `namespace`
    /// (every namespace when `None`), feeding `cache` (which then waits for its first list).
    /// `None` when the API server does not serve the kind (an optional CRD is not installed).
    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>>;

    /// This kind's objects in `namespace` that match label selector `selector`, in the cache's
    /// compact form (what the CLI shows). Empty when the kind is not served.
    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>>;

    /// Writes `patch` (a repoint or a restart of one object of this kind).
    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;

    /// The object of this kind that controls a pod, read from the pod's controller reference
    /// and labels (a Deployment's pods are controlled by one of its ReplicaSets).
    fn controls(
        &self,
        controller: &OwnerReference,
        pod_labels: &BTreeMap<String, String>,
    ) -> Option<String>;
}

/// The adapter of `kind`: the registry of consumer kinds.
pub fn adapter(kind: WorkloadKind) -> &'static dyn ConsumerKind {
    match kind {
        WorkloadKind::Deployment => &deployment::DEPLOYMENTS,
        WorkloadKind::StatefulSet => &statefulset::STATEFULSETS,
        WorkloadKind::DaemonSet => &daemonset::DAEMONSETS,
        WorkloadKind::Rollout => &rollout::Rollouts,
        WorkloadKind::CronJob => &cronjob::CRONJOBS,
        WorkloadKind::Job => &job::JOBS,
    }
}

/// Every adapter, in [`WorkloadKind::ALL`]'s order.
pub fn every() -> impl Iterator<Item = &'static dyn ConsumerKind> {
    WorkloadKind::ALL.iter().map(|kind| adapter(*kind))
}

/// The field manager a patch is applied with.
fn manager_of(patch: &ConsumerPatch) -> &'static str {
    if patch.repoint.is_some() {
        CONSUMERS_MANAGER
    } else {
        RESTARTS_MANAGER
    }
}

/// Starts every kind's watch; the kinds the API server does not serve are left out.
pub async fn watch_every(
    client: &Client,
    namespace: Option<&str>,
    cache: &Arc<WorkloadCache>,
) -> BoxStream<'static, Touched> {
    let mut streams = Vec::new();
    for adapter in every() {
        let started = adapter
            .watch(client.clone(), namespace.map(str::to_string), cache.clone())
            .await;
        streams.extend(started);
    }
    Box::pin(futures::stream::select_all(streams))
}

/// Every labelled workload of every kind in `namespace` matching `selector`.
pub async fn list_every(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<CachedWorkload>, kube::Error> {
    let mut found = Vec::new();
    for adapter in every() {
        found.extend(adapter.list(client, namespace, selector).await?);
    }
    Ok(found)
}

/// The workload that controls a pod, as people know it: the first kind that claims the pod's
/// controller reference, else the controller itself (a Job, a bare ReplicaSet).
pub fn owner_of(
    controller: &OwnerReference,
    pod_labels: &BTreeMap<String, String>,
) -> crate::model::pod::Owner {
    every()
        .find_map(|adapter| {
            adapter
                .controls(controller, pod_labels)
                .map(|name| crate::model::pod::Owner {
                    kind: adapter.kind().as_str().to_string(),
                    name,
                })
        })
        .unwrap_or_else(|| crate::model::pod::Owner {
            kind: controller.kind.clone(),
            name: controller.name.clone(),
        })
}
