//! Watches and the reconcile driver: observe -> decide ([`crate::decide`]) -> apply.
//!
//! Watches are narrow: StreamingTokens in full; Secrets and consumer workloads only when they
//! carry the `streamingtoken.io/token` label, with managedFields stripped before caching. Secrets
//! are watched by metadata only, to wake the right StreamingToken; the reconcile reads the (few)
//! Secrets it needs directly, so no Secret data is ever cached. Pods are watched in the served
//! namespaces but kept only as compact records of the Secrets they reference ([`crate::pods`]):
//! any pod may read a mirror Secret, labelled or not, and none is kept whole.

use crate::api::{MANAGED_BY_LABEL, MANAGER_NAME, ROTATE_ANNOTATION, StreamingToken, TOKEN_LABEL};
use crate::apply;
use crate::cache::WorkloadCache;
use crate::conditions;
use crate::decide::{self, MirrorObservation, ObservedMirror, Plan, Requeue, Snapshot};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pods::{self, PodCache, PodRecord};
use crate::source;
use crate::token::Token;
use crate::workload::{self, ConsumerObservation, PodObservation, WorkloadKind};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Which namespaces the operator serves.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Self::All => Api::all(client.clone()),
            Self::Namespace(namespace) => Api::namespaced(client.clone(), namespace),
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub reporter: Reporter,
    /// Labelled consumer workloads, in compact form.
    pub workloads: Arc<WorkloadCache>,
    /// Pods that reference a Secret or carry the token label, in compact form.
    pub pods: Arc<PodCache>,
    pub metrics: Arc<Metrics>,
    /// True while this replica holds the leader lease; only the leader writes.
    pub leader: watch::Receiver<bool>,
    failures: Mutex<HashMap<(String, String), u32>>,
    halt_after: Option<String>,
    /// True once every cache has its first full list: before that, an empty consumer cache
    /// would look like "no consumers" and let a rotation deactivate Token 1 at once.
    synced: watch::Receiver<bool>,
}

fn token_ref(
    labels: &std::collections::BTreeMap<String, String>,
    namespace: Option<String>,
) -> Option<ObjectRef<StreamingToken>> {
    let name = labels.get(TOKEN_LABEL)?;
    let namespace = namespace?;
    Some(ObjectRef::new(name).within(&namespace))
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// A watch of one workload kind that feeds the compact cache and yields the objects that
/// changed, to wake their StreamingToken.
fn cache_stream<K>(
    api: Api<K>,
    config: watcher::Config,
    cache: Arc<WorkloadCache>,
    kind: WorkloadKind,
    convert: fn(&K) -> workload::CachedWorkload,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(api, config)
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                cache.apply(kind, event, convert);
            }
        })
        .touched_objects()
}

/// Waits until `store` has its first full list. Polls again every half second: the store's
/// readiness signal wakes only one waiter, and the controller waits on it too.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
}

