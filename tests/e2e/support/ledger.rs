//! An independent token ledger: it watches the mirror Secret and every pod of a namespace and
//! works out, from each pod's own spec and lifecycle alone, which token values the pod may hold.
//! A Secret version whose pair leaves out a value that a live or terminating pod may still hold is
//! a violation: that value was deactivated under the pod.
//!
//! It deliberately shares nothing with the operator: no `streaming_token_operator` item is used,
//! so a mistake in the operator's idea of "may hold Token 1" cannot hide itself here.
//!
//! The model (what a kubelet does):
//! - `env[].valueFrom.secretKeyRef` and `envFrom[].secretRef` are resolved when a container
//!   starts: the pod may hold every value the key had from the pod's creation until it was first
//!   seen started (phase `Running` or a running container; an ephemeral container: its own status
//!   running or terminated; never seen started: until it is gone).
//! - A `secret` volume (or a `projected` one with a `secret` source) can be read at any time: the
//!   pod may hold every value its exposed keys had during its whole life.
//! - A pod is alive from its creation until its DELETED event or until it is seen `Succeeded` or
//!   `Failed`. Terminating pods are alive.
//! - Everything is ordered by resourceVersion as a u64 (etcd revisions). Pods of the observer's
//!   initial list count as created before every Secret version observed.
//!
//! A token value is never printed: values are "value #n", numbered in order of first appearance
//! in the Secret's history.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, KeyToPath, Pod, PodSpec, Secret};
use kube::api::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long `assert_*` give the two watch streams to catch up with each other.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long `start` waits for each initial list.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The values of the two keys (Token 1, Token 2) in one version of the Secret.
type Pair = [Option<String>; 2];

/// How a reference lets a pod read a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// Resolved when the container starts (`env`, `envFrom`).
    AtStart,
    /// Readable for the pod's whole life (a volume).
    WholeLife,
}

/// One way a pod reaches one key of the observed Secret.
#[derive(Clone, Debug)]
struct Route {
    /// `container "app" env TOKEN`, `init container "x" envFrom`, `volume "tokens"`, ...
    via: String,
    /// 0: Token 1's key, 1: Token 2's key.
    slot: usize,
    reach: Reach,
    /// The ephemeral container whose own start ends an `AtStart` window (`None`: the pod's start).
    ephemeral: Option<String>,
    /// The first point at which this reference existed (the pod's creation, or the observation
    /// that first showed an ephemeral container).
    since: u64,
}

/// What the ledger keeps of one pod (one incarnation: keyed by UID).
#[derive(Clone, Debug)]
struct PodRecord {
    name: String,
    uid: String,
    /// `Kind/name` of the controller owner, or `none`.
    owner: String,
    routes: Vec<Route>,
    created: u64,
    started: Option<u64>,
    ephemeral_started: BTreeMap<String, u64>,
    terminating: Option<u64>,
    gone: Option<u64>,
}

impl PodRecord {
    fn alive_at(&self, rv: u64) -> bool {
        self.created < rv && self.gone.is_none_or(|gone| gone > rv)
    }
}

/// A relist of the pods in progress (watcher `Init` .. `InitDone`).
#[derive(Debug, Default)]
struct PodRelist {
    /// The highest pod resourceVersion seen before the relist: pods new in it were created after.
    watermark: u64,
    seen: HashSet<String>,
    max_rv: u64,
}

/// The pure bookkeeping: Secret versions and pod records, and the violations they imply.
#[derive(Debug)]
pub struct History {
    secret: String,
    keys: [String; 2],
    /// resourceVersion -> the pair (`None`: the Secret did not exist).
    versions: BTreeMap<u64, Option<Pair>>,
    /// The pair of record's versions, when the Secret the pods read is a copy of it (a
    /// ClusterStreamingToken's namespace): what is deactivated is judged against these, what a
    /// pod may hold against the copy's.
    record: Option<BTreeMap<u64, Option<Pair>>>,
    pods: Vec<PodRecord>,
    /// The highest resourceVersion seen on either stream.
    max_rv: u64,
    /// The highest resourceVersion seen on the pod stream.
    pod_rv: u64,
    relist: Option<PodRelist>,
    /// The pair of record lives in another cluster (a member cluster's ledger): its
    /// resourceVersions are another etcd's and say nothing of this one's order. Each record
    /// version is then given a position in this cluster's own order: as soon as the observer
    /// receives it, it writes a marker object in this cluster (retrying while its API server is
    /// down), and the record version is placed right after the marker's resourceVersion (this
    /// cluster's resourceVersions are scaled by [`REMOTE_SCALE`] to leave room). The marker is
    /// written after the record version was, so the position is never earlier than the truth:
    /// a pod this cluster still had when the marker was written was alive after the
    /// deactivation (a watch that lags or reconnects cannot make it look gone, nor alive).
    remote_record: bool,
}

/// How far apart this cluster's resourceVersions are put when the record is another cluster's.
const REMOTE_SCALE: u64 = 1024;

impl History {
    pub fn new(secret: &str, token1_key: &str, token2_key: &str) -> Self {
        Self {
            secret: secret.to_string(),
            keys: [token1_key.to_string(), token2_key.to_string()],
            versions: BTreeMap::new(),
            record: None,
            pods: Vec::new(),
            max_rv: 0,
            pod_rv: 0,
            relist: None,
            remote_record: false,
        }
    }

    /// This cluster's resourceVersion `rv` in the ledger's order.
    fn local(&self, rv: u64) -> u64 {
        if self.remote_record {
            rv.saturating_mul(REMOTE_SCALE)
        } else {
            rv
        }
    }

    /// Records a version of the Secret (`None`: deleted).
    pub fn secret_version(&mut self, rv: u64, values: Option<(String, String)>) {
        let rv = self.local(rv);
        self.record_version(
            rv,
            values.map(|(token1, token2)| [Some(token1), Some(token2)]),
        );
    }

