//! ClusterStreamingToken: copies, namespaces joining and leaving.

use super::*;

#[test]
fn cluster_copies_follow_the_pair_of_record() {
    let reader = || pod_record("old-0", Some(("Deployment", "old")), "token2", Some("r0.x"));
    let leaving = |pods: Vec<Arc<PodRecord>>| NamespaceView {
        membership: Membership::Revoked,
        pods,
        ..cluster_view("gone", copy_of(("one", "two"), (1, 2)))
    };
    /// (case, view, written with precondition, deleted, state, degraded reason)
    type Case<'a> = (
        &'a str,
        NamespaceView,
        Option<Option<&'a str>>,
        bool,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "a new namespace gets a copy",
            cluster_view("a", CopyObservation::Missing),
            Some(None),
            false,
            "Pending",
            "AsExpected",
        ),
        (
            "a copy in sync is left alone",
            cluster_view("a", copy_of(("one", "two"), (1, 2))),
            None,
            false,
            "Synced",
            "AsExpected",
        ),
        (
            "a copy known in sync (unchanged since read) is not read or written",
            cluster_view(
                "a",
                CopyObservation::Current {
                    resource_version: "7".into(),
                    values_written_at: Some(1_800_000_000),
                },
            ),
            None,
            false,
            "Synced",
            "AsExpected",
        ),
        (
            "a stale copy is rewritten from what was read",
            cluster_view("a", copy_of(("zero", "one"), (0, 1))),
            Some(Some("10")),
            false,
            "Pending",
            "AsExpected",
        ),
        (
            "someone else's Secret is never touched",
            cluster_view("a", CopyObservation::NotOwned),
            None,
            false,
            "SecretNotOwned",
            "NamespaceConflict",
        ),
        (
            "a StreamingToken's mirror is never touched",
            cluster_view(
                "a",
                CopyObservation::ClaimedBy("StreamingToken telemetry".into()),
            ),
            None,
            false,
            "SecretClaimedByOther",
            "NamespaceConflict",
        ),
        (
            "a revoked namespace keeps its copy, unchanged, while a pod reads it",
            leaving(vec![reader()]),
            None,
            false,
            "Leaving",
            // Its pod is reported by the namespace's state, not as an unlabelled reader.
            "AsExpected",
        ),
        (
            "a leaving namespace nobody reads loses its copy",
            leaving(Vec::new()),
            None,
            true,
            "Leaving",
            "AsExpected",
        ),
    ];
    for (case, view, written, deleted, state, degraded) in cases {
        let namespace = view.namespace.clone();
        let plan = fixture()
            .established(("one", "two"), (1, 2))
            .cluster(vec![view])
            .plan();
        assert!(plan.secret.is_none(), "{case}: the record is already right");
        let copy = plan.copies.iter().find(|copy| copy.namespace == namespace);
        assert_eq!(
            copy.map(|copy| copy.write.precondition.as_deref()),
            written,
            "{case}"
        );
        if let Some(copy) = copy {
            assert_eq!(copy.write.pair.token1.expose(), "one", "{case}");
            assert_eq!(copy.write.identities[1].serial, 2, "{case}");
        }
        assert_eq!(plan.copy_deletes.contains(&namespace), deleted, "{case}");
        let listed = plan
            .status
            .namespaces
            .iter()
            .find(|entry| entry.name == namespace)
            .expect("listed");
        assert_eq!(listed.state, state, "{case}");
        assert_eq!(
            condition(&plan, DEGRADED).map(|(_, reason)| reason),
            Some(degraded.to_string()),
            "{case}"
        );
    }
}

