//! Webhook notifications (pure): which moments of a rotation the webhook of
//! `spec.rotation.notifications` is told about, kept in `status.notifications` as an outbox.
//!
//! A notification is recorded (`Pending`) in the same status write as the transition it tells
//! of, so it is sent once per transition even across restarts: a rotation started
//! (`RotationStarted`), a person asked to act (`NeedsAction`: `ReadyToRotate=True`), a rotation
//! held by what only a person can clear (`RotationBlocked`: `Stalled=True`), a rotation
//! completed (`RotationCompleted`). The first three are recorded at most once per rotation.
//! The controller delivers what [`due`] lists once that status is written, beside the
//! reconcile ([`crate::notify`]), and reports each attempt back through the snapshot
//! ([`NotificationObservation`]); [`record`] then marks it `Sent`, schedules a retry with
//! backoff, or gives up (`Undelivered`, a Warning Event) after [`MAX_ATTEMPTS`] or a refusal.
//! Nothing here is read by the rotation: a receiver that fails or hangs never holds it up.

use super::snapshot::{
    Delivery, Notice, NotificationObservation, Outgoing, Plan, Requeue, Snapshot, TokenKind,
};
use crate::api::{NotificationEvent, NotificationRecord, RotationStatus, StreamingTokenStatus};
use crate::conditions::{self, READY_TO_ROTATE, STALLED};
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// Attempts made before a notification is given up.
pub const MAX_ATTEMPTS: i32 = 5;
/// Most records kept (those of the current and the last rotation).
const MAX_RECORDS: usize = 16;
/// Longest text sent (messages that list blocked consumers can be long).
const MAX_MESSAGE: usize = 1500;
/// How often a pass looks for the outcome of a delivery in flight.
const IN_FLIGHT_POLL: Duration = Duration::from_secs(2);

/// How long after failed attempt `attempts` the next one is made: 10 s, doubling, at most 5 min.
pub fn retry_after(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 10)).unwrap_or(0);
    Duration::from_secs(10u64.saturating_mul(1u64 << doublings)).min(Duration::from_secs(300))
}

/// The word of an event in status and in the payload.
pub fn event_word(event: NotificationEvent) -> &'static str {
    match event {
        NotificationEvent::RotationStarted => reason::ROTATION_STARTED,
        NotificationEvent::NeedsAction => reason::NEEDS_ACTION,
        NotificationEvent::RotationBlocked => reason::ROTATION_BLOCKED,
        NotificationEvent::RotationCompleted => reason::ROTATION_COMPLETED,
    }
}

/// Records in `plan.status` the transitions `plan` makes and the deliveries that ended, and looks
/// again in time for the next delivery or retry.
pub fn record(snapshot: &Snapshot, plan: &mut Plan, now: &Time) {
    let Some(notifications) = &snapshot.spec.rotation.notifications else {
        plan.status.notifications.clear();
        return;
    };
    let wanted = |event: NotificationEvent| {
        let events = &notifications.webhook.events;
        events.is_empty() || events.contains(&event)
    };
    settle(&snapshot.notifications, &mut plan.status, &mut plan.events);
    for (event, rotation, reason, message) in transitions(snapshot, &plan.status) {
        if !wanted(event) {
            continue;
        }
        let event = event_word(event);
        let known = plan
            .status
            .notifications
            .iter()
            .any(|record| record.rotation == rotation && record.event == event);
        if !known {
            plan.status.notifications.push(NotificationRecord {
                rotation,
                event: event.into(),
                reason,
                message: truncate(message),
                state: reason::delivery::PENDING.into(),
                attempts: 0,
                recorded_at: now.clone(),
                last_attempt_at: None,
                error: None,
            });
        }
    }
    prune(&mut plan.status);
    if let Some(after) = next_look(&plan.status, &snapshot.notifications, now) {
        plan.requeue = match plan.requeue {
            Requeue::After(current) if current <= after => Requeue::After(current),
            _ => Requeue::After(after),
        };
    }
}

/// The notifications to deliver now: pending, not in flight, and due (never tried, or their
/// backoff over).
pub fn due(
    status: &StreamingTokenStatus,
    observation: &NotificationObservation,
    now: &Time,
) -> Vec<Outgoing> {
    status
        .notifications
        .iter()
        .filter(|record| record.state == reason::delivery::PENDING)
        .filter(|record| !in_flight(observation, record))
        .filter(|record| until_due(record, now).is_none())
        .map(|record| Outgoing {
            rotation: record.rotation.clone(),
            event: record.event.clone(),
            reason: record.reason.clone(),
            message: record.message.clone(),
            attempt: record.attempts + 1,
        })
        .collect()
}

fn in_flight(observation: &NotificationObservation, record: &NotificationRecord) -> bool {
    observation
        .in_flight
        .iter()
        .any(|(rotation, event)| *rotation == record.rotation && *event == record.event)
}

/// How long until a pending record may be tried again (`None`: now).
fn until_due(record: &NotificationRecord, now: &Time) -> Option<Duration> {
    let last = record.last_attempt_at.as_ref()?;
    let wait = jiff::SignedDuration::try_from(retry_after(record.attempts)).ok()?;
    let due = last.0.checked_add(wait).ok()?;
    (due > now.0).then(|| now.0.duration_until(due).unsigned_abs())
}

