//! The reconcile driver: observe ([`observe`], [`platform`]) -> decide ([`crate::decide`]) ->
//! apply ([`crate::apply`]), on the watches of [`watches`].

mod members;
mod observe;
mod platform;
mod recheck;
mod watches;

pub use observe::selected_namespaces;
use observe::*;
use platform::*;
pub use watches::run;

use crate::api::{
    CLUSTER_TOKEN_LABEL, ClusterStreamingToken, MANAGED_BY_LABEL, MANAGER_NAME, StreamingToken,
    TOKEN_LABEL, UnselectedPolicy,
};
use crate::apply;
use crate::decide::{
    self, CopyObservation, MirrorObservation, NamespaceView, ObservedMirror, Plan,
    PlatformObservation, Requeue, Snapshot, SourceObservation, SourceProblem,
};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::consumer::ConsumerPatch;
use crate::model::pod::PodRecord;
use crate::model::reason;
use crate::platform::{Platform, RotateOutcome};
use crate::pods::{self, PodCache};
use crate::source;
use crate::target::Target;
use crate::token::Token;
use crate::workload::{self, cache::WorkloadCache};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
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
    /// The one namespace served, or `None` for every namespace.
    fn namespace(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Namespace(namespace) => Some(namespace),
        }
    }

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

/// What one controller serves besides its scope.
#[derive(Debug, Clone)]
pub struct Serve {
    /// StreamingTokens of the scope.
    pub namespaced: bool,
    /// ClusterStreamingTokens (needs every namespace in scope).
    pub cluster: bool,
    /// Only the ClusterStreamingTokens with these labels.
    pub cluster_token_selector: Option<String>,
    /// Where ClusterStreamingTokens keep their pair of record (the operator's namespace).
    pub home_namespace: String,
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
    /// Platform clients by object uid (with the spec they were built from, and when).
    platforms: Mutex<HashMap<String, PlatformEntry>>,
    /// Rotate calls made whose outcome could not be recorded in status, by object uid.
    unrecorded_calls: Mutex<HashMap<String, (i32, String, String)>>,
    /// The consumers this process started in each object's rotation in progress, by object uid:
    /// `(rotation id, record)`. Merged into the observed status, which the StreamingToken watch
    /// may deliver after the workloads' (see [`remember_starts`]).
    started: Mutex<HashMap<String, (String, Vec<crate::api::ConsumerStart>)>>,
    halt_after: Option<String>,
    /// True once every cache has its first full list: before that, an empty consumer cache
    /// would look like "no consumers" and let a rotation deactivate Token 1 at once.
    synced: watch::Receiver<bool>,
    /// StreamingTokens: whether one owns a namespace's consumer label.
    tokens: Store<StreamingToken>,
    /// False when this instance leaves StreamingTokens to another (`--kinds`).
    serve_namespaced: bool,
    /// What ClusterStreamingTokens need (only when every namespace is served).
    cluster: Option<ClusterContext>,
    /// Clients of member clusters (`spec.clusters`).
    members: members::MemberClients,
}

/// What ClusterStreamingTokens need besides the shared caches.
struct ClusterContext {
    /// Where they keep their pair of record: the operator's namespace.
    home_namespace: String,
    /// Namespaces (metadata): what their selectors match.
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Their mirror Secrets (metadata), to find those in namespaces no longer selected.
    copies: Store<PartialObjectMeta<Secret>>,
    /// Copies last read holding the pair of record: `(token, namespace)` -> (the copy's
    /// resourceVersion, the pair of record's, when the copy's values were written). While both
    /// resourceVersions stay the same the copy is not read again, except for a decision that
    /// deactivates Token 1, which reads every copy afresh.
    in_sync: Mutex<HashMap<(String, String), InSync>>,
}

/// A platform client and what it was built from.
struct PlatformEntry {
    spec: String,
    built: Instant,
    client: Arc<Platform>,
}

/// A copy last read holding the pair of record.
struct InSync {
    copy_version: String,
    record_version: String,
    values_written_at: Option<i64>,
}

