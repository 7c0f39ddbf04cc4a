//! Real processes on the real node (`tests/node`): the test client (`tests/client`) runs in real
//! pods of a real kubelet, takes its token from the mirror Secret as a Quix app does, and calls
//! the test platform every 100 ms. The platform, which rotates the pair when the operator asks
//! and then rejects the old Token 1, records every call: it is the judge of what clients saw.
//!
//! - ZeroDowntime with 3 consumers x 3 replicas: no call rejected (asserted).
//! - Restart: the outage each client saw, in seconds (reported; > 0 asserted, the positive
//!   control).
//! - The kubelet's delivery of Secret values: a mounted file in a running pod, and `env` of a pod
//!   created 0-1 s after a write (reported, against the operator's 2 s cache margin).
//! - A container restarted mid-rotation: which token its new process sends (asserted: the value
//!   the key holds at the restart, not at the pod's start).
//! - The operator's own image, installed with the chart on the real node (in-cluster config,
//!   its ServiceAccount token, non-root, read-only root, probes), completing a rotation.
//!
//! Figures are printed as `[realnode] ...` lines.

use crate::support::platform::TestPlatform;
use crate::support::realnode::{
    self, Call, NamespaceGuard, TokenFrom, WORKSPACE, broker_calls, by_client, client_deployment,
    client_pod, percentile, seconds, wait_pods_calling,
};
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use streaming_token_operator::api::{RotationStrategy, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(180);
const TOKEN: &str = "rn";

/// The StreamingToken of these tests: the pair lives at the platform (the operator reads it
/// there and rotates it there, once), and consumers read `Quix__Sdk__Token`.
fn token(namespace: &str, platform: &TestPlatform, strategy: RotationStrategy) -> StreamingToken {
    let mut token = fixtures::token(TOKEN, namespace)
        .with_trigger("t0")
        .strategy(strategy)
        .build();
    token.spec.source.generate = None;
    token.spec.source.platform = Some(Default::default());
    token.spec.consumers.env_var = "Quix__Sdk__Token".into();
    token.spec.platform = Some(
        serde_json::from_value(platform.spec(WORKSPACE, "5s", Some("quix-pat")))
            .expect("platform spec"),
    );
    token
}

async fn pat_secret(admin: &Client, namespace: &str, platform: &TestPlatform) {
    let pat = platform.pat("Admin", "720h").await;
    support::apply(
        &Api::<Secret>::namespaced(admin.clone(), namespace),
        &Secret {
            metadata: fixtures::metadata("quix-pat", namespace),
            data: Some(BTreeMap::from([(
                "pat".to_string(),
                ByteString(pat.into_bytes()),
            )])),
            ..Secret::default()
        },
    )
    .await;
}

/// A namespace with a platform, the operator (a process on the host, as its own
/// ServiceAccount), the StreamingToken Ready and `apps` Deployments of `replicas` real clients
/// each, all of them calling with success.
struct Setup {
    admin: Client,
    namespace: String,
    tokens: Api<StreamingToken>,
    platform: TestPlatform,
    _operator: Option<Operator>,
    /// The pods of each app before the rotation.
    pods: Vec<String>,
    _guard: NamespaceGuard,
}

impl Setup {
    async fn start(
        prefix: &str,
        strategy: RotationStrategy,
        apps: &[&str],
        replicas: i32,
        min_ready_seconds: Option<i32>,
    ) -> Self {
        realnode::cluster_dir();
        let admin = support::admin_client().await;
        let namespace = support::namespace(&admin, prefix).await;
        let guard = NamespaceGuard(namespace.clone());
        let platform = TestPlatform::start().await;
        platform.workspace(WORKSPACE).await;
        pat_secret(&admin, &namespace, &platform).await;
        let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
        let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
        support::apply(&tokens, &token(&namespace, &platform, strategy)).await;
        wait_condition(&tokens, TOKEN, "Ready", "True", "TokensReady", TIMEOUT).await;
        let started = jiff::Timestamp::now();
        // The consumers come once the mirror exists: a real kubelet would otherwise back off
        // creating their containers (CreateContainerConfigError) for several seconds.
        let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
        for app in apps {
            let mut deployment = client_deployment(app, &namespace, TOKEN, replicas, &platform.url);
            deployment.spec.min_ready_seconds = min_ready_seconds;
            support::apply(&deployments, &deployment).await;
        }
        let pods = wait_pods_calling(
            &admin,
            &namespace,
            apps,
            usize::try_from(replicas).expect("replicas"),
            &platform,
            started,
            5,
        )
        .await;
        Self {
            admin,
            namespace,
            tokens,
            platform,
            _operator: Some(operator),
            pods,
            _guard: guard,
        }
    }

    /// Asks for rotation `r1` and waits until it completed; returns when it was asked.
    async fn rotate(&self) -> jiff::Timestamp {
        let asked = jiff::Timestamp::now();
        support::set_trigger(&self.tokens, TOKEN, "t1").await;
        support::wait_rotation_done(&self.tokens, TOKEN, "r1", TIMEOUT).await;
        asked
    }

    /// The platform really rotated, once: Token 2 promoted, the former Token 1 deactivated.
    async fn assert_rotated_at_the_platform(&self) -> jiff::Timestamp {
        let calls = self.platform.calls("rotate").await;
        assert_eq!(calls.len(), 1, "exactly one rotate call: {calls:?}");
        assert_eq!(calls[0]["status"], 200, "the rotate call succeeded");
        calls[0]["time"]
            .as_str()
            .and_then(|time| time.parse().ok())
            .expect("the rotate call's time")
    }
}

fn ours<'a>(calls: &'a [Call], apps: &[&str]) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|call| {
            apps.iter()
                .any(|app| call.client.starts_with(&format!("{app}-")))
        })
        .collect()
}