/// When the next pass should look: while a delivery is in flight, soon (for its outcome);
/// otherwise when the next retry is due.
fn next_look(
    status: &StreamingTokenStatus,
    observation: &NotificationObservation,
    now: &Time,
) -> Option<Duration> {
    status
        .notifications
        .iter()
        .filter(|record| record.state == reason::delivery::PENDING)
        .map(|record| {
            if in_flight(observation, record) {
                IN_FLIGHT_POLL
            } else {
                // Due now: it is sent after this pass's status write; look for its outcome.
                until_due(record, now).unwrap_or(IN_FLIGHT_POLL)
            }
        })
        .min()
}

/// Applies the attempts that ended to the records they belong to.
fn settle(
    observation: &NotificationObservation,
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
) {
    for delivery in &observation.finished {
        let Some(record) = status.notifications.iter_mut().find(|record| {
            record.rotation == delivery.rotation
                && record.event == delivery.event
                && record.state == reason::delivery::PENDING
                && delivery.attempt > record.attempts
        }) else {
            continue;
        };
        apply(record, delivery, events);
    }
}

fn apply(record: &mut NotificationRecord, delivery: &Delivery, events: &mut Vec<Notice>) {
    record.attempts = delivery.attempt;
    record.last_attempt_at = Some(delivery.at.clone());
    match &delivery.outcome {
        Ok(()) => {
            record.state = reason::delivery::SENT.into();
            record.error = None;
        }
        Err((message, permanent)) => {
            record.error = Some(message.clone());
            if *permanent || delivery.attempt >= MAX_ATTEMPTS {
                record.state = reason::delivery::UNDELIVERED.into();
                events.push(Notice::warning(
                    reason::NOTIFICATION_FAILED,
                    reason::action::ROTATE,
                    format!(
                        "the webhook notification {} of rotation {} was not delivered after {} attempt(s): {message}",
                        record.event, record.rotation, delivery.attempt
                    ),
                ));
            }
        }
    }
}

/// Keeps the records of the current and the last completed rotation, the newest at most
/// [`MAX_RECORDS`].
fn prune(status: &mut StreamingTokenStatus) {
    let current = status.rotation.as_ref().map(|rotation| rotation.id.clone());
    let last = status.last_rotation.as_ref().map(|last| last.id.clone());
    status.notifications.retain(|record| {
        Some(&record.rotation) == current.as_ref() || Some(&record.rotation) == last.as_ref()
    });
    let excess = status.notifications.len().saturating_sub(MAX_RECORDS);
    status.notifications.drain(..excess);
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" ...");
    }
    message
}

/// How messages name the object: `StreamingToken prod/telemetry`, `ClusterStreamingToken
/// telemetry`.
fn object(snapshot: &Snapshot) -> String {
    match snapshot.kind {
        TokenKind::Namespaced => format!(
            "{} {}/{}",
            snapshot.kind.as_str(),
            snapshot.namespace,
            snapshot.name
        ),
        TokenKind::Cluster => format!("{} {}", snapshot.kind.as_str(), snapshot.name),
    }
}

/// The transitions `after` shows against the status the pass started from:
/// `(event, rotation, reason, message)`.
fn transitions(
    snapshot: &Snapshot,
    after: &StreamingTokenStatus,
) -> Vec<(NotificationEvent, String, String, String)> {
    let before = &snapshot.status;
    let object = object(snapshot);
    let mut found = Vec::new();
    // Completed: the rotation the pass started with is now the last one (an edge: a rotation
    // completed before notifications were configured is not told of).
    if let Some(previous) = &before.rotation
        && after
            .last_rotation
            .as_ref()
            .is_some_and(|last| last.id == previous.id)
        && after.rotation.as_ref().map(|rotation| &rotation.id) != Some(&previous.id)
    {
        let seconds = after
            .last_rotation
            .as_ref()
            .map_or(0, |last| last.duration_seconds);
        let serial = after.token1.as_ref().map_or(0, |token| token.serial);
        found.push((
            NotificationEvent::RotationCompleted,
            previous.id.clone(),
            previous.cause.clone(),
            format!(
                "{object}: rotation {} completed in {seconds}s; Token 1 is now serial {serial}",
                previous.id
            ),
        ));
    }
    let Some(rotation) = &after.rotation else {
        return found;
    };
    found.push((
        NotificationEvent::RotationStarted,
        rotation.id.clone(),
        rotation.cause.clone(),
        started_message(&object, rotation),
    ));
    let condition = |type_: &str| {
        conditions::get(&after.conditions, type_).filter(|condition| condition.status == "True")
    };
    if let Some(ready) = condition(READY_TO_ROTATE) {
        found.push((
            NotificationEvent::NeedsAction,
            rotation.id.clone(),
            ready.reason.clone(),
            format!(
                "{object}: a person must act for rotation {}: {}",
                rotation.id, ready.message
            ),
        ));
    }
    // Windows never hold a rotation in progress: a bad one is not what blocks it.
    let window_problem =
        |reason: &str| reason == reason::INVALID_WINDOW || reason == reason::WINDOW_UNREACHABLE;
    if let Some(stalled) = condition(STALLED).filter(|stalled| !window_problem(&stalled.reason)) {
        found.push((
            NotificationEvent::RotationBlocked,
            rotation.id.clone(),
            stalled.reason.clone(),
            format!(
                "{object}: rotation {} is blocked ({}): {}",
                rotation.id, stalled.reason, stalled.message
            ),
        ));
    }
    found
}

fn started_message(object: &str, rotation: &RotationStatus) -> String {
    let asked = match &rotation.trigger {
        Some(value) => format!("{} {value}", rotation.cause),
        None => rotation.cause.clone(),
    };
    format!(
        "{object}: rotation {} started ({asked}, strategy {}); it deactivates Token 1 (serial {})",
        rotation.id,
        rotation.strategy.as_str(),
        rotation.deactivates_serial
    )
}
