//! Argo Rollouts as consumers, with the real Argo Rollouts controller (built from its Go module
//! by `tests/go-helper.sh argo-rollouts`, run in namespaced mode for the test's namespace): a
//! canary and a blue-green Rollout are repointed and verified from their own status with the
//! pod-level guarantee (the ledger), and an aborted Rollout blocks the rotation with Token 1 kept;
//! a manifest re-applied by `kubectl apply` every few seconds is reported, not fought; a Rollout
//! that takes its pod template from a Deployment (`spec.workloadRef`) is rotated through that
//! Deployment and never given a template; and a Rollout CRD installed after the operator started
//! (on a control plane of the test's own) is picked up without a restart.

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
pub async fn install_crds(admin: &Client) {
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
    dir: tempfile::TempDir,
}

impl RolloutsController {
    /// The tail of the controller's log, for failure messages.
    fn log_tail(&self) -> String {
        support::tail(
            &std::fs::read_to_string(self.dir.path().join("rollouts.log")).unwrap_or_default(),
            20,
        )
    }
}

async fn start_controller(namespace: &str) -> RolloutsController {
    start_controller_on(&support::kubeconfig_path(), namespace).await
}

/// The Argo Rollouts controller for `namespace` of the control plane `admin_kubeconfig` names.
async fn start_controller_on(
    admin_kubeconfig: &std::path::Path,
    namespace: &str,
) -> RolloutsController {
    let dir = tempfile::tempdir().expect("temp dir");
    // The admin kubeconfig with the test's namespace as its context's namespace (namespaced
    // mode serves that one).
    let mut config: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(admin_kubeconfig).expect("kubeconfig"))
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
    RolloutsController { _child: child, dir }
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

