//! The rotation state machine: triggers, strategies, crashes and replays.

use super::*;

#[test]
fn the_trigger_a_streamingtoken_is_created_with_does_not_rotate() {
    let plan = fixture()
        .trigger("initial")
        .consumer(consumer("api", None, false))
        .plan();
    assert!(plan.status.rotation.is_none());
    assert_eq!(plan.status.observed_trigger.as_deref(), Some("initial"));
    assert!(plan.consumer_patches.is_empty());
    assert_eq!(
        condition(&plan, ROTATING),
        Some(("False".into(), "Idle".into()))
    );
}

#[test]
fn the_same_trigger_again_does_nothing() {
    let plan = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false))
        .plan();
    assert!(plan.status.rotation.is_none());
    assert!(plan.secret.is_none());
    assert!(plan.consumer_patches.is_empty());
}

#[test]
fn a_new_trigger_starts_a_zero_downtime_rotation_by_repointing() {
    let mut fixture = fixture().trigger("t1").established(("one", "two"), (1, 2));
    fixture = fixture
        .trigger("t2")
        .consumer(consumer("api", None, false))
        .consumer(consumer("web", Some("r0"), true));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("rotation started");
    assert_eq!(
        (rotation.id.as_str(), rotation.phase.as_str()),
        ("r1", PHASE_REPOINTING)
    );
    assert_eq!(rotation.deactivates_serial, 1);
    assert_eq!(started.status.observed_trigger.as_deref(), Some("t2"));
    assert_eq!(
        reasons(&started),
        ["RotationStarted"],
        "the start is recorded before anything is written"
    );
    let plan = fixture.after(&started);
    assert!(plan.secret.is_none(), "Token 1 stays active");
    let patched: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.name.as_str())
        .collect();
    assert_eq!(patched, ["api", "web"]);
    let repoint = plan.consumer_patches[0].repoint.clone().expect("repoint");
    assert_eq!(
        (
            repoint.containers[0].variables[0].as_str(),
            repoint.key.as_str()
        ),
        ("STREAMING_TOKEN", "token2")
    );
    assert_eq!(reasons(&plan), ["ConsumersRepointed"]);
}

#[test]
fn zero_downtime_deactivates_only_once_every_consumer_is_verified() {
    let base = || {
        fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_AWAITING_ROLLOUT,
            1,
            RotationStrategy::ZeroDowntime,
        )
    };
    let mut terminating = consumer("web", Some("r1"), true);
    terminating
        .pods
        .as_mut()
        .expect("pods")
        .push(PodObservation {
            name: "web-old".into(),
            rotation: None,
            terminating: true,
            held_by: vec![],
        });
    let mut paused = consumer("web", Some("r1"), true);
    paused.paused = true;
    let cases: Vec<(&str, Fixture, bool)> = vec![
        (
            "all verified",
            base().consumer(consumer("api", Some("r1"), true)),
            true,
        ),
        ("no consumers", base(), true),
        (
            "an old pod is terminating",
            base()
                .consumer(consumer("api", Some("r1"), true))
                .consumer(terminating),
            false,
        ),
        ("a consumer is paused", base().consumer(paused), false),
    ];
    for (name, fixture, deactivated) in cases {
        let plan = fixture.plan();
        match written_pair(&plan) {
            Some(pair) => {
                assert!(deactivated, "{name}: deactivated too early");
                assert_eq!(pair, ("two".into(), "fresh-a".into(), 2, 3), "{name}");
                assert!(plan.status.rotation.is_none(), "{name}: completed");
                assert_eq!(
                    plan.status
                        .last_rotation
                        .as_ref()
                        .map(|last| last.id.as_str()),
                    Some("r1")
                );
                assert!(reasons(&plan).contains(&"TokenDeactivated"));
                assert!(reasons(&plan).contains(&"RotationCompleted"));
            }
            None => {
                assert!(!deactivated, "{name}: should have deactivated");
                assert!(plan.status.rotation.is_some(), "{name}: still rotating");
            }
        }
    }
}

#[test]
fn a_blocked_consumer_is_reported_and_degrades() {
    let mut paused = consumer("web", Some("r1"), true);
    paused.paused = true;
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(paused)
        .plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.blocked.len(), 1);
    assert_eq!(summary.blocked[0].reason, "Paused");
    assert!(reasons(&plan).contains(&"ConsumerBlocked"));
    assert!(plan.secret.is_none());
}