#[test]
fn a_cluster_rotation_deactivates_only_when_every_namespace_is_verified() {
    let rolled =
        |name: &str, namespace: &str| in_namespace(consumer(name, Some("r1"), true), namespace);
    let base = |b_copy: CopyObservation, b_consumer: ConsumerObservation| {
        let mut a = cluster_view("a", copy_of(("one", "two"), (1, 2)));
        a.consumers.push(rolled("api", "a"));
        let mut b = cluster_view("b", b_copy);
        b.consumers.push(b_consumer);
        fixture()
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
            .cluster(vec![a, b])
    };
    let mut paused = rolled("api", "b");
    paused.paused = true;

    // A paused consumer in b holds the whole rotation, and says where it is.
    let plan = base(copy_of(("one", "two"), (1, 2)), paused).plan();
    assert!(plan.secret.is_none(), "deactivated with b blocked");
    let blocked = &plan.status.consumers.as_ref().expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].namespace.as_deref(), Some("b"));
    assert!(blocked[0].message.contains("paused") || blocked[0].reason == "Paused");
    let b = plan
        .status
        .namespaces
        .iter()
        .find(|entry| entry.name == "b")
        .expect("b listed");
    assert_eq!(b.blocked.len(), 1);
    assert_eq!(b.verified, Some(0));
    assert!(
        condition(&plan, DEGRADED).is_some_and(|(_, reason)| reason == "ConsumerBlocked"),
        "degraded"
    );

    // Every consumer rolled, but b's Secret does not hold the pair of record yet: what its
    // Token 2 key held is unknown, so nothing is deactivated; the copy is written first.
    let plan = base(copy_of(("zero", "one"), (0, 1)), rolled("api", "b")).plan();
    assert!(plan.secret.is_none(), "deactivated with b's Secret stale");
    assert_eq!(plan.copies.len(), 1);
    assert_eq!(plan.copies[0].namespace, "b");

    // Everything verified: Token 1 goes once, and every namespace gets the new pair.
    let plan = base(copy_of(("one", "two"), (1, 2)), rolled("api", "b")).plan();
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    assert!(plan.deactivates, "decided again on fresh pods");
    let mut namespaces: Vec<&str> = plan
        .copies
        .iter()
        .map(|copy| copy.namespace.as_str())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["a", "b"]);
    assert!(
        plan.copies
            .iter()
            .all(|copy| copy.write.pair.token1.expose() == "two")
    );

    // A copy known in sync follows the record when the record changes, from its own version.
    let current = CopyObservation::Current {
        resource_version: "7".into(),
        values_written_at: Some(1_800_000_000),
    };
    let plan = base(current, rolled("api", "b")).plan();
    assert_eq!(written_pair(&plan).map(|pair| pair.2), Some(2));
    let b = plan
        .copies
        .iter()
        .find(|copy| copy.namespace == "b")
        .expect("b written");
    assert_eq!(b.write.precondition.as_deref(), Some("7"));
}

#[test]
fn a_cluster_restart_restarts_every_consumer_in_every_namespace_once() {
    let mut a = cluster_view("a", copy_of(("one", "two"), (1, 2)));
    a.consumers
        .push(in_namespace(consumer("api", None, false), "a"));
    let mut b = cluster_view("b", copy_of(("one", "two"), (1, 2)));
    b.consumers
        .push(in_namespace(consumer("api", None, false), "b"));
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_RESTARTING, 1, RotationStrategy::Restart)
        .cluster(vec![a, b]);
    // The Secret of record was promoted already (Token 1 deactivated); copies follow first, and
    // nobody restarts onto a copy that still holds the deactivated token.
    let plan = fixture.plan();
    assert_eq!(plan.copies.len(), 2, "copies follow the promoted pair");
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before its copy"
    );
    for view in &mut fixture.snapshot.namespaces {
        view.copy = copy_of(("two", "three"), (2, 3));
    }
    let plan = fixture.plan();
    let mut patched: Vec<(String, String)> = plan
        .consumer_patches
        .iter()
        .map(|patch| (patch.namespace.clone(), patch.name.clone()))
        .collect();
    patched.sort();
    assert_eq!(
        patched,
        [
            ("a".to_string(), "api".to_string()),
            ("b".into(), "api".into())
        ]
    );
    // Replayed with both stamped: nothing is restarted again.
    for view in &mut fixture.snapshot.namespaces {
        view.consumers[0].template_rotation = Some("r1".into());
    }
    let plan = fixture.plan();
    assert!(plan.consumer_patches.is_empty(), "restarted twice");
}

