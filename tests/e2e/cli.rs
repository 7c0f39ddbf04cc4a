//! The kubectl-shaped CLI against the real control plane: bulk `rotate` (`-l`, `--all`, `-A`,
//! `--cluster`, `--wait`, `--dry-run`, an empty selection, a partial failure), `version` of a
//! running operator (also as `kubectl streamingtoken`, through kubectl's plugin lookup),
//! `check` passing, failing for a caller without rights, and failing on a cluster without the
//! CRDs (a second API server of its own: the shared one keeps its CRDs for every other test).

use crate::support::apiserver::BareApiServer;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use streaming_token_operator::api::{ClusterStreamingToken, ROTATE_ANNOTATION, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(120);
const VERSION: &str = env!("CARGO_PKG_VERSION");
const ENV_LABEL: &str = "e2e.streamingtoken.io/env";
const FLEET_LABEL: &str = "e2e.streamingtoken.io/fleet";
const RUN_LABEL: &str = "e2e.streamingtoken.io/run";

/// What one CLI run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "exit ok: {}\nstdout:\n{}\nstderr:\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Runs the CLI with `kubeconfig` (as `$KUBECONFIG`) and nothing else from the environment.
fn cli(kubeconfig: &Path, args: &[&str]) -> Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("the CLI runs");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// Runs the CLI as the admin of the test cluster, on a blocking thread (a `--wait` takes a
/// while, and the test's runtime goes on).
async fn admin_cli(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&support::kubeconfig_path(), &args)
    })
    .await
    .expect("the CLI thread")
}

/// The last completed rotation of StreamingToken `name`, and whether it carries a request.
async fn rotated(admin: &Client, namespace: &str, name: &str) -> (Option<String>, bool) {
    let token = Api::<StreamingToken>::namespaced(admin.clone(), namespace)
        .get(name)
        .await
        .expect("StreamingToken");
    let requested = token.annotations().contains_key(ROTATE_ANNOTATION);
    let last = token
        .status
        .and_then(|status| status.last_rotation)
        .map(|last| last.id);
    (last, requested)
}

/// A StreamingToken labelled `env=value`.
async fn labelled_token(admin: &Client, namespace: &str, name: &str, env: &str) {
    let mut token = fixtures::token(name, namespace).build();
    token.metadata.labels = Some([(ENV_LABEL.to_string(), env.to_string())].into());
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), namespace);
    support::apply(&tokens, &token).await;
}