    /// Records a version of the pair of record's Secret as the apiserver returned it.
    pub fn record_observed(&mut self, rv: u64, secret: &Secret) {
        let pair = self.pair_of(secret);
        // Remote: `rv` is the marker's, in this cluster's order.
        let rv = if self.remote_record {
            self.local(rv) + REMOTE_SCALE / 2
        } else {
            rv
        };
        self.max_rv = self.max_rv.max(rv);
        self.record
            .get_or_insert_with(BTreeMap::new)
            .insert(rv, Some(pair));
    }

    /// Records a version of the Secret as the apiserver returned it (a key may be missing).
    pub fn secret_observed(&mut self, rv: u64, secret: &Secret) {
        let rv = self.local(rv);
        let pair = self.pair_of(secret);
        self.record_version(rv, Some(pair));
    }

    fn pair_of(&self, secret: &Secret) -> Pair {
        let value = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
        };
        [value(&self.keys[0]), value(&self.keys[1])]
    }

    /// A relist no longer shows the Secret: it was deleted after everything seen so far.
    pub fn secret_vanished(&mut self) {
        let exists = matches!(self.versions.last_key_value(), Some((_, Some(_))));
        if exists {
            let rv = self.max_rv + 1;
            self.record_version(rv, None);
        }
    }

    fn record_version(&mut self, rv: u64, pair: Option<Pair>) {
        self.max_rv = self.max_rv.max(rv);
        self.versions.insert(rv, pair);
    }

    /// Starts a (re)list of the pods: pods not observed before `pods_relist_done` are gone.
    pub fn pods_relist_begin(&mut self) {
        self.relist = Some(PodRelist {
            watermark: self.pod_rv,
            ..PodRelist::default()
        });
    }

    /// Ends a (re)list: every live pod it did not show is deleted at its highest resourceVersion.
    pub fn pods_relist_done(&mut self) {
        let Some(relist) = self.relist.take() else {
            return;
        };
        let rv = if relist.max_rv > 0 {
            relist.max_rv
        } else {
            self.max_rv
        };
        for pod in &mut self.pods {
            if pod.gone.is_none() && !relist.seen.contains(&pod.uid) {
                pod.gone = Some(rv);
            }
        }
    }

    /// Records one observed version of a pod (`initial`: it was in the observer's first list).
    pub fn pod_observed(&mut self, rv: u64, pod: &Pod, initial: bool) {
        let rv = self.local(rv);
        self.max_rv = self.max_rv.max(rv);
        self.pod_rv = self.pod_rv.max(rv);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_else(|| name.clone());
        if let Some(relist) = &mut self.relist {
            relist.seen.insert(uid.clone());
            relist.max_rv = relist.max_rv.max(rv);
        }
        let (index, first) = match self.pods.iter().position(|record| record.uid == uid) {
            Some(index) => (index, false),
            None => {
                let created = if initial {
                    0
                } else if let Some(relist) = &self.relist {
                    // Created somewhere in the gap the relist covers.
                    relist.watermark.min(rv)
                } else {
                    rv
                };
                self.pods.push(PodRecord {
                    name,
                    uid,
                    owner: owner(&pod.metadata),
                    routes: Vec::new(),
                    created,
                    started: None,
                    ephemeral_started: BTreeMap::new(),
                    terminating: None,
                    gone: None,
                });
                (self.pods.len() - 1, true)
            }
        };
        let routes = pod
            .spec
            .as_ref()
            .map(|spec| routes(spec, &self.secret, &self.keys))
            .unwrap_or_default();
        let record = &mut self.pods[index];
        if record.gone.is_some() {
            return;
        }
        let since = if first { record.created } else { rv };
        for mut route in routes {
            let known = record
                .routes
                .iter()
                .any(|existing| existing.via == route.via && existing.slot == route.slot);
            if !known {
                route.since = since;
                record.routes.push(route);
            }
        }
        let status = pod.status.as_ref();
        let running = status.is_some_and(|status| {
            status.phase.as_deref() == Some("Running")
                || status.container_statuses.iter().flatten().any(|container| {
                    container
                        .state
                        .as_ref()
                        .is_some_and(|state| state.running.is_some())
                })
        });
        if running && record.started.is_none() {
            record.started = Some(rv);
        }
        for container in status
            .and_then(|status| status.ephemeral_container_statuses.as_ref())
            .into_iter()
            .flatten()
        {
            let ran = container
                .state
                .as_ref()
                .is_some_and(|state| state.running.is_some() || state.terminated.is_some());
            if ran {
                record
                    .ephemeral_started
                    .entry(container.name.clone())
                    .or_insert(rv);
            }
        }
        if pod.metadata.deletion_timestamp.is_some() && record.terminating.is_none() {
            record.terminating = Some(rv);
        }
        let phase = status.and_then(|status| status.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            record.gone = Some(rv);
        }
    }

    /// Records that pod `name` is gone (its DELETED event, stamped `rv`).
    pub fn pod_gone(&mut self, rv: u64, name: &str) {
        let rv = self.local(rv);
        self.max_rv = self.max_rv.max(rv);
        self.pod_rv = self.pod_rv.max(rv);
        if let Some(record) = self
            .pods
            .iter_mut()
            .rev()
            .find(|record| record.name == name && record.gone.is_none())
        {
            record.gone = Some(rv);
        }
    }

    /// How many Secret versions with distinct (token1, token2) were observed.
    pub fn secret_versions(&self) -> usize {
        self.versions
            .values()
            .flatten()
            .collect::<HashSet<&Pair>>()
            .len()
    }

    /// One line on what was observed (for failure messages).
    pub fn summary(&self) -> String {
        let deletions = self.versions.values().filter(|pair| pair.is_none()).count();
        format!(
            "observed {} Secret version(s) of {} ({} distinct pair(s), {} deletion(s)) and {} pod(s), {} of them referencing it",
            self.versions.len(),
            self.secret,
            self.secret_versions(),
            deletions,
            self.pods.len(),
            self.pods
                .iter()
                .filter(|pod| !pod.routes.is_empty())
                .count()
        )
    }

    /// Number of each value, in order of first appearance in the Secret's history.
    fn value_numbers(&self) -> HashMap<&str, usize> {
        let mut numbers = HashMap::new();
        let record = self.record.iter().flat_map(|record| record.values());
        for value in self
            .versions
            .values()
            .chain(record)
            .flatten()
            .flatten()
            .flatten()
        {
            let next = numbers.len() + 1;
            numbers.entry(value.as_str()).or_insert(next);
        }
        numbers
    }

    /// The values key `slot` had from `since` to `until` (inclusive), each with the
    /// resourceVersion of the first version in that window that had it.
    fn held(&self, slot: usize, since: u64, until: u64) -> Vec<(&str, u64)> {
        let mut held: Vec<(&str, u64)> = Vec::new();
        // The version in effect at `since`; a pod of the initial list (created at 0) counts as
        // created before every version observed, so it had the first one.
        let in_effect = self
            .versions
            .range(..=since)
            .next_back()
            .or_else(|| (since == 0).then(|| self.versions.iter().next()).flatten());
        let later = (until > since)
            .then(|| self.versions.range(since + 1..=until))
            .into_iter()
            .flatten();
        for (&rv, pair) in in_effect.into_iter().chain(later) {
            if let Some(value) = pair.as_ref().and_then(|pair| pair[slot].as_deref())
                && !held.iter().any(|(seen, _)| *seen == value)
            {
                held.push((value, rv));
            }
        }
        held
    }

    /// Every violation: a Secret version at which a live pod may hold a value outside its pair.
    /// Once per (pod, value), in order of the deactivating version, then pod.
    pub fn violations(&self) -> Vec<String> {
        let numbers = self.value_numbers();
        let number = |value: &str| numbers.get(value).copied().unwrap_or(0);
        let mut pods: Vec<&PodRecord> = self.pods.iter().collect();
        pods.sort_by(|a, b| (a.created, &a.name, &a.uid).cmp(&(b.created, &b.name, &b.uid)));
        let mut reported: HashSet<(&str, &str)> = HashSet::new();
        let mut lines = Vec::new();
        let judged = self.record.as_ref().unwrap_or(&self.versions);
        for (ordinal, (&rv, pair)) in judged.iter().enumerate() {
            // A deleted Secret deactivates nothing at the platform.
            let Some(pair) = pair else {
                continue;
            };
            let valid: Vec<&str> = pair.iter().flatten().map(String::as_str).collect();
            for pod in pods.iter().filter(|pod| pod.alive_at(rv)) {
                // value -> (key slot and rv it was held at, routes)
                let mut found: BTreeMap<usize, (&str, usize, u64, BTreeSet<String>)> =
                    BTreeMap::new();
                for route in pod.routes.iter().filter(|route| route.since < rv) {
                    let until = match route.reach {
                        Reach::WholeLife => rv,
                        Reach::AtStart => {
                            let started = match &route.ephemeral {
                                Some(container) => pod.ephemeral_started.get(container).copied(),
                                None => pod.started,
                            };
                            started.map_or(rv, |started| started.min(rv))
                        }
                    };
                    for (value, held_rv) in self.held(route.slot, route.since, until) {
                        if valid.contains(&value) || reported.contains(&(pod.uid.as_str(), value)) {
                            continue;
                        }
                        found
                            .entry(number(value))
                            .or_insert_with(|| (value, route.slot, held_rv, BTreeSet::new()))
                            .3
                            .insert(format!("{} -> key {}", route.via, self.keys[route.slot]));
                    }
                }
                for (n, (value, slot, held_rv, routes)) in found {
                    reported.insert((pod.uid.as_str(), value));
                    let terminating = if pod.terminating.is_some_and(|at| at <= rv) {
                        "terminating"
                    } else {
                        "not terminating"
                    };
                    let valid_then = valid
                        .iter()
                        .map(|value| format!("value #{}", number(value)))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    lines.push(format!(
                        "pod {} (owner {}, {terminating} at rv {rv}) may hold value #{n} ({} as of rv {held_rv}) via {}; \
                         deactivated by Secret version #{} at rv {rv} (valid then: {})",
                        pod.name,
                        pod.owner,
                        self.keys[slot],
                        routes.into_iter().collect::<Vec<_>>().join("; "),
                        ordinal + 1,
                        if valid_then.is_empty() {
                            "nothing".to_string()
                        } else {
                            valid_then
                        },
                    ));
                }
            }
        }
        lines
    }
}