#[test]
fn a_namespace_no_longer_selected_is_revoked() {
    let reader = || pod_record("api-0", Some(("Deployment", "api")), "token1", Some("r0.x"));
    let leaving = |copy: CopyObservation, pods: Vec<Arc<PodRecord>>| NamespaceView {
        membership: Membership::Revoked,
        pods,
        ..cluster_view("gone", copy)
    };
    let record = MirrorObservation::Owned(mirror_of(("one", "two"), (1, 2)));
    // A labelled Secret that holds no token of the record is not a copy: never written.
    assert!(!fanout::reached(
        &record,
        None,
        &leaving(copy_of(("forged", "values"), (7, 8)), vec![reader()])
    ));
    // A copy one rotation behind still shares Token 2 with the record: it is ours.
    assert!(fanout::reached(
        &record,
        None,
        &leaving(copy_of(("zero", "one"), (0, 1)), vec![reader()])
    ));
    // Two rotations behind it shares nothing, but status remembers it (never capped).
    let remembered = crate::api::StreamingTokenStatus {
        copied_namespaces: vec!["gone".into()],
        ..Default::default()
    };
    assert!(fanout::reached(
        &record,
        Some(&remembered),
        &leaving(copy_of(("minus", "zero"), (-1, 0)), vec![reader()])
    ));

    // Read while a rotation runs: never written, its reader never waited for, and reported.
    for retain in [false, true] {
        let mut fixture = fixture()
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
            .cluster(vec![leaving(
                copy_of(("zero", "one"), (0, 1)),
                vec![reader()],
            )]);
        fixture.snapshot.retain_unselected = retain;
        let plan = fixture.plan();
        assert!(
            plan.copies.is_empty(),
            "retain {retain}: a revoked copy written"
        );
        assert!(plan.copy_deletes.is_empty());
        assert!(
            written_pair(&plan).is_some(),
            "retain {retain}: a revoked namespace's reader held the rotation"
        );
        let entry = &plan.status.namespaces[0];
        let want = if retain { "Retained" } else { "Leaving" };
        assert_eq!(entry.state, want);
        assert!(entry.message.contains("Pod/api-0"), "{}", entry.message);
        assert!(
            plan.events
                .iter()
                .any(|event| event.reason == "RevokedCopyRead" && event.message.contains("api-0")),
            "retain {retain}: {:?}",
            plan.events
        );
        assert_eq!(plan.status.copied_namespaces, ["gone"]);
    }
    // Nobody reads it: deleted (Delete), or kept as it is (Retain).
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .cluster(vec![leaving(copy_of(("one", "two"), (1, 2)), Vec::new())]);
    assert_eq!(fixture.plan().copy_deletes, ["gone"]);
    assert!(fixture.plan().status.copied_namespaces.is_empty());
    fixture.snapshot.retain_unselected = true;
    let plan = fixture.plan();
    assert!(plan.copy_deletes.is_empty() && plan.copies.is_empty());
    assert_eq!(plan.status.namespaces[0].state, "Retained");
    // A workload scaled to zero that still references it is named before it goes.
    fixture.snapshot.retain_unselected = false;
    fixture.snapshot.namespaces[0].referencing = vec!["Deployment/api (0 replicas)".into()];
    let plan = fixture.plan();
    assert_eq!(plan.copy_deletes, ["gone"]);
    assert!(
        plan.events
            .iter()
            .any(|event| event.reason == "RevokedCopyReferenced"
                && event.message.contains("Deployment/api (0 replicas)")),
        "{:?}",
        plan.events
    );
}

#[test]
fn a_namespace_being_deleted_holds_the_rotation_while_its_pods_may_hold_token1() {
    let mut view = cluster_view("deleted", CopyObservation::Missing);
    view.membership = Membership::Terminating;
    let mut pod = pod_record(
        "api-0",
        Some(("ReplicaSet", "api-1")),
        "token1",
        Some("r0.x"),
    );
    Arc::make_mut(&mut pod).deletion_deadline = Some(1_900_000_000);
    view.pods = vec![pod];
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![view]);
    fixture.snapshot.status.copied_namespaces = vec!["deleted".into()];
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_none(),
        "deactivated under a terminating pod"
    );
    assert!(
        plan.copies.is_empty(),
        "wrote into a namespace being deleted"
    );
    assert_eq!(plan.status.namespaces[0].state, "Terminating");
    assert_eq!(plan.status.copied_namespaces, ["deleted"]);
    // Its pods gone: the rotation completes, and the namespace is forgotten next time.
    fixture.snapshot.namespaces[0].pods.clear();
    let plan = fixture.plan();
    assert!(written_pair(&plan).is_some(), "held with no pod left");
}

