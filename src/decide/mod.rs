//! Pure decisions: `plan(&Snapshot, now) -> Plan`.
//!
//! The controller observes (the StreamingToken, its mirror Secret, its source, its consumers,
//! the namespace's pods as compact records, and fresh random material drawn in advance), this
//! module decides, and [`crate::apply`] writes. Nothing here touches a client or reads the clock,
//! so every decision is a table-driven unit test. Each decision carries a PascalCase reason that
//! the condition, the Event and the metric label share.
//!
//! Types at the bottom, decisions above them, composition on top; imports go one way (down):
//!
//! - [`snapshot`]: the [`Snapshot`], the [`Plan`] and its parts. Imports no decision.
//! - [`pair`]: which pair the mirror Secret must hold, as one named case.
//! - [`consumers`]: what to write to each labelled workload; whether it is rolled out.
//! - [`holders`]: which pods, whatever owns them, may still hold Token 1.
//! - [`verification`]: consumers and pods together, namespace by namespace: "verified".
//! - [`fanout`]: a ClusterStreamingToken's copies of the pair in every selected namespace.
//! - [`waves`]: which consumers start now under a restart budget and wave labels.
//! - [`windows`]: maintenance windows, whether a rotation may start now (cron, time zones).
//! - [`rotation`]: the state machine, one function per phase; Token 1 is deactivated in
//!   [`rotation`]'s `deactivating` phase and nowhere else.
//! - [`notifications`]: which moments of a rotation a webhook is told of (an outbox in status).
//! - this module: [`plan`] composes them in order (spec checks, the mirror's owner, suspend, the
//!   pair, the rotation, the conditions) and nothing calls back up.

pub mod after_write;
pub mod consumers;
pub mod fanout;
pub mod holders;
pub mod members;
pub mod notifications;
pub mod pair;
pub mod platform;
pub mod rotation;
pub mod snapshot;
pub mod verification;
pub mod waves;
pub mod windows;

pub use snapshot::*;

use crate::api::{BlockedConsumer, ConsumerSummary, StreamingTokenStatus};
use crate::conditions::{self, DEGRADED, READY};
use crate::model::pod::Owner;
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeSet;

/// Decides everything for one StreamingToken.
pub fn plan(snapshot: &Snapshot, now: &Time) -> Plan {
    let mut plan = decide(snapshot, now);
    set_kstatus(&mut plan.status, snapshot.generation, now);
    notifications::record(snapshot, &mut plan, now);
    plan
}

/// Reasons of `Degraded=True` that only a person can clear: kstatus reads them as `Failed`.
const STALLING: &[&str] = &[
    reason::HOME_NAMESPACE_CHANGED,
    reason::CONSUMER_BLOCKED,
    reason::SOURCE_UNRECOGNIZED,
    reason::SOURCE_SECRET_NOT_FOUND,
    reason::SOURCE_KEY_MISSING,
    reason::SOURCE_TOKEN_INVALID,
    reason::SOURCE_TOKENS_IDENTICAL,
    reason::SOURCE_TOKEN_REJECTED,
    reason::SOURCE_NOT_ROTATED_AT_PLATFORM,
    reason::PLATFORM_MISCONFIGURED,
    reason::PLATFORM_ROTATE_IN_DOUBT,
    reason::SECRET_NOT_OWNED,
    reason::SECRET_CLAIMED_BY_OTHER,
    reason::INVALID_SPEC,
    reason::INVALID_WINDOW,
    reason::WINDOW_UNREACHABLE,
];

/// The conditions kstatus (Flux, `kubectl wait`, cli-utils) reads, derived from ours:
/// `Stalled=True` while something only a person can clear holds the StreamingToken up (kstatus:
/// Failed), else `Reconciling=True` while a rotation runs or the source is settling
/// (InProgress), else both False (with `Ready=True`, Current).
fn set_kstatus(status: &mut StreamingTokenStatus, generation: i64, now: &Time) {
    let generation = Some(generation);
    let degraded = conditions::get(&status.conditions, DEGRADED)
        .filter(|condition| condition.status == "True")
        .map(|condition| (condition.reason.clone(), condition.message.clone()));
    let stalled = degraded
        .clone()
        .filter(|(reason, _)| STALLING.contains(&reason.as_str()));
    let reconciling = match (&status.rotation, &degraded) {
        _ if stalled.is_some() => None,
        (Some(rotation), _) => Some((
            rotation.phase.clone(),
            format!("rotation {} is in phase {}", rotation.id, rotation.phase),
        )),
        (None, Some((reason, message))) if reason == reason::SOURCE_INCOMPLETE => {
            Some((reason.clone(), message.clone()))
        }
        _ => None,
    };
    let set = |conditions: &mut Vec<crate::api::Condition>,
               type_,
               found: Option<(String, String)>,
               (idle, idle_message): (&str, &str)| match found {
        Some((reason, message)) => {
            conditions::set(conditions, type_, true, &reason, message, generation, now)
        }
        None => conditions::set(
            conditions,
            type_,
            false,
            idle,
            idle_message,
            generation,
            now,
        ),
    };
    set(
        &mut status.conditions,
        conditions::STALLED,
        stalled,
        (reason::AS_EXPECTED, "nothing waits for a person"),
    );
    set(
        &mut status.conditions,
        conditions::RECONCILING,
        reconciling,
        (reason::phase::IDLE, "nothing in progress"),
    );
}

