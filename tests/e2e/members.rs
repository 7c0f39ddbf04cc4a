//! One pair, several clusters (`spec.clusters`): the hub's operator mirrors the pair into each
//! member cluster, repoints the consumers there and verifies every pod there; Token 1 is
//! deactivated only once every member is verified. Each member is a control plane of its own
//! (its own etcd and kube-apiserver), reached with a least-privilege ServiceAccount token kept
//! in a kubeconfig Secret of the hub. A ledger per member judges the member's pods against the
//! hub's pair of record.

use crate::support::ledger::Ledger;
use crate::support::members::{self, Member};
use crate::support::{self, Operator, OperatorOptions, Scenario, fixtures, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;
use streaming_token_operator::api::{
    KubeconfigSecretRef, MemberCluster, MemberStatus, RotationStrategy, StreamingToken,
    StreamingTokenStatus,
};

const TIMEOUT: Duration = Duration::from_secs(120);
const NAME: &str = "telemetry";

/// A hub namespace with the operator, the member clusters with the same namespace, a consumer
/// `api` in each, and StreamingToken `telemetry` naming every member.
struct Fleet {
    scenario: Scenario,
    members: Vec<Member>,
    tokens: Api<StreamingToken>,
    /// Every member as `spec.clusters` names it (the first `joined` named at the start).
    clusters: Vec<MemberCluster>,
}

impl Fleet {
    async fn start(prefix: &str) -> Self {
        Self::start_with(prefix, usize::MAX, RotationStrategy::ZeroDowntime).await
    }

    /// The fleet with only the first `joined` members in `spec.clusters`.
    async fn start_with(prefix: &str, joined: usize, strategy: RotationStrategy) -> Self {
        let scenario = Scenario::start(prefix).await;
        let members = members::members().await;
        let namespace = scenario.namespace.clone();
        let secrets: Api<Secret> = Api::namespaced(scenario.admin.clone(), &namespace);
        let mut clusters = Vec::new();
        for member in &members {
            member.namespace(&namespace).await;
            let kubeconfig = member.hub_kubeconfig(&namespace, NAME).await;
            let secret = format!("{}-kubeconfig", member.name);
            support::apply(
                &secrets,
                &members::kubeconfig_secret(&secret, &namespace, &kubeconfig),
            )
            .await;
            clusters.push(MemberCluster {
                name: member.name.clone(),
                kubeconfig_secret_ref: KubeconfigSecretRef {
                    name: secret,
                    key: "value".into(),
                },
                namespace: None,
            });
        }
        for client in std::iter::once(&scenario.admin).chain(members.iter().map(|m| &m.admin)) {
            support::apply(
                &Api::<Deployment>::namespaced(client.clone(), &namespace),
                &fixtures::deployment("api", &namespace, Some(NAME), 2),
            )
            .await;
        }
        let tokens: Api<StreamingToken> = Api::namespaced(scenario.admin.clone(), &namespace);
        let mut token = fixtures::token(NAME, &namespace)
            .rollout_timeout("30s")
            .strategy(strategy)
            .build();
        token.spec.clusters = clusters.iter().take(joined).cloned().collect();
        support::apply(&tokens, &token).await;
        Self {
            scenario,
            members,
            tokens,
            clusters,
        }
    }

    /// Names every member in `spec.clusters`.
    async fn join_all(&self) {
        self.tokens
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"clusters": self.clusters}})),
            )
            .await
            .expect("clusters set");
    }

    async fn set_paused(&self, client: &Client, paused: bool) {
        Api::<Deployment>::namespaced(client.clone(), self.namespace())
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": paused}})),
            )
            .await
            .expect("paused set");
    }

    fn namespace(&self) -> &str {
        &self.scenario.namespace
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|member| member.name == name)
            .expect("member")
    }

    async fn status(&self) -> StreamingTokenStatus {
        self.tokens
            .get(NAME)
            .await
            .expect("StreamingToken")
            .status
            .unwrap_or_default()
    }

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
                    "clusters {:?}, rotation {:?}, blocked {:?}",
                    status
                        .clusters
                        .iter()
                        .map(|member| (&member.name, &member.state, &member.message))
                        .collect::<Vec<_>>(),
                    status.rotation.as_ref().map(|rotation| &rotation.phase),
                    status
                        .consumers
                        .as_ref()
                        .map(|consumers| &consumers.blocked),
                ))
            }
        })
        .await
    }

    /// Waits until every member is `Synced` and every copy holds the hub's pair; returns it.
    async fn wait_synced(&self) -> (String, String) {
        let named: Vec<String> = (self.tokens.get(NAME).await.expect("token").spec.clusters)
            .into_iter()
            .map(|member| member.name)
            .collect();
        self.wait_status("every member synced", |status| {
            status.clusters.len() == named.len()
                && status
                    .clusters
                    .iter()
                    .all(|member| member.state == "Synced")
        })
        .await;
        let pair = pair(&self.scenario.admin, self.namespace()).await;
        for member in self
            .members
            .iter()
            .filter(|member| named.contains(&member.name))
        {
            wait_for(
                &format!("{}'s copy holding the pair of record", member.name),
                TIMEOUT,
                || async {
                    let copy = pair_opt(&member.admin, self.namespace()).await;
                    if copy.as_ref() == Some(&pair) {
                        Ok(())
                    } else {
                        Err("not yet".to_string())
                    }
                },
            )
            .await;
        }
        pair
    }

    /// A ledger per member, judged against the hub's pair of record.
    async fn ledgers(&self) -> Vec<(String, Ledger)> {
        let mut ledgers = Vec::new();
        for member in &self.members {
            ledgers.push((member.name.clone(), self.ledger(member).await));
        }
        ledgers
    }

    /// The ledger of `member`'s namespace, judged against the hub's pair of record.
    async fn ledger(&self, member: &Member) -> Ledger {
        Ledger::against_remote_record(
            &member.admin,
            self.namespace(),
            NAME,
            &self.scenario.admin,
            self.namespace(),
        )
        .await
    }

    async fn assert_members_on_token2(&self) {
        for member in &self.members {
            let deployment = Api::<Deployment>::namespaced(member.admin.clone(), self.namespace())
                .get("api")
                .await
                .expect("member Deployment");
            let key = deployment.spec.template.spec.expect("pod spec").containers[0]
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .find(|variable| variable.name == "STREAMING_TOKEN")
                .and_then(|variable| variable.value_from?.secret_key_ref)
                .map(|reference| reference.key);
            assert_eq!(key.as_deref(), Some("token2"), "{} repointed", member.name);
        }
    }
}

