//! Waves and the restart budget.

use super::*;

#[test]
fn budgets_resolve_numbers_and_percentages() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let cases = [
        (Some(IntOrString::Int(5)), 30, Some(5)),
        (Some(IntOrString::Int(0)), 30, Some(1)),
        (Some(IntOrString::String("10%".into())), 30, Some(3)),
        (Some(IntOrString::String("10%".into())), 31, Some(4)),
        (Some(IntOrString::String("1%".into())), 30, Some(1)),
        (Some(IntOrString::String("100%".into())), 30, Some(30)),
        (None, 30, None),
    ];
    for (spec, total, want) in cases {
        assert_eq!(
            crate::decide::waves::budget(spec.as_ref(), total),
            want,
            "{spec:?} of {total}"
        );
    }
}

#[test]
fn a_budget_caps_the_consumers_rolling_at_once() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let base = || {
        let mut fixture = fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_REPOINTING,
            1,
            RotationStrategy::ZeroDowntime,
        );
        fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(2));
        fixture
    };
    // (case, consumers, patched now, rolling, verified, pending)
    type Case<'a> = (
        &'a str,
        Vec<ConsumerObservation>,
        Vec<&'a str>,
        i32,
        i32,
        i32,
    );
    let cases: Vec<Case> = vec![
        (
            "five to go: two start",
            ["a", "b", "c", "d", "e"]
                .iter()
                .map(|name| consumer(name, None, false))
                .collect(),
            vec!["a", "b"],
            2,
            0,
            3,
        ),
        (
            "two rolling: none starts",
            vec![
                rolling_consumer("a"),
                rolling_consumer("b"),
                consumer("c", None, false),
            ],
            vec![],
            2,
            0,
            1,
        ),
        (
            "one verified, one rolling: one more starts",
            vec![
                consumer("a", Some("r1"), true),
                rolling_consumer("b"),
                consumer("c", None, false),
                consumer("d", None, false),
            ],
            vec!["c"],
            2,
            1,
            1,
        ),
    ];
    for (case, consumers, want, rolling, verified, pending) in cases {
        let mut fixture = base();
        for consumer in consumers {
            fixture = fixture.consumer(consumer);
        }
        let plan = fixture.plan();
        assert_eq!(patched(&plan), want, "{case}");
        assert!(plan.secret.is_none(), "{case}: nothing deactivated");
        let waves = plan
            .status
            .rotation
            .as_ref()
            .and_then(|rotation| rotation.waves.clone())
            .expect("waves reported");
        assert_eq!(
            (
                waves.rolling,
                waves.verified,
                waves.pending,
                waves.max_concurrent
            ),
            (rolling, verified, pending, 2),
            "{case}"
        );
    }
}

#[test]
fn waves_roll_in_order_and_a_blocked_consumer_holds_the_next_wave() {
    let base = || {
        fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_REPOINTING,
            1,
            RotationStrategy::ZeroDowntime,
        )
    };
    // Wave 1 first; wave 2 and the unlabelled wait.
    let plan = base()
        .consumer(waved(consumer("first", None, false), 1))
        .consumer(waved(consumer("second", None, false), 2))
        .consumer(consumer("last", None, false))
        .plan();
    assert_eq!(patched(&plan), ["first"]);
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .and_then(|rotation| rotation.waves.as_ref())
            .map(|waves| waves.current.as_str()),
        Some("1")
    );
    // Wave 1 verified: wave 2 starts, the unlabelled still wait.
    let plan = base()
        .consumer(waved(consumer("first", Some("r1"), true), 1))
        .consumer(waved(consumer("second", None, false), 2))
        .consumer(consumer("last", None, false))
        .plan();
    assert_eq!(patched(&plan), ["second"]);
    // A paused consumer of wave 2, already started, holds the unlabelled wave: nothing starts,
    // it is reported, and Token 1 stays.
    let mut paused = waved(rolling_consumer("second"), 2);
    paused.paused = true;
    let plan = base()
        .consumer(waved(consumer("first", Some("r1"), true), 1))
        .consumer(paused)
        .consumer(consumer("last", None, false))
        .plan();
    assert!(patched(&plan).is_empty(), "{:?}", patched(&plan));
    assert!(plan.secret.is_none());
    // A wave label that is not a number: never started, reported with a reason.
    let mut odd = consumer("odd", None, false);
    odd.wave = crate::model::consumer::Wave::Invalid("two".into());
    let plan = base().consumer(odd).plan();
    assert!(patched(&plan).is_empty());
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked[0].reason, "InvalidWaveLabel", "{blocked:?}");
}

