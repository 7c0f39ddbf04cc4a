//! Maintenance windows in the plan: what is asked for outside every window waits (and says so),
//! starts when one opens, and a rotation in progress is never held. The fixture's clock is
//! `at(100)`: 2027-01-15 (a Friday) 08:01:40 UTC.

use super::*;
use crate::api::MaintenanceWindow;

fn window(schedule: &str, duration: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: "UTC".into(),
    }
}

/// Saturdays 02:00-06:00 UTC: closed at the fixture's clock, opens 2027-01-16T02:00:00Z.
fn weekend() -> MaintenanceWindow {
    window("0 2 * * SAT", "4h")
}

fn utc(text: &str) -> Time {
    Time(text.parse().expect("a timestamp"))
}

impl Fixture {
    fn windows(mut self, windows: Vec<MaintenanceWindow>) -> Self {
        self.snapshot.spec.rotation.windows = windows;
        self
    }
}

/// A pending trigger `t2` (the recorded one is `t1`), every window closed.
fn waiting_fixture() -> Fixture {
    let mut fixture = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .windows(vec![weekend()])
        .consumer(consumer("api", None, false));
    fixture.snapshot.spec.rotation.trigger = Some("t2".into());
    fixture
}

#[test]
fn a_trigger_outside_every_window_waits_and_starts_when_one_opens() {
    let mut fixture = waiting_fixture();
    let plan = fixture.plan();
    assert!(plan.status.rotation.is_none(), "nothing starts");
    assert_eq!(
        plan.status.observed_trigger.as_deref(),
        Some("t1"),
        "t2 still waits"
    );
    assert_eq!(
        condition(&plan, ROTATING),
        Some(("False".into(), "WaitingForWindow".into()))
    );
    assert!(message_of(&plan, ROTATING).contains("2027-01-16T02:00:00Z"));
    let window = plan.status.maintenance_window.clone().expect("reported");
    assert_eq!(window.state, "Closed");
    assert_eq!(window.waiting.as_deref(), Some("Trigger"));
    assert_eq!(window.next_opens_at, Some(utc("2027-01-16T02:00:00Z")));
    assert_eq!(reasons(&plan), vec!["RotationDeferred"]);
    assert!(plan.secret.is_none() && plan.consumer_patches.is_empty());
    // It looks again when the window opens (17 h 58 m 20 s later), not before.
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(64_700)));

    // The next pass changes nothing and says nothing again.
    fixture.snapshot.status = plan.status.clone();
    let again = fixture.plan();
    assert_eq!(again.status, plan.status, "no status write while waiting");
    assert!(again.events.is_empty());

    // When the window opens, the rotation starts (and is the trigger's).
    let opened = plan_at(&fixture, "2027-01-16T02:00:00Z");
    let rotation = opened.status.rotation.clone().expect("started");
    assert_eq!(
        (rotation.cause.as_str(), rotation.trigger.as_deref()),
        ("Trigger", Some("t2"))
    );
    assert_eq!(opened.status.observed_trigger.as_deref(), Some("t2"));
    let window = opened.status.maintenance_window.expect("reported");
    assert_eq!((window.state.as_str(), window.waiting), ("Open", None));
}

fn plan_at(fixture: &Fixture, now: &str) -> Plan {
    plan(&fixture.snapshot, &utc(now))
}

#[test]
fn a_window_open_now_lets_a_rotation_start_at_once() {
    let plan = waiting_fixture()
        .windows(vec![weekend(), window("0 8 * * FRI", "1h")])
        .plan();
    assert!(plan.status.rotation.is_some());
    let window = plan.status.maintenance_window.expect("reported");
    assert_eq!(window.state, "Open");
    assert_eq!(window.closes_at, Some(utc("2027-01-15T09:00:00Z")));
}

#[test]
fn a_rotate_request_and_a_due_interval_wait_too_without_a_busy_loop() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .windows(vec![weekend()])
        .consumer(consumer("api", None, false));
    fixture.snapshot.rotate_request = Some("manual-1".into());
    let plan = fixture.plan();
    assert!(plan.status.rotation.is_none());
    assert_eq!(plan.status.observed_rotate_request, None);
    assert_eq!(
        plan.status
            .maintenance_window
            .and_then(|window| window.waiting)
            .as_deref(),
        Some("Request")
    );

    // An interval long due: it waits for the window, and the plan does not poll every second.
    let mut fixture = fixture.windows(vec![weekend()]);
    fixture.snapshot.rotate_request = None;
    fixture.snapshot.spec.rotation.interval = Some("1h".into());
    fixture.snapshot.status.last_rotation = Some(crate::api::LastRotation {
        id: "r0".into(),
        strategy: RotationStrategy::ZeroDowntime,
        started_at: at(-7300),
        completed_at: at(-7200),
        duration_seconds: 100,
    });
    let plan = fixture.plan();
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        plan.status
            .maintenance_window
            .and_then(|window| window.waiting)
            .as_deref(),
        Some("Interval")
    );
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(64_700)));
}