/// Runs the controller until `shutdown` resolves. `ready` is set once every cache has synced.
pub async fn run(
    client: Client,
    scope: Scope,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let labelled = || {
        watcher::Config::default()
            .labels(TOKEN_LABEL)
            .any_semantic()
    };
    // The StreamingTokens are cached in full (their annotations stay; there are few of them).
    let (tokens, token_stream) = reflect(
        scope.api::<StreamingToken>(&client),
        watcher::Config::default().any_semantic(),
    );
    // A deleted StreamingToken is never reconciled again: drop its per-object metrics here (the
    // store has already forgotten it when its deletion passes by).
    let token_stream = {
        let store = tokens.clone();
        let metrics = metrics.clone();
        token_stream.inspect(move |result| {
            if let Ok(token) = result
                && store.get(&ObjectRef::from_obj(token)).is_none()
            {
                metrics.forget(&token.namespace().unwrap_or_default(), &token.name_any());
            }
        })
    };
    let workloads = Arc::new(WorkloadCache::default());
    let deployment_stream = cache_stream(
        scope.api::<Deployment>(&client),
        labelled(),
        workloads.clone(),
        WorkloadKind::Deployment,
        workload::cache_deployment,
    );
    let statefulset_stream = cache_stream(
        scope.api::<StatefulSet>(&client),
        labelled(),
        workloads.clone(),
        WorkloadKind::StatefulSet,
        workload::cache_statefulset,
    );
    let daemonset_stream = cache_stream(
        scope.api::<DaemonSet>(&client),
        labelled(),
        workloads.clone(),
        WorkloadKind::DaemonSet,
        workload::cache_daemonset,
    );
    let secrets = watcher(scope.api::<PartialObjectMeta<Secret>>(&client), labelled())
        .default_backoff()
        .touched_objects();
    let pod_records = Arc::new(PodCache::default());
    let pods = pods::watch(
        scope.api::<Pod>(&client),
        pod_records.clone(),
        tokens.clone(),
    );

    let context = Arc::new(Context {
        client: client.clone(),
        reporter,
        workloads: workloads.clone(),
        pods: pod_records.clone(),
        metrics,
        leader: leader.clone(),
        failures: Mutex::new(HashMap::new()),
        // The crash-safety tests' halt hook exists only in builds with the `e2e` feature (the
        // ones `make test` runs); a release build ignores the variable.
        halt_after: if cfg!(feature = "e2e") {
            std::env::var("STREAMING_TOKEN_OPERATOR_HALT_AFTER").ok()
        } else {
            None
        },
        synced: ready.subscribe(),
    });

    let token_store = tokens.clone();
    tokio::spawn(async move {
        let synced = synced(&token_store).await;
        while !workloads.ready() || !pod_records.ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if synced {
            info!("caches synced");
            let _ = ready.send(true);
        }
    });

    // A replica that becomes leader re-reconciles everything: it skipped work while standby.
    let became_leader = futures::stream::unfold(leader.clone(), |mut receiver| async move {
        loop {
            receiver.changed().await.ok()?;
            if *receiver.borrow_and_update() {
                return Some(((), receiver));
            }
        }
    });

    Controller::for_stream(token_stream, tokens)
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(16)
                .debounce(Duration::from_millis(50)),
        )
        .watches_stream(secrets, |secret| {
            token_ref(secret.labels(), secret.namespace())
        })
        .watches_stream(deployment_stream, |object| {
            token_ref(object.labels(), object.namespace())
        })
        .watches_stream(statefulset_stream, |object| {
            token_ref(object.labels(), object.namespace())
        })
        .watches_stream(daemonset_stream, |object| {
            token_ref(object.labels(), object.namespace())
        })
        .reconcile_on(pods)
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error, "controller event");
            }
        })
        .await;
}

async fn reconcile(token: Arc<StreamingToken>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    if token.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !*context.leader.borrow() {
        // A standby keeps its caches warm and writes nothing.
        return Ok(Action::await_change());
    }
    if !*context.synced.borrow() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // Whole seconds: Kubernetes serializes times to the second, and a status compared with its
    // stored copy must not differ by a fraction of a second (that would write on every reconcile).
    let now =
        Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());
    let mut snapshot = observe(&token, &context, &now).await?;
    let mut plan = decide::plan(&snapshot, &now);
    if plan.deactivates {
        // The decision that deactivates Token 1 is taken again on pods read afresh from the API
        // server (a consistent list), so no watch lag can hide a pod that may still hold it.
        let fresh = pods::list_fresh(&context.client, &namespace)
            .await
            .map_err(|source| Error::ListPods {
                namespace: namespace.clone(),
                source,
            })?;
        with_pods(
            &mut snapshot,
            fresh.into_iter().map(Arc::new).collect(),
            &now,
        );
        plan = decide::plan(&snapshot, &now);
        debug!(%namespace, %name, still_deactivates = plan.deactivates, "deactivation re-decided on a fresh pod list");
    }
    let result = execute(&token, &context, &snapshot, plan).await;
    context.metrics.observe_reconcile(
        &namespace,
        &name,
        started.elapsed(),
        result.as_ref().err().map(Error::reason),
    );
    result
}