/// `-l` in a namespace, `-A -l` across two, `--all`, an empty selection refused, a partial
/// failure named (a missing object; a rotation that cannot complete in time), and `--dry-run`
/// for each selected object; the objects not selected are never touched.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_rotate_by_selector_all_and_across_namespaces() {
    let admin = support::admin_client().await;
    let home = support::namespace(&admin, "cli-bulk").await;
    let other = support::namespace(&admin, "cli-bulk-b").await;
    // One operator serving both namespaces: its ServiceAccount (in home) bound in each.
    support::bind(
        &admin,
        &other,
        "streaming-token-operator",
        "ClusterRole",
        "streaming-token-operator-e2e",
        &home,
    )
    .await;
    let identity = support::operator_identity(&admin, &home).await;
    let _operator = Operator::start_as(
        identity,
        &home,
        OperatorOptions {
            extra_args: vec![format!("--namespace={other}")],
            ..OperatorOptions::default()
        },
    )
    .await;
    // The selected label's value is this test's own, so `-A` selects nothing of other tests.
    let env = home.as_str();
    for (namespace, name, value) in [
        (&home, "a1", env),
        (&home, "a2", env),
        (&home, "a3", "elsewhere"),
        (&other, "b1", env),
    ] {
        labelled_token(&admin, namespace, name, value).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &home);
    support::apply(
        &deployments,
        &fixtures::deployment("app", &home, Some("a1"), 1),
    )
    .await;
    for (namespace, name) in [(&home, "a1"), (&home, "a2"), (&home, "a3"), (&other, "b1")] {
        let tokens = Api::<StreamingToken>::namespaced(admin.clone(), namespace);
        wait_condition(&tokens, name, "Ready", "True", "TokensReady", TIMEOUT).await;
    }
    support::wait_deployments_available(&admin, &home, &["app"]).await;
    let selector = format!("{ENV_LABEL}={env}");

    // -l in one namespace: a1 (with a consumer that rolls) and a2; a3 and b1 untouched.
    let run = admin_cli(&[
        "rotate",
        "-n",
        &home,
        "-l",
        &selector,
        "--wait",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(run.ok, "{run}");
    for line in [
        "streamingtoken/a1: rotation requested",
        "streamingtoken/a2: rotation requested",
        "streamingtoken/a1: rotation r1 completed",
        "streamingtoken/a2: rotation r1 completed",
        "all 2 rotations completed",
    ] {
        assert!(run.stdout.contains(line), "{line}: {run}");
    }
    assert_eq!(rotated(&admin, &home, "a1").await.0.as_deref(), Some("r1"));
    assert_eq!(rotated(&admin, &home, "a2").await.0.as_deref(), Some("r1"));
    assert_eq!(rotated(&admin, &home, "a3").await, (None, false));
    assert_eq!(rotated(&admin, &other, "b1").await, (None, false));

    // -A -l: the same label in both namespaces; lines name the namespace.
    let run = admin_cli(&["rotate", "-A", "-l", &selector, "--wait", "--timeout", "3m"]).await;
    assert!(run.ok, "{run}");
    for line in [
        format!("streamingtoken/{home}/a1: rotation r2 completed"),
        format!("streamingtoken/{home}/a2: rotation r2 completed"),
        format!("streamingtoken/{other}/b1: rotation r1 completed"),
        "all 3 rotations completed".to_string(),
    ] {
        assert!(run.stdout.contains(&line), "{line}: {run}");
    }
    assert_eq!(rotated(&admin, &home, "a3").await, (None, false));

    // --all: every StreamingToken of the namespace, and none elsewhere.
    let run = admin_cli(&[
        "rotate",
        "-n",
        &home,
        "--all",
        "--wait",
        "--timeout",
        "3m",
        "--request",
        "every-1",
    ])
    .await;
    assert!(run.ok, "{run}");
    assert!(run.stdout.contains("all 3 rotations completed"), "{run}");
    // A request value asks for one rotation: the same one again is refused, not waited on.
    let run = admin_cli(&[
        "rotate",
        "-n",
        &home,
        "a3",
        "--request",
        "every-1",
        "--wait",
    ])
    .await;
    assert!(
        !run.ok
            && run
                .stderr
                .contains("streamingtoken.io/rotate=every-1 was already taken"),
        "{run}"
    );
    assert_eq!(rotated(&admin, &home, "a3").await.0.as_deref(), Some("r1"));
    assert_eq!(rotated(&admin, &home, "a1").await.0.as_deref(), Some("r3"));
    assert_eq!(rotated(&admin, &other, "b1").await.0.as_deref(), Some("r1"));

    // An empty selection is refused, in a namespace and across them.
    let run = admin_cli(&["rotate", "-n", &home, "-l", &format!("{ENV_LABEL}=nobody")]).await;
    assert!(!run.ok, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "no streamingtokens match -l {ENV_LABEL}=nobody in namespace {home}: nothing to rotate"
        )),
        "{run}"
    );
    let nobody = format!("{ENV_LABEL}=nobody-{home}");
    let run = admin_cli(&["rotate", "-A", "-l", &nobody, "--wait"]).await;
    assert!(!run.ok && run.stderr.contains("in any namespace"), "{run}");

    // --dry-run for each selected object, and nothing written.
    let run = admin_cli(&["rotate", "-n", &home, "-l", &selector, "--dry-run"]).await;
    assert!(run.ok, "{run}");
    for line in [
        "--- streamingtoken/a1",
        "--- streamingtoken/a2",
        "Deployment/app: container app: STREAMING_TOKEN -> a1/token2",
    ] {
        assert!(run.stdout.contains(line), "{line}: {run}");
    }
    assert_eq!(rotated(&admin, &home, "a1").await.0.as_deref(), Some("r3"));

    // A partial failure: the object that exists rotates; the missing one is named, and the
    // command fails.
    let run = admin_cli(&[
        "rotate",
        "-n",
        &home,
        "a2",
        "missing",
        "--wait",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(!run.ok, "{run}");
    assert!(
        run.stdout
            .contains("streamingtoken/a2: rotation r4 completed"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("streamingtoken/missing: rotation not requested: reading it:")
            && run.stderr.contains("1 of 2 failed: streamingtoken/missing"),
        "{run}"
    );

    // --wait fails naming each rotation that does not complete: a1's consumer is paused.
    deployments
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    let run = admin_cli(&[
        "rotate",
        "-n",
        &home,
        "-l",
        &selector,
        "--wait",
        "--timeout",
        "25s",
    ])
    .await;
    assert!(!run.ok, "{run}");
    assert!(
        run.stdout
            .contains("streamingtoken/a2: rotation r5 completed"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("streamingtoken/a1: rotation did not complete within 25s (last phase")
            && run.stderr.contains("1 of 2 failed: streamingtoken/a1"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("streamingtoken/a1:   blocked: Deployment/app (Paused)"),
        "the wait shows what blocks: {run}"
    );
}

/// `--cluster -l`: ClusterStreamingTokens selected by label, each rotated and followed.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_rotate_of_cluster_streaming_tokens_by_label() {
    let admin = support::admin_client().await;
    let home = support::namespace(&admin, "cli-fleet").await;
    let member = support::namespace(&admin, "cli-fleet-member").await;
    Api::<Namespace>::all(admin.clone())
        .patch(
            &member,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {FLEET_LABEL: home}}})),
        )
        .await
        .expect("member labelled");
    let identity = support::cluster_operator_identity(&admin, &home).await;
    let _operator = Operator::start_as(
        identity,
        &home,
        OperatorOptions {
            all_namespaces: true,
            extra_args: vec![
                "--kinds=ClusterStreamingToken".into(),
                format!("--cluster-token-selector={RUN_LABEL}={home}"),
            ],
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<ClusterStreamingToken> = Api::all(admin.clone());
    let names = [format!("{home}-x"), format!("{home}-y")];
    for name in &names {
        let token = fixtures::cluster_token(name, (FLEET_LABEL, &home), (RUN_LABEL, &home));
        tokens
            .create(&PostParams::default(), &token)
            .await
            .expect("ClusterStreamingToken created");
    }
    for name in &names {
        wait_for("the ClusterStreamingToken's pair", TIMEOUT, || async {
            let token = tokens.get(name).await.map_err(|error| error.to_string())?;
            match token.status.and_then(|status| status.token1) {
                Some(_) => Ok(()),
                None => Err("no Token 1 yet".to_string()),
            }
        })
        .await;
    }
    let selector = format!("{RUN_LABEL}={home}");
    let run = admin_cli(&[
        "rotate",
        "--cluster",
        "-l",
        &selector,
        "--wait",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(run.ok, "{run}");
    for name in &names {
        let line = format!("clusterstreamingtoken/{name}: rotation r1 completed");
        assert!(run.stdout.contains(&line), "{line}: {run}");
    }
    assert!(run.stdout.contains("all 2 rotations completed"), "{run}");
    for name in &names {
        let _ = tokens.delete(name, &Default::default()).await;
    }
}

/// The operator's Lease in `namespace`.
async fn lease(admin: &Client, namespace: &str) -> Lease {
    Api::<Lease>::namespaced(admin.clone(), namespace)
        .get("streaming-token-operator")
        .await
        .expect("the operator's Lease")
}

/// `version` names the running operator's version as its leader published it on its Lease,
/// also run by kubectl as the plugin `kubectl streamingtoken`; with no leader it says so and
/// succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn version_shows_the_running_operators_also_as_a_kubectl_plugin() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "cli-version").await;
    let mut operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            leader_elect: true,
            ..OperatorOptions::default()
        },
    )
    .await;
    let kubeconfig = support::kubeconfig_path();
    let want = format!(
        "Operator  {VERSION} (leader operator, Lease {namespace}/streaming-token-operator renewed"
    );
    let shown = wait_for("the leader to publish its version", TIMEOUT, || async {
        let run = cli(
            &kubeconfig,
            &["version", "--operator-namespace", &namespace],
        );
        if run.ok && run.stdout.contains(&want) {
            Ok(run)
        } else {
            Err(run.to_string())
        }
    })
    .await;
    assert!(
        shown.stdout.starts_with(&format!("Client    {VERSION}\n")),
        "{shown}"
    );
    let published = lease(&admin, &namespace).await;
    assert_eq!(
        published
            .labels()
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("streaming-token-operator")
    );
    assert_eq!(
        published
            .annotations()
            .get("streamingtoken.io/operator-version")
            .map(String::as_str),
        Some(VERSION)
    );

    // kubectl finds the binary as the plugin `kubectl-streamingtoken` on the PATH.
    let plugins = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_streaming-token-operator"),
        plugins.path().join("kubectl-streamingtoken"),
    )
    .expect("plugin linked");
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new(support::bin_dir().join("kubectl"))
            .env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("PATH", plugins.path())
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let listed = kubectl(&["plugin", "list", "--name-only"]);
    assert!(listed.contains("kubectl-streamingtoken"), "{listed}");
    let help = kubectl(&["streamingtoken", "--help"]);
    assert!(
        help.contains("Usage: kubectl streamingtoken [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let yaml = kubectl(&[
        "streamingtoken",
        "version",
        "--operator-namespace",
        &namespace,
        "-o",
        "yaml",
    ]);
    let document: Value = serde_norway::from_str(&yaml).expect("YAML");
    assert_eq!(document["clientVersion"], VERSION, "{yaml}");
    assert_eq!(document["operators"][0]["version"], VERSION, "{yaml}");
    assert_eq!(document["operators"][0]["holder"], "operator", "{yaml}");
    assert_eq!(document["operators"][0]["leading"], true, "{yaml}");

    // A clean shutdown releases the Lease: no leader, said as such, and not an error.
    assert!(operator.terminate().await.success());
    let run = cli(
        &kubeconfig,
        &["version", "--operator-namespace", &namespace],
    );
    assert!(run.ok, "{run}");
    assert!(
        run.stdout.contains(&format!(
            "Operator  unknown (no leader: nobody holds Lease {namespace}/streaming-token-operator)"
        )),
        "{run}"
    );
}