fn ok_count(calls: &[Call], from: jiff::Timestamp, to: jiff::Timestamp) -> usize {
    calls
        .iter()
        .filter(|call| call.status == 200 && call.time >= from && call.time <= to)
        .count()
}

const ZERO_APPS: [&str; 3] = ["zd-ingest", "zd-enrich", "zd-publish"];

/// ZeroDowntime with 3 consumers x 3 replicas of real clients: every consumer repointed to
/// Token 2 and rolled, Token 1 deactivated at the platform only then: not one call rejected.
#[tokio::test(flavor = "multi_thread")]
async fn zero_downtime_rotation_real_clients_are_never_rejected() {
    let setup = Setup::start(
        "rn-zero",
        RotationStrategy::ZeroDowntime,
        &ZERO_APPS,
        3,
        None,
    )
    .await;
    let asked = setup.rotate().await;
    let done = jiff::Timestamp::now();
    let deactivated = setup.assert_rotated_at_the_platform().await;
    let after = wait_pods_calling(
        &setup.admin,
        &setup.namespace,
        &ZERO_APPS,
        3,
        &setup.platform,
        done,
        5,
    )
    .await;
    let end = jiff::Timestamp::now();
    let calls = broker_calls(&setup.platform).await;
    let ours: Vec<Call> = ours(&calls, &ZERO_APPS).into_iter().cloned().collect();
    let clients = by_client(&ours);
    let rejected: Vec<&Call> = ours.iter().filter(|call| call.status != 200).collect();
    let deactivated_serial = calls
        .iter()
        .filter(|call| call.time < deactivated && call.state == "current1")
        .map(|call| call.serial)
        .next_back();
    let last_old = ours
        .iter()
        .filter(|call| Some(call.serial) == deactivated_serial)
        .map(|call| call.time)
        .max();
    println!(
        "[realnode] zero-downtime: {} pods before, {} after, {} calls by them, {} rejected; \
         rotation {:.1}s; Token 1 deactivated at the platform {:.1}s after the last call that \
         used it",
        setup.pods.len(),
        after.len(),
        ours.len(),
        rejected.len(),
        seconds(asked, done),
        last_old.map_or(f64::NAN, |last| seconds(last, deactivated)),
    );
    assert!(
        rejected.is_empty(),
        "real clients were rejected during a ZeroDowntime rotation: {rejected:#?}"
    );
    // The positive side: every client called throughout, the old ones until they were
    // replaced, the new ones after the deactivation.
    for pod in &setup.pods {
        let calls = clients.get(pod).map(Vec::as_slice).unwrap_or_default();
        assert!(
            ok_count(calls, jiff::Timestamp::MIN, asked) > 0,
            "{pod} called with success before the rotation"
        );
    }
    for pod in &after {
        let calls = clients.get(pod).map(Vec::as_slice).unwrap_or_default();
        let ok = ok_count(calls, done, end);
        assert!(ok > 0, "{pod} called with success after the rotation");
        assert!(
            calls
                .iter()
                .filter(|call| call.time >= done)
                .all(|call| call.state == "current1"),
            "{pod} uses the promoted token"
        );
    }
    assert!(
        setup.pods.iter().all(|pod| !after.contains(pod)),
        "every consumer pod was replaced"
    );
}