async fn reconcile_namespaced(
    token: Arc<StreamingToken>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    if !context.serve_namespaced {
        // Another instance serves them; this one only keeps the watches that wake its
        // ClusterStreamingTokens.
        return Ok(Action::await_change());
    }
    reconcile(Target::Namespaced(token), context).await
}

async fn reconcile_cluster(
    token: Arc<ClusterStreamingToken>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    reconcile(Target::Cluster(token), context).await
}

fn error_policy_namespaced(
    token: Arc<StreamingToken>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    error_policy(&Target::Namespaced(token), error, &context)
}

fn error_policy_cluster(
    token: Arc<ClusterStreamingToken>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    error_policy(&Target::Cluster(token), error, &context)
}

/// Whole seconds: Kubernetes serializes times to the second, and a status compared with its
/// stored copy must not differ by a fraction of a second (that would write on every reconcile).
fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

async fn reconcile(target: Target, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let (namespace, name) = target.key();
    if target.deleting() {
        return Ok(Action::await_change());
    }
    if !*context.leader.borrow() {
        // A standby keeps its caches warm and writes nothing.
        return Ok(Action::await_change());
    }
    if !*context.synced.borrow() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let now = now();
    let mut snapshot = observe(&target, &context, &now, false).await?;
    let mut plan = decide::plan(&snapshot, &now);
    let mut checked_at = None;
    if plan.deactivates {
        // The decision that deactivates Token 1 is taken again on every Secret read afresh and
        // on pods read afresh from the API server (a consistent list per namespace, the
        // namespaces listed at once), so no watch lag can hide a pod that may still hold it,
        // nor a copy that changed.
        if target.kind() == decide::TokenKind::Cluster {
            snapshot = observe(&target, &context, &now, true).await?;
        }
        checked_at = Some(Instant::now());
        fresh_pods(&target, &context, &mut snapshot, &now).await?;
        pause_point(&context, "checked").await;
        plan = decide::plan(&snapshot, &now);
        debug!(%namespace, %name, still_deactivates = plan.deactivates, "deactivation re-decided on a fresh pod list");
    }
    remember_copies_in_sync(&target, &context, &snapshot);
    if let Some(next) = next_platform_check(&target, &context, &snapshot) {
        plan.requeue = match plan.requeue {
            Requeue::After(after) if after <= next => Requeue::After(after),
            _ => Requeue::After(next),
        };
    }
    let result = execute(&target, &context, &snapshot, plan, checked_at).await;
    context.metrics.observe_reconcile(
        &namespace,
        &name,
        started.elapsed(),
        result.as_ref().err().map(Error::reason),
    );
    result
}

/// Lists every namespace's pods afresh, a few namespaces at once, into `snapshot`.
async fn fresh_pods(
    target: &Target,
    context: &Context,
    snapshot: &mut Snapshot,
    now: &Time,
) -> Result<(), Error> {
    let lists: Vec<_> = snapshot
        .namespaces
        .iter()
        .map(|view| {
            let route = members::route(target, context, &view.namespace);
            let namespace = view.namespace.clone();
            async move {
                let (client, local) = route?;
                pods::list_fresh(&client, &local)
                    .await
                    .map_err(|source| Error::ListPods { namespace, source })
            }
        })
        .collect();
    let lists: Vec<_> = futures::stream::iter(lists).buffered(16).collect().await;
    for (view, fresh) in snapshot.namespaces.iter_mut().zip(lists) {
        let fresh = fresh?;
        observe::set_pods(target, view, fresh.into_iter().map(Arc::new).collect(), now);
    }
    Ok(())
}

