//! The test platform (`tests/platform`, a real HTTP server playing the streaming platform):
//! started per test, driven through its admin API, and the judge of which tokens are valid.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The broker password the platform's check returns: a sentinel that must never show up in the
/// operator's logs, Events or status.
pub const BROKER_PASSWORD: &str = "fake-broker-password-5ee7c0de";

/// A running test platform. Killed when dropped.
pub struct TestPlatform {
    _child: Child,
    /// The public API (the portal API clients call).
    pub url: String,
    admin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var_os("STO_E2E_PLATFORM")
        .map(PathBuf::from)
        .expect("STO_E2E_PLATFORM names the test platform binary (tests/go-helper.sh platform); make test sets it")
}

impl TestPlatform {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("platform.log")).expect("log");
        let child = Command::new(binary())
            .arg("--listen=127.0.0.1:0")
            .arg("--admin-listen=127.0.0.1:0")
            .arg(format!("--ready-file={}", ready.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the test platform starts");
        let line = super::wait_for(
            "the test platform to listen",
            Duration::from_secs(20),
            || {
                let ready = ready.clone();
                async move { std::fs::read_to_string(&ready).map_err(|error| error.to_string()) }
            },
        )
        .await;
        let ready: Value = serde_json::from_str(&line).expect("ready line");
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            _child: child,
            url: ready["url"].as_str().expect("url").to_string(),
            admin: ready["admin"].as_str().expect("admin").to_string(),
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.admin));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin API answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "admin {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a workspace; returns its pair `(token1, token2)`.
    pub async fn workspace(&self, id: &str) -> (String, String) {
        let body = self
            .admin(
                reqwest::Method::POST,
                "/admin/workspaces",
                Some(json!({"id": id})),
            )
            .await;
        pair(&body)
    }

    /// The workspace's current pair.
    pub async fn pair(&self, id: &str) -> (String, String) {
        pair(
            &self
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/workspaces/{id}"),
                    None,
                )
                .await,
        )
    }

    /// Rotates as a person clicking in the portal would.
    pub async fn portal_rotate(&self, id: &str) -> (String, String) {
        pair(
            &self
                .admin(
                    reqwest::Method::POST,
                    &format!("/admin/workspaces/{id}/rotate"),
                    None,
                )
                .await,
        )
    }

    /// Mints a PAT.
    pub async fn pat(&self, role: &str, expires_in: &str) -> String {
        let body = self
            .admin(
                reqwest::Method::POST,
                "/admin/pats",
                Some(json!({"role": role, "expiresIn": expires_in})),
            )
            .await;
        body["pat"].as_str().expect("pat").to_string()
    }

    /// Queues a fault for the next `count` requests to `endpoint` (0: until cleared).
    pub async fn fault(&self, endpoint: &str, kind: &str, count: u32) {
        self.admin(
            reqwest::Method::POST,
            "/admin/faults",
            Some(json!({"endpoint": endpoint, "kind": kind, "count": count})),
        )
        .await;
    }

    /// Closes the public listener for `seconds` (connections refused), then opens it again.
    pub async fn down(&self, seconds: u64) {
        self.admin(
            reqwest::Method::POST,
            "/admin/down",
            Some(json!({"seconds": seconds})),
        )
        .await;
    }

    /// Every recorded call to `endpoint` (`broker`, `read`, `rotate`, `portal-rotate`).
    pub async fn calls(&self, endpoint: &str) -> Vec<Value> {
        match self
            .admin(
                reqwest::Method::GET,
                &format!("/admin/calls?endpoint={endpoint}"),
                None,
            )
            .await
        {
            Value::Array(calls) => calls,
            _ => Vec::new(),
        }
    }

    /// Forgets every recorded call.
    pub async fn clear_calls(&self) {
        self.admin(reqwest::Method::DELETE, "/admin/calls", None)
            .await;
    }

    /// The `spec.platform` of a StreamingToken for workspace `id` (the Quix preset), checked
    /// every `interval`, rotating with the PAT in Secret `pat_secret` when given.
    pub fn spec(&self, id: &str, interval: &str, pat_secret: Option<&str>) -> Value {
        let mut spec = json!({
            "quix": {"portalApi": self.url, "workspaceId": id},
            "timeout": "2s",
            "checkInterval": interval,
        });
        if let Some(secret) = pat_secret {
            spec["rotate"] = json!({
                "credentialsSecretRef": {"name": secret, "key": "pat"},
                "read": {"url": "/workspaces/{workspaceId}/tokens"},
                "rotate": {"url": "/workspaces/{workspaceId}/tokens/rotate"},
                "token1Path": "$.token1.value",
                "token2Path": "$.token2.value",
            });
        }
        spec
    }
}

fn pair(body: &Value) -> (String, String) {
    (
        body["token1"]["value"]
            .as_str()
            .expect("token1")
            .to_string(),
        body["token2"]["value"]
            .as_str()
            .expect("token2")
            .to_string(),
    )
}