/// `check` passes for an admin with a leading operator whose pod is Ready (table and JSON),
/// and fails for a caller without any rights (`--as` a user no RBAC names), saying which checks
/// and why.
#[tokio::test(flavor = "multi_thread")]
async fn check_passes_for_an_admin_and_fails_for_a_caller_without_rights() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "cli-check").await;
    // KWOK runs no image: the operator process stands in for a Ready pod of a Deployment, under
    // that pod's name (as the chart's pods are named in the Lease).
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("sto", &namespace, None, 1),
    )
    .await;
    support::wait_deployments_available(&admin, &namespace, &["sto"]).await;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &namespace)
        .list(&kube::api::ListParams::default().labels("app=sto"))
        .await
        .expect("pods");
    let pod = pods.items[0].name_any();
    let _operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            leader_elect: true,
            instance: pod.clone(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let kubeconfig = support::kubeconfig_path();
    let args = [
        "check",
        "-n",
        &namespace,
        "--operator-namespace",
        &namespace,
    ];
    let passed = wait_for("check to pass", TIMEOUT, || async {
        let run = cli(&kubeconfig, &args);
        if run.ok {
            Ok(run)
        } else {
            Err(run.to_string())
        }
    })
    .await;
    let line = |run: &Run, name: &str| {
        run.stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name} line: {run}"))
    };
    for (name, starts) in [
        (
            "crd streamingtokens.streamingtoken.io",
            "ok serves v1alpha1 (stored), with the schema this CLI",
        ),
        (
            "crd clusterstreamingtokens.streamingtoken.io",
            "ok serves v1alpha1 (stored)",
        ),
        ("operator", &format!("ok {VERSION} (leader {pod}")),
        (
            "rotate rights",
            "ok you may get, patch, list, watch streamingtokens",
        ),
    ] {
        let found = line(&passed, name);
        assert!(
            found.starts_with(&format!("{name} {starts}")),
            "{found}\n{passed}"
        );
    }
    assert!(
        line(&passed, "operator").ends_with("; its pod is Ready"),
        "{passed}"
    );
    let json_args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
    let run = cli(&kubeconfig, &json_args);
    let document: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(document["ok"], true, "{run}");
    assert_eq!(
        document["checks"].as_array().map(Vec::len),
        Some(4),
        "{run}"
    );

    // Someone no RBAC rule names: refused everything but discovery and self-reviews.
    let as_nobody: Vec<&str> = ["--as", "nobody@example.com"]
        .into_iter()
        .chain(args)
        .chain(["-o", "yaml"])
        .collect();
    let run = cli(&kubeconfig, &as_nobody);
    assert!(!run.ok, "{run}");
    let document: Value = serde_norway::from_str(&run.stdout).expect("YAML");
    assert_eq!(document["ok"], false, "{run}");
    let result = |name: &str| {
        document["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["name"] == name))
            .map(|check| (check["result"].clone(), check["detail"].clone()))
            .unwrap_or_else(|| panic!("no {name} check: {run}"))
    };
    let (verdict, detail) = result("rotate rights");
    assert_eq!(verdict, "fail", "{run}");
    assert!(
        detail
            .as_str()
            .is_some_and(|detail| detail.starts_with("you may not rotate")),
        "{run}"
    );
    let (verdict, detail) = result("crd streamingtokens.streamingtoken.io");
    assert_eq!(verdict, "warn", "discovery says it is served: {run}");
    assert!(
        detail
            .as_str()
            .is_some_and(|detail| detail.contains("you may not read CustomResourceDefinitions")),
        "{run}"
    );
    let (verdict, detail) = result("operator");
    assert_eq!(verdict, "fail", "{run}");
    assert!(
        detail
            .as_str()
            .is_some_and(|detail| detail.contains("you may not read Lease")),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("error: 2 of 4 checks failed: operator, rotate rights"),
        "{run}"
    );
}

