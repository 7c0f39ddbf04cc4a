//! Test support for the end-to-end tests against the real local control plane.
//!
//! `make test` starts the control plane and sets `STO_E2E_KUBECONFIG` (an admin kubeconfig) and
//! `STO_E2E_BIN` (kubectl, helm). Without them every e2e test fails at once and says how to run it.

#![allow(dead_code)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use streaming_token_operator::api::StreamingToken;
use tokio::process::{Child, Command};

pub mod apiserver;
pub mod fixtures;
pub mod ledger;
pub mod members;
pub mod platform;
pub mod realnode;

static NAMESPACE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The admin kubeconfig of the control plane the tests run against.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("STO_E2E_KUBECONFIG") {
        Some(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "the end-to-end tests need the local control plane: run `make test` (or `make cluster-up` and then \
             `STO_E2E_KUBECONFIG=.cluster/kubeconfig STO_E2E_BIN=$(cat .cluster/run/bin) cargo test --features e2e --test e2e`)"
        ),
    }
}

/// Directory with kubectl and helm built for the control plane.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("STO_E2E_BIN") {
        Some(path) if Path::new(&path).join("kubectl").is_file() => PathBuf::from(path),
        _ => panic!("STO_E2E_BIN must name the control plane's bin directory (make test sets it)"),
    }
}

/// A client with the admin identity (system:masters).
pub async fn admin_client() -> Client {
    client_from_kubeconfig(&kubeconfig_path()).await
}

pub async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    Client::try_from(config).expect("client builds")
}

/// Installs (server-side applies) the committed CRDs and waits until they are established.
pub async fn install_crd(client: &Client) {
    for file in [
        "crds/streamingtokens.streamingtoken.io.yaml",
        "crds/clusterstreamingtokens.streamingtoken.io.yaml",
    ] {
        install_crd_file(client, file).await;
    }
}

async fn install_crd_file(client: &Client, file: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(path).expect("committed CRD");
    let crd: CustomResourceDefinition = serde_norway::from_str(&text).expect("CRD parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    apply(&api, &crd).await;
    let name = crd.metadata.name.clone().expect("named");
    wait_for(
        "the CRD to be established",
        Duration::from_secs(30),
        || async {
            let crd = api.get(&name).await.map_err(|error| error.to_string())?;
            let established = crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|condition| condition.type_ == "Established" && condition.status == "True");
            if established {
                Ok(())
            } else {
                Err("not established".into())
            }
        },
    )
    .await;
}

/// Creates a fresh namespace for one test (installing the CRD first, idempotently).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    install_crd(client).await;
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NAMESPACE_COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
    // The ServiceAccount controller creates `default` shortly after; tests do not need it.
    name
}

/// Server-side applies a typed object as the test's field manager.
pub async fn apply<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().expect("object has a name");
    api.patch(
        &name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|error| panic!("applying {name}: {error}"))
}

/// Waits until `check` returns `Some`, polling every 200 ms, or fails with `what` and the last
/// observation after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(observation) => observation,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A ServiceAccount with given rules, and a kubeconfig that authenticates *as* it with a
/// TokenRequest token, exactly as a pod's projected token would.
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub name: String,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServiceAccountIdentity {
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }
}

/// Creates ServiceAccount `name` in `namespace` with a Role holding `rules` (if any) bound to it.
pub async fn service_account(
    admin: &Client,
    namespace: &str,
    name: &str,
    rules: Vec<PolicyRule>,
) -> ServiceAccountIdentity {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    apply(
        &accounts,
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        },
    )
    .await;
    if !rules.is_empty() {
        apply(
            &Api::<Role>::namespaced(admin.clone(), namespace),
            &Role {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace.into()),
                    ..ObjectMeta::default()
                },
                rules: Some(rules),
            },
        )
        .await;
        bind(admin, namespace, name, "Role", name, namespace).await;
    }
    identity(admin, namespace, name).await
}

