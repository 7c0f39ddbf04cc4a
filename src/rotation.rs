//! The rotation state machine, persisted in `status.rotation` (pure; called by [`crate::plan`]).
//!
//! ZeroDowntime: `Repointing` (each consumer's variable to the Token 2 key, template annotated
//! with the rotation id) -> `AwaitingRollout` (every consumer verified) -> `Deactivating`
//! (generate: one Secret write, Token 2 becomes Token 1 and a new Token 2 is issued; secretRef:
//! `ReadyToRotate=True` and `AwaitingSource` until the source shows the promoted pair) -> done.
//!
//! Restart: `Deactivating` first, then `Restarting` (annotate every template) ->
//! `AwaitingRollout` -> done.
//!
//! The rotation id is `r<serial of the Token 1 it deactivates>`: deterministic, so a step
//! replayed after a crash writes the same annotation and rolls nothing twice. Whether Token 1
//! has been deactivated is read from the mirror Secret's serials, never assumed.

use crate::api::{
    BlockedConsumer, LastRotation, RotationStatus, RotationStrategy, StreamingTokenStatus,
    TokenIdentity,
};
use crate::conditions::{self, READY_TO_ROTATE, ROTATING};
use crate::plan::{MirrorWrite, Notice, Requeue, Snapshot, SourceObservation, highest_serial};
use crate::workload::{self, ConsumerPatch, EnvSource, Repoint, Verdict};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

pub const PHASE_REPOINTING: &str = "Repointing";
pub const PHASE_AWAITING_ROLLOUT: &str = "AwaitingRollout";
pub const PHASE_DEACTIVATING: &str = "Deactivating";
pub const PHASE_AWAITING_SOURCE: &str = "AwaitingSource";
pub const PHASE_RESTARTING: &str = "Restarting";

/// How often a rotation waiting on rollouts looks again, besides watch events (the old pods of
/// a first rotation carry no label of ours, so their deletion is not watched).
pub const ROLLOUT_POLL: Duration = Duration::from_secs(1);
/// Most blocked consumers listed in status.
pub const MAX_BLOCKED_LISTED: usize = 20;

/// What changed in the pair while resolving it, before rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairChange {
    /// Nothing, or only the Secret's metadata.
    None,
    /// The first pair for this StreamingToken.
    Initial,
    /// The source promoted Token 2 to Token 1 (the platform rotated).
    Promoted,
    /// Both tokens are new (source replaced out of band, or a lost generated pair reissued):
    /// consumers hold dead tokens and must restart.
    Replaced,
}

