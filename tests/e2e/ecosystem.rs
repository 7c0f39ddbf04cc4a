//! The tools platform teams already run, fed real StreamingTokens from the cluster: kstatus
//! (`sigs.k8s.io/cli-utils/pkg/kstatus`, what Flux and cli-utils use for health) and Argo CD's
//! Lua health runtime (`github.com/argoproj/argo-cd/v3/util/lua`), each built from its Go module
//! (`tests/go-helper.sh kstatus`, `tests/go-helper.sh argocd-health`).

use crate::support::{self, fixtures, wait_condition, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(120);

/// What kstatus says of each object: `(status, message)`.
fn kstatus(objects: &[&StreamingToken]) -> Vec<(String, String)> {
    kstatus_of(&as_values(objects))
}

/// What Argo CD's Lua runtime says of each object with the shipped health check.
fn argocd_health(objects: &[&StreamingToken]) -> Vec<(String, String)> {
    argocd_health_of(&as_values(objects))
}

fn as_values(objects: &[&StreamingToken]) -> Vec<serde_json::Value> {
    objects
        .iter()
        .map(|object| {
            let mut value = serde_json::to_value(object).expect("serializes");
            value["apiVersion"] = json!("streamingtoken.io/v1alpha1");
            value["kind"] = json!("StreamingToken");
            value
        })
        .collect()
}

/// What kstatus says of each object (any kind, with `apiVersion` and `kind` set).
pub fn kstatus_of(objects: &[serde_json::Value]) -> Vec<(String, String)> {
    judge(
        "STO_E2E_KSTATUS",
        "tests/go-helper.sh kstatus",
        &[],
        objects,
    )
}

/// What Argo CD's Lua runtime says of each object (any kind) with the shipped health check.
pub fn argocd_health_of(objects: &[serde_json::Value]) -> Vec<(String, String)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/streaming-token-operator/files/argocd-health.lua");
    judge(
        "STO_E2E_ARGOCD_HEALTH",
        "tests/go-helper.sh argocd-health",
        &[script],
        objects,
    )
}

/// Runs the helper named by `variable` on `objects` (written as JSON files after `leading`).
fn judge(
    variable: &str,
    recipe: &str,
    leading: &[std::path::PathBuf],
    objects: &[serde_json::Value],
) -> Vec<(String, String)> {
    let binary = match std::env::var_os(variable) {
        Some(path) if std::path::Path::new(&path).is_file() => path,
        _ => panic!("{variable} must name the helper (make test builds it with {recipe})"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let paths: Vec<std::path::PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let path = dir.path().join(format!("{index}.json"));
            std::fs::write(&path, value.to_string()).expect("written");
            path
        })
        .collect();
    let output = std::process::Command::new(binary)
        .args(leading)
        .args(&paths)
        .output()
        .expect("the helper runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let (status, message) = line.split_once(' ').unwrap_or((line, ""));
            (status.to_string(), message.to_string())
        })
        .collect()
}

