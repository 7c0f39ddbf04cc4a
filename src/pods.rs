//! Pods as far as a token goes: a compact record of each pod that references a Secret, and the
//! cache the pod watch keeps of them.
//!
//! A kubelet resolves `env[].valueFrom.secretKeyRef` and `envFrom` when a container starts, and
//! a process reads a mounted Secret file whenever it likes. So what a pod *may hold* follows from
//! its own spec (immutable for env and volumes), whatever owns it. The record keeps exactly what
//! that decision reads: every Secret reference (through which container, variable or volume),
//! the pod's owner, its rotation annotation, when it was created and whether it is terminating.
//! Pods that reference no Secret and carry no `streamingtoken.io/token` label are not kept: they
//! cannot hold a token, and most pods of a cluster are like that.

use crate::api::ROTATION_ANNOTATION;
use crate::api::TOKEN_LABEL;
use crate::api::{ClusterStreamingToken, StreamingToken};
use crate::model::pod::{Owner, PodRecord, SecretKeys, SecretReference, SecretUse};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, KeyToPath, Pod, PodSpec, SecretProjection, SecretVolumeSource,
};
use kube::Api;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// Pods per page when listing: the full objects of one page are held only while they are
/// turned into records.
const LIST_PAGE_SIZE: u32 = 250;

/// The compact record of `pod`, or `None` when it cannot hold a token: it references no Secret
/// and is not labelled, or it has finished (Failed and Succeeded pods run no container; evicted
/// pods end as Failed).
pub fn record(pod: &Pod) -> Option<PodRecord> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Failed" | "Succeeded")) {
        return None;
    }
    let references = pod.spec.as_ref().map(references).unwrap_or_default();
    let token_label = pod.labels().get(TOKEN_LABEL).cloned();
    if references.is_empty() && token_label.is_none() {
        return None;
    }
    let deletion = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|time| time.0.as_second());
    Some(PodRecord {
        name: pod.name_any(),
        owner: owner(pod),
        rotation: pod.annotations().get(ROTATION_ANNOTATION).cloned(),
        token_stamps: pod
            .annotations()
            .iter()
            .filter(|(key, _)| key.starts_with(crate::api::TOKEN_STAMP_PREFIX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        token_label,
        created_at: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |time| time.0.as_second()),
        deletion_deadline: deletion,
        // Only a terminating pod's finalizers matter (they can hold it past its grace period).
        finalizers: if deletion.is_some() {
            pod.finalizers().to_vec()
        } else {
            Vec::new()
        },
        references,
    })
}

/// The workload that controls `pod` (see [`crate::workload::owner_of`]).
fn owner(pod: &Pod) -> Option<Owner> {
    let controller = pod
        .owner_references()
        .iter()
        .find(|reference| reference.controller == Some(true))?;
    Some(crate::workload::owner_of(controller, pod.labels()))
}

/// Every Secret reference of a pod: env and envFrom of containers, init containers (native
/// sidecars included) and ephemeral containers, and `secret` and `projected` volumes.
pub fn references(spec: &PodSpec) -> Vec<SecretReference> {
    let mut found = Vec::new();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|container| (&container.name, &container.env, &container.env_from));
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|container| (&container.name, &container.env, &container.env_from));
    for (container, env, env_from) in containers.chain(ephemeral) {
        container_references(container, env.as_deref(), env_from.as_deref(), &mut found);
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            ..
        }) = &volume.secret
        {
            found.push(SecretReference {
                secret: secret.clone(),
                keys: item_keys(items.as_deref()),
                used: SecretUse::Volume {
                    volume: volume.name.clone(),
                },
            });
        }
        let projected = volume
            .projected
            .iter()
            .flat_map(|projected| projected.sources.iter().flatten())
            .filter_map(|source| source.secret.as_ref());
        for SecretProjection { name, items, .. } in projected {
            found.push(SecretReference {
                secret: name.clone(),
                keys: item_keys(items.as_deref()),
                used: SecretUse::Volume {
                    volume: volume.name.clone(),
                },
            });
        }
    }
    found
}

fn container_references(
    container: &str,
    env: Option<&[EnvVar]>,
    env_from: Option<&[EnvFromSource]>,
    found: &mut Vec<SecretReference>,
) {
    for variable in env.unwrap_or_default() {
        if let Some(selector) = variable
            .value_from
            .as_ref()
            .and_then(|from| from.secret_key_ref.as_ref())
        {
            found.push(SecretReference {
                secret: selector.name.clone(),
                keys: SecretKeys::Listed(vec![selector.key.clone()]),
                used: SecretUse::Env {
                    container: container.into(),
                    variable: variable.name.clone(),
                },
            });
        }
    }
    for source in env_from.unwrap_or_default() {
        if let Some(secret) = &source.secret_ref {
            found.push(SecretReference {
                secret: secret.name.clone(),
                keys: SecretKeys::All,
                used: SecretUse::EnvFrom {
                    container: container.into(),
                },
            });
        }
    }
}

