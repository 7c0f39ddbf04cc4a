//! Rotation end to end: zero downtime proven by an independent observer, blocking, the Restart
//! strategy, the secretRef handshake, GitOps triggers and SIGKILL at every step.

use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, VersionMatch};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streaming_token_operator::api::ROTATION_ANNOTATION;
use streaming_token_operator::api::{RotationStrategy, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every version of the mirror Secret seen by an independent watch: (resourceVersion, token1,
/// token2, when).
type SecretHistory = Arc<Mutex<Vec<(String, String, String, Instant)>>>;

fn record_secret(client: &Client, namespace: &str, name: &str) -> SecretHistory {
    let history: SecretHistory = Arc::default();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let sink = history.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(secret)) = stream.next().await {
            let value = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|bytes| String::from_utf8_lossy(&bytes.0).to_string())
                    .unwrap_or_default()
            };
            let entry = (
                secret.resource_version().unwrap_or_default(),
                value("token1"),
                value("token2"),
                Instant::now(),
            );
            let mut history = sink.lock().expect("lock");
            if history.last().map(|last| (&last.1, &last.2)) != Some((&entry.1, &entry.2)) {
                history.push(entry);
            }
        }
    });
    history
}

/// When each old-template pod (no rotation annotation `stamp`) was last seen deleted.
type PodDeletions = Arc<Mutex<Vec<Instant>>>;

fn record_pod_deletions(client: &Client, namespace: &str, stamp: String) -> PodDeletions {
    let deletions: PodDeletions = Arc::default();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let sink = deletions.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = stream.next().await {
            if let watcher::Event::Delete(pod) = event
                && pod
                    .annotations()
                    .get(ROTATION_ANNOTATION)
                    .map(String::as_str)
                    != Some(stamp.as_str())
            {
                sink.lock().expect("lock").push(Instant::now());
            }
        }
    });
    deletions
}

use crate::support::rollouts;

/// Every consumer container references the mirror Secret's Token 2 key, which exists.
async fn assert_consumers_on_token2(
    client: &Client,
    namespace: &str,
    secret: &str,
    names: &[&str],
) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    assert!(
        support::secret_value(client, namespace, secret, "token2")
            .await
            .is_some()
    );
    for name in names {
        let deployment = deployments.get(name).await.expect("deployment");
        let template = deployment.spec.template.spec.expect("pod spec");
        for container in template.containers {
            let reference = container
                .env
                .unwrap_or_default()
                .into_iter()
                .find(|variable| variable.name == "STREAMING_TOKEN")
                .and_then(|variable| variable.value_from?.secret_key_ref)
                .expect("STREAMING_TOKEN references a Secret key");
            assert_eq!(
                (reference.name.as_str(), reference.key.as_str()),
                (secret, "token2"),
                "{name}"
            );
        }
    }
}

/// Pods as they were at `resource_version` (a consistent snapshot served by the apiserver).
async fn pods_at(client: &Client, namespace: &str, resource_version: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(
        &ListParams::default()
            .at(resource_version)
            .matching(VersionMatch::Exact),
    )
    .await
    .expect("list at an exact resourceVersion")
    .items
}

