//! The platform's word: checks, rotations out of band, the rotate call.

use super::*;

#[test]
fn a_pasted_pair_is_mirrored_only_once_the_platform_accepts_both_tokens() {
    use Verdict::{Accepted, Rejected, Unknown};
    let unknown = || Unknown("timed out".into());
    type Case<'a> = (Vec<(&'a str, Verdict)>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("one", Accepted), ("two", Accepted)], None, ""),
        (
            vec![("one", Accepted), ("two", Rejected)],
            Some("SourceTokenRejected"),
            "key token2",
        ),
        (
            vec![("one", Rejected), ("two", Rejected)],
            Some("SourceTokenRejected"),
            "key token1",
        ),
        // Unreachable is neither valid nor invalid: nothing is mirrored, and it says why.
        (
            vec![("one", unknown()), ("two", Accepted)],
            Some("PlatformUnreachable"),
            "timed out",
        ),
        (
            vec![("one", Accepted)],
            Some("PlatformUnreachable"),
            "not asked",
        ),
    ];
    for (verdicts, failed, says) in cases {
        let plan = fixture()
            .secret_ref(Ok(("one", "two")))
            .with_platform(platform(&verdicts, false, false))
            .plan();
        assert_eq!(plan.failed, failed, "{verdicts:?}");
        assert_eq!(plan.secret.is_some(), failed.is_none(), "{verdicts:?}");
        assert!(message_of(&plan, "Ready").contains(says), "{verdicts:?}");
        if failed.is_none() {
            assert_eq!(
                condition(&plan, "PlatformVerified"),
                Some(("True".into(), "TokensAccepted".into()))
            );
        }
    }
}

#[test]
fn a_promotion_is_taken_only_once_the_platform_rejects_the_former_token1() {
    use Verdict::{Accepted, Rejected, Unknown};
    let promoted = |former: Verdict, new2: Verdict| {
        fixture()
            .secret_ref(Ok(("two", "three")))
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
            .consumer(consumer("api", Some("r1"), true))
            .with_platform(platform(
                &[("one", former), ("two", Accepted), ("three", new2)],
                false,
                false,
            ))
            .plan()
    };
    let plan = promoted(Rejected, Accepted);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none(), "completed");
    for (former, new2, reason) in [
        (Accepted, Accepted, "SourceNotRotatedAtPlatform"),
        (Rejected, Rejected, "SourceTokenRejected"),
        (Unknown("down".into()), Accepted, "PlatformUnreachable"),
    ] {
        let plan = promoted(former, new2);
        assert!(plan.secret.is_none(), "{reason}: the mirror keeps its pair");
        assert_eq!(
            condition(&plan, "Degraded").map(|(_, reason)| reason),
            Some(reason.to_string())
        );
        assert!(plan.status.rotation.is_some(), "{reason}: still waiting");
    }
}

#[test]
fn a_token1_rejected_behind_the_operators_back_moves_every_consumer_at_once() {
    use Verdict::{Accepted, Rejected};
    let mut oob = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .strategy(RotationStrategy::Restart)
        .consumer(consumer("api", None, false))
        .consumer(consumer("web", None, false))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ));
    oob.snapshot.spec.rotation.max_concurrent_consumers =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1));
    let plan = oob.plan();
    assert!(reasons(&plan).contains(&"RotatedOutOfBand"));
    assert!(
        plan.status
            .platform
            .as_ref()
            .is_some_and(|platform| platform.rotated_out_of_band_at.is_some())
    );
    let rotation = plan.status.rotation.clone().expect("a rotation starts");
    assert_eq!(rotation.cause, "RotatedOutOfBand");
    assert_eq!(
        rotation.strategy,
        RotationStrategy::ZeroDowntime,
        "finished by repointing, whatever the strategy"
    );
    // The next pass repoints both consumers at once, despite a budget of one.
    let plan = oob.after(&plan);
    assert_eq!(plan.consumer_patches.len(), 2);
    assert_eq!(
        condition(&plan, "Degraded").map(|(_, reason)| reason),
        Some("RotatedOutOfBand".to_string())
    );
    // Reported once: the next pass publishes no second Event.
    oob.snapshot.status = plan.status.clone();
    assert!(!reasons(&oob.plan()).contains(&"RotatedOutOfBand"));

    // With `Report`, it is only reported.
    let mut report = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ));
    let mut spec: crate::api::PlatformSpec = serde_json::from_value(serde_json::json!({
        "quix": {"portalApi": "https://portal.example", "workspaceId": "ws"},
        "onRotatedOutOfBand": "Report",
    }))
    .expect("spec");
    spec.timeout = "10s".into();
    report.snapshot.spec.platform = Some(spec);
    let plan = report.plan();
    assert!(reasons(&plan).contains(&"RotatedOutOfBand"));
    assert!(plan.status.rotation.is_none(), "Report starts nothing");
}

