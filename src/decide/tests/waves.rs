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
