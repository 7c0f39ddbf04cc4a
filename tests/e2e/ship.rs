//! Shipping: helm install, the chart's RBAC (enough, and no wider), aggregated user roles and the
//! rotate command, leader election and failover, metrics and health.

use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(120);

fn rotate_command(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"))
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .arg("rotate")
        .args(args)
        .output()
        .expect("rotate runs")
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} must be forbidden, got {other:?}"),
    }
}

/// `helm install`; the operator, authenticated with a token of the chart's ServiceAccount,
/// runs a StreamingToken's whole lifecycle (the RBAC suffices) and is denied anything else (it
/// is not wider). Viewers read StreamingTokens but not Secrets; only admins rotate.
#[tokio::test(flavor = "multi_thread")]
async fn helm_installed_rbac_suffices_and_is_least_privilege() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "ship-helm").await;
    let release = format!("sto{}", std::process::id());
    let set_namespaces = format!("watchNamespaces={{{namespace}}}");
    let output = support::helm(&[
        "install",
        &release,
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/streaming-token-operator"
        ),
        "--namespace",
        &namespace,
        "--set",
        &set_namespaces,
        // The optional NetworkPolicy too: the API server validates it (KWOK enforces none).
        "--set",
        "networkPolicy.enabled=true",
        // The tests share the cluster's CRDs (installed by each test); the chart's own CRD
        // install and upgrade is tested on a control plane of its own (tests/chart-upgrade.sh).
        "--set",
        "crds.enabled=false",
        "--wait",
        "--timeout",
        "90s",
    ]);
    assert!(
        output.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    // helm's --wait looks at the pods; the Deployment's own status can trail it briefly.
    let installed = format!("{release}-streaming-token-operator");
    wait_for(
        "the chart's two operator replicas to be available",
        TIMEOUT,
        || async {
            let deployment = deployments
                .get(&installed)
                .await
                .map_err(|error| error.to_string())?;
            let available = deployment
                .status
                .and_then(|status| status.available_replicas);
            if available == Some(2) {
                Ok(())
            } else {
                Err(format!("{available:?} available"))
            }
        },
    )
    .await;

    // The operator process runs as the chart's ServiceAccount.
    let account = format!("{release}-streaming-token-operator");
    let identity = support::identity(&admin, &namespace, &account).await;
    support::wait_rbac_effective(&identity).await;
    let client = identity.client().await;
    let operator = Operator::start_as(
        identity,
        &namespace,
        OperatorOptions {
            leader_elect: true,
            extra_args: vec![
                format!("--lease-name=streaming-token-operator"),
                format!("--lease-namespace={namespace}"),
            ],
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("consumer", &namespace, Some("life"), 2),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("life", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "life", "Ready", "True", "TokensReady", TIMEOUT).await;
    tokens
        .patch(
            "life",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"trigger": "t1"}}})),
        )
        .await
        .expect("trigger");
    support::wait_rotation_done(&tokens, "life", "r1", TIMEOUT).await;
    tokens
        .delete("life", &DeleteParams::default())
        .await
        .expect("deleted");
    let logs = operator.logs();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|line| {
            line.contains("forbidden") || line.contains("Forbidden") || line.contains("code: 403")
        })
        .collect();
    assert!(
        denied.is_empty(),
        "forbidden requests during the lifecycle: {denied:#?}"
    );

    // Not wider: no delete of workloads or Secrets, nothing in other namespaces, no ConfigMaps.
    let other = support::namespace(&admin, "ship-other").await;
    forbidden(
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .delete("consumer", &DeleteParams::default())
            .await,
        "deleting a Deployment",
    );
    forbidden(
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .delete("life", &DeleteParams::default())
            .await,
        "deleting a Secret",
    );
    forbidden(
        Api::<Secret>::namespaced(client.clone(), &other)
            .list(&ListParams::default())
            .await,
        "reading Secrets of another namespace",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await,
        "listing ConfigMaps",
    );
    forbidden(
        Api::<StreamingToken>::namespaced(client.clone(), &namespace)
            .delete("x", &DeleteParams::default())
            .await,
        "deleting a StreamingToken",
    );

    // People: the chart's ClusterRoles are aggregated into view and admin.
    support::apply(
        &tokens,
        &fixtures::token("people", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "people", "Ready", "True", "TokensReady", TIMEOUT).await;
    let viewer = support::service_account(&admin, &namespace, "viewer", vec![]).await;
    support::bind(
        &admin,
        &namespace,
        "viewer",
        "ClusterRole",
        "view",
        &namespace,
    )
    .await;
    let editor = support::service_account(&admin, &namespace, "editor", vec![]).await;
    support::bind(
        &admin,
        &namespace,
        "editor",
        "ClusterRole",
        "edit",
        &namespace,
    )
    .await;
    let administrator = support::service_account(&admin, &namespace, "administrator", vec![]).await;
    support::bind(
        &admin,
        &namespace,
        "administrator",
        "ClusterRole",
        "admin",
        &namespace,
    )
    .await;
    let viewer_client = viewer.client().await;
    wait_for(
        "the view role to include StreamingTokens",
        TIMEOUT,
        || async {
            Api::<StreamingToken>::namespaced(viewer_client.clone(), &namespace)
                .get("people")
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        },
    )
    .await;
    forbidden(
        Api::<Secret>::namespaced(viewer_client.clone(), &namespace)
            .get("people")
            .await,
        "a viewer reading the Secret",
    );
    for (who, identity) in [("viewer", &viewer), ("editor", &editor)] {
        let output = rotate_command(&identity.kubeconfig, &["people", "-n", &namespace]);
        assert!(!output.status.success(), "{who} must not rotate");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("403") || stderr.contains("forbidden"),
            "{who}: {stderr}"
        );
    }
    let output = rotate_command(
        &administrator.kubeconfig,
        &["people", "-n", &namespace, "--wait", "--timeout", "2m"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "an admin rotates: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rotation r1 completed"), "{stdout}");
    drop(operator);
}

