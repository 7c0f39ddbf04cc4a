//! Argo Rollouts as consumers, with the real Argo Rollouts controller (built from its Go module
//! by `tests/go-helper.sh argo-rollouts`, run in namespaced mode for the test's namespace): a
//! canary and a blue-green Rollout are repointed and verified from their own status with the
//! pod-level guarantee (the ledger), and an aborted Rollout blocks the rotation with Token 1 kept.

use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use streaming_token_operator::api::StreamingToken;
use streaming_token_operator::workload::rollout_resource;

const TIMEOUT: Duration = Duration::from_secs(240);

fn controller_binary() -> PathBuf {
    match std::env::var_os("STO_E2E_ARGO_ROLLOUTS") {
        Some(path) if std::path::Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "STO_E2E_ARGO_ROLLOUTS must name the Argo Rollouts controller (make test builds it with tests/go-helper.sh argo-rollouts)"
        ),
    }
}

/// Installs Argo Rollouts' own CRDs (shipped with its module, kept next to the binary).
async fn install_crds(admin: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let dir = controller_binary()
        .parent()
        .expect("helper directory")
        .join("files");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for entry in std::fs::read_dir(&dir).expect("Argo Rollouts CRDs") {
        let text = std::fs::read_to_string(entry.expect("file").path()).expect("CRD");
        let crd: CustomResourceDefinition = serde_norway::from_str(&text).expect("CRD parses");
        crds.patch(
            crd.metadata.name.as_deref().expect("named"),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applied");
    }
    wait_for(
        "the Rollout CRD to be served",
        Duration::from_secs(30),
        || async {
            Api::<DynamicObject>::all_with(admin.clone(), &rollout_resource())
                .list(&kube::api::ListParams::default().limit(1))
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        },
    )
    .await;
}

/// The Argo Rollouts controller for `namespace` only, as its own process.
struct RolloutsController {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn start_controller(namespace: &str) -> RolloutsController {
    let dir = tempfile::tempdir().expect("temp dir");
    // The admin kubeconfig with the test's namespace as its context's namespace (namespaced
    // mode serves that one).
    let mut config: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(support::kubeconfig_path()).expect("kubeconfig"),
    )
    .expect("kubeconfig parses");
    for context in config["contexts"].as_array_mut().expect("contexts") {
        context["context"]["namespace"] = json!(namespace);
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, serde_json::to_string(&config).expect("json")).expect("written");
    let log = std::fs::File::create(dir.path().join("rollouts.log")).expect("log");
    let child = tokio::process::Command::new(controller_binary())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--namespaced")
        .arg("--leader-elect=false")
        .arg(format!("--metricsport={}", support::free_port()))
        .arg(format!("--healthzPort={}", support::free_port()))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the Argo Rollouts controller starts");
    RolloutsController {
        _child: child,
        _dir: dir,
    }
}

/// A Rollout labelled as a consumer of `token`, reading its Token 1 as `STREAMING_TOKEN`.
fn rollout(name: &str, token: &str, strategy: serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &rollout_resource());
    object.metadata.labels = Some(
        [(
            streaming_token_operator::api::TOKEN_LABEL.to_string(),
            token.to_string(),
        )]
        .into(),
    );
    object.data = json!({
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        "image": "registry.example/app:1",
                        "env": [{"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": token, "key": "token1"}}}]
                    }]
                }
            }
        }
    });
    object
}