#[test]
fn a_rotation_in_progress_is_never_held_by_a_window() {
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .windows(vec![weekend()])
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .plan();
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3)),
        "Token 1 is deactivated outside the window"
    );
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .windows(vec![weekend()])
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", None, false))
        .plan();
    assert_eq!(patched(&plan), vec!["api"], "consumers are repointed");
}

#[test]
fn the_ignore_windows_annotation_starts_only_the_value_it_names() {
    let mut fixture = waiting_fixture();
    fixture.snapshot.ignore_windows = Some("an-older-value".into());
    let plan = fixture.plan();
    assert!(
        plan.status.rotation.is_none(),
        "a stale annotation does not bypass"
    );

    fixture.snapshot.ignore_windows = Some("t2".into());
    let plan = fixture.plan();
    let rotation = plan.status.rotation.clone().expect("started at once");
    assert_eq!(rotation.trigger.as_deref(), Some("t2"));
    assert!(reasons(&plan).contains(&"WindowsBypassed"));
    assert!(reasons(&plan).contains(&"RotationStarted"));

    // Once acted on, the same annotation lets the next trigger wait again.
    let mut later = waiting_fixture();
    later.snapshot.ignore_windows = Some("t2".into());
    later.snapshot.status.observed_trigger = Some("t2".into());
    later.snapshot.spec.rotation.trigger = Some("t3".into());
    assert!(later.plan().status.rotation.is_none());
}

#[test]
fn rotate_now_starts_its_request_and_serves_a_waiting_trigger_too() {
    let mut fixture = waiting_fixture();
    fixture.snapshot.rotate_request = Some("manual-1".into());
    fixture.snapshot.ignore_windows = Some("manual-1".into());
    let plan = fixture.plan();
    let rotation = plan.status.rotation.clone().expect("started");
    assert_eq!(
        (rotation.cause.as_str(), rotation.trigger.as_deref()),
        ("Request", Some("manual-1"))
    );
    assert_eq!(
        plan.status.observed_rotate_request.as_deref(),
        Some("manual-1")
    );
    assert_eq!(
        plan.status.observed_trigger.as_deref(),
        Some("t2"),
        "one rotation serves the trigger that waited"
    );
}

#[test]
fn a_queued_trigger_waits_for_the_window_after_the_rotation_completes() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .windows(vec![weekend()])
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.spec.rotation.trigger = Some("t3".into());
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.queued_trigger = Some("t3".into());
    }
    let completed = fixture.plan();
    assert!(
        written_pair(&completed).is_some(),
        "the rotation in progress finished"
    );
    assert!(
        completed.status.rotation.is_none(),
        "the queued one did not start"
    );
    assert_eq!(completed.status.observed_trigger.as_deref(), Some("t2"));
    let next = fixture.settled(&completed);
    assert!(next.status.rotation.is_none());
    assert_eq!(
        condition(&next, ROTATING),
        Some(("False".into(), "WaitingForWindow".into()))
    );
}

#[test]
fn a_window_that_cannot_open_is_reported_once_and_holds_rotations() {
    let mut fixture = waiting_fixture().windows(vec![window("0 0 30 2 *", "1h")]);
    let plan = fixture.plan();
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "WindowUnreachable".into()))
    );
    assert_eq!(
        condition(&plan, conditions::STALLED),
        Some(("True".into(), "WindowUnreachable".into()))
    );
    assert!(reasons(&plan).contains(&"WindowUnreachable"));
    assert_eq!(plan.requeue, Requeue::Never, "nothing to wait for");
    let window = plan.status.maintenance_window.clone().expect("reported");
    assert!(window.problem.expect("problem").contains("never occurs"));
    assert_eq!(window.next_opens_at, None);
    fixture.snapshot.status = plan.status.clone();
    let again = fixture.plan();
    assert!(!reasons(&again).contains(&"WindowUnreachable"), "said once");
    // An emergency still starts.
    fixture.snapshot.ignore_windows = Some("t2".into());
    assert!(fixture.plan().status.rotation.is_some());

    let plan = waiting_fixture()
        .windows(vec![MaintenanceWindow {
            time_zone: "Nowhere/Atlantis".into(),
            ..weekend()
        }])
        .plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "InvalidWindow".into()))
    );
}

#[test]
fn without_windows_nothing_changes() {
    let plan = waiting_fixture().windows(Vec::new()).plan();
    assert!(plan.status.rotation.is_some());
    assert_eq!(plan.status.maintenance_window, None);
}

#[test]
fn a_bad_window_ranks_below_every_other_problem() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .windows(vec![window("0 0 30 2 *", "1h")]);
    fixture.snapshot.namespaces[0].pods.push(pod_record(
        "stray-1",
        Some(("ReplicaSet", "stray-abc")),
        "token1",
        None,
    ));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "UnlabelledReader".into()))
    );
    assert!(reasons(&plan).contains(&"WindowUnreachable"));
    let window = plan.status.maintenance_window.expect("reported");
    assert!(window.problem.is_some(), "still said where it is read");
}