async fn pair_opt(client: &Client, namespace: &str) -> Option<(String, String)> {
    let token1 = support::secret_value(client, namespace, NAME, "token1").await?;
    let token2 = support::secret_value(client, namespace, NAME, "token2").await?;
    Some((token1, token2))
}

async fn pair(client: &Client, namespace: &str) -> (String, String) {
    pair_opt(client, namespace)
        .await
        .expect("the mirror Secret")
}

fn member_state<'a>(status: &'a StreamingTokenStatus, name: &str) -> Option<&'a MemberStatus> {
    status.clusters.iter().find(|member| member.name == name)
}

/// Waits for rotation `id`, then checks every ledger and every member's copy.
async fn assert_completed(
    fleet: &Fleet,
    id: &str,
    ledgers: &[(String, Ledger)],
    old: (String, String),
) {
    support::wait_rotation_done(&fleet.tokens, NAME, id, TIMEOUT).await;
    let now = pair(&fleet.scenario.admin, fleet.namespace()).await;
    assert_eq!(now.0, old.1, "Token 2 promoted at the hub");
    fleet.wait_synced().await;
    for (name, ledger) in ledgers {
        eprintln!("ledger of member {name}");
        ledger.assert_no_outage().await;
    }
}

/// A ZeroDowntime rotation across the hub and two members, one of which has a paused consumer:
/// the whole fleet keeps Token 1 (the hub's record and every copy) while that member's
/// consumer cannot roll, and the rotation completes once it is resumed; no member pod ever
/// holds a deactivated value.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_consumer_in_one_member_holds_token1_everywhere() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start("members-paused").await;
    let old = fleet.wait_synced().await;
    let ledgers = fleet.ledgers().await;
    let hub_ledger = Ledger::start(&fleet.scenario.admin, fleet.namespace(), NAME).await;
    let west = fleet.member("west");
    let west_deployments = Api::<Deployment>::namespaced(west.admin.clone(), fleet.namespace());
    west_deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");

    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    let namespace = fleet.namespace().to_string();
    let status = fleet
        .wait_status("west's paused consumer to block the rotation", |status| {
            status.consumers.as_ref().is_some_and(|consumers| {
                consumers.blocked.iter().any(|blocked| {
                    blocked.namespace.as_deref() == Some(&format!("west/{namespace}"))
                        && blocked.name == "api"
                })
            })
        })
        .await;
    assert!(status.rotation.is_some());
    assert_eq!(
        pair(&fleet.scenario.admin, fleet.namespace()).await.0,
        old.0,
        "Token 1 deactivated at the hub while a member's consumer was paused"
    );
    // What a person sees: the CLI's status names the members and what holds the rotation.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", support::kubeconfig_path())
        .args(["status", NAME, "-n", fleet.namespace()])
        .output()
        .expect("the CLI runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("MEMBER CLUSTER"), "{shown}");
    assert!(shown.contains(&format!("west/{namespace}")), "{shown}");
    assert!(shown.contains(&format!("east/{namespace}")), "{shown}");
    for member in &fleet.members {
        assert_eq!(
            pair(&member.admin, fleet.namespace()).await.0,
            old.0,
            "{}'s copy lost Token 1",
            member.name
        );
    }

    west_deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("resumed");
    assert_completed(&fleet, "r1", &ledgers, old).await;
    fleet.assert_members_on_token2().await;
    hub_ledger.assert_no_outage().await;
    let status = fleet.status().await;
    assert_eq!(status.clusters.len(), 2, "{:?}", status.clusters);
    assert!(
        status
            .clusters
            .iter()
            .all(|member| member.consumers == 1 && member.state == "Synced"),
        "{:?}",
        status.clusters
    );
}