/// kstatus reads an idle StreamingToken as Current, a rotation as InProgress, a blocked
/// rotation and a spec or source the user must fix as Failed, a suspended one as Current.
#[tokio::test(flavor = "multi_thread")]
async fn kstatus_judges_real_streamingtokens() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("eco-kstatus").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);

    // Idle.
    support::apply(&tokens, &fixtures::token("idle", &namespace).build()).await;
    // Rotating: a secretRef rotation waiting for the platform.
    support::apply(
        &deployments,
        &fixtures::deployment("waits", &namespace, Some("rotating"), 1),
    )
    .await;
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "rotating", "p-one", "p-two"),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("rotating", &namespace)
            .secret_ref("portal")
            .with_trigger("t0")
            .build(),
    )
    .await;
    // Blocked: a paused consumer.
    support::apply(
        &deployments,
        &fixtures::deployment("paused", &namespace, Some("blocked"), 1),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("blocked", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    // Invalid: the source Secret does not exist.
    support::apply(
        &tokens,
        &fixtures::token("invalid", &namespace)
            .secret_ref("missing")
            .build(),
    )
    .await;
    // Suspended.
    support::apply(&tokens, &fixtures::token("suspended", &namespace).build()).await;
    for name in ["idle", "rotating", "blocked", "suspended"] {
        wait_condition(&tokens, name, "Ready", "True", "TokensReady", TIMEOUT).await;
    }
    support::wait_deployments_available(&admin, &namespace, &["waits", "paused"]).await;
    tokens
        .patch(
            "suspended",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspended");
    deployments
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    support::set_trigger(&tokens, "rotating", "t1").await;
    support::set_trigger(&tokens, "blocked", "t1").await;

    let idle = wait_condition(&tokens, "idle", "Stalled", "False", "AsExpected", TIMEOUT).await;
    let rotating = wait_condition(
        &tokens,
        "rotating",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    let blocked = wait_condition(
        &tokens,
        "blocked",
        "Stalled",
        "True",
        "ConsumerBlocked",
        TIMEOUT,
    )
    .await;
    let invalid = wait_condition(
        &tokens,
        "invalid",
        "Stalled",
        "True",
        "SourceSecretNotFound",
        TIMEOUT,
    )
    .await;
    let suspended =
        wait_condition(&tokens, "suspended", "Ready", "True", "Suspended", TIMEOUT).await;
    let judged = kstatus(&[&idle, &rotating, &blocked, &invalid, &suspended]);
    let statuses: Vec<&str> = judged.iter().map(|(status, _)| status.as_str()).collect();
    assert_eq!(
        statuses,
        ["Current", "InProgress", "Failed", "Failed", "Current"],
        "{judged:?}"
    );
    assert!(judged[2].1.contains("blocked"), "{}", judged[2].1);
    assert!(judged[3].1.contains("missing"), "{}", judged[3].1);

    // Argo CD, with the health check the chart ships, on the same objects.
    let health = argocd_health(&[&idle, &rotating, &blocked, &invalid, &suspended]);
    let statuses: Vec<&str> = health.iter().map(|(status, _)| status.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Degraded",
            "Suspended"
        ],
        "{health:?}"
    );
    assert!(
        health[2].1.starts_with("ConsumerBlocked"),
        "{}",
        health[2].1
    );
    assert!(
        health[3].1.starts_with("SourceSecretNotFound"),
        "{}",
        health[3].1
    );

    // `kubectl get` shows a blocked rotation.
    let output = support::kubectl(&["get", "streamingtokens", "-n", &namespace]);
    let table = String::from_utf8_lossy(&output.stdout);
    let line = table
        .lines()
        .find(|line| line.starts_with("blocked "))
        .expect("blocked row");
    assert!(line.contains("ConsumerBlocked"), "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|header| header.contains("DEGRADED")),
        "{table}"
    );
}

/// `status NAME` (the binary, run as `kubectl streamingtoken status` through its plugin name)
/// shows the pair, the rotation and where every consumer stands, as a table and as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_command_shows_where_each_consumer_stands() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("eco-status").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    for name in ["moving", "stuck"] {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("st"), 1),
        )
        .await;
    }
    support::apply(
        &tokens,
        &fixtures::token("st", &namespace).with_trigger("t0").build(),
    )
    .await;
    wait_condition(&tokens, "st", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["moving", "stuck"]).await;
    deployments
        .patch(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    support::set_trigger(&tokens, "st", "t1").await;
    wait_condition(&tokens, "st", "Stalled", "True", "ConsumerBlocked", TIMEOUT).await;
    let run = |format: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
            .env_clear()
            .env("KUBECONFIG", support::kubeconfig_path())
            .args(["status", "st", "-n", &namespace, "-o", format])
            .output()
            .expect("status runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("JSON");
    assert_eq!(json["token1"]["serial"], 1);
    assert_eq!(json["rotation"]["id"], "r1");
    let consumers = json["consumers"].as_array().expect("consumers");
    let state = |name: &str| {
        consumers
            .iter()
            .find(|consumer| consumer["name"] == name)
            .map(|consumer| (consumer["state"].clone(), consumer["reason"].clone()))
    };
    assert_eq!(
        state("stuck"),
        Some((json!("Blocked"), json!("Paused"))),
        "{json}"
    );
    assert!(
        matches!(state("moving").map(|(state, _)| state), Some(state) if state == "Verified" || state == "Progressing"),
        "{json}"
    );
    let table = run("table");
    assert!(table.contains("Token 1  serial 1"), "{table}");
    assert!(table.contains("Rotation r1  phase"), "{table}");
    let stuck = table
        .lines()
        .find(|line| line.starts_with("Deployment") && line.contains("stuck"))
        .expect("stuck row");
    assert!(
        stuck.contains("Blocked") && stuck.contains("Paused"),
        "{table}"
    );
}

/// Runs promtool (Prometheus' own, `tests/go-helper.sh promtool`) with `args`; returns its output.
fn promtool(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let binary = match std::env::var_os("STO_E2E_PROMTOOL") {
        Some(path) if std::path::Path::new(&path).is_file() => path,
        _ => panic!(
            "STO_E2E_PROMTOOL must name promtool (make test builds it with tests/go-helper.sh promtool)"
        ),
    };
    let output = std::process::Command::new(binary)
        .args(args)
        .output()
        .expect("promtool runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The chart's PrometheusRule, rendered with the default thresholds, passes `promtool check
/// rules`, and `promtool test rules` shows each alert firing on sample series when, and only
/// when, it should (tests/promtool/alerts.test.yaml). Every query of the Grafana dashboard is
/// valid PromQL (checked as recording rules).
#[test]
fn prometheus_rules_and_dashboard_pass_promtool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rule = support::render_chart(
        "templates/prometheusrule.yaml",
        &["metrics.prometheusRule.enabled=true"],
    );
    assert_eq!(rule.len(), 1);
    assert_eq!(rule[0]["kind"], "PrometheusRule");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_norway::to_string(&rule[0]["spec"]).expect("YAML"),
    )
    .expect("written");
    let (ok, output) = promtool(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    assert!(ok, "{output}");
    assert!(output.contains("SUCCESS: 11 rules found"), "{output}");
    // Every alert is exercised by the promtool tests.
    let tested = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promtool/alerts.test.yaml"),
    )
    .expect("alert tests");
    for alert in rule[0]["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|rule| rule["alert"].as_str())
    {
        assert!(
            tested.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
    }
    let tests = dir.path().join("alerts.test.yaml");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promtool/alerts.test.yaml"),
        &tests,
    )
    .expect("copied");
    let (ok, output) = promtool(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    assert!(ok, "{output}");

    let dashboard = support::render_chart(
        "templates/grafana-dashboard.yaml",
        &["metrics.grafanaDashboard.enabled=true"],
    );
    assert_eq!(dashboard[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value = serde_json::from_str(
        dashboard[0]["data"]["streaming-token-operator.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard is JSON");
    let queries: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("expr")
                .replace("$namespace", ".*")
                .replace("$name", ".*")
        })
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    let records: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(index, expr)| json!({"record": format!("dashboard:query_{index}"), "expr": expr}))
        .collect();
    let checked = dir.path().join("dashboard.yaml");
    std::fs::write(
        &checked,
        serde_norway::to_string(&json!({"groups": [{"name": "dashboard", "rules": records}]}))
            .expect("YAML"),
    )
    .expect("written");
    let (ok, output) = promtool(&["check".as_ref(), "rules".as_ref(), checked.as_os_str()]);
    assert!(ok, "a dashboard query is not valid PromQL: {output}");
}

/// Runs the CLI with `kubeconfig`; returns (success, stdout, stderr).
fn cli(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// `rotate --dry-run` prints what a rotation would do to each consumer (the variables it would
/// repoint, what blocks) and changes nothing; `dotenv` gives Token 2 as a dotenv line only to
/// someone RBAC lets read the mirror Secret, and records who read it (never the value).
#[tokio::test(flavor = "multi_thread")]
async fn dry_run_and_dotenv_for_the_people_who_use_them() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("eco-cli").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("reader", &namespace, Some("dev"), 1),
    )
    .await;
    let mut literal = fixtures::deployment("literal", &namespace, Some("dev"), 1);
    let container = &mut literal
        .spec
        .template
        .spec
        .as_mut()
        .expect("pod spec")
        .containers[0];
    container.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "STREAMING_TOKEN".into(),
        value: Some("pasted-by-hand".into()),
        ..Default::default()
    }]);
    support::apply(&deployments, &literal).await;
    support::apply(&tokens, &fixtures::token("dev", &namespace).build()).await;
    wait_condition(&tokens, "dev", "Ready", "True", "TokensReady", TIMEOUT).await;
    // A bare pod that reads Token 1: no rotation can repoint it, and the dry run says so.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &pods,
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "by-hand", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "registry.example/c:1", "env": [
                {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "dev", "key": "token1"}}}
            ]}]}
        }))
        .expect("pod"),
    )
    .await;
    // Read once the controller-manager has settled it (its status updates change the version).
    support::wait_deployments_available(&admin, &namespace, &["reader"]).await;
    let before = deployments.get("reader").await.expect("reader");

    let kubeconfig = support::kubeconfig_path();
    let (ok, stdout, stderr) = cli(
        &kubeconfig,
        &["rotate", "dev", "-n", &namespace, "--dry-run"],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("rotation r1 (ZeroDowntime)"), "{stdout}");
    assert!(
        stdout.contains("Deployment/reader: container app: STREAMING_TOKEN -> dev/token2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Deployment/literal: BLOCKED LiteralEnvValue"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Pod/by-hand: BLOCKED UnmanagedPodReadsToken"),
        "the dry run shows pod-level blockers: {stdout}"
    );
    // kubectl's words: --kubeconfig and --context instead of the environment; --as asks as
    // someone else (impersonation), whom RBAC then refuses.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .args(["--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--context",
            "local",
            "status",
            "dev",
            "-n",
            &namespace,
            "-o",
            "json",
        ])
        .output()
        .expect("the CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(shown["name"], "dev");
    let (ok, _, stderr) = cli(
        &kubeconfig,
        &[
            "status",
            "dev",
            "-n",
            &namespace,
            "--as",
            "nobody@example.com",
        ],
    );
    assert!(!ok, "status as an unknown user succeeded");
    assert!(
        stderr.contains("403") || stderr.contains("forbidden"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(
        &kubeconfig,
        &[
            "--context",
            "no-such-context",
            "status",
            "dev",
            "-n",
            &namespace,
        ],
    );
    assert!(!ok && stderr.contains("no-such-context"), "{stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let token = tokens.get("dev").await.expect("dev");
    assert!(
        token
            .status
            .as_ref()
            .is_some_and(|status| status.rotation.is_none()),
        "the dry run started a rotation"
    );
    assert!(
        !token
            .annotations()
            .contains_key(streaming_token_operator::api::ROTATE_ANNOTATION)
    );
    assert_eq!(
        deployments
            .get("reader")
            .await
            .expect("reader")
            .metadata
            .resource_version,
        before.metadata.resource_version,
        "the dry run changed a consumer"
    );

    // dotenv, as an admin of the namespace (may read Secrets): Token 2, and an Event.
    let token2 = support::secret_value(&admin, &namespace, "dev", "token2")
        .await
        .expect("token2");
    let (ok, stdout, stderr) = cli(
        &kubeconfig,
        &[
            "dotenv",
            "dev",
            "-n",
            &namespace,
            "--variable",
            "Quix__Sdk__Token",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("Quix__Sdk__Token={token2}\n"));
    let (_, _, note) = support::wait_event(&admin, &namespace, "dev", "TokenRead", TIMEOUT).await;
    assert!(note.contains("read Token 2 (serial 2)"), "{note}");
    assert!(!note.contains(&token2), "the Event holds the value");

    // A viewer may see the StreamingToken (the chart's roles, aggregated into `view`) but not
    // the Secret: no value, a clear refusal.
    for document in support::render_chart("templates/user-roles.yaml", &[]) {
        let role: k8s_openapi::api::rbac::v1::ClusterRole =
            serde_json::from_value(document).expect("ClusterRole");
        support::apply(&Api::all(admin.clone()), &role).await;
    }
    let viewer = support::service_account(&admin, &namespace, "viewer", Vec::new()).await;
    support::bind(
        &admin,
        &namespace,
        "viewer",
        "ClusterRole",
        "view",
        &namespace,
    )
    .await;
    let refused = wait_for("the viewer's RBAC to apply", TIMEOUT, || async {
        let (ok, stdout, stderr) = cli(&viewer.kubeconfig, &["dotenv", "dev", "-n", &namespace]);
        if !ok && stderr.contains("may not read Secret") {
            Ok((stdout, stderr))
        } else {
            Err(format!("{ok} {stderr}"))
        }
    })
    .await;
    assert!(refused.0.is_empty(), "the viewer got output: {}", refused.0);
    assert!(!refused.1.contains(&token2));
}