/// Invariant 1, end to end: when Token 1 is deactivated, no pod of a pre-repoint template exists,
/// terminating ones included; the old Token 2 became Token 1.
#[tokio::test(flavor = "multi_thread")]
async fn zero_downtime_rotation_deactivates_only_after_every_old_pod_is_gone() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-zero").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), &namespace);
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("rot"), 2),
        )
        .await;
    }
    support::apply(
        &statefulsets,
        &fixtures::statefulset("delta", &namespace, "rot", 2),
    )
    .await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &daemonsets,
        &fixtures::daemonset("epsilon", &namespace, "rot"),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("rot", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "rot", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &names).await;

    let ledger = Ledger::start(&admin, &namespace, "rot").await;
    let history = record_secret(&admin, &namespace, "rot");
    let stamp = support::rotation_stamp(&tokens, "rot", "r1").await;
    let deletions = record_pod_deletions(&admin, &namespace, stamp.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old_token2 = support::secret_value(&admin, &namespace, "rot", "token2")
        .await
        .expect("token2");
    let triggered = Instant::now();
    support::set_trigger(&tokens, "rot", "t1").await;
    let token = support::wait_rotation_done(&tokens, "rot", "r1", TIMEOUT).await;
    let done = Instant::now();
    ledger.assert_no_outage().await;

    let history = history.lock().expect("lock").clone();
    let deactivation = history
        .iter()
        .find(|(_, token1, _, _)| *token1 == old_token2)
        .expect("the old Token 2 became Token 1")
        .clone();
    let pods = pods_at(&admin, &namespace, &deactivation.0).await;
    assert!(!pods.is_empty());
    let stale: Vec<String> = pods
        .iter()
        .filter(|pod| {
            pod.annotations()
                .get(ROTATION_ANNOTATION)
                .map(String::as_str)
                != Some(stamp.as_str())
        })
        .map(|pod| {
            format!(
                "{} (terminating: {})",
                pod.name_any(),
                pod.metadata.deletion_timestamp.is_some()
            )
        })
        .collect();
    assert!(
        stale.is_empty(),
        "pods of a pre-repoint template existed when Token 1 was deactivated: {stale:?}"
    );
    assert_ne!(
        support::secret_value(&admin, &namespace, "rot", "token2")
            .await
            .as_deref(),
        Some(old_token2.as_str())
    );
    let status = token.status.expect("status");
    assert_eq!(
        (
            status.token1.expect("t1").serial,
            status.token2.expect("t2").serial
        ),
        (2, 3)
    );
    for name in names {
        assert_eq!(
            rollouts(&admin, &namespace, name).await,
            1,
            "{name} rolled exactly once"
        );
    }
    assert_consumers_on_token2(&admin, &namespace, "rot", &names).await;
    let revisions: Api<ControllerRevision> = Api::namespaced(admin.clone(), &namespace);
    let revisions = revisions
        .list(&ListParams::default().labels("app=delta"))
        .await
        .expect("revisions");
    assert_eq!(
        revisions.items.len(),
        2,
        "the StatefulSet rolled exactly once"
    );
    let revisions: Api<ControllerRevision> = Api::namespaced(admin.clone(), &namespace);
    let revisions = revisions
        .list(&ListParams::default().labels("app=epsilon"))
        .await
        .expect("revisions");
    assert_eq!(
        revisions.items.len(),
        2,
        "the DaemonSet rolled exactly once"
    );
    let daemonset = daemonsets.get("epsilon").await.expect("daemonset");
    assert_eq!(
        daemonset.status.expect("status").updated_number_scheduled,
        Some(2),
        "one pod per fake node, updated"
    );

    let last_old_pod_gone = deletions
        .lock()
        .expect("lock")
        .iter()
        .max()
        .copied()
        .expect("old pods were deleted");
    eprintln!(
        "[measure] 5 consumers: trigger -> deactivation {:?}; last old pod deleted -> deactivation {:?}; trigger -> complete {:?}",
        deactivation.3 - triggered,
        deactivation.3.saturating_duration_since(last_old_pod_gone),
        done - triggered
    );
}