/// A member's kube-apiserver stopped before a rotation: the member is `Unreachable` (condition,
/// Event, status), nothing is deactivated while it is down, and the rotation completes once it
/// is back, with no outage in any member.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_api_server_is_down_holds_the_rotation_until_it_returns() {
    member_down("members-down", false).await;
}

/// The same with the member's kube-apiserver stopped mid-rotation, once its consumer was
/// repointed (and restarted after it).
#[tokio::test(flavor = "multi_thread")]
async fn a_member_api_server_restarting_mid_rotation_holds_it() {
    member_down("members-restart-api", true).await;
}

async fn member_down(prefix: &str, after_repoint: bool) {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start(prefix).await;
    let old = fleet.wait_synced().await;
    let ledgers = fleet.ledgers().await;
    let east = fleet.member("east");
    if after_repoint {
        // Held by the hub's paused consumer until east is down.
        fleet.set_paused(&fleet.scenario.admin, true).await;
        support::set_trigger(&fleet.tokens, NAME, "r1").await;
        wait_for("east repointed", TIMEOUT, || async {
            let deployment = Api::<Deployment>::namespaced(east.admin.clone(), fleet.namespace())
                .get("api")
                .await
                .map_err(|error| error.to_string())?;
            let text = serde_json::to_string(&deployment.spec.template).unwrap_or_default();
            if text.contains("token2") {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;
    }
    east.stop_apiserver();
    let started = std::panic::AssertUnwindSafe(async {
        if after_repoint {
            fleet.set_paused(&fleet.scenario.admin, false).await;
        } else {
            support::set_trigger(&fleet.tokens, NAME, "r1").await;
        }
        fleet
            .wait_status("east unreachable", |status| {
                member_state(status, "east").is_some_and(|east| east.state == "Unreachable")
                    && status.rotation.is_some()
            })
            .await;
        support::wait_event(
            &fleet.scenario.admin,
            fleet.namespace(),
            NAME,
            "MemberUnreachable",
            TIMEOUT,
        )
        .await;
        // West and the hub are repointed and verified meanwhile; Token 1 stays.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = fleet.status().await;
        assert!(status.rotation.is_some(), "the rotation ended without east");
        assert_eq!(
            pair(&fleet.scenario.admin, fleet.namespace()).await.0,
            old.0,
            "Token 1 deactivated while east could not be verified"
        );
        let metrics = fleet.scenario.operator.metrics().await;
        let line = |cluster: &str| {
            metrics
                .lines()
                .find(|line| {
                    line.starts_with("streamingtoken_member_up{")
                        && line.contains(&format!("cluster=\"{cluster}\""))
                })
                .map(str::to_string)
        };
        assert!(
            line("east").is_some_and(|line| line.ends_with(" 0.0")),
            "{metrics}"
        );
        assert!(
            line("west").is_some_and(|line| line.ends_with(" 1.0")),
            "{metrics}"
        );
        // GitOps tools see a rotation that is not done, not a healthy object.
        let held = fleet.tokens.get(NAME).await.expect("StreamingToken");
        let (kstatus, argocd) = judged(&held);
        assert_ne!(kstatus, "Current", "kstatus while east is down");
        assert_ne!(argocd, "Healthy", "Argo CD while east is down");
    });
    let outcome = futures::FutureExt::catch_unwind(started).await;
    east.start_apiserver();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_completed(&fleet, "r1", &ledgers, old).await;
    fleet.assert_members_on_token2().await;
    support::wait_event(
        &fleet.scenario.admin,
        fleet.namespace(),
        NAME,
        "MemberReachable",
        TIMEOUT,
    )
    .await;
    let done = fleet.tokens.get(NAME).await.expect("StreamingToken");
    assert_eq!(judged(&done), ("Current".into(), "Healthy".into()));
    assert!(
        !fleet
            .scenario
            .operator
            .logs()
            .contains(&pair(&fleet.scenario.admin, fleet.namespace()).await.0)
    );
}

/// The hub's credentials in a member revoked mid-rotation (its RoleBinding deleted): the member
/// is `Unreachable` (refused), Token 1 stays; bound again, the rotation completes.
#[tokio::test(flavor = "multi_thread")]
async fn member_credentials_revoked_mid_rotation_hold_it() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start("members-revoked").await;
    let old = fleet.wait_synced().await;
    let ledgers = fleet.ledgers().await;
    let west = fleet.member("west");
    let bindings = Api::<RoleBinding>::namespaced(west.admin.clone(), fleet.namespace());
    let binding = bindings
        .get("hub-hub")
        .await
        .expect("the hub's RoleBinding");
    bindings
        .delete("hub-hub", &DeleteParams::default())
        .await
        .expect("binding deleted");

    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    let status = fleet
        .wait_status("west refused", |status| {
            member_state(status, "west").is_some_and(|west| {
                west.state == "Unreachable" && west.message.contains("403 Forbidden")
            })
        })
        .await;
    assert!(status.rotation.is_some());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pair(&fleet.scenario.admin, fleet.namespace()).await.0,
        old.0,
        "Token 1 deactivated while west refused the hub"
    );

    let mut binding = binding;
    binding.metadata.resource_version = None;
    binding.metadata.uid = None;
    binding.metadata.managed_fields = None;
    support::apply(&bindings, &binding).await;
    assert_completed(&fleet, "r1", &ledgers, old).await;
    fleet.assert_members_on_token2().await;
}

/// A kubeconfig Secret whose credentials would make the operator run a command or read its own
/// files is refused with a reason, and the command never runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_that_runs_a_command_is_refused() {
    let _serial = members::SERIAL.lock().await;
    let scenario = Scenario::start("members-exec").await;
    let namespace = scenario.namespace.clone();
    let marker = std::env::temp_dir().join(format!("sto-exec-{namespace}"));
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "x", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "touch", "args": [marker.to_string_lossy()],
            "interactiveMode": "Never"
        }}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "current-context": "x"
    });
    support::apply(
        &Api::<Secret>::namespaced(scenario.admin.clone(), &namespace),
        &members::kubeconfig_secret("evil", &namespace, &kubeconfig.to_string()),
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(scenario.admin.clone(), &namespace);
    let mut token = fixtures::token(NAME, &namespace).build();
    token.spec.clusters = vec![MemberCluster {
        name: "evil".into(),
        kubeconfig_secret_ref: KubeconfigSecretRef {
            name: "evil".into(),
            key: "value".into(),
        },
        namespace: None,
    }];
    support::apply(&tokens, &token).await;
    let status = wait_for("the member refused", TIMEOUT, || async {
        let status = tokens
            .get(NAME)
            .await
            .map_err(|error| error.to_string())?
            .status
            .unwrap_or_default();
        match member_state(&status, "evil") {
            Some(member) if member.state == "Unreachable" => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let member = member_state(&status, "evil").expect("listed");
    assert!(member.message.contains("exec"), "{}", member.message);
    assert!(!marker.exists(), "the kubeconfig's command ran");
}

/// The observer's positive control: a Restart rotation deactivates Token 1 before restarting
/// the consumers, so each member's ledger, judged against the hub's record, must see the pods
/// there cut off (a ledger that saw nothing across clusters would prove nothing above).
#[tokio::test(flavor = "multi_thread")]
async fn the_member_ledgers_see_a_restart_rotation_cut_pods_off() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start_with("members-restart", usize::MAX, RotationStrategy::Restart).await;
    fleet.wait_synced().await;
    let ledgers = fleet.ledgers().await;
    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    support::wait_rotation_done(&fleet.tokens, NAME, "r1", TIMEOUT).await;
    for (name, ledger) in &ledgers {
        let violations = ledger.assert_outage().await;
        eprintln!("member {name}: {} violation(s)", violations.len());
    }
}

/// A member named mid-rotation is brought in like a namespace that joins: its copy gets the
/// pair of record, its consumer is repointed and verified before Token 1 is deactivated.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_joins_mid_rotation_is_verified_before_token1_goes() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start_with("members-join", 1, RotationStrategy::ZeroDowntime).await;
    let old = fleet.wait_synced().await;
    // The hub's consumer is paused: the rotation stays open while west joins.
    fleet.set_paused(&fleet.scenario.admin, true).await;
    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    fleet
        .wait_status("the rotation held by the hub's paused consumer", |status| {
            status
                .consumers
                .as_ref()
                .is_some_and(|consumers| !consumers.blocked.is_empty())
        })
        .await;
    let west = fleet.member("west");
    let west_ledger = fleet.ledger(west).await;
    fleet.join_all().await;
    support::wait_event(
        &fleet.scenario.admin,
        fleet.namespace(),
        NAME,
        "MemberAdded",
        TIMEOUT,
    )
    .await;
    fleet.wait_synced().await;
    fleet.set_paused(&fleet.scenario.admin, false).await;
    support::wait_rotation_done(&fleet.tokens, NAME, "r1", TIMEOUT).await;
    assert_eq!(
        pair(&fleet.scenario.admin, fleet.namespace()).await.0,
        old.1
    );
    fleet.wait_synced().await;
    fleet.assert_members_on_token2().await;
    west_ledger.assert_no_outage().await;
}

/// The hub's operator SIGKILLed right after `step` of a rotation across the members; a fresh
/// process resumes and completes it: every member's consumer rolled exactly once, no member pod
/// on a deactivated value, Token 1 deactivated exactly once.
async fn hub_killed_at(step: &str) {
    let _serial = members::SERIAL.lock().await;
    let prefix = format!("members-kill-{}", step.replace(':', "-").to_lowercase());
    let mut fleet = Fleet::start(&prefix).await;
    let old = fleet.wait_synced().await;
    for member in &fleet.members {
        support::wait_deployments_available(&member.admin, fleet.namespace(), &["api"]).await;
    }
    let ledgers = fleet.ledgers().await;
    fleet.scenario.operator.kill().await;
    let mut halting = Operator::start(
        &fleet.scenario.admin,
        fleet.namespace(),
        OperatorOptions {
            extra_env: vec![("STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(), step.into())],
            ..OperatorOptions::default()
        },
    )
    .await;
    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    wait_for(
        &format!("the hub to reach halt point {step}"),
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
    let _resumed = Operator::start(
        &fleet.scenario.admin,
        fleet.namespace(),
        OperatorOptions::default(),
    )
    .await;
    assert_completed(&fleet, "r1", &ledgers, old).await;
    let status = fleet.status().await;
    assert_eq!(
        (
            status.token1.expect("t1").serial,
            status.token2.expect("t2").serial
        ),
        (2, 3),
        "deactivated exactly once"
    );
    fleet.assert_members_on_token2().await;
    for member in &fleet.members {
        assert_eq!(
            support::rollouts(&member.admin, fleet.namespace(), "api").await,
            1,
            "{}'s consumer rolled exactly once across the crash",
            member.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_killed_after_repointing_a_consumer() {
    hub_killed_at("consumer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_killed_after_deactivating_before_the_member_copies() {
    hub_killed_at("secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_killed_after_writing_the_member_copies() {
    hub_killed_at("copies").await;
}

/// A member removed from `spec.clusters` is revoked like a namespace that leaves: the rotation
/// no longer waits for it, its copy keeps the pair it had and never receives a later one (its
/// pods still reading it are reported, and its ledger, judged against the hub's record, sees
/// them cut off, as the revocation means); scaled to zero, its copy is deleted and the member
/// forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_removed_from_the_spec_is_revoked() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start("members-leave").await;
    let old = fleet.wait_synced().await;
    let west = fleet.member("west");
    let west_ledger = fleet.ledger(west).await;
    fleet
        .tokens
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusters": [fleet.clusters[0]]}})),
        )
        .await
        .expect("west removed");
    fleet
        .wait_status("west leaving", |status| {
            member_state(status, "west").is_some_and(|west| west.state == "Leaving")
        })
        .await;
    let (_, _, message) = support::wait_event(
        &fleet.scenario.admin,
        fleet.namespace(),
        NAME,
        "MemberLeaving",
        TIMEOUT,
    )
    .await;
    assert!(message.contains("still read it"), "{message}");

    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    support::wait_rotation_done(&fleet.tokens, NAME, "r1", TIMEOUT).await;
    assert_eq!(
        pair(&fleet.scenario.admin, fleet.namespace()).await.0,
        old.1
    );
    assert_eq!(
        pair(&west.admin, fleet.namespace()).await,
        old,
        "the revoked member's copy received a later pair"
    );
    assert_eq!(
        support::rollouts(&west.admin, fleet.namespace(), "api").await,
        0,
        "a revoked member's consumer was repointed"
    );
    west_ledger.assert_outage().await;

    Api::<Deployment>::namespaced(west.admin.clone(), fleet.namespace())
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scaled to zero");
    wait_for("west's copy deleted", TIMEOUT, || async {
        match pair_opt(&west.admin, fleet.namespace()).await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    support::wait_event(
        &fleet.scenario.admin,
        fleet.namespace(),
        NAME,
        "MemberRemoved",
        TIMEOUT,
    )
    .await;
    let status = fleet
        .wait_status("west forgotten", |status| {
            member_state(status, "west").is_none()
        })
        .await;
    assert_eq!(status.clusters.len(), 1);
}

/// What kstatus and Argo CD's health check (the shipped Lua) say of `token`.
fn judged(token: &StreamingToken) -> (String, String) {
    let mut value = serde_json::to_value(token).expect("serializes");
    value["apiVersion"] = json!("streamingtoken.io/v1alpha1");
    value["kind"] = json!("StreamingToken");
    let kstatus = crate::ecosystem::kstatus_of(std::slice::from_ref(&value));
    let argocd = crate::ecosystem::argocd_health_of(std::slice::from_ref(&value));
    (kstatus[0].0.clone(), argocd[0].0.clone())
}

/// A member removed mid-rotation, after its consumer moved to Token 2: the rotation no longer
/// waits for it and its copy never receives the new pair, but its pods read the Token 2 key of
/// that copy, which stays valid after the deactivation: no outage there (its ledger), and its
/// copy stays until nothing reads it.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_removed_mid_rotation_keeps_its_copy_while_read() {
    let _serial = members::SERIAL.lock().await;
    let fleet = Fleet::start("members-leave-mid").await;
    let old = fleet.wait_synced().await;
    let west = fleet.member("west");
    let west_ledger = fleet.ledger(west).await;
    fleet.set_paused(&fleet.scenario.admin, true).await;
    support::set_trigger(&fleet.tokens, NAME, "r1").await;
    let stamp = support::rotation_stamp(&fleet.tokens, NAME, "r1").await;
    wait_for("west's consumer rolled onto Token 2", TIMEOUT, || async {
        let deployment = Api::<Deployment>::namespaced(west.admin.clone(), fleet.namespace())
            .get("api")
            .await
            .map_err(|error| error.to_string())?;
        let status = deployment.status.clone().unwrap_or_default();
        let template = serde_json::to_string(&deployment.spec.template).unwrap_or_default();
        if template.contains("token2")
            && template.contains(&stamp)
            && status.updated_replicas == Some(2)
            && status.replicas == Some(2)
        {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    fleet
        .tokens
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusters": [fleet.clusters[0]]}})),
        )
        .await
        .expect("west removed");
    fleet
        .wait_status("west leaving", |status| {
            member_state(status, "west").is_some_and(|west| west.state == "Leaving")
        })
        .await;
    fleet.set_paused(&fleet.scenario.admin, false).await;
    support::wait_rotation_done(&fleet.tokens, NAME, "r1", TIMEOUT).await;
    assert_eq!(
        pair(&fleet.scenario.admin, fleet.namespace()).await.0,
        old.1
    );
    assert_eq!(
        pair(&west.admin, fleet.namespace()).await,
        old,
        "the revoked member's copy received a later pair"
    );
    west_ledger.assert_no_outage().await;
    let status = fleet.status().await;
    assert!(
        member_state(&status, "west").is_some_and(|west| west.state == "Leaving"),
        "{:?}",
        status.clusters
    );
}