/// `Kind/name` of the controller owner, or `none` for a bare pod.
fn owner(metadata: &ObjectMeta) -> String {
    metadata
        .owner_references
        .iter()
        .flatten()
        .find(|reference| reference.controller == Some(true))
        .map_or_else(
            || "none".to_string(),
            |reference| format!("{}/{}", reference.kind, reference.name),
        )
}

/// Every way `spec` reaches a key of Secret `secret` (`since` is filled in by the caller).
fn routes(spec: &PodSpec, secret: &str, keys: &[String; 2]) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut container = |label: &str,
                         name: &str,
                         env: Option<&Vec<EnvVar>>,
                         env_from: Option<&Vec<EnvFromSource>>,
                         ephemeral: bool| {
        let ephemeral = ephemeral.then(|| name.to_string());
        for var in env.into_iter().flatten() {
            let Some(selector) = var
                .value_from
                .as_ref()
                .and_then(|source| source.secret_key_ref.as_ref())
            else {
                continue;
            };
            if selector.name != secret {
                continue;
            }
            if let Some(slot) = keys.iter().position(|key| *key == selector.key) {
                routes.push(Route {
                    via: format!("{label} {name:?} env {}", var.name),
                    slot,
                    reach: Reach::AtStart,
                    ephemeral: ephemeral.clone(),
                    since: 0,
                });
            }
        }
        for source in env_from.into_iter().flatten() {
            if source
                .secret_ref
                .as_ref()
                .is_some_and(|reference| reference.name == secret)
            {
                let via = match source.prefix.as_deref() {
                    Some(prefix) if !prefix.is_empty() => {
                        format!("{label} {name:?} envFrom (prefix {prefix:?})")
                    }
                    _ => format!("{label} {name:?} envFrom"),
                };
                for slot in 0..keys.len() {
                    routes.push(Route {
                        via: via.clone(),
                        slot,
                        reach: Reach::AtStart,
                        ephemeral: ephemeral.clone(),
                        since: 0,
                    });
                }
            }
        }
    };
    for c in &spec.containers {
        container(
            "container",
            &c.name,
            c.env.as_ref(),
            c.env_from.as_ref(),
            false,
        );
    }
    for c in spec.init_containers.iter().flatten() {
        container(
            "init container",
            &c.name,
            c.env.as_ref(),
            c.env_from.as_ref(),
            false,
        );
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        container(
            "ephemeral container",
            &c.name,
            c.env.as_ref(),
            c.env_from.as_ref(),
            true,
        );
    }
    // The keys a volume projects: all of them without `items` (or with an empty list).
    let exposed = |items: Option<&Vec<KeyToPath>>| -> Vec<usize> {
        match items {
            Some(items) if !items.is_empty() => (0..keys.len())
                .filter(|&slot| items.iter().any(|item| item.key == keys[slot]))
                .collect(),
            _ => (0..keys.len()).collect(),
        }
    };
    for volume in spec.volumes.iter().flatten() {
        let mut slots = Vec::new();
        let mut label = "volume";
        if let Some(source) = &volume.secret
            && source.secret_name.as_deref() == Some(secret)
        {
            slots.extend(exposed(source.items.as_ref()));
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(projection) = &source.secret
                    && projection.name == secret
                {
                    label = "projected volume";
                    slots.extend(exposed(projection.items.as_ref()));
                }
            }
        }
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            routes.push(Route {
                via: format!("{label} {:?}", volume.name),
                slot,
                reach: Reach::WholeLife,
                ephemeral: None,
                since: 0,
            });
        }
    }
    routes
}