const RESTART_APPS: [&str; 2] = ["rs-ingest", "rs-enrich"];

/// Restart: the platform deactivates Token 1 first, then every consumer restarts. The outage
/// each client saw, from the platform's record:
/// - `failing` per old pod: its first rejected call to its last (how long that process kept
///   calling with the dead token before it was stopped);
/// - `outage` per replica slot of a Deployment: the old pods ordered by their last call, the new
///   pods by their first successful call, paired in that order; from the old pod's first
///   rejected call to the new pod's first successful one (how long that slot served nothing).
#[tokio::test(flavor = "multi_thread")]
async fn restart_rotation_outage_each_real_client_saw() {
    let setup = Setup::start(
        "rn-restart",
        RotationStrategy::Restart,
        &RESTART_APPS,
        3,
        None,
    )
    .await;
    let asked = setup.rotate().await;
    let done = jiff::Timestamp::now();
    let deactivated = setup.assert_rotated_at_the_platform().await;
    let after = wait_pods_calling(
        &setup.admin,
        &setup.namespace,
        &RESTART_APPS,
        3,
        &setup.platform,
        done,
        3,
    )
    .await;
    let calls = broker_calls(&setup.platform).await;
    let clients = by_client(&calls);
    let mut outages = Vec::new();
    let mut failing = Vec::new();
    for app in RESTART_APPS {
        let prefix = format!("{app}-");
        // (pod, first rejection, last rejection, last call)
        let mut old: Vec<(String, jiff::Timestamp, jiff::Timestamp, jiff::Timestamp)> = setup
            .pods
            .iter()
            .filter(|pod| pod.starts_with(&prefix))
            .map(|pod| {
                let calls = clients.get(pod).map(Vec::as_slice).unwrap_or_default();
                let rejected: Vec<_> = calls
                    .iter()
                    .filter(|call| call.status == 401)
                    .map(|call| call.time)
                    .collect();
                assert!(
                    !rejected.is_empty(),
                    "{pod} held the deactivated token: the platform rejected it (the positive \
                     control)"
                );
                let last = calls.iter().map(|call| call.time).max().expect("calls");
                (pod.clone(), rejected[0], rejected[rejected.len() - 1], last)
            })
            .collect();
        old.sort_by_key(|entry| entry.3);
        let mut new: Vec<(String, jiff::Timestamp)> = after
            .iter()
            .filter(|pod| pod.starts_with(&prefix))
            .map(|pod| {
                let first = clients
                    .get(pod)
                    .and_then(|calls| calls.iter().find(|call| call.status == 200))
                    .map(|call| call.time)
                    .expect("a successful call");
                (pod.clone(), first)
            })
            .collect();
        new.sort_by_key(|entry| entry.1);
        assert_eq!(old.len(), new.len(), "{app}: one new pod per old pod");
        for (slot, ((pod, first, last, _), (replacement, ok))) in old.iter().zip(&new).enumerate() {
            let window = seconds(*first, *last);
            let outage = seconds(*first, *ok);
            println!(
                "[realnode] restart outage {app} slot {slot}: {pod} rejected for {window:.1}s \
                 (from {:.1}s after the deactivation), {replacement} first served {outage:.1}s \
                 after {pod}'s first rejection",
                seconds(deactivated, *first)
            );
            failing.push(window);
            outages.push(outage);
        }
    }
    let rejected = ours(&calls, &RESTART_APPS)
        .iter()
        .filter(|call| call.status == 401)
        .count();
    println!(
        "[realnode] restart outage per replica slot: max {:.1}s, p50 {:.1}s; per old pod \
         rejected for max {:.1}s, p50 {:.1}s; {rejected} calls rejected; {} pods; rotation \
         {:.1}s",
        percentile(&outages, 100),
        percentile(&outages, 50),
        percentile(&failing, 100),
        percentile(&failing, 50),
        outages.len(),
        seconds(asked, done)
    );
    assert!(
        percentile(&outages, 100) > 0.0,
        "Restart deactivates first: clients see an outage (the platform's positive control)"
    );
}