#[test]
fn pods_reading_the_source_secret_in_an_unselected_namespace_hold_the_rotation() {
    let mut view = cluster_view("platform", CopyObservation::Missing);
    view.membership = Membership::Source;
    let mut pod = pod_record("by-hand", None, "token1", None);
    Arc::make_mut(&mut pod).references[0].secret = "portal".into();
    view.pods = vec![pod];
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![view]);
    fixture.snapshot.source_namespace = "platform".into();
    fixture.snapshot.origin.secret = Some("portal".into());
    fixture.snapshot.origin.keys = Some(("token1".into(), "token2".into()));
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_none(),
        "deactivated under a source reader"
    );
    assert!(
        plan.status.namespaces.is_empty(),
        "a source namespace listed"
    );
    assert!(plan.copies.is_empty() && plan.copy_deletes.is_empty());
}

#[test]
fn pods_left_behind_by_a_copy_someone_replaced_hold_the_rotation() {
    let mut view = cluster_view("team", CopyObservation::NotOwned);
    view.pods = vec![pod_record(
        "old-0",
        Some(("Deployment", "old")),
        "token1",
        Some("r0.x"),
    )];
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![view]);
    // Never a copy here: someone's own Secret of that name; nothing to wait for.
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_some(),
        "a stranger's Secret held the rotation"
    );
    // It was the copy (the last status says so): its readers may hold Token 1.
    fixture.snapshot.status.namespaces = vec![crate::api::NamespaceStatus {
        name: "team".into(),
        state: "Synced".into(),
        ..Default::default()
    }];
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_none(),
        "deactivated under pods of a replaced copy"
    );
    let blocked = &plan.status.consumers.as_ref().expect("summary").blocked;
    assert_eq!(blocked[0].reason, "SecretReplaced", "{blocked:?}");
    assert_eq!(plan.status.namespaces[0].state, "SecretReplaced");
    // No longer selected: still checked (never written).
    let record = MirrorObservation::Owned(mirror_of(("one", "two"), (1, 2)));
    fixture.snapshot.namespaces[0].membership = Membership::Revoked;
    assert!(fanout::reached(
        &record,
        Some(&fixture.snapshot.status),
        &fixture.snapshot.namespaces[0]
    ));
    fixture.snapshot.namespaces[0].membership = Membership::Selected;
    // Its readers restarted after the new Secret appeared: they read that one; it clears.
    fixture.snapshot.namespaces[0].foreign_since = Some(1_800_000_000);
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_some(),
        "pods started after the replacement held it"
    );
}

#[test]
fn a_cluster_token_refuses_an_invalid_selector_and_a_moved_home() {
    let base = || {
        fixture()
            .established(("one", "two"), (1, 2))
            .cluster(vec![cluster_view("a", CopyObservation::Missing)])
    };
    let mut invalid = base();
    invalid.snapshot.selection_problem = Some("spec.namespaces.selector is not valid".into());
    let plan = invalid.plan();
    assert_eq!(
        condition(&plan, READY),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert!(plan.copies.is_empty() && plan.secret.is_none());

    let mut moved = base();
    moved.snapshot.status.home_namespace = Some("old-home".into());
    let plan = moved.plan();
    assert_eq!(
        condition(&plan, READY),
        Some(("False".into(), "HomeNamespaceChanged".into()))
    );
    assert!(plan.copies.is_empty() && plan.secret.is_none());

    // The home is recorded on first sight.
    let plan = base().plan();
    assert_eq!(plan.status.home_namespace.as_deref(), Some("sto-system"));
}

#[test]
fn consumers_are_not_repointed_in_the_pass_that_writes_their_namespace_copy() {
    let mut a = cluster_view("a", copy_of(("zero", "one"), (0, 1)));
    a.consumers
        .push(in_namespace(consumer("api", None, false), "a"));
    let mut b = cluster_view("b", copy_of(("one", "two"), (1, 2)));
    b.consumers
        .push(in_namespace(consumer("api", None, false), "b"));
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![a, b])
        .plan();
    assert_eq!(plan.copies.len(), 1);
    let namespaces: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.namespace.as_str())
        .collect();
    assert_eq!(
        namespaces,
        ["b"],
        "a is repointed once its copy has settled"
    );
}