async fn execute(
    token: &StreamingToken,
    context: &Context,
    snapshot: &Snapshot,
    mut plan: Plan,
) -> Result<Action, Error> {
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    if let Err(error) = write(token, context, snapshot, &mut plan).await {
        if matches!(error, Error::NotLeader) {
            // The new leader reconciles everything; this replica waits to lead again.
            info!(%namespace, %name, "stopped leading mid-reconcile; writes stopped");
            return Ok(Action::await_change());
        }
        report_write_failure(token, context, &error).await;
        return Err(error);
    }
    for notice in &plan.events {
        info!(%namespace, %name, reason = notice.reason, message = %notice.message, "event");
        apply::event(&context.client, &context.reporter, token, notice).await;
    }
    context.metrics.observe_status(
        &namespace,
        &name,
        token.status.as_ref(),
        &plan.status,
        &plan.events,
    );

    let key = (namespace.clone(), name.clone());
    let mut failures = context
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match plan.failed {
        Some(reason) => {
            context.metrics.observe_problem(reason);
            *failures.entry(key).or_insert(0) += 1;
            warn!(%namespace, %name, reason, "needs attention");
        }
        None => {
            failures.remove(&key);
        }
    }
    Ok(match plan.requeue {
        Requeue::Never => Action::await_change(),
        Requeue::After(after) => Action::requeue(after),
    })
}

/// The writes of a plan, in order: the Secret first (consumers are only ever pointed at keys
/// that exist), then consumers, then the status that records what was done.
async fn write(
    token: &StreamingToken,
    context: &Context,
    snapshot: &Snapshot,
    plan: &mut Plan,
) -> Result<(), Error> {
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    if let Some(write) = &plan.secret {
        still_leader(context)?;
        apply::secret(&context.client, token, write).await?;
        info!(%namespace, %name, secret = %snapshot.secret_name, token1_serial = write.identities[0].serial, token2_serial = write.identities[1].serial, "mirror Secret written");
        halt_point(context, "secret").await;
    }
    let mut refused = Vec::new();
    for patch in &plan.consumer_patches {
        still_leader(context)?;
        match apply::consumer(&context.client, &namespace, patch).await {
            Ok(()) => {
                info!(%namespace, %name, kind = patch.kind.as_str(), consumer = %patch.name, rotation = %patch.rotation_id, "consumer patched");
                halt_point(context, "consumer").await;
            }
            // Someone changed the workload since it was read: look again soon.
            Err(error) if error.is_conflict() => return Err(error),
            // One consumer the API server refuses (a webhook, a policy, an invalid merge) must
            // not stop the others from being repointed: it is reported and retried.
            Err(error) => {
                warn!(%namespace, %name, kind = patch.kind.as_str(), consumer = %patch.name, reason = error.reason(), error = %error, "consumer apply refused");
                refused.push((patch.kind.as_str(), patch.name.clone(), error));
            }
        }
    }
    if !refused.is_empty() {
        report_refused(snapshot, plan, refused);
    }
    if token.status.as_ref() != Some(&plan.status) {
        still_leader(context)?;
        apply::status(&context.client, token, &plan.status).await?;
        debug!(%namespace, %name, "status written");
        let phase = plan
            .status
            .rotation
            .as_ref()
            .map_or("Idle", |rotation| rotation.phase.as_str());
        halt_point(context, &format!("status:{phase}")).await;
    }
    Ok(())
}