/// How a real kubelet delivers a new Secret value, measured against the operator's rules (a
/// pod mounting the Token 1 key may read it at any time; a pod created within
/// KUBELET_CACHE_MARGIN_SECONDS (2 s, 5 s before these measurements) of a write may have read
/// the former value):
/// - a mounted Secret file in a running pod (the client re-reads it): the delay until the
///   platform sees the new token from it;
/// - `env` of a pod created 0, 0.25, 0.5, 0.75 and 1 s after a write, while another pod on the
///   node already references the Secret (so the kubelet's watch-fed cache of it is warm): which
///   value its process sent.
#[tokio::test(flavor = "multi_thread")]
async fn kubelet_delivery_of_a_new_secret_value_file_and_env_at_start() {
    realnode::cluster_dir();
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "rn-kubelet").await;
    let _guard = NamespaceGuard(namespace.clone());
    let platform = TestPlatform::start().await;
    let (token1, token2) = platform.workspace(WORKSPACE).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    for name in ["file-token", "env-token"] {
        support::apply(
            &secrets,
            &realnode::secret(name, &namespace, "token", &token1),
        )
        .await;
    }
    let started = jiff::Timestamp::now();
    for pod in [
        client_pod(
            "file-reader",
            &namespace,
            &platform.url,
            TokenFrom::File("file-token", "token"),
        ),
        client_pod(
            "env-anchor",
            &namespace,
            &platform.url,
            TokenFrom::Env("env-token", "token"),
        ),
    ] {
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod created");
    }
    wait_calls(&platform, "file-reader", started, "current1").await;
    wait_calls(&platform, "env-anchor", started, "current1").await;

    // Both values are valid at the platform all along: the record's token state tells which
    // one a process sent (current1 = the first value, current2 = the second).
    let file = async {
        let mut delays = Vec::new();
        for (value, state) in [(&token2, "current2"), (&token1, "current1")] {
            support::apply(
                &secrets,
                &realnode::secret("file-token", &namespace, "token", value),
            )
            .await;
            let written = jiff::Timestamp::now();
            let seen = wait_calls(&platform, "file-reader", written, state).await;
            delays.push(seconds(written, seen));
        }
        delays
    };
    let env = async {
        let mut results = Vec::new();
        for attempt in 0..5u32 {
            let (value, state) = if attempt % 2 == 0 {
                (&token2, "current2")
            } else {
                (&token1, "current1")
            };
            support::apply(
                &secrets,
                &realnode::secret("env-token", &namespace, "token", value),
            )
            .await;
            let written = jiff::Timestamp::now();
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            let name = format!("env-at-start-{attempt}");
            pods.create(
                &PostParams::default(),
                &client_pod(
                    &name,
                    &namespace,
                    &platform.url,
                    TokenFrom::Env("env-token", "token"),
                ),
            )
            .await
            .expect("pod created");
            let created = jiff::Timestamp::now();
            let first = wait_for(&format!("{name} to call the platform"), TIMEOUT, || async {
                broker_calls(&platform)
                    .await
                    .into_iter()
                    .find(|call| call.client == name)
                    .ok_or_else(|| "no call yet".to_string())
            })
            .await;
            realnode::delete_pod(&admin, &namespace, &name).await;
            results.push((
                seconds(written, created),
                seconds(written, first.time),
                first.state == state,
                first.state.clone(),
            ));
        }
        results
    };
    let (delays, results) = tokio::join!(file, env);
    println!(
        "[realnode] kubelet: a mounted Secret file in a running pod showed the new value after {} \
         (node syncFrequency {})",
        delays
            .iter()
            .map(|delay| format!("{delay:.1}s"))
            .collect::<Vec<_>>()
            .join(", "),
        std::env::var("NODE_SYNC_FREQUENCY").unwrap_or_else(|_| "10s".into())
    );
    for (created, called, new, state) in &results {
        println!(
            "[realnode] kubelet: env of a pod created {created:.2}s after the write (first call \
             {called:.2}s after it): {} value ({state})",
            if *new { "the new" } else { "the FORMER" }
        );
    }
    println!(
        "[realnode] kubelet: env at start had the new value in {} of {} pods created 0-1 s after \
         the write",
        results.iter().filter(|result| result.2).count(),
        results.len()
    );
    assert_eq!(delays.len(), 2, "both file updates seen");
    assert!(
        results
            .iter()
            .all(|(_, _, _, state)| state == "current1" || state == "current2"),
        "every env pod sent one of the two values: {results:?}"
    );
}

