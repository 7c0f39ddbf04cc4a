//! A compact cache of consumer workloads.
//!
//! The watches deliver whole workloads (Deployments, StatefulSets, ...); the cache keeps only the
//! few fields verification and repointing read ([`CachedWorkload`], a few hundred bytes), not the
//! objects (several KiB each in memory even when trimmed). It follows the watcher's relist
//! protocol: `Init` starts a fresh list for one kind, `InitDone` swaps it in and marks that kind
//! ready.

use super::template::CachedWorkload;
use crate::model::consumer::WorkloadKind;
use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

type Key = (WorkloadKind, String, String);

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Arc<CachedWorkload>>,
    relists: HashMap<WorkloadKind, HashMap<Key, Arc<CachedWorkload>>>,
    ready: HashSet<WorkloadKind>,
    /// The kinds watched: the cache is ready once each has been listed.
    required: HashSet<WorkloadKind>,
}

/// Labelled workloads of every kind, by kind, namespace and name.
#[derive(Default)]
pub struct WorkloadCache {
    inner: RwLock<Inner>,
}

impl WorkloadCache {
    /// Applies one watcher event for `kind`, converting objects with `convert`.
    pub fn apply<K: ResourceExt>(
        &self,
        kind: WorkloadKind,
        event: &watcher::Event<K>,
        convert: fn(&K) -> CachedWorkload,
    ) {
        let key = |object: &K| {
            (
                kind,
                object.namespace().unwrap_or_default(),
                object.name_any(),
            )
        };
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            watcher::Event::Init => {
                inner.relists.insert(kind, HashMap::new());
            }
            watcher::Event::InitApply(object) => {
                let entry = Arc::new(convert(object));
                inner
                    .relists
                    .entry(kind)
                    .or_default()
                    .insert(key(object), entry);
            }
            watcher::Event::InitDone => {
                let fresh = inner.relists.remove(&kind).unwrap_or_default();
                inner
                    .entries
                    .retain(|(entry_kind, _, _), _| *entry_kind != kind);
                inner.entries.extend(fresh);
                inner.ready.insert(kind);
            }
            watcher::Event::Apply(object) => {
                inner.entries.insert(key(object), Arc::new(convert(object)));
            }
            watcher::Event::Delete(object) => {
                inner.entries.remove(&key(object));
            }
        }
    }

    /// True once every kind watched has been listed (and at least one is).
    pub fn ready(&self) -> bool {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !inner.required.is_empty() && inner.required.iter().all(|kind| inner.ready.contains(kind))
    }

    /// `kind` is watched: the cache is ready only once it has been listed.
    pub fn require(&self, kind: WorkloadKind) {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .required
            .insert(kind);
    }

    /// The consumers of StreamingToken `token` in `namespace`: those its name labels, and
    /// those whose `streamingtoken.io/tokens` annotation names it.
    pub fn consumers(&self, namespace: &str, token: &str) -> Vec<Arc<CachedWorkload>> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .entries
            .iter()
            .filter(|((_, entry_namespace, _), entry)| {
                entry_namespace == namespace && entry.reads(token)
            })
            .map(|(_, entry)| entry.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{daemonset, deployment, statefulset};
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(name: &str, token: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "prod", "labels": {"streamingtoken.io/token": token}},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"spec": {"containers": []}}}
        }))
        .expect("deployment")
    }

    #[test]
    fn follows_the_relist_protocol() {
        let cache = WorkloadCache::default();
        let convert = deployment::cache_deployment;
        let kind = WorkloadKind::Deployment;
        for kind in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
        ] {
            cache.require(kind);
        }
        assert!(!cache.ready());
        cache.apply(kind, &watcher::Event::Init, convert);
        cache.apply(
            kind,
            &watcher::Event::InitApply(deployment("a", "t")),
            convert,
        );
        cache.apply(
            kind,
            &watcher::Event::InitApply(deployment("b", "other")),
            convert,
        );
        assert!(
            cache.consumers("prod", "t").is_empty(),
            "not visible before InitDone"
        );
        cache.apply(kind, &watcher::Event::InitDone, convert);
        assert_eq!(cache.consumers("prod", "t").len(), 1);
        cache.apply(kind, &watcher::Event::Apply(deployment("c", "t")), convert);
        assert_eq!(cache.consumers("prod", "t").len(), 2);
        assert!(cache.consumers("staging", "t").is_empty());
        cache.apply(kind, &watcher::Event::Delete(deployment("a", "t")), convert);
        assert_eq!(cache.consumers("prod", "t").len(), 1);
        // A relist replaces everything of that kind.
        cache.apply(kind, &watcher::Event::Init, convert);
        cache.apply(
            kind,
            &watcher::Event::InitApply(deployment("d", "t")),
            convert,
        );
        cache.apply(kind, &watcher::Event::InitDone, convert);
        let names: Vec<String> = cache
            .consumers("prod", "t")
            .iter()
            .map(|entry| entry.observe("X", "t", &Default::default()).name)
            .collect();
        assert_eq!(names, ["d"]);
        assert!(!cache.ready(), "StatefulSets and DaemonSets not listed yet");
        cache.apply(
            WorkloadKind::StatefulSet,
            &watcher::Event::<k8s_openapi::api::apps::v1::StatefulSet>::InitDone,
            statefulset::cache_statefulset,
        );
        cache.apply(
            WorkloadKind::DaemonSet,
            &watcher::Event::<k8s_openapi::api::apps::v1::DaemonSet>::InitDone,
            daemonset::cache_daemonset,
        );
        assert!(cache.ready());
    }
}