/// Two replicas: only the leader writes; SIGKILL of the leader hands over after the lease
/// lapses; SIGTERM releases it at once.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "ship-failover").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let identity_a = support::operator_identity(&admin, &namespace).await;
    let options = |instance: &str| OperatorOptions {
        leader_elect: true,
        instance: instance.into(),
        ..OperatorOptions::default()
    };
    let mut first = Operator::start_as(identity_a, &namespace, options("replica-a")).await;
    let holder = || support::lease_holder(&admin, &namespace);
    wait_for("replica-a to lead", TIMEOUT, || async {
        let holder = holder().await;
        if holder == "replica-a" {
            Ok(())
        } else {
            Err(holder)
        }
    })
    .await;
    let identity_b = support::operator_identity(&admin, &namespace).await;
    let mut second = Operator::start_as(identity_b, &namespace, options("replica-b")).await;

    support::apply(&tokens, &fixtures::token("ha", &namespace).build()).await;
    wait_condition(&tokens, "ha", "Ready", "True", "TokensReady", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        first.logs().contains("mirror Secret written"),
        "the leader wrote"
    );
    assert!(
        !second.logs().contains("mirror Secret written"),
        "the standby wrote nothing"
    );
    assert!(
        !second.logs().contains("status written"),
        "the standby wrote nothing"
    );
    assert!(support::metric_sum(&second.metrics().await, "streamingtoken_leader") == 0.0);
    assert!(support::metric_sum(&first.metrics().await, "streamingtoken_leader") == 1.0);

    // Crash the leader: the standby takes over once the lease lapses.
    let killed = Instant::now();
    first.kill().await;
    support::apply(&tokens, &fixtures::token("after-crash", &namespace).build()).await;
    wait_condition(
        &tokens,
        "after-crash",
        "Ready",
        "True",
        "TokensReady",
        Duration::from_secs(60),
    )
    .await;
    let failover = killed.elapsed();
    eprintln!(
        "[measure] SIGKILL of the leader -> standby reconciled a new StreamingToken: {failover:?}"
    );
    assert_eq!(holder().await, "replica-b");
    assert!(
        failover < Duration::from_secs(40),
        "failover took {failover:?}"
    );

    // A graceful stop releases the lease: a new replica leads at once.
    let identity_c = support::operator_identity(&admin, &namespace).await;
    let third = Operator::start_as(identity_c, &namespace, options("replica-c")).await;
    let stopped = Instant::now();
    let exit = second.terminate().await;
    assert!(
        exit.success(),
        "SIGTERM exits cleanly: {exit:?}\n{}",
        support::tail(&second.logs(), 10)
    );
    assert!(
        second.logs().contains("leader lease released"),
        "{}",
        support::tail(&second.logs(), 10)
    );
    wait_for("replica-c to lead", TIMEOUT, || async {
        let holder = holder().await;
        if holder == "replica-c" {
            Ok(())
        } else {
            Err(holder)
        }
    })
    .await;
    eprintln!(
        "[measure] SIGTERM of the leader -> new leader: {:?}",
        stopped.elapsed()
    );
    drop(third);
}

