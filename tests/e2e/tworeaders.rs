//! A workload that reads two StreamingTokens' Secrets is a consumer of both (its label names
//! one, `streamingtoken.io/tokens` the other): each rotation repoints only its own variable,
//! neither strips the other's (each applies with a field manager of its own), each stamps its
//! own annotation, and one ledger per mirror Secret sees no outage. And the upgrade path: fields
//! the shared manager of earlier versions owns are taken over by the token's own manager.

use crate::support::ledger::Ledger;
use crate::support::{self, fixtures, wait_condition};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;
use streaming_token_operator::api::{ROTATION_ANNOTATION, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A Deployment labelled for `label`, annotated for `also` (when given), whose container reads
/// each `(variable, secret)` from the Secret's Token 1 key.
fn reader(
    namespace: &str,
    name: &str,
    label: &str,
    also: Option<&str>,
    reads: &[(&str, &str)],
) -> Deployment {
    let env: Vec<serde_json::Value> = reads
        .iter()
        .map(|(variable, secret)| {
            json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token1"}}})
        })
        .collect();
    let mut metadata = json!({
        "name": name, "namespace": namespace,
        "labels": {"streamingtoken.io/token": label},
    });
    if let Some(also) = also {
        metadata["annotations"] = json!({"streamingtoken.io/tokens": also});
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": "registry.example/app:1", "env": env}]
                }
            }
        }
    }))
    .expect("deployment")
}

/// `variable -> (secret, key)` of every variable of Deployment `name`'s container `app`.
async fn variables(client: &Client, namespace: &str, name: &str) -> Vec<(String, String, String)> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("deployment");
    let spec = deployment.spec.template.spec.expect("pod spec");
    let mut found: Vec<(String, String, String)> = spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|variable| {
            let reference = variable
                .value_from
                .as_ref()
                .and_then(|from| from.secret_key_ref.clone())
                .unwrap_or_default();
            (variable.name.clone(), reference.name, reference.key)
        })
        .collect();
    found.sort();
    found
}