/// The plan, before the kstatus conditions are derived from it.
fn decide(snapshot: &Snapshot, now: &Time) -> Plan {
    let status = base_status(snapshot);
    let mut events = Vec::new();

    if let Some((reason, message)) = spec_problem(snapshot) {
        return failure(snapshot, status, events, reason, message, now);
    }
    let observed = match claim(snapshot) {
        Ok(observed) => observed,
        Err((reason, message)) => return failure(snapshot, status, events, reason, message, now),
    };
    if snapshot.spec.suspend {
        return suspended(snapshot, status, observed, now);
    }
    match pair::resolve(snapshot, observed, now, &mut events) {
        Ok(resolution) => resolved(snapshot, observed, resolution, status, events, now),
        Err(problem) => {
            let reason = problem.reason();
            failure(snapshot, status, events, reason, problem.message(), now)
        }
    }
}

/// The plan once the pair the mirror Secret must hold is resolved: the rotation (which may hold
/// every write back, or call the platform first), then the conditions, the copies and the
/// writes.
fn resolved(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    resolution: pair::Resolved,
    mut status: StreamingTokenStatus,
    mut events: Vec<Notice>,
    now: &Time,
) -> Plan {
    let pair::Resolved {
        mut mirror,
        change,
        waiting,
    } = resolution;
    record_identities(&mut status, &mirror);
    let out_of_band = platform::detect_out_of_band(
        snapshot,
        &mirror,
        (
            change == pair::PairChange::None,
            change == pair::PairChange::Promoted,
        ),
        &mut status,
        now,
        &mut events,
    );
    let rotation = rotation::advance(snapshot, &mut mirror, change, &mut status, now, &mut events);
    if rotation.hold_writes {
        return persist_rotation_start(snapshot, status, events, rotation.requeue);
    }
    platform::report(snapshot, &mirror, &mut status, now);
    if let Some(attempt) = rotation.platform_call {
        // The rotate call is recorded (status only) before it is made; nothing else is written
        // in this pass.
        return Plan {
            platform_rotate: Some(attempt),
            deactivates: true,
            ..persist_rotation_start(snapshot, status, events, rotation.requeue)
        };
    }
    record_identities(&mut status, &mirror);
    set_ready(snapshot, &mut status, &mirror, now);
    warn_mirror_waiting(snapshot, waiting.as_ref(), &mut events);
    let readers = unlabelled_readers(snapshot, &mut status, &mut events);
    deletion_warning(snapshot, &mut status, &mut events, now);
    let fan = fanout::plan(
        snapshot,
        &mirror,
        &rotation.namespaces,
        &mut status,
        &mut events,
        now,
    );
    let degraded = rotation
        .degraded
        .or(waiting)
        .or(out_of_band)
        .or(readers)
        .or(fan.degraded)
        .or(rotation.window_problem);
    set_degraded(snapshot, &mut status, degraded, now);
    let secret = pair::needs_write(&mirror, observed).then_some(mirror);
    Plan {
        deactivates: rotation.deactivates,
        secret,
        copies: fan.copies,
        copy_deletes: fan.deletes,
        consumer_patches: rotation.patches,
        status,
        events,
        requeue: requeue(snapshot, rotation.requeue),
        failed: None,
        platform_rotate: None,
    }
}

/// Token 1 and Token 2 in status: the identities `mirror` holds.
fn record_identities(status: &mut StreamingTokenStatus, mirror: &MirrorWrite) {
    status.token1 = Some(mirror.identities[0].clone());
    status.token2 = Some(mirror.identities[1].clone());
}