async fn execute(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    mut plan: Plan,
    checked_at: Option<Instant>,
) -> Result<Action, Error> {
    let (namespace, name) = target.key();
    if let Err(error) = write(target, context, snapshot, &mut plan, checked_at).await {
        if matches!(error, Error::NotLeader) {
            // The new leader reconciles everything; this replica waits to lead again.
            info!(%namespace, %name, "stopped leading mid-reconcile; writes stopped");
            return Ok(Action::await_change());
        }
        report_write_failure(target, context, &error).await;
        return Err(error);
    }
    notify(target, context, snapshot, &plan);
    for notice in &plan.events {
        info!(%namespace, %name, reason = notice.reason, message = %notice.message, "event");
        apply::event(
            &context.client,
            &context.reporter,
            &target.object_ref(),
            notice,
        )
        .await;
    }
    // A ClusterStreamingToken's Events are repeated on its mirror Secret in the namespaces they
    // concern, where that namespace's people look (and only what concerns them).
    let copies = copy_notices(snapshot, &plan);
    futures::stream::iter(copies)
        .for_each_concurrent(8, |(copy, notice)| async move {
            apply::event(&context.client, &context.reporter, &copy, &notice).await;
        })
        .await;
    context.metrics.observe_status(
        &namespace,
        &name,
        target.status(),
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

/// Where a ClusterStreamingToken's notices are repeated: those about a namespace on its copy,
/// also one deleted now (the Warning said before it goes) or revoked (`reached`); those about
/// the pair only where the pair is served (`served`).
fn copy_audiences<'a>(snapshot: &'a Snapshot, plan: &Plan) -> (Vec<&'a str>, Vec<&'a str>) {
    let reached: Vec<&str> = snapshot
        .namespaces
        .iter()
        .filter(|view| !matches!(view.copy, CopyObservation::Home) && view.serves_pair())
        .filter(|view| view.membership != decide::Membership::Source)
        .map(|view| view.namespace.as_str())
        .collect();
    let served = snapshot
        .namespaces
        .iter()
        .filter(|view| reached.contains(&view.namespace.as_str()))
        .filter(|view| view.membership != decide::Membership::Revoked)
        .filter(|view| !plan.copy_deletes.contains(&view.namespace))
        .map(|view| view.namespace.as_str())
        .collect();
    (reached, served)
}

/// Once status records them: forgets the delivery outcomes the plan recorded, and starts the
/// webhook notifications now due (beside the reconcile, see [`crate::notify`]).
fn notify(target: &Target, context: &Context, snapshot: &Snapshot, plan: &Plan) {
    let outbox = crate::notify::outbox();
    outbox.settle(&snapshot.uid, &snapshot.notifications);
    let Some(notifications) = &snapshot.spec.rotation.notifications else {
        return;
    };
    let outgoing = decide::notifications::due(&plan.status, &snapshot.notifications, &now());
    if outgoing.is_empty() {
        return;
    }
    let webhook = notifications.webhook.clone();
    let secret_namespace = match target {
        Target::Namespaced(_) => target.namespace(),
        Target::Cluster(_) => webhook
            .url_secret_ref
            .namespace
            .clone()
            .unwrap_or_else(|| snapshot.namespace.clone()),
    };
    let namespace = target.namespace();
    outbox.dispatch(crate::notify::Dispatch {
        client: context.client.clone(),
        metrics: context.metrics.clone(),
        webhook,
        secret_namespace,
        subject: crate::notify::Subject {
            kind: target.kind().as_str(),
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: target.name(),
            uid: snapshot.uid.clone(),
        },
        outgoing,
    });
}

/// Events of a ClusterStreamingToken's plan as they are repeated on its mirror Secrets: those
/// about the pair and the rotation on every copy; those about a namespace on its copy only;
/// blocked consumers on the copy of their own namespace. Never another namespace's workloads.
fn copy_notices(snapshot: &Snapshot, plan: &Plan) -> Vec<(ObjectReference, decide::Notice)> {
    const ABOUT_THE_PAIR: &[&str] = &[
        reason::TOKENS_ISSUED,
        reason::TOKENS_MIRRORED,
        reason::SOURCE_PROMOTED,
        reason::SOURCE_PROMOTED_EARLY,
        reason::SOURCE_REPLACED,
        reason::ROTATION_STARTED,
        reason::ROTATION_QUEUED,
        reason::ROTATION_ABORTED,
        reason::ROTATION_COMPLETED,
        reason::TOKEN_DEACTIVATED,
        reason::MIRROR_LOST_DURING_ROTATION,
    ];
    if snapshot.kind != decide::TokenKind::Cluster {
        return Vec::new();
    }
    let copy = |namespace: &str| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.to_string()),
        name: Some(snapshot.secret_name.clone()),
        ..ObjectReference::default()
    };
    let (reached, served) = copy_audiences(snapshot, plan);
    let mut notices = Vec::new();
    for notice in &plan.events {
        if ABOUT_THE_PAIR.contains(&notice.reason) {
            notices.extend(
                served
                    .iter()
                    .map(|namespace| (copy(namespace), notice.clone())),
            );
        } else if let Some(namespace) = &notice.namespace {
            if reached.contains(&namespace.as_str()) {
                notices.push((copy(namespace), notice.clone()));
            }
        } else if notice.reason == reason::CONSUMER_BLOCKED {
            for entry in &plan.status.namespaces {
                if entry.blocked.is_empty() || !served.contains(&entry.name.as_str()) {
                    continue;
                }
                let list: Vec<String> = entry
                    .blocked
                    .iter()
                    .map(|blocked| {
                        format!("{}/{} ({})", blocked.kind, blocked.name, blocked.reason)
                    })
                    .collect();
                notices.push((
                    copy(&entry.name),
                    decide::Notice::warning(
                        reason::CONSUMER_BLOCKED,
                        notice.action,
                        format!(
                            "the rotation of this Secret's pair waits for {} here; Token 1 stays active until they are verified",
                            list.join(", ")
                        ),
                    ),
                ));
            }
        }
    }
    notices
}