fn item_keys(items: Option<&[KeyToPath]>) -> SecretKeys {
    match items {
        Some(items) if !items.is_empty() => {
            SecretKeys::Listed(items.iter().map(|item| item.key.clone()).collect())
        }
        _ => SecretKeys::All,
    }
}

/// What a change of the pod cache may concern: the Secrets the pod referenced (before or after
/// the change) and the StreamingToken named by its label, in the pod's namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub namespace: String,
    pub secrets: BTreeSet<String>,
    pub tokens: BTreeSet<String>,
}

impl Touched {
    /// True when this change concerns a token mirrored into `secret` (with `source`, its
    /// `secretRef` source Secret) whose name is `name`.
    fn concerns(&self, secret: &str, source: Option<&str>, name: &str) -> bool {
        self.secrets.contains(secret)
            || source.is_some_and(|source| self.secrets.contains(source))
            || self.tokens.contains(name)
    }

    fn add(&mut self, record: &PodRecord) {
        for reference in &record.references {
            self.secrets.insert(reference.secret.clone());
        }
        if let Some(token) = &record.token_label {
            self.tokens.insert(token.clone());
        }
    }
}

type Namespaced = HashMap<String, HashMap<String, Arc<PodRecord>>>;

#[derive(Default)]
struct Inner {
    entries: Namespaced,
    relist: Option<Namespaced>,
    ready: bool,
}

/// The records of every pod (in the served namespaces) that may hold a token, by namespace and
/// name. It follows the watcher's relist protocol like [`crate::cache::WorkloadCache`].
#[derive(Default)]
pub struct PodCache {
    inner: RwLock<Inner>,
}

impl PodCache {
    /// Applies one watcher event. Returns what changed, so that only the StreamingTokens it
    /// concerns are woken (a pod's status changing every few seconds wakes nobody).
    pub fn apply(&self, event: &watcher::Event<Pod>) -> Vec<Touched> {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            watcher::Event::Init => {
                inner.relist = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                if let Some(record) = record(pod) {
                    inner
                        .relist
                        .get_or_insert_with(HashMap::new)
                        .entry(pod.namespace().unwrap_or_default())
                        .or_default()
                        .insert(record.name.clone(), Arc::new(record));
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = inner.relist.take().unwrap_or_default();
                let touched = differences(&inner.entries, &fresh);
                inner.entries = fresh;
                inner.ready = true;
                touched
            }
            watcher::Event::Apply(pod) => {
                let namespace = pod.namespace().unwrap_or_default();
                let name = pod.name_any();
                let fresh = record(pod).map(Arc::new);
                let pods = inner.entries.entry(namespace.clone()).or_default();
                let before = match &fresh {
                    Some(record) => pods.insert(name, record.clone()),
                    None => pods.remove(&name),
                };
                changed(namespace, before.as_deref(), fresh.as_deref())
                    .into_iter()
                    .collect()
            }
            watcher::Event::Delete(pod) => {
                let namespace = pod.namespace().unwrap_or_default();
                let before = inner
                    .entries
                    .get_mut(&namespace)
                    .and_then(|pods| pods.remove(&pod.name_any()));
                changed(namespace, before.as_deref(), None)
                    .into_iter()
                    .collect()
            }
        }
    }

    /// True once the first full list has arrived.
    pub fn ready(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .ready
    }

    /// The records of `namespace`, sorted by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<PodRecord>> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut records: Vec<Arc<PodRecord>> = inner
            .entries
            .get(namespace)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// How many records are kept (for memory figures).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entries
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// True when no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The watch of every pod in scope: it feeds `cache` and yields what each change concerns
/// (see [`concerned`]). Full pods are held only while one is turned into its record.
pub fn watch(
    api: Api<Pod>,
    cache: Arc<PodCache>,
) -> impl Stream<Item = Vec<Touched>> + Send + 'static {
    watcher(api, watcher::Config::default().page_size(LIST_PAGE_SIZE))
        .default_backoff()
        .filter_map(move |event| {
            let touched = match event {
                Ok(event) => cache.apply(&event),
                Err(_) => Vec::new(),
            };
            futures::future::ready((!touched.is_empty()).then_some(touched))
        })
}

/// The StreamingTokens that `touched` concerns: those whose mirror Secret (or source Secret) a
/// changed pod references in their namespace, or named by its label.
pub fn concerned(
    tokens: &Store<StreamingToken>,
    touched: &[Touched],
) -> Vec<ObjectRef<StreamingToken>> {
    if touched.is_empty() {
        return Vec::new();
    }
    let mut woken = Vec::new();
    for token in tokens.state() {
        let namespace = token.namespace().unwrap_or_default();
        let name = token.name_any();
        let secret = token.secret_name();
        let source = token
            .spec
            .source
            .secret_ref
            .as_ref()
            .map(|reference| reference.name.as_str());
        let concerns = touched
            .iter()
            .any(|change| change.namespace == namespace && change.concerns(&secret, source, &name));
        if concerns {
            woken.push(ObjectRef::from_obj(token.as_ref()));
        }
    }
    woken
}