/// A Warning Event when the mirror Secret starts waiting for its source (`waiting`, see
/// [`pair::Resolved::waiting`]): none while `Degraded` already says so.
fn warn_mirror_waiting(
    snapshot: &Snapshot,
    waiting: Option<&(&'static str, String)>,
    events: &mut Vec<Notice>,
) {
    let Some((reason, message)) = waiting else {
        return;
    };
    let already = conditions::get(&snapshot.status.conditions, DEGRADED)
        .is_some_and(|condition| condition.status == "True" && condition.reason == *reason);
    if !already {
        events.push(Notice::warning(
            reason,
            reason::action::MIRROR_SECRET,
            message.clone(),
        ));
    }
}

/// When to look again: when the rotation asks, else (a `secretRef` source, which is not
/// watched when unlabelled) after [`UNWATCHED_SOURCE_RESYNC`]; with member clusters at most
/// [`MEMBER_RESYNC`] apart ([`MEMBER_RESYNC_ROTATING`] during a rotation).
fn requeue(snapshot: &Snapshot, rotation: Requeue) -> Requeue {
    let members = snapshot
        .namespaces
        .iter()
        .any(|view| crate::model::member::is_member(&view.namespace));
    if members {
        // Member clusters are not watched: they are read afresh on every pass, often while a
        // rotation waits on them.
        let resync = if snapshot.status.rotation.is_some() {
            MEMBER_RESYNC_ROTATING
        } else {
            MEMBER_RESYNC
        };
        return match rotation {
            Requeue::After(after) if after <= resync => rotation,
            _ => Requeue::After(resync),
        };
    }
    if snapshot.origin.polled && rotation == Requeue::Never {
        // An unlabelled source Secret is not watched: look again from time to time.
        return Requeue::After(UNWATCHED_SOURCE_RESYNC);
    }
    rotation
}

/// The observed status with what every plan sets: the generation, the Secret's name and the
/// consumer count.
fn base_status(snapshot: &Snapshot) -> StreamingTokenStatus {
    let mut status = snapshot.status.clone();
    status.observed_generation = Some(snapshot.generation);
    if snapshot.kind == TokenKind::Cluster && status.home_namespace.is_none() {
        status.home_namespace = Some(snapshot.namespace.clone());
    }
    status.secret_name = Some(snapshot.secret_name.clone());
    let previous = status.consumers.take().unwrap_or_default();
    status.consumers = Some(ConsumerSummary {
        total: i32::try_from(snapshot.consumer_count()).unwrap_or(i32::MAX),
        ..previous
    });
    status
}

/// The mirror Secret, if this StreamingToken may write it: a Secret someone else created, or
/// one another StreamingToken manages, is left alone with a reason.
fn claim(snapshot: &Snapshot) -> Result<Option<&ObservedMirror>, (&'static str, String)> {
    match &snapshot.mirror {
        MirrorObservation::NotOwned => Err((
            reason::SECRET_NOT_OWNED,
            format!(
                "Secret {} exists and was not created by the operator; delete it or set spec.secret.name to another name",
                snapshot.secret_name
            ),
        )),
        MirrorObservation::ClaimedBy(other) => Err((
            reason::SECRET_CLAIMED_BY_OTHER,
            format!(
                "Secret {} is managed for {other}; set spec.secret.name to another name",
                snapshot.secret_name
            ),
        )),
        MirrorObservation::Missing => Ok(None),
        MirrorObservation::Owned(observed) => Ok(Some(observed)),
    }
}

/// `spec.suspend`: nothing is written but status.
fn suspended(
    snapshot: &Snapshot,
    mut status: StreamingTokenStatus,
    observed: Option<&ObservedMirror>,
    now: &Time,
) -> Plan {
    let healthy = observed.is_some_and(|mirror| pair::current_pair(mirror).is_some());
    conditions::set(
        &mut status.conditions,
        READY,
        healthy,
        reason::SUSPENDED,
        "reconciliation is suspended (spec.suspend): the mirror Secret is not repaired and no rotation starts or advances",
        Some(snapshot.generation),
        now,
    );
    Plan {
        secret: None,
        copies: Vec::new(),
        copy_deletes: Vec::new(),
        consumer_patches: Vec::new(),
        status,
        events: Vec::new(),
        requeue: Requeue::Never,
        failed: None,
        deactivates: false,
        platform_rotate: None,
    }
}

/// A rotation that has just started: only its start is recorded now (the pair is written on
/// the next pass), so a crash cannot replay it as a second rotation.
fn persist_rotation_start(
    snapshot: &Snapshot,
    mut status: StreamingTokenStatus,
    events: Vec<Notice>,
    requeue: Requeue,
) -> Plan {
    status.token1 = snapshot.status.token1.clone();
    status.token2 = snapshot.status.token2.clone();
    let events = events
        .into_iter()
        .filter(|notice| {
            matches!(
                notice.reason,
                reason::ROTATION_STARTED
                    | reason::WINDOWS_BYPASSED
                    | reason::ROTATION_ABORTED
                    | reason::ROTATED_OUT_OF_BAND
                    | reason::PLATFORM_ROTATE_CALLED
            )
        })
        .collect();
    Plan {
        secret: None,
        copies: Vec::new(),
        copy_deletes: Vec::new(),
        consumer_patches: Vec::new(),
        status,
        events,
        requeue,
        failed: None,
        deactivates: false,
        platform_rotate: None,
    }
}

fn set_ready(
    snapshot: &Snapshot,
    status: &mut StreamingTokenStatus,
    mirror: &MirrorWrite,
    now: &Time,
) {
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        reason::TOKENS_READY,
        format!(
            "Secret {} holds Token 1 (serial {}) and Token 2 (serial {})",
            snapshot.secret_name, mirror.identities[0].serial, mirror.identities[1].serial
        ),
        Some(snapshot.generation),
        now,
    );
}