#[test]
fn restart_strategy_deactivates_first_then_restarts_consumers() {
    let mut fixture = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .trigger("t2")
        .strategy(RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    let started = fixture.plan();
    assert_eq!(reasons(&started), ["RotationStarted"]);
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    let rotation = plan.status.rotation.clone().expect("still restarting");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(reasons(&plan), ["TokenDeactivated", "Restarting"]);
    // Restarted pods read Token 1: only once kubelets can have the new values.
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
    assert!(
        plan.consumer_patches[0].repoint.is_none(),
        "Restart does not repoint"
    );
    assert_eq!(reasons(&plan), ["ConsumersRestarted"]);
}

#[test]
fn a_crash_after_the_deactivating_write_completes_without_writing_again() {
    // Status still says AwaitingRollout for r1, but the Secret already holds the promoted pair.
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.status.token1 = Some(identity(1));
    fixture.snapshot.status.token2 = Some(identity(2));
    let plan = fixture.plan();
    assert!(plan.secret.is_none(), "no second deactivation");
    assert!(plan.status.rotation.is_none());
    assert!(
        reasons(&plan).contains(&"TokenDeactivated"),
        "the Event the interrupted pass never published"
    );
    assert_eq!(
        plan.status.token1.as_ref().map(|token| token.serial),
        Some(2)
    );
}

#[test]
fn replayed_repoint_is_a_no_op() {
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .plan();
    assert!(
        plan.consumer_patches.is_empty(),
        "already on r1 and Token 2: no second roll"
    );
}

#[test]
fn a_trigger_during_a_rotation_is_queued_and_runs_next() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.namespaces[0].consumers[0].pods = Some(vec![]);
    fixture.snapshot.spec.rotation.trigger = Some("t3".into());
    fixture.snapshot.namespaces[0].consumers[0].template_rotation = Some("r1".into());
    fixture.snapshot.namespaces[0].consumers[0]
        .pods
        .as_mut()
        .expect("pods")
        .push(PodObservation {
            name: "old".into(),
            rotation: None,
            terminating: true,
            held_by: vec![],
        });
    let plan = fixture.plan();
    let rotation = plan.status.rotation.clone().expect("same rotation");
    assert_eq!(rotation.id, "r1", "not interrupted");
    assert_eq!(rotation.queued_trigger.as_deref(), Some("t3"));
    assert!(reasons(&plan).contains(&"RotationQueued"));

    // Once r1 completes, the queued trigger starts r2.
    fixture.snapshot.status = plan.status;
    fixture.snapshot.namespaces[0].consumers[0].pods = Some(vec![]);
    let plan = fixture.plan();
    assert_eq!(written_pair(&plan).map(|pair| pair.2), Some(2));
    let next = plan.status.rotation.expect("queued rotation started");
    assert_eq!(next.id, "r2");
    assert_eq!(plan.status.observed_trigger.as_deref(), Some("t3"));
}

#[test]
fn secret_ref_rotation_hands_over_to_a_person_and_completes_on_promotion() {
    let waiting = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let plan = waiting.plan();
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_SOURCE)
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    assert!(plan.secret.is_none());

    let mut promoted = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    promoted.snapshot.status.conditions = plan.status.conditions.clone();
    let plan = promoted.plan();
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "NoRotation".into()))
    );
}

#[test]
fn secret_ref_consumers_not_verified_means_not_ready_to_rotate() {
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .consumer(consumer("web", Some("r1"), true))
        .plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    let mut unverified = consumer("web", Some("r1"), true);
    unverified.ready = 1;
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(unverified)
        .plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
}

#[test]
fn replacement_during_a_rotation_abandons_it_and_restarts_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-2026-12-01")
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let started = fixture.plan();
    assert_eq!(reasons(&started), ["RotationAborted", "RotationStarted"]);
    let plan = fixture.after(&started);
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.id.as_str()),
        Some("x3")
    );
    assert!(
        !reasons(&plan).contains(&"RotationAborted"),
        "the restart is not abandoned for itself"
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn secret_ref_promoted_before_consumers_are_verified_waits_for_them() {
    let mut unverified = consumer("api", Some("r1"), true);
    unverified.ready = 1;
    let plan = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(unverified)
        .plan();
    assert!(reasons(&plan).contains(&"SourcePromotedEarly"));
    assert!(
        plan.status.rotation.is_some(),
        "not complete while a consumer is unverified"
    );
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3)),
        "the mirror follows the source"
    );
}

#[test]
fn ready_to_rotate_is_withdrawn_when_a_consumer_regresses() {
    let mut regressed = consumer("api", Some("r1"), true);
    regressed.pods.as_mut().expect("pods").push(PodObservation {
        name: "api-old".into(),
        rotation: Some("r0".into()),
        terminating: false,
        held_by: vec![],
    });
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(regressed);
    fixture.snapshot.status.conditions.clear();
    let plan = fixture.plan();
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_ROLLOUT)
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
}