/// The writes of a plan, in order: the Secret of record first, then its copies (consumers are
/// only ever pointed at keys that exist), then consumers, then the status that records what was
/// done.
async fn write(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    plan: &mut Plan,
    checked_at: Option<Instant>,
) -> Result<(), Error> {
    let (namespace, name) = target.key();
    if let Some(attempt) = plan.platform_rotate {
        return rotate_at_platform(target, context, plan, attempt).await;
    }
    if let Some(write) = &plan.secret {
        still_leader(context)?;
        apply::secret(&context.client, target, &snapshot.namespace, write).await?;
        info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %snapshot.namespace, token1_serial = write.identities[0].serial, token2_serial = write.identities[1].serial, "mirror Secret written");
        halt_point(context, "secret").await;
    }
    let copy_failure = write_copies(target, context, snapshot, plan).await?;
    if let Some(checked_at) = checked_at
        && recheck::deactivated(snapshot, plan)
    {
        let slipped = recheck::after_deactivation(target, context, snapshot, checked_at).await;
        plan.events.extend(slipped);
    }
    delete_copies(target, context, snapshot, plan).await?;
    remember_starts(target, context, plan);
    let refused = write_consumers(target, context, plan).await?;
    if !refused.is_empty() {
        decide::after_write::consumers_refused(snapshot, plan, &refused, &now());
    }
    write_status(target, context, plan).await?;
    match copy_failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Writes a ClusterStreamingToken's copies. One namespace that refuses its copy (a policy, a
/// namespace being deleted) must not keep the others from theirs: it is logged, stays
/// unverified, and returned for the reconcile to retry.
async fn write_copies(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    plan: &Plan,
) -> Result<Option<Error>, Error> {
    let (namespace, name) = target.key();
    let mut copy_failure = None;
    // Written a few at once: the window between the pod check and the last copy's write is then
    // about one write long, however many namespaces there are.
    let writes: Vec<_> = plan
        .copies
        .iter()
        .map(|copy| async move {
            let result = match still_leader(context)
                .and_then(|()| members::route(target, context, &copy.namespace))
            {
                Ok((client, local)) => apply::secret(&client, target, &local, &copy.write).await,
                Err(error) => Err(error),
            };
            (copy.namespace.clone(), result)
        })
        .collect();
    let results: Vec<(String, Result<(), Error>)> = futures::stream::iter(writes)
        .buffer_unordered(16)
        .collect()
        .await;
    for (copy_namespace, result) in results {
        match result {
            Ok(()) => {
                info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %copy_namespace, "mirror Secret copy written");
            }
            Err(error) if error.is_conflict() || matches!(error, Error::NotLeader) => {
                return Err(error);
            }
            Err(error) => {
                warn!(%namespace, %name, secret_namespace = %copy_namespace, reason = error.reason(), error = %error, "mirror Secret copy refused");
                copy_failure.get_or_insert(error);
            }
        }
    }
    if !plan.copies.is_empty() {
        halt_point(context, "copies").await;
    }
    Ok(copy_failure)
}

