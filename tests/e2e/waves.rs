//! Rotation at fleet scale: a restart budget and wave labels. What rolls, and when, is observed
//! from the consumers' own Deployment status by the test (not from the operator's status), and
//! every rotation runs under the independent token ledger.

use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streaming_token_operator::api::{StreamingToken, WAVE_LABEL};

const TIMEOUT: Duration = Duration::from_secs(240);

/// Is a Deployment rolling, by its own status: a template its controller has not observed yet,
/// or replicas not all updated and available, or surplus (old) replicas.
fn rolling(deployment: &Deployment) -> bool {
    let desired = deployment.spec.replicas.unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    status.observed_generation < deployment.metadata.generation
        || status.updated_replicas.unwrap_or(0) < desired
        || status.available_replicas.unwrap_or(0) < desired
        || status.replicas.unwrap_or(0) > desired
}

/// Watches the namespace's Deployments: the most rolling at once, and for each Deployment when
/// (in watch order) it started and finished rolling. A Deployment has started once its pod
/// template differs from the one first seen (whoever changed it); it is rolling while it has
/// started and its own status says it is not rolled out.
#[derive(Default)]
struct Observed {
    first_template: BTreeMap<String, serde_json::Value>,
    now_rolling: BTreeSet<String>,
    most_at_once: usize,
    /// Watch order: events counted from 0.
    clock: u64,
    started: BTreeMap<String, u64>,
    finished: BTreeMap<String, u64>,
}

fn observe(deployments: Api<Deployment>) -> Arc<Mutex<Observed>> {
    let observed: Arc<Mutex<Observed>> = Arc::default();
    let sink = observed.clone();
    tokio::spawn(async move {
        let mut stream = watcher(deployments, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(deployment)) = stream.next().await {
            let name = deployment.name_any();
            let template = serde_json::to_value(&deployment.spec.template).expect("template");
            let mut observed = sink.lock().expect("lock");
            observed.clock += 1;
            let clock = observed.clock;
            let first = observed
                .first_template
                .entry(name.clone())
                .or_insert_with(|| template.clone());
            if *first == template {
                continue;
            }
            observed.started.entry(name.clone()).or_insert(clock);
            if rolling(&deployment) {
                observed.now_rolling.insert(name);
                observed.most_at_once = observed.most_at_once.max(observed.now_rolling.len());
            } else {
                observed.now_rolling.remove(&name);
                observed.finished.entry(name).or_insert(clock);
            }
        }
    });
    observed
}

async fn create_consumers(admin: &kube::Client, namespace: &str, token: &str, names: &[String]) {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, namespace, Some(token), 1),
        )
        .await;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::wait_deployments_available(admin, namespace, &names).await;
}

/// 30 consumers with a budget of 5: never more than 5 rolling at once, each rolls exactly once,
/// Token 1 deactivated only after the last has rolled, and an operator SIGKILLed mid-wave is
/// replaced by a fresh one that resumes without rolling anyone twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_of_five_rolls_thirty_consumers_five_at_a_time() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "waves-budget").await;
    let mut operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names: Vec<String> = (0..30).map(|index| format!("c{index:02}")).collect();
    create_consumers(&admin, &namespace, "fleet", &names).await;
    let mut token = fixtures::token("fleet", &namespace)
        .with_trigger("t0")
        .build();
    token.spec.rotation.max_concurrent_consumers =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5));
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, "fleet", "Ready", "True", "TokensReady", TIMEOUT).await;
    let old_token1 = support::secret_value(&admin, &namespace, "fleet", "token1")
        .await
        .expect("token1");
    let old_token2 = support::secret_value(&admin, &namespace, "fleet", "token2")
        .await
        .expect("token2");
    let observed = observe(deployments.clone());
    let ledger = Ledger::start(&admin, &namespace, "fleet").await;
    support::set_trigger(&tokens, "fleet", "t1").await;

    // Mid-wave: some consumers done, some rolling, most not started. Kill the operator there.
    wait_for("a third of the consumers rolled", TIMEOUT, || async {
        let done = observed.lock().expect("lock").finished.len();
        if done >= 10 {
            Ok(())
        } else {
            Err(format!("{done} rolled"))
        }
    })
    .await;
    let status = tokens
        .get("fleet")
        .await
        .expect("fleet")
        .status
        .expect("status");
    let waves = status
        .rotation
        .as_ref()
        .and_then(|rotation| rotation.waves.clone())
        .expect("the rotation reports its waves");
    assert_eq!(waves.max_concurrent, 5);
    assert!(waves.rolling <= 5, "{waves:?}");
    assert_eq!(
        support::secret_value(&admin, &namespace, "fleet", "token1")
            .await
            .as_deref(),
        Some(old_token1.as_str()),
        "Token 1 deactivated mid-wave"
    );
    operator.kill().await;
    let _resumed = Operator::start(&admin, &namespace, OperatorOptions::default()).await;

    let token = support::wait_rotation_done(&tokens, "fleet", "r1", TIMEOUT).await;
    // Token 1 went only after every pod that could hold it was gone: the ledger checks it pod
    // by pod.
    ledger.assert_no_outage().await;
    let (most_at_once, finished) = {
        let observed = observed.lock().expect("lock");
        (observed.most_at_once, observed.finished.len())
    };
    eprintln!("[waves] budget 5: at most {most_at_once} of 30 consumers rolled at once");
    assert!(
        most_at_once <= 5,
        "{most_at_once} consumers rolled at once (budget 5)"
    );
    assert!(
        most_at_once >= 2,
        "the budget was not used: at most {most_at_once} at once"
    );
    assert_eq!(finished, 30, "every consumer rolled");
    for name in &names {
        assert_eq!(
            support::rollouts(&admin, &namespace, name).await,
            1,
            "{name} rolled exactly once across the kill"
        );
    }
    let status = token.status.expect("status");
    assert_eq!(status.token1.expect("token1").serial, 2, "deactivated once");
    assert_eq!(
        support::secret_value(&admin, &namespace, "fleet", "token1")
            .await
            .as_deref(),
        Some(old_token2.as_str())
    );
}

