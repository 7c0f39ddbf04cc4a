//! Rotation lifecycle hardening: one refused consumer does not stall the others, names the
//! schema cannot hold are refused up front, GitOps re-applies do not fight the operator,
//! partial source edits wait, incarnations do not share rotation ids.

use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The Secret key the first variable of the first container reads.
fn first_key(deployment: &Deployment) -> Option<String> {
    let spec = deployment.spec.template.spec.as_ref()?;
    let variable = spec.containers.first()?.env.as_ref()?.first()?;
    Some(
        variable
            .value_from
            .as_ref()?
            .secret_key_ref
            .as_ref()?
            .key
            .clone(),
    )
}

/// A ValidatingAdmissionPolicy (and its binding, limited to `namespace`) that denies UPDATEs of
/// `resource` in API group `group` unless `allowed` (a CEL expression) holds.
async fn deny_updates(
    admin: &Client,
    name: &str,
    namespace: &str,
    (group, resource): (&str, &str),
    allowed: &str,
    message: &str,
) {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [group], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": [resource]
            }]},
            "validations": [{"expression": allowed, "message": message}]
        }
    }))
    .expect("policy");
    support::apply(
        &Api::<ValidatingAdmissionPolicy>::all(admin.clone()),
        &policy,
    )
    .await;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        }
    }))
    .expect("binding");
    support::apply(
        &Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone()),
        &binding,
    )
    .await;
}

/// Denies `user`'s writes to the Deployment named `deployment` in `namespace`.
async fn deny_writes(admin: &Client, name: &str, namespace: &str, user: &str, deployment: &str) {
    deny_updates(
        admin,
        name,
        namespace,
        ("apps", "deployments"),
        &format!("!(request.userInfo.username == '{user}' && object.metadata.name == '{deployment}')"),
        "writes to this Deployment are refused by policy (sentinel text the operator must not copy)",
    )
    .await;
}

async fn allow_again(admin: &Client, name: &str) {
    Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("binding deleted");
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("policy deleted");
}