/// Binds `role_kind`/`role_name` to ServiceAccount `account` of `account_namespace`, in `namespace`.
pub async fn bind(
    admin: &Client,
    namespace: &str,
    account: &str,
    role_kind: &str,
    role_name: &str,
    account_namespace: &str,
) {
    apply(
        &Api::<RoleBinding>::namespaced(admin.clone(), namespace),
        &RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{account}-{}", role_name.replace(':', "-"))),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: role_kind.into(),
                name: role_name.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: account.into(),
                namespace: Some(account_namespace.into()),
                ..Subject::default()
            }]),
        },
    )
    .await;
}

/// Mints a TokenRequest token for an existing ServiceAccount and writes a kubeconfig with it.
pub async fn identity(admin: &Client, namespace: &str, name: &str) -> ServiceAccountIdentity {
    identity_on(admin, &kubeconfig_path(), namespace, name).await
}

/// The same on the control plane whose admin kubeconfig is `admin_kubeconfig` (a test that
/// starts one of its own).
pub async fn identity_on(
    admin: &Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
) -> ServiceAccountIdentity {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest succeeds");
    let bearer = token.status.expect("token issued").token;
    let admin_config = std::fs::read_to_string(admin_kubeconfig).expect("admin kubeconfig");
    let admin_kubeconfig: Kubeconfig =
        serde_norway::from_str(&admin_config).expect("kubeconfig parses");
    let cluster = admin_kubeconfig.clusters[0]
        .cluster
        .clone()
        .expect("cluster entry");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority": cluster.certificate_authority,
        }}],
        "users": [{"name": name, "user": {"token": bearer}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": name, "namespace": namespace}}],
        "current-context": "local",
    });
    std::fs::write(&path, serde_json::to_string(&config).expect("serializes"))
        .expect("kubeconfig written");
    ServiceAccountIdentity {
        namespace: namespace.into(),
        name: name.into(),
        kubeconfig: path,
        _dir: dir,
    }
}

/// Renders one template of the chart with helm and returns the documents as JSON values.
pub fn render_chart(template: &str, set: &[&str]) -> Vec<serde_json::Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/streaming-token-operator");
    let mut command = std::process::Command::new(bin_dir().join("helm"));
    command.args(["template", "sto"]).arg(&chart).args([
        "--namespace",
        "sto-system",
        "--show-only",
        template,
        // As on a cluster with the Prometheus Operator (its objects are rendered only there).
        "--api-versions",
        "monitoring.coreos.com/v1",
    ]);
    for value in set {
        command.args(["--set", value]);
    }
    let output = command.output().expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML document"))
        .filter(|value: &serde_json::Value| !value.is_null())
        .collect()
}

/// The operator's ClusterRole exactly as the chart ships it, installed under `name`.
pub async fn install_operator_cluster_role(admin: &Client, name: &str) {
    let documents = render_chart("templates/clusterrole.yaml", &[]);
    let mut role: ClusterRole =
        serde_json::from_value(documents[0].clone()).expect("a ClusterRole");
    role.metadata = ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    apply(&Api::<ClusterRole>::all(admin.clone()), &role).await;
}

/// An operator process, run as its own ServiceAccount with the chart's RBAC, serving one
/// namespace. Killed when dropped.
pub struct Operator {
    pub child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
    pub identity: ServiceAccountIdentity,
    _dir: tempfile::TempDir,
}