/// `check` on a cluster without the CRDs (a second API server: deleting them from the shared
/// one would break every other test) fails naming them; with a CRD of another schema it fails
/// naming the first difference; with the CRDs this binary embeds, those checks pass.
#[tokio::test(flavor = "multi_thread")]
async fn check_fails_on_a_cluster_without_the_crds_or_with_other_ones() {
    let bare = BareApiServer::start().await;
    let run = cli(&bare.kubeconfig, &["check"]);
    assert!(!run.ok, "{run}");
    for name in [
        "crd streamingtokens.streamingtoken.io",
        "crd clusterstreamingtokens.streamingtoken.io",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {run}"));
        assert!(
            line.split_whitespace().collect::<Vec<_>>().join(" ")
                == format!(
                    "{name} FAIL not installed: install the chart, or `streaming-token-operator crd | kubectl apply --server-side -f -`"
                ),
            "{line}"
        );
    }
    assert!(
        run.stderr.contains("3 of 4 checks failed: crd streamingtokens.streamingtoken.io, crd clusterstreamingtokens.streamingtoken.io, operator"),
        "{run}"
    );
    // Nothing to rotate where the API serves no StreamingTokens: a clear failure.
    let run = cli(&bare.kubeconfig, &["rotate", "--all", "-n", "default"]);
    assert!(
        !run.ok && run.stderr.contains("listing streamingtokens"),
        "{run}"
    );

    // An older StreamingToken CRD (one without status.namespaceCount, as release 0.1.0's).
    let client = support::client_from_kubeconfig(&bare.kubeconfig).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut older = StreamingToken::crd();
    older.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|schema| schema.open_api_v3_schema.as_mut())
        .and_then(|schema| schema.properties.as_mut())
        .and_then(|properties| properties.get_mut("status"))
        .and_then(|status| status.properties.as_mut())
        .expect("status properties")
        .remove("namespaceCount");
    crds.create(&PostParams::default(), &older)
        .await
        .expect("older CRD created");
    crds.create(&PostParams::default(), &ClusterStreamingToken::crd())
        .await
        .expect("CRD created");
    let differs = wait_for("the older CRD to be established", TIMEOUT, || async {
        let run = cli(&bare.kubeconfig, &["check"]);
        if run.stdout.contains("not established") {
            Err(run.to_string())
        } else {
            Ok(run)
        }
    })
    .await;
    assert!(
        differs.stdout.contains(
            &format!("schema is not the one this CLI ({VERSION}) embeds (first difference at .openAPIV3Schema.properties.status.properties.namespaceCount (missing in the cluster))")
        ) && differs.stdout.contains("crd clusterstreamingtokens.streamingtoken.io  ok"),
        "{differs}"
    );
    assert!(!differs.ok, "{differs}");

    // The CRDs this binary embeds: both CRD checks pass (no operator runs here: that one fails).
    crds.patch(
        "streamingtokens.streamingtoken.io",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(StreamingToken::crd()),
    )
    .await
    .expect("CRD upgraded");
    let fixed = wait_for("the upgraded CRD to pass", TIMEOUT, || async {
        let run = cli(&bare.kubeconfig, &["check", "-o", "json"]);
        let document: Value =
            serde_json::from_str(&run.stdout).map_err(|error| error.to_string())?;
        let failed: Vec<Value> = document["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|check| check["result"] == "fail")
            .map(|check| check["name"].clone())
            .collect();
        if failed == [json!("operator")] {
            Ok(run)
        } else {
            Err(run.to_string())
        }
    })
    .await;
    assert!(!fixed.ok, "{fixed}");
}