/// A consumer whose apply the API server refuses is reported (with the status code and reason,
/// never the server's text) while every other consumer is repointed; once the policy is gone
/// the rotation completes without cutting anyone off.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_consumer_is_reported_and_does_not_stall_the_others() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "harden-refused").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    // "a-refused" sorts first: it is the first consumer the operator patches.
    let names = ["a-refused", "b-fine", "c-fine"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("ref"), 1),
        )
        .await;
    }
    support::apply(
        &tokens,
        &fixtures::token("ref", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "ref", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &names).await;
    let policy = format!("deny-{namespace}");
    let user = support::service_account_user(&namespace, "streaming-token-operator");
    deny_writes(&admin, &policy, &namespace, &user, "a-refused").await;
    // The policy takes effect once the apiserver has loaded it: probe as the operator would.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ledger = Ledger::start(&admin, &namespace, "ref").await;
    support::set_trigger(&tokens, "ref", "t1").await;
    let blocked = wait_for("a-refused to be reported", TIMEOUT, || async {
        let token = tokens.get("ref").await.map_err(|error| error.to_string())?;
        let summary = token
            .status
            .as_ref()
            .and_then(|status| status.consumers.clone())
            .unwrap_or_default();
        summary
            .blocked
            .iter()
            .find(|blocked| blocked.name == "a-refused" && blocked.reason == "ConsumerApplyRefused")
            .cloned()
            .ok_or_else(|| format!("{:?}", summary.blocked))
    })
    .await;
    assert!(
        blocked.message.contains("422") || blocked.message.contains("403"),
        "{}",
        blocked.message
    );
    assert!(
        !blocked.message.contains("sentinel"),
        "the server's free text is not copied: {}",
        blocked.message
    );
    // The others were repointed although the first apply was refused.
    for name in ["b-fine", "c-fine"] {
        wait_for(&format!("{name} to be repointed"), TIMEOUT, || async {
            let deployment = deployments
                .get(name)
                .await
                .map_err(|error| error.to_string())?;
            let key = first_key(&deployment);
            if key.as_deref() == Some("token2") {
                Ok(())
            } else {
                Err(format!("{key:?}"))
            }
        })
        .await;
    }
    let event =
        support::wait_event(&admin, &namespace, "ref", "ConsumerApplyRefused", TIMEOUT).await;
    assert!(!event.2.contains("sentinel"), "{}", event.2);
    assert!(
        !operator.logs().contains("sentinel"),
        "logs copy the server's text"
    );

    allow_again(&admin, &policy).await;
    support::wait_rotation_done(&tokens, "ref", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// A GitOps tool (or `kubectl apply` from CI) re-applies a consumer manifest that still reads
/// Token 1 in the middle of a rotation: the operator does not fight it; it reports the consumer
/// blocked, naming the field manager, keeps Token 1 active, and completes once Git reads Token 2.
#[tokio::test(flavor = "multi_thread")]
async fn a_gitops_revert_is_reported_not_fought() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("harden-gitops").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let manifest = |key: &str| {
        let mut deployment = fixtures::deployment("app", &namespace, Some("gs"), 1);
        let env = deployment
            .spec
            .template
            .spec
            .as_mut()
            .and_then(|spec| spec.containers[0].env.as_mut())
            .expect("env");
        env[0]
            .value_from
            .as_mut()
            .and_then(|from| from.secret_key_ref.as_mut())
            .expect("secretKeyRef")
            .key = key.into();
        deployment
    };
    // As Argo CD's application controller applies it.
    let sync = |key: &'static str| {
        let deployments = deployments.clone();
        let deployment = manifest(key);
        async move {
            deployments
                .patch(
                    "app",
                    &PatchParams::apply("argocd-controller").force(),
                    &Patch::Apply(&deployment),
                )
                .await
                .expect("synced");
        }
    };
    sync("token1").await;
    support::apply(
        &tokens,
        &fixtures::token("gs", &namespace).with_trigger("t0").build(),
    )
    .await;
    wait_condition(&tokens, "gs", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;
    let token1 = support::secret_value(&admin, &namespace, "gs", "token1")
        .await
        .expect("token1");
    let ledger = Ledger::start(&admin, &namespace, "gs").await;
    support::set_trigger(&tokens, "gs", "t1").await;
    wait_for("the operator's repoint", TIMEOUT, || async {
        let deployment = deployments
            .get("app")
            .await
            .map_err(|error| error.to_string())?;
        let key = first_key(&deployment);
        (key.as_deref() == Some("token2"))
            .then_some(())
            .ok_or_else(|| format!("{key:?}"))
    })
    .await;
    // Self-heal: the manifest in Git still says token1. Like Argo CD's self-heal, it syncs again
    // whenever the live object drifts from Git (a reconcile of the operator that started before
    // the first revert may still have re-applied its own repoint once).
    sync("token1").await;
    let blocked = wait_for("the revert to be reported", TIMEOUT, || async {
        let token = tokens.get("gs").await.map_err(|error| error.to_string())?;
        let found = token
            .status
            .as_ref()
            .and_then(|status| status.consumers.clone())
            .unwrap_or_default()
            .blocked
            .into_iter()
            .find(|blocked| blocked.reason == "EnvVarReverted");
        if found.is_none() {
            let live = deployments
                .get("app")
                .await
                .map_err(|error| error.to_string())?;
            if first_key(&live).as_deref() != Some("token1") {
                sync("token1").await;
            }
        }
        found.ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert!(
        blocked.message.contains("argocd-controller"),
        "{}",
        blocked.message
    );
    assert!(blocked.message.contains("token2"), "{}", blocked.message);
    // It does not fight: the template stays as Git wrote it, and Token 1 stays active.
    let generation = deployments
        .get("app")
        .await
        .expect("app")
        .metadata
        .generation;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        deployments
            .get("app")
            .await
            .expect("app")
            .metadata
            .generation,
        generation,
        "the operator did not re-apply its repoint"
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "gs", "token1")
            .await
            .as_deref(),
        Some(token1.as_str())
    );
    // The fix lands in Git: the manifest reads Token 2.
    sync("token2").await;
    support::wait_rotation_done(&tokens, "gs", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// Rotation ids restart with the serials when a StreamingToken and its mirror are deleted and
/// created again; the stamp on pod templates carries the incarnation, so a consumer stamped by
/// the old one's `r1` is rolled again by the new one's `r1`.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_streamingtoken_rolls_consumers_stamped_by_its_predecessor() {
    use k8s_openapi::api::core::v1::Secret;
    use streaming_token_operator::api::DeletionPolicy;
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("harden-incarnation").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("app", &namespace, Some("inc"), 1),
    )
    .await;
    let token = || {
        fixtures::token("inc", &namespace)
            .with_trigger("t0")
            .deletion_policy(DeletionPolicy::Delete)
            .build()
    };
    let rollouts = || support::rollouts(&admin, &namespace, "app");
    support::apply(&tokens, &token()).await;
    wait_condition(&tokens, "inc", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;
    support::set_trigger(&tokens, "inc", "t1").await;
    support::wait_rotation_done(&tokens, "inc", "r1", TIMEOUT).await;
    let first = support::rotation_stamp(&tokens, "inc", "r1").await;
    assert_eq!(rollouts().await, 1);

    tokens
        .delete("inc", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("the mirror to be garbage-collected", TIMEOUT, || async {
        match secrets.get_opt("inc").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|secret| secret.is_some()))),
        }
    })
    .await;
    support::apply(&tokens, &token()).await;
    wait_condition(&tokens, "inc", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::set_trigger(&tokens, "inc", "t1").await;
    let done = support::wait_rotation_done(&tokens, "inc", "r1", TIMEOUT).await;
    let second = support::rotation_stamp(&tokens, "inc", "r1").await;
    assert_ne!(first, second, "the incarnation is part of the stamp");
    assert_eq!(
        rollouts().await,
        2,
        "the old stamp did not pass for the new rotation's rollout"
    );
    let template = deployments
        .get("app")
        .await
        .expect("app")
        .spec
        .template
        .metadata
        .and_then(|metadata| metadata.annotations)
        .unwrap_or_default();
    assert_eq!(
        template
            .get(streaming_token_operator::api::ROTATION_ANNOTATION)
            .map(String::as_str),
        Some(second.as_str())
    );
    assert_eq!(
        done.status
            .and_then(|status| status.token1)
            .map(|token| token.serial),
        Some(2)
    );
}