#[test]
fn periodic_rotation_is_scheduled_and_starts_when_due() {
    let mut fixture = fixture().established(("one", "two"), (1, 2));
    fixture.snapshot.spec.rotation.interval = Some("1h".into());
    let plan = plan(&fixture.snapshot, &at(60));
    assert_eq!(plan.status.next_rotation_at, Some(at(3600)));
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(3540)));
    assert!(plan.status.rotation.is_none());
    // The start is recorded first; with no consumers the rotation then completes at once.
    let started = super::plan(&fixture.snapshot, &at(3600));
    assert_eq!(
        started
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.cause.as_str()),
        Some("Interval")
    );
    assert!(started.secret.is_none());
    fixture.snapshot.status = started.status.clone();
    let plan = super::plan(&fixture.snapshot, &at(3600));
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    assert!(reasons(&plan).contains(&"RotationCompleted"));
    assert_eq!(
        plan.status.last_rotation.map(|last| last.completed_at),
        Some(at(3600))
    );
    assert_eq!(plan.status.next_rotation_at, Some(at(7200)));
}

#[test]
fn a_literal_env_value_blocks_repointing_with_a_clear_reason() {
    let mut literal = consumer("api", None, false);
    literal.containers[0].source = EnvSource::Literal;
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(literal)
        .plan();
    assert!(plan.consumer_patches.is_empty());
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.blocked[0].reason, "LiteralEnvValue");
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    assert!(plan.secret.is_none());
}

#[test]
fn waiting_on_the_source_is_stable_across_reconciles() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let first = fixture.plan();
    assert_eq!(
        first
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_SOURCE)
    );
    fixture.snapshot.status = first.status.clone();
    let again = plan(&fixture.snapshot, &at(300));
    assert!(
        again.events.is_empty(),
        "no Events while waiting: {:?}",
        reasons(&again)
    );
    assert_eq!(again.status, first.status, "no status write while waiting");
    assert!(again.secret.is_none() && again.consumer_patches.is_empty());
}

#[test]
fn promotion_seen_with_an_unrepointed_consumer_rolls_it_first() {
    // The platform was rotated while a newly labelled consumer still reads Token 1.
    let plan = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .consumer(consumer("late", None, false))
        .plan();
    assert!(
        plan.status.rotation.is_some(),
        "not complete with a consumer left behind"
    );
    assert_eq!(plan.consumer_patches.len(), 1);
    assert_eq!(plan.consumer_patches[0].name, "late");
}

#[test]
fn a_promotion_with_no_rotation_restarts_consumers_under_a_new_id() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("restart");
    assert_eq!(
        (rotation.id.as_str(), rotation.cause.as_str()),
        ("x2", "TokensReplaced")
    );
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn a_restart_replayed_after_its_deactivating_write_does_not_deactivate_again() {
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_DEACTIVATING, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    fixture.snapshot.status.token1 = Some(identity(1));
    fixture.snapshot.status.token2 = Some(identity(2));
    let plan = fixture.plan();
    assert!(plan.secret.is_none(), "Token 1 was already deactivated");
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_RESTARTING)
    );
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn restart_with_secret_ref_does_not_claim_consumers_use_token2() {
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_DEACTIVATING, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false))
        .plan();
    let ready = conditions::get(&plan.status.conditions, READY_TO_ROTATE).expect("condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "RestartAfterRotation")
    );
    assert!(
        !ready.message.contains("every consumer uses Token 2"),
        "{}",
        ready.message
    );
}

#[test]
fn a_stamp_from_another_incarnation_does_not_count_as_rolled() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        // Stamped `r1` by a StreamingToken of the same name that was deleted.
        .consumer(consumer("api", Some("r1.deadbeef"), true));
    fixture.snapshot.uid = "0123456789abcdef".into();
    let plan = fixture.plan();
    assert!(
        plan.secret.is_none(),
        "not verified on this incarnation's r1"
    );
    assert_eq!(plan.consumer_patches.len(), 1);
    assert_eq!(plan.consumer_patches[0].rotation_id, "r1.01234567");
}

#[test]
fn a_mirror_deleted_while_waiting_for_the_platform_is_reported_and_the_rotation_abandoned() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let plan = fixture.plan();
    assert!(
        reasons(&plan).contains(&"MirrorLostDuringRotation"),
        "{:?}",
        reasons(&plan)
    );
    assert!(reasons(&plan).contains(&"RotationAborted"));
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 3, 4)),
        "new serials: the old ones cannot be matched to this pair"
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "NoRotation".into()))
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "consumers read Token 2, which either pair holds"
    );
}

