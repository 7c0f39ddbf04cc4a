//! Webhook notifications in the plan: each transition recorded once with the status that makes
//! it, delivered when due, retried with backoff a bounded number of times, and never read by the
//! rotation.

use super::*;
use crate::api::{NotificationEvent, Notifications, WebhookNotification, WebhookSecretRef};
use crate::decide::notifications::{MAX_ATTEMPTS, due};

impl Fixture {
    fn notified(mut self, events: Vec<NotificationEvent>) -> Self {
        self.snapshot.spec.rotation.notifications = Some(Notifications {
            webhook: WebhookNotification {
                url_secret_ref: WebhookSecretRef {
                    name: "hook".into(),
                    key: "url".into(),
                    namespace: None,
                },
                timeout: "5s".into(),
                events,
            },
        });
        self
    }
}

fn records(plan: &Plan) -> Vec<(String, String, String)> {
    plan.status
        .notifications
        .iter()
        .map(|record| {
            (
                record.rotation.clone(),
                record.event.clone(),
                record.state.clone(),
            )
        })
        .collect()
}

fn triple(rotation: &str, event: &str, state: &str) -> (String, String, String) {
    (rotation.into(), event.into(), state.into())
}

fn delivery(
    event: &str,
    attempt: i32,
    seconds: i64,
    outcome: Result<(), (&str, bool)>,
) -> Delivery {
    Delivery {
        rotation: "r1".into(),
        event: event.into(),
        attempt,
        at: at(seconds),
        outcome: outcome.map_err(|(message, permanent)| (message.to_string(), permanent)),
    }
}

/// A trigger that starts rotation r1, with notifications on.
fn starting() -> Fixture {
    fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false))
        .trigger("t2")
        .notified(Vec::new())
}

#[test]
fn a_start_is_recorded_with_the_status_that_starts_it_and_sent_once() {
    let mut fixture = starting();
    let plan = fixture.plan();
    assert!(plan.secret.is_none(), "the start is persisted first");
    assert_eq!(
        records(&plan),
        vec![triple("r1", "RotationStarted", "Pending")]
    );
    let record = &plan.status.notifications[0];
    assert_eq!(record.reason, "Trigger");
    assert!(
        record
            .message
            .starts_with("StreamingToken prod/telemetry: rotation r1 started (Trigger t2"),
        "{}",
        record.message
    );
    let outgoing = due(&plan.status, &NotificationObservation::default(), &at(100));
    assert_eq!(outgoing.len(), 1);
    assert_eq!(
        (outgoing[0].event.as_str(), outgoing[0].attempt),
        ("RotationStarted", 1)
    );
    assert!(matches!(plan.requeue, Requeue::After(after) if after <= Duration::from_secs(2)));

    // In flight: not sent again, looked at again soon.
    fixture.snapshot.status = plan.status.clone();
    fixture.snapshot.notifications.in_flight = vec![("r1".into(), "RotationStarted".into())];
    let flying = fixture.plan();
    assert!(due(&flying.status, &fixture.snapshot.notifications, &at(100)).is_empty());
    assert_eq!(records(&flying), records(&plan), "recorded once");

    // Delivered: Sent, and nothing more to send.
    fixture.snapshot.notifications = NotificationObservation {
        in_flight: Vec::new(),
        finished: vec![delivery("RotationStarted", 1, 101, Ok(()))],
    };
    let sent = fixture.plan();
    assert_eq!(
        records(&sent),
        vec![triple("r1", "RotationStarted", "Sent")]
    );
    assert!(due(&sent.status, &NotificationObservation::default(), &at(200)).is_empty());
    // A restarted operator (nothing in memory) sends nothing again.
    fixture.snapshot.status = sent.status.clone();
    fixture.snapshot.notifications = NotificationObservation::default();
    let restarted = fixture.plan();
    assert_eq!(records(&restarted), records(&sent));
    assert!(
        due(
            &restarted.status,
            &NotificationObservation::default(),
            &at(300)
        )
        .is_empty()
    );
}