/// The Rollout's `rollout.argoproj.io/revision` (0 before its controller set one).
async fn revision(rollouts: &Api<DynamicObject>, name: &str) -> u64 {
    rollouts
        .get(name)
        .await
        .ok()
        .and_then(|object| {
            object
                .metadata
                .annotations?
                .get("rollout.argoproj.io/revision")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `(reason, message)` of the consumer `name` listed as blocked on StreamingToken `token`.
async fn blocked_entry(
    tokens: &Api<StreamingToken>,
    token: &str,
    name: &str,
) -> Option<(String, String)> {
    let token = tokens.get(token).await.ok()?;
    token
        .status?
        .consumers?
        .blocked
        .into_iter()
        .find(|blocked| blocked.name == name)
        .map(|blocked| (blocked.reason, blocked.message))
}

/// `kubectl apply -f` (client-side apply, as CI or a GitOps tool runs it) of `manifest`.
fn kubectl_apply(manifest: &serde_json::Value) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_string(manifest).expect("json")).expect("written");
    let path = file.path().to_string_lossy().to_string();
    let output = support::kubectl(&["apply", "-f", &path]);
    assert!(
        output.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Successful patches of Rollout `name` by `user`, from the API server's audit log.
fn audited_rollout_patches(user: &str, namespace: &str, name: &str) -> usize {
    support::audited_writes(user)
        .iter()
        .filter(|entry| {
            entry["verb"] == "patch"
                && entry["objectRef"]["resource"] == "rollouts"
                && entry["objectRef"]["namespace"] == namespace
                && entry["objectRef"]["name"] == name
                && entry["responseStatus"]["code"] == 200
        })
        .count()
}

/// A Git revert of a Rollout's repointed variable, with the real `kubectl apply` (client-side:
/// field manager `kubectl-client-side-apply`, operation Update, a JSON merge of the whole
/// containers list, which the Rollout CRD declares atomic) re-applying the original manifest
/// every 5 s during a canary rotation, as a GitOps tool's self-heal would: the operator reports
/// it (`EnvVarReverted`, naming the field manager) and does not fight it (at most one repoint
/// after the revert, so no new revision per sync); Token 1 stays active; once the manifest reads
/// Token 2 the rotation completes, and the ledger sees no pod cut off.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubectl_apply_revert_of_a_rollout_is_reported_not_fought() {
    let admin = support::admin_client().await;
    install_crds(&admin).await;
    let namespace = support::namespace(&admin, "ro-revert").await;
    let controller = start_controller(&namespace).await;
    let rollouts: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &namespace, &rollout_resource());
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &tokens,
        &fixtures::token("rv", &namespace).with_trigger("t0").build(),
    )
    .await;
    let manifest = |key: &str| {
        let mut object = rollout(
            "web",
            "rv",
            json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}]}}),
        );
        object.metadata.namespace = Some(namespace.clone());
        object.data["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
            ["key"] = json!(key);
        let mut value = serde_json::to_value(&object).expect("json");
        value["apiVersion"] = json!("argoproj.io/v1alpha1");
        value["kind"] = json!("Rollout");
        value
    };
    kubectl_apply(&manifest("token1"));
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    wait_condition(&tokens, "rv", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_phase(&rollouts, "web", "Healthy").await;
    let token1 = support::secret_value(&admin, &namespace, "rv", "token1")
        .await
        .expect("token1");
    let user = support::service_account_user(&namespace, &operator.identity.name);
    let ledger = Ledger::start(&admin, &namespace, "rv").await;
    support::set_trigger(&tokens, "rv", "t1").await;
    wait_for("the operator's repoint", TIMEOUT, || async {
        let object = rollouts
            .get("web")
            .await
            .map_err(|error| error.to_string())?;
        let key = object.data["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
            ["secretKeyRef"]["key"]
            .clone();
        (key == "token2")
            .then_some(())
            .ok_or_else(|| key.to_string())
    })
    .await;
    wait_for("Argo Rollouts to take the repoint", TIMEOUT, || async {
        let revision = revision(&rollouts, "web").await;
        (revision >= 2)
            .then_some(())
            .ok_or_else(|| revision.to_string())
    })
    .await;
    let revision_repointed = revision(&rollouts, "web").await;
    let patches_repointed = audited_rollout_patches(&user, &namespace, "web");
    // The manifest in Git still reads Token 1: synced every 5 s for a minute.
    for _ in 0..12 {
        kubectl_apply(&manifest("token1"));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let patches = audited_rollout_patches(&user, &namespace, "web") - patches_repointed;
    let revisions = revision(&rollouts, "web").await - revision_repointed;
    // Reported once the operator has seen the last apply's Rollout settle (a pass may read it
    // while Argo Rollouts is still progressing the reverted template).
    let blocked = wait_for("the revert reported", TIMEOUT, || async {
        match blocked_entry(&tokens, "rv", "web").await {
            Some(entry) => Ok(Some(entry)),
            None => Err("not listed as blocked".to_string()),
        }
    })
    .await;
    eprintln!(
        "a minute of kubectl apply every 5 s after the repoint: {patches} more operator patch(es) of the Rollout, {revisions} more revision(s) (revision {revision_repointed} at the repoint); blocked: {blocked:?}"
    );
    // A reconcile that started before the first revert may re-apply the repoint once.
    assert!(
        patches <= 1 && revisions <= 3,
        "the operator fought the revert: {patches} patches, {revisions} new revisions in a minute; Argo Rollouts: {}",
        controller.log_tail()
    );
    let (reason, message) = blocked.expect("the Rollout is listed as blocked");
    assert_eq!(reason, "EnvVarReverted", "{message}");
    assert!(message.contains("kubectl-client-side-apply"), "{message}");
    assert!(message.contains("key: token2"), "{message}");
    assert_eq!(
        support::secret_value(&admin, &namespace, "rv", "token1")
            .await
            .as_deref(),
        Some(token1.as_str()),
        "Token 1 deactivated under a reverted Rollout"
    );
    // The fix lands in Git: the manifest reads Token 2.
    kubectl_apply(&manifest("token2"));
    support::wait_rotation_done(&tokens, "rv", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// Whether Rollout `name` holds a pod template, or Argo Rollouts finds its spec invalid: what a
/// Rollout with `spec.workloadRef` must never come to.
async fn template_or_invalid(rollouts: &Api<DynamicObject>, name: &str) -> Option<String> {
    let object = rollouts.get(name).await.ok()?;
    let spec = &object.data["spec"];
    if !spec["template"].is_null() {
        return Some(format!("spec.template was written: {}", spec["template"]));
    }
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "InvalidSpec")
        .map(|condition| format!("InvalidSpec: {}", condition["message"]))
}

/// A Rollout that takes its pod template from a Deployment (`spec.workloadRef`, the Deployment
/// scaled to zero, as Argo Rollouts' migration guide has it) is rotated through that Deployment:
/// its template is repointed and stamped, Argo Rollouts rolls the Rollout onto it (a canary), the
/// Rollout is verified from its status and pods, and it is never given a template of its own
/// (which Argo Rollouts refuses: `InvalidSpec`); the ledger sees no pod cut off.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_with_a_workload_ref_is_rotated_through_its_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let admin = support::admin_client().await;
    install_crds(&admin).await;
    let namespace = support::namespace(&admin, "ro-ref").await;
    let controller = start_controller(&namespace).await;
    let rollouts: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &namespace, &rollout_resource());
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &tokens,
        &fixtures::token("wr", &namespace).with_trigger("t0").build(),
    )
    .await;
    // The Deployment that holds the template: not a consumer itself (unlabelled), no replicas.
    let template = rollout("unused", "wr", json!({})).data["spec"]["template"].clone();
    let mut deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-template", "namespace": namespace},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    }))
    .expect("deployment");
    deployment
        .spec
        .template
        .metadata
        .as_mut()
        .expect("metadata")
        .labels = Some([("app".to_string(), "web".to_string())].into());
    support::apply(&deployments, &deployment).await;
    let mut object = rollout(
        "web",
        "wr",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}}),
    );
    object.data["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("template");
    object.data["spec"]["workloadRef"] =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-template"});
    rollouts
        .patch(
            "web",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("Rollout applied");
    let _operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    wait_condition(&tokens, "wr", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_phase(&rollouts, "web", "Healthy").await;
    let ledger = Ledger::start(&admin, &namespace, "wr").await;
    support::set_trigger(&tokens, "wr", "t1").await;
    wait_for("rotation r1 to complete", TIMEOUT, || async {
        if let Some(broken) = template_or_invalid(&rollouts, "web").await {
            panic!(
                "the workloadRef Rollout was broken: {broken}; Argo Rollouts: {}",
                controller.log_tail()
            );
        }
        let token = tokens.get("wr").await.map_err(|error| error.to_string())?;
        let status = token.status.unwrap_or_default();
        match (&status.last_rotation, &status.rotation) {
            (Some(last), None) if last.id == "r1" => Ok(()),
            _ => Err(format!(
                "phase {:?}, blocked {:?}",
                status.rotation.map(|rotation| rotation.phase),
                status.consumers.map(|consumers| consumers.blocked)
            )),
        }
    })
    .await;
    ledger.assert_no_outage().await;
    assert_eq!(template_or_invalid(&rollouts, "web").await, None);
    let stamp = support::rotation_stamp(&tokens, "wr", "r1").await;
    let deployment = deployments.get("web-template").await.expect("Deployment");
    let template = serde_json::to_value(&deployment.spec.template).expect("json");
    assert_eq!(
        template["metadata"]["annotations"]["streamingtoken.io/rotation"],
        json!(stamp),
        "the referenced Deployment's template stamped"
    );
    assert_eq!(
        template["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"], "token2",
        "the referenced Deployment's template repointed"
    );
    // The Rollout's pods come from that template.
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &namespace)
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .expect("pods");
    assert!(!pods.items.is_empty(), "the Rollout runs pods");
    for pod in pods
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
    {
        assert_eq!(
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get("streamingtoken.io/rotation")),
            Some(&stamp),
            "pod {:?} of the Rollout is on the rotation's template",
            pod.metadata.name
        );
    }
    assert_eq!(phase(&rollouts, "web").await, "Healthy");
}

