//! Benchmarks on the real control plane (`make bench`): rotation latency for 10 and 100
//! consumers, and memory per 1,000 watched consumers. They print figures and assert only that
//! the work completed: the machines are shared and noisy, so no timing is asserted.

use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streaming_token_operator::api::ROTATION_ANNOTATION;
use streaming_token_operator::api::StreamingToken;

/// Waits until `count` Deployments of `deployments` have their one replica available.
async fn wait_available(deployments: &Api<Deployment>, count: usize, timeout: Duration) {
    wait_for("every consumer available", timeout, || async {
        let list = deployments
            .list(&Default::default())
            .await
            .map_err(|error| error.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|deployment| {
                deployment
                    .status
                    .as_ref()
                    .and_then(|status| status.available_replicas)
                    == Some(1)
            })
            .count();
        if ready == count {
            Ok(())
        } else {
            Err(format!("{ready}/{count}"))
        }
    })
    .await;
}

async fn rotation_latency(consumers: usize) {
    rotation_latency_with(consumers, None).await;
}

/// Rotation latency with a restart budget (`spec.rotation.maxConcurrentConsumers`).
async fn rotation_latency_with(consumers: usize, budget: Option<i32>) {
    let admin = support::admin_client().await;
    let namespace = support::namespace(
        &admin,
        &format!(
            "bench-rotate-{consumers}{}",
            budget
                .map(|budget| format!("-b{budget}"))
                .unwrap_or_default()
        ),
    )
    .await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "info".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names: Vec<String> = (0..consumers)
        .map(|index| format!("consumer-{index:03}"))
        .collect();
    for name in &names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("bench"), 1),
        )
        .await;
    }
    let mut token = fixtures::token("bench", &namespace)
        .with_trigger("t0")
        .build();
    token.spec.rotation.max_concurrent_consumers =
        budget.map(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int);
    support::apply(&tokens, &token).await;
    wait_condition(
        &tokens,
        "bench",
        "Ready",
        "True",
        "TokensReady",
        Duration::from_secs(120),
    )
    .await;
    wait_available(&deployments, consumers, Duration::from_secs(300)).await;

    // Independent observers: phases of the StreamingToken, deletions of old pods, the Secret.
    let phases: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    {
        let sink = phases.clone();
        let mut stream = watcher(tokens.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        tokio::spawn(async move {
            while let Some(Ok(token)) = stream.next().await {
                if let Some(rotation) = token.status.and_then(|status| status.rotation) {
                    sink.lock()
                        .expect("lock")
                        .entry(rotation.phase)
                        .or_insert_with(Instant::now);
                }
            }
        });
    }
    let last_old_pod_gone: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stamp = support::rotation_stamp(&tokens, "bench", "r1").await;
    {
        let sink = last_old_pod_gone.clone();
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Delete(pod) = event
                    && pod
                        .annotations()
                        .get(ROTATION_ANNOTATION)
                        .map(String::as_str)
                        != Some(stamp.as_str())
                {
                    *sink.lock().expect("lock") = Some(Instant::now());
                }
            }
        });
    }
    let old_token2 = support::secret_value(&admin, &namespace, "bench", "token2")
        .await
        .expect("token2");
    let deactivated: Arc<Mutex<Option<Instant>>> = Arc::default();
    {
        let sink = deactivated.clone();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
        let mut stream = watcher(
            secrets,
            watcher::Config::default().fields("metadata.name=bench"),
        )
        .applied_objects()
        .boxed();
        tokio::spawn(async move {
            while let Some(Ok(secret)) = stream.next().await {
                let token1 = secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get("token1"))
                    .map(|value| value.0.clone());
                if token1.as_deref() == Some(old_token2.as_bytes()) {
                    sink.lock().expect("lock").get_or_insert_with(Instant::now);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = support::rss_kib(operator.child.id().expect("pid"));
    let triggered_at = jiff::Timestamp::now();
    let triggered = Instant::now();
    tokens
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"trigger": "t1"}}})),
        )
        .await
        .expect("trigger");
    support::wait_rotation_done(&tokens, "bench", "r1", Duration::from_secs(600)).await;
    let completed = Instant::now();
    // Let the audit log catch up with the last requests of the rotation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = support::audited_requests(
        &support::service_account_user(&namespace, "streaming-token-operator"),
        triggered_at,
        jiff::Timestamp::now(),
    );
    let total: usize = requests.values().sum();
    eprintln!(
        "[bench] {consumers} consumers{}: {total} API requests by the operator from trigger to completion (+2 s): {requests:?}",
        budget
            .map(|budget| format!(" (budget {budget})"))
            .unwrap_or_default()
    );
    let phases = phases.lock().expect("lock").clone();
    let deactivated = deactivated
        .lock()
        .expect("lock")
        .expect("deactivation observed");
    let last_old = last_old_pod_gone
        .lock()
        .expect("lock")
        .expect("old pods deleted");
    let since = |instant: Instant| {
        format!(
            "{:.2}s",
            instant.saturating_duration_since(triggered).as_secs_f64()
        )
    };
    eprintln!(
        "[bench] {consumers} consumers{}: trigger -> Repointing {}, -> AwaitingRollout {}, -> deactivation {}, -> complete {}; \
         last old pod deleted -> deactivation {:.0} ms; operator RSS {} KiB -> {} KiB",
        budget
            .map(|budget| format!(" (budget {budget})"))
            .unwrap_or_default(),
        phases
            .get("Repointing")
            .map_or("-".into(), |instant| since(*instant)),
        phases
            .get("AwaitingRollout")
            .map_or("-".into(), |instant| since(*instant)),
        since(deactivated),
        since(completed),
        deactivated
            .saturating_duration_since(last_old)
            .as_secs_f64()
            * 1000.0,
        rss_before,
        support::rss_kib(operator.child.id().expect("pid")),
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_rotation_latency_10_consumers() {
    rotation_latency(10).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_rotation_latency_100_consumers() {
    rotation_latency(100).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_rotation_latency_100_consumers_budget_10() {
    rotation_latency_with(100, Some(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_rotation_latency_100_consumers_budget_100() {
    rotation_latency_with(100, Some(100)).await;
}

/// Memory: the operator's resident set before and after 1,000 labelled consumers appear (and
/// 1,000 unlabelled Deployments, which it must not cache). Named to run after the rotation
/// benchmarks: its 2,000 Deployments would slow the control plane under them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_watch_memory_per_1000_consumers() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "bench-memory").await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "warn".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    for index in 0..10 {
        support::apply(
            &tokens,
            &fixtures::token(&format!("mem-{index}"), &namespace).build(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = operator.child.id().expect("pid");
    let base = support::rss_kib(pid);
    let create = |labelled: bool| {
        let deployments = deployments.clone();
        let namespace = namespace.clone();
        async move {
            let stream = futures::stream::iter(0..1000).map(|index| {
                let deployments = deployments.clone();
                let namespace = namespace.clone();
                async move {
                    let token = format!("mem-{}", index % 10);
                    let name =
                        format!("{}-{index:04}", if labelled { "labelled" } else { "other" });
                    let mut deployment = fixtures::deployment(
                        &name,
                        &namespace,
                        labelled.then_some(token.as_str()),
                        0,
                    );
                    deployment
                        .spec
                        .template
                        .metadata
                        .get_or_insert_default()
                        .annotations = Some(BTreeMap::from([(
                        "example.com/padding".to_string(),
                        "x".repeat(200),
                    )]));
                    support::apply(&deployments, &deployment).await;
                }
            });
            stream.buffer_unordered(16).collect::<Vec<()>>().await;
        }
    };
    create(false).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_unlabelled = support::rss_kib(pid);
    create(true).await;
    wait_for(
        "status to count 1,000 consumers",
        Duration::from_secs(300),
        || async {
            let list = tokens
                .list(&Default::default())
                .await
                .map_err(|error| error.to_string())?;
            let total: i32 = list
                .items
                .iter()
                .filter_map(|token| Some(token.status.as_ref()?.consumers.as_ref()?.total))
                .sum();
            if total == 1000 {
                Ok(())
            } else {
                Err(format!("{total}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_labelled = support::rss_kib(pid);
    eprintln!(
        "[bench] memory: base {base} KiB; +1,000 unlabelled Deployments {after_unlabelled} KiB (+{} KiB); \
         +1,000 labelled consumers {after_labelled} KiB (+{} KiB per 1,000 consumers)",
        after_unlabelled.saturating_sub(base),
        after_labelled.saturating_sub(after_unlabelled)
    );
}

/// Memory of the pod watch: the operator's resident set before and after 10,000 pods that
/// reference no Secret (not kept), then 1,000 pods that read the mirror Secret (kept as compact
/// records). No scheduler is named `none`, so the pods stay Pending and nothing runs them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_watch_memory_pods() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "bench-pods").await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "warn".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("pods", &namespace).build()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = operator.child.id().expect("pid");
    let base = support::rss_kib(pid);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let create = |count: usize, reader: bool| {
        let pods = pods.clone();
        let namespace = namespace.clone();
        async move {
            let stream = futures::stream::iter(0..count).map(|index| {
                let pods = pods.clone();
                let namespace = namespace.clone();
                async move {
                    let env = if reader {
                        json!([{"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "pods", "key": "token2"}}}])
                    } else {
                        json!([{"name": "MODE", "value": "batch"}])
                    };
                    let name = format!("{}-{index:05}", if reader { "reader" } else { "other" });
                    let pod: Pod = serde_json::from_value(json!({
                        "metadata": {
                            "name": name, "namespace": namespace,
                            "labels": {"app": "bench", "tier": "backend"},
                            "annotations": {"example.com/padding": "x".repeat(200)}
                        },
                        "spec": {"schedulerName": "none", "containers": [
                            {"name": "app", "image": "registry.example/app:1", "env": env}
                        ]}
                    }))
                    .expect("pod");
                    support::apply(&pods, &pod).await;
                }
            });
            stream.buffer_unordered(16).collect::<Vec<()>>().await;
        }
    };
    create(10_000, false).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_unrelated = support::rss_kib(pid);
    create(1_000, true).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_readers = support::rss_kib(pid);
    let metrics = operator.metrics().await;
    eprintln!(
        "[bench] pod memory: base {base} KiB; +10,000 pods that reference no Secret {after_unrelated} KiB (+{} KiB); \
         +1,000 pods reading the mirror Secret {after_readers} KiB (+{} KiB); operator up: {}",
        after_unrelated.saturating_sub(base),
        after_readers.saturating_sub(after_unrelated),
        !metrics.is_empty()
    );
    // Clean up in one call: 11,000 pods would slow every later test on this control plane.
    pods.delete_collection(&Default::default(), &Default::default())
        .await
        .expect("pods deleted");
}

/// Five member clusters (namespaces of the two member control planes, each reached with its own
/// credentials) with 100 consumers each: a ZeroDowntime rotation from the trigger to Token 1's
/// deactivation at the hub, the hub's memory, and the requests the hub made to each member.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_members_5_x_100_consumers() {
    use crate::support::members;
    use streaming_token_operator::api::{KubeconfigSecretRef, MemberCluster};
    const PER_MEMBER: usize = 100;
    let _serial = members::SERIAL.lock().await;
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "bench-members").await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "info".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let planes = members::members().await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let mut clusters = Vec::new();
    let mut placed = Vec::new();
    for index in 0..5 {
        let plane = &planes[index % planes.len()];
        let member_namespace = format!("{namespace}-m{index}");
        plane.namespace(&member_namespace).await;
        let kubeconfig = plane.hub_kubeconfig(&member_namespace, "bench").await;
        let secret = format!("m{index}-kubeconfig");
        support::apply(
            &secrets,
            &members::kubeconfig_secret(&secret, &namespace, &kubeconfig),
        )
        .await;
        let deployments: Api<Deployment> = Api::namespaced(plane.admin.clone(), &member_namespace);
        for consumer in 0..PER_MEMBER {
            support::apply(
                &deployments,
                &fixtures::deployment(
                    &format!("consumer-{consumer:03}"),
                    &member_namespace,
                    Some("bench"),
                    1,
                ),
            )
            .await;
        }
        clusters.push(MemberCluster {
            name: format!("m{index}"),
            kubeconfig_secret_ref: KubeconfigSecretRef {
                name: secret,
                key: "value".into(),
            },
            namespace: Some(member_namespace.clone()),
        });
        placed.push((index, plane, member_namespace));
    }
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let mut token = fixtures::token("bench", &namespace)
        .with_trigger("t0")
        .build();
    token.spec.clusters = clusters;
    support::apply(&tokens, &token).await;
    wait_for(
        "every member synced with its consumers",
        Duration::from_secs(600),
        || async {
            let status = tokens
                .get("bench")
                .await
                .map_err(|error| error.to_string())?
                .status
                .unwrap_or_default();
            let synced = status
                .clusters
                .iter()
                .filter(|member| member.state == "Synced" && member.consumers == PER_MEMBER as i32)
                .count();
            if synced == 5 {
                Ok(())
            } else {
                Err(format!("{synced}/5 synced"))
            }
        },
    )
    .await;
    for (_, plane, member_namespace) in &placed {
        let deployments = Api::<Deployment>::namespaced(plane.admin.clone(), member_namespace);
        wait_available(&deployments, PER_MEMBER, Duration::from_secs(600)).await;
    }
    let old_token2 = support::secret_value(&admin, &namespace, "bench", "token2")
        .await
        .expect("token2");
    let rss_before = support::rss_kib(operator.child.id().expect("pid"));
    let triggered_at = jiff::Timestamp::now();
    let triggered = Instant::now();
    support::set_trigger(&tokens, "bench", "t1").await;
    let deactivated = wait_for(
        "Token 1 deactivated at the hub",
        Duration::from_secs(900),
        || async {
            match support::secret_value(&admin, &namespace, "bench", "token1").await {
                Some(token1) if token1 == old_token2 => Ok(Instant::now()),
                _ => Err("not yet".to_string()),
            }
        },
    )
    .await;
    support::wait_rotation_done(&tokens, "bench", "r1", Duration::from_secs(600)).await;
    let completed = Instant::now();
    let rss_after = support::rss_kib(operator.child.id().expect("pid"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to = jiff::Timestamp::now();
    eprintln!(
        "[bench] 5 members x {PER_MEMBER} consumers: trigger -> deactivation {:.1} s, -> complete {:.1} s; hub operator RSS {rss_before} KiB -> {rss_after} KiB",
        deactivated.duration_since(triggered).as_secs_f64(),
        completed.duration_since(triggered).as_secs_f64()
    );
    for (index, plane, member_namespace) in &placed {
        let requests = support::audited_requests_in(
            &plane.dir.join("logs/audit.log"),
            &support::service_account_user(member_namespace, "hub"),
            triggered_at,
            to,
        );
        let total: usize = requests.values().sum();
        eprintln!(
            "[bench] member m{index}: {total} requests from trigger to completion: {requests:?}"
        );
    }
}