fn expected(alpha_key: &str, beta_key: &str) -> Vec<(String, String, String)> {
    vec![
        ("ALPHA_TOKEN".into(), "alpha".into(), alpha_key.into()),
        ("BETA_TOKEN".into(), "beta".into(), beta_key.into()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_reading_two_tokens_is_a_consumer_of_both() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("two-readers").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &reader(
            &namespace,
            "svc",
            "alpha",
            Some("beta"),
            &[("ALPHA_TOKEN", "alpha"), ("BETA_TOKEN", "beta")],
        ),
    )
    .await;
    for name in ["alpha", "beta"] {
        support::apply(
            &tokens,
            &fixtures::token(name, &namespace).with_trigger("t0").build(),
        )
        .await;
    }
    for name in ["alpha", "beta"] {
        wait_condition(&tokens, name, "Ready", "True", "TokensReady", TIMEOUT).await;
    }
    support::wait_deployments_available(&admin, &namespace, &["svc"]).await;
    let alpha_ledger = Ledger::start(&admin, &namespace, "alpha").await;
    let beta_ledger = Ledger::start(&admin, &namespace, "beta").await;
    for name in ["alpha", "beta"] {
        let token = tokens.get(name).await.expect("token");
        let consumers = token.status.and_then(|status| status.consumers);
        assert_eq!(
            consumers.map(|consumers| consumers.total),
            Some(1),
            "{name} counts svc as its consumer"
        );
    }

    // A, then B.
    support::set_trigger(&tokens, "alpha", "t1").await;
    support::wait_rotation_done(&tokens, "alpha", "r1", TIMEOUT).await;
    assert_eq!(
        variables(&admin, &namespace, "svc").await,
        expected("token2", "token1"),
        "alpha's rotation repointed only its own variable and kept beta's"
    );
    support::set_trigger(&tokens, "beta", "t1").await;
    support::wait_rotation_done(&tokens, "beta", "r1", TIMEOUT).await;
    assert_eq!(
        variables(&admin, &namespace, "svc").await,
        expected("token2", "token2"),
        "beta's rotation kept alpha's variable"
    );
    // Both at once.
    support::set_trigger(&tokens, "alpha", "t2").await;
    support::set_trigger(&tokens, "beta", "t2").await;
    support::wait_rotation_done(&tokens, "alpha", "r2", TIMEOUT).await;
    support::wait_rotation_done(&tokens, "beta", "r2", TIMEOUT).await;
    assert_eq!(
        variables(&admin, &namespace, "svc").await,
        expected("token2", "token2")
    );
    alpha_ledger.assert_no_outage().await;
    beta_ledger.assert_no_outage().await;

    let deployment = deployments.get("svc").await.expect("svc");
    let annotations = deployment
        .spec
        .template
        .metadata
        .and_then(|metadata| metadata.annotations)
        .unwrap_or_default();
    assert_eq!(
        annotations.get(ROTATION_ANNOTATION),
        Some(&support::rotation_stamp(&tokens, "alpha", "r2").await),
        "alpha stamps streamingtoken.io/rotation"
    );
    assert_eq!(
        annotations.get("rotation.streamingtoken.io/beta"),
        Some(&support::rotation_stamp(&tokens, "beta", "r2").await),
        "beta stamps an annotation of its own"
    );
    let managers: Vec<String> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    for manager in [
        format!("streamingtoken.io/consumers.{namespace}.alpha"),
        format!("streamingtoken.io/consumers.{namespace}.beta"),
    ] {
        assert!(managers.contains(&manager), "{manager} in {managers:?}");
    }
    assert!(
        !managers.contains(&"streamingtoken.io/consumers".to_string()),
        "{managers:?}"
    );
}

/// A consumer whose fields an earlier version applied with the shared manager
/// `streamingtoken.io/consumers` (and `streamingtoken.io/restarts`): the first repoint by the
/// token's own manager takes them over and releases the shared ones, so that an apply by the
/// new manager that leaves a field out really removes it.
#[tokio::test(flavor = "multi_thread")]
async fn fields_of_the_shared_manager_of_earlier_versions_are_taken_over() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("upgrade-managers").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &reader(&namespace, "old", "legacy", None, &[("TOKEN", "legacy")]),
    )
    .await;
    // What an earlier version left: the variable on Token 2, its stamp and the pod label, owned
    // by the shared managers.
    let earlier = |with_variable: bool| {
        let mut template = json!({"metadata": {
            "annotations": {ROTATION_ANNOTATION: "r0.00000000"},
            "labels": {"streamingtoken.io/token": "legacy"}
        }});
        if with_variable {
            template["spec"] = json!({"containers": [{"name": "app", "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "legacy", "key": "token2"}}}
            ]}]});
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "old"},
               "spec": {"template": template}})
    };
    for (manager, with_variable) in [
        ("streamingtoken.io/consumers", true),
        ("streamingtoken.io/restarts", false),
    ] {
        deployments
            .patch(
                "old",
                &PatchParams::apply(manager).force(),
                &Patch::Apply(earlier(with_variable)),
            )
            .await
            .expect("an earlier version's apply");
    }
    support::apply(
        &tokens,
        &fixtures::token("legacy", &namespace)
            .with_trigger("t0")
            .build(),
    )
    .await;
    wait_condition(&tokens, "legacy", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["old"]).await;
    let ledger = Ledger::start(&admin, &namespace, "legacy").await;
    support::set_trigger(&tokens, "legacy", "t1").await;
    support::wait_rotation_done(&tokens, "legacy", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;

    let deployment = deployments.get("old").await.expect("old");
    let managers: Vec<String> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    let own = format!("streamingtoken.io/consumers.{namespace}.legacy");
    assert!(managers.contains(&own), "{managers:?}");
    for shared in ["streamingtoken.io/consumers", "streamingtoken.io/restarts"] {
        assert!(
            !managers.contains(&shared.to_string()),
            "{shared} released: {managers:?}"
        );
    }
    assert_eq!(
        variables(&admin, &namespace, "old").await,
        [(
            "TOKEN".to_string(),
            "legacy".to_string(),
            "token2".to_string()
        )]
    );
    // An apply by the token's own manager that leaves the variable's reference out removes it:
    // no earlier manager still holds it.
    deployments
        .patch(
            "old",
            &PatchParams::apply(&own).force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "old"},
                "spec": {"template": {"metadata": {"annotations": {ROTATION_ANNOTATION: "r1.x"}}}}
            })),
        )
        .await
        .expect("apply by the new manager");
    assert_eq!(
        variables(&admin, &namespace, "old").await,
        [("TOKEN".to_string(), String::new(), String::new())],
        "the reference the new manager dropped is gone"
    );
}