pub struct OperatorOptions {
    pub rust_log: String,
    /// Serve every namespace (no `--namespace`), as a cluster-wide install does.
    pub all_namespaces: bool,
    pub leader_elect: bool,
    pub lease_duration_seconds: u64,
    pub instance: String,
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            rust_log: "info,streaming_token_operator=debug".into(),
            all_namespaces: false,
            leader_elect: false,
            lease_duration_seconds: 15,
            instance: "operator".into(),
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Creates the operator's ServiceAccount in `namespace` with the chart's ClusterRole bound there
/// (and, for leader election, the chart's Lease rules).
pub async fn operator_identity(admin: &Client, namespace: &str) -> ServiceAccountIdentity {
    install_operator_cluster_role(admin, "streaming-token-operator-e2e").await;
    let account = "streaming-token-operator";
    let lease_rules: Vec<PolicyRule> = render_chart("templates/leader-election.yaml", &[])
        .into_iter()
        .find(|document| document["kind"] == "Role")
        .map(|role| {
            serde_json::from_value::<Role>(role)
                .expect("Role")
                .rules
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let lease_rules = lease_rules
        .into_iter()
        .map(|mut rule| {
            if rule.resource_names.is_some() {
                rule.resource_names = Some(vec!["streaming-token-operator".into()]);
            }
            rule
        })
        .collect();
    let identity = service_account(admin, namespace, account, lease_rules).await;
    bind(
        admin,
        namespace,
        account,
        "ClusterRole",
        "streaming-token-operator-e2e",
        namespace,
    )
    .await;
    wait_rbac_effective(&identity).await;
    identity
}

/// The operator's ServiceAccount in `namespace` with the chart's ClusterRole bound cluster-wide
/// (a ClusterRoleBinding, as the chart installs it without `watchNamespaces`).
pub async fn cluster_operator_identity(admin: &Client, namespace: &str) -> ServiceAccountIdentity {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    install_operator_cluster_role(admin, "streaming-token-operator-e2e").await;
    let account = "streaming-token-operator";
    let identity = service_account(admin, namespace, account, Vec::new()).await;
    apply(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        &ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("streaming-token-operator-e2e-{namespace}")),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "streaming-token-operator-e2e".into(),
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
    wait_rbac_effective(&identity).await;
    identity
}

/// A client that acts as user `user` (in groups `groups`) through impersonation by the admin:
/// what a person with only those bindings may do.
pub async fn impersonating(user: &str, groups: &[&str]) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    config.auth_info.impersonate = Some(user.into());
    config.auth_info.impersonate_groups =
        Some(groups.iter().map(|group| group.to_string()).collect());
    Client::try_from(config).expect("client builds")
}

/// Waits until the API server's authorizer has caught up with new bindings (its caches can lag
/// on a loaded machine), so an operator started next does not begin in watch back-off.
pub async fn wait_rbac_effective(identity: &ServiceAccountIdentity) {
    let client = identity.client().await;
    let namespace = identity.namespace.clone();
    wait_for(
        "the operator's RBAC to take effect",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let namespace = namespace.clone();
            async move {
                let limit = kube::api::ListParams::default().limit(1);
                Api::<StreamingToken>::namespaced(client.clone(), &namespace)
                    .list(&limit)
                    .await
                    .map_err(|error| error.to_string())?;
                Api::<Deployment>::namespaced(client.clone(), &namespace)
                    .list(&limit)
                    .await
                    .map_err(|error| error.to_string())?;
                Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, &namespace)
                    .list_metadata(&limit)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(())
            }
        },
    )
    .await;
}

impl Operator {
    /// Starts the operator for `namespace`, authenticated as its own ServiceAccount.
    pub async fn start(admin: &Client, namespace: &str, options: OperatorOptions) -> Self {
        let identity = operator_identity(admin, namespace).await;
        Self::start_as(identity, namespace, options).await
    }

    pub async fn start_as(
        identity: ServiceAccountIdentity,
        namespace: &str,
        options: OperatorOptions,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("operator.log");
        let metrics_port = free_port();
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_streaming-token-operator"));
        command.arg("run");
        if !options.all_namespaces {
            command.arg(format!("--namespace={namespace}"));
        }
        command
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!("--identity={}", options.instance))
            .args(&options.extra_args)
            .env_clear()
            .env("KUBECONFIG", &identity.kubeconfig)
            .env("RUST_LOG", &options.rust_log)
            .env("NO_COLOR", "1")
            .env("POD_NAMESPACE", namespace)
            .envs(
                options
                    .extra_env
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .kill_on_drop(true);
        if options.leader_elect {
            command.arg("--leader-elect").arg(format!(
                "--lease-duration-seconds={}",
                options.lease_duration_seconds
            ));
        }
        let child = command.spawn().expect("operator starts");
        let operator = Self {
            child,
            log,
            metrics_port,
            identity,
            _dir: dir,
        };
        operator.wait_ready().await;
        operator
    }