/// /metrics has the promised metrics with real values; /healthz and /readyz answer.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_endpoints_report_real_values() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "ship-metrics").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("api", &namespace, Some("metered"), 1),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("metered", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("broken", &namespace)
            .secret_ref("missing")
            .build(),
    )
    .await;
    wait_condition(&tokens, "metered", "Ready", "True", "TokensReady", TIMEOUT).await;
    tokens
        .patch(
            "metered",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"trigger": "t1"}}})),
        )
        .await
        .expect("trigger");
    support::wait_rotation_done(&tokens, "metered", "r1", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = operator.metrics().await;
    for (name, minimum) in [
        ("streamingtoken_reconciles_total", 3.0),
        ("streamingtoken_reconcile_duration_seconds_count", 3.0),
        ("streamingtoken_rotations_total", 2.0),
        ("streamingtoken_rotation_phase_duration_seconds_count", 1.0),
        ("streamingtoken_consumers", 1.0),
        ("streamingtoken_events_total", 4.0),
        ("streamingtoken_leader", 1.0),
    ] {
        let value = support::metric_sum(&metrics, name);
        assert!(
            value >= minimum,
            "{name} = {value}, expected at least {minimum}\n{metrics}"
        );
    }
    assert!(
        metrics.contains(
            r#"streamingtoken_rotations_total{strategy="ZeroDowntime",result="completed"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"streamingtoken_token1_issued_timestamp_seconds{{namespace="{namespace}",name="metered"}}"#
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"streamingtoken_consumers{{namespace="{namespace}",name="metered"}} 1"#
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"state="total""#),
        "no label value that double-counts under sum(): {metrics}"
    );
    for (type_, status, value) in [
        ("Ready", "True", 1),
        ("Ready", "False", 0),
        ("Stalled", "False", 1),
    ] {
        assert!(
            metrics.contains(&format!(
                r#"streamingtoken_status_condition{{namespace="{namespace}",name="metered",type="{type_}",status="{status}"}} {value}"#
            )),
            "{type_}={status}: {metrics}"
        );
    }
    assert!(support::metric_sum(&metrics, "streamingtoken_events_total") > 0.0);
    assert!(
        metrics.contains(r#"streamingtoken_problems_total{reason="SourceSecretNotFound"}"#),
        "problems the user must fix, by reason: {metrics}"
    );
    assert!(
        !metrics
            .contains(r#"streamingtoken_reconcile_errors_total{reason="SourceSecretNotFound"}"#),
        "a user's problem is not a reconcile error: {metrics}"
    );
    assert!(
        metrics.contains("streamingtoken_build_info{version="),
        "{metrics}"
    );
    // Process metrics: this process's own, read from /proc by the metrics-process crate.
    let resident = support::metric_sum(&metrics, "process_resident_memory_bytes");
    assert!(
        resident > 1_000_000.0,
        "resident memory {resident}: {metrics}"
    );
    assert!(support::metric_sum(&metrics, "process_cpu_seconds_total") > 0.0);
    assert!(support::metric_sum(&metrics, "process_open_fds") > 0.0);
    assert!(
        metrics.contains("# TYPE process_cpu_seconds counter"),
        "{metrics}"
    );
    assert_eq!(
        support::http_get(operator.metrics_port, "/healthz")
            .await
            .map(|(code, _)| code),
        Some(200)
    );
    assert_eq!(
        support::http_get(operator.metrics_port, "/readyz")
            .await
            .map(|(code, _)| code),
        Some(200)
    );

    // A deleted StreamingToken leaves no per-object series behind.
    let broken = format!(r#"namespace="{namespace}",name="broken""#);
    assert!(operator.metrics().await.contains(&broken));
    tokens
        .delete("broken", &kube::api::DeleteParams::default())
        .await
        .expect("deleted");
    wait_for(
        "the deleted StreamingToken's series to go",
        TIMEOUT,
        || async {
            if operator.metrics().await.contains(&broken) {
                Err("still exported".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
}