#[test]
fn a_restart_under_a_budget_restarts_a_few_at_a_time_and_none_twice() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_RESTARTING, 1, RotationStrategy::Restart)
        .consumer(consumer("a", None, false))
        .consumer(consumer("b", None, false))
        .consumer(consumer("c", None, false));
    fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(1));
    assert_eq!(patched(&fixture.plan()), ["a"]);
    // a restarted and rolling: nothing more; a verified: b.
    fixture.snapshot.namespaces[0].consumers[0] = rolling_consumer("a");
    assert!(patched(&fixture.plan()).is_empty());
    fixture.snapshot.namespaces[0].consumers[0] = consumer("a", Some("r1"), true);
    assert_eq!(patched(&fixture.plan()), ["b"]);
}

fn started(consumer: &str, seconds: i64) -> crate::api::ConsumerStart {
    crate::api::ConsumerStart {
        consumer: format!("Deployment/{consumer}"),
        started_at: at(seconds),
    }
}

#[test]
fn a_consumer_patched_but_not_yet_seen_by_the_watch_holds_its_slot() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        // Labelled a moment ago, sorted first.
        .consumer(consumer("a-new", None, false))
        // Patched by the previous pass; the workload watch still shows its old template.
        .consumer(consumer("b", None, false))
        .consumer(rolling_consumer("c"))
        .consumer(consumer("d", None, false));
    fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(2));
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.started = vec![started("b", 90), started("c", 50)];
    }
    let plan = fixture.plan();
    assert_eq!(
        patched(&plan),
        ["b"],
        "b holds its slot (its patch written again, a no-op); a-new waits"
    );
    let rotation = plan.status.rotation.expect("rotation");
    let waves = rotation.waves.expect("waves");
    assert_eq!((waves.rolling, waves.pending), (2, 2));
    assert_eq!(
        rotation.started,
        [started("b", 90), started("c", 50)],
        "first starts kept"
    );
    // c verified: it leaves the record, and its slot goes to the next in order (a-new).
    fixture.snapshot.namespaces[0].consumers[2] = consumer("c", Some("r1"), true);
    let plan = fixture.plan();
    assert_eq!(patched(&plan), ["a-new", "b"]);
    assert_eq!(
        plan.status.rotation.expect("rotation").started,
        [started("b", 90), started("a-new", 100)]
    );
}

#[test]
fn a_consumer_stuck_in_an_early_wave_keeps_its_own_deadline() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    for (phase, pending) in [(PHASE_REPOINTING, true), (PHASE_AWAITING_ROLLOUT, false)] {
        let mut fixture = fixture()
            .established(("one", "two"), (1, 2))
            .rotating(phase, 1, RotationStrategy::ZeroDowntime)
            .consumer(waved(rolling_consumer("stuck"), 0))
            .consumer(waved(rolling_consumer("late"), 0));
        if pending {
            fixture = fixture.consumer(waved(consumer("pending", None, false), 0));
        }
        fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(2));
        fixture.snapshot.spec.rotation.rollout_timeout = "60s".into();
        if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
            // stuck started at 10 s; late at 80 s (the latest start of the rotation).
            rotation.rollout_started_at = Some(at(0));
            rotation.consumers_started_at = Some(at(80));
            rotation.started = vec![started("stuck", 10), started("late", 80)];
        }
        let plan = fixture.plan();
        let blocked = plan.status.consumers.expect("summary").blocked;
        let reasons: Vec<(&str, &str)> = blocked
            .iter()
            .map(|entry| (entry.name.as_str(), entry.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [("stuck", "RolloutTimeout")],
            "{phase}: 90 s since stuck started, 20 s since late did"
        );
        assert!(plan.secret.is_none(), "{phase}");
    }
}
