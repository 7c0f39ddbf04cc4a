//! What pods can actually hold, end to end: every ZeroDowntime rotation here runs under the
//! independent token ledger ([`crate::support::ledger`]), which works out from each pod's own
//! spec which values it may hold and fails if Token 1 is deactivated while one may still hold it.
//! The Restart strategy is its positive control: there the ledger must see the outage.

use crate::support::ledger::Ledger;
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;
use streaming_token_operator::api::{RotationStrategy, StreamingToken, TOKEN_LABEL};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A Deployment with one replica and the given pod spec, labelled as a consumer of `token`.
fn deployment(name: &str, namespace: &str, token: Option<&str>, spec: Value) -> Deployment {
    let labels = match token {
        Some(token) => json!({TOKEN_LABEL: token}),
        None => json!({}),
    };
    let mut spec = spec;
    spec["terminationGracePeriodSeconds"] = json!(1);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    }))
    .expect("deployment")
}

/// A container reading `key` of Secret `secret` through `variable`.
fn env_container(name: &str, variable: &str, secret: &str, key: &str) -> Value {
    json!({"name": name, "image": "registry.example/app:1", "env": [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    ]})
}

struct Setup {
    admin: Client,
    namespace: String,
    tokens: Api<StreamingToken>,
    deployments: Api<Deployment>,
    _operator: Operator,
}

async fn setup(prefix: &str) -> Setup {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, prefix).await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    Setup {
        tokens: Api::namespaced(admin.clone(), &namespace),
        deployments: Api::namespaced(admin.clone(), &namespace),
        admin,
        namespace,
        _operator: operator,
    }
}

impl Setup {
    async fn apply(&self, deployment: Deployment) {
        support::apply(&self.deployments, &deployment).await;
    }

    /// Creates StreamingToken `name` (generate, ZeroDowntime) and waits for its pair and for
    /// the named Deployments to be available.
    async fn token(&self, name: &str, strategy: RotationStrategy, deployments: &[&str]) {
        support::apply(
            &self.tokens,
            &fixtures::token(name, &self.namespace)
                .with_trigger("t0")
                .strategy(strategy)
                .build(),
        )
        .await;
        wait_condition(&self.tokens, name, "Ready", "True", "TokensReady", TIMEOUT).await;
        support::wait_deployments_available(&self.admin, &self.namespace, deployments).await;
    }

    async fn token1(&self, secret: &str) -> String {
        support::secret_value(&self.admin, &self.namespace, secret, "token1")
            .await
            .expect("token1")
    }

    /// Waits until the rotation in progress lists `(name, reason)` among what blocks it.
    async fn wait_blocked(&self, token: &str, name: &str, reason: &str) -> StreamingToken {
        wait_for(
            &format!("{name} to block the rotation with {reason}"),
            TIMEOUT,
            || async {
                let object = self
                    .tokens
                    .get(token)
                    .await
                    .map_err(|error| error.to_string())?;
                let blocked = blocked(&object);
                if blocked
                    .iter()
                    .any(|(got, why, _)| got == name && why == reason)
                {
                    Ok(object)
                } else {
                    Err(format!("{blocked:?}"))
                }
            },
        )
        .await
    }

    /// The env entries of the Deployment's container `container` (init containers included).
    async fn env(&self, deployment: &str, container: &str) -> Vec<(String, String)> {
        let object = self.deployments.get(deployment).await.expect("deployment");
        let spec = object.spec.template.spec.expect("pod spec");
        spec.containers
            .into_iter()
            .chain(spec.init_containers.unwrap_or_default())
            .find(|candidate| candidate.name == container)
            .expect("container")
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|variable| {
                let key = variable
                    .value_from
                    .and_then(|from| from.secret_key_ref)
                    .map(|reference| format!("{}/{}", reference.name, reference.key))
                    .unwrap_or_default();
                (variable.name, key)
            })
            .collect()
    }
}