fn set_degraded(
    snapshot: &Snapshot,
    status: &mut StreamingTokenStatus,
    degraded: Option<(&'static str, String)>,
    now: &Time,
) {
    let generation = Some(snapshot.generation);
    match degraded {
        Some((reason, message)) => conditions::set(
            &mut status.conditions,
            DEGRADED,
            true,
            reason,
            message,
            generation,
            now,
        ),
        None => conditions::set(
            &mut status.conditions,
            DEGRADED,
            false,
            reason::AS_EXPECTED,
            "no problems found",
            generation,
            now,
        ),
    }
}

/// `deletionPolicy: Delete` deletes the mirror Secret with the StreamingToken; while consumers or
/// pods read it that would break them (new pods fail to start), so it is said before anyone
/// deletes: condition `DeletesSecretInUse=True` and a Warning Event when it becomes true. The
/// deletion itself is not held up (no finalizer: an uninstalled operator would leave
/// StreamingTokens that cannot be deleted).
fn deletion_warning(
    snapshot: &Snapshot,
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
    now: &Time,
) {
    let pods = snapshot
        .namespaces
        .iter()
        .filter(|view| view.serves_pair())
        .flat_map(|view| view.pods.iter())
        .filter(|pod| {
            pod.references
                .iter()
                .any(|reference| reference.secret == snapshot.secret_name)
        })
        .count();
    let consumers = snapshot.consumer_count();
    if snapshot.spec.deletion_policy != crate::api::DeletionPolicy::Delete
        || (pods == 0 && consumers == 0)
    {
        conditions::remove(&mut status.conditions, conditions::DELETES_SECRET_IN_USE);
        return;
    }
    let message = format!(
        "spec.deletionPolicy is Delete and {consumers} consumer(s) and {pods} pod(s) read Secret {}: deleting this StreamingToken deletes that Secret, and their new pods fail to start; set deletionPolicy: Retain first, or stop them reading it",
        snapshot.secret_name
    );
    let already = conditions::get(
        &snapshot.status.conditions,
        conditions::DELETES_SECRET_IN_USE,
    )
    .is_some_and(|condition| condition.status == "True");
    if !already {
        events.push(Notice::warning(
            reason::DELETION_POLICY_DELETES_SECRET_IN_USE,
            reason::action::RECONCILE,
            message.clone(),
        ));
    }
    conditions::set(
        &mut status.conditions,
        conditions::DELETES_SECRET_IN_USE,
        true,
        reason::SECRET_IN_USE,
        message,
        Some(snapshot.generation),
        now,
    );
}

/// Workloads and bare pods that read the mirror Secret without the consumer label: rotations
/// can neither repoint nor restart them, so they are reported at any time (listed in
/// `status.consumers.unlabelledReaders`, `Degraded=True UnlabelledReader` when nothing worse is
/// reported, and a Warning Event when the list changes), before anyone rotates.
fn unlabelled_readers(
    snapshot: &Snapshot,
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
) -> Option<(&'static str, String)> {
    let mut readers: Vec<BlockedConsumer> = Vec::new();
    // Selected namespaces, and the home or source namespace (pods reading the record or the
    // source directly); a namespace being deleted or revoked is reported by its own state.
    let watched = |view: &&NamespaceView| {
        view.serves_pair() && matches!(view.membership, Membership::Selected | Membership::Source)
    };
    for view in snapshot.namespaces.iter().filter(watched) {
        let consumers: BTreeSet<Owner> = view
            .consumers
            .iter()
            .map(|consumer| Owner {
                kind: consumer.kind.as_str().into(),
                name: consumer.name.clone(),
            })
            .collect();
        let mut secrets = vec![snapshot.secret_name.as_str()];
        if let Some(source) = &snapshot.origin.secret
            && view.namespace == snapshot.source_namespace
        {
            secrets.push(source.as_str());
        }
        let found = holders::unlabelled_readers(&view.pods, &secrets, |owner| {
            consumers.contains(&view.consumer_of(owner))
        });
        let listed = consumers::listed_namespace(snapshot, &view.namespace);
        readers.extend(found.into_iter().map(|(owner, how)| BlockedConsumer {
            namespace: listed.clone(),
            kind: owner.kind,
            name: owner.name,
            reason: reason::UNLABELLED_READER.into(),
            message: how,
        }));
    }
    let count = readers.len();
    readers.truncate(rotation::MAX_BLOCKED_LISTED);
    let names = |list: &[BlockedConsumer]| -> Vec<String> {
        list.iter()
            .map(|reader| match &reader.namespace {
                Some(namespace) => format!("{namespace}/{}/{}", reader.kind, reader.name),
                None => format!("{}/{}", reader.kind, reader.name),
            })
            .collect()
    };
    let listed = names(&readers);
    let before = snapshot
        .status
        .consumers
        .as_ref()
        .map(|summary| names(&summary.unlabelled_readers))
        .unwrap_or_default();
    if let Some(summary) = status.consumers.as_mut() {
        summary.unlabelled_readers = readers;
    }
    if count == 0 {
        return None;
    }
    let message = format!(
        "{count} workload(s) or pod(s) read Secret {} without the label `streamingtoken.io/token: {}`, so rotations can neither repoint nor restart them: {}; label them as consumers (a ZeroDowntime rotation waits for them otherwise)",
        snapshot.secret_name,
        snapshot.name,
        listed.join(", ")
    );
    if listed != before {
        events.push(Notice::warning(
            reason::UNLABELLED_READER,
            reason::action::RECONCILE,
            message.clone(),
        ));
    }
    Some((reason::UNLABELLED_READER, message))
}

/// Checks the schema cannot express (they involve the object's name).
fn spec_problem(snapshot: &Snapshot) -> Option<(&'static str, String)> {
    if let Some(problem) = &snapshot.selection_problem {
        return Some((reason::INVALID_SPEC, problem.clone()));
    }
    if snapshot.kind == TokenKind::Cluster
        && let Some(home) = &snapshot.status.home_namespace
        && *home != snapshot.namespace
    {
        return Some((
            reason::HOME_NAMESPACE_CHANGED,
            format!(
                "the pair of record lives in namespace {home}, but the operator now runs in {}: nothing is written (a new pair there would deactivate the current one unchecked). Run the operator in {home} again, or copy Secret {} from {home} to {} and set status.homeNamespace",
                snapshot.namespace, snapshot.secret_name, snapshot.namespace
            ),
        ));
    }
    if let Some(source) = &snapshot.origin.secret
        && *source == snapshot.secret_name
    {
        return Some((
            reason::INVALID_SPEC,
            format!(
                "the source Secret and the mirror Secret are both {}; set spec.secret.name to another name",
                source
            ),
        ));
    }
    None
}

fn failure(
    snapshot: &Snapshot,
    mut status: StreamingTokenStatus,
    mut events: Vec<Notice>,
    reason: &'static str,
    message: String,
    now: &Time,
) -> Plan {
    let generation = Some(snapshot.generation);
    let already = conditions::get(&status.conditions, DEGRADED)
        .is_some_and(|condition| condition.status == "True" && condition.reason == reason);
    if !already {
        events.push(Notice::warning(
            reason,
            reason::action::RECONCILE,
            message.clone(),
        ));
    }
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        message.clone(),
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    Plan {
        secret: None,
        copies: Vec::new(),
        copy_deletes: Vec::new(),
        consumer_patches: Vec::new(),
        status,
        events,
        requeue: Requeue::After(backoff(snapshot.failures)),
        failed: Some(reason),
        deactivates: false,
        platform_rotate: None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
