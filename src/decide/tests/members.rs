//! Member clusters (`spec.clusters`): their namespaces are fanned out to like a
//! ClusterStreamingToken's, and one that cannot be read holds every rotation.

use super::*;
use crate::api::{KubeconfigSecretRef, MemberCluster};

/// `east/prod`, a member cluster's namespace, with copy `copy`.
fn member_view(copy: CopyObservation) -> NamespaceView {
    cluster_view("east/prod", copy)
}

/// A member's copy read now, holding `pair` under `serials`.
fn member_copy(pair: (&str, &str), serials: (i64, i64)) -> CopyObservation {
    let mut observed = mirror_of(pair, serials);
    observed.labels = mirror_labels(crate::api::TOKEN_LABEL, "telemetry");
    CopyObservation::Read(observed)
}

impl Fixture {
    fn member(mut self, view: NamespaceView) -> Self {
        self.snapshot.spec.clusters.push(MemberCluster {
            name: "east".into(),
            kubeconfig_secret_ref: KubeconfigSecretRef {
                name: "east-kubeconfig".into(),
                key: "value".into(),
            },
            namespace: None,
        });
        self.snapshot.namespaces.push(view);
        self
    }
}

/// The fixture just before Token 1 is deactivated (the hub's consumer verified), with member
/// view `view`.
fn deactivating_with(view: NamespaceView) -> Plan {
    fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .member(view)
        .plan()
}

#[test]
fn a_member_in_sync_lets_the_rotation_deactivate_token1() {
    let plan = deactivating_with(member_view(member_copy(("one", "two"), (1, 2))));
    assert!(plan.deactivates, "{:?}", plan.status.consumers);
    assert_eq!(plan.status.clusters.len(), 1);
    assert_eq!(plan.status.clusters[0].name, "east");
    assert_eq!(plan.status.clusters[0].namespace, "prod");
    assert_eq!(
        plan.status.clusters[0].kubeconfig_secret_ref.name,
        "east-kubeconfig"
    );
}

#[test]
fn a_member_that_cannot_be_read_holds_the_rotation() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .member(member_view(CopyObservation::Unreachable(
            "its API server did not answer".into(),
        )));
    fixture.snapshot.status.clusters = vec![crate::api::MemberStatus {
        name: "east".into(),
        namespace: "prod".into(),
        state: "Synced".into(),
        consumers: 3,
        ..Default::default()
    }];
    let plan = fixture.plan();
    assert_eq!(
        plan.status.clusters[0].consumers, 3,
        "the last count is kept"
    );
    assert!(!plan.deactivates);
    assert!(plan.copies.is_empty(), "nothing is written to it");
    let blocked = &plan.status.consumers.as_ref().expect("consumers").blocked;
    assert!(
        blocked
            .iter()
            .any(|entry| entry.reason == "MemberUnreachable"
                && entry.name == "east"
                && entry.namespace.as_deref() == Some("east/prod")),
        "{blocked:?}"
    );
    assert_eq!(plan.status.clusters[0].state, "Unreachable");
    assert!(
        reasons(&plan).contains(&"MemberUnreachable"),
        "{:?}",
        reasons(&plan)
    );
}

#[test]
fn a_member_whose_copy_lags_holds_the_rotation_and_is_written() {
    let plan = deactivating_with(member_view(member_copy(("zero", "one"), (0, 1))));
    assert!(!plan.deactivates);
    assert_eq!(plan.copies.len(), 1);
    assert_eq!(plan.copies[0].namespace, "east/prod");
}

#[test]
fn a_member_copy_has_no_owner_reference() {
    let mut fixture = fixture().member(member_view(CopyObservation::Missing));
    fixture.snapshot.spec.deletion_policy = DeletionPolicy::Delete;
    let plan = fixture.plan();
    assert!(plan.secret.as_ref().is_some_and(|write| write.owned));
    let copy = plan.copies.first().expect("the member's copy is written");
    assert!(
        !copy.write.owned,
        "an owner reference to an object of another cluster would have that cluster's garbage collector delete the copy"
    );
    assert!(
        reasons(&plan).contains(&"MemberAdded"),
        "{:?}",
        reasons(&plan)
    );
}

#[test]
fn a_streamingtoken_without_members_lists_no_namespaces() {
    let plan = fixture().established(("one", "two"), (1, 2)).plan();
    assert!(plan.status.namespaces.is_empty());
    assert!(plan.status.clusters.is_empty());
    assert_eq!(plan.status.namespace_count, None);
    assert!(plan.copies.is_empty());
}

#[test]
fn a_member_removed_from_the_spec_is_revoked() {
    let view = NamespaceView {
        membership: Membership::Revoked,
        ..member_view(member_copy(("one", "two"), (1, 2)))
    };
    let mut fixture = fixture().established(("one", "two"), (1, 2));
    fixture.snapshot.namespaces.push(view);
    let plan = fixture.plan();
    assert_eq!(plan.copy_deletes, vec!["east/prod".to_string()]);
}