async fn phase(rollouts: &Api<DynamicObject>, name: &str) -> String {
    rollouts
        .get(name)
        .await
        .map(|object| {
            object.data["status"]["phase"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

async fn wait_phase(rollouts: &Api<DynamicObject>, name: &str, want: &str) {
    wait_for(&format!("Rollout {name} {want}"), TIMEOUT, || async {
        let got = phase(rollouts, name).await;
        if got == want { Ok(()) } else { Err(got) }
    })
    .await;
}

/// A canary and a blue-green Rollout are repointed to Token 2 and verified (each once); Token 1
/// goes only then, and the ledger sees no pod cut off. Then a canary that pauses forever is
/// aborted mid-rotation: the rotation is blocked (`RolloutAborted`) and Token 1 kept.
#[tokio::test(flavor = "multi_thread")]
async fn canary_and_blue_green_rollouts_are_consumers_and_an_aborted_one_blocks() {
    let admin = support::admin_client().await;
    install_crds(&admin).await;
    let namespace = support::namespace(&admin, "rollouts").await;
    let _controller = start_controller(&namespace).await;
    let rollouts: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &namespace, &rollout_resource());
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &Api::<Service>::namespaced(admin.clone(), &namespace),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "bg-active", "namespace": namespace},
            "spec": {"selector": {"app": "bg"}, "ports": [{"port": 80}]}
        }))
        .expect("service"),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("ro", &namespace).with_trigger("t0").build(),
    )
    .await;
    let apply_rollout = |object: DynamicObject| {
        let rollouts = rollouts.clone();
        async move {
            let name = object.metadata.name.clone().expect("named");
            rollouts
                .patch(
                    &name,
                    &PatchParams::apply("e2e").force(),
                    &Patch::Apply(&object),
                )
                .await
                .expect("Rollout applied");
        }
    };
    apply_rollout(rollout(
        "cn",
        "ro",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "15s"}}]}}),
    ))
    .await;
    apply_rollout(rollout(
        "bg",
        "ro",
        json!({"blueGreen": {"activeService": "bg-active", "autoPromotionEnabled": true, "scaleDownDelaySeconds": 3}}),
    ))
    .await;
    let _operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    wait_condition(&tokens, "ro", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_phase(&rollouts, "cn", "Healthy").await;
    wait_phase(&rollouts, "bg", "Healthy").await;
    let token = tokens.get("ro").await.expect("ro");
    assert_eq!(
        token
            .status
            .and_then(|status| status.consumers)
            .map(|consumers| consumers.total),
        Some(2),
        "both Rollouts counted as consumers"
    );
    let old_token2 = support::secret_value(&admin, &namespace, "ro", "token2")
        .await
        .expect("token2");

    let ledger = Ledger::start(&admin, &namespace, "ro").await;
    // The canary's timed pause (15 s) is the rollout running its course: never reported as a
    // blocked (Paused) consumer while it runs.
    let seen_blocked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sampler = {
        let tokens = tokens.clone();
        let seen = seen_blocked.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(token) = tokens.get("ro").await {
                    for blocked in token
                        .status
                        .iter()
                        .flat_map(|status| status.consumers.iter())
                        .flat_map(|summary| summary.blocked.iter())
                    {
                        let entry = format!("{}/{} {}", blocked.kind, blocked.name, blocked.reason);
                        let mut seen = seen.lock().expect("lock");
                        if !seen.contains(&entry) {
                            seen.push(entry);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    support::set_trigger(&tokens, "ro", "t1").await;
    support::wait_rotation_done(&tokens, "ro", "r1", TIMEOUT).await;
    sampler.abort();
    ledger.assert_no_outage().await;
    let seen = seen_blocked.lock().expect("lock").clone();
    assert!(
        seen.is_empty(),
        "a timed canary pause was reported as blocking: {seen:?}"
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "ro", "token1")
            .await
            .as_deref(),
        Some(old_token2.as_str())
    );
    let stamp = support::rotation_stamp(&tokens, "ro", "r1").await;
    for name in ["cn", "bg"] {
        let object = rollouts.get(name).await.expect("Rollout");
        let template = &object.data["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["streamingtoken.io/rotation"],
            json!(stamp),
            "{name} stamped"
        );
        assert_eq!(
            template["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "token2",
            "{name} repointed"
        );
        assert_eq!(
            template["spec"]["containers"][0]["image"], "registry.example/app:1",
            "{name}: the rest of the template untouched"
        );
        let status = &object.data["status"];
        assert_eq!(
            status["stableRS"], status["currentPodHash"],
            "{name} promoted"
        );
    }

    // A canary that pauses forever, aborted mid-rotation.
    apply_rollout(rollout(
        "held",
        "ro",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    ))
    .await;
    wait_phase(&rollouts, "held", "Healthy").await;
    let token1 = support::secret_value(&admin, &namespace, "ro", "token1")
        .await
        .expect("token1");
    support::set_trigger(&tokens, "ro", "t2").await;
    wait_phase(&rollouts, "held", "Paused").await;
    rollouts
        .patch_status(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"abort": true}})),
        )
        .await
        .expect("aborted");
    wait_for(
        "the aborted Rollout to block the rotation",
        TIMEOUT,
        || async {
            let token = tokens.get("ro").await.map_err(|error| error.to_string())?;
            let blocked: Vec<(String, String)> = token
                .status
                .and_then(|status| status.consumers)
                .map(|consumers| {
                    consumers
                        .blocked
                        .into_iter()
                        .map(|blocked| (blocked.name, blocked.reason))
                        .collect()
                })
                .unwrap_or_default();
            if blocked.contains(&("held".to_string(), "RolloutAborted".to_string())) {
                Ok(())
            } else {
                Err(format!("{blocked:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "ro", "token1")
            .await
            .as_deref(),
        Some(token1.as_str()),
        "Token 1 deactivated under an aborted Rollout"
    );
    ledger.assert_no_outage().await;
}
