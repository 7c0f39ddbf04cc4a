//! The rotation state machine, persisted in `status.rotation` (pure).
//!
//! | strategy | phase | waits for | writes |
//! | --- | --- | --- | --- |
//! | ZeroDowntime | [`repointing`] | nothing | each consumer's Token 1 readers and variable to the Token 2 key, template stamped with the rotation id |
//! | ZeroDowntime | [`awaiting_rollout`] | every consumer verified and no pod that may hold Token 1 | nothing |
//! | ZeroDowntime | [`deactivating`] | (checks again) | generate: one Secret write, Token 2 becomes Token 1, a new Token 2 |
//! | ZeroDowntime | [`awaiting_source`] | (secretRef) the source to show the promoted pair | `ReadyToRotate=True` |
//! | Restart | [`deactivating_first`] | nothing (secretRef: the platform) | the Secret write first |
//! | Restart | [`restarting`] | nothing | every consumer's template stamped |
//! | Restart | [`awaiting_restarts`] | every consumer rolled out | nothing |
//!
//! Every ZeroDowntime phase first passes [`zero_downtime_guards`]: a Token 1 already deactivated
//! by this operator (a crash between the Secret write and the status write) completes the
//! rotation, and a consumer not yet repointed (labelled mid-rotation, or edited) sends the
//! rotation back to `Repointing`. The rotation id is `r<serial of the Token 1 it deactivates>`,
//! stamped on templates as `<id>.<incarnation>` ([`Snapshot::stamp`]): deterministic, so a step
//! replayed after a crash writes the same annotation and rolls nothing twice, and unique per
//! StreamingToken incarnation, so a stamp left by a deleted one never counts as rolled. Whether Token 1 has been deactivated is read from the mirror Secret's serials, never
//! assumed.

use super::consumers;
use super::pair::{PairChange, highest_serial};
use super::snapshot::{MirrorWrite, Notice, Requeue, Snapshot, SourceObservation};
use super::verification::{self, NamespaceVerification, PodCheck, Verification};
use super::windows::Evaluation;
use crate::api::{
    BlockedConsumer, LastRotation, RotationStatus, RotationStrategy, StreamingTokenStatus,
    TokenIdentity,
};
use crate::conditions::{self, READY_TO_ROTATE, ROTATING};
use crate::model::consumer::ConsumerPatch;
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

pub const PHASE_REPOINTING: &str = reason::phase::REPOINTING;
pub const PHASE_AWAITING_ROLLOUT: &str = reason::phase::AWAITING_ROLLOUT;
pub const PHASE_DEACTIVATING: &str = reason::phase::DEACTIVATING;
pub use super::snapshot::PHASE_AWAITING_SOURCE;
pub const PHASE_RESTARTING: &str = reason::phase::RESTARTING;

/// How often a rotation that waits looks again besides watch events (pods, consumers and the
/// source wake it when they change): the time-based transitions (a grace period ending, the
/// rollout timeout) and a safety net.
pub const ROLLOUT_POLL: Duration = Duration::from_secs(5);
/// Most blocked consumers listed in status.
pub const MAX_BLOCKED_LISTED: usize = 20;

/// The rotation's contribution to the plan.
pub struct Outcome {
    pub patches: Vec<ConsumerPatch>,
    pub requeue: Requeue,
    pub degraded: Option<(&'static str, String)>,
    /// Write nothing but status in this reconcile: a rotation that has just started is recorded
    /// before any Secret write, so that a crash cannot replay it as a second rotation.
    pub hold_writes: bool,
    /// True when this reconcile's decision rests on no pod holding Token 1: it deactivates
    /// Token 1, turns `ReadyToRotate` True, or leaves consumers of a Restart alone.
    pub deactivates: bool,
    /// Where each namespace stands, when this reconcile verified the rotation.
    pub namespaces: Vec<NamespaceVerification>,
    /// The rotate call to make at the platform once status records it (its attempt).
    pub platform_call: Option<i32>,
    /// A maintenance window that never opens: `Degraded` when nothing else is.
    pub window_problem: Option<(&'static str, String)>,
}

impl Outcome {
    fn persist_first() -> Self {
        Self {
            patches: Vec::new(),
            requeue: Requeue::After(Duration::from_secs(1)),
            degraded: None,
            hold_writes: true,
            deactivates: false,
            namespaces: Vec::new(),
            platform_call: None,
            window_problem: None,
        }
    }

    fn idle(requeue: Requeue) -> Self {
        Self {
            patches: Vec::new(),
            requeue,
            degraded: None,
            hold_writes: false,
            deactivates: false,
            namespaces: Vec::new(),
            platform_call: None,
            window_problem: None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Trigger,
    Request,
    Interval,
    TokensReplaced,
    /// The platform rejects Token 1 although no rotation of ours deactivated it.
    RotatedOutOfBand,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => reason::cause::TRIGGER,
            Self::Request => reason::cause::REQUEST,
            Self::Interval => reason::cause::INTERVAL,
            Self::TokensReplaced => reason::TOKENS_REPLACED,
            Self::RotatedOutOfBand => reason::ROTATED_OUT_OF_BAND,
        }
    }
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    now.0.duration_since(since.0).unsigned_abs()
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

/// What every phase function reads and may change.
struct Machine<'a> {
    snapshot: &'a Snapshot,
    mirror: &'a mut MirrorWrite,
    change: PairChange,
    now: &'a Time,
    events: &'a mut Vec<Notice>,
    is_secret_ref: bool,
    deactivates: bool,
    /// `source.platform`: the operator rotates at the platform itself (no `ReadyToRotate`).
    platform_rotates: bool,
    /// A rotation done behind the operator's back, with the strategy's consent: every consumer
    /// moves at once (no budget, no waves).
    all_at_once: bool,
    /// The rotate call this pass asks for (its attempt number).
    platform_call: Option<i32>,
    /// Where the maintenance windows stand: a queued rotation starts only while one is open.
    windows: &'a Evaluation,
}

impl Machine<'_> {
    /// True when a person rotates at the platform (told by `ReadyToRotate`).
    fn hands_over(&self) -> bool {
        self.is_secret_ref && !self.platform_rotates
    }
}

impl Machine<'_> {
    /// True once the mirror no longer holds the Token 1 this rotation deactivates.
    fn deactivated(&self, rotation: &RotationStatus) -> bool {
        self.mirror.identities[0].serial != rotation.deactivates_serial
    }

    fn set_phase(&mut self, rotation: &mut RotationStatus, phase: &str) {
        if rotation.phase != phase {
            self.events.push(Notice::normal(
                phase_reason(phase),
                reason::action::ROTATE,
                format!("rotation {}: {}", rotation.id, phase_message(phase)),
            ));
            rotation.phase = phase.into();
            rotation.phase_started_at = self.now.clone();
            if phase == PHASE_RESTARTING && rotation.rollout_started_at.is_none() {
                rotation.rollout_started_at = Some(self.now.clone());
            }
        }
    }

    fn verify(&self, rotation: &RotationStatus, check: PodCheck) -> Verification {
        verification::verify(
            self.snapshot,
            rotation,
            check,
            rollout_waited(rotation, self.now),
            self.now.0.as_second(),
        )
    }

    /// The pod-level check while Token 1 is still active.
    fn pod_check(&self, rotation: &RotationStatus) -> PodCheck {
        if self.deactivated(rotation) {
            PodCheck::RolloutsOnly
        } else {
            PodCheck::NoPodHoldsToken1
        }
    }
}

/// What one phase decided.
enum Step {
    /// The phase changed: decide again in this reconcile.
    Next,
    /// Wait in the current phase.
    Wait(Waiting),
    /// The rotation is done.
    Complete,
}

