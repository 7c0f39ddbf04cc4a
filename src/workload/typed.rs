//! The watch, list and patch shared by the kinds that k8s-openapi types (`apps/v1`).

use super::cache::WorkloadCache;
use super::template::{self, CachedWorkload};
use super::{Touched, manager_of};
use crate::api::TOKEN_LABEL;
use crate::model::consumer::{ConsumerPatch, WorkloadKind};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

/// The labelled objects of one kind, watched: every event feeds the cache, and the objects that
/// changed are yielded (to wake the StreamingToken they name).
pub fn watch<K>(
    api: Api<K>,
    cache: std::sync::Arc<WorkloadCache>,
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
    watcher(api, config)
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                cache.apply(kind, event, convert);
            }
        })
        .touched_objects()
        .filter_map(|result| {
            futures::future::ready(result.ok().map(|object| Touched {
                namespace: object.namespace().unwrap_or_default(),
                labels: object.labels().clone(),
            }))
        })
        .boxed()
}

/// `Api` of a namespaced kind in `namespace`, or in every namespace.
pub fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
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
pub async fn list<K>(
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

/// Server-side apply of the fields the operator owns (`apps/v1` kinds).
pub async fn patch<K>(client: &Client, patch: &ConsumerPatch) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let params = PatchParams::apply(manager_of(patch)).force();
    let body = Patch::Apply(template::apply_body(patch, "apps/v1"));
    Api::<K>::namespaced(client.clone(), &patch.namespace)
        .patch(&patch.name, &params, &body)
        .await
        .map(drop)
}