/// A pod held in Terminating by a finalizer, and a paused Deployment, each block deactivation
/// until cleared, and both are reported while they block.
#[tokio::test(flavor = "multi_thread")]
async fn finalizer_held_pod_and_paused_deployment_block_deactivation() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-blocked").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("held", &namespace, Some("blk"), 1),
    )
    .await;
    support::apply(
        &deployments,
        &fixtures::deployment("paused", &namespace, Some("blk"), 1),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("blk", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "blk", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["held", "paused"]).await;
    let old_token1 = support::secret_value(&admin, &namespace, "blk", "token1")
        .await
        .expect("token1");

    let held_pod = pods
        .list(&ListParams::default().labels("app=held"))
        .await
        .expect("pods")
        .items[0]
        .name_any();
    pods.patch(
        &held_pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .expect("finalizer added");
    deployments
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    let ledger = Ledger::start(&admin, &namespace, "blk").await;
    support::set_trigger(&tokens, "blk", "t1").await;

    let reasons = |token: &StreamingToken| -> Vec<(String, String)> {
        let mut reasons: Vec<(String, String)> = token
            .status
            .as_ref()
            .and_then(|status| status.consumers.as_ref())
            .map(|consumers| {
                consumers
                    .blocked
                    .iter()
                    .map(|blocked| (blocked.name.clone(), blocked.reason.clone()))
                    .collect()
            })
            .unwrap_or_default();
        reasons.sort();
        reasons
    };
    let blocked = wait_for("both consumers reported as blocked", TIMEOUT, || async {
        let token = tokens.get("blk").await.map_err(|error| error.to_string())?;
        let found = reasons(&token);
        if found
            == [
                ("held".to_string(), "PodHeldByFinalizer".to_string()),
                ("paused".to_string(), "Paused".to_string()),
            ]
        {
            Ok(token)
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
    assert_eq!(
        support::condition(&blocked, "Degraded"),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    support::wait_event(&admin, &namespace, "blk", "ConsumerBlocked", TIMEOUT).await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "blk", "token1")
            .await
            .as_deref(),
        Some(old_token1.as_str())
    );

    deployments
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("resumed");
    wait_for(
        "the paused Deployment to stop blocking",
        TIMEOUT,
        || async {
            let token = tokens.get("blk").await.map_err(|error| error.to_string())?;
            let found = reasons(&token);
            if found == [("held".to_string(), "PodHeldByFinalizer".to_string())] {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "blk", "token1")
            .await
            .as_deref(),
        Some(old_token1.as_str()),
        "still held by the terminating pod"
    );

    pods.patch(
        &held_pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    let token = support::wait_rotation_done(&tokens, "blk", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert_eq!(
        support::condition(&token, "Degraded"),
        Some(("False".into(), "AsExpected".into()))
    );
    assert_ne!(
        support::secret_value(&admin, &namespace, "blk", "token1")
            .await
            .as_deref(),
        Some(old_token1.as_str())
    );
}

/// Restart: Token 1 is deactivated first, then every consumer rolls exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn restart_strategy_deactivates_first_then_rolls_each_consumer_once() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "rotate-restart").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names = ["one", "two"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("rs"), 2),
        )
        .await;
    }
    support::apply(
        &tokens,
        &fixtures::token("rs", &namespace)
            .with_trigger("t0")
            .strategy(RotationStrategy::Restart)
            .build(),
    )
    .await;
    wait_condition(&tokens, "rs", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &names).await;
    let old_token2 = support::secret_value(&admin, &namespace, "rs", "token2")
        .await
        .expect("token2");
    let user = support::service_account_user(&namespace, "streaming-token-operator");
    let before = support::audited_writes(&user).len();

    let ledger = Ledger::start(&admin, &namespace, "rs").await;
    support::set_trigger(&tokens, "rs", "t1").await;
    support::wait_rotation_done(&tokens, "rs", "r1", TIMEOUT).await;
    // The outage this strategy accepts: pods read Token 1 until they restart.
    ledger.assert_outage().await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "rs", "token1")
            .await
            .as_deref(),
        Some(old_token2.as_str())
    );
    let writes: Vec<String> = support::audited_writes(&user)[before..]
        .iter()
        .filter(|entry| {
            entry["objectRef"]["resource"] != "events"
                && entry["objectRef"]["subresource"] != "status"
        })
        .map(|entry| {
            format!(
                "{}/{}",
                entry["objectRef"]["resource"].as_str().unwrap_or(""),
                entry["objectRef"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        writes,
        ["secrets/rs", "deployments/one", "deployments/two"],
        "Secret first, then each consumer once"
    );
    for name in names {
        assert_eq!(
            rollouts(&admin, &namespace, name).await,
            1,
            "{name} rolled exactly once"
        );
    }
    drop(operator);
}

/// secretRef: ReadyToRotate only once every consumer is verified on Token 2; the promoted pair
/// in the source completes the rotation.
#[tokio::test(flavor = "multi_thread")]
async fn secret_ref_handshake_waits_for_consumers_then_for_the_platform() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-handshake").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names = ["reader", "writer"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("hs"), 2),
        )
        .await;
    }
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "hs", "p-one", "p-two"),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("hs", &namespace)
            .secret_ref("portal")
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "hs", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_condition(
        &tokens,
        "hs",
        "ReadyToRotate",
        "False",
        "NoRotation",
        TIMEOUT,
    )
    .await;
    support::wait_deployments_available(&admin, &namespace, &names).await;

    // Record the resourceVersion at which ReadyToRotate first turned True.
    let first_ready: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let sink = first_ready.clone();
        let config = watcher::Config::default().fields("metadata.name=hs");
        let mut stream = watcher(tokens.clone(), config).applied_objects().boxed();
        tokio::spawn(async move {
            while let Some(Ok(token)) = stream.next().await {
                if support::condition(&token, "ReadyToRotate")
                    .is_some_and(|(status, _)| status == "True")
                {
                    sink.lock()
                        .expect("lock")
                        .get_or_insert(token.resource_version().unwrap_or_default());
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = Ledger::start(&admin, &namespace, "hs").await;
    support::set_trigger(&tokens, "hs", "t1").await;
    let token = wait_condition(
        &tokens,
        "hs",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    let message = token
        .status
        .as_ref()
        .expect("status")
        .conditions
        .iter()
        .find(|c| c.type_ == "ReadyToRotate")
        .expect("condition")
        .message
        .clone();
    assert!(
        message.contains("rotate the tokens at the platform now"),
        "{message}"
    );
    let version = wait_for("the watcher to see ReadyToRotate", TIMEOUT, || async {
        first_ready
            .lock()
            .expect("lock")
            .clone()
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let stamp = support::rotation_stamp(&tokens, "hs", "r1").await;
    let stale: Vec<String> = pods_at(&admin, &namespace, &version)
        .await
        .iter()
        .filter(|pod| {
            pod.annotations()
                .get(ROTATION_ANNOTATION)
                .map(String::as_str)
                != Some(stamp.as_str())
        })
        .map(ResourceExt::name_any)
        .collect();
    assert!(
        stale.is_empty(),
        "ReadyToRotate while old pods existed: {stale:?}"
    );
    assert_consumers_on_token2(&admin, &namespace, "hs", &names).await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "hs", "token1")
            .await
            .as_deref(),
        Some("p-one"),
        "nothing deactivated yet"
    );

    // The person rotates at the platform and updates the source Secret.
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "hs", "p-two", "p-three"),
    )
    .await;
    support::wait_rotation_done(&tokens, "hs", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "hs", "token1")
            .await
            .as_deref(),
        Some("p-two")
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "hs", "token2")
            .await
            .as_deref(),
        Some("p-three")
    );
    wait_condition(
        &tokens,
        "hs",
        "ReadyToRotate",
        "False",
        "NoRotation",
        TIMEOUT,
    )
    .await;
}

/// GitOps: the same trigger twice rotates once; a new trigger during a rotation queues one more.
#[tokio::test(flavor = "multi_thread")]
async fn gitops_triggers_rotate_once_per_value_and_queue_during_a_rotation() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-gitops").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("app", &namespace, Some("git"), 1),
    )
    .await;
    let spec = |trigger: &str| {
        fixtures::token("git", &namespace)
            .with_trigger(trigger)
            .build()
    };
    support::apply(&tokens, &spec("2026-11-01")).await;
    wait_condition(&tokens, "git", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;

    let ledger = Ledger::start(&admin, &namespace, "git").await;
    support::apply(&tokens, &spec("2026-11-24")).await;
    support::wait_rotation_done(&tokens, "git", "r1", TIMEOUT).await;
    support::apply(&tokens, &spec("2026-11-24")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = support::events(&admin, &namespace, "git")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "RotationStarted")
        .count();
    assert_eq!(started, 1, "re-applying the same trigger does not rotate");
    assert_eq!(
        tokens
            .get("git")
            .await
            .expect("token")
            .status
            .expect("status")
            .token1
            .expect("t1")
            .serial,
        2
    );

    // Hold the next rotation with a finalizer on the running pod, then push two more triggers.
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;
    let pod = wait_for("one running pod of the new template", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=app"))
            .await
            .map_err(|error| error.to_string())?;
        let live: Vec<_> = list
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .collect();
        if live.len() == 1 && list.items.len() == 1 {
            Ok(live[0].name_any())
        } else {
            Err(format!("{} pods", list.items.len()))
        }
    })
    .await;
    pods.patch(
        &pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .expect("finalizer");
    support::apply(&tokens, &spec("2026-12-01")).await;
    wait_condition(
        &tokens,
        "git",
        "Rotating",
        "True",
        "AwaitingRollout",
        TIMEOUT,
    )
    .await;
    support::apply(&tokens, &spec("2026-12-02")).await;
    support::apply(&tokens, &spec("2026-12-03")).await;
    let queued = wait_for("the newest trigger to be queued", TIMEOUT, || async {
        let token = tokens.get("git").await.map_err(|error| error.to_string())?;
        let rotation = token
            .status
            .and_then(|status| status.rotation)
            .ok_or("no rotation")?;
        if rotation.queued_trigger.as_deref() == Some("2026-12-03") {
            Ok(rotation)
        } else {
            Err(format!("{:?}", rotation.queued_trigger))
        }
    })
    .await;
    assert_eq!(queued.id, "r2", "the running rotation was not interrupted");
    pods.patch(
        &pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("released");
    let token = support::wait_rotation_done(&tokens, "git", "r3", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let status = token.status.expect("status");
    assert_eq!(status.observed_trigger.as_deref(), Some("2026-12-03"));
    assert_eq!(
        status.token1.expect("t1").serial,
        4,
        "three rotations in all: r1, r2 and the queued r3"
    );
    let completed = support::events(&admin, &namespace, "git")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "RotationCompleted")
        .count();
    assert_eq!(completed, 3);
}

/// Invariant 4: SIGKILL the operator right after each write of a rotation; a fresh process
/// resumes and completes it, no consumer rolls twice, no consumer references a missing key.
async fn killed_at(step: &str) {
    let admin = support::admin_client().await;
    let namespace = support::namespace(
        &admin,
        &format!("rotate-kill-{}", step.replace(':', "-").to_lowercase()),
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names = ["left", "right"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("crash"), 2),
        )
        .await;
    }
    support::apply(
        &tokens,
        &fixtures::token("crash", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    let mut first = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    wait_condition(&tokens, "crash", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &names).await;
    first.kill().await;
    let old_token2 = support::secret_value(&admin, &namespace, "crash", "token2")
        .await
        .expect("token2");

    let mut halting = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            extra_env: vec![("STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(), step.into())],
            ..OperatorOptions::default()
        },
    )
    .await;
    let ledger = Ledger::start(&admin, &namespace, "crash").await;
    support::set_trigger(&tokens, "crash", "t1").await;
    wait_for(
        &format!("the operator to reach halt point {step}"),
        TIMEOUT,
        || async {
            if halting.logs().contains("test halt point reached") {
                Ok(())
            } else {
                Err(support::tail(&halting.logs(), 3))
            }
        },
    )
    .await;
    halting.kill().await;

    let _resumed = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let token = support::wait_rotation_done(&tokens, "crash", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let status = token.status.expect("status");
    assert_eq!(
        (
            status.token1.expect("t1").serial,
            status.token2.expect("t2").serial
        ),
        (2, 3),
        "deactivated exactly once"
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "crash", "token1")
            .await
            .as_deref(),
        Some(old_token2.as_str())
    );
    for name in names {
        assert_eq!(
            rollouts(&admin, &namespace, name).await,
            1,
            "{name} rolled exactly once across the crash"
        );
    }
    assert_consumers_on_token2(&admin, &namespace, "crash", &names).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_repointing_a_consumer() {
    killed_at("consumer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_recording_repointing() {
    killed_at("status:Repointing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_awaiting_rollout() {
    killed_at("status:AwaitingRollout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_deactivating_before_recording_it() {
    killed_at("secret").await;
}

/// secretRef: both tokens replaced at the platform (after a leak) are mirrored at once, with a
/// Warning, and every consumer restarts exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_replaced_out_of_band_restart_every_consumer() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-replaced").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names = ["ingest", "query"];
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, &namespace, Some("leak"), 1),
        )
        .await;
    }
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "leak", "old-one", "old-two"),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("leak", &namespace)
            .secret_ref("portal")
            .build(),
    )
    .await;
    wait_condition(&tokens, "leak", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &names).await;

    let ledger = Ledger::start(&admin, &namespace, "leak").await;
    // An unrecognized pair alone restarts nobody: it could be another environment's.
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "leak", "new-one", "new-two"),
    )
    .await;
    wait_condition(
        &tokens,
        "leak",
        "Degraded",
        "True",
        "SourceUnrecognized",
        TIMEOUT,
    )
    .await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "leak", "token1")
            .await
            .as_deref(),
        Some("old-one"),
        "the mirror keeps the recorded pair until a person confirms"
    );
    for name in names {
        assert_eq!(rollouts(&admin, &namespace, name).await, 0, "{name}");
    }
    // The deliberate signal: the person who replaced the pair confirms it on the source.
    let mut confirmed = fixtures::source_secret("portal", &namespace, "leak", "new-one", "new-two");
    confirmed.metadata.annotations = Some(
        [(
            "streamingtoken.io/replacement".to_string(),
            "leaked-2026-12-01".to_string(),
        )]
        .into(),
    );
    support::apply(&secrets, &confirmed).await;
    let (kind, _, message) =
        support::wait_event(&admin, &namespace, "leak", "SourceReplaced", TIMEOUT).await;
    assert_eq!(kind, "Warning", "{message}");
    assert_eq!(
        support::secret_value(&admin, &namespace, "leak", "token1")
            .await
            .as_deref(),
        Some("new-one")
    );
    let token = support::wait_rotation_done(&tokens, "leak", "x3", TIMEOUT).await;
    // Both tokens were replaced at the source: every pod held a dead token until it restarted.
    ledger.assert_outage().await;
    assert_eq!(
        token
            .status
            .expect("status")
            .last_rotation
            .expect("last")
            .strategy,
        RotationStrategy::Restart
    );
    for name in names {
        assert_eq!(
            rollouts(&admin, &namespace, name).await,
            1,
            "{name} restarted exactly once"
        );
    }
}