/// What a waiting rotation writes and reports.
#[derive(Default)]
struct Waiting {
    patches: Vec<ConsumerPatch>,
    blocked: Vec<BlockedConsumer>,
    verified: Option<usize>,
    ready_to_rotate: bool,
    /// Look again after this long (otherwise the usual poll).
    requeue: Option<Duration>,
    namespaces: Vec<NamespaceVerification>,
}

impl Waiting {
    fn on(verification: Verification) -> Self {
        Self {
            verified: Some(verification.verified),
            blocked: verification.blocked,
            namespaces: verification.namespaces,
            ..Self::default()
        }
    }
}

/// Starts, advances or completes the rotation. May change `mirror` (deactivation) and `status`.
/// A rotation starts only while a maintenance window is open (see [`hold_for_window`]); where the
/// windows stand is reported whatever the rotation does.
pub fn advance(
    snapshot: &Snapshot,
    mirror: &mut MirrorWrite,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Outcome {
    let windows = super::windows::evaluate(&snapshot.spec.rotation.windows, now);
    status.maintenance_window = windows.status();
    let mut outcome = advance_rotation(snapshot, mirror, change, status, now, events, &windows);
    if let Some((word, message)) = &windows.problem {
        let known = snapshot
            .status
            .maintenance_window
            .as_ref()
            .and_then(|window| window.problem.as_ref());
        if known != Some(message) {
            events.push(Notice::warning(
                word,
                reason::action::RECONCILE,
                message.clone(),
            ));
        }
        outcome.window_problem = Some((word, message.clone()));
    }
    if let Some(change) = windows.next_change() {
        let until = elapsed(now, &Time(change)).max(Duration::from_secs(1));
        outcome.requeue = match outcome.requeue {
            Requeue::After(after) if after <= until => Requeue::After(after),
            _ => Requeue::After(until),
        };
    }
    outcome
}

fn advance_rotation(
    snapshot: &Snapshot,
    mirror: &mut MirrorWrite,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
    windows: &Evaluation,
) -> Outcome {
    let is_secret_ref = matches!(snapshot.source, SourceObservation::External(..));
    let platform_rotates = snapshot
        .platform
        .as_ref()
        .is_some_and(|platform| platform.rotates);
    let hands_over = is_secret_ref && !platform_rotates;
    let all_at_once = super::platform::all_at_once(snapshot, status);
    queue_trigger(snapshot, change, status, events);
    if change == PairChange::Relabelled {
        abandon_after_lost_mirror(snapshot, mirror, status, now, events);
        if status.rotation.is_some() {
            // The restart that replaces the abandoned rotation is recorded together with the
            // mirror it restores (holding the Secret write back would find the mirror missing
            // again on the next pass, and abandon again, forever). A crash between the two
            // writes is safe: the restored mirror's serials show Token 1 as deactivated, so
            // the old rotation restarts the consumers.
            set_rotating(status, snapshot.generation, now, hands_over, false);
            return Outcome {
                hold_writes: false,
                ..Outcome::persist_first()
            };
        }
    }
    if restart_after_replacement(snapshot, mirror, change, status, now, events) {
        set_rotating(status, snapshot.generation, now, hands_over, false);
        return Outcome::persist_first();
    }
    if status.rotation.is_none() {
        let out_of_band = all_at_once && hands_over;
        return match due_cause(snapshot, change, status, now, out_of_band) {
            None => {
                idle(snapshot, status, hands_over, now);
                Outcome::idle(idle_requeue(status, now))
            }
            Some(cause) => {
                let start = match hold_for_window(snapshot, cause, status, windows, now, events) {
                    Ok(start) => start,
                    Err(requeue) => {
                        wait_for_window(snapshot, cause, status, windows, now, events, hands_over);
                        return Outcome::idle(requeue);
                    }
                };
                begin(
                    snapshot,
                    mirror,
                    start,
                    status,
                    now,
                    events,
                    !windows.unrestricted,
                );
                set_rotating(status, snapshot.generation, now, hands_over, false);
                Outcome::persist_first()
            }
        };
    }
    let mut machine = Machine {
        snapshot,
        mirror,
        change,
        now,
        events,
        is_secret_ref,
        deactivates: false,
        platform_rotates,
        all_at_once,
        platform_call: None,
        windows,
    };
    step(&mut machine, status)
}

/// A new trigger value or rotate request never interrupts a rotation: it waits, at most one.
fn queue_trigger(
    snapshot: &Snapshot,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
) {
    if change == PairChange::Replaced {
        return;
    }
    let Some(rotation) = status.rotation.as_mut() else {
        return;
    };
    let mut queued = None;
    if let Some(value) = &snapshot.spec.rotation.trigger
        && status.observed_trigger.as_ref() != Some(value)
        && rotation.queued_trigger.as_ref() != Some(value)
    {
        rotation.queued_trigger = Some(value.clone());
        queued = Some("trigger");
    }
    if let Some(value) = &snapshot.rotate_request
        && status.observed_rotate_request.as_ref() != Some(value)
        && rotation.queued_request.as_ref() != Some(value)
    {
        rotation.queued_request = Some(value.clone());
        queued = Some("rotate request");
    }
    if let Some(what) = queued {
        events.push(Notice::normal(
            reason::ROTATION_QUEUED,
            reason::action::ROTATE,
            format!(
                "a new {what} arrived during rotation {}; it will run when this one completes",
                rotation.id
            ),
        ));
    }
}

/// Tokens replaced out of band (or a lost generated pair reissued): consumers hold dead tokens,
/// so restart them all, even in the middle of a rotation (the tokens it was deactivating are
/// gone). Returns true when such a restart starts now.
fn restart_after_replacement(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) -> bool {
    if change != PairChange::Replaced
        || snapshot.status.token1.is_none()
        || snapshot.consumer_count() == 0
    {
        return false;
    }
    let id = restart_id(mirror);
    if status
        .rotation
        .as_ref()
        .is_some_and(|rotation| rotation.id == id)
    {
        return false;
    }
    if let Some(rotation) = &status.rotation {
        events.push(Notice::warning(
            reason::ROTATION_ABORTED,
            reason::action::ROTATE,
            format!(
                "rotation {} was abandoned: the tokens were replaced out of band",
                rotation.id
            ),
        ));
    }
    let queued = status.rotation.as_ref().map(|rotation| {
        (
            rotation.queued_trigger.clone(),
            rotation.queued_request.clone(),
        )
    });
    start_restart(snapshot, mirror, status, now, events);
    if let (Some(rotation), Some((trigger, request))) = (status.rotation.as_mut(), queued) {
        rotation.queued_trigger = trigger;
        rotation.queued_request = request;
    }
    true
}

/// The mirror's records were lost while a rotation waited for the platform: abandon it. With
/// `ZeroDowntime` every consumer reads Token 2, which both possible pairs still hold; with
/// `Restart` consumers read Token 1, which may be gone, so they restart.
fn abandon_after_lost_mirror(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) {
    let Some(rotation) = status.rotation.take() else {
        return;
    };
    events.push(Notice::warning(
        reason::ROTATION_ABORTED,
        reason::action::ROTATE,
        format!(
            "rotation {} was abandoned: the mirror Secret was deleted while it waited for the platform",
            rotation.id
        ),
    ));
    if rotation.strategy == RotationStrategy::Restart && snapshot.consumer_count() != 0 {
        start_restart(snapshot, mirror, status, now, events);
    }
}

/// The cause the trigger or rotate request that `streamingtoken.io/ignore-windows` names is, if
/// that value waits (not yet acted on).
fn ignored_windows(snapshot: &Snapshot, status: &StreamingTokenStatus) -> Option<Cause> {
    let value = snapshot.ignore_windows.as_ref()?;
    if snapshot.spec.rotation.trigger.as_ref() == Some(value)
        && status.observed_trigger.as_ref() != Some(value)
    {
        return Some(Cause::Trigger);
    }
    if snapshot.rotate_request.as_ref() == Some(value)
        && status.observed_rotate_request.as_ref() != Some(value)
    {
        return Some(Cause::Request);
    }
    None
}

/// Whether a rotation asked for by `cause` starts now: `Ok` with the cause to start it with, or
/// `Err` with when to look again while it waits for a maintenance window. Only what a person or
/// a schedule asks for waits (a trigger, a rotate request, the interval); an answer to tokens
/// replaced or rotated behind the operator's back never does. The value
/// `streamingtoken.io/ignore-windows` names starts at once (and the rotation is its).
fn hold_for_window(
    snapshot: &Snapshot,
    cause: Cause,
    status: &StreamingTokenStatus,
    windows: &Evaluation,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Result<Cause, Requeue> {
    let held = matches!(cause, Cause::Trigger | Cause::Request | Cause::Interval);
    if !held || windows.open() {
        return Ok(cause);
    }
    if let Some(ignored) = ignored_windows(snapshot, status) {
        events.push(Notice::normal(
            reason::WINDOWS_BYPASSED,
            reason::action::ROTATE,
            format!(
                "a rotation starts outside the maintenance windows: annotation {} names {} {}",
                crate::api::IGNORE_WINDOWS_ANNOTATION,
                ignored.as_str(),
                snapshot.ignore_windows.as_deref().unwrap_or_default()
            ),
        ));
        return Ok(ignored);
    }
    Err(match windows.next_opens_at {
        Some(opens) => Requeue::After(elapsed(now, &Time(opens)).max(Duration::from_secs(1))),
        None => Requeue::Never,
    })
}

/// Says that a rotation asked for by `cause` waits for the next maintenance window (idle until
/// then): `Rotating=False WaitingForWindow`, `status.maintenanceWindow.waiting`, and an Event
/// when it starts waiting.
fn wait_for_window(
    snapshot: &Snapshot,
    cause: Cause,
    status: &mut StreamingTokenStatus,
    windows: &Evaluation,
    now: &Time,
    events: &mut Vec<Notice>,
    hands_over: bool,
) {
    idle(snapshot, status, hands_over, now);
    let asked = match cause {
        Cause::Trigger => format!(
            "trigger {}",
            snapshot
                .spec
                .rotation
                .trigger
                .as_deref()
                .unwrap_or_default()
        ),
        Cause::Request => format!(
            "rotate request {}",
            snapshot.rotate_request.as_deref().unwrap_or_default()
        ),
        _ => "the rotation interval".to_string(),
    };
    let when = match windows.next_opens_at {
        Some(opens) => format!("when the next maintenance window opens, at {opens}"),
        None => "when a maintenance window opens, and none ever does (see status.maintenanceWindow.problem)".into(),
    };
    let message = format!(
        "{asked} asked for a rotation while every maintenance window is closed: it starts {when} (rotate --now, or annotation {}, starts it at once)",
        crate::api::IGNORE_WINDOWS_ANNOTATION
    );
    conditions::set(
        &mut status.conditions,
        ROTATING,
        false,
        reason::WAITING_FOR_WINDOW,
        message.clone(),
        Some(snapshot.generation),
        now,
    );
    let waiting = cause.as_str();
    let was = snapshot
        .status
        .maintenance_window
        .as_ref()
        .and_then(|window| window.waiting.as_deref());
    if was != Some(waiting) {
        events.push(Notice::normal(
            reason::ROTATION_DEFERRED,
            reason::action::ROTATE,
            message,
        ));
    }
    if let Some(window) = status.maintenance_window.as_mut() {
        window.waiting = Some(waiting.into());
    }
}

/// Why a rotation should start now, if it should: a new trigger value, a promotion at the
/// platform that no rotation of ours asked for, or the interval.
fn due_cause(
    snapshot: &Snapshot,
    change: PairChange,
    status: &mut StreamingTokenStatus,
    now: &Time,
    out_of_band: bool,
) -> Option<Cause> {
    if out_of_band && snapshot.consumer_count() != 0 {
        // Pods that read Token 1 are cut off: move every consumer onto Token 2 now.
        return Some(Cause::RotatedOutOfBand);
    }
    let created = snapshot.status.token1.is_none();
    if let Some(value) = &snapshot.spec.rotation.trigger
        && status.observed_trigger.as_ref() != Some(value)
    {
        if created && status.observed_trigger.is_none() {
            // The value a StreamingToken is created with is not a request to rotate.
            status.observed_trigger = Some(value.clone());
        } else {
            return Some(Cause::Trigger);
        }
    }
    if let Some(value) = &snapshot.rotate_request
        && status.observed_rotate_request.as_ref() != Some(value)
    {
        if created && status.observed_rotate_request.is_none() {
            status.observed_rotate_request = Some(value.clone());
        } else {
            return Some(Cause::Request);
        }
    }
    let had_pair = status.token1.is_some() || snapshot.status.token1.is_some();
    if change == PairChange::Promoted && had_pair && snapshot.consumer_count() != 0 {
        return Some(Cause::TokensReplaced);
    }
    let due = next_rotation_at(snapshot, status)?;
    (now.0 >= due.0).then_some(Cause::Interval)
}

/// Starts a rotation for `cause`. `coalesce` (with maintenance windows): a trigger and a rotate
/// request that both waited for the window are served by this one rotation.
fn begin(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    cause: Cause,
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
    coalesce: bool,
) {
    let mut trigger = snapshot.spec.rotation.trigger.clone();
    match cause {
        Cause::Trigger => {
            status.observed_trigger = trigger.clone();
            if coalesce && snapshot.rotate_request.is_some() {
                status.observed_rotate_request = snapshot.rotate_request.clone();
            }
        }
        Cause::Request => {
            if coalesce && trigger.is_some() {
                status.observed_trigger = trigger.clone();
            }
            status.observed_rotate_request = snapshot.rotate_request.clone();
            trigger = snapshot.rotate_request.clone();
        }
        // Promoted at the platform with no rotation of ours: the former Token 1 is gone, and
        // consumers that still hold it must restart.
        Cause::TokensReplaced => return start_restart(snapshot, mirror, status, now, events),
        Cause::Interval | Cause::RotatedOutOfBand => {}
    }
    let deactivates = mirror.identities[0].serial;
    // A rotation done behind our back is finished by repointing, whatever the strategy: the
    // mirror's Token 1 is dead and its Token 2 is what the platform accepts now.
    let strategy = if cause == Cause::RotatedOutOfBand {
        RotationStrategy::ZeroDowntime
    } else {
        snapshot.spec.rotation.strategy
    };
    start(
        status,
        format!("r{deactivates}"),
        cause,
        strategy,
        deactivates,
        trigger,
        now,
        events,
    );
}

fn idle_requeue(status: &StreamingTokenStatus, now: &Time) -> Requeue {
    match &status.next_rotation_at {
        Some(due) => Requeue::After(elapsed(now, due).max(Duration::from_secs(1))),
        None => Requeue::Never,
    }
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
    start(
        status,
        restart_id(mirror),
        Cause::TokensReplaced,
        RotationStrategy::Restart,
        former,
        None,
        now,
        events,
    );
    if let Some(rotation) = status.rotation.as_mut() {
        rotation.phase = PHASE_RESTARTING.into();
        rotation.rollout_started_at = Some(now.clone());
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
        reason::ROTATION_STARTED,
        reason::action::ROTATE,
        format!(
            "rotation {id} started ({}, strategy {}): it deactivates Token 1 (serial {deactivates})",
            cause.as_str(),
            strategy.as_str()
        ),
    ));
    status.rotation = Some(RotationStatus {
        id,
        cause: cause.as_str().into(),
        trigger: if matches!(cause, Cause::Trigger | Cause::Request) {
            trigger
        } else {
            None
        },
        strategy,
        phase: phase.into(),
        started_at: now.clone(),
        phase_started_at: now.clone(),
        rollout_started_at: (strategy == RotationStrategy::ZeroDowntime).then(|| now.clone()),
        deactivates_serial: deactivates,
        queued_trigger: None,
        queued_request: None,
        waves: None,
        consumers_started_at: None,
        started: Vec::new(),
        left_alone: Vec::new(),
        platform_rotate: None,
    });
}

fn idle(snapshot: &Snapshot, status: &mut StreamingTokenStatus, is_secret_ref: bool, now: &Time) {
    status.next_rotation_at = next_rotation_at(snapshot, status);
    let generation = Some(snapshot.generation);
    conditions::set(
        &mut status.conditions,
        ROTATING,
        false,
        reason::phase::IDLE,
        "no rotation in progress",
        generation,
        now,
    );
    if is_secret_ref {
        conditions::set(
            &mut status.conditions,
            READY_TO_ROTATE,
            false,
            reason::NO_ROTATION,
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

fn phase_reason(phase: &str) -> &'static str {
    match phase {
        PHASE_REPOINTING => reason::phase::REPOINTING,
        PHASE_AWAITING_ROLLOUT => reason::phase::AWAITING_ROLLOUT,
        PHASE_DEACTIVATING => reason::phase::DEACTIVATING,
        PHASE_AWAITING_SOURCE => reason::phase::AWAITING_SOURCE,
        _ => reason::phase::RESTARTING,
    }
}

fn phase_message(phase: &str) -> &'static str {
    match phase {
        PHASE_REPOINTING => "pointing every consumer at Token 2",
        PHASE_AWAITING_ROLLOUT => {
            "waiting until every consumer is rolled out and no pod may still hold Token 1"
        }
        PHASE_DEACTIVATING => "deactivating Token 1",
        PHASE_AWAITING_SOURCE => {
            "waiting for the source Secret to show the rotated pair (rotate at the platform)"
        }
        _ => "restarting every consumer",
    }
}

/// Runs the phases of the rotation in progress until one has to wait, then reports.
fn step(machine: &mut Machine, status: &mut StreamingTokenStatus) -> Outcome {
    let Some(mut rotation) = status.rotation.clone() else {
        unreachable!("step is only called with a rotation in progress");
    };
    let mut outcome = None;
    // Each phase may finish in this same reconcile; the loop runs until one has to wait.
    for _ in 0..8 {
        let step = match (rotation.strategy, rotation.phase.as_str()) {
            (RotationStrategy::ZeroDowntime, PHASE_REPOINTING) => {
                repointing(machine, &mut rotation)
            }
            (RotationStrategy::ZeroDowntime, PHASE_AWAITING_ROLLOUT) => {
                awaiting_rollout(machine, &mut rotation)
            }
            (RotationStrategy::ZeroDowntime, PHASE_DEACTIVATING) => {
                deactivating(machine, &mut rotation)
            }
            (RotationStrategy::ZeroDowntime, PHASE_AWAITING_SOURCE) => {
                awaiting_source(machine, &mut rotation)
            }
            (RotationStrategy::Restart, PHASE_DEACTIVATING | PHASE_AWAITING_SOURCE) => {
                deactivating_first(machine, &mut rotation)
            }
            (RotationStrategy::Restart, PHASE_RESTARTING) => restarting(machine, &mut rotation),
            (RotationStrategy::Restart, PHASE_AWAITING_ROLLOUT) => {
                awaiting_restarts(machine, &mut rotation)
            }
            (strategy, _) => unknown_phase(machine, &mut rotation, strategy),
        };
        match step {
            Step::Next => continue,
            Step::Wait(waiting) => {
                outcome = Some(waiting);
                break;
            }
            Step::Complete => return complete(machine, status, rotation),
        }
    }
    report(machine, status, rotation, outcome.unwrap_or_default())
}

/// Checks every ZeroDowntime phase makes first. `Some` decides the step.
fn zero_downtime_guards(machine: &mut Machine, rotation: &mut RotationStatus) -> Option<Step> {
    let deactivated = machine.deactivated(rotation);
    // With `generate` only this operator deactivates, after verifying: a crash came between the
    // Secret write and the status write, so finish. With `secretRef` the platform rotates:
    // finish only once every consumer is repointed and rolled out (the phases below).
    if deactivated && !machine.is_secret_ref {
        announce_deactivated(machine, rotation);
        return Some(Step::Complete);
    }
    if deactivated
        && machine.change == PairChange::Promoted
        && rotation.phase != PHASE_AWAITING_SOURCE
    {
        warn_promoted_early(machine, rotation);
    }
    let stamp = machine.snapshot.stamp(&rotation.id);
    let (needed, mut cannot) = consumers::patches(machine.snapshot, &stamp, true);
    if needed.is_empty() && cannot.is_empty() {
        rotation.waves = None;
        return None;
    }
    machine.set_phase(rotation, PHASE_REPOINTING);
    let selection = repoints_now(machine, rotation, &stamp, needed);
    let record = selection.progress.is_some().then_some(selection.started);
    rotation.waves = selection.progress;
    cannot.extend(selection.blocked);
    Some(repoint(
        machine,
        rotation,
        (selection.start, record),
        cannot,
    ))
}

/// The Event a pass that deactivated Token 1 never got to publish (a crash, a refused status
/// write): said now, as the rotation completes.
fn announce_deactivated(machine: &mut Machine, rotation: &RotationStatus) {
    machine.events.push(Notice::normal(
        reason::TOKEN_DEACTIVATED,
        reason::action::ROTATE,
        format!(
            "rotation {}: deactivated Token 1 (serial {}); Token 2 (serial {}) is now Token 1 and serial {} is the new Token 2",
            rotation.id,
            rotation.deactivates_serial,
            machine.mirror.identities[0].serial,
            machine.mirror.identities[1].serial
        ),
    ));
}

/// Warns that the source was rotated before every consumer was verified on Token 2.
fn warn_promoted_early(machine: &mut Machine, rotation: &RotationStatus) {
    machine.events.push(Notice::warning(
        reason::SOURCE_PROMOTED_EARLY,
        reason::action::ROTATE,
        format!(
            "rotation {}: the source Secret was rotated before every consumer was verified on Token 2; pods that still read the former Token 1 hold a deactivated token until they roll",
            rotation.id
        ),
    ));
}

/// Which of the `needed` repoints start now: all of them (a rotation done out of band moves
/// every consumer at once), or those the waves and the restart budget allow.
fn repoints_now(
    machine: &Machine,
    rotation: &RotationStatus,
    stamp: &str,
    needed: Vec<ConsumerPatch>,
) -> super::waves::Selection {
    let (waited, timeout) = machine.rollout_clock(rotation);
    if machine.all_at_once {
        super::waves::Selection {
            start: needed,
            ..super::waves::Selection::default()
        }
    } else {
        let clock = super::waves::Clock {
            now: machine.now,
            waited,
            timeout,
        };
        super::waves::select(
            machine.snapshot,
            stamp,
            needed,
            |_| false,
            &rotation.started,
            &clock,
        )
    }
}

/// Writes the repoints that start now (`needed`) once every kubelet's cache holds the values
/// last written, and records them (`record`: the waves' record of started consumers, with
/// them); `cannot` (consumers that cannot be repointed, or hold the waves up) is reported as
/// blocked either way.
fn repoint(
    machine: &mut Machine,
    rotation: &mut RotationStatus,
    (needed, record): (Vec<ConsumerPatch>, Option<Vec<crate::api::ConsumerStart>>),
    cannot: Vec<BlockedConsumer>,
) -> Step {
    if !needed.is_empty()
        && let Some(left) = kubelet_cache_settling(machine)
    {
        // The values were written moments ago: a pod created now might still read the former
        // Token 2 from a kubelet's cache. Repoint once every cache has caught up.
        return Step::Wait(Waiting {
            blocked: cannot,
            requeue: Some(left),
            ..Waiting::default()
        });
    }
    if let Some(record) = record {
        // Written with the patches (the status after them, and this process's memory before
        // them): the next pass counts them as rolling even if the watch lags.
        rotation.started = record;
    }
    if !needed.is_empty() && rotation.waves.is_some() {
        rotation.consumers_started_at = Some(machine.now.clone());
    }
    if !needed.is_empty() {
        machine.events.push(Notice::normal(
            reason::CONSUMERS_REPOINTED,
            reason::action::ROTATE,
            format!(
                "rotation {}: pointed {} consumer(s) at Token 2 ({})",
                rotation.id,
                needed.len(),
                names(machine.snapshot, &needed)
            ),
        ));
    }
    Step::Wait(Waiting {
        patches: needed,
        blocked: cannot,
        ..Waiting::default()
    })
}

/// How long until every kubelet's cache has caught up with the values last written (`None`
/// once it has): until then a pod might still read the former Token 2 from it.
fn kubelet_cache_settling(machine: &Machine) -> Option<Duration> {
    let written = machine
        .snapshot
        .latest_values_written_at()
        .unwrap_or(i64::MIN);
    let settled_at = written.saturating_add(super::holders::KUBELET_CACHE_MARGIN_SECONDS);
    let now = machine.now.0.as_second();
    (now <= settled_at)
        .then(|| Duration::from_secs(u64::try_from(settled_at - now + 1).unwrap_or(1)))
}

impl Machine<'_> {
    /// How long consumers have been rolling out in this rotation, and the rollout timeout.
    fn rollout_clock(&self, rotation: &RotationStatus) -> (Duration, Duration) {
        (
            rollout_waited(rotation, self.now),
            verification::rollout_timeout(self.snapshot),
        )
    }
}

/// How long the rollout has been waited for: since the rollout started, or since the latest
/// consumer was started (waves), whichever is later.
fn rollout_waited(rotation: &RotationStatus, now: &Time) -> Duration {
    let since = rotation
        .rollout_started_at
        .as_ref()
        .unwrap_or(&rotation.phase_started_at);
    let since = match &rotation.consumers_started_at {
        Some(started) if started.0 > since.0 => started,
        _ => since,
    };
    elapsed(since, now)
}

/// `Repointing`: writes each consumer's repoint (see [`consumers::patches`]); once none is
/// needed, moves on to `AwaitingRollout`.
fn repointing(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if let Some(step) = zero_downtime_guards(machine, rotation) {
        return step;
    }
    machine.set_phase(rotation, PHASE_AWAITING_ROLLOUT);
    Step::Next
}

/// `AwaitingRollout`: waits until every consumer is verified and no pod of the namespace may
/// hold Token 1; then `Deactivating` (generate) or `AwaitingSource` (secretRef). Writes nothing.
fn awaiting_rollout(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if let Some(step) = zero_downtime_guards(machine, rotation) {
        return step;
    }
    let verification = machine.verify(rotation, machine.pod_check(rotation));
    if !verification.complete(machine.snapshot.consumer_count()) {
        return Step::Wait(Waiting::on(verification));
    }
    if machine.deactivated(rotation) {
        // secretRef: the platform rotated while consumers were rolling; they are all on Token 2.
        return Step::Complete;
    }
    let next = if machine.is_secret_ref {
        PHASE_AWAITING_SOURCE
    } else {
        PHASE_DEACTIVATING
    };
    machine.set_phase(rotation, next);
    Step::Next
}

/// `Deactivating` (ZeroDowntime, generate): **where Token 1 is deactivated.** Verifies once more
/// and, only if every consumer is verified and no pod may hold Token 1, writes the promoted pair
/// (Token 2 becomes Token 1, a new Token 2). The controller re-reads the namespace's pods from
/// the API server and decides again before it carries out this write.
fn deactivating(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if let Some(step) = zero_downtime_guards(machine, rotation) {
        return step;
    }
    let verification = machine.verify(rotation, PodCheck::NoPodHoldsToken1);
    if !verification.complete(machine.snapshot.consumer_count()) {
        machine.set_phase(rotation, PHASE_AWAITING_ROLLOUT);
        return Step::Next;
    }
    if machine.is_secret_ref {
        machine.set_phase(rotation, PHASE_AWAITING_SOURCE);
        return Step::Next;
    }
    deactivate(machine, rotation);
    Step::Complete
}

/// `AwaitingSource` (ZeroDowntime, secretRef): every consumer is verified, so `ReadyToRotate`
/// is True; waits for the source to show the promoted pair. A consumer that regresses withdraws
/// `ReadyToRotate` (back to `AwaitingRollout`). The phase keeps its clock while everything
/// stays verified: re-verifying must not rewrite status on every pass.
fn awaiting_source(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if let Some(step) = zero_downtime_guards(machine, rotation) {
        return step;
    }
    let verification = machine.verify(rotation, machine.pod_check(rotation));
    if !verification.complete(machine.snapshot.consumer_count()) {
        machine.set_phase(rotation, PHASE_AWAITING_ROLLOUT);
        return Step::Next;
    }
    if machine.deactivated(rotation) {
        return Step::Complete;
    }
    if machine.platform_rotates {
        return rotate_at_platform(machine, rotation, Waiting::on(verification));
    }
    Step::Wait(Waiting {
        ready_to_rotate: true,
        ..Waiting::on(verification)
    })
}

/// How long after a rotate call that certainly did not reach the platform (or that it refused)
/// the next attempt may be made.
fn retry_after(attempts: i32) -> Duration {
    super::snapshot::backoff(u32::try_from(attempts).unwrap_or(0))
}

/// (`source.platform`) **Where Token 1 is deactivated at the platform.** Every consumer is
/// verified (ZeroDowntime) or the rotation starts (Restart): the rotate call is recorded in
/// status (`Calling`) before it is made, and the controller makes it only once that record is
/// written. A pass that finds `Calling` knows the outcome is in doubt: it never calls again,
/// and waits for the platform's pair to show the promotion (read back on every pass). A new
/// attempt is made only after one that certainly did not reach the platform (`NotSent`) or
/// that it refused (`Refused`), and only while the platform shows the recorded pair.
fn rotate_at_platform(
    machine: &mut Machine,
    rotation: &mut RotationStatus,
    waiting: Waiting,
) -> Step {
    let state = rotation
        .platform_rotate
        .as_ref()
        .map(|call| (call.attempts, call.state.clone(), call.at.clone()));
    match state {
        Some((attempts, state, _)) if state == reason::platform::CALLING => {
            settle_recorded_call(machine, rotation, attempts);
            wait_for(5, waiting)
        }
        Some((_, state, _))
            if state == reason::platform::ROTATED || state == reason::platform::IN_DOUBT =>
        {
            // The promotion shows on a pass that reads the platform's pair.
            wait_for(5, waiting)
        }
        previous => {
            let attempts = previous.as_ref().map_or(0, |(attempts, _, _)| *attempts);
            if let Some((_, _, at)) = &previous
                && let Some(left) = until_retry(attempts, at, machine.now)
            {
                return wait_for(left.as_secs().max(1), waiting);
            }
            if !platform_shows_recorded(machine) {
                // Read the platform's pair again first (it must still be the recorded one).
                return wait_for(5, waiting);
            }
            call_platform(machine, rotation, attempts + 1);
            wait_for(1, waiting)
        }
    }
}

/// Waits in the current phase, looking again after `seconds`.
fn wait_for(seconds: u64, waiting: Waiting) -> Step {
    Step::Wait(Waiting {
        requeue: Some(Duration::from_secs(seconds)),
        ..waiting
    })
}

/// A rotate call (attempt `attempts`) recorded as `Calling` on an earlier pass: its outcome as
/// the controller recorded it after the call, or else in doubt (never made again), with a
/// Warning when in doubt.
fn settle_recorded_call(machine: &mut Machine, rotation: &mut RotationStatus, attempts: i32) {
    let platform = machine.snapshot.platform.as_ref();
    let known = platform
        .and_then(|platform| platform.unrecorded_call.clone())
        .filter(|(attempt, _, _)| *attempt == attempts);
    let (state, message) = match known {
        Some((_, state, message)) => (state, message),
        None => (
            reason::platform::IN_DOUBT.to_string(),
            "the rotate call was recorded but its outcome was not (a crash, a failover or a lost status write): it may have rotated; it is never made again for this rotation".to_string(),
        ),
    };
    if state == reason::platform::IN_DOUBT {
        machine.events.push(Notice::warning(
            reason::PLATFORM_ROTATE_IN_DOUBT,
            reason::action::ROTATE,
            format!(
                "rotation {}: {message}; the operator reads the platform's pair until it shows the rotation. If the platform shows no rotation, rotate there (portal or CLI): the operator then mirrors the new pair",
                rotation.id
            ),
        ));
    }
    rotation.platform_rotate = Some(crate::api::PlatformRotateStatus {
        attempts,
        state,
        at: machine.now.clone(),
        message,
    });
}

/// How long until another rotate call may be made after attempt `attempts`, made `at`, that
/// did not reach the platform or that it refused (`None` once it may).
fn until_retry(attempts: i32, at: &Time, now: &Time) -> Option<Duration> {
    (elapsed(at, now) < retry_after(attempts))
        .then(|| retry_after(attempts).saturating_sub(elapsed(at, now)))
}

/// True when a fresh read of the platform shows the pair of record: a rotate call is made only
/// then.
fn platform_shows_recorded(machine: &Machine) -> bool {
    let platform = machine.snapshot.platform.as_ref();
    platform.is_some_and(|platform| platform.read_fresh)
        && machine.change == PairChange::None
        && matches!(&machine.snapshot.source, SourceObservation::External(Ok(pair), _) if *pair == machine.mirror.pair)
}

/// Records rotate call `attempt` as `Calling` and asks the controller to make it once that
/// record is written: where Token 1 is deactivated at the platform.
fn call_platform(machine: &mut Machine, rotation: &mut RotationStatus, attempt: i32) {
    rotation.platform_rotate = Some(crate::api::PlatformRotateStatus {
        attempts: attempt,
        state: reason::platform::CALLING.into(),
        at: machine.now.clone(),
        message: "recorded before the rotate call".into(),
    });
    machine.platform_call = Some(attempt);
    machine.deactivates = true;
    machine.events.push(Notice::normal(
        reason::PLATFORM_ROTATE_CALLED,
        reason::action::ROTATE,
        format!(
            "rotation {}: asked the platform to rotate (attempt {attempt}): Token 1 (serial {}) is deactivated there",
            rotation.id, rotation.deactivates_serial
        ),
    ));
}

/// `Deactivating` (Restart): deactivates Token 1 first (generate: the Secret write; secretRef:
/// waits in `AwaitingSource` with `ReadyToRotate=True` until the platform has rotated), then
/// `Restarting`.
fn deactivating_first(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if machine.deactivated(rotation) {
        if machine.change == PairChange::Promoted {
            // The promotion is seen in this reconcile: the mirror still holds the pair as it
            // was, so who may hold the deactivated token can still be told.
            leave_alone(machine, rotation);
        }
        machine.set_phase(rotation, PHASE_RESTARTING);
        return Step::Next;
    }
    if !machine.is_secret_ref {
        leave_alone(machine, rotation);
        deactivate(machine, rotation);
        machine.set_phase(rotation, PHASE_RESTARTING);
        return Step::Next;
    }
    machine.set_phase(rotation, PHASE_AWAITING_SOURCE);
    if machine.platform_rotates {
        return rotate_at_platform(machine, rotation, Waiting::default());
    }
    Step::Wait(Waiting {
        ready_to_rotate: true,
        ..Waiting::default()
    })
}

/// Most consumers a Restart rotation records as left alone; with more it restarts them all.
const MAX_LEFT_ALONE: usize = 500;

/// (Restart) The consumers none of whose pods may hold the Token 1 being deactivated, decided on
/// the mirror as it is before the deactivating write: restarting them would only repeat a
/// restart they do not need. A consumer whose pods are not all recorded yet is restarted.
fn already_on_the_promoted_token(machine: &Machine, rotation: &RotationStatus) -> Vec<String> {
    let snapshot = machine.snapshot;
    let stamp = snapshot.stamp(&rotation.id);
    let mut left_alone: Vec<String> = Vec::new();
    for view in &snapshot.namespaces {
        let pair = verification::pair(snapshot, view, &stamp);
        for consumer in &view.consumers {
            let pods: Vec<_> = view
                .pods
                .iter()
                .filter(|pod| {
                    pod.owner.as_ref().is_some_and(|owner| {
                        owner.kind == consumer.kind.as_str() && owner.name == consumer.name
                    })
                })
                .collect();
            let all_recorded = !pods.is_empty()
                && i32::try_from(pods.len()).is_ok_and(|count| count >= consumer.total);
            if all_recorded
                && pods
                    .iter()
                    .all(|pod| super::holders::may_hold_token1(pod, &pair).is_none())
            {
                left_alone.push(snapshot.consumer_key(
                    consumer.kind.as_str(),
                    &consumer.namespace,
                    &consumer.name,
                ));
            }
        }
    }
    if left_alone.len() > MAX_LEFT_ALONE {
        return Vec::new();
    }
    left_alone
}

/// Records who a Restart rotation leaves alone, with an Event when anyone is.
fn leave_alone(machine: &mut Machine, rotation: &mut RotationStatus) {
    rotation.left_alone = already_on_the_promoted_token(machine, rotation);
    // Decided on pods: taken again on a fresh pod list before it is carried out.
    machine.deactivates = true;
    if !rotation.left_alone.is_empty() {
        let mut listed: Vec<&str> = rotation
            .left_alone
            .iter()
            .take(5)
            .map(String::as_str)
            .collect();
        let more = rotation.left_alone.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        listed.sort_unstable();
        machine.events.push(Notice::normal(
            reason::CONSUMERS_LEFT_ALONE,
            reason::action::ROTATE,
            format!(
                "rotation {}: {} consumer(s) are not restarted: none of their pods may hold the deactivated token ({}{more})",
                rotation.id,
                rotation.left_alone.len(),
                listed.join(", ")
            ),
        ));
    }
}

/// The restart patches a Restart rotation still has to make (not for consumers left alone).
fn restarts_needed(machine: &Machine, rotation: &RotationStatus) -> Vec<ConsumerPatch> {
    let stamp = machine.snapshot.stamp(&rotation.id);
    let (mut needed, _) = consumers::patches(machine.snapshot, &stamp, false);
    needed.retain(|patch| {
        !rotation.left_alone.contains(&machine.snapshot.consumer_key(
            patch.kind.as_str(),
            &patch.namespace,
            &patch.name,
        ))
    });
    needed
}

/// `Restarting`: stamps every consumer's template once (except those left alone); then
/// `AwaitingRollout`.
fn restarting(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    let needed = restarts_needed(machine, rotation);
    if needed.is_empty() {
        rotation.waves = None;
        machine.set_phase(rotation, PHASE_AWAITING_ROLLOUT);
        return Step::Next;
    }
    // Restarted pods read the Token 1 key: not before the new values are written everywhere
    // and kubelets' caches can have them (a pod started on a cached old value holds the
    // deactivated token).
    let record_written_now =
        super::pair::needs_write(machine.mirror, super::pair::owned_mirror(machine.snapshot));
    let settled_at = machine
        .snapshot
        .latest_values_written_at()
        .unwrap_or(i64::MIN)
        .saturating_add(super::holders::KUBELET_CACHE_MARGIN_SECONDS);
    let now = machine.now.0.as_second();
    if record_written_now || now <= settled_at {
        let wait = if record_written_now {
            super::holders::KUBELET_CACHE_MARGIN_SECONDS + 1
        } else {
            settled_at - now + 1
        };
        return Step::Wait(Waiting {
            requeue: Some(Duration::from_secs(u64::try_from(wait).unwrap_or(1))),
            ..Waiting::default()
        });
    }
    let selection = restarts_now(machine, rotation, needed);
    if selection.progress.is_some() {
        rotation.started = selection.started;
    }
    let (needed, blocked) = (selection.start, selection.blocked);
    rotation.waves = selection.progress;
    if needed.is_empty() {
        // Waiting for a slot or for the current wave: the rollouts' watch events move it on.
        return Step::Wait(Waiting {
            blocked,
            ..Waiting::default()
        });
    }
    if rotation.waves.is_some() {
        rotation.consumers_started_at = Some(machine.now.clone());
    }
    machine.events.push(Notice::normal(
        reason::CONSUMERS_RESTARTED,
        reason::action::ROTATE,
        format!(
            "rotation {}: restarting {} consumer(s) ({})",
            rotation.id,
            needed.len(),
            names(machine.snapshot, &needed)
        ),
    ));
    Step::Wait(Waiting {
        patches: needed,
        blocked,
        ..Waiting::default()
    })
}

/// Which of the `needed` restarts start now: those the waves and the restart budget allow
/// (consumers left alone count as done).
fn restarts_now(
    machine: &Machine,
    rotation: &RotationStatus,
    needed: Vec<ConsumerPatch>,
) -> super::waves::Selection {
    let stamp = machine.snapshot.stamp(&rotation.id);
    let (waited, timeout) = machine.rollout_clock(rotation);
    let left_alone = |consumer: &crate::model::consumer::ConsumerObservation| {
        rotation.left_alone.contains(&machine.snapshot.consumer_key(
            consumer.kind.as_str(),
            &consumer.namespace,
            &consumer.name,
        ))
    };
    let clock = super::waves::Clock {
        now: machine.now,
        waited,
        timeout,
    };
    super::waves::select(
        machine.snapshot,
        &stamp,
        needed,
        left_alone,
        &rotation.started,
        &clock,
    )
}

/// `AwaitingRollout` (Restart): waits until every consumer has rolled out (a consumer labelled
/// meanwhile goes back to `Restarting`); then complete.
fn awaiting_restarts(machine: &mut Machine, rotation: &mut RotationStatus) -> Step {
    if !restarts_needed(machine, rotation).is_empty() {
        machine.set_phase(rotation, PHASE_RESTARTING);
        return Step::Next;
    }
    let verification = machine.verify(rotation, PodCheck::RolloutsOnly);
    if verification.complete(machine.snapshot.consumer_count()) {
        Step::Complete
    } else {
        Step::Wait(Waiting::on(verification))
    }
}

/// An unknown phase (hand-edited status): restart the machine at its first phase.
fn unknown_phase(
    machine: &mut Machine,
    rotation: &mut RotationStatus,
    strategy: RotationStrategy,
) -> Step {
    let first = match strategy {
        RotationStrategy::ZeroDowntime => PHASE_REPOINTING,
        RotationStrategy::Restart => PHASE_DEACTIVATING,
    };
    machine.set_phase(rotation, first);
    Step::Next
}

/// Writes the promoted pair into `mirror`: Token 2 becomes Token 1 and a new Token 2 is issued.
fn deactivate(machine: &mut Machine, rotation: &RotationStatus) {
    let mirror = &mut *machine.mirror;
    let next = highest_serial(machine.snapshot).max(mirror.identities[1].serial) + 1;
    let old_token1 = mirror.identities[0].serial;
    mirror.pair.token1 = mirror.pair.token2.clone();
    mirror.pair.token2 = machine.snapshot.fresh.tokens[0].clone();
    mirror.identities = [
        mirror.identities[1].clone(),
        TokenIdentity {
            serial: next,
            issued_at: machine.now.clone(),
        },
    ];
    machine.deactivates = true;
    machine.events.push(Notice::normal(
        reason::TOKEN_DEACTIVATED,
        reason::action::ROTATE,
        format!(
            "rotation {}: deactivated Token 1 (serial {old_token1}); Token 2 (serial {}) is now Token 1 and a new Token 2 (serial {next}) was issued",
            rotation.id, mirror.identities[0].serial
        ),
    ));
}

/// Records the completed rotation, and starts the queued trigger's rotation if there is one.
fn complete(
    machine: &mut Machine,
    status: &mut StreamingTokenStatus,
    rotation: RotationStatus,
) -> Outcome {
    let now = machine.now;
    let duration = elapsed(&rotation.started_at, now);
    let mirror = &*machine.mirror;
    machine.events.push(Notice::normal(
        reason::ROTATION_COMPLETED,
        reason::action::ROTATE,
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
    let snapshot = machine.snapshot;
    let mut outcome = Outcome::idle(Requeue::Never);
    outcome.deactivates = machine.deactivates;
    let queued = rotation.queued_trigger.is_some() || rotation.queued_request.is_some();
    if queued && !machine.windows.open() && ignored_windows(snapshot, status).is_none() {
        // Every window is closed: the queued values stay unobserved, and the next pass holds
        // them for the next window like any new trigger or request.
        idle(snapshot, status, machine.hands_over(), now);
        outcome.requeue = Requeue::After(Duration::from_secs(1));
        return outcome;
    }
    if queued {
        // The queued trigger (or request) runs next; it starts from the next reconcile, once
        // this rotation's Secret write has landed. One rotation serves both.
        let cause = if rotation.queued_trigger.is_some() {
            Cause::Trigger
        } else {
            Cause::Request
        };
        if let Some(value) = &rotation.queued_trigger {
            status.observed_trigger = Some(value.clone());
        }
        if let Some(value) = &rotation.queued_request {
            status.observed_rotate_request = Some(value.clone());
        }
        let deactivates = mirror.identities[0].serial;
        start(
            status,
            format!("r{deactivates}"),
            cause,
            snapshot.spec.rotation.strategy,
            deactivates,
            rotation.queued_trigger.or(rotation.queued_request),
            now,
            machine.events,
        );
        set_rotating(
            status,
            snapshot.generation,
            now,
            machine.hands_over(),
            false,
        );
        outcome.requeue = Requeue::After(Duration::from_secs(1));
        return outcome;
    }
    idle(snapshot, status, machine.hands_over(), now);
    outcome.requeue = idle_requeue(status, now);
    outcome
}

/// Reports a waiting rotation: consumer counts, the blocked list (an Event when it changes),
/// `Degraded`, `Rotating` and `ReadyToRotate`.
fn report(
    machine: &mut Machine,
    status: &mut StreamingTokenStatus,
    rotation: RotationStatus,
    waiting: Waiting,
) -> Outcome {
    let Waiting {
        patches,
        mut blocked,
        verified,
        ready_to_rotate,
        requeue: after,
        namespaces,
    } = waiting;
    let degraded = blocked_condition(machine, &rotation, &blocked).or_else(|| {
        let call = rotation.platform_rotate.as_ref()?;
        match call.state.as_str() {
            reason::platform::IN_DOUBT => Some((
                reason::PLATFORM_ROTATE_IN_DOUBT,
                format!(
                    "rotation {}: {}; if the platform shows no rotation, rotate there: the operator then mirrors the new pair",
                    rotation.id, call.message
                ),
            )),
            reason::platform::REFUSED | reason::platform::NOT_SENT => Some((
                reason::PLATFORM_ROTATE_FAILED,
                format!("rotation {}: {}; tried again with backoff", rotation.id, call.message),
            )),
            _ => None,
        }
    });
    let requeue = if let Some(after) = after {
        Requeue::After(after)
    } else if ready_to_rotate {
        // Nothing to poll: the source Secret's change (watched when labelled) moves it on.
        Requeue::Never
    } else if !blocked.is_empty() {
        Requeue::After(Duration::from_secs(10))
    } else {
        Requeue::After(ROLLOUT_POLL)
    };
    if let Some(summary) = status.consumers.as_mut() {
        summary.verified = verified.map(|count| i32::try_from(count).unwrap_or(i32::MAX));
        blocked.truncate(MAX_BLOCKED_LISTED);
        summary.blocked = blocked;
    }
    status.rotation = Some(rotation);
    set_rotating(
        status,
        machine.snapshot.generation,
        machine.now,
        machine.hands_over(),
        ready_to_rotate,
    );
    // Telling a person to rotate at the platform is as final as deactivating: decided again on
    // a fresh pod list before status says so.
    let was_ready = conditions::get(&machine.snapshot.status.conditions, READY_TO_ROTATE)
        .is_some_and(|condition| condition.status == "True");
    let announces = ready_to_rotate
        && !was_ready
        && rotation_strategy(status) == Some(RotationStrategy::ZeroDowntime);
    Outcome {
        patches,
        requeue,
        degraded,
        hold_writes: false,
        deactivates: machine.deactivates || announces,
        namespaces,
        platform_call: machine.platform_call,
        window_problem: None,
    }
}

fn rotation_strategy(status: &StreamingTokenStatus) -> Option<RotationStrategy> {
    status.rotation.as_ref().map(|rotation| rotation.strategy)
}

/// The `Degraded=True ConsumerBlocked` message for `blocked` (at most 20 named).
pub fn blocked_message(rotation_id: &str, blocked: &[BlockedConsumer]) -> String {
    let list = blocked
        .iter()
        .take(MAX_BLOCKED_LISTED)
        .map(|consumer| match &consumer.namespace {
            Some(namespace) => format!(
                "{}/{} in {namespace} ({})",
                consumer.kind, consumer.name, consumer.reason
            ),
            None => format!("{}/{} ({})", consumer.kind, consumer.name, consumer.reason),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let more = blocked.len().saturating_sub(MAX_BLOCKED_LISTED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "rotation {rotation_id} is blocked by {} consumer(s): {list}{more}; Token 1 stays active until they are verified",
        blocked.len()
    )
}

/// `Degraded=True ConsumerBlocked` while anything blocks, with a Warning Event when the blocked
/// set changes.
fn blocked_condition(
    machine: &mut Machine,
    rotation: &RotationStatus,
    blocked: &[BlockedConsumer],
) -> Option<(&'static str, String)> {
    if blocked.is_empty() {
        return None;
    }
    let message = blocked_message(&rotation.id, blocked);
    let key = |consumer: &BlockedConsumer| {
        (
            consumer.namespace.clone(),
            consumer.kind.clone(),
            consumer.name.clone(),
            consumer.reason.clone(),
        )
    };
    let before: Vec<_> = machine
        .snapshot
        .status
        .consumers
        .as_ref()
        .map(|summary| summary.blocked.iter().map(key).collect())
        .unwrap_or_default();
    let listed: Vec<_> = blocked.iter().take(MAX_BLOCKED_LISTED).map(key).collect();
    if listed != before {
        machine.events.push(Notice::warning(
            reason::CONSUMER_BLOCKED,
            reason::action::ROTATE,
            message.clone(),
        ));
    }
    Some((reason::CONSUMER_BLOCKED, message))
}

fn set_rotating(
    status: &mut StreamingTokenStatus,
    generation: i64,
    now: &Time,
    is_secret_ref: bool,
    ready_to_rotate: bool,
) {
    let Some(rotation) = &status.rotation else {
        return;
    };
    let generation = Some(generation);
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
    if !is_secret_ref {
        return;
    }
    if ready_to_rotate {
        let serial = status.token2.as_ref().map_or(0, |token| token.serial);
        let (reason, message) = match rotation.strategy {
            RotationStrategy::ZeroDowntime
                if rotation.cause == Cause::RotatedOutOfBand.as_str() =>
            {
                (
                    reason::ALREADY_ROTATED_AT_PLATFORM,
                    format!(
                        "the pair was rotated at the platform behind the operator's back, and every consumer now uses Token 2 (serial {serial}), which the platform accepts: update the source Secret with the platform's pair (Token 1 holds the former Token 2, Token 2 the new token); Secret {secret_name} follows"
                    ),
                )
            }
            RotationStrategy::ZeroDowntime => (
                reason::CONSUMERS_ON_TOKEN2,
                format!(
                    "every consumer uses Token 2 (serial {serial}) and no pod may still hold Token 1: rotate the tokens at the platform now, then update the source Secret so that Token 1 holds the former Token 2 and Token 2 the new token; Secret {secret_name} follows"
                ),
            ),
            // Nothing was checked: the Restart strategy accepts the outage.
            RotationStrategy::Restart => (
                reason::RESTART_AFTER_ROTATION,
                format!(
                    "strategy Restart: rotate the tokens at the platform now, then update the source Secret so that Token 1 holds the former Token 2 (serial {serial}) and Token 2 the new token; consumers that read Token 1 fail until the operator restarts them, right after Secret {secret_name} follows"
                ),
            ),
        };
        conditions::set(
            &mut status.conditions,
            READY_TO_ROTATE,
            true,
            reason,
            message,
            generation,
            now,
        );
    } else {
        conditions::set(
            &mut status.conditions,
            READY_TO_ROTATE,
            false,
            reason::CONSUMERS_NOT_READY,
            "consumers are not all verified on Token 2 yet: do not rotate at the platform",
            generation,
            now,
        );
    }
}

fn names(snapshot: &Snapshot, patches: &[ConsumerPatch]) -> String {
    let mut listed: Vec<String> = patches
        .iter()
        .take(5)
        .map(|patch| snapshot.consumer_key(patch.kind.as_str(), &patch.namespace, &patch.name))
        .collect();
    if patches.len() > 5 {
        listed.push(format!("and {} more", patches.len() - 5));
    }
    listed.join(", ")
}
