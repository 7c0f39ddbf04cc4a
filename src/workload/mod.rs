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

use crate::model::consumer::{ConsumerPatch, WorkloadKind, Writer};
use cache::WorkloadCache;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
pub use rollout::rollout_resource;
use std::collections::BTreeMap;
use std::sync::Arc;
pub use template::CachedWorkload;

/// The field manager of repoints (variables and the rotation stamp) on consumers before each
/// StreamingToken had its own ([`consumers_manager`]): the first repoint by the StreamingToken a
/// consumer's label names releases what it still owns ([`legacy_managers`]).
pub const CONSUMERS_MANAGER: &str = "streamingtoken.io/consumers";
/// Restarts apply only the template annotation and label. A field manager of their own: under
/// server-side apply, an apply that omits a field its manager owned removes it, so a restart
/// applied by the repointing manager would strip the environment variable it had set. Like
/// [`CONSUMERS_MANAGER`], the name shared by every StreamingToken before [`restarts_manager`].
pub const RESTARTS_MANAGER: &str = "streamingtoken.io/restarts";

/// The longest field manager name the API server accepts.
const MANAGER_MAX: usize = 128;

/// The field manager of `writer`'s repoints on consumers in `namespace`:
/// `streamingtoken.io/consumers.<namespace>.<name>` (a ClusterStreamingToken's:
/// `streamingtoken.io/cluster-consumers.<name>`). One per StreamingToken, so that an apply by
/// one never removes a variable another set (an apply that omits a field its manager owned
/// removes it). Cut and hashed when longer than 128 characters.
pub fn consumers_manager(writer: &Writer, namespace: &str) -> String {
    per_token(CONSUMERS_MANAGER, writer, namespace)
}

/// The field manager of `writer`'s restarts (its stamp only), as [`consumers_manager`].
pub fn restarts_manager(writer: &Writer, namespace: &str) -> String {
    per_token(RESTARTS_MANAGER, writer, namespace)
}

fn per_token(shared: &str, writer: &Writer, namespace: &str) -> String {
    let name = if writer.cluster {
        format!("{}.{}", shared.replacen('/', "/cluster-", 1), writer.name)
    } else {
        // A namespace holds no dot, so `<namespace>.<name>` names one StreamingToken.
        format!("{shared}.{namespace}.{}", writer.name)
    };
    crate::model::consumer::bounded_name(&name, MANAGER_MAX)
}

/// The shared managers of earlier versions whose fields `patch` takes over, once, and releases
/// (an apply with nothing by that manager): only by the StreamingToken the consumer's label
/// names (the one they wrote for); the repointing manager only by a repoint (which applies the
/// same variables again, so releasing removes nothing still wanted).
pub fn legacy_managers(patch: &ConsumerPatch) -> &'static [&'static str] {
    match (patch.by_label_token(), patch.repoint.is_some()) {
        (false, _) => &[],
        (true, true) => &[CONSUMERS_MANAGER, RESTARTS_MANAGER],
        (true, false) => &[RESTARTS_MANAGER],
    }
}

/// A labelled workload a watch saw change: enough to wake the StreamingToken it names.
#[derive(Debug, Clone)]
pub struct Touched {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Every StreamingToken it reads (its label's and its `streamingtoken.io/tokens`).
    pub tokens: Vec<String>,
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
fn manager_of(patch: &ConsumerPatch) -> String {
    if patch.repoint.is_some() {
        consumers_manager(&patch.writer, &patch.namespace)
    } else {
        restarts_manager(&patch.writer, &patch.namespace)
    }
}

/// After `patch` was applied (the object now `managed`): releases the shared managers of
/// earlier versions that still own fields there ([`legacy_managers`]), with an apply of
/// nothing by each. What the new manager applied too stays (now its alone); what only the old
/// one owned goes, as if the new manager had always applied it. `apply_empty` writes the empty
/// apply for one manager.
pub async fn release_legacy<F, Fut>(
    patch: &ConsumerPatch,
    managed: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
    apply_empty: F,
) -> Result<(), kube::Error>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    for legacy in legacy_managers(patch) {
        let owns = managed.iter().any(|entry| {
            // Only an apply's ownership is released by an apply.
            entry.manager.as_deref() == Some(*legacy)
                && entry
                    .operation
                    .as_deref()
                    .is_some_and(|operation| operation.eq_ignore_ascii_case("apply"))
        });
        if owns {
            apply_empty(legacy).await?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::consumer::WorkloadKind;

    #[test]
    fn each_token_applies_with_managers_of_its_own() {
        let telemetry = Writer::namespaced("telemetry");
        let fleet = Writer {
            cluster: true,
            name: "prod.telemetry".into(),
        };
        assert_eq!(
            consumers_manager(&telemetry, "prod"),
            "streamingtoken.io/consumers.prod.telemetry"
        );
        assert_eq!(
            restarts_manager(&telemetry, "prod"),
            "streamingtoken.io/restarts.prod.telemetry"
        );
        assert_eq!(
            consumers_manager(&fleet, "prod"),
            "streamingtoken.io/cluster-consumers.prod.telemetry"
        );
        let long = |suffix: &str| Writer::namespaced(&format!("{}{suffix}", "n".repeat(240)));
        let (a, b) = (
            consumers_manager(&long("a"), "prod"),
            consumers_manager(&long("b"), "prod"),
        );
        assert!(a.len() <= 128 && b.len() <= 128, "{a} {b}");
        assert_ne!(a, b, "cut names stay apart");
    }

    #[test]
    fn only_the_label_token_releases_the_shared_managers_of_earlier_versions() {
        let patch = |stamp_key: &str, repoint: bool| ConsumerPatch {
            kind: WorkloadKind::Deployment,
            namespace: "prod".into(),
            name: "api".into(),
            rotation_id: "r1".into(),
            stamp_key: stamp_key.into(),
            token_name: "telemetry".into(),
            writer: Writer::namespaced("telemetry"),
            repoint: repoint.then(|| crate::model::consumer::Repoint {
                containers: vec![],
                secret: "telemetry".into(),
                key: "token2".into(),
            }),
        };
        let other = "rotation.streamingtoken.io/billing";
        assert_eq!(
            legacy_managers(&patch(crate::api::ROTATION_ANNOTATION, true)),
            [CONSUMERS_MANAGER, RESTARTS_MANAGER]
        );
        assert_eq!(
            legacy_managers(&patch(crate::api::ROTATION_ANNOTATION, false)),
            [RESTARTS_MANAGER],
            "a restart does not apply the variables: releasing them would remove them"
        );
        assert!(legacy_managers(&patch(other, true)).is_empty());
    }
}
