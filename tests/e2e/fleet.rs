//! ClusterStreamingToken: one platform pair fanned out to many namespaces, rotated once, and
//! verified in every one of them. Each test runs its own cluster-wide operator (as the chart
//! installs it: a ClusterRoleBinding), serving only the ClusterStreamingTokens labelled with the
//! test's run id, so tests in parallel do not serve each other's.

use crate::support::fixtures;
use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use streaming_token_operator::api::{
    CLUSTER_TOKEN_LABEL, ClusterSecretRefSource, ClusterStreamingToken, ROTATE_ANNOTATION,
    StreamingTokenStatus,
};

const TIMEOUT: Duration = Duration::from_secs(120);
const FLEET_LABEL: &str = "e2e.streamingtoken.io/fleet";
const RUN_LABEL: &str = "e2e.streamingtoken.io/run";

/// One test's world: a home namespace (the operator's), its operator, and a fleet label that
/// selects member namespaces.
struct Fleet {
    admin: Client,
    home: String,
    /// Also the ClusterStreamingToken's name and its mirror Secret's.
    name: String,
    tokens: Api<ClusterStreamingToken>,
    operator: Operator,
}

impl Fleet {
    async fn start(prefix: &str) -> Fleet {
        let admin = support::admin_client().await;
        let home = support::namespace(&admin, prefix).await;
        let operator = Self::operator(&admin, &home, Vec::new()).await;
        Fleet {
            tokens: Api::all(admin.clone()),
            name: home.clone(),
            home,
            admin,
            operator,
        }
    }

    /// A cluster-wide operator for the fleet whose home is `home` (with `extra_env`).
    async fn operator(admin: &Client, home: &str, extra_env: Vec<(String, String)>) -> Operator {
        let identity = support::cluster_operator_identity(admin, home).await;
        Operator::start_as(
            identity,
            home,
            OperatorOptions {
                all_namespaces: true,
                extra_args: vec![
                    "--kinds=ClusterStreamingToken".into(),
                    format!("--cluster-token-selector={RUN_LABEL}={home}"),
                ],
                extra_env,
                ..OperatorOptions::default()
            },
        )
        .await
    }

    /// A ClusterStreamingToken (generate) selecting this fleet's namespaces.
    fn token(&self) -> ClusterStreamingToken {
        fixtures::cluster_token(
            &self.name,
            (FLEET_LABEL, &self.home),
            (RUN_LABEL, &self.home),
        )
    }

    /// The platform team's source Secret `portal` in the home namespace, labelled for this
    /// ClusterStreamingToken.
    fn source(&self, token1: &str, token2: &str) -> Secret {
        let mut secret = fixtures::source_secret("portal", &self.home, &self.name, token1, token2);
        secret.metadata.labels = Some(BTreeMap::from([(
            CLUSTER_TOKEN_LABEL.to_string(),
            self.name.clone(),
        )]));
        secret
    }

    /// [`Self::token`] with the pair from `secretRef` `portal` instead of `generate`.
    fn secret_ref_token(&self) -> ClusterStreamingToken {
        let mut token = self.token();
        token.spec.source.generate = None;
        token.spec.source.secret_ref = Some(ClusterSecretRefSource {
            name: "portal".into(),
            namespace: None,
            token1_key: "token1".into(),
            token2_key: "token2".into(),
        });
        token
    }

    async fn create(&self, token: &ClusterStreamingToken) {
        self.tokens
            .create(&PostParams::default(), token)
            .await
            .expect("ClusterStreamingToken created");
    }

    /// A new namespace, a member of the fleet when `member`.
    async fn namespace(&self, prefix: &str, member: bool) -> String {
        let namespace = support::namespace(&self.admin, prefix).await;
        if member {
            self.set_member(&namespace, true).await;
        }
        namespace
    }

    async fn set_member(&self, namespace: &str, member: bool) {
        let value = if member {
            json!(self.home)
        } else {
            serde_json::Value::Null
        };
        Api::<Namespace>::all(self.admin.clone())
            .patch(
                namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {FLEET_LABEL: value}}})),
            )
            .await
            .expect("namespace relabelled");
    }

    /// The ClusterStreamingToken as JSON, as a health tool reads it.
    async fn object(&self) -> serde_json::Value {
        let object = self
            .tokens
            .get(&self.name)
            .await
            .expect("ClusterStreamingToken");
        let mut value = serde_json::to_value(&object).expect("serializes");
        value["apiVersion"] = json!("streamingtoken.io/v1alpha1");
        value["kind"] = json!("ClusterStreamingToken");
        value
    }

    async fn status(&self) -> StreamingTokenStatus {
        self.tokens
            .get(&self.name)
            .await
            .expect("ClusterStreamingToken")
            .status
            .unwrap_or_default()
    }

    /// Waits until `check` holds on the status.
    async fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&StreamingTokenStatus) -> bool,
    ) -> StreamingTokenStatus {
        wait_for(what, TIMEOUT, || async {
            let status = self.status().await;
            if check(&status) {
                Ok(status)
            } else {
                Err(format!(
                    "namespaces {:?}, rotation {:?}, blocked {:?}, conditions {:?}",
                    status
                        .namespaces
                        .iter()
                        .map(|entry| (&entry.name, &entry.state))
                        .collect::<Vec<_>>(),
                    status.rotation.as_ref().map(|rotation| &rotation.phase),
                    status.consumers.as_ref().map(|summary| &summary.blocked),
                    status
                        .conditions
                        .iter()
                        .map(|condition| (&condition.type_, &condition.status, &condition.reason))
                        .collect::<Vec<_>>()
                ))
            }
        })
        .await
    }

    /// Token 1 and Token 2 of the mirror Secret in `namespace`.
    async fn pair(&self, namespace: &str) -> (Option<String>, Option<String>) {
        (
            support::secret_value(&self.admin, namespace, &self.name, "token1").await,
            support::secret_value(&self.admin, namespace, &self.name, "token2").await,
        )
    }

    /// Waits until the mirror Secret in every one of `namespaces` holds the home Secret's pair.
    async fn wait_copies(&self, namespaces: &[&str]) -> (String, String) {
        wait_for("every copy to hold the pair of record", TIMEOUT, || async {
            let home = self.pair(&self.home).await;
            let (Some(token1), Some(token2)) = home.clone() else {
                return Err("no pair of record yet".to_string());
            };
            for namespace in namespaces {
                let copy = self.pair(namespace).await;
                if copy != home {
                    return Err(format!("the copy in {namespace} differs"));
                }
            }
            Ok((token1, token2))
        })
        .await
    }

    /// A two-replica consumer `api` in `namespace`, reading Token 1 of the mirror Secret.
    async fn consumer(&self, namespace: &str) {
        support::apply(
            &Api::<Deployment>::namespaced(self.admin.clone(), namespace),
            &fixtures::deployment("api", namespace, Some(&self.name), 2),
        )
        .await;
        support::wait_deployments_available(&self.admin, namespace, &["api"]).await;
    }

    async fn set_paused(&self, namespace: &str, paused: bool) {
        Api::<Deployment>::namespaced(self.admin.clone(), namespace)
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": paused}})),
            )
            .await
            .expect("paused or resumed");
    }

    async fn rotate(&self, trigger: &str) {
        self.tokens
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rotation": {"trigger": trigger}}})),
            )
            .await
            .expect("trigger set");
    }
}