/// Leadership is checked again before every write: a replica that stepped down mid-reconcile
/// (its lease renewals failing) writes nothing more.
fn still_leader(context: &Context) -> Result<(), Error> {
    if *context.leader.borrow() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

/// Consumers whose apply the API server refused join `status.consumers.blocked` (reason
/// `ConsumerApplyRefused`) with `Degraded=True ConsumerBlocked`, and a Warning Event when one is
/// newly refused; the reconcile comes back with backoff.
fn report_refused(
    snapshot: &Snapshot,
    plan: &mut Plan,
    refused: Vec<(&'static str, String, Error)>,
) {
    const REASON: &str = "ConsumerApplyRefused";
    let before: Vec<(String, String)> = snapshot
        .status
        .consumers
        .iter()
        .flat_map(|summary| summary.blocked.iter())
        .filter(|blocked| blocked.reason == REASON)
        .map(|blocked| (blocked.kind.clone(), blocked.name.clone()))
        .collect();
    let mut newly = Vec::new();
    let summary = plan.status.consumers.get_or_insert_default();
    for (kind, name, error) in refused {
        if !before.contains(&(kind.to_string(), name.clone())) {
            newly.push(format!("{kind}/{name}"));
        }
        summary
            .blocked
            .retain(|blocked| !(blocked.kind == kind && blocked.name == name));
        summary.blocked.push(crate::api::BlockedConsumer {
            kind: kind.into(),
            name,
            reason: REASON.into(),
            message: format!(
                "the API server refused the operator's apply ({error}); fix what refuses it (an admission policy, or a variable that also sets configMapKeyRef or fieldRef); other consumers continue"
            ),
        });
    }
    summary
        .blocked
        .truncate(decide::rotation::MAX_BLOCKED_LISTED);
    let rotation_id = plan
        .status
        .rotation
        .as_ref()
        .map_or("", |rotation| rotation.id.as_str());
    let message = decide::rotation::blocked_message(rotation_id, &summary.blocked);
    let now =
        Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());
    conditions::set(
        &mut plan.status.conditions,
        conditions::DEGRADED,
        true,
        "ConsumerBlocked",
        message,
        Some(snapshot.generation),
        &now,
    );
    if !newly.is_empty() {
        plan.events.push(decide::Notice::warning(
            REASON,
            "Rotate",
            format!(
                "the API server refused the apply to {}; the other consumers continue",
                newly.join(", ")
            ),
        ));
    }
    plan.requeue = Requeue::After(decide::backoff(snapshot.failures));
}

/// A write the API server refused is reported on the StreamingToken (a `Degraded` condition and
/// a Warning Event, once per reason) before the reconcile retries with backoff. Conflicts are
/// the normal price of optimistic concurrency and are retried silently.
async fn report_write_failure(token: &StreamingToken, context: &Context, error: &Error) {
    if error.is_conflict() {
        return;
    }
    let reason = error.reason();
    let mut status = token.status.clone().unwrap_or_default();
    if conditions::get(&status.conditions, conditions::DEGRADED)
        .is_some_and(|condition| condition.status == "True" && condition.reason == reason)
    {
        return;
    }
    let now =
        Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());
    let message = error.to_string();
    conditions::set(
        &mut status.conditions,
        conditions::DEGRADED,
        true,
        reason,
        message.clone(),
        token.metadata.generation,
        &now,
    );
    if let Err(status_error) = apply::status(&context.client, token, &status).await {
        debug!(error = %status_error, "could not record the failed write in status");
    }
    let notice = decide::Notice::warning(reason, "Reconcile", message);
    apply::event(&context.client, &context.reporter, token, &notice).await;
}

/// Crash-safety tests stop the operator right after a given write (`secret`, `consumer`,
/// `status:<phase>`) through `STREAMING_TOKEN_OPERATOR_HALT_AFTER`, then SIGKILL it there. Unset
/// in production, where this is a no-op.
async fn halt_point(context: &Context, step: &str) {
    if context.halt_after.as_deref() == Some(step) {
        warn!(step, "test halt point reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

fn error_policy(token: Arc<StreamingToken>, error: &Error, context: Arc<Context>) -> Action {
    let key = (token.namespace().unwrap_or_default(), token.name_any());
    let failures = {
        let mut failures = context
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.clone()).or_insert(0);
        *count += 1;
        *count
    };
    if error.is_conflict() {
        // The normal price of optimistic concurrency: retried, not worth a warning.
        debug!(namespace = %key.0, name = %key.1, reason = error.reason(), failures, "conflict; retrying");
    } else {
        warn!(namespace = %key.0, name = %key.1, reason = error.reason(), error = %error, failures, "reconcile failed");
    }
    if error.is_conflict() && failures <= 3 {
        // Someone changed the object since it was read: look again at once (a few times; then
        // back off, in case the cached copy stays stale).
        return Action::requeue(Duration::from_millis(200));
    }
    Action::requeue(decide::backoff(failures.saturating_sub(1)))
}

/// Gathers the snapshot `plan` decides on.
async fn observe(token: &StreamingToken, context: &Context, now: &Time) -> Result<Snapshot, Error> {
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(context.client.clone(), &namespace);
    let secret_name = token.secret_name();

    let mirror = match secrets
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name.clone(),
            source,
        })? {
        None => MirrorObservation::Missing,
        Some(secret) => classify_mirror(token, &secret),
    };

    let source = source::from_spec(&token.spec.source);
    let observed_source = source.observe(&secrets).await?;
    let (consumers, pods) = observe_consumers(token, context, now).await?;
    let fresh = source.fresh()?;
    let failures = context
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&(namespace.clone(), name.clone()))
        .copied()
        .unwrap_or(0);
    Ok(Snapshot {
        uid: token.uid().unwrap_or_default(),
        rotate_request: token.annotations().get(ROTATE_ANNOTATION).cloned(),
        name,
        namespace,
        generation: token.metadata.generation.unwrap_or(0),
        spec: token.spec.clone(),
        status: token.status.clone().unwrap_or_default(),
        secret_name,
        mirror,
        source: observed_source,
        consumers,
        pods,
        fresh,
        failures,
    })
}

