//! Pods that may hold Token 1, whatever owns them.

use super::*;

#[test]
fn deactivation_waits_for_every_pod_that_may_hold_token1_whatever_owns_it() {
    let base = || {
        let mut fixture = fixture()
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
            .consumer(consumer("api", Some("r1"), true));
        fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
        fixture
    };
    let with = |extra: Arc<PodRecord>| {
        let mut fixture = base();
        fixture.snapshot.namespaces[0].pods.push(extra);
        fixture
    };
    let mut terminating =
        (*pod_record("gone-1", Some(("Deployment", "gone")), "token1", None)).clone();
    terminating.deletion_deadline = Some(1_800_000_000 + 130);
    let mut held = terminating.clone();
    held.name = "gone-2".into();
    held.deletion_deadline = Some(1_800_000_000 + 10);
    held.finalizers = vec!["example.com/hold".into()];
    let mut stuck = terminating.clone();
    stuck.name = "gone-3".into();
    stuck.deletion_deadline = Some(1_800_000_000 + 100 - 31);
    let reverted = pod_record("api-9", Some(("Deployment", "api")), "token1", Some("r1"));
    let mut early_reader =
        (*pod_record("old-0", Some(("StatefulSet", "old")), "token2", None)).clone();
    // Created before the previous deactivation wrote the values: its Token 2 was today's Token 1.
    early_reader.created_at = 1_800_000_000 - 100;
    let cases: Vec<(&str, Fixture, Option<&str>)> = vec![
        ("only rolled pods reading Token 2", base(), None),
        (
            "an unlabelled Deployment reads Token 1",
            with(pod_record(
                "batch-1",
                Some(("Deployment", "batch")),
                "token1",
                None,
            )),
            Some("UnlabelledReader"),
        ),
        (
            "a bare pod reads Token 1",
            with(pod_record("debug", None, "token1", None)),
            Some("UnmanagedPodReadsToken"),
        ),
        (
            "a pod of a deleted consumer is terminating within its grace period",
            with(Arc::new(terminating)),
            Some("Waiting"),
        ),
        (
            "a pod of a deleted consumer is held by a finalizer",
            with(Arc::new(held)),
            Some("PodHeldByFinalizer"),
        ),
        (
            "a pod stuck terminating well past its grace period, no finalizer",
            with(Arc::new(stuck)),
            Some("PodStuckTerminating"),
        ),
        (
            "a consumer pod stamped with the rotation still reads Token 1 (reverted template)",
            with(reverted),
            Some("ContainerNotRepointed"),
        ),
        (
            "an unlabelled pod read Token 2 before the last write",
            with(Arc::new(early_reader)),
            Some("UnlabelledReader"),
        ),
    ];
    for (name, fixture, held_by) in cases {
        let plan = fixture.plan();
        let blocked: Vec<String> = plan
            .status
            .consumers
            .as_ref()
            .map(|summary| summary.blocked.iter().map(|b| b.reason.clone()).collect())
            .unwrap_or_default();
        match held_by {
            None => {
                assert!(plan.deactivates, "{name}: should deactivate");
                assert!(written_pair(&plan).is_some(), "{name}");
            }
            Some(reason) => {
                assert!(
                    !plan.deactivates && plan.secret.is_none(),
                    "{name}: deactivated"
                );
                assert!(plan.status.rotation.is_some(), "{name}: still rotating");
                if reason == "Waiting" {
                    assert!(
                        blocked.is_empty(),
                        "{name}: waiting is not blocked: {blocked:?}"
                    );
                } else {
                    assert_eq!(blocked, [reason], "{name}");
                    assert_eq!(
                        condition(&plan, DEGRADED),
                        Some(("True".into(), "ConsumerBlocked".into())),
                        "{name}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_secret_ref_rotation_is_not_ready_to_rotate_while_a_pod_may_hold_token1() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
    fixture.snapshot.namespaces[0].pods.push(pod_record(
        "batch-1",
        Some(("Deployment", "batch")),
        "token1",
        None,
    ));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
    fixture.snapshot.namespaces[0].pods.pop();
    assert_eq!(
        condition(&fixture.plan(), READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
}

#[test]
fn an_unlabelled_reader_is_reported_before_any_rotation() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r0");
    fixture.snapshot.namespaces[0].pods.push(pod_record(
        "batch-1",
        Some(("Deployment", "batch")),
        "token1",
        None,
    ));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "UnlabelledReader".into()))
    );
    assert_eq!(reasons(&plan), ["UnlabelledReader"]);
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.unlabelled_readers.len(), 1);
    assert_eq!(summary.unlabelled_readers[0].name, "batch");
    assert!(
        summary.unlabelled_readers[0]
            .message
            .contains("variable Quix__Sdk__Token"),
        "{}",
        summary.unlabelled_readers[0].message
    );
    // Reported once: the same reader again is no new Event and no status change.
    fixture.snapshot.status = plan.status.clone();
    let again = fixture.plan();
    assert!(again.events.is_empty(), "{:?}", reasons(&again));
    assert_eq!(again.status, plan.status);
}

#[test]
fn a_pod_reading_the_source_secret_directly_keeps_ready_to_rotate_false() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
    let mut direct = (*pod_record("debug", None, "token2", None)).clone();
    direct.references[0].secret = "portal".into();
    fixture.snapshot.namespaces[0].pods.push(Arc::new(direct));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].reason, "ReadsSourceSecret");
    assert!(
        blocked[0].message.contains("source Secret portal"),
        "{}",
        blocked[0].message
    );
}