fn resource_version(metadata: &ObjectMeta) -> Option<u64> {
    metadata.resource_version.as_deref()?.parse().ok()
}

fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    history.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Watches Secret `secret` and every pod of a namespace, independently of the operator.
pub struct Ledger {
    history: Arc<Mutex<History>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Ledger {
    /// Starts watching Secret `secret` and every pod of `namespace` (admin client), and waits
    /// until both initial lists are in.
    pub async fn start(client: &Client, namespace: &str, secret: &str) -> Ledger {
        Self::start_with_keys(client, namespace, secret, "token1", "token2").await
    }

    /// Same with other key names.
    pub async fn start_with_keys(
        client: &Client,
        namespace: &str,
        secret: &str,
        token1_key: &str,
        token2_key: &str,
    ) -> Ledger {
        let history = Arc::new(Mutex::new(History::new(secret, token1_key, token2_key)));
        let (secret_listed, secret_ready) = oneshot::channel();
        let (pods_listed, pods_ready) = oneshot::channel();
        let tasks = vec![
            tokio::spawn(watch_secret(
                Api::namespaced(client.clone(), namespace),
                secret.to_string(),
                history.clone(),
                secret_listed,
                Watched::Copy,
            )),
            tokio::spawn(watch_pods(
                Api::namespaced(client.clone(), namespace),
                history.clone(),
                pods_listed,
            )),
        ];
        // Built before waiting, so that a failed wait aborts the watches on the way out.
        let ledger = Ledger { history, tasks };
        for (what, ready) in [
            (format!("Secret {namespace}/{secret}"), secret_ready),
            (format!("the pods of {namespace}"), pods_ready),
        ] {
            tokio::time::timeout(LIST_TIMEOUT, ready)
                .await
                .unwrap_or_else(|_| {
                    panic!("ledger: the initial list of {what} did not arrive in {LIST_TIMEOUT:?}")
                })
                .unwrap_or_else(|_| panic!("ledger: the watch of {what} ended"));
        }
        ledger
    }

    /// Starts watching the copy `secret` and every pod of `namespace`, judged against the pair
    /// of record (Secret `secret` in `home`): a value is deactivated when the record no longer
    /// holds it, whatever the copy still says.
    pub async fn against_record(
        client: &Client,
        namespace: &str,
        secret: &str,
        home: &str,
    ) -> Ledger {
        let mut ledger = Self::start(client, namespace, secret).await;
        let (listed, ready) = oneshot::channel();
        ledger.tasks.push(tokio::spawn(watch_secret(
            Api::namespaced(client.clone(), home),
            secret.to_string(),
            ledger.history.clone(),
            listed,
            Watched::Record,
        )));
        tokio::time::timeout(LIST_TIMEOUT, ready)
            .await
            .unwrap_or_else(|_| panic!("ledger: the pair of record {home}/{secret} did not arrive"))
            .unwrap_or_else(|_| panic!("ledger: the watch of {home}/{secret} ended"));
        ledger
    }

    /// The same for a member cluster: the copy `secret` and every pod of `namespace` there
    /// (`member`'s client), judged against the pair of record in another cluster (Secret
    /// `secret` in `home`, `hub`'s client), ordered as the observer received them.
    pub async fn against_remote_record(
        member: &Client,
        namespace: &str,
        secret: &str,
        hub: &Client,
        home: &str,
    ) -> Ledger {
        let history = Arc::new(Mutex::new(History::new(secret, "token1", "token2")));
        lock(&history).remote_record = true;
        let mut ledger = Ledger {
            history,
            tasks: Vec::new(),
        };
        let watches = [
            (
                Api::namespaced(member.clone(), namespace),
                Watched::Copy,
                format!("{namespace}/{secret}"),
                None,
            ),
            (
                Api::namespaced(hub.clone(), home),
                Watched::Record,
                format!("{home}/{secret} (hub)"),
                Some(Api::namespaced(member.clone(), namespace)),
            ),
        ];
        let mut waits = Vec::new();
        for (api, watched, what, clock) in watches {
            let (listed, ready) = oneshot::channel();
            ledger.tasks.push(tokio::spawn(watch_secret_with(
                api,
                secret.to_string(),
                ledger.history.clone(),
                listed,
                watched,
                clock,
            )));
            waits.push((what, ready));
        }
        let (listed, ready) = oneshot::channel();
        ledger.tasks.push(tokio::spawn(watch_pods(
            Api::namespaced(member.clone(), namespace),
            ledger.history.clone(),
            listed,
        )));
        waits.push((format!("the pods of {namespace}"), ready));
        for (what, ready) in waits {
            tokio::time::timeout(LIST_TIMEOUT, ready)
                .await
                .unwrap_or_else(|_| panic!("ledger: the initial list of {what} did not arrive"))
                .unwrap_or_else(|_| panic!("ledger: the watch of {what} ended"));
        }
        ledger
    }

    /// Every violation found so far, as human-readable lines (deterministic order).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.history).violations()
    }

