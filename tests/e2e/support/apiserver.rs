//! A second, short-lived API server: etcd and kube-apiserver from the control plane's cached
//! binaries (`STO_E2E_BIN`), with the test cluster's certificates, on free ports of 127.0.0.1.
//! It is a cluster of its own, empty: what the shared cluster must keep for every other test
//! (the CRDs, say) is simply absent here. No controller-manager, scheduler or nodes. Stopped
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BareApiServer {
    /// An admin kubeconfig (system:masters) for this API server.
    pub kubeconfig: PathBuf,
    processes: Vec<Child>,
    dir: tempfile::TempDir,
}

/// A port free on 127.0.0.1, below the kernel's ephemeral range (`tests/free-port.py`, as the
/// control plane's own servers get theirs).
fn free_port() -> u16 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/free-port.py");
    let output = Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs tests/free-port.py");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("tests/free-port.py prints a port")
}

/// The directory of the test cluster's certificates (the admin kubeconfig's CA's).
fn pki() -> PathBuf {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(super::kubeconfig_path()).expect("kubeconfig");
    let authority = kubeconfig
        .clusters
        .iter()
        .find_map(|cluster| cluster.cluster.as_ref()?.certificate_authority.clone())
        .expect("the test kubeconfig names its CA file");
    Path::new(&authority)
        .parent()
        .expect("the CA's directory")
        .to_path_buf()
}

impl BareApiServer {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub async fn start() -> Self {
        let bin = super::bin_dir();
        let pki = pki();
        let dir = tempfile::tempdir().expect("temp dir");
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log file")
        };
        let etcd = Command::new(bin.join("etcd"))
            .arg("--name=bare")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=bare=http://127.0.0.1:{peer_port}"
            ))
            .args(["--listen-metrics-urls=", "--unsafe-no-fsync=true"])
            .stdin(Stdio::null())
            .stdout(log("etcd"))
            .stderr(log("etcd"))
            .spawn()
            .expect("etcd starts");
        let file = |name: &str| pki.join(name).display().to_string();
        let apiserver = Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--tls-cert-file={}", file("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", file("apiserver.key")))
            .arg(format!("--client-ca-file={}", file("ca.crt")))
            .arg(format!("--service-account-issuer=https://127.0.0.1:{port}"))
            .arg(format!("--service-account-key-file={}", file("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                file("sa.key")
            ))
            .args([
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
            ])
            .stdin(Stdio::null())
            .stdout(log("kube-apiserver"))
            .stderr(log("kube-apiserver"))
            .spawn()
            .expect("kube-apiserver starts");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bare\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: bare\n  context: {{cluster: bare, user: admin, namespace: default}}\ncurrent-context: bare\n",
                file("ca.crt"),
                file("admin.crt"),
                file("admin.key")
            ),
        )
        .expect("kubeconfig written");
        let server = Self {
            kubeconfig,
            processes: vec![apiserver, etcd],
            dir,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until `kubectl get --raw /readyz` answers, or fails with the logs' tails.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = Command::new(super::bin_dir().join("kubectl"))
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|output| output.status.success());
            if ready {
                return;
            }
            let log = |name: &str| {
                super::tail(
                    &std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                        .unwrap_or_default(),
                    10,
                )
            };
            assert!(
                Instant::now() < deadline,
                "the second API server was not ready within 90 s\netcd: {}\nkube-apiserver: {}",
                log("etcd"),
                log("kube-apiserver")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for BareApiServer {
    fn drop(&mut self) {
        // The API server first, then its etcd.
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}