/// True once rotation `id` has completed and no other runs.
fn rotation_done(status: &StreamingTokenStatus, id: &str) -> bool {
    status.rotation.is_none()
        && status
            .last_rotation
            .as_ref()
            .is_some_and(|last| last.id == id)
}

fn blocked_in(status: &StreamingTokenStatus, namespace: &str) -> Vec<String> {
    status
        .consumers
        .iter()
        .flat_map(|summary| summary.blocked.iter())
        .filter(|blocked| blocked.namespace.as_deref() == Some(namespace))
        .map(|blocked| format!("{}/{} {}", blocked.kind, blocked.name, blocked.reason))
        .collect()
}

fn state_of<'a>(status: &'a StreamingTokenStatus, namespace: &str) -> Option<&'a str> {
    status
        .namespaces
        .iter()
        .find(|entry| entry.name == namespace)
        .map(|entry| entry.state.as_str())
}

fn condition<'a>(status: &'a StreamingTokenStatus, type_: &str) -> Option<(&'a str, &'a str)> {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| (condition.status.as_str(), condition.reason.as_str()))
}

/// Three namespaces (one joins mid-way), a consumer in each, one rotation that waits on a
/// paused consumer in one namespace without deactivating Token 1 anywhere, and completes once
/// it resumes: each consumer rolled once, no pod anywhere cut off (an independent ledger per
/// namespace), every copy on the new pair. Then a namespace whose label is removed keeps its
/// copy while its pods read it, and loses it once they are gone.
#[tokio::test]
async fn one_pair_many_namespaces_one_verified_rotation() {
    let fleet = Fleet::start("fleet").await;
    let a = fleet.namespace("fleet-a", true).await;
    let b = fleet.namespace("fleet-b", true).await;
    let c = fleet.namespace("fleet-c", false).await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("two namespaces synced", |status| {
            status.namespace_count == Some(2)
                && state_of(status, &a) == Some("Synced")
                && state_of(status, &b) == Some("Synced")
        })
        .await;
    fleet.wait_copies(&[&a, &b]).await;
    let secret = Api::<Secret>::namespaced(fleet.admin.clone(), &a)
        .get(&fleet.name)
        .await
        .expect("copy in a");
    assert_eq!(
        secret.labels().get(CLUSTER_TOKEN_LABEL),
        Some(&fleet.name),
        "a namespace's users can see which ClusterStreamingToken manages their Secret"
    );
    fleet.consumer(&a).await;
    fleet.consumer(&b).await;

    // A namespace that appears later gets the pair too.
    fleet.set_member(&c, true).await;
    fleet
        .wait_status("c synced", |status| state_of(status, &c) == Some("Synced"))
        .await;
    let (old_token1, old_token2) = fleet.wait_copies(&[&a, &b, &c]).await;
    fleet.consumer(&c).await;
    support::wait_event(&fleet.admin, &c, &fleet.name, "NamespaceAdded", TIMEOUT).await;

    let ledgers = [
        Ledger::start(&fleet.admin, &a, &fleet.name).await,
        Ledger::start(&fleet.admin, &b, &fleet.name).await,
        Ledger::start(&fleet.admin, &c, &fleet.name).await,
    ];
    fleet.set_paused(&b, true).await;
    fleet.rotate("2026-12-01").await;
    let status = fleet
        .wait_status("the paused consumer in b reported", |status| {
            blocked_in(status, &b) == ["Deployment/api Paused"]
        })
        .await;
    assert_eq!(
        condition(&status, "Degraded"),
        Some(("True", "ConsumerBlocked"))
    );
    assert!(blocked_in(&status, &a).is_empty() && blocked_in(&status, &c).is_empty());
    // Flux (kstatus) and Argo CD (the shipped Lua check) see the blocked rotation as such.
    let blocked_object = fleet.object().await;
    let listed_b = status
        .namespaces
        .iter()
        .find(|entry| entry.name == b)
        .expect("b listed");
    assert_eq!(listed_b.blocked.len(), 1, "{listed_b:?}");
    // The blocked consumer is told where people look: on the mirror Secret in its namespace.
    support::wait_event(&fleet.admin, &b, &fleet.name, "ConsumerBlocked", TIMEOUT).await;
    // a and c roll out meanwhile; Token 1 stays, everywhere.
    fleet
        .wait_status("a and c verified", |status| {
            status
                .namespaces
                .iter()
                .any(|entry| entry.name == a && entry.verified == Some(1))
                && status
                    .namespaces
                    .iter()
                    .any(|entry| entry.name == c && entry.verified == Some(1))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for namespace in [&fleet.home, &a, &b, &c] {
        assert_eq!(
            fleet.pair(namespace).await.0.as_deref(),
            Some(old_token1.as_str()),
            "Token 1 changed in {namespace} while b was blocked"
        );
    }
    assert!(fleet.status().await.rotation.is_some(), "still rotating");

    fleet.set_paused(&b, false).await;
    let status = fleet
        .wait_status("the rotation to complete", |status| {
            rotation_done(status, "r1")
        })
        .await;
    assert_eq!(
        condition(&status, "Degraded"),
        Some(("False", "AsExpected"))
    );
    let idle_object = fleet.object().await;
    let judged = crate::ecosystem::kstatus_of(&[blocked_object.clone(), idle_object.clone()]);
    assert_eq!(
        judged
            .iter()
            .map(|(status, _)| status.as_str())
            .collect::<Vec<_>>(),
        ["Failed", "Current"],
        "{judged:?}"
    );
    let health = crate::ecosystem::argocd_health_of(&[blocked_object, idle_object]);
    assert_eq!(
        health
            .iter()
            .map(|(status, _)| status.as_str())
            .collect::<Vec<_>>(),
        ["Degraded", "Healthy"],
        "{health:?}"
    );
    let (token1, token2) = fleet.wait_copies(&[&a, &b, &c]).await;
    assert_eq!(token1, old_token2, "Token 2 was promoted");
    assert_ne!(token2, old_token1);
    for namespace in [&a, &b, &c] {
        assert_eq!(
            support::rollouts(&fleet.admin, namespace, "api").await,
            1,
            "the consumer in {namespace} rolled exactly once"
        );
    }
    for ledger in &ledgers {
        ledger.assert_no_outage().await;
    }
    assert!(
        ledgers.iter().all(|ledger| ledger.secret_versions() >= 2),
        "every ledger saw the rotation"
    );

    // b leaves: its copy stays (and stays verified) while its pods read it...
    fleet.set_member(&b, false).await;
    fleet
        .wait_status("b leaving", |status| {
            state_of(status, &b) == Some("Leaving")
        })
        .await;
    assert!(fleet.pair(&b).await.0.is_some(), "b's copy kept while read");
    // ...and goes once nothing there reads it.
    Api::<Deployment>::namespaced(fleet.admin.clone(), &b)
        .delete("api", &Default::default())
        .await
        .expect("consumer deleted");
    fleet
        .wait_status("b gone", |status| {
            state_of(status, &b).is_none() && status.namespace_count == Some(2)
        })
        .await;
    wait_for("b's copy deleted", TIMEOUT, || async {
        match fleet.pair(&b).await.0 {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    let events = support::events(&fleet.admin, "default", &fleet.name).await;
    assert!(
        events
            .iter()
            .any(|(_, reason, _)| reason == "NamespaceRemoved"),
        "{events:?}"
    );
    assert!(
        !fleet.operator.logs().contains(&old_token1),
        "a token value reached the log"
    );
}

/// With a `secretRef` source in the platform team's namespace, `ReadyToRotate` turns True only
/// once every namespace is verified; the person's rotation at the platform then reaches every
/// namespace, with no pod cut off. `rotate --cluster --wait` follows it.
#[tokio::test]
async fn a_secret_ref_hands_off_only_when_every_namespace_is_verified() {
    let fleet = Fleet::start("fleetref").await;
    let a = fleet.namespace("fleetref-a", true).await;
    let b = fleet.namespace("fleetref-b", true).await;
    let source = |token1: &str, token2: &str| fleet.source(token1, token2);
    let secrets: Api<Secret> = Api::namespaced(fleet.admin.clone(), &fleet.home);
    let first = "portal-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let second = "portal-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let third = "portal-token-cccccccccccccccccccccccccccccccccccc";
    support::apply(&secrets, &source(first, second)).await;
    fleet.create(&fleet.secret_ref_token()).await;
    fleet
        .wait_status("both namespaces synced", |status| {
            status.namespace_count == Some(2)
                && condition(status, "Ready") == Some(("True", "TokensReady"))
        })
        .await;
    assert_eq!(fleet.wait_copies(&[&a, &b]).await.0, first);
    fleet.consumer(&a).await;
    fleet.consumer(&b).await;
    let ledgers = [
        Ledger::start(&fleet.admin, &a, &fleet.name).await,
        Ledger::start(&fleet.admin, &b, &fleet.name).await,
    ];

    fleet.set_paused(&b, true).await;
    let rotate = {
        let name = fleet.name.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
                .env_clear()
                .env("KUBECONFIG", support::kubeconfig_path())
                .args(["rotate", &name, "--cluster", "--wait", "--timeout", "3m"])
                .output()
                .expect("rotate runs")
        })
    };
    fleet
        .wait_status("b blocked", |status| {
            blocked_in(status, &b) == ["Deployment/api Paused"]
        })
        .await;
    fleet
        .wait_status("a verified", |status| {
            status
                .namespaces
                .iter()
                .any(|entry| entry.name == a && entry.verified == Some(1))
        })
        .await;
    for _ in 0..3 {
        let status = fleet.status().await;
        assert_eq!(
            condition(&status, "ReadyToRotate"),
            Some(("False", "ConsumersNotReady")),
            "ready to rotate while b is blocked"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    fleet.set_paused(&b, false).await;
    let status = fleet
        .wait_status("ReadyToRotate", |status| {
            condition(status, "ReadyToRotate") == Some(("True", "ConsumersOnToken2"))
        })
        .await;
    assert!(blocked_in(&status, &b).is_empty());
    // The person rotates at the platform and updates the source Secret.
    support::apply(&secrets, &source(second, third)).await;
    let output = rotate.await.expect("rotate joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rotation r1 completed"), "{stdout}");
    assert!(stdout.contains("verified"), "namespaces shown: {stdout}");
    assert_eq!(
        fleet.wait_copies(&[&a, &b]).await,
        (second.to_string(), third.to_string())
    );
    let token = fleet.tokens.get(&fleet.name).await.expect("token");
    assert!(token.annotations().contains_key(ROTATE_ANNOTATION));
    for ledger in &ledgers {
        ledger.assert_no_outage().await;
    }
}

/// A Secret of the mirror's name that is not the ClusterStreamingToken's is left alone with a
/// reason, and a StreamingToken cannot claim the ClusterStreamingToken's mirror.
#[tokio::test]
async fn a_name_taken_in_a_namespace_is_left_alone_with_a_reason() {
    let fleet = Fleet::start("fleetname").await;
    let taken = fleet.namespace("fleetname-taken", false).await;
    let claimed = fleet.namespace("fleetname-claim", true).await;
    // Someone's own Secret under the mirror's name, in a namespace about to be selected.
    let foreign = Secret {
        metadata: fixtures::metadata(&fleet.name, &taken),
        string_data: Some(BTreeMap::from([("token1".into(), "theirs".into())])),
        ..Secret::default()
    };
    support::apply(&Api::namespaced(fleet.admin.clone(), &taken), &foreign).await;
    fleet.set_member(&taken, true).await;
    fleet.create(&fleet.token()).await;
    let status = fleet
        .wait_status("the taken namespace reported", |status| {
            state_of(status, &taken) == Some("SecretNotOwned")
                && state_of(status, &claimed) == Some("Synced")
        })
        .await;
    assert_eq!(
        condition(&status, "Degraded"),
        Some(("True", "NamespaceConflict"))
    );
    assert_eq!(
        fleet.pair(&taken).await.0.as_deref(),
        Some("theirs"),
        "someone else's Secret overwritten"
    );
    support::wait_event(
        &fleet.admin,
        "default",
        &fleet.name,
        "NamespaceConflict",
        TIMEOUT,
    )
    .await;

    // A StreamingToken in a served namespace that names the ClusterStreamingToken's Secret.
    let copy_before = fleet.pair(&claimed).await;
    let _namespaced = Operator::start(&fleet.admin, &claimed, OperatorOptions::default()).await;
    let tokens = Api::namespaced(fleet.admin.clone(), &claimed);
    support::apply(
        &tokens,
        &fixtures::token("local", &claimed)
            .secret_name(&fleet.name)
            .build(),
    )
    .await;
    let local = support::wait_condition(
        &tokens,
        "local",
        "Ready",
        "False",
        "SecretClaimedByOther",
        TIMEOUT,
    )
    .await;
    let message = local
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("ClusterStreamingToken {}", fleet.name)),
        "{message}"
    );
    assert_eq!(
        fleet.pair(&claimed).await,
        copy_before,
        "the copy was overwritten"
    );
}

/// Tenancy: a namespace's admin can read the mirror Secret in their namespace (and see which
/// ClusterStreamingToken manages it), but can neither create a ClusterStreamingToken nor rotate
/// or redirect one; a cluster admin can.
#[tokio::test]
async fn only_cluster_admins_create_or_rotate_a_cluster_token() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding, RoleRef, Subject};
    let fleet = Fleet::start("fleetrbac").await;
    let team = fleet.namespace("fleetrbac-team", true).await;
    // The chart's user-facing roles, aggregated into the built-in ones.
    for document in support::render_chart("templates/user-roles.yaml", &[]) {
        let role: ClusterRole = serde_json::from_value(document).expect("ClusterRole");
        support::apply(&Api::<ClusterRole>::all(fleet.admin.clone()), &role).await;
    }
    let user = format!("jane-{team}");
    support::apply(
        &Api::<RoleBinding>::namespaced(fleet.admin.clone(), &team),
        &RoleBinding {
            metadata: fixtures::metadata("team-admin", &team),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "admin".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user.clone(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Subject::default()
            }]),
        },
    )
    .await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("the team namespace synced", |status| {
            state_of(status, &team) == Some("Synced")
        })
        .await;
    let jane = support::impersonating(&user, &["system:authenticated"]).await;
    // The RoleBinding takes effect within moments; her namespace's Secrets are hers to read.
    let copy = wait_for(
        "the team admin to read the mirror Secret",
        TIMEOUT,
        || async {
            Api::<Secret>::namespaced(jane.clone(), &team)
                .get(&fleet.name)
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await;
    assert_eq!(copy.labels().get(CLUSTER_TOKEN_LABEL), Some(&fleet.name));

    let forbidden = |result: Result<ClusterStreamingToken, kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("a namespace admin could {what}: {other:?}"),
    };
    let theirs: Api<ClusterStreamingToken> = Api::all(jane.clone());
    let mut own = fleet.token();
    own.metadata.name = Some(format!("{}-jane", fleet.name));
    forbidden(
        theirs.create(&PostParams::default(), &own).await,
        "create a ClusterStreamingToken",
    );
    forbidden(
        theirs
            .patch(
                &fleet.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_ANNOTATION: "now"}}})),
            )
            .await,
        "rotate the ClusterStreamingToken",
    );
    forbidden(
        theirs
            .patch(
                &fleet.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"namespaces": {"names": ["elsewhere"]}}})),
            )
            .await,
        "redirect the ClusterStreamingToken",
    );
    // A cluster admin rotates it.
    fleet
        .tokens
        .patch(
            &fleet.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_ANNOTATION: "now"}}})),
        )
        .await
        .expect("a cluster admin rotates");
    fleet
        .wait_status("the admin's rotation done", |status| {
            status.observed_rotate_request.as_deref() == Some("now") && status.rotation.is_none()
        })
        .await;
}