#[test]
fn a_failed_delivery_is_retried_with_backoff_then_given_up() {
    let mut fixture = starting();
    let plan = fixture.plan();
    fixture.snapshot.status = plan.status.clone();
    for attempt in 1..=MAX_ATTEMPTS {
        let ended = 100 + i64::from(attempt) * 1000;
        fixture.snapshot.notifications = NotificationObservation {
            in_flight: Vec::new(),
            finished: vec![delivery(
                "RotationStarted",
                attempt,
                ended,
                Err(("the receiver answered HTTP 500", false)),
            )],
        };
        let failed = fixture.plan();
        let record = failed.status.notifications[0].clone();
        assert_eq!(record.attempts, attempt);
        assert_eq!(
            record.error.as_deref(),
            Some("the receiver answered HTTP 500")
        );
        if attempt < MAX_ATTEMPTS {
            assert_eq!(record.state, "Pending");
            assert!(!reasons(&failed).contains(&"NotificationFailed"));
            let backoff = crate::decide::notifications::retry_after(attempt).as_secs();
            let backoff = i64::try_from(backoff).expect("small");
            let observation = NotificationObservation::default();
            assert!(
                due(&failed.status, &observation, &at(ended + backoff - 1)).is_empty(),
                "not before its backoff"
            );
            let again = due(&failed.status, &observation, &at(ended + backoff));
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].attempt, attempt + 1);
        } else {
            assert_eq!(record.state, "Undelivered");
            assert!(reasons(&failed).contains(&"NotificationFailed"));
            assert!(
                due(
                    &failed.status,
                    &NotificationObservation::default(),
                    &at(99_999)
                )
                .is_empty()
            );
        }
        fixture.snapshot.status = failed.status.clone();
    }
    assert_eq!(
        crate::decide::notifications::retry_after(1),
        Duration::from_secs(10)
    );
    assert_eq!(
        crate::decide::notifications::retry_after(4),
        Duration::from_secs(80)
    );
}

#[test]
fn a_refused_delivery_is_not_retried() {
    let mut fixture = starting();
    fixture.snapshot.status = fixture.plan().status;
    fixture.snapshot.notifications.finished = vec![delivery(
        "RotationStarted",
        1,
        101,
        Err(("the receiver refused it: HTTP 404", true)),
    )];
    let plan = fixture.plan();
    assert_eq!(
        records(&plan),
        vec![triple("r1", "RotationStarted", "Undelivered")]
    );
    assert!(reasons(&plan).contains(&"NotificationFailed"));
}

#[test]
fn a_person_must_act_is_told_once_per_rotation() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .notified(vec![NotificationEvent::NeedsAction]);
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    assert_eq!(
        records(&plan),
        vec![triple("r1", "NeedsAction", "Pending")],
        "only the events asked for"
    );
    let record = &plan.status.notifications[0];
    assert_eq!(record.reason, "ConsumersOnToken2");
    assert!(record.message.contains("a person must act for rotation r1"));
    assert!(
        record
            .message
            .contains("rotate the tokens at the platform now")
    );
    fixture.snapshot.status = plan.status.clone();
    fixture.snapshot.status.notifications[0].state = "Sent".into();
    let again = fixture.plan();
    assert_eq!(records(&again), vec![triple("r1", "NeedsAction", "Sent")]);
}

#[test]
fn a_blocked_rotation_and_a_completed_one_are_told() {
    let mut paused = consumer("api", Some("r1"), true);
    paused.paused = true;
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(paused)
        .notified(Vec::new())
        .plan();
    assert_eq!(
        records(&plan),
        vec![
            triple("r1", "RotationStarted", "Pending"),
            triple("r1", "RotationBlocked", "Pending")
        ]
    );
    let blocked = &plan.status.notifications[1];
    assert_eq!(blocked.reason, "ConsumerBlocked");
    assert!(
        blocked.message.contains("Deployment/api (Paused)"),
        "{}",
        blocked.message
    );

    let mut completing = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .notified(Vec::new());
    completing.snapshot.status.notifications = plan.status.notifications.clone();
    let done = completing.plan();
    assert!(done.status.rotation.is_none());
    assert_eq!(
        records(&done),
        vec![
            triple("r1", "RotationStarted", "Pending"),
            triple("r1", "RotationBlocked", "Pending"),
            triple("r1", "RotationCompleted", "Pending")
        ]
    );
    assert!(
        done.status.notifications[2]
            .message
            .contains("rotation r1 completed in 100s; Token 1 is now serial 2")
    );
}

#[test]
fn a_rotation_that_completed_before_notifications_is_not_told_and_old_records_go() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .notified(Vec::new());
    fixture.snapshot.status.last_rotation = Some(crate::api::LastRotation {
        id: "r0".into(),
        strategy: RotationStrategy::ZeroDowntime,
        started_at: at(0),
        completed_at: at(10),
        duration_seconds: 10,
    });
    let plan = fixture.plan();
    assert!(plan.status.notifications.is_empty());
    // Without notifications configured, records are dropped.
    let mut starting = starting();
    let plan = starting.plan();
    starting.snapshot.status = plan.status;
    starting.snapshot.spec.rotation.notifications = None;
    assert!(starting.plan().status.notifications.is_empty());
}