/// The ClusterStreamingTokens that `touched` concerns: those whose mirror or source Secret's
/// name a changed pod references (in any namespace: a reconcile sorts out which it serves), or
/// named by its label.
pub fn concerned_cluster(
    tokens: &Store<ClusterStreamingToken>,
    touched: &[Touched],
) -> Vec<ObjectRef<ClusterStreamingToken>> {
    if touched.is_empty() {
        return Vec::new();
    }
    let mut woken = Vec::new();
    for token in tokens.state() {
        let name = token.name_any();
        let secret = token.secret_name();
        let source = token
            .spec
            .source
            .secret_ref
            .as_ref()
            .map(|reference| reference.name.as_str());
        let concerns = touched
            .iter()
            .any(|change| change.concerns(&secret, source, &name));
        if concerns {
            woken.push(ObjectRef::from_obj(token.as_ref()));
        }
    }
    woken
}

/// The records of `namespace` read afresh from the API server (a consistent list, page by
/// page): what a deactivation is decided on, so no watch lag can hide a pod.
pub async fn list_fresh(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<PodRecord>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut records = Vec::new();
    let mut params = ListParams::default().limit(LIST_PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        records.extend(page.items.iter().filter_map(record));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// What a change from `before` to `after` concerns, if anything changed.
fn changed(
    namespace: String,
    before: Option<&PodRecord>,
    after: Option<&PodRecord>,
) -> Option<Touched> {
    if before == after {
        return None;
    }
    let mut touched = Touched {
        namespace,
        ..Touched::default()
    };
    for record in before.into_iter().chain(after) {
        touched.add(record);
    }
    Some(touched)
}

/// What a relist changed: records that appeared, vanished or differ.
fn differences(before: &Namespaced, after: &Namespaced) -> Vec<Touched> {
    let mut namespaces: BTreeSet<&String> = before.keys().collect();
    namespaces.extend(after.keys());
    let empty = HashMap::new();
    let mut touched = Vec::new();
    for namespace in namespaces {
        let old = before.get(namespace).unwrap_or(&empty);
        let new = after.get(namespace).unwrap_or(&empty);
        let mut names: BTreeSet<&String> = old.keys().collect();
        names.extend(new.keys());
        for name in names {
            let change = changed(
                namespace.clone(),
                old.get(name).map(Arc::as_ref),
                new.get(name).map(Arc::as_ref),
            );
            touched.extend(change);
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    fn consumer_pod(name: &str, phase: &str) -> Pod {
        pod(json!({
            "metadata": {
                "name": name, "namespace": "prod",
                "creationTimestamp": "2026-11-25T10:00:00Z",
                "labels": {"app": "api", "pod-template-hash": "5d8f7c9b4"},
                "annotations": {ROTATION_ANNOTATION: "r3", "other": "x".repeat(2000)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d8f7c9b4", "uid": "u1", "controller": true}]
            },
            "spec": {
                "initContainers": [{"name": "setup", "image": "i", "envFrom": [{"secretRef": {"name": "telemetry"}}]}],
                "containers": [{"name": "app", "image": "i", "env": [
                    {"name": "Quix__Sdk__Token", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": "token1"}}},
                    {"name": "PLAIN", "value": "x"}
                ]}],
                "ephemeralContainers": [{"name": "debug", "image": "i", "env": [
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": "token2"}}}
                ]}],
                "volumes": [
                    {"name": "whole", "secret": {"secretName": "telemetry"}},
                    {"name": "one", "secret": {"secretName": "telemetry", "items": [{"key": "token2", "path": "t"}]}},
                    {"name": "mixed", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "sa"}},
                        {"secret": {"name": "other", "items": [{"key": "k", "path": "k"}]}}
                    ]}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            },
            "status": {"phase": phase}
        }))
    }

    #[test]
    fn a_record_keeps_every_way_a_pod_reaches_a_secret() {
        let record = record(&consumer_pod("api-1", "Running")).expect("kept");
        assert_eq!(record.name, "api-1");
        assert_eq!(
            record.owner,
            Some(Owner {
                kind: "Deployment".into(),
                name: "api".into()
            })
        );
        assert_eq!(record.rotation.as_deref(), Some("r3"));
        assert_eq!(record.created_at, 1_795_600_800);
        assert_eq!(record.deletion_deadline, None);
        let listed: Vec<(String, SecretKeys, SecretUse)> = record
            .references
            .iter()
            .map(|reference| {
                (
                    reference.secret.clone(),
                    reference.keys.clone(),
                    reference.used.clone(),
                )
            })
            .collect();
        let env = |container: &str, variable: &str| SecretUse::Env {
            container: container.into(),
            variable: variable.into(),
        };
        let volume = |name: &str| SecretUse::Volume {
            volume: name.into(),
        };
        let key = |key: &str| SecretKeys::Listed(vec![key.into()]);
        assert_eq!(
            listed,
            vec![
                (
                    "telemetry".into(),
                    SecretKeys::All,
                    SecretUse::EnvFrom {
                        container: "setup".into()
                    }
                ),
                (
                    "telemetry".into(),
                    key("token1"),
                    env("app", "Quix__Sdk__Token")
                ),
                ("telemetry".into(), key("token2"), env("debug", "T")),
                ("telemetry".into(), SecretKeys::All, volume("whole")),
                ("telemetry".into(), key("token2"), volume("one")),
                ("other".into(), key("k"), volume("mixed")),
            ]
        );
    }

    #[test]
    fn finished_and_unrelated_pods_are_not_kept() {
        assert!(record(&consumer_pod("api-1", "Succeeded")).is_none());
        assert!(record(&consumer_pod("api-1", "Failed")).is_none());
        let unrelated = pod(json!({
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"containers": [{"name": "web", "image": "i", "env": [{"name": "A", "value": "b"}]}]}
        }));
        assert!(record(&unrelated).is_none());
        let labelled = pod(json!({
            "metadata": {"name": "web", "namespace": "prod", "labels": {TOKEN_LABEL: "telemetry"}},
            "spec": {"containers": [{"name": "web", "image": "i"}]}
        }));
        assert_eq!(
            record(&labelled).and_then(|record| record.token_label),
            Some("telemetry".into())
        );
    }

    #[test]
    fn owners_are_named_as_people_know_them() {
        let owned = |kind: &str, name: &str, hash: Option<&str>| {
            let mut labels = serde_json::Map::new();
            if let Some(hash) = hash {
                labels.insert("pod-template-hash".into(), json!(hash));
            }
            owner(&pod(json!({
                "metadata": {"name": "p", "labels": labels, "ownerReferences": [
                    {"apiVersion": "v1", "kind": kind, "name": name, "uid": "u", "controller": true}
                ]}
            })))
        };
        let named = |kind: &str, name: &str| {
            Some(Owner {
                kind: kind.into(),
                name: name.into(),
            })
        };
        assert_eq!(
            owned("ReplicaSet", "api-abc12", Some("abc12")),
            named("Deployment", "api")
        );
        assert_eq!(
            owned("ReplicaSet", "standalone", Some("abc12")),
            named("ReplicaSet", "standalone")
        );
        assert_eq!(owned("StatefulSet", "db", None), named("StatefulSet", "db"));
        assert_eq!(owned("Job", "backup-1", None), named("Job", "backup-1"));
        assert_eq!(owner(&pod(json!({"metadata": {"name": "bare"}}))), None);
    }

    #[test]
    fn the_cache_reports_only_changes_that_matter() {
        let cache = PodCache::default();
        assert!(!cache.ready());
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(consumer_pod("api-1", "Running")));
        assert!(
            cache.in_namespace("prod").is_empty(),
            "not visible before InitDone"
        );
        let touched = cache.apply(&watcher::Event::InitDone);
        assert!(cache.ready());
        assert_eq!(touched.len(), 1);
        assert_eq!(
            touched[0].secrets,
            BTreeSet::from(["other".to_string(), "telemetry".to_string()])
        );
        assert_eq!(cache.in_namespace("prod").len(), 1);

        // A status change that leaves the record as it was wakes nobody.
        assert!(
            cache
                .apply(&watcher::Event::Apply(consumer_pod("api-1", "Running")))
                .is_empty()
        );
        // Terminating is a change.
        let mut terminating = consumer_pod("api-1", "Running");
        terminating.metadata.deletion_timestamp = terminating.metadata.creation_timestamp.clone();
        assert_eq!(
            cache
                .apply(&watcher::Event::Apply(terminating.clone()))
                .len(),
            1
        );
        // Finishing removes the record.
        assert_eq!(
            cache
                .apply(&watcher::Event::Apply(consumer_pod("api-1", "Succeeded")))
                .len(),
            1
        );
        assert!(cache.is_empty());
        assert!(cache.apply(&watcher::Event::Delete(terminating)).is_empty());

        // A relist reports the records that vanished while the watch was down.
        cache.apply(&watcher::Event::Apply(consumer_pod("api-2", "Running")));
        cache.apply(&watcher::Event::Init);
        let touched = cache.apply(&watcher::Event::InitDone);
        assert_eq!(touched.len(), 1);
        assert!(cache.is_empty());
    }
}