    /// Waits until /readyz answers 200 (caches synced).
    pub async fn wait_ready(&self) {
        let port = self.metrics_port;
        let log = self.log.clone();
        wait_for("the operator to be ready", Duration::from_secs(60), || {
            let log = log.clone();
            async move {
                match http_get(port, "/readyz").await {
                    Some((200, _)) => Ok(()),
                    other => Err(format!(
                        "/readyz answered {other:?}; log tail: {}",
                        tail(&std::fs::read_to_string(&log).unwrap_or_default(), 5)
                    )),
                }
            }
        })
        .await
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("operator exits within 30s of SIGTERM")
            .expect("wait works")
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 (no extra client dependency).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Runs kubectl (from the control plane's bin directory) as admin.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin_dir().join("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig_path().display()))
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// `(status, reason)` of condition `type_` on a StreamingToken.
pub fn condition(
    token: &streaming_token_operator::api::StreamingToken,
    type_: &str,
) -> Option<(String, String)> {
    token
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

/// Waits until condition `type_` of StreamingToken `name` has `status` and `reason`.
pub async fn wait_condition(
    api: &Api<streaming_token_operator::api::StreamingToken>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> streaming_token_operator::api::StreamingToken {
    wait_for(
        &format!("{name} to have {type_}={status} ({reason})"),
        timeout,
        || async {
            let token = api.get(name).await.map_err(|error| error.to_string())?;
            match condition(&token, type_) {
                Some((got_status, got_reason)) if got_status == status && got_reason == reason => {
                    Ok(token)
                }
                other => Err(format!("{type_} is {other:?}")),
            }
        },
    )
    .await
}

/// Events (events.k8s.io) regarding StreamingToken `name`: `(type, reason, note)`.
pub async fn events(client: &Client, namespace: &str, name: &str) -> Vec<(String, String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&Default::default()).await.expect("events list");
    let mut found: Vec<_> = list
        .items
        .into_iter()
        .filter(|event| {
            event
                .regarding
                .as_ref()
                .and_then(|regarding| regarding.name.as_deref())
                == Some(name)
        })
        .map(|event| {
            (
                event.type_.unwrap_or_default(),
                event.reason.unwrap_or_default(),
                event.note.unwrap_or_default(),
            )
        })
        .collect();
    found.sort();
    found
}

/// Waits for an Event with `reason` on StreamingToken `name`.
pub async fn wait_event(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> (String, String, String) {
    wait_for(&format!("an Event {reason} on {name}"), timeout, || async {
        let all = events(client, namespace, name).await;
        all.iter()
            .find(|(_, got, _)| got == reason)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "events so far: {:?}",
                    all.iter().map(|(_, reason, _)| reason).collect::<Vec<_>>()
                )
            })
    })
    .await
}

/// Writes (create, update, patch, delete) recorded in the apiserver's audit log for `username`.
pub fn audited_writes(username: &str) -> Vec<serde_json::Value> {
    let path = std::env::var("STO_E2E_AUDIT_LOG")
        .expect("STO_E2E_AUDIT_LOG names the apiserver's audit log (make test sets it)");
    let text = std::fs::read_to_string(path).expect("audit log readable");
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["user"]["username"] == username)
        .filter(|entry| {
            matches!(
                entry["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete" | "deletecollection")
            )
        })
        .collect()
}

/// The username of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Reads `key` of Secret `name` as text.
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Option<String> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("secret read")?;
    let value = secret.data?.get(key)?.0.clone();
    Some(String::from_utf8(value).expect("utf-8 token"))
}

/// A counter's value summed over its label sets in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until rotation `id` of StreamingToken `name` has completed.
pub async fn wait_rotation_done(
    tokens: &Api<StreamingToken>,
    name: &str,
    id: &str,
    timeout: Duration,
) -> StreamingToken {
    wait_for(
        &format!("rotation {id} of {name} to complete"),
        timeout,
        || async {
            let token = tokens.get(name).await.map_err(|error| error.to_string())?;
            let status = token.status.clone().unwrap_or_default();
            match (&status.last_rotation, &status.rotation) {
                (Some(last), None) if last.id == id => Ok(token),
                _ => Err(format!(
                    "rotation {:?}, blocked {:?}, last {:?}",
                    status
                        .rotation
                        .as_ref()
                        .map(|rotation| (&rotation.id, &rotation.phase)),
                    status
                        .consumers
                        .as_ref()
                        .map(|consumers| &consumers.blocked),
                    status.last_rotation.as_ref().map(|last| &last.id)
                )),
            }
        },
    )
    .await
}

