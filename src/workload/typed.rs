//! The kinds k8s-openapi types (Deployment, StatefulSet, DaemonSet, CronJob, Job): one adapter,
//! [`Typed`], whose watch, list and server-side apply are shared; each kind's file gives only what
//! differs (how one is read, its apply body, which pods it controls).

use super::cache::WorkloadCache;
use super::template::{self, CachedWorkload};
use super::{ConsumerKind, Touched, manager_of};
use crate::api::TOKEN_LABEL;
use crate::model::consumer::{ConsumerPatch, WorkloadKind};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The labelled objects of one kind, watched: every event feeds the cache, and the objects that
/// changed are yielded (to wake the StreamingToken they name).
pub fn watch<K>(
    api: Api<K>,
    cache: Arc<WorkloadCache>,
    kind: WorkloadKind,
    convert: fn(&K) -> CachedWorkload,
) -> BoxStream<'static, Touched>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    cache.require(kind);
    let config = watcher::Config::default()
        .labels(TOKEN_LABEL)
        .any_semantic();
    lagged(watcher(api, config).default_backoff())
        .inspect(move |event| {
            if let Ok(event) = event {
                cache.apply(kind, event, convert);
            }
        })
        .touched_objects()
        .filter_map(|result| {
            futures::future::ready(result.ok().map(|object| Touched {
                namespace: object.namespace().unwrap_or_default(),
                tokens: crate::model::consumer::tokens_of(
                    object.meta().labels.as_ref(),
                    object.meta().annotations.as_ref(),
                ),
                labels: object.labels().clone(),
            }))
        })
        .boxed()
}

/// The e2e tests' stand-in for a lagging watch (a busy API server, a slow connection): with the
/// `e2e` feature and `STREAMING_TOKEN_OPERATOR_WORKLOAD_WATCH_LAG_MS`, every workload event
/// reaches the cache that long after it arrived. A release build ignores the variable.
fn lagged<S>(stream: S) -> BoxStream<'static, S::Item>
where
    S: futures::Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let lag = cfg!(feature = "e2e")
        .then(|| std::env::var("STREAMING_TOKEN_OPERATOR_WORKLOAD_WATCH_LAG_MS").ok())
        .flatten()
        .and_then(|text| text.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    let Some(lag) = lag else {
        return stream.boxed();
    };
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    tokio::spawn(stream.for_each(move |item| {
        let _ = sender.unbounded_send((tokio::time::Instant::now(), item));
        futures::future::ready(())
    }));
    receiver
        .then(move |(arrived, item)| async move {
            tokio::time::sleep_until(arrived + lag).await;
            item
        })
        .boxed()
}

/// `Api` of a namespaced kind in `namespace`, or in every namespace.
fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        None => Api::all(client),
        Some(namespace) => Api::namespaced(client, namespace),
    }
}

/// The objects of a typed kind in `namespace` matching `selector`, cached.
async fn list<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    convert: fn(&K) -> CachedWorkload,
) -> Result<Vec<CachedWorkload>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let objects = Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?;
    Ok(objects.iter().map(convert).collect())
}

/// Server-side apply of `body`, the fields the operator owns.
async fn apply<K>(client: &Client, patch: &ConsumerPatch, body: Value) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let params = PatchParams::apply(&manager_of(patch)).force();
    let api = Api::<K>::namespaced(client.clone(), &patch.namespace);
    let empty = serde_json::json!({
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": patch.name},
    });
    let applied = api.patch(&patch.name, &params, &Patch::Apply(body)).await?;
    let managed = applied.meta().managed_fields.clone().unwrap_or_default();
    super::release_legacy(patch, &managed, |legacy| {
        let (api, empty) = (api.clone(), empty.clone());
        async move {
            api.patch(
                &patch.name,
                &PatchParams::apply(legacy),
                &Patch::Apply(empty),
            )
            .await
            .map(drop)
        }
    })
    .await
}

/// Which pods an object of a kind controls, read from a pod's controller reference and labels.
pub enum Controls {
    /// Its own pods (a StatefulSet's, a DaemonSet's, a Job's).
    Directly,
    /// Through ReplicaSets named `<name>-<hash>` whose pods carry the hash under this label (a
    /// Deployment's `pod-template-hash`, a Rollout's `rollouts-pod-template-hash`).
    ThroughReplicaSets(&'static str),
    /// None directly (a CronJob: its pods are found through the Jobs its status names).
    Nothing,
}

impl Controls {
    /// The object of kind `kind` that controls a pod with this controller and these labels.
    pub fn owner(
        &self,
        kind: WorkloadKind,
        controller: &OwnerReference,
        pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        match self {
            Self::Directly => (controller.kind == kind.as_str()).then(|| controller.name.clone()),
            Self::ThroughReplicaSets(label) => {
                if controller.kind != "ReplicaSet" {
                    return None;
                }
                let hash = pod_labels.get(*label)?;
                controller
                    .name
                    .strip_suffix(&format!("-{hash}"))
                    .map(str::to_string)
            }
            Self::Nothing => None,
        }
    }
}

/// A kind k8s-openapi types, as the registry serves it.
pub struct Typed<K> {
    pub kind: WorkloadKind,
    /// Reads one object into the cache's compact form.
    pub convert: fn(&K) -> CachedWorkload,
    /// The server-side-apply body of a patch; `None` for a kind never patched (a Job's template
    /// is fixed, and the decisions plan no patch for it).
    pub body: Option<fn(&ConsumerPatch) -> Value>,
    pub controls: Controls,
}

/// The apply body of the `apps/v1` kinds, whose pod template is `spec.template`.
pub fn apps_body(patch: &ConsumerPatch) -> Value {
    template::apply_body(patch, "apps/v1")
}

impl<K> ConsumerKind for Typed<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn kind(&self) -> WorkloadKind {
        self.kind
    }

    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        let api = api::<K>(client, namespace.as_deref());
        futures::future::ready(Some(watch(api, cache, self.kind, self.convert))).boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        list::<K>(client, namespace, selector, self.convert).boxed()
    }

    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        match self.body {
            Some(body) => apply::<K>(client, patch, body(patch)).boxed(),
            None => futures::future::ready(Ok(())).boxed(),
        }
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        self.controls.owner(self.kind, controller, pod_labels)
    }
}