/// A Restart rotation after a ZeroDowntime one keeps the variable the operator set: the restart
/// is applied by a field manager of its own, so server-side apply does not strip it.
#[tokio::test(flavor = "multi_thread")]
async fn restart_after_zero_downtime_keeps_the_repointed_variable() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("rotate-switch").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("svc", &namespace, Some("sw"), 1),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("sw", &namespace).with_trigger("t0").build(),
    )
    .await;
    wait_condition(&tokens, "sw", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["svc"]).await;
    let ledger = Ledger::start(&admin, &namespace, "sw").await;
    support::set_trigger(&tokens, "sw", "t1").await;
    support::wait_rotation_done(&tokens, "sw", "r1", TIMEOUT).await;
    assert_consumers_on_token2(&admin, &namespace, "sw", &["svc"]).await;

    support::apply(
        &tokens,
        &fixtures::token("sw", &namespace)
            .with_trigger("t2")
            .strategy(RotationStrategy::Restart)
            .build(),
    )
    .await;
    support::wait_rotation_done(&tokens, "sw", "r2", TIMEOUT).await;
    assert_consumers_on_token2(&admin, &namespace, "sw", &["svc"]).await;
    // Its pods read Token 2 since the first rotation, and were started while Token 2 held the
    // value that is Token 1 now: the Restart rotation deactivates it first, so they are cut off
    // until they restart. (The ledger also proves the first, ZeroDowntime rotation cut off no one:
    // every violation it reports is at the second rotation's deactivation.)
    let outage = ledger.assert_outage().await;
    let second = ledger.secret_versions();
    assert!(
        outage
            .iter()
            .all(|line| line.contains(&format!("Secret version #{second} "))),
        "{outage:?}"
    );
    assert_eq!(
        rollouts(&admin, &namespace, "svc").await,
        2,
        "one roll per rotation"
    );
}
