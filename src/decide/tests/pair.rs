//! The pair: mirroring, sources, repairs, and what goes backwards.

use super::*;

#[test]
fn mirror_decisions() {
    struct Case {
        name: &'static str,
        fixture: Fixture,
        pair: Option<(&'static str, &'static str, i64, i64)>,
        ready: (&'static str, &'static str),
        event: Option<&'static str>,
    }
    let mut tampered = mirror_of(("one", "two"), (1, 2));
    tampered.token1 = Some(Ok(token("edited")));
    let mut edited_serial = mirror_of(("one", "two"), (1, 2));
    edited_serial
        .annotations
        .insert(ANNOTATION_TOKEN2_SERIAL.into(), "99".into());
    let cases = vec![
        Case {
            name: "first pair is issued",
            fixture: fixture(),
            pair: Some(("fresh-a", "fresh-b", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("TokensIssued"),
        },
        Case {
            name: "converged: nothing written",
            fixture: fixture().established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: None,
        },
        Case {
            name: "deleted generated Secret: new pair, warning",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Missing;
                fixture
            },
            pair: Some(("fresh-a", "fresh-b", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretDeleted"),
        },
        Case {
            name: "edited value: pair lost, new pair, warning",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Owned(tampered);
                fixture
            },
            pair: Some(("fresh-a", "fresh-b", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretTampered"),
        },
        Case {
            name: "edited serial annotation: restored from status",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Owned(edited_serial);
                fixture
            },
            pair: Some(("one", "two", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretRepaired"),
        },
        Case {
            name: "secretRef first mirror",
            fixture: fixture().secret_ref(Ok(("p1", "p2"))),
            pair: Some(("p1", "p2", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("TokensMirrored"),
        },
        Case {
            name: "secretRef unchanged",
            fixture: fixture()
                .secret_ref(Ok(("one", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: None,
        },
        Case {
            name: "secretRef promoted at the platform",
            fixture: fixture()
                .secret_ref(Ok(("two", "three")))
                .established(("one", "two"), (1, 2)),
            pair: Some(("two", "three", 2, 3)),
            ready: ("True", "TokensReady"),
            event: Some("SourcePromoted"),
        },
        Case {
            name: "secretRef replaced out of band, confirmed",
            fixture: fixture()
                .secret_ref(Ok(("x", "y")))
                .confirmed("leak-1")
                .established(("one", "two"), (1, 2)),
            pair: Some(("x", "y", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("SourceReplaced"),
        },
        Case {
            name: "secretRef: an unrecognized pair (another environment's) waits for confirmation",
            fixture: fixture()
                .secret_ref(Ok(("x", "y")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceUnrecognized"),
        },
        Case {
            name: "secretRef: keys swapped",
            fixture: fixture()
                .secret_ref(Ok(("two", "one")))
                .confirmed("leak-1")
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceUnrecognized"),
        },
        Case {
            name: "secretRef: the new Token 2 pasted first",
            fixture: fixture()
                .secret_ref(Ok(("one", "three")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef: the promoted Token 1 pasted first (both keys hold the former Token 2)",
            fixture: fixture()
                .secret_ref(Ok(("two", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef: the same unknown value twice",
            fixture: fixture()
                .secret_ref(Ok(("same", "same")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("False", "SourceTokensIdentical"),
            event: Some("SourceTokensIdentical"),
        },
        Case {
            name: "secretRef: a new Token 1 pasted first",
            fixture: fixture()
                .secret_ref(Ok(("three", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef source missing: mirror kept",
            fixture: fixture()
                .secret_ref(Err(SourceProblem::NotFound {
                    name: "portal".into(),
                }))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("False", "SourceSecretNotFound"),
            event: Some("SourceSecretNotFound"),
        },
        Case {
            name: "secretRef invalid token",
            fixture: fixture().secret_ref(Err(SourceProblem::InvalidToken {
                name: "portal".into(),
                key: "token1".into(),
                problem: TokenProblem::Empty,
            })),
            pair: None,
            ready: ("False", "SourceTokenInvalid"),
            event: Some("SourceTokenInvalid"),
        },
        Case {
            name: "foreign Secret",
            fixture: {
                let mut fixture = fixture();
                fixture.snapshot.mirror = MirrorObservation::NotOwned;
                fixture
            },
            pair: None,
            ready: ("False", "SecretNotOwned"),
            event: Some("SecretNotOwned"),
        },
        Case {
            name: "Secret of another StreamingToken",
            fixture: {
                let mut fixture = fixture();
                fixture.snapshot.mirror = MirrorObservation::ClaimedBy("other".into());
                fixture
            },
            pair: None,
            ready: ("False", "SecretClaimedByOther"),
            event: Some("SecretClaimedByOther"),
        },
        Case {
            name: "source and mirror are one Secret",
            fixture: {
                let mut fixture = fixture().secret_ref(Ok(("p1", "p2")));
                fixture.snapshot.secret_name = "portal".into();
                fixture
            },
            pair: None,
            ready: ("False", "InvalidSpec"),
            event: Some("InvalidSpec"),
        },
        Case {
            name: "suspended: deleted Secret not repaired",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Missing;
                fixture.snapshot.spec.suspend = true;
                fixture
            },
            pair: None,
            ready: ("False", "Suspended"),
            event: None,
        },
    ];
    for case in cases {
        let plan = case.fixture.plan();
        let pair = written_pair(&plan);
        let want = case
            .pair
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c, d));
        assert_eq!(pair, want, "{}: written pair", case.name);
        assert_eq!(
            condition(&plan, READY),
            Some((case.ready.0.to_string(), case.ready.1.to_string())),
            "{}: Ready",
            case.name
        );
        assert_eq!(
            reasons(&plan).first().copied(),
            case.event,
            "{}: first event",
            case.name
        );
    }
}

#[test]
fn a_problem_already_reported_is_not_reported_again_and_backs_off() {
    let mut fixture = fixture().secret_ref(Err(SourceProblem::NotFound {
        name: "portal".into(),
    }));
    let first = fixture.plan();
    assert_eq!(first.failed, Some("SourceSecretNotFound"));
    assert_eq!(first.requeue, Requeue::After(Duration::from_secs(5)));
    fixture.snapshot.status = first.status;
    fixture.snapshot.failures = 3;
    let again = fixture.plan();
    assert!(
        again.events.is_empty(),
        "no duplicate Event: {:?}",
        reasons(&again)
    );
    assert_eq!(again.requeue, Requeue::After(Duration::from_secs(40)));
    fixture.snapshot.failures = 30;
    assert_eq!(fixture.plan().requeue, Requeue::After(MAX_BACKOFF));
}

#[test]
fn tokens_replaced_out_of_band_restart_every_consumer() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-2026-12-01")
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r1"), true));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("restart rotation");
    assert_eq!(rotation.cause, "TokensReplaced");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(
        rotation.id, "x3",
        "named after the new Token 1, unlike any earlier rotation"
    );
    assert_eq!(
        started.status.token1.as_ref().map(|token| token.serial),
        Some(1),
        "not mirrored yet"
    );
    let plan = fixture.after(&started);
    assert_eq!(written_pair(&plan), Some(("x".into(), "y".into(), 3, 4)));
    assert!(reasons(&plan).contains(&"SourceReplaced"));
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(
        plan.consumer_patches.len(),
        1,
        "a consumer already on r1 restarts too"
    );
    assert_eq!(
        plan.status.rotation.map(|rotation| rotation.id),
        Some("x3".into())
    );
}

#[test]
fn no_token_value_reaches_status_events_or_debug_output() {
    let sentinel = "SENTINEL-value-0123456789";
    let fixtures = [
        fixture().secret_ref(Ok((sentinel, "other"))),
        fixture()
            .secret_ref(Ok(("other", sentinel)))
            .established(("one", "two"), (1, 2)),
        fixture().secret_ref(Ok((sentinel, sentinel))),
    ];
    for fixture in fixtures {
        let plan = fixture.plan();
        let status = serde_json::to_string(&plan.status).expect("serializes");
        assert!(!status.contains(sentinel));
        for notice in &plan.events {
            assert!(!notice.message.contains(sentinel));
        }
        assert!(
            !format!("{plan:?}").contains(sentinel),
            "Debug of a plan redacts tokens"
        );
    }
}

#[test]
fn a_deleted_generated_secret_with_consumers_restarts_them_once_recorded() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let started = fixture.plan();
    assert_eq!(
        started
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.id.as_str()),
        Some("x3")
    );
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan).map(|pair| (pair.2, pair.3)),
        Some((3, 4))
    );
    assert!(reasons(&plan).contains(&"MirrorSecretDeleted"));
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn a_pair_pasted_key_by_key_waits_then_promotes_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let first = fixture.plan();
    assert!(first.secret.is_none() && first.consumer_patches.is_empty());
    assert_eq!(
        condition(&first, DEGRADED),
        Some(("True".into(), "SourceIncomplete".into()))
    );
    let message = &conditions::get(&first.status.conditions, DEGRADED)
        .expect("degraded")
        .message;
    assert!(message.contains("key token1"), "{message}");
    assert!(!reasons(&first).contains(&"RotationAborted"));
    assert!(!reasons(&first).contains(&"SourceReplaced"));
    // Reported once while it stays incomplete.
    fixture.snapshot.status = first.status.clone();
    assert!(fixture.plan().events.is_empty());
    // The second key lands: the promotion completes the rotation, and nobody restarts.
    fixture = fixture.secret_ref(Ok(("two", "three")));
    let done = fixture.plan();
    assert_eq!(
        written_pair(&done),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(done.status.rotation.is_none());
    assert!(done.consumer_patches.is_empty());
    assert_eq!(
        condition(&done, DEGRADED),
        Some(("False".into(), "AsExpected".into()))
    );
}

#[test]
fn a_confirmation_is_acted_on_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-1")
        .established(("one", "two"), (1, 2));
    // The mirror already acted on "leak-1" (for an earlier replacement).
    if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
        mirror
            .annotations
            .insert(ANNOTATION_REPLACEMENT.into(), "leak-1".into());
    }
    let plan = fixture.plan();
    assert!(
        plan.secret.is_none(),
        "an old confirmation does not confirm a new pair"
    );
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "SourceUnrecognized".into()))
    );
    let confirmed = fixture.confirmed("leak-2").plan();
    let write = confirmed.secret.expect("mirrored");
    assert_eq!(write.replacement.as_deref(), Some("leak-2"));
    assert_eq!(
        mirror_annotations(&write)
            .get(ANNOTATION_REPLACEMENT)
            .map(String::as_str),
        Some("leak-2")
    );
}

#[test]
fn delete_policy_with_readers_is_warned_about_before_anyone_deletes() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.spec.deletion_policy = DeletionPolicy::Delete;
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r0");
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, conditions::DELETES_SECRET_IN_USE),
        Some(("True".into(), "SecretInUse".into()))
    );
    assert!(reasons(&plan).contains(&"DeletionPolicyDeletesSecretInUse"));
    fixture.snapshot.status = plan.status.clone();
    assert!(fixture.plan().events.is_empty(), "said once");
    fixture.snapshot.spec.deletion_policy = DeletionPolicy::Retain;
    assert_eq!(
        condition(&fixture.plan(), conditions::DELETES_SECRET_IN_USE),
        None
    );
}

#[test]
fn a_mirror_lost_during_a_restart_is_restored_in_the_same_pass_not_in_a_loop() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let plan = fixture.plan();
    assert!(plan.secret.is_some(), "the mirror is restored now");
    let restart = plan
        .status
        .rotation
        .clone()
        .expect("a restart replaces the rotation");
    assert_eq!(restart.phase, PHASE_RESTARTING);
    // Next pass: the mirror exists again; the restart proceeds instead of starting over.
    let written = plan.secret.clone().expect("write");
    fixture.snapshot.status = plan.status.clone();
    let mut observed = mirror_of(
        (written.pair.token1.expose(), written.pair.token2.expose()),
        (written.identities[0].serial, written.identities[1].serial),
    );
    observed.annotations = mirror_annotations(&written);
    fixture.snapshot.mirror = MirrorObservation::Owned(observed);
    let next = fixture.plan();
    assert!(
        !reasons(&next).contains(&"RotationAborted"),
        "{:?}",
        reasons(&next)
    );
    assert_eq!(
        next.status.rotation.map(|rotation| rotation.id),
        Some(restart.id)
    );
    assert_eq!(next.consumer_patches.len(), 1, "the consumer restarts once");
}

/// A fixture whose status records serials (3, 4) while the mirror Secret is an older copy of
/// itself (serials 1 and 2) put back.
fn rolled_back(fixture: Fixture) -> Fixture {
    let mut fixture = fixture.established(("one", "two"), (1, 2));
    fixture.snapshot.status.token1 = Some(identity(3));
    fixture.snapshot.status.token2 = Some(identity(4));
    fixture
}

#[test]
fn an_older_mirror_put_back_is_refused_and_never_completes_a_rotation() {
    // secretRef: the current pair is mirrored again from the source under the serials of
    // record; nothing is taken as a promotion.
    let plan = rolled_back(fixture().secret_ref(Ok(("three", "four"))))
        .consumer(consumer("api", None, true))
        .plan();
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    assert!(!reasons(&plan).contains(&"SourcePromoted"));
    assert_eq!(
        written_pair(&plan),
        Some(("three".into(), "four".into(), 3, 4))
    );
    assert!(
        plan.status.rotation.is_none(),
        "no rotation starts or completes"
    );

    // secretRef, mid-rotation: its records are gone, the rotation is not completed by it.
    let plan = rolled_back(fixture().secret_ref(Ok(("four", "five"))))
        .rotating(PHASE_AWAITING_SOURCE, 3, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r3"), true))
        .plan();
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    assert!(!reasons(&plan).contains(&"RotationCompleted"));
    assert!(
        plan.status
            .last_rotation
            .as_ref()
            .is_none_or(|last| last.id != "r3")
    );
    let written = written_pair(&plan).expect("the mirror is rewritten");
    assert!(written.2 > 4, "never the older serials: {written:?}");

    // generate: the issued pair is lost and the copy's Token 1 was deactivated: a new pair
    // above every serial, and every consumer restarts.
    let mut generated = rolled_back(fixture()).consumer(consumer("api", None, false));
    let first = generated.plan();
    // The restart is recorded first (nothing else written in that pass); the next pass writes.
    assert!(first.status.rotation.is_some() && first.secret.is_none());
    let plan = generated.after(&first);
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    let written = written_pair(&plan).expect("a new pair");
    assert_ne!((written.0.as_str(), written.1.as_str()), ("one", "two"));
    assert_eq!((written.2, written.3), (5, 6));
    assert!(
        plan.status
            .rotation
            .as_ref()
            .is_some_and(|rotation| rotation.strategy == RotationStrategy::Restart),
        "consumers restart"
    );
}

#[test]
fn a_removed_fingerprint_annotation_restarts_nobody_and_keeps_the_rotation() {
    for annotation in [
        super::snapshot::ANNOTATION_TOKEN1_FINGERPRINT,
        super::snapshot::ANNOTATION_TOKEN2_FINGERPRINT,
    ] {
        let strip = |mut fixture: Fixture| {
            if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
                mirror.annotations.remove(annotation);
            }
            fixture
        };
        // generate, mid-rotation: the pair and its serials stand, the annotation is restored.
        let plan = strip(
            fixture()
                .established(("one", "two"), (1, 2))
                .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
                .consumer(consumer("api", Some("r1"), false)),
        )
        .plan();
        assert!(
            !reasons(&plan).contains(&"MirrorSecretTampered")
                && !reasons(&plan).contains(&"RotationAborted"),
            "{annotation}: {:?}",
            reasons(&plan)
        );
        assert_eq!(
            plan.status
                .rotation
                .as_ref()
                .map(|rotation| rotation.id.as_str()),
            Some("r1")
        );
        let written = written_pair(&plan).expect("the annotation is restored");
        assert_eq!(written, ("one".into(), "two".into(), 1, 2), "{annotation}");

        // secretRef, waiting for the platform: not a first mirror under new serials, and the
        // rotation is not completed by it.
        let plan = strip(
            fixture()
                .secret_ref(Ok(("one", "two")))
                .established(("one", "two"), (1, 2))
                .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
                .consumer(consumer("api", Some("r1"), true)),
        )
        .plan();
        assert!(
            !reasons(&plan).contains(&"RotationCompleted"),
            "{annotation}"
        );
        assert!(!reasons(&plan).contains(&"TokensMirrored"), "{annotation}");
        assert_eq!(
            plan.status
                .rotation
                .as_ref()
                .map(|rotation| rotation.id.as_str()),
            Some("r1")
        );
        assert_eq!(
            written_pair(&plan),
            Some(("one".into(), "two".into(), 1, 2)),
            "{annotation}: restored under the same serials"
        );
    }
}