#[test]
fn a_rejection_the_rotation_asked_for_is_not_out_of_band() {
    use Verdict::{Accepted, Rejected};
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ))
        .plan();
    assert!(!reasons(&plan).contains(&"RotatedOutOfBand"));
}

/// `source.platform` in `AwaitingSource` with every consumer verified, `call` recorded.
fn rotating_at_platform(
    call: Option<(i32, &str, i64)>,
    read_fresh: bool,
    source: (&str, &str),
) -> Plan {
    use Verdict::Accepted;
    let mut fixture = fixture()
        .at_platform(source)
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .with_platform(platform(
            &[
                // Once the platform shows the promotion, it rejects the former Token 1.
                (
                    "one",
                    if source.0 == "one" {
                        Accepted
                    } else {
                        Verdict::Rejected
                    },
                ),
                ("two", Accepted),
                ("three", Accepted),
            ],
            true,
            read_fresh,
        ));
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.platform_rotate =
            call.map(
                |(attempts, state, at_second)| crate::api::PlatformRotateStatus {
                    attempts,
                    state: state.into(),
                    at: at(at_second),
                    message: String::new(),
                },
            );
    }
    fixture.plan()
}

fn call_state(plan: &Plan) -> Option<(i32, String)> {
    let call = plan.status.rotation.as_ref()?.platform_rotate.as_ref()?;
    Some((call.attempts, call.state.clone()))
}

#[test]
fn the_rotate_call_is_recorded_first_and_never_repeated_after_any_doubt() {
    // Verified, and the platform shows the recorded pair, read in this pass: call (attempt 1),
    // recorded before, with nothing else written and the decision re-taken on fresh pods.
    let plan = rotating_at_platform(None, true, ("one", "two"));
    assert_eq!(plan.platform_rotate, Some(1));
    assert_eq!(call_state(&plan), Some((1, "Calling".into())));
    assert!(plan.deactivates);
    assert!(plan.secret.is_none() && plan.consumer_patches.is_empty());
    assert_eq!(
        condition(&plan, READY_TO_ROTATE).map(|(status, _)| status),
        None,
        "no person is asked to act"
    );
    // Not read in this pass: read first.
    assert_eq!(
        rotating_at_platform(None, false, ("one", "two")).platform_rotate,
        None
    );
    // A call found `Calling`: its outcome is in doubt; never called again.
    let plan = rotating_at_platform(Some((1, "Calling", 90)), true, ("one", "two"));
    assert_eq!(plan.platform_rotate, None);
    assert_eq!(call_state(&plan), Some((1, "InDoubt".into())));
    assert!(reasons(&plan).contains(&"PlatformRotateInDoubt"));
    for state in ["InDoubt", "Rotated"] {
        let plan = rotating_at_platform(Some((1, state, 0)), true, ("one", "two"));
        assert_eq!(plan.platform_rotate, None, "{state}");
    }
    // A call that certainly did not reach the platform (or that it refused) is made again,
    // after a backoff (10 s after attempt 1).
    for state in ["NotSent", "Refused"] {
        assert_eq!(
            rotating_at_platform(Some((1, state, 95)), true, ("one", "two")).platform_rotate,
            None,
            "{state}: backing off"
        );
        assert_eq!(
            rotating_at_platform(Some((1, state, 50)), true, ("one", "two")).platform_rotate,
            Some(2),
            "{state}: attempt 2"
        );
    }
    // The platform shows the promotion: mirrored, complete, no call.
    let plan = rotating_at_platform(Some((1, "InDoubt", 0)), true, ("two", "three"));
    assert_eq!(plan.platform_rotate, None);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none());
}