/// Restart strategy across namespaces: Token 1 deactivated once, then every consumer in every
/// namespace restarted once. The ledgers report the outage the strategy accepts (the positive
/// control of the per-namespace observers).
#[tokio::test]
async fn a_cluster_restart_deactivates_once_and_restarts_everyone_once() {
    let fleet = Fleet::start("fleetrs").await;
    let a = fleet.namespace("fleetrs-a", true).await;
    let b = fleet.namespace("fleetrs-b", true).await;
    let mut token = fleet.token();
    token.spec.rotation.strategy = streaming_token_operator::api::RotationStrategy::Restart;
    fleet.create(&token).await;
    fleet
        .wait_status("synced", |status| status.namespace_count == Some(2))
        .await;
    let (old_token1, old_token2) = fleet.wait_copies(&[&a, &b]).await;
    fleet.consumer(&a).await;
    fleet.consumer(&b).await;
    let ledgers = [
        Ledger::start(&fleet.admin, &a, &fleet.name).await,
        Ledger::start(&fleet.admin, &b, &fleet.name).await,
    ];
    fleet.rotate("restart").await;
    fleet
        .wait_status("the rotation to complete", |status| {
            rotation_done(status, "r1")
        })
        .await;
    let (token1, _) = fleet.wait_copies(&[&a, &b]).await;
    assert_eq!(token1, old_token2);
    assert_ne!(token1, old_token1);
    for namespace in [&a, &b] {
        assert_eq!(
            support::rollouts(&fleet.admin, namespace, "api").await,
            1,
            "restarted exactly once in {namespace}"
        );
    }
    for ledger in &ledgers {
        ledger.assert_outage().await;
    }
}

