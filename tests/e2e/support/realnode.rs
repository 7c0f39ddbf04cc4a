//! The real node (`tests/node`): a kubelet with containerd and runc registered as `real-node-1`
//! next to the KWOK nodes, running the test client (`tests/client`) in real pods. `make test`
//! starts it (`tests/run-e2e.sh`) and sets `STO_E2E_REAL_NODE` to the control plane's directory;
//! without it every real-node test fails at once and says how to run it.
//!
//! The judge is the test platform's own record of every broker call (`X-Client` = the pod's
//! name, the token's serial and state, the status, the time of arrival).

use super::platform::TestPlatform;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The client image `tests/node/build.sh` makes and `node.sh up` imports.
pub const CLIENT_IMAGE: &str = "localhost/sto/client:1";
/// The workspace every real-node test creates on its platform.
pub const WORKSPACE: &str = "ws";

/// The directory of the control plane whose real node is up (`STO_E2E_REAL_NODE`).
pub fn cluster_dir() -> PathBuf {
    match std::env::var_os("STO_E2E_REAL_NODE") {
        Some(dir) if Path::new(&dir).join("node/run/kubelet.pid").is_file() => PathBuf::from(dir),
        Some(dir) => panic!(
            "STO_E2E_REAL_NODE={} names no control plane with a running real node \
             (tests/node/node.sh up with that CLUSTER_DIR)",
            Path::new(&dir).display()
        ),
        None => panic!(
            "the real-node tests need the real node: run `make test`, or with a control plane up \
             `CLUSTER_DIR=... tests/node/node.sh up` and STO_E2E_REAL_NODE=<that CLUSTER_DIR>"
        ),
    }
}

/// Runs `tests/node/node.sh` for the real node of [`cluster_dir`].
pub fn node_sh(args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node.sh"),
    )
    .env("CLUSTER_DIR", cluster_dir())
    .args(args)
    .output()
    .expect("node.sh runs");
    assert!(
        output.status.success(),
        "node.sh {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Deletes the test's namespace when dropped (also when the test fails), so that its client
/// processes stop calling a platform that is gone and the node's pods stay few.
pub struct NamespaceGuard(pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = super::kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

/// Where a client takes its token from.
pub enum TokenFrom<'a> {
    /// `Quix__Sdk__Token` from `secretKeyRef` (secret, key): read once at start.
    Env(&'a str, &'a str),
    /// A Secret volume holding key (secret, key) as `/var/run/quix/token`, read with
    /// `--token-file` (re-read on change).
    File(&'a str, &'a str),
}

/// The pod spec of a test client on the real node, calling `platform_url`.
pub fn client_pod_spec(platform_url: &str, token: TokenFrom) -> Value {
    let mut env = vec![
        json!({"name": "Quix__Portal__Api", "value": platform_url}),
        json!({"name": "Quix__Workspace__Id", "value": WORKSPACE}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    let mut container = json!({
        "name": "client",
        "image": CLIENT_IMAGE,
        "imagePullPolicy": "Never",
        "args": ["--stats-interval=10s"],
    });
    let mut spec = json!({
        "nodeSelector": {"streamingtoken.io/test-node": "real"},
        "tolerations": [{"key": "streamingtoken.io/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        "hostNetwork": true,
        "terminationGracePeriodSeconds": 5,
    });
    match token {
        TokenFrom::Env(secret, key) => env.push(json!({
            "name": "Quix__Sdk__Token",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
        })),
        TokenFrom::File(secret, key) => {
            container["args"] = json!(["--stats-interval=10s", "--token-file=/var/run/quix/token"]);
            container["volumeMounts"] =
                json!([{"name": "token", "mountPath": "/var/run/quix", "readOnly": true}]);
            spec["volumes"] = json!([{"name": "token", "secret": {"secretName": secret, "items": [{"key": key, "path": "token"}]}}]);
        }
    }
    container["env"] = Value::Array(env);
    spec["containers"] = json!([container]);
    spec
}

/// A Deployment of `replicas` test clients on the real node, labelled as a consumer of
/// StreamingToken `token_name` and reading `Quix__Sdk__Token` from its mirror's Token 1 key.
pub fn client_deployment(
    name: &str,
    namespace: &str,
    token_name: &str,
    replicas: i32,
    platform_url: &str,
) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {streaming_token_operator::api::TOKEN_LABEL: token_name},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": client_pod_spec(platform_url, TokenFrom::Env(token_name, "token1")),
            },
        },
    }))
    .expect("a Deployment")
}