    /// How many Secret versions with distinct (token1, token2) were observed.
    pub fn secret_versions(&self) -> usize {
        lock(&self.history).secret_versions()
    }

    /// Waits for the watches to catch up, then panics listing the violations if there are any.
    pub async fn assert_no_outage(&self) {
        tokio::time::sleep(CATCH_UP).await;
        let (violations, summary) = {
            let history = lock(&self.history);
            (history.violations(), history.summary())
        };
        assert!(
            violations.is_empty(),
            "the token ledger found {} value(s) deactivated while a live or terminating pod may still hold them ({summary}):\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }

    /// The positive control (e.g. the Restart strategy): waits for the watches to catch up, then
    /// panics unless at least one violation was found. Returns the violations.
    pub async fn assert_outage(&self) -> Vec<String> {
        tokio::time::sleep(CATCH_UP).await;
        let (violations, summary) = {
            let history = lock(&self.history);
            (history.violations(), history.summary())
        };
        assert!(
            !violations.is_empty(),
            "the observer is broken: a deactivation under live consumers was expected, but the token ledger found no violation ({summary})"
        );
        violations
    }
}

/// Which Secret a watch follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watched {
    /// The one the pods read.
    Copy,
    /// The pair of record it copies.
    Record,
}

async fn watch_secret(
    api: Api<Secret>,
    name: String,
    history: Arc<Mutex<History>>,
    listed: oneshot::Sender<()>,
    watched: Watched,
) {
    watch_secret_with(api, name, history, listed, watched, None).await;
}

/// Writes the marker ConfigMap with `clock` (retrying every 100 ms while the API server does not
/// answer) and returns its resourceVersion: a point of that cluster's order after now.
async fn mark(clock: &Api<k8s_openapi::api::core::v1::ConfigMap>) -> u64 {
    use kube::api::{Patch, PatchParams};
    let mut sequence = 0u64;
    loop {
        sequence += 1;
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ledger-clock"},
            "data": {"mark": format!("{:?}-{sequence}", std::time::Instant::now())},
        });
        match clock
            .patch(
                "ledger-clock",
                &PatchParams::apply("ledger").force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(written) => match resource_version(&written.metadata) {
                Some(rv) => return rv,
                None => panic!("ledger: a marker without a numeric resourceVersion"),
            },
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The same; a remote record's versions are positioned by a marker written with `clock`.
async fn watch_secret_with(
    api: Api<Secret>,
    name: String,
    history: Arc<Mutex<History>>,
    listed: oneshot::Sender<()>,
    watched: Watched,
    clock: Option<Api<k8s_openapi::api::core::v1::ConfigMap>>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut listed = Some(listed);
    let mut seen_in_list = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                eprintln!("ledger: watching Secret {name}: {error}");
                continue;
            }
        };
        // A remote record's version: its position in the pods' cluster, taken before locking.
        let marker = match (&event, &clock) {
            (watcher::Event::InitApply(_) | watcher::Event::Apply(_), Some(clock)) => {
                Some(mark(clock).await)
            }
            _ => None,
        };
        let mut history = lock(&history);
        match event {
            watcher::Event::Init => seen_in_list = false,
            watcher::Event::InitApply(secret) | watcher::Event::Apply(secret) => {
                seen_in_list = true;
                match (resource_version(&secret.metadata), marker) {
                    (Some(_), Some(marker)) => history.record_observed(marker, &secret),
                    (Some(rv), None) if watched == Watched::Record => {
                        history.record_observed(rv, &secret)
                    }
                    (Some(rv), None) => history.secret_observed(rv, &secret),
                    (None, _) => {
                        eprintln!("ledger: Secret {name} without a numeric resourceVersion")
                    }
                }
            }
            // The record is never deleted under a running test.
            watcher::Event::Delete(_) if watched == Watched::Record => {}
            watcher::Event::Delete(secret) => match resource_version(&secret.metadata) {
                Some(rv) => history.secret_version(rv, None),
                None => history.secret_vanished(),
            },
            watcher::Event::InitDone => match listed.take() {
                Some(listed) => {
                    let _ = listed.send(());
                }
                None if !seen_in_list && watched == Watched::Copy => history.secret_vanished(),
                None => {}
            },
        }
    }
}

