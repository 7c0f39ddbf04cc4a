//! Publishing: the chart as an OCI artifact and the operator's image as an OCI image index,
//! pushed by `tests/release.sh` to the registry that `tests/run-e2e.sh` starts on 127.0.0.1
//! (`STO_E2E_REGISTRY`), then installed from there as a user would: `helm install oci://...`
//! with the image referenced by its digest, and a rotation completed by the installed release.

use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(120);
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Where tests/release.sh pushes them (tests/image/push.sh's default repository).
const IMAGE_REPOSITORY: &str = "sto/streaming-token-operator";
const CHART_REPOSITORY: &str = "charts/streaming-token-operator";

/// The registry's address (host:port). The test fails without it: `make test` starts the
/// registry and publishes into it.
fn registry() -> String {
    match std::env::var("STO_E2E_REGISTRY") {
        Ok(address) if !address.is_empty() => address,
        _ => panic!(
            "STO_E2E_REGISTRY must name the OCI registry holding the release (host:port): \
             tests/run-e2e.sh starts it (tests/registry/registry.sh) and publishes into it \
             with tests/release.sh; for make test-e2e, run make registry-up first"
        ),
    }
}

/// The platforms tests/run-e2e.sh published (`STO_E2E_IMAGE_PLATFORMS`, the same words as
/// STO_IMAGE_PLATFORMS: "linux/amd64" in make test, "linux/amd64 linux/arm64" in a release).
fn platforms() -> Vec<String> {
    std::env::var("STO_E2E_IMAGE_PLATFORMS")
        .unwrap_or_else(|_| "linux/amd64".into())
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The chart's version and appVersion, from Chart.yaml.
fn chart_versions() -> (String, String) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/streaming-token-operator/Chart.yaml"
    ))
    .expect("Chart.yaml");
    let chart: Value = serde_norway::from_str(&text).expect("Chart.yaml is YAML");
    (
        chart["version"].as_str().expect("version").to_string(),
        chart["appVersion"]
            .as_str()
            .expect("appVersion")
            .to_string(),
    )
}

/// GETs a manifest or a blob from the registry (the distribution API); checks that the body
/// is what its digest says (the header's, or the one asked for). Returns (digest, JSON body).
async fn registry_get(
    http: &reqwest::Client,
    registry: &str,
    path: &str,
    accept: &str,
) -> (String, Value) {
    let url = format!("http://{registry}/v2/{path}");
    let response = http
        .get(&url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let header = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|value| value.to_str().ok())
        .map(String::from);
    let body = response.bytes().await.expect("body");
    let digest = format!(
        "sha256:{}",
        Sha256::digest(&body)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    );
    if let Some(header) = header {
        assert_eq!(
            header, digest,
            "GET {url}: the body is not what its digest says"
        );
    }
    if let Some((_, asked)) = path.rsplit_once('/')
        && asked.starts_with("sha256:")
    {
        assert_eq!(
            asked, digest,
            "GET {url}: the body is not the digest asked for"
        );
    }
    (digest, serde_json::from_slice(&body).expect("JSON"))
}