/// The first call from `client` at or after `since` whose token was in `state`.
async fn wait_calls(
    platform: &TestPlatform,
    client: &str,
    since: jiff::Timestamp,
    state: &str,
) -> jiff::Timestamp {
    wait_for(
        &format!("{client} to call with a {state} token"),
        TIMEOUT,
        || async {
            broker_calls(platform)
                .await
                .into_iter()
                .find(|call| call.client == client && call.time >= since && call.state == state)
                .map(|call| call.time)
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await
}

/// A container restarted mid-rotation (its process killed with SIGKILL through the node's
/// containerd; restartPolicy Always starts it again in the same pod): the Restart strategy has
/// deactivated Token 1 and promoted Token 2 into the Token 1 key, and the pod (still of the old
/// template: minReadySeconds keeps it while its replacement is not yet available) keeps failing
/// until its container restarts. The restarted process resolves `env` again from the Secret: it
/// sends the promoted token, a value the pod never had at its start (the ledger, which judges
/// from the pod's creation and start, does not expect it).
#[tokio::test(flavor = "multi_thread")]
async fn a_container_restarted_mid_rotation_resolves_its_env_again() {
    let setup = Setup::start(
        "rn-crash",
        RotationStrategy::Restart,
        &["crash"],
        1,
        Some(25),
    )
    .await;
    let pod = setup.pods[0].clone();
    let (container, restarts) = realnode::container_id(&setup.admin, &setup.namespace, &pod).await;
    assert_eq!(restarts, 0);
    let asked = jiff::Timestamp::now();
    support::set_trigger(&setup.tokens, TOKEN, "t1").await;
    let rejected = wait_for(
        &format!("{pod} to be rejected (Token 1 deactivated)"),
        TIMEOUT,
        || async {
            broker_calls(&setup.platform)
                .await
                .into_iter()
                .find(|call| call.client == pod && call.status == 401)
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    realnode::node_sh(&["kill-container", &container]);
    let killed = jiff::Timestamp::now();
    let (_, restarts) = wait_for(
        &format!("{pod}'s container to restart"),
        TIMEOUT,
        || async {
            let (id, restarts) = realnode::container_id(&setup.admin, &setup.namespace, &pod).await;
            if restarts >= 1 && id != container {
                Ok((id, restarts))
            } else {
                Err(format!("restarts {restarts}"))
            }
        },
    )
    .await;
    let after_restart = wait_for(
        &format!("{pod}'s restarted container to call"),
        TIMEOUT,
        || async {
            let calls: Vec<Call> = broker_calls(&setup.platform)
                .await
                .into_iter()
                .filter(|call| call.client == pod && call.time > killed)
                .collect();
            if calls.len() >= 3 {
                Ok(calls)
            } else {
                Err(format!("{} calls", calls.len()))
            }
        },
    )
    .await;
    let pod_still_old = Api::<Pod>::namespaced(setup.admin.clone(), &setup.namespace)
        .get_opt(&pod)
        .await
        .expect("pod read")
        .is_some_and(|pod| pod.metadata.deletion_timestamp.is_none());
    support::wait_rotation_done(&setup.tokens, TOKEN, "r1", TIMEOUT).await;
    let first = &after_restart[0];
    println!(
        "[realnode] container restart: {pod} rejected from {:.1}s after the trigger (serial {}, \
         {}); its container killed {:.1}s later, restarted (restartCount {restarts}) and its new \
         process first called {:.1}s after the kill with serial {} ({}, status {}): {} (the pod \
         was {}replaced yet)",
        seconds(asked, rejected.time),
        rejected.serial,
        rejected.state,
        seconds(rejected.time, killed),
        seconds(killed, first.time),
        first.serial,
        first.state,
        first.status,
        if first.state == "current1" {
            "it re-resolved its env from the Secret's current Token 1 key, the promoted token"
        } else {
            "it kept the value of the pod's start"
        },
        if pod_still_old { "not " } else { "" },
    );
    assert!(
        pod_still_old,
        "the old pod was still there when its container restarted"
    );
    assert!(
        after_restart.iter().all(|call| call.status == 200
            && call.state == "current1"
            && call.serial != rejected.serial),
        "a restarted container resolves env again: it sends the promoted Token 1: {after_restart:#?}"
    );
}

/// The operator's test image (`tests/image/build.sh`): its directory (image.tar, image.ref).
fn operator_image() -> (PathBuf, String) {
    let dir = std::env::var_os("STO_E2E_OPERATOR_IMAGE")
        .map(PathBuf::from)
        .expect(
            "STO_E2E_OPERATOR_IMAGE names the operator's test image directory \
         (tests/image/build.sh); make test sets it",
        );
    let reference = std::fs::read_to_string(dir.join("image.ref"))
        .expect("image.ref")
        .trim()
        .to_string();
    (dir.join("image.tar"), reference)
}

/// The API server's port (from the admin kubeconfig's `https://127.0.0.1:PORT`).
fn apiserver_port() -> String {
    let text = std::fs::read_to_string(support::kubeconfig_path()).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("server:"))
        .expect("a server")
        .trim()
        .trim_matches('"');
    server
        .rsplit(':')
        .next()
        .expect("a port")
        .trim_end_matches('/')
        .to_string()
}

/// The host's view of a process: (pid, /proc/PID/status, /proc/PID/mountinfo).
fn host_process(argv0: &str, arg: &str) -> Option<(u32, String, String)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|part| String::from_utf8_lossy(part).to_string())
            .collect();
        if args.first().map(String::as_str) == Some(argv0) && args.iter().any(|a| a == arg) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
            return Some((pid, status, mounts));
        }
    }
    None
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_default()
}