/// secretRef: a person pastes the new Token 2 into the source first and the former Token 2 into
/// Token 1 a few seconds later. The first edit is incomplete: nothing is mirrored, nobody
/// restarts; the second completes the rotation. Then the mirror is deleted while the next
/// rotation waits for the platform: reported, mirrored again under new serials, abandoned.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_pasted_key_by_key_waits_and_a_mirror_lost_mid_rotation_is_reported() {
    use k8s_openapi::api::core::v1::Secret;
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("harden-paste").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("app", &namespace, Some("ps"), 1),
    )
    .await;
    let source =
        |one: &str, two: &str| fixtures::source_secret("portal", &namespace, "ps", one, two);
    support::apply(&secrets, &source("p-one", "p-two")).await;
    support::apply(
        &tokens,
        &fixtures::token("ps", &namespace)
            .secret_ref("portal")
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "ps", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;
    let ledger = Ledger::start(&admin, &namespace, "ps").await;
    support::set_trigger(&tokens, "ps", "t1").await;
    wait_condition(
        &tokens,
        "ps",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    let generation = deployments
        .get("app")
        .await
        .expect("app")
        .metadata
        .generation;

    support::apply(&secrets, &source("p-one", "p-three")).await;
    let token = wait_condition(
        &tokens,
        "ps",
        "Degraded",
        "True",
        "SourceIncomplete",
        TIMEOUT,
    )
    .await;
    let message = token
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|condition| condition.type_ == "Degraded")
        .expect("Degraded")
        .message;
    assert!(message.contains("key token1"), "{message}");
    assert_eq!(
        support::secret_value(&admin, &namespace, "ps", "token2")
            .await
            .as_deref(),
        Some("p-two"),
        "the incomplete pair is not mirrored"
    );
    support::apply(&secrets, &source("p-two", "p-three")).await;
    support::wait_rotation_done(&tokens, "ps", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let events = support::events(&admin, &namespace, "ps").await;
    for reason in ["SourceReplaced", "RotationAborted"] {
        assert!(
            !events.iter().any(|(_, got, _)| got == reason),
            "{reason} after a key-by-key paste: {events:?}"
        );
    }
    assert_eq!(
        deployments
            .get("app")
            .await
            .expect("app")
            .metadata
            .generation,
        generation,
        "no restart: the consumer already reads the promoted token"
    );

    // The next rotation waits for the platform; meanwhile someone deletes the mirror.
    support::set_trigger(&tokens, "ps", "t2").await;
    wait_condition(
        &tokens,
        "ps",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    secrets
        .delete("ps", &DeleteParams::default())
        .await
        .expect("mirror deleted");
    support::wait_event(
        &admin,
        &namespace,
        "ps",
        "MirrorLostDuringRotation",
        TIMEOUT,
    )
    .await;
    let token = wait_condition(
        &tokens,
        "ps",
        "ReadyToRotate",
        "False",
        "NoRotation",
        TIMEOUT,
    )
    .await;
    let status = token.status.expect("status");
    assert!(status.rotation.is_none(), "the rotation was abandoned");
    assert_eq!(
        status.token1.map(|token| token.serial),
        Some(4),
        "new serials, not the old ones relabelled onto whatever the source holds"
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "ps", "token1")
            .await
            .as_deref(),
        Some("p-two")
    );
}

/// `rotate` is GitOps-neutral: it sets an annotation, not the Git-owned trigger, so a self-heal
/// that re-applies the manifest from Git changes nothing, and exactly one rotation runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_manual_rotation_survives_a_gitops_self_heal_and_runs_once() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("harden-rotate").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("app", &namespace, Some("gm"), 1),
    )
    .await;
    let git = fixtures::token("gm", &namespace)
        .with_trigger("2026-11-24")
        .build();
    let sync = || async {
        tokens
            .patch(
                "gm",
                &PatchParams::apply("argocd-controller").force(),
                &Patch::Apply(&git),
            )
            .await
            .expect("synced from Git");
    };
    sync().await;
    wait_condition(&tokens, "gm", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;
    let ledger = Ledger::start(&admin, &namespace, "gm").await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", support::kubeconfig_path())
        .args([
            "rotate",
            "gm",
            "-n",
            &namespace,
            "--wait",
            "--timeout",
            "2m",
        ])
        .output()
        .expect("rotate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rotation r1 completed"), "{stdout}");
    let token = tokens.get("gm").await.expect("token");
    assert_eq!(
        token.spec.rotation.trigger.as_deref(),
        Some("2026-11-24"),
        "the Git-owned field is untouched"
    );
    // Self-heal: Argo CD re-applies the manifest from Git.
    sync().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let token = tokens.get("gm").await.expect("token");
    let status = token.status.expect("status");
    assert!(
        status.rotation.is_none(),
        "no second rotation: {:?}",
        status.rotation
    );
    assert_eq!(
        status.last_rotation.map(|last| last.id).as_deref(),
        Some("r1")
    );
    let started = support::events(&admin, &namespace, "gm")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "RotationStarted")
        .count();
    assert_eq!(started, 1, "exactly one rotation");
    ledger.assert_no_outage().await;
}