#[test]
fn a_rotate_request_starts_one_rotation_and_is_queued_during_one() {
    let mut fixture = fixture().established(("one", "two"), (1, 2));
    fixture.snapshot.rotate_request = Some("manual-1".into());
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("started");
    assert_eq!(
        (rotation.cause.as_str(), rotation.trigger.as_deref()),
        ("Request", Some("manual-1"))
    );
    assert_eq!(
        started.status.observed_rotate_request.as_deref(),
        Some("manual-1")
    );
    assert_eq!(
        started.status.observed_trigger, None,
        "the Git-owned trigger is not involved"
    );
    // The same request again is not a new one.
    fixture.snapshot.status = started.status.clone();
    fixture.snapshot.status.rotation = None;
    assert!(fixture.plan().status.rotation.is_none());
    // A new request during a rotation waits its turn.
    let mut rotating = fixture
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", None, false));
    rotating.snapshot.status.observed_rotate_request = Some("manual-1".into());
    rotating.snapshot.rotate_request = Some("manual-2".into());
    let plan = rotating.plan();
    assert!(reasons(&plan).contains(&"RotationQueued"));
    assert_eq!(
        plan.status
            .rotation
            .and_then(|rotation| rotation.queued_request)
            .as_deref(),
        Some("manual-2")
    );
}

#[test]
fn a_restart_leaves_alone_consumers_whose_pods_cannot_hold_the_deactivated_token() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::Restart)
        .consumer(consumer("fresh", Some("r0"), true))
        .consumer(consumer("stale", None, false));
    // fresh: its pods read Token 2 and started after the last write (they hold "two", which
    // the promotion keeps). stale: its pods read Token 1.
    fixture.snapshot.namespaces[0].pods = consumer_pods("fresh", "r0");
    fixture.snapshot.namespaces[0]
        .pods
        .extend((0..2).map(|index| {
            pod_record(
                &format!("stale-{index}"),
                Some(("Deployment", "stale")),
                "token1",
                None,
            )
        }));
    let first = fixture.plan();
    assert!(reasons(&first).contains(&"ConsumersLeftAlone"));
    assert!(
        first.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&first);
    let rotation = plan.status.rotation.clone().expect("restarting");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(rotation.left_alone, ["Deployment/fresh"]);
    let restarted: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.name.as_str())
        .collect();
    assert_eq!(restarted, ["stale"], "no needless second restart");
    // Once the restarted consumer has rolled out, the rotation completes (the one left alone
    // counts as verified).
    fixture.snapshot.status = plan.status.clone();
    fixture.snapshot.mirror = MirrorObservation::Owned(mirror_of(("two", "three"), (2, 3)));
    let stamp = fixture.snapshot.stamp("r1");
    fixture.snapshot.namespaces[0].consumers[1] = consumer("stale", Some(&stamp), false);
    let done = fixture.plan();
    assert!(done.status.rotation.is_none(), "{:?}", done.status.rotation);
}

#[test]
fn plans_that_rest_on_no_pod_holding_token1_ask_for_a_fresh_pod_list() {
    // ReadyToRotate turning True.
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let flip = fixture.plan();
    assert_eq!(
        condition(&flip, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    assert!(flip.deactivates, "ReadyToRotate turning True");
    // Staying True is not a new decision.
    fixture.snapshot.status = flip.status.clone();
    assert!(!fixture.plan().deactivates);
    // The deactivating write.
    let deactivating = fixture_deactivating();
    assert!(deactivating.deactivates && deactivating.secret.is_some());
}

#[test]
fn repointing_waits_until_kubelet_caches_have_the_latest_values() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", None, false));
    // The values were written 1 s before this reconcile (a queued rotation right after one).
    if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
        mirror.values_written_at = Some(1_800_000_000 + 99);
    }
    let early = fixture.plan();
    assert!(
        early.consumer_patches.is_empty(),
        "no repoint within the margin"
    );
    let margin = KUBELET_CACHE_MARGIN_SECONDS;
    // Settled at 99 + margin; looked at again one second after.
    assert_eq!(
        early.requeue,
        Requeue::After(Duration::from_secs(
            u64::try_from(margin).expect("positive")
        ))
    );
    let later = plan(&fixture.snapshot, &at(99 + margin + 1));
    assert_eq!(later.consumer_patches.len(), 1);
}

#[test]
fn the_rollout_timeout_counts_from_the_start_of_waiting_not_from_each_phase() {
    let mut progressing = consumer("api", Some("r1"), true);
    progressing.ready = 1;
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(progressing);
    // A revert flipped the phase a moment ago; the rotation has waited 20 minutes in all.
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.rollout_started_at = Some(at(-1200));
        rotation.phase_started_at = at(99);
    }
    let plan = fixture.plan();
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].reason, "RolloutTimeout");
}