/// What tests/release.sh published is in the registry as a user pulls it: the chart as an OCI
/// artifact (Helm's media types, its version), the image as an OCI index over one image per
/// platform (each one's config: its platform, the recipe's user and entrypoint), the amd64 image
/// being the one the real-node test runs. Then `helm install oci://...` with the image
/// referenced by the index's digest (`image.digest`: the chart renders `repository@sha256:...`),
/// and
/// the installed release's ServiceAccount and RBAC run a rotation (KWOK runs no image).
#[tokio::test(flavor = "multi_thread")]
async fn chart_and_image_published_as_oci_install_by_digest_and_rotate() {
    let registry = registry();
    let (chart_version, app_version) = chart_versions();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // The image index and its images.
    let (index_digest, index) = registry_get(
        &http,
        &registry,
        &format!("{IMAGE_REPOSITORY}/manifests/{app_version}"),
        OCI_INDEX,
    )
    .await;
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    let manifests = index["manifests"].as_array().expect("manifests");
    let mut published: Vec<String> = Vec::new();
    for descriptor in manifests {
        assert_eq!(descriptor["mediaType"], OCI_MANIFEST, "{descriptor}");
        let platform = format!(
            "{}/{}",
            descriptor["platform"]["os"].as_str().expect("os"),
            descriptor["platform"]["architecture"]
                .as_str()
                .expect("architecture")
        );
        let digest = descriptor["digest"].as_str().expect("digest");
        let (_, manifest) = registry_get(
            &http,
            &registry,
            &format!("{IMAGE_REPOSITORY}/manifests/{digest}"),
            OCI_MANIFEST,
        )
        .await;
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
        let (_, config) = registry_get(
            &http,
            &registry,
            &format!(
                "{IMAGE_REPOSITORY}/blobs/{}",
                manifest["config"]["digest"].as_str().expect("config")
            ),
            "application/vnd.oci.image.config.v1+json",
        )
        .await;
        assert_eq!(
            format!(
                "{}/{}",
                config["os"].as_str().unwrap_or("?"),
                config["architecture"].as_str().unwrap_or("?")
            ),
            platform,
            "{config}"
        );
        assert_eq!(config["config"]["User"], "65532:65532", "{config}");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/streaming-token-operator"]),
            "{config}"
        );
        if platform == "linux/amd64" {
            // The very image the real-node test imports and runs (tests/image/build.sh's OCI
            // layout of it).
            let image_dir = std::env::var("STO_E2E_OPERATOR_IMAGE").expect(
                "STO_E2E_OPERATOR_IMAGE must name tests/image/build.sh's output (make test sets it)",
            );
            let layout: Value = serde_json::from_str(
                &std::fs::read_to_string(std::path::Path::new(&image_dir).join("oci/index.json"))
                    .expect("the image's OCI layout"),
            )
            .expect("index.json");
            assert_eq!(
                layout["manifests"][0]["digest"], digest,
                "the published amd64 image is not the one tested on the real node"
            );
        }
        published.push(platform);
    }
    let mut expected = platforms();
    expected.sort();
    published.sort();
    assert_eq!(published, expected, "the index's platforms");

    // The chart, an OCI artifact of Helm's media types.
    let (_, chart_manifest) = registry_get(
        &http,
        &registry,
        &format!("{CHART_REPOSITORY}/manifests/{chart_version}"),
        OCI_MANIFEST,
    )
    .await;
    assert_eq!(
        chart_manifest["config"]["mediaType"], HELM_CONFIG,
        "{chart_manifest}"
    );
    assert_eq!(
        chart_manifest["layers"][0]["mediaType"], HELM_CHART_LAYER,
        "{chart_manifest}"
    );
    let chart_ref = format!("oci://{registry}/{CHART_REPOSITORY}");
    let shown = support::helm(&[
        "show",
        "chart",
        &chart_ref,
        "--version",
        &chart_version,
        "--plain-http",
    ]);
    assert!(
        shown.status.success(),
        "helm show chart: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: Value = serde_norway::from_slice(&shown.stdout).expect("Chart.yaml");
    assert_eq!(shown["name"], "streaming-token-operator");
    assert_eq!(shown["version"], chart_version.as_str());

    // helm install from the registry, the image by digest.
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "publish").await;
    let release = format!("pub{}", std::process::id());
    let image_repository = format!("{registry}/{IMAGE_REPOSITORY}");
    let set_repository = format!("image.repository={image_repository}");
    let set_tag = format!("image.digest={index_digest}");
    let set_namespaces = format!("watchNamespaces={{{namespace}}}");
    let output = support::helm(&[
        "install",
        &release,
        &chart_ref,
        "--version",
        &chart_version,
        "--plain-http",
        "--namespace",
        &namespace,
        "--set",
        &set_repository,
        "--set",
        &set_tag,
        "--set",
        &set_namespaces,
        // The tests share the cluster's CRDs (installed by each test; see ship.rs).
        "--set",
        "crds.enabled=false",
        "--wait",
        "--timeout",
        "90s",
    ]);
    assert!(
        output.status.success(),
        "helm install {chart_ref}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = support::helm(&["list", "--namespace", &namespace, "--output", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("helm list JSON");
    assert_eq!(
        listed[0]["chart"],
        format!("streaming-token-operator-{chart_version}"),
        "{listed}"
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let installed = format!("{release}-streaming-token-operator");
    let deployment = wait_for(
        "the published chart's two operator replicas to be available",
        TIMEOUT,
        || async {
            let deployment = deployments
                .get(&installed)
                .await
                .map_err(|error| error.to_string())?;
            let available = deployment
                .status
                .as_ref()
                .and_then(|status| status.available_replicas);
            if available == Some(2) {
                Ok(deployment)
            } else {
                Err(format!("{available:?} available"))
            }
        },
    )
    .await;
    let containers = deployment
        .spec
        .template
        .spec
        .map(|pod| pod.containers)
        .unwrap_or_default();
    assert_eq!(
        containers
            .iter()
            .map(|container| container.image.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec![format!("{image_repository}@{index_digest}")],
        "the Deployment runs the published image by its digest"
    );

    // The release's ServiceAccount and RBAC run a rotation (the operator process stands in for
    // the pods KWOK does not run, as in ship.rs).
    let identity = support::identity(&admin, &namespace, &installed).await;
    support::wait_rbac_effective(&identity).await;
    let _operator = Operator::start_as(
        identity,
        &namespace,
        OperatorOptions {
            leader_elect: true,
            extra_args: vec![
                "--lease-name=streaming-token-operator".to_string(),
                format!("--lease-namespace={namespace}"),
            ],
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("consumer", &namespace, Some("published"), 2),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("published", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(
        &tokens,
        "published",
        "Ready",
        "True",
        "TokensReady",
        TIMEOUT,
    )
    .await;
    support::set_trigger(&tokens, "published", "t1").await;
    support::wait_rotation_done(&tokens, "published", "r1", TIMEOUT).await;
    let uninstalled = support::helm(&["uninstall", &release, "--namespace", &namespace]);
    assert!(
        uninstalled.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&uninstalled.stderr)
    );
}

/// Where tests/release.sh left the kubectl plugin's archives and krew manifest
/// (`STO_E2E_RELEASE`); the test fails without it.
fn release_dir() -> std::path::PathBuf {
    match std::env::var_os("STO_E2E_RELEASE") {
        Some(dir) if std::path::Path::new(&dir).join("release.env").is_file() => dir.into(),
        _ => panic!(
            "STO_E2E_RELEASE must name tests/release.sh's output directory (with release.env): \
             tests/run-e2e.sh sets it; for make test-e2e, run make registry-up first"
        ),
    }
}

/// krew, the kubectl plugin manager, built by `tests/go-helper.sh krew` (`STO_E2E_KREW`).
fn krew() -> std::path::PathBuf {
    match std::env::var_os("STO_E2E_KREW") {
        Some(path) if std::path::Path::new(&path).is_file() => path.into(),
        _ => panic!("STO_E2E_KREW must name krew (tests/go-helper.sh krew; make test sets it)"),
    }
}

/// `krew install --manifest M --archive A` into a fresh KREW_ROOT as krew on `arch` would:
/// krew validates the manifest (as krew-index does), picks the platform by its selector and
/// checks the archive against its sha256. Returns (success, output, KREW_ROOT).
fn krew_install(
    manifest: &std::path::Path,
    archive: &std::path::Path,
    arch: &str,
) -> (bool, String, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("KREW_ROOT");
    let output = std::process::Command::new(krew())
        .env_clear()
        .env("KREW_ROOT", root.path())
        .env("KREW_OS", "linux")
        .env("KREW_ARCH", arch)
        .env("KREW_NO_UPGRADE_CHECK", "1")
        .env("HOME", root.path())
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display()))
        .output()
        .expect("krew runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text, root)
}

/// The kubectl plugin as the release ships it: one archive per published platform and a krew
/// manifest over them (krew's apiVersion and kind, a `v`-prefixed semver, each platform's
/// selector, uri, sha256 of its archive, bin). krew itself installs each platform's archive from
/// the manifest (refusing one whose sha256 does not match), and kubectl runs the installed
/// plugin as `kubectl streamingtoken`.
#[test]
fn kubectl_plugin_archives_and_krew_manifest_install_with_krew() {
    let dir = release_dir();
    let manifest_path = dir.join("streamingtoken.yaml");
    let text = std::fs::read_to_string(&manifest_path).expect("the krew manifest");
    let manifest: Value = serde_norway::from_str(&text).expect("the manifest is YAML");
    assert_eq!(
        manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2",
        "{text}"
    );
    assert_eq!(manifest["kind"], "Plugin", "{text}");
    assert_eq!(manifest["metadata"]["name"], "streamingtoken", "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(manifest["spec"]["version"], format!("v{version}"), "{text}");
    let short = manifest["spec"]["shortDescription"].as_str().unwrap_or("");
    assert!(!short.is_empty() && !short.contains('\n'), "{text}");
    let entries = manifest["spec"]["platforms"].as_array().expect("platforms");
    let published = platforms();
    assert_eq!(
        entries.len(),
        published.len(),
        "one entry per platform: {text}"
    );
    for platform in &published {
        let arch = platform.trim_start_matches("linux/");
        let entry = entries
            .iter()
            .find(|entry| {
                entry["selector"]["matchLabels"] == serde_json::json!({"os": "linux", "arch": arch})
            })
            .unwrap_or_else(|| panic!("no entry selecting {platform}: {text}"));
        let name = format!("kubectl-streamingtoken_linux_{arch}.tar.gz");
        let archive = dir.join(&name);
        let bytes = std::fs::read(&archive).expect("the archive");
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(entry["sha256"], sha256, "{name}: {text}");
        assert!(
            entry["uri"]
                .as_str()
                .is_some_and(|uri| uri.ends_with(&format!("/{name}"))),
            "{text}"
        );
        assert_eq!(entry["bin"], "kubectl-streamingtoken", "{text}");

        let (ok, output, root) = krew_install(&manifest_path, &archive, arch);
        assert!(ok, "krew install ({platform}): {output}");
        let store = root.path().join(format!("store/streamingtoken/v{version}"));
        for file in ["kubectl-streamingtoken", "LICENSE"] {
            assert!(
                store.join(file).is_file(),
                "{platform}: {file} not installed: {output}"
            );
        }
        let linked = root.path().join("bin/kubectl-streamingtoken");
        assert!(
            linked.exists(),
            "{platform}: no bin/kubectl-streamingtoken: {output}"
        );

        // krew checks the archive against the manifest: one changed byte is refused.
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let changed = tempfile::tempdir().expect("temp dir");
        let changed_archive = changed.path().join(&name);
        std::fs::write(&changed_archive, tampered).expect("written");
        let (ok, output, _) = krew_install(&manifest_path, &changed_archive, arch);
        assert!(
            !ok && output.contains("checksum does not match"),
            "a tampered archive installed: {output}"
        );

        if arch == "amd64" {
            // kubectl finds the installed plugin (as krew tells users to: KREW_ROOT/bin on the
            // PATH) and runs it as `kubectl streamingtoken`.
            let kubectl = |args: &[&str]| {
                std::process::Command::new(support::bin_dir().join("kubectl"))
                    .env_clear()
                    .env("PATH", root.path().join("bin"))
                    .env("KUBECONFIG", support::kubeconfig_path())
                    .args(args)
                    .output()
                    .expect("kubectl runs")
            };
            let output = kubectl(&["streamingtoken", "version", "--client"]);
            assert!(output.status.success(), "{output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                format!("Client    {version}\n")
            );
            let help = kubectl(&["streamingtoken", "rotate", "--help"]);
            assert!(
                String::from_utf8_lossy(&help.stdout)
                    .contains("Usage: kubectl streamingtoken rotate"),
                "{help:?}"
            );
        }
    }
}