/// The rotation's contribution to the plan.
pub struct Outcome {
    pub patches: Vec<ConsumerPatch>,
    pub requeue: Requeue,
    pub degraded: Option<(&'static str, String)>,
    /// Write nothing but status in this reconcile: a rotation that has just started is recorded
    /// before any Secret write, so that a crash cannot replay it as a second rotation.
    pub hold_writes: bool,
}

impl Outcome {
    fn persist_first() -> Self {
        Self {
            patches: Vec::new(),
            requeue: Requeue::After(ROLLOUT_POLL),
            degraded: None,
            hold_writes: true,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Trigger,
    Interval,
    TokensReplaced,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "Trigger",
            Self::Interval => "Interval",
            Self::TokensReplaced => "TokensReplaced",
        }
    }
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    now.0.duration_since(since.0).unsigned_abs()
}

fn rollout_timeout(snapshot: &Snapshot) -> Duration {
    crate::api::parse_duration(&snapshot.spec.rotation.rollout_timeout)
        .unwrap_or(Duration::from_secs(600))
}

fn next_rotation_at(snapshot: &Snapshot, status: &StreamingTokenStatus) -> Option<Time> {
    let interval = crate::api::parse_duration(snapshot.spec.rotation.interval.as_deref()?)?;
    let since = status
        .last_rotation
        .as_ref()
        .map(|last| last.completed_at.clone())
        .or_else(|| status.token1.as_ref().map(|token| token.issued_at.clone()))?;
    let interval = jiff::SignedDuration::try_from(interval).ok()?;
    since.0.checked_add(interval).ok().map(Time)
}

/// Starts, advances or completes the rotation. May change `mirror` (deactivation) and `status`.
pub fn advance(
    snapshot: &Snapshot,
    mirror: &mut MirrorWrite,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Outcome {
    let generation = Some(snapshot.generation);
    let trigger = snapshot.spec.rotation.trigger.clone();
    let is_secret_ref = matches!(snapshot.source, SourceObservation::External(_));

    // A new trigger value never interrupts a rotation: it waits, at most one.
    if let Some(rotation) = status.rotation.as_mut()
        && let Some(value) = &trigger
        && status.observed_trigger.as_ref() != Some(value)
        && rotation.queued_trigger.as_ref() != Some(value)
        && change != PairChange::Replaced
    {
        rotation.queued_trigger = Some(value.clone());
        events.push(Notice::normal(
            "RotationQueued",
            "Rotate",
            format!(
                "a new trigger arrived during rotation {}; it will run when this one completes",
                rotation.id
            ),
        ));
    }

    // Tokens replaced out of band (or a lost generated pair reissued): consumers hold dead
    // tokens, so restart them all, even in the middle of a rotation (the tokens it was
    // deactivating are gone). The id names the new Token 1, so it differs from every earlier
    // rotation's id and from the next trigger's.
    if change == PairChange::Replaced
        && snapshot.status.token1.is_some()
        && !snapshot.consumers.is_empty()
    {
        let id = restart_id(mirror);
        if status
            .rotation
            .as_ref()
            .is_none_or(|rotation| rotation.id != id)
        {
            if let Some(rotation) = &status.rotation {
                events.push(Notice::warning(
                    "RotationAborted",
                    "Rotate",
                    format!(
                        "rotation {} was abandoned: the tokens were replaced out of band",
                        rotation.id
                    ),
                ));
            }
            let queued = status
                .rotation
                .as_ref()
                .and_then(|rotation| rotation.queued_trigger.clone());
            start_restart(snapshot, mirror, status, now, events);
            if let Some(rotation) = status.rotation.as_mut() {
                rotation.queued_trigger = queued;
            }
            set_rotating(status, generation, now, is_secret_ref, false);
            return Outcome::persist_first();
        }
    }

    if status.rotation.is_none() {
        let cause = match &trigger {
            Some(value) if status.observed_trigger.as_ref() != Some(value) => {
                if snapshot.status.token1.is_none() && status.observed_trigger.is_none() {
                    // The value a StreamingToken is created with is not a request to rotate.
                    status.observed_trigger = Some(value.clone());
                    None
                } else {
                    Some(Cause::Trigger)
                }
            }
            _ => None,
        }
        .or_else(|| {
            match (
                change,
                status.token1.is_some() || snapshot.status.token1.is_some(),
            ) {
                (PairChange::Promoted, true) if !snapshot.consumers.is_empty() => {
                    Some(Cause::TokensReplaced)
                }
                _ => None,
            }
        })
        .or_else(|| {
            let due = next_rotation_at(snapshot, status)?;
            (now.0 >= due.0).then_some(Cause::Interval)
        });
        match cause {
            None => {
                status.next_rotation_at = next_rotation_at(snapshot, status);
                idle(snapshot, status, is_secret_ref, now);
                let requeue = match &status.next_rotation_at {
                    Some(due) => Requeue::After(elapsed(now, due).max(Duration::from_secs(1))),
                    None => Requeue::Never,
                };
                return Outcome {
                    patches: Vec::new(),
                    requeue,
                    degraded: None,
                    hold_writes: false,
                };
            }
            Some(cause) => {
                if cause == Cause::Trigger {
                    status.observed_trigger = trigger.clone();
                }
                if cause == Cause::TokensReplaced {
                    // Promoted at the platform with no rotation of ours: the former Token 1 is
                    // gone, and consumers that still hold it must restart.
                    start_restart(snapshot, mirror, status, now, events);
                } else {
                    let deactivates = mirror.identities[0].serial;
                    let id = format!("r{deactivates}");
                    let strategy = snapshot.spec.rotation.strategy;
                    start(
                        status,
                        id,
                        cause,
                        strategy,
                        deactivates,
                        trigger.clone(),
                        now,
                        events,
                    );
                }
                set_rotating(status, generation, now, is_secret_ref, false);
                return Outcome::persist_first();
            }
        }
    }

    step(
        snapshot,
        mirror,
        change,
        status,
        is_secret_ref,
        now,
        events,
        generation,
    )
}

fn restart_id(mirror: &MirrorWrite) -> String {
    format!("x{}", mirror.identities[0].serial)
}

/// Starts the restart that follows tokens replaced (or promoted) out of band. Its id names the
/// new Token 1, so it differs from every earlier rotation's id and from the next trigger's.
fn start_restart(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) {
    let former = snapshot
        .status
        .token1
        .as_ref()
        .map_or(0, |token| token.serial);
    let id = format!("x{}", mirror.identities[0].serial);
    start(
        status,
        id,
        Cause::TokensReplaced,
        RotationStrategy::Restart,
        former,
        None,
        now,
        events,
    );
    if let Some(rotation) = status.rotation.as_mut() {
        rotation.phase = PHASE_RESTARTING.into();
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    status: &mut StreamingTokenStatus,
    id: String,
    cause: Cause,
    strategy: RotationStrategy,
    deactivates: i64,
    trigger: Option<String>,
    now: &Time,
    events: &mut Vec<Notice>,
) {
    let phase = match strategy {
        RotationStrategy::ZeroDowntime => PHASE_REPOINTING,
        RotationStrategy::Restart => PHASE_DEACTIVATING,
    };
    events.push(Notice::normal(
        "RotationStarted",
        "Rotate",
        format!(
            "rotation {id} started ({}, strategy {}): it deactivates Token 1 (serial {deactivates})",
            cause.as_str(),
            strategy.as_str()
        ),
    ));
    status.rotation = Some(RotationStatus {
        id,
        cause: cause.as_str().into(),
        trigger: if cause == Cause::Trigger {
            trigger
        } else {
            None
        },
        strategy,
        phase: phase.into(),
        started_at: now.clone(),
        phase_started_at: now.clone(),
        deactivates_serial: deactivates,
        queued_trigger: None,
    });
}

fn idle(snapshot: &Snapshot, status: &mut StreamingTokenStatus, is_secret_ref: bool, now: &Time) {
    let generation = Some(snapshot.generation);
    conditions::set(
        &mut status.conditions,
        ROTATING,
        false,
        "Idle",
        "no rotation in progress",
        generation,
        now,
    );
    if is_secret_ref {
        conditions::set(
            &mut status.conditions,
            READY_TO_ROTATE,
            false,
            "NoRotation",
            "no rotation in progress: do not rotate at the platform yet",
            generation,
            now,
        );
    } else {
        conditions::remove(&mut status.conditions, READY_TO_ROTATE);
    }
    if let Some(summary) = status.consumers.as_mut() {
        summary.verified = None;
        summary.blocked.clear();
    }
}

fn set_phase(rotation: &mut RotationStatus, phase: &str, now: &Time, events: &mut Vec<Notice>) {
    if rotation.phase != phase {
        events.push(Notice::normal(
            phase_reason(phase),
            "Rotate",
            format!("rotation {}: {}", rotation.id, phase_message(phase)),
        ));
        rotation.phase = phase.into();
        rotation.phase_started_at = now.clone();
    }
}

fn phase_reason(phase: &str) -> &'static str {
    match phase {
        PHASE_REPOINTING => "Repointing",
        PHASE_AWAITING_ROLLOUT => "AwaitingRollout",
        PHASE_DEACTIVATING => "Deactivating",
        PHASE_AWAITING_SOURCE => "AwaitingSource",
        _ => "Restarting",
    }
}

fn phase_message(phase: &str) -> &'static str {
    match phase {
        PHASE_REPOINTING => "pointing every consumer at Token 2",
        PHASE_AWAITING_ROLLOUT => {
            "waiting until every consumer is verified on the new pod template"
        }
        PHASE_DEACTIVATING => "deactivating Token 1",
        PHASE_AWAITING_SOURCE => {
            "every consumer uses Token 2; waiting for the source Secret to show the rotated pair"
        }
        _ => "restarting every consumer",
    }
}

/// Patches for consumers whose template is not yet on the rotation (or, when repointing, whose
/// variable does not reference the Token 2 key), and consumers that cannot be patched.
fn patches_for(
    snapshot: &Snapshot,
    id: &str,
    repoint: bool,
) -> (Vec<ConsumerPatch>, Vec<BlockedConsumer>) {
    let mut patches = Vec::new();
    let mut blocked = Vec::new();
    let token2_key = &snapshot.spec.secret.token2_key;
    for consumer in &snapshot.consumers {
        let mut containers =
            workload::selected_containers(consumer, &snapshot.spec.consumers.containers);
        if repoint {
            // Containers already pointed at the mirror Secret stay in the apply even if no
            // longer selected: omitting them would make server-side apply remove their variable.
            for container in &consumer.containers {
                let ours = matches!(&container.source, EnvSource::SecretKey { secret, .. } if *secret == snapshot.secret_name);
                if ours
                    && !containers
                        .iter()
                        .any(|selected| selected.name == container.name)
                {
                    containers.push(container);
                }
            }
            if containers.is_empty() {
                blocked.push(BlockedConsumer {
                    kind: consumer.kind.as_str().into(),
                    name: consumer.name.clone(),
                    reason: "NoMatchingContainer".into(),
                    message: "none of its containers is listed in spec.consumers.containers".into(),
                });
                continue;
            }
            if let Some(container) = containers
                .iter()
                .find(|container| container.source == EnvSource::Literal)
            {
                blocked.push(BlockedConsumer {
                    kind: consumer.kind.as_str().into(),
                    name: consumer.name.clone(),
                    reason: "LiteralEnvValue".into(),
                    message: format!(
                        "container {} sets {} to a literal value; use valueFrom.secretKeyRef (or remove it) so the operator can repoint it",
                        container.name, snapshot.spec.consumers.env_var
                    ),
                });
                continue;
            }
        }
        let pointed = !repoint
            || containers.iter().all(|container| {
                container.source
                    == EnvSource::SecretKey {
                        secret: snapshot.secret_name.clone(),
                        key: token2_key.clone(),
                    }
            });
        if consumer.template_rotation.as_deref() == Some(id) && pointed {
            continue;
        }
        patches.push(ConsumerPatch {
            kind: consumer.kind,
            name: consumer.name.clone(),
            rotation_id: id.into(),
            token_name: snapshot.name.clone(),
            repoint: repoint.then(|| Repoint {
                containers: containers
                    .iter()
                    .map(|container| container.name.clone())
                    .collect(),
                env_var: snapshot.spec.consumers.env_var.clone(),
                secret: snapshot.secret_name.clone(),
                key: token2_key.clone(),
            }),
        });
    }
    (patches, blocked)
}

/// Verifies every consumer; returns how many are verified and the blocked ones.
fn verify_all(
    snapshot: &Snapshot,
    rotation: &RotationStatus,
    now: &Time,
) -> (usize, Vec<BlockedConsumer>) {
    let waited = elapsed(&rotation.phase_started_at, now);
    let timeout = rollout_timeout(snapshot);
    let mut verified = 0;
    let mut blocked = Vec::new();
    for consumer in &snapshot.consumers {
        match workload::verify(consumer, &rotation.id, waited, timeout) {
            Verdict::Verified => verified += 1,
            Verdict::Progressing(_) => {}
            Verdict::Blocked { reason, message } => blocked.push(BlockedConsumer {
                kind: consumer.kind.as_str().into(),
                name: consumer.name.clone(),
                reason: reason.into(),
                message,
            }),
        }
    }
    (verified, blocked)
}

/// Deactivates Token 1 in `mirror` if it still holds the serial the rotation deactivates.
/// Returns true when Token 1 is (now or already) deactivated.
fn deactivate(
    snapshot: &Snapshot,
    mirror: &mut MirrorWrite,
    rotation: &RotationStatus,
    is_secret_ref: bool,
    now: &Time,
    events: &mut Vec<Notice>,
) -> bool {
    if mirror.identities[0].serial != rotation.deactivates_serial {
        return true;
    }
    if is_secret_ref {
        return false;
    }
    let next = highest_serial(snapshot).max(mirror.identities[1].serial) + 1;
    let old_token1 = mirror.identities[0].serial;
    mirror.pair.token1 = mirror.pair.token2.clone();
    mirror.pair.token2 = snapshot.fresh.tokens[0].clone();
    mirror.identities = [
        mirror.identities[1].clone(),
        TokenIdentity {
            serial: next,
            issued_at: now.clone(),
        },
    ];
    events.push(Notice::normal(
        "TokenDeactivated",
        "Rotate",
        format!(
            "rotation {}: deactivated Token 1 (serial {old_token1}); Token 2 (serial {}) is now Token 1 and a new Token 2 (serial {next}) was issued",
            rotation.id, mirror.identities[0].serial
        ),
    ));
    true
}

#[allow(clippy::too_many_arguments)]
fn step(
    snapshot: &Snapshot,
    mirror: &mut MirrorWrite,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    is_secret_ref: bool,
    now: &Time,
    events: &mut Vec<Notice>,
    generation: Option<i64>,
) -> Outcome {
    let Some(mut rotation) = status.rotation.clone() else {
        unreachable!("step is only called with a rotation in progress");
    };
    let mut patches = Vec::new();
    let mut blocked = Vec::new();
    let mut verified = None;
    let mut requeue = Requeue::Never;
    let mut ready_to_rotate = false;
    let mut completed = false;

    // Each phase may finish in this same reconcile; the loop runs until one has to wait.
    for _ in 0..6 {
        match (rotation.strategy, rotation.phase.as_str()) {
            (RotationStrategy::ZeroDowntime, _) => {
                // Token 1 already deactivated. With `generate` only this operator deactivates, after
                // verifying every consumer: a crash came between the Secret write and the status
                // write, so finish. With `secretRef` the platform rotates: finish only once every
                // consumer is repointed and verified (below), whatever the phase.
                let deactivated = mirror.identities[0].serial != rotation.deactivates_serial;
                if deactivated && !is_secret_ref {
                    completed = true;
                    break;
                }
                if deactivated
                    && change == PairChange::Promoted
                    && rotation.phase != PHASE_AWAITING_SOURCE
                {
                    events.push(Notice::warning(
                        "SourcePromotedEarly",
                        "Rotate",
                        format!(
                            "rotation {}: the source Secret was rotated before every consumer was verified on Token 2; pods still on the old template hold a deactivated token until they roll",
                            rotation.id
                        ),
                    ));
                }
                let (needed, cannot) = patches_for(snapshot, &rotation.id, true);
                if !needed.is_empty() || !cannot.is_empty() {
                    set_phase(&mut rotation, PHASE_REPOINTING, now, events);
                    if !needed.is_empty() {
                        events.push(Notice::normal(
                            "ConsumersRepointed",
                            "Rotate",
                            format!(
                                "rotation {}: pointed {} consumer(s) at Token 2 ({})",
                                rotation.id,
                                needed.len(),
                                names(&needed)
                            ),
                        ));
                    }
                    patches = needed;
                    blocked = cannot;
                    requeue = Requeue::After(ROLLOUT_POLL);
                    break;
                }
                // A rotation waiting on the source keeps its phase (and its clock) while every
                // consumer stays verified: re-verifying must not rewrite status on every pass.
                if rotation.phase != PHASE_AWAITING_SOURCE {
                    set_phase(&mut rotation, PHASE_AWAITING_ROLLOUT, now, events);
                }
                let (mut count, mut stuck) = verify_all(snapshot, &rotation, now);
                if count < snapshot.consumers.len() && rotation.phase == PHASE_AWAITING_SOURCE {
                    // A consumer regressed: withdraw ReadyToRotate and wait again.
                    set_phase(&mut rotation, PHASE_AWAITING_ROLLOUT, now, events);
                    (count, stuck) = verify_all(snapshot, &rotation, now);
                }
                verified = Some(count);
                blocked = stuck;
                if count < snapshot.consumers.len() {
                    requeue = Requeue::After(ROLLOUT_POLL);
                    break;
                }
                if deactivated {
                    completed = true;
                    break;
                }
                if !is_secret_ref {
                    set_phase(&mut rotation, PHASE_DEACTIVATING, now, events);
                    deactivate(snapshot, mirror, &rotation, is_secret_ref, now, events);
                    completed = true;
                    break;
                }
                // secretRef: a person or pipeline rotates at the platform.
                set_phase(&mut rotation, PHASE_AWAITING_SOURCE, now, events);
                ready_to_rotate = true;
                break;
            }
            (RotationStrategy::Restart, PHASE_DEACTIVATING | PHASE_AWAITING_SOURCE) => {
                if deactivate(snapshot, mirror, &rotation, is_secret_ref, now, events) {
                    set_phase(&mut rotation, PHASE_RESTARTING, now, events);
                    continue;
                }
                set_phase(&mut rotation, PHASE_AWAITING_SOURCE, now, events);
                ready_to_rotate = true;
                break;
            }
            (RotationStrategy::Restart, PHASE_RESTARTING | PHASE_AWAITING_ROLLOUT) => {
                let (needed, _) = patches_for(snapshot, &rotation.id, false);
                if !needed.is_empty() {
                    set_phase(&mut rotation, PHASE_RESTARTING, now, events);
                    events.push(Notice::normal(
                        "ConsumersRestarted",
                        "Rotate",
                        format!(
                            "rotation {}: restarting {} consumer(s) ({})",
                            rotation.id,
                            needed.len(),
                            names(&needed)
                        ),
                    ));
                    patches = needed;
                    requeue = Requeue::After(ROLLOUT_POLL);
                    break;
                }
                set_phase(&mut rotation, PHASE_AWAITING_ROLLOUT, now, events);
                let (count, stuck) = verify_all(snapshot, &rotation, now);
                verified = Some(count);
                blocked = stuck;
                if count < snapshot.consumers.len() {
                    requeue = Requeue::After(ROLLOUT_POLL);
                    break;
                }
                completed = true;
                break;
            }
            (_, _) => {
                // An unknown phase (hand-edited status): restart the machine at its first phase.
                let first = match rotation.strategy {
                    RotationStrategy::ZeroDowntime => PHASE_REPOINTING,
                    RotationStrategy::Restart => PHASE_DEACTIVATING,
                };
                set_phase(&mut rotation, first, now, events);
            }
        }
    }

    if completed {
        let duration = elapsed(&rotation.started_at, now);
        events.push(Notice::normal(
            "RotationCompleted",
            "Rotate",
            format!(
                "rotation {} completed in {}s: Token 1 is serial {}, Token 2 is serial {}",
                rotation.id,
                duration.as_secs(),
                mirror.identities[0].serial,
                mirror.identities[1].serial
            ),
        ));
        status.last_rotation = Some(LastRotation {
            id: rotation.id.clone(),
            strategy: rotation.strategy,
            started_at: rotation.started_at.clone(),
            completed_at: now.clone(),
            duration_seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        });
        status.rotation = None;
        status.token1 = Some(mirror.identities[0].clone());
        status.token2 = Some(mirror.identities[1].clone());
        if let Some(queued) = rotation.queued_trigger.clone() {
            // The queued trigger runs next; it starts from the next reconcile, once this
            // rotation's Secret write has landed.
            status.observed_trigger = Some(queued.clone());
            let deactivates = mirror.identities[0].serial;
            start(
                status,
                format!("r{deactivates}"),
                Cause::Trigger,
                snapshot.spec.rotation.strategy,
                deactivates,
                Some(queued),
                now,
                events,
            );
            set_rotating(status, generation, now, is_secret_ref, false);
            return Outcome {
                patches,
                requeue: Requeue::After(ROLLOUT_POLL),
                degraded: None,
                hold_writes: false,
            };
        }
        status.next_rotation_at = next_rotation_at(snapshot, status);
        idle(snapshot, status, is_secret_ref, now);
        let requeue = match &status.next_rotation_at {
            Some(due) => Requeue::After(elapsed(now, due).max(Duration::from_secs(1))),
            None => Requeue::Never,
        };
        return Outcome {
            patches,
            requeue,
            degraded: None,
            hold_writes: false,
        };
    }

    let previously_blocked = snapshot
        .status
        .consumers
        .as_ref()
        .map(|summary| summary.blocked.clone())
        .unwrap_or_default();
    let degraded = (!blocked.is_empty()).then(|| {
        let list = blocked
            .iter()
            .map(|consumer| format!("{}/{} ({})", consumer.kind, consumer.name, consumer.reason))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!(
            "rotation {} is blocked by {} consumer(s): {list}; Token 1 stays active until they are verified",
            rotation.id,
            blocked.len()
        );
        let listed: Vec<(&str, &str, &str)> = blocked
            .iter()
            .map(|consumer| (consumer.kind.as_str(), consumer.name.as_str(), consumer.reason.as_str()))
            .collect();
        let before: Vec<(&str, &str, &str)> = previously_blocked
            .iter()
            .map(|consumer| (consumer.kind.as_str(), consumer.name.as_str(), consumer.reason.as_str()))
            .collect();
        if listed != before {
            events.push(Notice::warning("ConsumerBlocked", "Rotate", message.clone()));
        }
        ("ConsumerBlocked", message)
    });
    if !blocked.is_empty() {
        requeue = Requeue::After(Duration::from_secs(10).min(match requeue {
            Requeue::After(after) => after.max(ROLLOUT_POLL),
            Requeue::Never => Duration::from_secs(10),
        }));
    }
    if let Some(summary) = status.consumers.as_mut() {
        summary.verified = verified.map(|count| i32::try_from(count).unwrap_or(i32::MAX));
        blocked.truncate(MAX_BLOCKED_LISTED);
        summary.blocked = blocked;
    }
    status.rotation = Some(rotation);
    set_rotating(status, generation, now, is_secret_ref, ready_to_rotate);
    if ready_to_rotate {
        // Nothing to poll: the source Secret's change (watched when labelled) moves it on.
        requeue = Requeue::Never;
    }
    Outcome {
        patches,
        requeue,
        degraded,
        hold_writes: false,
    }
}

fn set_rotating(
    status: &mut StreamingTokenStatus,
    generation: Option<i64>,
    now: &Time,
    is_secret_ref: bool,
    ready_to_rotate: bool,
) {
    let Some(rotation) = &status.rotation else {
        return;
    };
    let reason = phase_reason(&rotation.phase);
    let message = format!(
        "rotation {}: {}",
        rotation.id,
        phase_message(&rotation.phase)
    );
    let secret_name = status.secret_name.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        ROTATING,
        true,
        reason,
        message,
        generation,
        now,
    );
    if is_secret_ref {
        if ready_to_rotate {
            let serial = status.token2.as_ref().map_or(0, |token| token.serial);
            conditions::set(
                &mut status.conditions,
                READY_TO_ROTATE,
                true,
                "ConsumersOnToken2",
                format!(
                    "every consumer uses Token 2 (serial {serial}): rotate the tokens at the platform now, then update the source Secret so that Token 1 holds the former Token 2 and Token 2 the new token; Secret {secret_name} follows"
                ),
                generation,
                now,
            );
        } else {
            conditions::set(
                &mut status.conditions,
                READY_TO_ROTATE,
                false,
                "ConsumersNotReady",
                "consumers are not all verified on Token 2 yet: do not rotate at the platform",
                generation,
                now,
            );
        }
    }
}

fn names(patches: &[ConsumerPatch]) -> String {
    let mut listed: Vec<String> = patches
        .iter()
        .take(5)
        .map(|patch| format!("{}/{}", patch.kind.as_str(), patch.name))
        .collect();
    if patches.len() > 5 {
        listed.push(format!("and {} more", patches.len() - 5));
    }
    listed.join(", ")
}