/// SIGKILL right after the pair of record is promoted, before any copy is written: a fresh
/// process writes the copies, completes the rotation once, and no pod anywhere is cut off.
#[tokio::test]
async fn a_cluster_rotation_killed_before_its_copies_resumes() {
    let mut fleet = Fleet::start("fleetkill").await;
    let a = fleet.namespace("fleetkill-a", true).await;
    let b = fleet.namespace("fleetkill-b", true).await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("synced", |status| status.namespace_count == Some(2))
        .await;
    let (_, old_token2) = fleet.wait_copies(&[&a, &b]).await;
    fleet.consumer(&a).await;
    fleet.consumer(&b).await;
    fleet.operator.kill().await;
    let mut halting = Fleet::operator(
        &fleet.admin,
        &fleet.home,
        vec![(
            "STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(),
            "secret".into(),
        )],
    )
    .await;
    let ledgers = [
        Ledger::start(&fleet.admin, &a, &fleet.name).await,
        Ledger::start(&fleet.admin, &b, &fleet.name).await,
    ];
    fleet.rotate("kill").await;
    wait_for(
        "the operator to halt after the record's write",
        TIMEOUT,
        || async {
            if halting.logs().contains("test halt point reached") {
                Ok(())
            } else {
                Err(support::tail(&halting.logs(), 3))
            }
        },
    )
    .await;
    halting.kill().await;
    // The record is promoted; the copies still hold the pair before it.
    assert_eq!(
        fleet.pair(&fleet.home).await.0.as_deref(),
        Some(old_token2.as_str())
    );
    assert_ne!(fleet.pair(&a).await.0.as_deref(), Some(old_token2.as_str()));
    fleet.operator = Fleet::operator(&fleet.admin, &fleet.home, Vec::new()).await;
    let status = fleet
        .wait_status("the rotation to complete", |status| {
            rotation_done(status, "r1")
        })
        .await;
    assert_eq!(
        (
            status.token1.expect("token1").serial,
            status.token2.expect("token2").serial
        ),
        (2, 3),
        "deactivated exactly once"
    );
    assert_eq!(fleet.wait_copies(&[&a, &b]).await.0, old_token2);
    for namespace in [&a, &b] {
        assert_eq!(support::rollouts(&fleet.admin, namespace, "api").await, 1);
    }
    for ledger in &ledgers {
        ledger.assert_no_outage().await;
    }
}