/// Waves by label: wave 1, then wave 2, then the unlabelled; a paused consumer of wave 2 holds
/// everything after it (reported, Token 1 kept) until it is resumed.
#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_consumer_in_wave_two_holds_wave_three() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("waves-order").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let waves: [(&str, Option<&str>); 6] = [
        ("one-a", Some("1")),
        ("one-b", Some("1")),
        ("two-a", Some("2")),
        ("two-held", Some("2")),
        ("three-a", Some("3")),
        ("last", None),
    ];
    for (name, wave) in waves {
        let mut deployment = fixtures::deployment(name, &namespace, Some("ordered"), 1);
        if let Some(wave) = wave {
            deployment
                .metadata
                .labels
                .get_or_insert_default()
                .insert(WAVE_LABEL.into(), wave.into());
        }
        support::apply(&deployments, &deployment).await;
    }
    let names: Vec<&str> = waves.iter().map(|(name, _)| *name).collect();
    support::wait_deployments_available(&admin, &namespace, &names).await;
    support::apply(
        &tokens,
        &fixtures::token("ordered", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "ordered", "Ready", "True", "TokensReady", TIMEOUT).await;
    let old_token1 = support::secret_value(&admin, &namespace, "ordered", "token1")
        .await
        .expect("token1");
    deployments
        .patch(
            "two-held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    let observed = observe(deployments.clone());
    let ledger = Ledger::start(&admin, &namespace, "ordered").await;
    support::set_trigger(&tokens, "ordered", "t1").await;

    let status = wait_for("wave 2 held by the paused consumer", TIMEOUT, || async {
        let status = tokens
            .get("ordered")
            .await
            .map_err(|error| error.to_string())?
            .status
            .unwrap_or_default();
        let blocked: Vec<(String, String)> = status
            .consumers
            .iter()
            .flat_map(|summary| summary.blocked.iter())
            .map(|blocked| (blocked.name.clone(), blocked.reason.clone()))
            .collect();
        let current = status
            .rotation
            .as_ref()
            .and_then(|rotation| rotation.waves.as_ref())
            .map(|waves| waves.current.clone());
        if blocked == [("two-held".to_string(), "Paused".to_string())]
            && current.as_deref() == Some("2")
        {
            Ok(status)
        } else {
            Err(format!("blocked {blocked:?}, wave {current:?}"))
        }
    })
    .await;
    assert!(status.rotation.is_some());
    // Held: nothing of wave 3 or the unlabelled wave starts, Token 1 stays.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for name in ["three-a", "last"] {
        let deployment = deployments.get(name).await.expect("deployment");
        assert_eq!(
            deployment.metadata.generation,
            Some(1),
            "{name} was started while wave 2 is held"
        );
    }
    assert_eq!(
        support::secret_value(&admin, &namespace, "ordered", "token1")
            .await
            .as_deref(),
        Some(old_token1.as_str())
    );

    deployments
        .patch(
            "two-held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("resumed");
    support::wait_rotation_done(&tokens, "ordered", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let (started_at, finished_at) = {
        let observed = observed.lock().expect("lock");
        (observed.started.clone(), observed.finished.clone())
    };
    let started = |name: &str| started_at.get(name).copied().expect("started");
    let finished = |name: &str| finished_at.get(name).copied().expect("finished");
    // Each wave starts only after every consumer of the earlier waves has rolled.
    for (earlier, later) in [
        (["one-a", "one-b"], ["two-a", "two-held"]),
        (["two-a", "two-held"], ["three-a", "three-a"]),
        (["three-a", "three-a"], ["last", "last"]),
    ] {
        for done in earlier {
            for next in later {
                assert!(
                    finished(done) < started(next),
                    "{next} started before {done} finished rolling"
                );
            }
        }
    }
    for name in names {
        assert_eq!(
            support::rollouts(&admin, &namespace, name).await,
            1,
            "{name}"
        );
    }
}

/// A budget of 1 while the operator's workload watch lags 2 s behind the API server (the e2e
/// fault hook): consumers labelled one after another mid-wave (named to sort before those
/// waiting) never push the consumers rolling at once past the budget. Counted from the
/// Deployments' own status, as the API server serves it, not from the operator's status.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_labelled_mid_wave_while_the_watch_lags_never_exceeds_the_budget() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "waves-lag").await;
    let options = OperatorOptions {
        extra_env: vec![(
            "STREAMING_TOKEN_OPERATOR_WORKLOAD_WATCH_LAG_MS".into(),
            "2000".into(),
        )],
        ..OperatorOptions::default()
    };
    let _operator = Operator::start(&admin, &namespace, options).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names: Vec<String> = (0..4).map(|index| format!("c{index}")).collect();
    // Not consumers yet: labelled during the rotation.
    let late: Vec<String> = (0..6).map(|index| format!("a{index}")).collect();
    for name in names.iter().chain(&late) {
        let token = names.contains(name).then_some("lag");
        let mut deployment = fixtures::deployment(name, &namespace, token, 1);
        // Each rollout lasts longer than the watch lags (a pod counts as available 4 s
        // after it is ready).
        deployment.spec.min_ready_seconds = Some(4);
        support::apply(&deployments, &deployment).await;
    }
    let all: Vec<&str> = names.iter().chain(&late).map(String::as_str).collect();
    support::wait_deployments_available(&admin, &namespace, &all).await;
    let mut token = fixtures::token("lag", &namespace)
        .with_trigger("t0")
        .build();
    token.spec.rotation.max_concurrent_consumers =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1));
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, "lag", "Ready", "True", "TokensReady", TIMEOUT).await;
    let observed = observe(deployments.clone());
    let ledger = Ledger::start(&admin, &namespace, "lag").await;
    // Let the lagging watch deliver the first list before the rotation starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::set_trigger(&tokens, "lag", "t1").await;
    // Each time a consumer finishes rolling, the operator (2 s behind) starts the next one about
    // 2 s later; a consumer labelled 1 s after the finish shows up in its cache after that start
    // and before the started consumer's new template does.
    for (index, name) in late.iter().enumerate() {
        wait_for("a consumer to finish rolling", TIMEOUT, || async {
            let finished = observed.lock().expect("lock").finished.len();
            if finished > index {
                Ok(())
            } else {
                Err(format!("{finished} finished"))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"streamingtoken.io/token": "lag"}}})),
            )
            .await
            .expect("labelled");
    }
    support::wait_rotation_done(&tokens, "lag", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let (most_at_once, finished) = {
        let observed = observed.lock().expect("lock");
        (observed.most_at_once, observed.finished.len())
    };
    eprintln!(
        "[waves] budget 1, watch lag 2 s: at most {most_at_once} of 10 consumers rolled at once"
    );
    assert_eq!(finished, 10, "every consumer rolled, the late ones too");
    assert_eq!(
        most_at_once, 1,
        "{most_at_once} consumers rolled at once (budget 1)"
    );
    for name in names.iter().chain(&late) {
        assert_eq!(
            support::rollouts(&admin, &namespace, name).await,
            1,
            "{name} rolled exactly once"
        );
    }
}