/// Deletes the copies of namespaces no longer selected that nothing reads.
async fn delete_copies(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    plan: &Plan,
) -> Result<(), Error> {
    let (namespace, name) = target.key();
    for copy_namespace in &plan.copy_deletes {
        still_leader(context)?;
        // The version the decision saw: a copy written or read since is not deleted (a
        // conflict, and the next pass decides again).
        let version = snapshot
            .namespaces
            .iter()
            .find(|view| view.namespace == *copy_namespace)
            .and_then(|view| match &view.copy {
                CopyObservation::Read(copy) => copy.resource_version.clone(),
                CopyObservation::Current {
                    resource_version, ..
                } => Some(resource_version.clone()),
                _ => None,
            });
        let (client, local) = members::route(target, context, copy_namespace)?;
        apply::delete_copy(&client, target, &local, version).await?;
        info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %copy_namespace, "mirror Secret deleted from a namespace no longer selected");
    }
    Ok(())
}

/// Repoints or restarts consumers; the ones the API server refuses are returned (the others'
/// writes stand).
async fn write_consumers(
    target: &Target,
    context: &Context,
    plan: &Plan,
) -> Result<Vec<decide::after_write::RefusedApply>, Error> {
    let (namespace, name) = target.key();
    let mut refused = Vec::new();
    for patch in &plan.consumer_patches {
        still_leader(context)?;
        let written = match members::route(target, context, &patch.namespace) {
            Ok((client, local)) => {
                let routed = ConsumerPatch {
                    namespace: local,
                    ..patch.clone()
                };
                apply::consumer(&client, &routed).await
            }
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => {
                info!(%namespace, %name, consumer_namespace = %patch.namespace, kind = patch.kind.as_str(), consumer = %patch.name, rotation = %patch.rotation_id, "consumer patched");
                halt_point(context, "consumer").await;
            }
            // Someone changed the workload since it was read: look again soon.
            Err(error) if error.is_conflict() => return Err(error),
            // One consumer the API server refuses (a webhook, a policy, an invalid merge) must
            // not stop the others from being repointed: it is reported and retried.
            Err(error) => {
                warn!(%namespace, %name, consumer_namespace = %patch.namespace, kind = patch.kind.as_str(), consumer = %patch.name, reason = error.reason(), error = %error, "consumer apply refused");
                refused.push(decide::after_write::RefusedApply {
                    kind: patch.kind,
                    namespace: patch.namespace.clone(),
                    name: patch.name.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
    Ok(refused)
}

/// Remembers the waves' record of started consumers the plan writes (before its patches): a
/// pass that runs before the StreamingToken watch delivers the status that records them, and
/// before the workload watch delivers their new templates, must still count them as rolling,
/// or a consumer labelled meanwhile could take their slots.
fn remember_starts(target: &Target, context: &Context, plan: &Plan) {
    let uid = target.uid().unwrap_or_default();
    let mut started = lock(&context.started);
    match &plan.status.rotation {
        Some(rotation) => {
            started.insert(uid, (rotation.id.clone(), rotation.started.clone()));
        }
        None => {
            started.remove(&uid);
        }
    }
}

/// `status` with what this process remembers starting in its rotation (see
/// [`remember_starts`]): each consumer recorded once, with its first start.
pub(super) fn with_remembered_starts(
    context: &Context,
    uid: &str,
    mut status: crate::api::StreamingTokenStatus,
) -> crate::api::StreamingTokenStatus {
    let started = lock(&context.started);
    let (Some(rotation), Some((id, remembered))) = (status.rotation.as_mut(), started.get(uid))
    else {
        return status;
    };
    if rotation.id != *id {
        return status;
    }
    for start in remembered {
        if !rotation
            .started
            .iter()
            .any(|recorded| recorded.consumer == start.consumer)
            && rotation.started.len() < decide::waves::MAX_RECORDED_STARTS
        {
            rotation.started.push(start.clone());
        }
    }
    status
}

/// Writes the status when it changed.
async fn write_status(target: &Target, context: &Context, plan: &Plan) -> Result<(), Error> {
    let (namespace, name) = target.key();
    if target.status() != Some(&plan.status) {
        still_leader(context)?;
        apply::status(&context.client, target, &plan.status).await?;
        debug!(%namespace, %name, "status written");
        let phase = plan
            .status
            .rotation
            .as_ref()
            .map_or(reason::phase::IDLE, |rotation| rotation.phase.as_str());
        halt_point(context, &format!("status:{phase}")).await;
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// A write the API server refused is reported on the object, as
/// [`decide::after_write::write_failed`] decides.
async fn report_write_failure(target: &Target, context: &Context, error: &Error) {
    let failure = decide::after_write::FailedWrite {
        reason: error.reason(),
        message: error.to_string(),
        conflict: error.is_conflict(),
    };
    let status = target.status().cloned().unwrap_or_default();
    let Some((status, notice)) =
        decide::after_write::write_failed(&status, target.generation(), &failure, &now())
    else {
        return;
    };
    if let Err(status_error) = apply::status(&context.client, target, &status).await {
        debug!(error = %status_error, "could not record the failed write in status");
    }
    apply::event(
        &context.client,
        &context.reporter,
        &target.object_ref(),
        &notice,
    )
    .await;
}

/// Crash-safety tests stop the operator right after a given write (`secret`, `copies`,
/// `consumer`, `status:<phase>`) through `STREAMING_TOKEN_OPERATOR_HALT_AFTER`, then SIGKILL it
/// there. Unset in production, where this is a no-op.
async fn halt_point(context: &Context, step: &str) {
    if context.halt_after.as_deref() == Some(step) {
        warn!(step, "test halt point reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// Window tests hold the operator for 8 seconds right after a given step (`checked`: the fresh
/// pod check a deactivation rests on) through `STREAMING_TOKEN_OPERATOR_HALT_AFTER=pause:<step>`.
/// Unset in production, where this is a no-op.
async fn pause_point(context: &Context, step: &str) {
    if context
        .halt_after
        .as_deref()
        .and_then(|value| value.strip_prefix("pause:"))
        == Some(step)
    {
        warn!(step, "test pause point reached");
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
}

fn error_policy(target: &Target, error: &Error, context: &Context) -> Action {
    let key = target.key();
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

/// Records which copies were read holding the pair of record (see [`ClusterContext::in_sync`]).
fn remember_copies_in_sync(target: &Target, context: &Context, snapshot: &Snapshot) {
    let (Some(cluster), MirrorObservation::Owned(home)) = (&context.cluster, &snapshot.mirror)
    else {
        return;
    };
    let Some(home_version) = &home.resource_version else {
        return;
    };
    let mut in_sync = cluster
        .in_sync
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for view in &snapshot.namespaces {
        let key = (target.name(), view.namespace.clone());
        match &view.copy {
            CopyObservation::Read(copy) if snapshot.copy_in_sync(view) => {
                if let Some(version) = &copy.resource_version {
                    in_sync.insert(
                        key,
                        InSync {
                            copy_version: version.clone(),
                            record_version: home_version.clone(),
                            values_written_at: copy.values_written_at,
                        },
                    );
                }
            }
            CopyObservation::Current { .. } => {}
            _ => {
                in_sync.remove(&key);
            }
        }
    }
}