/// One rotation across 20 namespaces x 50 consumers (1,000 Deployments, one pod each): time
/// from trigger to completion, the operator's memory, and its API requests. Prints figures;
/// asserts only that the rotation completed with every consumer rolled once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_cluster_rotation_20_namespaces_x_50_consumers() {
    const NAMESPACES: usize = 20;
    const PER_NAMESPACE: usize = 50;
    let fleet = Fleet::start("bench-fleet").await;
    let pid = fleet.operator.child.id().expect("pid");
    let rss_idle = support::rss_kib(pid);
    let mut namespaces = Vec::new();
    for index in 0..NAMESPACES {
        namespaces.push(fleet.namespace(&format!("bf{index:02}"), true).await);
    }
    fleet.create(&fleet.token()).await;
    let created = std::time::Instant::now();
    fleet
        .wait_status("every namespace synced", |status| {
            status.namespace_count == Some(NAMESPACES as i32)
                && status
                    .namespaces
                    .iter()
                    .all(|entry| entry.state == "Synced")
        })
        .await;
    let fanned_out = created.elapsed();
    for namespace in &namespaces {
        let deployments: Api<Deployment> = Api::namespaced(fleet.admin.clone(), namespace);
        for index in 0..PER_NAMESPACE {
            support::apply(
                &deployments,
                &fixtures::deployment(
                    &format!("consumer-{index:02}"),
                    namespace,
                    Some(&fleet.name),
                    1,
                ),
            )
            .await;
        }
    }
    wait_for(
        "every consumer available",
        Duration::from_secs(900),
        || async {
            let mut ready = 0;
            for namespace in &namespaces {
                let list = Api::<Deployment>::namespaced(fleet.admin.clone(), namespace)
                    .list(&Default::default())
                    .await
                    .map_err(|error| error.to_string())?;
                ready += list
                    .items
                    .iter()
                    .filter(|deployment| {
                        deployment
                            .status
                            .as_ref()
                            .and_then(|status| status.available_replicas)
                            == Some(1)
                    })
                    .count();
            }
            if ready == NAMESPACES * PER_NAMESPACE {
                Ok(())
            } else {
                Err(format!("{ready}/{}", NAMESPACES * PER_NAMESPACE))
            }
        },
    )
    .await;
    fleet
        .wait_status("every consumer counted", |status| {
            status.consumers.as_ref().map(|summary| summary.total)
                == Some((NAMESPACES * PER_NAMESPACE) as i32)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = support::rss_kib(pid);
    let from = jiff::Timestamp::now();
    let triggered = std::time::Instant::now();
    fleet.rotate("bench").await;
    let status = wait_for(
        "the rotation to complete",
        Duration::from_secs(1800),
        || async {
            let status = fleet.status().await;
            match (&status.rotation, &status.last_rotation) {
                (None, Some(last)) if last.id == "r1" => Ok(status),
                (rotation, _) => Err(format!(
                    "phase {:?}, verified {:?}",
                    rotation.as_ref().map(|rotation| &rotation.phase),
                    status
                        .consumers
                        .as_ref()
                        .and_then(|summary| summary.verified)
                )),
            }
        },
    )
    .await;
    let took = triggered.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = support::audited_requests(
        &support::service_account_user(&fleet.home, "streaming-token-operator"),
        from,
        jiff::Timestamp::now(),
    );
    let total: usize = requests.values().sum();
    let rss_after = support::rss_kib(pid);
    assert!(
        status
            .consumers
            .is_some_and(|summary| summary.blocked.is_empty())
    );
    for namespace in namespaces.iter().take(2) {
        assert_eq!(
            support::rollouts(&fleet.admin, namespace, "consumer-00").await,
            1
        );
    }
    eprintln!(
        "[bench] cluster {NAMESPACES} namespaces x {PER_NAMESPACE} consumers: fan-out to every namespace {:.1}s; rotation trigger -> complete {:.1}s; operator RSS idle {rss_idle} KiB, with 1,000 consumers {rss_before} KiB, after the rotation {rss_after} KiB; {total} API requests from trigger to completion (+2 s): {requests:?}",
        fanned_out.as_secs_f64(),
        took.as_secs_f64(),
    );
}

/// A ClusterStreamingToken whose pair lives at the platform: read there with the PAT kept in the
/// operator's namespace, fanned out to two namespaces, and rotated there once, after both
/// namespaces are verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_pair_at_the_platform_rotates_there_once_across_namespaces() {
    use crate::support::platform::TestPlatform;
    let fleet = Fleet::start("fleet-platform").await;
    let platform = TestPlatform::start().await;
    platform.workspace("ws").await;
    let pat = platform.pat("Admin", "720h").await;
    support::apply(
        &Api::<Secret>::namespaced(fleet.admin.clone(), &fleet.home),
        &Secret {
            metadata: fixtures::metadata("quix-pat", &fleet.home),
            data: Some(BTreeMap::from([(
                "pat".to_string(),
                k8s_openapi::ByteString(pat.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        },
    )
    .await;
    let first = fleet.namespace("fleet-platform-a", true).await;
    let second = fleet.namespace("fleet-platform-b", true).await;
    let mut token = fleet.token();
    token.spec.source.generate = None;
    token.spec.source.platform = Some(Default::default());
    token.spec.platform = Some(
        serde_json::from_value(platform.spec("ws", "5s", Some("quix-pat"))).expect("platform"),
    );
    token.spec.rotation.trigger = Some("t0".into());
    fleet.create(&token).await;
    let before = platform.pair("ws").await;
    let copies = fleet.wait_copies(&[&first, &second]).await;
    assert_eq!(copies, before, "every namespace holds the platform's pair");
    fleet.consumer(&first).await;
    fleet.consumer(&second).await;
    let ledgers = [
        Ledger::start(&fleet.admin, &first, &fleet.name).await,
        Ledger::start(&fleet.admin, &second, &fleet.name).await,
    ];
    fleet.rotate("t1").await;
    fleet
        .wait_status("rotation r1 to complete", |status| {
            rotation_done(status, "r1")
        })
        .await;
    for ledger in &ledgers {
        ledger.assert_no_outage().await;
    }
    assert_eq!(
        platform.calls("rotate").await.len(),
        1,
        "exactly one rotate call"
    );
    let after = platform.pair("ws").await;
    assert_eq!(after.0, before.1, "the platform promoted Token 2");
    assert_eq!(fleet.wait_copies(&[&first, &second]).await, after);
    let logs = fleet.operator.logs();
    for secret in [pat.as_str(), &before.0, &before.1, &after.1] {
        assert!(!logs.contains(secret), "a platform secret in the logs");
    }
}

/// The pods of consumer `api` in `namespace` (two replicas).
async fn the_pods(admin: &Client, namespace: &str) -> Vec<String> {
    wait_for("the consumer's pods", TIMEOUT, || async {
        let pods = Api::<Pod>::namespaced(admin.clone(), namespace)
            .list(&kube::api::ListParams::default().labels("app=api"))
            .await
            .map_err(|error| error.to_string())?;
        match pods.items.len() {
            2 => Ok(pods.items.iter().map(ResourceExt::name_any).collect()),
            other => Err(format!("{other} pods")),
        }
    })
    .await
}

/// Sets (or clears) a test finalizer on a pod: a finalizer keeps a deleted pod terminating,
/// as a long graceful shutdown does (KWOK deletes a pod without finalizers at once).
async fn hold_pod(admin: &Client, namespace: &str, pod: &str, hold: bool) {
    let finalizers = if hold {
        json!(["e2e.streamingtoken.io/hold"])
    } else {
        json!(null)
    };
    Api::<Pod>::namespaced(admin.clone(), namespace)
        .patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .expect("pod finalizer set");
}

/// Removing a namespace from the selection revokes it: the copy there keeps the pair it had and
/// never receives the next one, nothing there is repointed or restarted, the rotation does not
/// wait for its pods, which are reported (their Token 1 is deactivated: the ledger judged
/// against the pair of record sees them cut off, as the revocation means). Scaled to zero, the
/// consumer is named in a Warning and the copy deleted.
#[tokio::test]
async fn a_namespace_removed_from_the_selection_is_revoked() {
    let fleet = Fleet::start("revoke").await;
    let a = fleet.namespace("revoke-a", true).await;
    let b = fleet.namespace("revoke-b", true).await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("synced", |status| status.namespace_count == Some(2))
        .await;
    let (old_token1, old_token2) = fleet.wait_copies(&[&a, &b]).await;
    fleet.consumer(&a).await;
    fleet.consumer(&b).await;
    let kept = Ledger::against_record(&fleet.admin, &a, &fleet.name, &fleet.home).await;
    let revoked = Ledger::against_record(&fleet.admin, &b, &fleet.name, &fleet.home).await;

    fleet.set_member(&b, false).await;
    fleet
        .wait_status("b revoked", |status| {
            state_of(status, &b) == Some("Leaving")
        })
        .await;
    support::wait_event(&fleet.admin, &b, &fleet.name, "RevokedCopyRead", TIMEOUT).await;
    fleet.rotate("after-revocation").await;
    fleet
        .wait_status("the rotation to complete without b", |status| {
            rotation_done(status, "r1")
        })
        .await;
    let (token1, _) = fleet.wait_copies(&[&a]).await;
    assert_eq!(token1, old_token2, "Token 2 promoted");
    assert_eq!(
        fleet.pair(&b).await,
        (Some(old_token1.clone()), Some(old_token2.clone())),
        "the revoked copy received a later pair"
    );
    assert_eq!(support::rollouts(&fleet.admin, &a, "api").await, 1);
    assert_eq!(
        support::rollouts(&fleet.admin, &b, "api").await,
        0,
        "a revoked namespace's consumer was repointed"
    );
    let status = fleet.status().await;
    let entry = status
        .namespaces
        .iter()
        .find(|entry| entry.name == b)
        .expect("b listed while read");
    assert!(
        entry.message.contains("pod(s) here still read it"),
        "{entry:?}"
    );
    kept.assert_no_outage().await;
    revoked.assert_outage().await;

    // Scaled to zero: the copy goes, and the consumer still referencing it is named first.
    Api::<Deployment>::namespaced(fleet.admin.clone(), &b)
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scaled to zero");
    wait_for("b's copy deleted", TIMEOUT, || async {
        match fleet.pair(&b).await.0 {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    // Published once the deletion it announces is written (a plan's Events follow its writes).
    let (_, _, message) = support::wait_event(
        &fleet.admin,
        &b,
        &fleet.name,
        "RevokedCopyReferenced",
        TIMEOUT,
    )
    .await;
    assert!(message.contains("Deployment/api (0 replicas)"), "{message}");
    assert!(!fleet.operator.logs().contains(&old_token1));
}

/// 250 namespaces (more than status lists): one is deleted while the operator is down, with a
/// pod that keeps terminating and read Token 1. The restarted operator still knows the
/// namespace held a copy (`status.copiedNamespaces`, never capped) and waits for that pod
/// before deactivating Token 1; the ledger there, judged against the pair of record, sees no
/// outage.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_deleted_while_the_operator_was_down_still_holds_the_rotation() {
    const NAMESPACES: usize = 250;
    let mut fleet = Fleet::start("fleet250").await;
    let names: Vec<String> = futures::stream::iter(0..NAMESPACES)
        .map(|_| fleet.namespace("fleet250-m", true))
        .buffered(16)
        .collect()
        .await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("every namespace synced", |status| {
            status.namespace_count == Some(NAMESPACES as i32)
                && status.copied_namespaces.len() == NAMESPACES
                && status
                    .namespaces
                    .iter()
                    .all(|entry| entry.state == "Synced")
        })
        .await;
    // The last by name: beyond the 200 namespaces status lists.
    let doomed = names.iter().max().expect("namespaces").clone();
    let status = fleet.status().await;
    assert_eq!(status.namespaces.len(), 200);
    assert!(state_of(&status, &doomed).is_none(), "listed after all");
    let (old_token1, _) = fleet.wait_copies(&[&doomed]).await;
    fleet.consumer(&doomed).await;
    let pods = the_pods(&fleet.admin, &doomed).await;
    for pod in &pods {
        hold_pod(&fleet.admin, &doomed, pod, true).await;
    }
    let ledger = Ledger::against_record(&fleet.admin, &doomed, &fleet.name, &fleet.home).await;

    fleet.operator.kill().await;
    Api::<Namespace>::all(fleet.admin.clone())
        .delete(&doomed, &Default::default())
        .await
        .expect("namespace deleted");
    // The namespace controller deletes the copy with the rest, in its own time: gone now.
    let _ = Api::<Secret>::namespaced(fleet.admin.clone(), &doomed)
        .delete(&fleet.name, &Default::default())
        .await;
    wait_for("the copy gone, the pod terminating", TIMEOUT, || async {
        let copy = fleet.pair(&doomed).await.0;
        let pod = Api::<Pod>::namespaced(fleet.admin.clone(), &doomed)
            .get_opt(&pods[0])
            .await
            .map_err(|error| error.to_string())?;
        match (copy, pod) {
            (None, Some(pod)) if pod.metadata.deletion_timestamp.is_some() => Ok(()),
            (copy, pod) => Err(format!(
                "copy {}, pod {:?}",
                copy.is_some(),
                pod.map(|pod| pod.metadata.deletion_timestamp.is_some())
            )),
        }
    })
    .await;
    fleet.operator = Fleet::operator(&fleet.admin, &fleet.home, Vec::new()).await;
    fleet.rotate("deleted-while-down").await;
    fleet
        .wait_status("the deleted namespace holding the rotation", |status| {
            state_of(status, &doomed) == Some("Terminating") && status.rotation.is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        fleet.status().await.rotation.is_some(),
        "completed under the pod"
    );
    assert_eq!(
        fleet.pair(&fleet.home).await.0.as_deref(),
        Some(old_token1.as_str()),
        "Token 1 deactivated while a pod that read it terminates"
    );

    for pod in &pods {
        hold_pod(&fleet.admin, &doomed, pod, false).await;
    }
    let status = fleet
        .wait_status("the rotation to complete once the pod is gone", |status| {
            rotation_done(status, "r1")
        })
        .await;
    ledger.assert_no_outage().await;
    // The deactivation window across 250 namespaces, for the record (`--nocapture`).
    for line in fleet.operator.logs().lines() {
        if line.contains("from the last pod check to the last write") {
            eprintln!("250 namespaces: {line}");
        }
    }
    wait_for("the namespace forgotten", TIMEOUT, || async {
        let status = fleet.status().await;
        if status.copied_namespaces.contains(&doomed) {
            Err("still in copiedNamespaces".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(status.copied_namespaces.len() >= NAMESPACES - 1);
    let namespaces = Api::<Namespace>::all(fleet.admin.clone());
    for name in names.iter().filter(|name| **name != doomed) {
        let _ = namespaces.delete(name, &Default::default()).await;
    }
}

/// With a `secretRef` source in a namespace no selection names (the operator's), a pod there
/// that reads the source Secret directly holds the hand-off: `ReadyToRotate` stays False and the
/// pod is named, until it is gone.
#[tokio::test]
async fn a_source_secret_reader_in_an_unselected_namespace_holds_the_hand_off() {
    let fleet = Fleet::start("fleetsrc").await;
    let a = fleet.namespace("fleetsrc-a", true).await;
    let secret = fleet.source(
        "portal-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "portal-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    );
    support::apply(
        &Api::<Secret>::namespaced(fleet.admin.clone(), &fleet.home),
        &secret,
    )
    .await;
    let reader: Pod = serde_json::from_value(json!({
        "metadata": {"name": "by-hand", "namespace": fleet.home},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "registry.example/app:1",
            "env": [{"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "portal", "key": "token1"}}}]
        }]}
    }))
    .expect("pod");
    let pods = Api::<Pod>::namespaced(fleet.admin.clone(), &fleet.home);
    pods.create(&PostParams::default(), &reader)
        .await
        .expect("reader created");
    fleet.create(&fleet.secret_ref_token()).await;
    fleet
        .wait_status("a synced", |status| state_of(status, &a) == Some("Synced"))
        .await;
    fleet.rotate("hand-off").await;
    let status = fleet
        .wait_status("the source reader named", |status| {
            blocked_in(status, &fleet.home)
                .iter()
                .any(|blocked| blocked.starts_with("Pod/by-hand"))
        })
        .await;
    assert_ne!(
        condition(&status, "ReadyToRotate").map(|(status, _)| status),
        Some("True")
    );
    assert!(
        state_of(&status, &fleet.home).is_none(),
        "the home listed as a member"
    );
    pods.delete("by-hand", &Default::default())
        .await
        .expect("reader deleted");
    fleet
        .wait_status("ReadyToRotate", |status| {
            condition(status, "ReadyToRotate") == Some(("True", "ConsumersOnToken2"))
        })
        .await;
}

/// A pod that starts reading Token 1 between the fresh pod check a deactivation rests on and
/// the write (the operator held there for 8 s by a test hook) is found right after the write,
/// evicted at once (its ReplicaSet starts it again on the new pair) and reported: never left
/// on the dead token.
#[tokio::test]
async fn a_pod_that_slips_through_the_deactivation_window_is_restarted_and_reported() {
    let mut fleet = Fleet::start("slip").await;
    let a = fleet.namespace("slip-a", true).await;
    fleet.create(&fleet.token()).await;
    fleet
        .wait_status("synced", |status| status.namespace_count == Some(1))
        .await;
    let (old_token1, _) = fleet.wait_copies(&[&a]).await;
    fleet.consumer(&a).await;
    fleet.operator.kill().await;
    fleet.operator = Fleet::operator(
        &fleet.admin,
        &fleet.home,
        vec![(
            "STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(),
            "pause:checked".into(),
        )],
    )
    .await;
    let ledger = Ledger::against_record(&fleet.admin, &a, &fleet.name, &fleet.home).await;
    fleet.rotate("slip").await;
    wait_for("the operator held after its pod check", TIMEOUT, || async {
        if fleet.operator.logs().contains("test pause point reached") {
            Ok(())
        } else {
            Err(support::tail(&fleet.operator.logs(), 3))
        }
    })
    .await;
    // In the window: a workload nobody labelled starts, reading the Token 1 key.
    let mut late = fixtures::deployment("late", &a, Some(&fleet.name), 1);
    late.metadata.labels = None;
    support::apply(
        &Api::<Deployment>::namespaced(fleet.admin.clone(), &a),
        &late,
    )
    .await;
    support::wait_deployments_available(&fleet.admin, &a, &["late"]).await;
    let first = Api::<Pod>::namespaced(fleet.admin.clone(), &a)
        .list(&kube::api::ListParams::default().labels("app=late"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .map(|pod| pod.name_any())
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 1, "{first:?}");
    fleet
        .wait_status("the rotation to complete", |status| {
            rotation_done(status, "r1")
        })
        .await;
    let (_, _, message) =
        support::wait_event(&fleet.admin, &a, &fleet.name, "PodSlippedThrough", TIMEOUT).await;
    assert!(message.contains(&first[0]), "{message}");
    wait_for("the slipped pod replaced", TIMEOUT, || async {
        let pods = Api::<Pod>::namespaced(fleet.admin.clone(), &a)
            .list(&kube::api::ListParams::default().labels("app=late"))
            .await
            .map_err(|error| error.to_string())?;
        if pods.items.iter().any(|pod| pod.name_any() == first[0]) {
            Err("the slipped pod still runs".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    // The only pod the ledger (judged against the pair of record) finds on the dead token is
    // the one that slipped through, and only until it was evicted.
    let violations = ledger.violations();
    assert!(
        violations.iter().all(|line| line.contains(&first[0])),
        "{violations:#?}"
    );
    let window = fleet
        .operator
        .logs()
        .lines()
        .find(|line| line.contains("from the last pod check to the last write"))
        .map(str::to_string);
    assert!(window.is_some(), "the window was not measured");
    assert!(!fleet.operator.logs().contains(&old_token1));
}