fn blocked(token: &StreamingToken) -> Vec<(String, String, String)> {
    token
        .status
        .as_ref()
        .and_then(|status| status.consumers.as_ref())
        .map(|summary| {
            summary
                .blocked
                .iter()
                .map(|item| (item.name.clone(), item.reason.clone(), item.message.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The app reads the platform client's own variable from Token 1; the StreamingToken keeps its
/// default `envVar`. The rotation repoints that variable (and adds none), and deactivates Token 1
/// only once no pod may hold it. A sidecar that never asked for the token does not get it.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_variable_is_repointed_and_a_sidecar_gets_nothing() {
    let setup = setup("holders-quix").await;
    setup
        .apply(deployment(
            "quix",
            &setup.namespace,
            Some("q"),
            json!({"containers": [
                env_container("app", "Quix__Sdk__Token", "q", "token1"),
                {"name": "log-shipper", "image": "registry.example/shipper:1"}
            ]}),
        ))
        .await;
    setup
        .apply(deployment(
            "other-name",
            &setup.namespace,
            Some("q"),
            json!({"containers": [env_container("app", "PLATFORM_TOKEN", "q", "token1")]}),
        ))
        .await;
    setup
        .token("q", RotationStrategy::ZeroDowntime, &["quix", "other-name"])
        .await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "q").await;
    support::set_trigger(&setup.tokens, "q", "t1").await;
    support::wait_rotation_done(&setup.tokens, "q", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert_eq!(
        setup.env("quix", "app").await,
        [("Quix__Sdk__Token".to_string(), "q/token2".to_string())],
        "the client's variable is repointed and no other is added"
    );
    assert!(
        setup.env("quix", "log-shipper").await.is_empty(),
        "the sidecar never receives the token"
    );
    assert_eq!(
        setup.env("other-name", "app").await,
        [("PLATFORM_TOKEN".to_string(), "q/token2".to_string())]
    );
    // A second rotation deactivates what the first promoted: the pods read Token 2 already, so
    // they roll once more and nothing is cut off.
    support::set_trigger(&setup.tokens, "q", "t2").await;
    support::wait_rotation_done(&setup.tokens, "q", "r2", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert!(ledger.secret_versions() >= 3);
}

/// `envFrom` of the whole mirror and a volume exposing Token 1 cannot be repointed: each blocks
/// with a reason that says how to fix it, Token 1 stays active, and the rotation completes once
/// the manifest is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn env_from_and_a_secret_volume_block_until_fixed() {
    let setup = setup("holders-envfrom").await;
    let loader = |fixed: bool| {
        let container = if fixed {
            env_container("app", "STREAMING_TOKEN", "ef", "token2")
        } else {
            json!({"name": "app", "image": "i", "envFrom": [{"secretRef": {"name": "ef"}}]})
        };
        deployment(
            "loader",
            &setup.namespace,
            Some("ef"),
            json!({"containers": [container]}),
        )
    };
    let mounted = |fixed: bool| {
        let items = if fixed {
            json!([{"key": "token2", "path": "token"}])
        } else {
            Value::Null
        };
        let mut volume = json!({"name": "token", "secret": {"secretName": "ef"}});
        if fixed {
            volume["secret"]["items"] = items;
        }
        deployment(
            "mounted",
            &setup.namespace,
            Some("ef"),
            json!({
                "initContainers": [env_container("setup", "TOKEN", "ef", if fixed { "token2" } else { "token1" })],
                "containers": [{"name": "app", "image": "i", "volumeMounts": [{"name": "token", "mountPath": "/t"}]}],
                "volumes": [volume]
            }),
        )
    };
    setup.apply(loader(false)).await;
    setup.apply(mounted(false)).await;
    setup
        .token("ef", RotationStrategy::ZeroDowntime, &["loader", "mounted"])
        .await;
    let token1 = setup.token1("ef").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "ef").await;
    support::set_trigger(&setup.tokens, "ef", "t1").await;
    let object = setup
        .wait_blocked("ef", "loader", "EnvFromMirrorSecret")
        .await;
    let reasons = blocked(&object);
    let message = &reasons
        .iter()
        .find(|(name, _, _)| name == "loader")
        .expect("loader")
        .2;
    assert!(message.contains("secretKeyRef"), "{message}");
    setup
        .wait_blocked("ef", "mounted", "VolumeExposesToken1")
        .await;
    assert_eq!(
        support::condition(&setup.tokens.get("ef").await.expect("token"), "Degraded"),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    support::wait_event(
        &setup.admin,
        &setup.namespace,
        "ef",
        "ConsumerBlocked",
        TIMEOUT,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.token1("ef").await, token1, "Token 1 stays active");
    // The init container's Token 1 variable was repointed by the rotation itself.
    assert_eq!(
        setup.env("mounted", "setup").await,
        [("TOKEN".to_string(), "ef/token2".to_string())]
    );

    setup.apply(loader(true)).await;
    setup.apply(mounted(true)).await;
    support::wait_rotation_done(&setup.tokens, "ef", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// A consumer deleted mid-rotation whose pod a finalizer holds in Terminating still holds
/// Token 1: the rotation names that pod and waits; it completes once the pod is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_deleted_mid_rotation_holds_token1_until_its_pods_are_gone() {
    let setup = setup("holders-deleted").await;
    for name in ["stays", "doomed"] {
        setup
            .apply(fixtures::deployment(name, &setup.namespace, Some("del"), 1))
            .await;
    }
    setup
        .token("del", RotationStrategy::ZeroDowntime, &["stays", "doomed"])
        .await;
    let pods: Api<Pod> = Api::namespaced(setup.admin.clone(), &setup.namespace);
    let doomed_pod = pods
        .list(&ListParams::default().labels("app=doomed"))
        .await
        .expect("pods")
        .items[0]
        .name_any();
    pods.patch(
        &doomed_pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .expect("finalizer");
    // Paused, so the repoint does not replace its pod before it is deleted.
    setup
        .deployments
        .patch(
            "doomed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    let token1 = setup.token1("del").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "del").await;
    support::set_trigger(&setup.tokens, "del", "t1").await;
    setup.wait_blocked("del", "doomed", "Paused").await;
    setup
        .deployments
        .delete("doomed", &DeleteParams::background())
        .await
        .expect("deleted");
    let object = setup
        .wait_blocked("del", "doomed", "PodHeldByFinalizer")
        .await;
    let message = blocked(&object)
        .into_iter()
        .find(|(name, _, _)| name == "doomed")
        .expect("doomed")
        .2;
    assert!(
        message.contains(&doomed_pod) && message.contains("example.com/hold"),
        "{message}"
    );
    assert_eq!(setup.token1("del").await, token1, "Token 1 stays active");
    pods.patch(
        &doomed_pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    support::wait_rotation_done(&setup.tokens, "del", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// A consumer unlabelled mid-rotation whose pods still read Token 1 becomes an unlabelled reader
/// that blocks; once its pods roll onto Token 2 (it was repointed before) the rotation completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_unlabelled_mid_rotation_still_blocks_while_its_pods_read_token1() {
    let setup = setup("holders-unlabelled").await;
    for name in ["kept", "dropped"] {
        setup
            .apply(fixtures::deployment(name, &setup.namespace, Some("ul"), 1))
            .await;
    }
    setup
        .token("ul", RotationStrategy::ZeroDowntime, &["kept", "dropped"])
        .await;
    setup
        .deployments
        .patch(
            "dropped",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("paused");
    let token1 = setup.token1("ul").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "ul").await;
    support::set_trigger(&setup.tokens, "ul", "t1").await;
    setup.wait_blocked("ul", "dropped", "Paused").await;
    setup
        .deployments
        .patch(
            "dropped",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {TOKEN_LABEL: null}}})),
        )
        .await
        .expect("unlabelled");
    setup
        .wait_blocked("ul", "dropped", "UnlabelledReader")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.token1("ul").await, token1, "Token 1 stays active");
    setup
        .deployments
        .patch(
            "dropped",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("resumed");
    support::wait_rotation_done(&setup.tokens, "ul", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
}

/// An unlabelled workload reading the mirror is reported before anyone rotates, blocks a
/// rotation, and once labelled mid-rotation is repointed and rolled like any consumer. A bare
/// pod reading Token 1 blocks until it is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn unlabelled_readers_are_reported_at_once_and_block_until_managed() {
    let setup = setup("holders-reader").await;
    setup
        .apply(fixtures::deployment("api", &setup.namespace, Some("rd"), 1))
        .await;
    setup
        .apply(deployment(
            "batch",
            &setup.namespace,
            None,
            json!({"containers": [env_container("app", "TOKEN", "rd", "token1")]}),
        ))
        .await;
    setup
        .token("rd", RotationStrategy::ZeroDowntime, &["api", "batch"])
        .await;
    let object = wait_condition(
        &setup.tokens,
        "rd",
        "Degraded",
        "True",
        "UnlabelledReader",
        TIMEOUT,
    )
    .await;
    let readers = object
        .status
        .and_then(|status| status.consumers)
        .map(|summary| summary.unlabelled_readers)
        .unwrap_or_default();
    assert_eq!(readers.len(), 1, "{readers:?}");
    assert_eq!(
        (readers[0].kind.as_str(), readers[0].name.as_str()),
        ("Deployment", "batch")
    );
    support::wait_event(
        &setup.admin,
        &setup.namespace,
        "rd",
        "UnlabelledReader",
        TIMEOUT,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(setup.admin.clone(), &setup.namespace);
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "debug", "namespace": setup.namespace},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [env_container("sh", "T", "rd", "token1")]}
    }))
    .expect("pod");
    support::apply(&pods, &bare).await;

    let token1 = setup.token1("rd").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "rd").await;
    support::set_trigger(&setup.tokens, "rd", "t1").await;
    setup.wait_blocked("rd", "batch", "UnlabelledReader").await;
    setup
        .wait_blocked("rd", "debug", "UnmanagedPodReadsToken")
        .await;
    setup
        .deployments
        .patch(
            "batch",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {TOKEN_LABEL: "rd"}}})),
        )
        .await
        .expect("labelled");
    wait_for("batch to be repointed", TIMEOUT, || async {
        match setup.env("batch", "app").await.as_slice() {
            [(_, key)] if key == "rd/token2" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        setup.token1("rd").await,
        token1,
        "the bare pod still holds it"
    );
    pods.delete("debug", &DeleteParams::default())
        .await
        .expect("bare pod deleted");
    let done = support::wait_rotation_done(&setup.tokens, "rd", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert_eq!(
        support::condition(&done, "Degraded"),
        Some(("False".into(), "AsExpected".into()))
    );
}

/// The positive control: with the Restart strategy the operator deactivates Token 1 first, so
/// pods that read it are cut off until they restart; the ledger must report exactly that.
#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_sees_the_outage_the_restart_strategy_accepts() {
    let setup = setup("holders-control").await;
    setup
        .apply(fixtures::deployment(
            "svc",
            &setup.namespace,
            Some("ctl"),
            2,
        ))
        .await;
    setup
        .token("ctl", RotationStrategy::Restart, &["svc"])
        .await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "ctl").await;
    support::set_trigger(&setup.tokens, "ctl", "t1").await;
    support::wait_rotation_done(&setup.tokens, "ctl", "r1", TIMEOUT).await;
    let outage = ledger.assert_outage().await;
    assert!(
        outage.iter().any(|line| line.contains("svc")),
        "the consumer's pods held the deactivated token: {outage:?}"
    );
}