/// Sets `spec.rotation.trigger` (as a person or a GitOps sync would).
pub async fn set_trigger(tokens: &Api<StreamingToken>, name: &str, trigger: &str) {
    tokens
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rotation": {"trigger": trigger}}})),
        )
        .await
        .expect("trigger set");
}

/// Waits until every named Deployment has all its replicas updated and available.
pub async fn wait_deployments_available(client: &Client, namespace: &str, names: &[&str]) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for name in names {
        wait_for(
            &format!("Deployment {name} available"),
            Duration::from_secs(120),
            || async {
                let deployment = deployments
                    .get(name)
                    .await
                    .map_err(|error| error.to_string())?;
                let desired = deployment.spec.replicas.unwrap_or(1);
                let status = deployment.status.unwrap_or_default();
                if status.available_replicas == Some(desired)
                    && status.updated_replicas == Some(desired)
                {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await;
    }
}

/// The `streamingtoken.io/rotation` annotation rotation `id` of StreamingToken `name` stamps on
/// pod templates: `<id>.<first 8 characters of its uid>` (the incarnation).
pub async fn rotation_stamp(tokens: &Api<StreamingToken>, name: &str, id: &str) -> String {
    let token = tokens.get(name).await.expect("StreamingToken");
    let uid = token.metadata.uid.expect("uid");
    format!("{id}.{}", &uid[..8])
}

/// How many times Deployment `name` (pods labelled `app=<name>`) rolled: ReplicaSets beyond
/// the first.
pub async fn rollouts(client: &Client, namespace: &str, name: &str) -> usize {
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), namespace);
    let list = sets
        .list(&kube::api::ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("list");
    list.items.len() - 1
}

/// The holder of the operator's leader Lease in `namespace` (empty when none).
pub async fn lease_holder(client: &Client, namespace: &str) -> String {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), namespace)
        .get_opt("streaming-token-operator")
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec?.holder_identity)
        .unwrap_or_default()
}

/// The resident set of process `pid`, in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Requests the apiserver's audit log holds for `username` received between `from` and `to`,
/// counted by verb and resource (reads by ServiceAccounts are audited at Metadata level).
pub fn audited_requests(
    username: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> std::collections::BTreeMap<String, usize> {
    let path = std::env::var("STO_E2E_AUDIT_LOG").expect("STO_E2E_AUDIT_LOG is set");
    audited_requests_in(Path::new(&path), username, from, to)
}

/// The same in the audit log at `path` (a member cluster's).
pub fn audited_requests_in(
    path: &Path,
    username: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).expect("audit log readable");
    let mut counts = std::collections::BTreeMap::new();
    for entry in text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["user"]["username"] == username)
        // One entry per request: watches also log ResponseStarted.
        .filter(|entry| entry["stage"] == "ResponseComplete")
    {
        let Some(received) = entry["requestReceivedTimestamp"]
            .as_str()
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        if received < from || received > to {
            continue;
        }
        let key = format!(
            "{} {}",
            entry["verb"].as_str().unwrap_or("?"),
            entry["objectRef"]["resource"].as_str().unwrap_or("?")
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Runs the pinned helm against the test control plane, with caches of its own.
pub fn helm(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin_dir().join("helm"))
        .env("KUBECONFIG", kubeconfig_path())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("sto-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("sto-helm-config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("sto-helm-data"))
        .args(args)
        .output()
        .expect("helm runs")
}

/// The setup most tests start with: the admin client, a fresh namespace, and the operator
/// serving it with the default options (stopped when the scenario is dropped).
pub struct Scenario {
    pub admin: Client,
    pub namespace: String,
    pub operator: Operator,
}

impl Scenario {
    /// A namespace named after `prefix` with an operator serving it.
    pub async fn start(prefix: &str) -> Self {
        let admin = admin_client().await;
        let namespace = namespace(&admin, prefix).await;
        let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
        Self {
            admin,
            namespace,
            operator,
        }
    }
}