fn classify_mirror(token: &StreamingToken, secret: &Secret) -> MirrorObservation {
    let labels = secret.labels();
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGER_NAME) {
        return MirrorObservation::NotOwned;
    }
    match labels.get(TOKEN_LABEL) {
        Some(owner) if *owner == token.name_any() => {}
        Some(owner) => return MirrorObservation::ClaimedBy(owner.clone()),
        None => return MirrorObservation::NotOwned,
    }
    let read = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|value| Token::parse(&value.0))
    };
    let uid = token.uid();
    MirrorObservation::Owned(ObservedMirror {
        resource_version: secret.resource_version(),
        token1: read(&token.spec.secret.token1_key),
        token2: read(&token.spec.secret.token2_key),
        labels: labels.clone(),
        annotations: secret.annotations().clone(),
        owner_uids: secret
            .owner_references()
            .iter()
            .filter(|reference| Some(&reference.uid) == uid.as_ref())
            .map(|reference| reference.uid.clone())
            .collect(),
        values_written_at: secret
            .managed_fields()
            .iter()
            .filter_map(|entry| entry.time.as_ref().map(|time| time.0.as_second()))
            .max(),
    })
}

async fn observe_consumers(
    token: &StreamingToken,
    context: &Context,
    now: &Time,
) -> Result<(Vec<ConsumerObservation>, Vec<Arc<PodRecord>>), Error> {
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    let env_var = &token.spec.consumers.env_var;
    let secret = token.secret_name();
    let mut consumers: Vec<ConsumerObservation> = context
        .workloads
        .consumers(&namespace, &name)
        .iter()
        .map(|workload| workload.observe(env_var, &secret))
        .collect();
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let records = context.pods.in_namespace(&namespace);
    attach_pods(&mut consumers, &records, now);
    Ok((consumers, records))
}

/// Replaces the snapshot's pods (and each consumer's own) with `records`.
fn with_pods(snapshot: &mut Snapshot, records: Vec<Arc<PodRecord>>, now: &Time) {
    attach_pods(&mut snapshot.consumers, &records, now);
    snapshot.pods = records;
}

/// Each consumer's pods: the records it controls (a Deployment through its ReplicaSets).
/// Grouped by owner once, so a reconcile costs one pass over the namespace's pods.
fn attach_pods(consumers: &mut [ConsumerObservation], records: &[Arc<PodRecord>], now: &Time) {
    let now = now.0.as_second();
    let mut by_owner: HashMap<(&str, &str), Vec<PodObservation>> = HashMap::new();
    for record in records {
        let Some(owner) = &record.owner else {
            continue;
        };
        by_owner
            .entry((owner.kind.as_str(), owner.name.as_str()))
            .or_default()
            .push(PodObservation {
                name: record.name.clone(),
                rotation: record.rotation.clone(),
                terminating: record.terminating(),
                // deletionTimestamp is when the grace period ends; past it, only a finalizer
                // keeps the pod (and whatever token it holds) around.
                held_by: record.held_by(now).to_vec(),
            });
    }
    for consumer in consumers {
        let pods = by_owner
            .remove(&(consumer.kind.as_str(), consumer.name.as_str()))
            .unwrap_or_default();
        consumer.pods = Some(pods);
    }
}