/// A bare pod running the test client on the real node.
pub fn client_pod(name: &str, namespace: &str, platform_url: &str, token: TokenFrom) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": client_pod_spec(platform_url, token),
    }))
    .expect("a Pod")
}

/// A Secret `name` with one key `key`.
pub fn secret(name: &str, namespace: &str, key: &str, value: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {key: value},
    }))
    .expect("a Secret")
}

/// One broker call the platform recorded.
#[derive(Debug, Clone)]
pub struct Call {
    pub time: jiff::Timestamp,
    pub status: u64,
    pub client: String,
    pub serial: u64,
    pub state: String,
}

/// Every broker call the platform recorded, in arrival order.
pub async fn broker_calls(platform: &TestPlatform) -> Vec<Call> {
    platform
        .calls("broker")
        .await
        .iter()
        .map(|call| Call {
            time: call["time"]
                .as_str()
                .and_then(|time| time.parse().ok())
                .expect("a call's time"),
            status: call["status"].as_u64().unwrap_or(0),
            client: call["client"].as_str().unwrap_or_default().to_string(),
            serial: call["tokenSerial"].as_u64().unwrap_or(0),
            state: call["tokenState"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Calls per client (pod name).
pub fn by_client(calls: &[Call]) -> BTreeMap<String, Vec<Call>> {
    let mut clients: BTreeMap<String, Vec<Call>> = BTreeMap::new();
    for call in calls {
        clients
            .entry(call.client.clone())
            .or_default()
            .push(call.clone());
    }
    clients
}

/// Names of the pods of Deployment `app` (label `app=<app>`) that are not terminating.
pub async fn live_pods(client: &Client, namespace: &str, app: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods list")
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| pod.metadata.name)
        .collect()
}

/// Waits until every live pod of every Deployment in `apps` has made at least `min_ok`
/// successful calls since `since` (real processes on the real node, calling the platform).
/// Returns the pod names.
pub async fn wait_pods_calling(
    client: &Client,
    namespace: &str,
    apps: &[&str],
    replicas: usize,
    platform: &TestPlatform,
    since: jiff::Timestamp,
    min_ok: usize,
) -> Vec<String> {
    super::wait_for(
        &format!("{apps:?}: {replicas} pods each calling the platform with success"),
        Duration::from_secs(180),
        || async {
            let calls = broker_calls(platform).await;
            let clients = by_client(&calls);
            let mut names = Vec::new();
            for app in apps {
                let pods = live_pods(client, namespace, app).await;
                if pods.len() != replicas {
                    return Err(format!("{app}: pods {pods:?}"));
                }
                for pod in pods {
                    let ok = clients.get(&pod).map_or(0, |calls| {
                        calls
                            .iter()
                            .filter(|call| call.status == 200 && call.time >= since)
                            .count()
                    });
                    if ok < min_ok {
                        return Err(format!("{pod}: {ok} successful calls"));
                    }
                    names.push(pod);
                }
            }
            Ok(names)
        },
    )
    .await
}

/// The `containerd://` id of the (first) container of pod `name`, once it runs.
pub async fn container_id(client: &Client, namespace: &str, name: &str) -> (String, i32) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    super::wait_for(
        &format!("pod {name} running"),
        Duration::from_secs(120),
        || async {
            let pod = pods.get(name).await.map_err(|error| error.to_string())?;
            let status = pod
                .status
                .and_then(|status| status.container_statuses)
                .and_then(|statuses| statuses.into_iter().next())
                .ok_or("no container status")?;
            let running = status
                .state
                .as_ref()
                .and_then(|state| state.running.as_ref());
            match (status.container_id, running) {
                (Some(id), Some(_)) => Ok((
                    id.trim_start_matches("containerd://").to_string(),
                    status.restart_count,
                )),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Deletes pod `name` at once (the client exits on SIGTERM anyway).
pub async fn delete_pod(client: &Client, namespace: &str, name: &str) {
    let _ = Api::<Pod>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
}

/// Seconds between two timestamps.
pub fn seconds(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    (to.as_nanosecond() - from.as_nanosecond()) as f64 / 1e9
}

/// The `p`-th percentile (nearest rank, `p` in 0..=100) of `values`.
pub fn percentile(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}