/// The first timestamp of every log line of `log` that contains one of `needles`.
fn write_times(log: &str, needles: &[&str]) -> Vec<jiff::Timestamp> {
    log.lines()
        .filter(|line| needles.iter().any(|needle| line.contains(needle)))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Two leaders: the leader's Lease renewals start failing (a ValidatingAdmissionPolicy denies
/// them). It steps down once they have failed for longer than the lease, before the standby can
/// take the lapsed lease, so at no moment do two replicas write.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_renewals_fail_steps_down_before_the_standby_leads() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "harden-leaders").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let options = |instance: &str| OperatorOptions {
        leader_elect: true,
        lease_duration_seconds: 6,
        instance: instance.into(),
        ..OperatorOptions::default()
    };
    let holder = || support::lease_holder(&admin, &namespace);
    let identity = support::operator_identity(&admin, &namespace).await;
    let first = Operator::start_as(identity, &namespace, options("replica-a")).await;
    wait_for("replica-a to lead", TIMEOUT, || async {
        let holder = holder().await;
        (holder == "replica-a").then_some(()).ok_or(holder)
    })
    .await;
    let identity = support::operator_identity(&admin, &namespace).await;
    let second = Operator::start_as(identity, &namespace, options("replica-b")).await;
    support::apply(&tokens, &fixtures::token("before", &namespace).build()).await;
    wait_condition(&tokens, "before", "Ready", "True", "TokensReady", TIMEOUT).await;

    // Deny replica-a's renewals (a takeover by another holder stays allowed).
    let policy = format!("deny-renewals-{namespace}");
    deny_updates(
        &admin,
        &policy,
        &namespace,
        ("coordination.k8s.io", "leases"),
        "!(has(oldObject.spec.holderIdentity) && oldObject.spec.holderIdentity == 'replica-a' && has(object.spec.holderIdentity) && object.spec.holderIdentity == 'replica-a')",
        "renewals by replica-a are denied",
    )
    .await;
    wait_for("replica-b to take the lapsed lease", TIMEOUT, || async {
        let holder = holder().await;
        (holder == "replica-b").then_some(()).ok_or(holder)
    })
    .await;
    support::apply(&tokens, &fixtures::token("after", &namespace).build()).await;
    wait_condition(&tokens, "after", "Ready", "True", "TokensReady", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    allow_again(&admin, &policy).await;

    let first_log = first.logs();
    assert!(
        first_log.contains("stepping down"),
        "{}",
        support::tail(&first_log, 15)
    );
    let writes = [
        "mirror Secret written",
        "status written",
        "consumer patched",
    ];
    let last_by_a = write_times(&first_log, &writes)
        .into_iter()
        .max()
        .expect("replica-a wrote");
    let first_by_b = write_times(&second.logs(), &writes)
        .into_iter()
        .min()
        .expect("replica-b wrote after taking over");
    assert!(
        last_by_a < first_by_b,
        "two replicas wrote at once: replica-a's last write {last_by_a}, replica-b's first {first_by_b}"
    );
    let stepped_down = write_times(&first_log, &["stepping down"])
        .into_iter()
        .min()
        .expect("stepped down");
    assert!(
        stepped_down < first_by_b,
        "replica-a stepped down before replica-b wrote"
    );
    let demoted = first.metrics().await;
    assert!(support::metric_sum(&demoted, "streamingtoken_leader") == 0.0);
    assert!(
        !demoted.contains(r#"name="before""#),
        "a demoted replica exports no per-StreamingToken series: {demoted}"
    );
}

/// Restart with `secretRef`: `ReadyToRotate` says truthfully that nothing was checked, and a
/// consumer whose pods already hold the promoted token is not restarted a second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_hand_off_is_worded_truthfully_and_restarts_only_who_needs_it() {
    use k8s_openapi::api::core::v1::Secret;
    use streaming_token_operator::api::RotationStrategy;
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("harden-restart").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let source =
        |one: &str, two: &str| fixtures::source_secret("portal", &namespace, "rh", one, two);
    support::apply(&secrets, &source("p-one", "p-two")).await;
    support::apply(
        &tokens,
        &fixtures::token("rh", &namespace)
            .secret_ref("portal")
            .strategy(RotationStrategy::Restart)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "rh", "Ready", "True", "TokensReady", TIMEOUT).await;
    // Created after the pair was mirrored (and after the kubelet cache margin, 2 s): "fresh"
    // reads Token 2, "stale" Token 1.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut fresh = fixtures::deployment("fresh", &namespace, Some("rh"), 1);
    fresh
        .spec
        .template
        .spec
        .as_mut()
        .and_then(|spec| spec.containers[0].env.as_mut())
        .and_then(|env| env[0].value_from.as_mut())
        .and_then(|from| from.secret_key_ref.as_mut())
        .expect("secretKeyRef")
        .key = "token2".into();
    support::apply(&deployments, &fresh).await;
    support::apply(
        &deployments,
        &fixtures::deployment("stale", &namespace, Some("rh"), 1),
    )
    .await;
    support::wait_deployments_available(&admin, &namespace, &["fresh", "stale"]).await;
    let ledger = Ledger::start(&admin, &namespace, "rh").await;
    support::set_trigger(&tokens, "rh", "t1").await;
    let token = wait_condition(
        &tokens,
        "rh",
        "ReadyToRotate",
        "True",
        "RestartAfterRotation",
        TIMEOUT,
    )
    .await;
    let message = token
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|condition| condition.type_ == "ReadyToRotate")
        .expect("ReadyToRotate")
        .message;
    assert!(
        !message.contains("every consumer uses Token 2"),
        "{message}"
    );
    support::apply(&secrets, &source("p-two", "p-three")).await;
    let done = support::wait_rotation_done(&tokens, "rh", "r1", TIMEOUT).await;
    assert!(done.status.is_some());
    let rollouts = |name: &'static str| support::rollouts(&admin, &namespace, name);
    assert_eq!(
        rollouts("fresh").await,
        0,
        "already on the promoted token: left alone"
    );
    assert_eq!(rollouts("stale").await, 1, "read Token 1: restarted once");
    support::wait_event(&admin, &namespace, "rh", "ConsumersLeftAlone", TIMEOUT).await;
    // The outage the Restart strategy accepts hit only the consumer that read Token 1.
    let outage = ledger.assert_outage().await;
    assert!(
        outage.iter().all(|line| line.contains("stale")),
        "{outage:?}"
    );
}
