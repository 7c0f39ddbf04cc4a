//! Member clusters for the multi-cluster tests: control planes of their own (etcd,
//! kube-apiserver, controller-manager, scheduler, a KWOK node) that `make test` starts next to
//! the hub's (`STO_E2E_MEMBERS=name=dir,...`, each dir a `tests/controlplane/cluster.sh` one).

use super::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

/// The tests that use the member clusters run one at a time: one of them stops a member's API
/// server, which every other would see.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One member cluster.
pub struct Member {
    pub name: String,
    /// Its `cluster.sh` directory.
    pub dir: PathBuf,
    pub admin: Client,
}

/// The member clusters `make test` started.
pub async fn members() -> Vec<Member> {
    let spec = std::env::var("STO_E2E_MEMBERS").expect(
        "STO_E2E_MEMBERS names the member clusters' control planes (name=dir,...); run `make test`",
    );
    let mut members = Vec::new();
    for entry in spec.split(',').filter(|entry| !entry.is_empty()) {
        let (name, dir) = entry.split_once('=').expect("name=dir");
        let dir = PathBuf::from(dir);
        let admin = client_from_kubeconfig(&dir.join("kubeconfig")).await;
        members.push(Member {
            name: name.to_string(),
            dir,
            admin,
        });
    }
    assert!(members.len() >= 2, "two member clusters are needed: {spec}");
    members
}

impl Member {
    /// Creates namespace `name` there.
    pub async fn namespace(&self, name: &str) {
        Api::<Namespace>::all(self.admin.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                },
            )
            .await
            .expect("member namespace created");
    }

    /// A ServiceAccount `hub` in `namespace` there with the least privilege the README lists
    /// for members, and a kubeconfig (server, CA and token inline) that authenticates as it.
    pub async fn hub_kubeconfig(&self, namespace: &str, secret: &str) -> String {
        let rules = member_rules(secret);
        service_account(&self.admin, namespace, "hub", rules).await;
        let identity =
            identity_on(&self.admin, &self.dir.join("kubeconfig"), namespace, "hub").await;
        let written = std::fs::read_to_string(&identity.kubeconfig).expect("kubeconfig");
        let config: serde_json::Value = serde_json::from_str(&written).expect("kubeconfig parses");
        let token = config["users"][0]["user"]["token"].as_str().expect("token");
        let server = config["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("server");
        let ca_file = config["clusters"][0]["cluster"]["certificate-authority"]
            .as_str()
            .expect("CA file");
        let ca = std::fs::read(ca_file).expect("CA");
        serde_json::to_string(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {
                "server": server,
                "certificate-authority-data": base64(&ca),
            }}],
            "users": [{"name": "hub", "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": "hub"}}],
            "current-context": self.name,
        }))
        .expect("serializes")
    }

    /// Stops its kube-apiserver (etcd and the rest keep running).
    pub fn stop_apiserver(&self) {
        self.cluster_sh("stop-apiserver");
    }

    /// Starts its kube-apiserver again, as it was, and waits until it is ready.
    pub fn start_apiserver(&self) {
        self.cluster_sh("start-apiserver");
    }

    fn cluster_sh(&self, command: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/cluster.sh");
        let output = std::process::Command::new(script)
            .arg(command)
            .env("CLUSTER_DIR", &self.dir)
            .output()
            .expect("cluster.sh runs");
        assert!(
            output.status.success(),
            "cluster.sh {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The Role a member grants the hub in the namespace it serves (as the README documents it).
pub fn member_rules(secret: &str) -> Vec<PolicyRule> {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|group| group.to_string()).collect()),
        resources: Some(
            resources
                .iter()
                .map(|resource| resource.to_string())
                .collect(),
        ),
        verbs: verbs.iter().map(|verb| verb.to_string()).collect(),
        resource_names: (!names.is_empty())
            .then(|| names.iter().map(|name| name.to_string()).collect()),
        ..PolicyRule::default()
    };
    vec![
        rule(&[""], &["secrets"], &["get", "patch", "delete"], &[secret]),
        rule(&[""], &["secrets"], &["create"], &[]),
        rule(&[""], &["pods"], &["list"], &[]),
        rule(&[""], &["pods/eviction"], &["create"], &[]),
        rule(
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            &["get", "list", "patch"],
            &[],
        ),
        rule(&["batch"], &["cronjobs", "jobs"], &["list", "patch"], &[]),
        rule(
            &["argoproj.io"],
            &["rollouts"],
            &["list", "patch", "update"],
            &[],
        ),
    ]
}

/// A Secret `name` holding `kubeconfig` under key `value` (the shape Cluster API writes).
pub fn kubeconfig_secret(name: &str, namespace: &str, kubeconfig: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "value".to_string(),
            ByteString(kubeconfig.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