async fn watch_pods(api: Api<Pod>, history: Arc<Mutex<History>>, listed: oneshot::Sender<()>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = Some(listed);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                eprintln!("ledger: watching pods: {error}");
                continue;
            }
        };
        let mut history = lock(&history);
        let observe =
            |history: &mut History, pod: &Pod, initial: bool| match resource_version(&pod.metadata)
            {
                Some(rv) => history.pod_observed(rv, pod, initial),
                None => eprintln!("ledger: a pod without a numeric resourceVersion"),
            };
        match event {
            watcher::Event::Init => history.pods_relist_begin(),
            watcher::Event::InitApply(pod) => observe(&mut history, &pod, listed.is_some()),
            watcher::Event::Apply(pod) => observe(&mut history, &pod, false),
            watcher::Event::Delete(pod) => {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                match resource_version(&pod.metadata) {
                    Some(rv) => history.pod_gone(rv, name),
                    None => eprintln!("ledger: pod {name} deleted without a resourceVersion"),
                }
            }
            watcher::Event::InitDone => {
                history.pods_relist_done();
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const SECRET: &str = "telemetry-token";
    const Z: &str = "secret-value-Z";
    const A: &str = "secret-value-A";
    const B: &str = "secret-value-B";
    const C: &str = "secret-value-C";
    const D: &str = "secret-value-D";
    const E: &str = "secret-value-E";

    #[derive(Clone)]
    enum Step {
        Write(u64, Option<(&'static str, &'static str)>),
        Pod(u64, Box<Pod>, bool),
        Gone(u64, &'static str),
        RelistBegin,
        RelistDone,
    }

    fn write(rv: u64, token1: &'static str, token2: &'static str) -> Vec<Step> {
        vec![Step::Write(rv, Some((token1, token2)))]
    }

    fn delete_secret(rv: u64) -> Vec<Step> {
        vec![Step::Write(rv, None)]
    }

    fn gone(rv: u64, name: &'static str) -> Vec<Step> {
        vec![Step::Gone(rv, name)]
    }

    fn observe(rv: u64, pod: Pod) -> Vec<Step> {
        vec![Step::Pod(rv, Box::new(pod), false)]
    }

    fn initial(rv: u64, pod: Pod) -> Vec<Step> {
        vec![Step::Pod(rv, Box::new(pod), true)]
    }

    /// A pod created (Pending) at `created` and seen Running at `started`.
    fn lifecycle(name: &str, spec: Value, created: u64, started: u64) -> Vec<Step> {
        [
            observe(
                created,
                pod(name, spec.clone(), json!({"phase": "Pending"})),
            ),
            observe(started, pod(name, spec, json!({"phase": "Running"}))),
        ]
        .concat()
    }

    fn pod(name: &str, spec: Value, status: Value) -> Pod {
        pod_with(name, &format!("uid-{name}"), json!({}), spec, status)
    }

    fn pod_with(name: &str, uid: &str, metadata: Value, spec: Value, status: Value) -> Pod {
        let mut value = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": spec,
            "status": status,
        });
        if let (Some(target), Some(extra)) =
            (value["metadata"].as_object_mut(), metadata.as_object())
        {
            target.extend(extra.clone());
        }
        serde_json::from_value(value).expect("a valid Pod")
    }

    fn env(secret: &str, key: &str) -> Value {
        json!({"containers": [{"name": "app", "image": "app", "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        ]}]})
    }

    fn env_from(secret: &str) -> Value {
        json!({"containers": [{"name": "app", "image": "app", "envFrom": [{"secretRef": {"name": secret}}]}]})
    }

    fn volume(secret: &str, items: Option<&[&str]>) -> Value {
        let mut source = json!({"secretName": secret});
        if let Some(items) = items {
            source["items"] = items
                .iter()
                .map(|key| json!({"key": key, "path": key}))
                .collect();
        }
        json!({
            "containers": [{"name": "app", "image": "app", "volumeMounts": [{"name": "tokens", "mountPath": "/t"}]}],
            "volumes": [{"name": "tokens", "secret": source}],
        })
    }

    fn no_refs() -> Value {
        json!({"containers": [{"name": "app", "image": "app"}]})
    }

    fn with_ephemeral(key: &str) -> Value {
        json!({
            "containers": [{"name": "app", "image": "app"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "env": [
                {"name": "DEBUG_TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
            ]}],
        })
    }

    fn container_status(name: &str, state: Value) -> Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": state})
    }

    fn running_with_ephemeral() -> Value {
        json!({
            "phase": "Running",
            "ephemeralContainerStatuses": [container_status("debug", json!({"running": {}}))],
        })
    }

    fn run(steps: &[Step]) -> History {
        let mut history = History::new(SECRET, "token1", "token2");
        for step in steps {
            match step {
                Step::Write(rv, values) => history.secret_version(
                    *rv,
                    values.map(|(token1, token2)| (token1.to_string(), token2.to_string())),
                ),
                Step::Pod(rv, pod, initial) => history.pod_observed(*rv, pod, *initial),
                Step::Gone(rv, name) => history.pod_gone(*rv, name),
                Step::RelistBegin => history.pods_relist_begin(),
                Step::RelistDone => history.pods_relist_done(),
            }
        }
        history
    }

    struct Case {
        name: &'static str,
        steps: Vec<Step>,
        /// (pod, value number) of every expected violation.
        expect: Vec<(&'static str, usize)>,
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "env reference to token1 alive across a deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "env reference to token2 created after the previous write",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token2"), 12, 13),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "env reference to token2 started before the previous rotation's write, alive at the next deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token2"), 12, 13),
                    write(20, B, C),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![("p", 2)],
            },
            Case {
                name: "envFrom exposes token1",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env_from(SECRET), 12, 13),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "volume without items exposes both keys for the pod's whole life",
                steps: [
                    write(10, A, B),
                    lifecycle("p", volume(SECRET, None), 12, 13),
                    write(20, B, C),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![("p", 1), ("p", 2)],
            },
            Case {
                name: "volume with only the token1 item is read for the pod's whole life",
                steps: [
                    write(10, A, B),
                    lifecycle("p", volume(SECRET, Some(&["token1"])), 12, 13),
                    write(20, B, C),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![("p", 1), ("p", 2)],
            },
            Case {
                name: "volume with only the token2 item, rolled after the write",
                steps: [
                    write(10, A, B),
                    lifecycle("old", volume(SECRET, Some(&["token2"])), 12, 13),
                    write(20, B, C),
                    lifecycle("new", volume(SECRET, Some(&["token2"])), 22, 23),
                    gone(25, "old"),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "projected volume with a secret source",
                steps: [
                    write(10, A, B),
                    lifecycle(
                        "p",
                        json!({
                            "containers": [{"name": "app", "image": "app"}],
                            "volumes": [{"name": "all", "projected": {"sources": [
                                {"secret": {"name": SECRET, "items": [{"key": "token1", "path": "t"}]}}
                            ]}}],
                        }),
                        12,
                        13,
                    ),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "init container env reference",
                steps: [
                    write(10, A, B),
                    lifecycle(
                        "p",
                        json!({
                            "initContainers": [{"name": "setup", "image": "setup", "env": [
                                {"name": "T", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "token1"}}}
                            ]}],
                            "containers": [{"name": "app", "image": "app"}],
                        }),
                        12,
                        13,
                    ),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "ephemeral container added before the deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", no_refs(), 12, 13),
                    observe(
                        15,
                        pod("p", with_ephemeral("token1"), running_with_ephemeral()),
                    ),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "ephemeral container added after the write resolves the new value",
                steps: [
                    write(10, A, B),
                    lifecycle("p", no_refs(), 12, 13),
                    write(20, B, C),
                    observe(
                        22,
                        pod(
                            "p",
                            with_ephemeral("token2"),
                            json!({"phase": "Running"}),
                        ),
                    ),
                    observe(
                        23,
                        pod("p", with_ephemeral("token2"), running_with_ephemeral()),
                    ),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                // Its env is resolved when it starts, not when the pod started.
                name: "ephemeral container that starts after a write may hold values up to its own start",
                steps: [
                    write(10, A, B),
                    lifecycle("p", no_refs(), 12, 13),
                    write(20, B, C),
                    observe(22, pod("p", with_ephemeral("token1"), json!({"phase": "Running"}))),
                    write(25, C, D),
                    observe(27, pod("p", with_ephemeral("token1"), running_with_ephemeral())),
                    write(30, D, E),
                ]
                .concat(),
                expect: vec![("p", 2), ("p", 3)],
            },
            Case {
                name: "terminating pod still alive at the deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    observe(
                        18,
                        pod_with(
                            "p",
                            "uid-p",
                            json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}),
                            env(SECRET, "token1"),
                            json!({"phase": "Running"}),
                        ),
                    ),
                    write(20, B, C),
                    gone(25, "p"),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "pod deleted before the deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    gone(19, "p"),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "pod that finished (Succeeded) before the deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", volume(SECRET, None), 12, 13),
                    observe(
                        19,
                        pod("p", volume(SECRET, None), json!({"phase": "Succeeded"})),
                    ),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "pod that failed before the deactivation",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    observe(
                        19,
                        pod("p", env(SECRET, "token1"), json!({"phase": "Failed"})),
                    ),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                // The Secret is recreated (A, B) while p waits for it: kubelet can only have
                // resolved A. q was created while Z was in effect, so it may hold Z.
                name: "pod started after the write although created before it (Secret absent at creation)",
                steps: [
                    write(5, Z, A),
                    observe(6, pod("q", env(SECRET, "token1"), json!({"phase": "Pending"}))),
                    delete_secret(8),
                    observe(9, pod("p", env(SECRET, "token1"), json!({"phase": "Pending"}))),
                    write(10, A, B),
                    observe(12, pod("p", env(SECRET, "token1"), json!({"phase": "Running"}))),
                    observe(13, pod("q", env(SECRET, "token1"), json!({"phase": "Running"}))),
                ]
                .concat(),
                expect: vec![("q", 1)],
            },
            Case {
                // The model: env is resolved somewhere between creation and the first Running
                // observation, so a pod created before a deactivating write may hold the old value.
                name: "pod created before a deactivating write and started after it may hold the old value",
                steps: [
                    write(10, A, B),
                    observe(18, pod("p", env(SECRET, "token1"), json!({"phase": "Pending"}))),
                    write(20, B, C),
                    observe(22, pod("p", env(SECRET, "token1"), json!({"phase": "Running"}))),
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                name: "pod created after a deactivating write holds the new value",
                steps: [
                    write(10, A, B),
                    write(20, B, C),
                    lifecycle("p", env(SECRET, "token1"), 22, 23),
                    write(25, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "references to another Secret are ignored",
                steps: [
                    write(10, A, B),
                    lifecycle("env", env("other", "token1"), 12, 13),
                    lifecycle("from", env_from("other"), 12, 13),
                    lifecycle("vol", volume("other", None), 12, 13),
                    lifecycle("key", env(SECRET, "unrelated"), 12, 13),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "initial-list pods count as created before every Secret version",
                steps: [
                    initial(3, pod("t1", env(SECRET, "token1"), json!({"phase": "Running"}))),
                    initial(4, pod("t2", env(SECRET, "token2"), json!({"phase": "Running"}))),
                    initial(5, pod("done", volume(SECRET, None), json!({"phase": "Succeeded"}))),
                    write(10, A, B),
                    write(20, B, C),
                    write(30, C, D),
                ]
                .concat(),
                expect: vec![("t1", 1), ("t2", 2)],
            },
            Case {
                name: "pod that vanished in a relist is gone at the relist's highest rv",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    lifecycle("q", env(SECRET, "token2"), 14, 15),
                    vec![Step::RelistBegin],
                    observe(19, pod("q", env(SECRET, "token2"), json!({"phase": "Running"}))),
                    vec![Step::RelistDone],
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "pod that vanished in a relist is alive before the relist's highest rv",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    write(18, B, C),
                    vec![Step::RelistBegin],
                    observe(19, pod("q", env(SECRET, "token2"), json!({"phase": "Running"}))),
                    vec![Step::RelistDone],
                ]
                .concat(),
                expect: vec![("p", 1)],
            },
            Case {
                // Created somewhere in the gap the relist covers, so possibly before the write
                // made during that gap.
                name: "pod first seen in a relist counts as created before the gap",
                steps: [
                    write(10, A, B),
                    lifecycle("a", no_refs(), 11, 12),
                    write(15, B, C),
                    vec![Step::RelistBegin],
                    observe(16, pod("a", no_refs(), json!({"phase": "Running"}))),
                    observe(17, pod("n", env(SECRET, "token1"), json!({"phase": "Running"}))),
                    vec![Step::RelistDone],
                ]
                .concat(),
                expect: vec![("n", 1)],
            },
            Case {
                name: "a StatefulSet pod recreated under the same name is a new pod",
                steps: [
                    write(10, A, B),
                    observe(12, pod_with("web-0", "uid-1", json!({}), env(SECRET, "token1"), json!({"phase": "Running"}))),
                    gone(15, "web-0"),
                    observe(16, pod_with("web-0", "uid-2", json!({}), env(SECRET, "token2"), json!({"phase": "Running"}))),
                    write(20, B, C),
                ]
                .concat(),
                expect: vec![],
            },
            Case {
                name: "a deleted Secret deactivates nothing",
                steps: [
                    write(10, A, B),
                    lifecycle("p", env(SECRET, "token1"), 12, 13),
                    delete_secret(20),
                    write(30, A, B),
                ]
                .concat(),
                expect: vec![],
            },
        ]
    }

    #[test]
    fn ledger_table() {
        let mut failures = Vec::new();
        for case in cases() {
            let violations = run(&case.steps).violations();
            let matches = violations.len() == case.expect.len()
                && case.expect.iter().all(|(pod, n)| {
                    violations.iter().any(|line| {
                        line.starts_with(&format!("pod {pod} "))
                            && line.contains(&format!("may hold value #{n} "))
                    })
                });
            if !matches {
                failures.push(format!(
                    "{}: expected {:?}, got:\n    {}",
                    case.name,
                    case.expect,
                    violations.join("\n    ")
                ));
            }
            for line in &violations {
                for value in [Z, A, B, C, D, E] {
                    if line.contains(value) {
                        failures.push(format!("{}: a token value printed: {line}", case.name));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn ledger_describes_owner_route_terminating_and_deactivating_version() {
        let spec = json!({"containers": [{"name": "app", "image": "app", "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "token1"}}}
        ]}], "volumes": [{"name": "tokens", "secret": {"secretName": SECRET}}]});
        let owned = json!({"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d", "uid": "rs", "controller": true}
        ]});
        let terminating = json!({
            "ownerReferences": owned["ownerReferences"].clone(),
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        });
        let steps = [
            write(10, A, B),
            observe(
                12,
                pod_with(
                    "api-7d-x",
                    "u1",
                    owned,
                    spec.clone(),
                    json!({"phase": "Running"}),
                ),
            ),
            observe(
                15,
                pod_with(
                    "api-7d-x",
                    "u1",
                    terminating,
                    spec.clone(),
                    json!({"phase": "Running"}),
                ),
            ),
            observe(
                16,
                pod("bare", env(SECRET, "token1"), json!({"phase": "Running"})),
            ),
            write(20, B, C),
        ]
        .concat();
        let violations = run(&steps).violations();
        assert_eq!(
            violations,
            vec![
                "pod api-7d-x (owner ReplicaSet/api-7d, terminating at rv 20) may hold value #1 (token1 as of rv 10) \
                 via container \"app\" env TOKEN -> key token1; volume \"tokens\" -> key token1; \
                 deactivated by Secret version #2 at rv 20 (valid then: value #2 and value #3)",
                "pod bare (owner none, not terminating at rv 20) may hold value #1 (token1 as of rv 10) \
                 via container \"app\" env TOKEN -> key token1; \
                 deactivated by Secret version #2 at rv 20 (valid then: value #2 and value #3)",
            ]
        );
    }

    #[test]
    fn ledger_reports_each_pod_and_value_once() {
        let steps = [
            write(10, A, B),
            lifecycle("p", env(SECRET, "token1"), 12, 13),
            write(20, B, C),
            write(25, B, C),
            write(30, C, D),
            write(40, D, Z),
        ]
        .concat();
        let violations = run(&steps).violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(violations[0].contains("at rv 20"), "{violations:#?}");
    }

    #[test]
    fn ledger_against_the_record_sees_a_copy_left_behind() {
        use k8s_openapi::ByteString;
        let secret = |token1: &str, token2: &str| Secret {
            data: Some(BTreeMap::from([
                ("token1".to_string(), ByteString(token1.as_bytes().to_vec())),
                ("token2".to_string(), ByteString(token2.as_bytes().to_vec())),
            ])),
            ..Secret::default()
        };
        // The copy never changes; the record rotates twice under its reader.
        let steps = [
            write(10, A, B),
            lifecycle("p", env(SECRET, "token1"), 12, 13),
        ]
        .concat();
        let mut history = run(&steps);
        assert!(history.violations().is_empty(), "judged by the copy alone");
        history.record_observed(9, &secret(A, B));
        history.record_observed(20, &secret(B, C));
        history.record_observed(30, &secret(C, D));
        let violations = history.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(violations[0].contains("at rv 20"), "{violations:#?}");
    }

    #[test]
    fn ledger_counts_distinct_secret_versions() {
        let history = run(&[
            write(10, A, B),
            write(15, A, B),
            write(20, B, C),
            delete_secret(25),
            write(30, B, C),
        ]
        .concat());
        assert_eq!(history.secret_versions(), 2);
    }

    #[test]
    fn ledger_reads_custom_keys_from_secret_objects() {
        use k8s_openapi::ByteString;
        let secret = |user: &str, pass: &str| Secret {
            data: Some(BTreeMap::from([
                ("user".to_string(), ByteString(user.as_bytes().to_vec())),
                ("pass".to_string(), ByteString(pass.as_bytes().to_vec())),
                ("token1".to_string(), ByteString(b"ignored".to_vec())),
            ])),
            ..Secret::default()
        };
        let mut history = History::new(SECRET, "user", "pass");
        history.secret_observed(10, &secret(A, B));
        for (rv, pod) in [
            (
                12,
                pod("p", env(SECRET, "user"), json!({"phase": "Running"})),
            ),
            (
                13,
                pod("q", env(SECRET, "token1"), json!({"phase": "Running"})),
            ),
        ] {
            history.pod_observed(rv, &pod, false);
        }
        history.secret_observed(20, &secret(B, C));
        let violations = history.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(
            violations[0].starts_with("pod p ") && violations[0].contains("(user as of rv 10)"),
            "{violations:#?}"
        );
        assert_eq!(history.secret_versions(), 2);
    }

    #[test]
    fn ledger_secret_vanished_in_a_relist_is_a_deletion() {
        let mut history = History::new(SECRET, "token1", "token2");
        history.secret_version(10, Some((A.into(), B.into())));
        history.secret_vanished();
        history.secret_vanished();
        assert_eq!(history.versions.len(), 2);
        assert_eq!(history.versions.get(&11), Some(&None));
    }
}