/// The operator's own image (built without a container engine by tests/image/build.sh), installed
/// with the chart on the real node: it connects with its in-cluster config and the ServiceAccount
/// token the kubelet mounts, runs as 65532 on a read-only root without capabilities, its probes
/// pass, and it completes a rotation at the platform with a real client that is never rejected.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_image_installed_with_the_chart_rotates_on_the_real_node() {
    realnode::cluster_dir();
    let (tarball, reference) = operator_image();
    realnode::node_sh(&["import", &tarball.display().to_string()]);
    let (repository, tag) = reference.rsplit_once(':').expect("repository:tag");
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "rn-chart").await;
    let _guard = NamespaceGuard(namespace.clone());
    let platform = TestPlatform::start().await;
    platform.workspace(WORKSPACE).await;
    pat_secret(&admin, &namespace, &platform).await;
    let release = format!("rn{}", std::process::id());
    let port = support::free_port();
    let values = serde_json::json!({
        "replicaCount": 1,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [namespace],
        // The tests share the cluster's CRDs (see ship.rs).
        "crds": {"enabled": false},
        "rbac": {"aggregateToBuiltinRoles": false},
        "logFormat": "text",
        "logLevel": "info,streaming_token_operator=debug",
        "metrics": {"port": port, "bindAddress": "127.0.0.1"},
        "hostNetwork": true,
        // No kube-proxy here: the `kubernetes` Service's ClusterIP is not routable.
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": apiserver_port()},
        ],
        "nodeSelector": {"streamingtoken.io/test-node": "real"},
        "tolerations": [{"key": "streamingtoken.io/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let values_file = dir.path().join("values.yaml");
    std::fs::write(&values_file, values.to_string()).expect("values written");
    let installed = std::time::Instant::now();
    let output = support::helm(&[
        "install",
        &release,
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/streaming-token-operator"
        ),
        "--namespace",
        &namespace,
        "--values",
        &values_file.display().to_string(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(
        output.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let name = format!("{release}-streaming-token-operator");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let operator_pod = wait_for("the operator pod Ready", TIMEOUT, || async {
        let list = pods
            .list(
                &kube::api::ListParams::default()
                    .labels(&format!("app.kubernetes.io/instance={release}")),
            )
            .await
            .map_err(|error| error.to_string())?;
        list.items
            .into_iter()
            .find(|pod| {
                pod.status
                    .as_ref()
                    .and_then(|status| status.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            })
            .ok_or_else(|| "not Ready".to_string())
    })
    .await;
    let ready_after = installed.elapsed();
    assert_eq!(
        operator_pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref()),
        Some("real-node-1"),
        "the operator runs on the real node"
    );
    // The process as the host sees it: the image's entrypoint, the chart's security context.
    let (pid, status, mounts) = host_process(
        "/streaming-token-operator",
        &format!("--metrics-bind-address=127.0.0.1:{port}"),
    )
    .expect("the operator's process runs on this host");
    assert_eq!(status_field(&status, "Uid:"), "65532\t65532\t65532\t65532");
    assert_eq!(status_field(&status, "Gid:"), "65532\t65532\t65532\t65532");
    assert_eq!(status_field(&status, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    let root = mounts
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    assert!(
        root.split(' ')
            .nth(5)
            .is_some_and(|options| options.split(',').any(|option| option == "ro")),
        "the root filesystem is read-only: {root}"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("KUBECONFIG="),
        "no kubeconfig: in-cluster config"
    );
    assert!(
        mounts.contains("/var/run/secrets/kubernetes.io/serviceaccount"),
        "the ServiceAccount token is mounted"
    );
    // Its health endpoints, on the node's loopback (the probes call the same).
    assert_eq!(
        support::http_get(port, "/healthz")
            .await
            .map(|(code, _)| code),
        Some(200)
    );
    assert_eq!(
        support::http_get(port, "/readyz")
            .await
            .map(|(code, _)| code),
        Some(200)
    );

    // A rotation at the platform with one real client.
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &tokens,
        &token(&namespace, &platform, RotationStrategy::ZeroDowntime),
    )
    .await;
    wait_condition(&tokens, TOKEN, "Ready", "True", "TokensReady", TIMEOUT).await;
    let started = jiff::Timestamp::now();
    support::apply(
        &Api::<Deployment>::namespaced(admin.clone(), &namespace),
        &client_deployment("consumer", &namespace, TOKEN, 1, &platform.url),
    )
    .await;
    wait_pods_calling(&admin, &namespace, &["consumer"], 1, &platform, started, 5).await;
    let asked = std::time::Instant::now();
    support::set_trigger(&tokens, TOKEN, "t1").await;
    support::wait_rotation_done(&tokens, TOKEN, "r1", TIMEOUT).await;
    let rotation = asked.elapsed();
    let rotate = platform.calls("rotate").await;
    assert_eq!(rotate.len(), 1, "exactly one rotate call: {rotate:?}");
    let done = jiff::Timestamp::now();
    wait_pods_calling(&admin, &namespace, &["consumer"], 1, &platform, done, 3).await;
    let calls = broker_calls(&platform).await;
    let consumer = ours(&calls, &["consumer"]);
    let rejected = consumer.iter().filter(|call| call.status != 200).count();
    assert_eq!(rejected, 0, "the real client was never rejected");
    // Everything it did, it did as its ServiceAccount, from inside the pod.
    let user = support::service_account_user(&namespace, &name);
    let writes = support::audited_writes(&user);
    assert!(
        writes
            .iter()
            .any(|entry| entry["objectRef"]["resource"] == "deployments"),
        "the operator in the pod patched the consumer as {user}"
    );
    let pod = pods
        .get(operator_pod.metadata.name.as_deref().expect("named"))
        .await
        .expect("operator pod");
    let container = pod
        .status
        .and_then(|status| status.container_statuses)
        .and_then(|statuses| statuses.into_iter().next())
        .expect("container status");
    assert_eq!(
        container.restart_count, 0,
        "probes passing: never restarted"
    );
    assert!(container.ready, "still Ready");
    println!(
        "[realnode] chart: the operator image {reference} Ready on real-node-1 {:.1}s after helm \
         install (uid 65532, read-only root, no capabilities, in-cluster config, {} writes as \
         {user}); rotation at the platform in {:.1}s, {} calls by the real client, 0 rejected",
        ready_after.as_secs_f64(),
        writes.len(),
        rotation.as_secs_f64(),
        consumer.len(),
    );
    let _ = support::helm(&["uninstall", &release, "--namespace", &namespace]);
}

/// The chart's values for a node without kube-proxy or pod network (what the real node needs):
/// hostNetwork, a loopback metrics address with probes on the node's loopback, extra env; and
/// the schema refuses what cannot work. Needs helm only.
#[test]
fn chart_values_for_a_host_network_node() {
    let documents = support::render_chart(
        "templates/deployment.yaml",
        &[
            "hostNetwork=true",
            "metrics.bindAddress=127.0.0.1",
            "metrics.port=18080",
            "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
            "extraEnv[0].value=127.0.0.1",
        ],
    );
    let spec = &documents[0]["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let container = &spec["containers"][0];
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|arg| arg == "--metrics-bind-address=127.0.0.1:18080")
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["host"], "127.0.0.1", "{probe}");
    }
    assert!(
        container["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|env| env["name"] == "KUBERNETES_SERVICE_HOST" && env["value"] == "127.0.0.1")
    );
    // Defaults unchanged: all addresses, probes on the pod's IP, no host network.
    let documents = support::render_chart("templates/deployment.yaml", &[]);
    let spec = &documents[0]["spec"]["template"]["spec"];
    assert!(spec.get("hostNetwork").is_none());
    let container = &spec["containers"][0];
    assert!(container["livenessProbe"]["httpGet"].get("host").is_none());
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|arg| arg == "--metrics-bind-address=0.0.0.0:8080")
    );
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/streaming-token-operator"
    );
    for (set, expect) in [
        (
            "metrics.bindAddress=127.0.0.1",
            "a loopback address needs hostNetwork",
        ),
        ("metrics.bindAddress=localhost", "bindAddress"),
        ("extraEnv[0].value=x", "extraEnv"),
        ("hostNetwork=yes", "hostNetwork"),
    ] {
        let output = std::process::Command::new(support::bin_dir().join("helm"))
            .args(["template", "sto", chart, "--set", set])
            .output()
            .expect("helm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expect),
            "helm template --set {set} must fail naming {expect}: {stderr}"
        );
    }
}