/// A control plane of the test's own (`tests/controlplane/cluster.sh` in a temporary directory,
/// one KWOK node): the shared one already has the Rollout CRD, which is cluster-wide. Stopped
/// when dropped.
struct OwnControlPlane {
    dir: tempfile::TempDir,
}

impl OwnControlPlane {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = tokio::process::Command::new(Self::script())
            .arg("up")
            .env("CLUSTER_DIR", dir.path())
            .env("CLUSTER_NODES", "1")
            .output()
            .await
            .expect("cluster.sh runs");
        let plane = Self { dir };
        assert!(
            output.status.success(),
            "a control plane of the test's own did not start: {}",
            support::tail(&String::from_utf8_lossy(&output.stderr), 40)
        );
        plane
    }

    fn script() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/cluster.sh")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .arg("down")
            .env("CLUSTER_DIR", self.dir.path())
            .output();
    }
}

/// The operator's ServiceAccount in `namespace` on `plane`, with the chart's ClusterRole bound
/// cluster-wide (a ClusterRoleBinding, as the chart installs it serving every namespace) or, when
/// not `cluster_wide`, in `namespace` only (a RoleBinding: what a namespaced install grants,
/// which cannot include a read of a cluster-scoped CRD).
async fn identity_on_plane(
    admin: &Client,
    plane: &OwnControlPlane,
    namespace: &str,
    cluster_wide: bool,
) -> support::ServiceAccountIdentity {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
    let account = "streaming-token-operator";
    let role = "streaming-token-operator-e2e";
    support::install_operator_cluster_role(admin, role).await;
    support::apply(
        &Api::<ServiceAccount>::namespaced(admin.clone(), namespace),
        &ServiceAccount {
            metadata: fixtures::metadata(account, namespace),
            ..ServiceAccount::default()
        },
    )
    .await;
    if cluster_wide {
        support::apply(
            &Api::<ClusterRoleBinding>::all(admin.clone()),
            &ClusterRoleBinding {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{role}-{namespace}")),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: role.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: account.into(),
                    namespace: Some(namespace.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await;
    } else {
        support::bind(admin, namespace, account, "ClusterRole", role, namespace).await;
    }
    let identity = support::identity_on(admin, &plane.kubeconfig(), namespace, account).await;
    support::wait_rbac_effective(&identity).await;
    identity
}

/// Waits until StreamingToken `name` counts `total` consumers.
async fn wait_consumers(tokens: &Api<StreamingToken>, name: &str, total: i32, operator: &Operator) {
    wait_for(
        &format!("{name} to count {total} consumer(s)"),
        TIMEOUT,
        || async {
            let token = tokens.get(name).await.map_err(|error| error.to_string())?;
            let counted = token
                .status
                .and_then(|status| status.consumers)
                .map(|consumers| consumers.total);
            (counted == Some(total)).then_some(()).ok_or_else(|| {
                format!(
                    "consumers {counted:?}; operator log: {}",
                    support::tail(&operator.logs(), 5)
                )
            })
        },
    )
    .await;
}

/// Argo Rollouts installed after the operator started, on a control plane of the test's own:
/// an operator with the chart's ClusterRole bound cluster-wide (which may watch the Rollout CRD
/// by name) picks it up without a restart, counts a labelled Rollout as a consumer and rotates
/// it with the real Argo Rollouts controller under the ledger; an operator serving one namespace
/// with only namespaced RBAC (it may not read CRDs) finds the Rollout API by looking again every
/// 30 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_crd_installed_after_the_operator_started_is_picked_up() {
    let plane = OwnControlPlane::start().await;
    let admin = support::client_from_kubeconfig(&plane.kubeconfig()).await;
    let namespace = support::namespace(&admin, "ro-late").await;
    let namespaced = support::namespace(&admin, "ro-late-ns").await;
    let rollouts: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &namespace, &rollout_resource());
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let namespaced_tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespaced);
    // Each serves its own namespace (one serving every namespace would serve both
    // StreamingTokens); only the first may read the CRD.
    let operator = Operator::start_as(
        identity_on_plane(&admin, &plane, &namespace, true).await,
        &namespace,
        OperatorOptions::default(),
    )
    .await;
    let namespaced_operator = Operator::start_as(
        identity_on_plane(&admin, &plane, &namespaced, false).await,
        &namespaced,
        OperatorOptions::default(),
    )
    .await;
    for (api, namespace) in [(&tokens, &namespace), (&namespaced_tokens, &namespaced)] {
        support::apply(
            api,
            &fixtures::token("late", namespace)
                .with_trigger("t0")
                .build(),
        )
        .await;
        wait_condition(api, "late", "Ready", "True", "TokensReady", TIMEOUT).await;
    }
    assert!(
        matches!(
            rollouts.list(&Default::default()).await,
            Err(kube::Error::Api(status)) if status.code == 404
        ),
        "the Rollout CRD is not installed yet on this control plane"
    );

    install_crds(&admin).await;
    let installed = std::time::Instant::now();
    let controller = start_controller_on(&plane.kubeconfig(), &namespace).await;
    let canary = json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}});
    for namespace in [&namespace, &namespaced] {
        Api::<DynamicObject>::namespaced_with(admin.clone(), namespace, &rollout_resource())
            .patch(
                "web",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(rollout("web", "late", canary.clone())),
            )
            .await
            .expect("Rollout applied");
    }
    wait_consumers(&tokens, "late", 1, &operator).await;
    let cluster_wide_after = installed.elapsed();
    wait_consumers(&namespaced_tokens, "late", 1, &namespaced_operator).await;
    eprintln!(
        "the Rollout was counted {:.1} s after its CRD was installed (the operator that may read the CRD watches it), {:.1} s (the namespaced one, looking every 30 s)",
        cluster_wide_after.as_secs_f64(),
        installed.elapsed().as_secs_f64()
    );
    // Each found it its own way.
    let looked = "the Rollout CRD is not readable (a namespaced install)";
    assert!(
        !operator.logs().contains(looked),
        "the operator that may read the CRD watches it"
    );
    assert!(
        namespaced_operator.logs().contains(looked),
        "the namespaced operator may not read the CRD: {}",
        support::tail(&namespaced_operator.logs(), 10)
    );
    for logs in [operator.logs(), namespaced_operator.logs()] {
        assert!(
            logs.contains("Argo Rollouts was installed"),
            "{}",
            support::tail(&logs, 10)
        );
    }
    wait_phase(&rollouts, "web", "Healthy").await;
    let ledger = Ledger::start(&admin, &namespace, "late").await;
    support::set_trigger(&tokens, "late", "t1").await;
    support::wait_rotation_done(&tokens, "late", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let object = rollouts.get("web").await.expect("Rollout");
    assert_eq!(
        object.data["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
            ["key"],
        "token2",
        "repointed; Argo Rollouts: {}",
        controller.log_tail()
    );
}
