//! The StreamingToken API: sources, the mirror Secret, status, bad input, zero writes, secrecy.

use crate::support::{
    self, Operator, OperatorOptions, fixtures, wait_condition, wait_event, wait_for,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use streaming_token_operator::api::{DeletionPolicy, StreamingToken};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn token_api(client: &Client, namespace: &str) -> Api<StreamingToken> {
    Api::namespaced(client.clone(), namespace)
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_source_mirrors_two_distinct_tokens_and_reports_ready() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-generate").await;
    let tokens = token_api(&admin, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("api", &namespace, Some("telemetry"), 1),
    )
    .await;
    support::apply(
        &deployments,
        &fixtures::deployment("worker", &namespace, Some("telemetry"), 1),
    )
    .await;
    support::apply(
        &deployments,
        &fixtures::deployment("unrelated", &namespace, None, 1),
    )
    .await;

    let started = Instant::now();
    support::apply(
        &tokens,
        &fixtures::token("telemetry", &namespace)
            .generate("sdk-", 40)
            .secret_name("telemetry-token")
            .build(),
    )
    .await;
    let token = wait_condition(
        &tokens,
        "telemetry",
        "Ready",
        "True",
        "TokensReady",
        TIMEOUT,
    )
    .await;
    eprintln!("[measure] create -> Ready=True: {:?}", started.elapsed());

    let token1 = support::secret_value(&admin, &namespace, "telemetry-token", "token1")
        .await
        .expect("token1");
    let token2 = support::secret_value(&admin, &namespace, "telemetry-token", "token2")
        .await
        .expect("token2");
    assert_ne!(token1, token2);
    for value in [&token1, &token2] {
        assert_eq!(value.len(), 44, "prefix plus 40 characters");
        assert!(value.starts_with("sdk-"));
    }
    let status = token.status.expect("status");
    assert_eq!(status.secret_name.as_deref(), Some("telemetry-token"));
    assert_eq!(
        status.consumers.expect("consumers").total,
        2,
        "only labelled workloads count"
    );
    assert_eq!(status.token1.expect("token1 identity").serial, 1);
    assert_eq!(status.token2.expect("token2 identity").serial, 2);
    let secret = Api::<Secret>::namespaced(admin.clone(), &namespace)
        .get("telemetry-token")
        .await
        .expect("secret");
    assert_eq!(
        secret
            .metadata
            .labels
            .expect("labels")
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("streaming-token-operator")
    );
    assert!(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "Retain: no owner reference"
    );
    support::wait_event(&admin, &namespace, "telemetry", "TokensIssued", TIMEOUT).await;

    let output = support::kubectl(&["get", "streamingtokens", "-n", &namespace]);
    let table = String::from_utf8_lossy(&output.stdout);
    for column in [
        "NAME",
        "SECRET",
        "STRATEGY",
        "READY",
        "REASON",
        "PHASE",
        "CONSUMERS",
        "LAST ROTATION",
        "AGE",
    ] {
        assert!(
            table.contains(column),
            "kubectl get shows {column}: {table}"
        );
    }
    assert!(
        table.contains("telemetry-token")
            && table.contains("ZeroDowntime")
            && table.contains("TokensReady"),
        "{table}"
    );
    let explain = support::kubectl(&["explain", "streamingtoken.spec.rotation"]);
    let explain = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.contains("rolloutTimeout")
            && explain.contains("every new value asks for exactly one rotation"),
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_and_deletion_of_the_mirror_secret_are_repaired() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-repair").await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("pair", &namespace).build()).await;
    wait_condition(&tokens, "pair", "Ready", "True", "TokensReady", TIMEOUT).await;
    let original = support::secret_value(&admin, &namespace, "pair", "token2")
        .await
        .expect("token2");

    // Someone strips our labels: restored, values kept.
    secrets
        .patch(
            "pair",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"streamingtoken.io/token2-serial": "99"}}}),
            ),
        )
        .await
        .expect("annotation edited");
    wait_for("the serial annotation to be restored", TIMEOUT, || async {
        let secret = secrets
            .get("pair")
            .await
            .map_err(|error| error.to_string())?;
        let serial = secret
            .metadata
            .annotations
            .unwrap_or_default()
            .get("streamingtoken.io/token2-serial")
            .cloned();
        if serial.as_deref() == Some("2") {
            Ok(())
        } else {
            Err(format!("{serial:?}"))
        }
    })
    .await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "pair", "token2")
            .await
            .as_deref(),
        Some(original.as_str())
    );

    // Someone edits a value: the generated pair is lost, so a new pair is issued and said so.
    secrets
        .patch(
            "pair",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"token1": ByteString(b"edited-by-hand".to_vec())}})),
        )
        .await
        .expect("value edited");
    wait_event(&admin, &namespace, "pair", "MirrorSecretTampered", TIMEOUT).await;
    let token = wait_for("new serials after tampering", TIMEOUT, || async {
        let token = tokens
            .get("pair")
            .await
            .map_err(|error| error.to_string())?;
        let serial = token
            .status
            .as_ref()
            .and_then(|status| status.token1.as_ref())
            .map(|identity| identity.serial);
        if serial == Some(3) {
            Ok(token)
        } else {
            Err(format!("token1 serial {serial:?}"))
        }
    })
    .await;
    assert_eq!(
        token.status.expect("status").token2.expect("token2").serial,
        4
    );
    let repaired = support::secret_value(&admin, &namespace, "pair", "token1")
        .await
        .expect("token1");
    assert_ne!(repaired, "edited-by-hand");

    // Someone deletes the Secret: recreated with a new pair, a Warning Event says the pair was lost.
    secrets
        .delete("pair", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_event(&admin, &namespace, "pair", "MirrorSecretDeleted", TIMEOUT).await;
    wait_for("the Secret to be recreated", TIMEOUT, || async {
        match support::secret_value(&admin, &namespace, "pair", "token1").await {
            Some(value) if value != repaired => Ok(()),
            other => Err(format!("{:?}", other.map(|_| "same value"))),
        }
    })
    .await;
    wait_condition(&tokens, "pair", "Ready", "True", "TokensReady", TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_ref_source_is_mirrored_and_followed() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-secretref").await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &secrets,
        &fixtures::source_secret(
            "portal",
            &namespace,
            "from-portal",
            "portal-one",
            "portal-two",
        ),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("from-portal", &namespace)
            .secret_ref("portal")
            .build(),
    )
    .await;
    wait_condition(
        &tokens,
        "from-portal",
        "Ready",
        "True",
        "TokensReady",
        TIMEOUT,
    )
    .await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "from-portal", "token1")
            .await
            .as_deref(),
        Some("portal-one")
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "from-portal", "token2")
            .await
            .as_deref(),
        Some("portal-two")
    );

    // The platform rotated: the source now holds the promoted pair.
    let started = Instant::now();
    support::apply(
        &secrets,
        &fixtures::source_secret(
            "portal",
            &namespace,
            "from-portal",
            "portal-two",
            "portal-three",
        ),
    )
    .await;
    wait_for("the mirror to follow the source", TIMEOUT, || async {
        let value = support::secret_value(&admin, &namespace, "from-portal", "token2").await;
        if value.as_deref() == Some("portal-three") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    eprintln!(
        "[measure] source change -> mirror updated: {:?}",
        started.elapsed()
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "from-portal", "token1")
            .await
            .as_deref(),
        Some("portal-two")
    );
    let token = tokens.get("from-portal").await.expect("token");
    let status = token.status.expect("status");
    assert_eq!(
        status.token1.expect("token1").serial,
        2,
        "the promoted token keeps its serial"
    );
    assert_eq!(status.token2.expect("token2").serial, 3);
    wait_event(&admin, &namespace, "from-portal", "SourcePromoted", TIMEOUT).await;

    // The mirror is edited by hand: restored from the source.
    secrets
        .patch(
            "from-portal",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"token2": ByteString(b"wrong".to_vec())}})),
        )
        .await
        .expect("edited");
    wait_for(
        "the mirror to be restored from the source",
        TIMEOUT,
        || async {
            let value = support::secret_value(&admin, &namespace, "from-portal", "token2").await;
            if value.as_deref() == Some("portal-three") {
                Ok(())
            } else {
                Err(format!("{value:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_streamingtokens_cannot_claim_one_secret_and_foreign_secrets_are_left_alone() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-conflict").await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);

    support::apply(
        &tokens,
        &fixtures::token("first", &namespace)
            .secret_name("shared")
            .build(),
    )
    .await;
    wait_condition(&tokens, "first", "Ready", "True", "TokensReady", TIMEOUT).await;
    let before = secrets.get("shared").await.expect("shared");

    support::apply(
        &tokens,
        &fixtures::token("second", &namespace)
            .secret_name("shared")
            .build(),
    )
    .await;
    let second = wait_condition(
        &tokens,
        "second",
        "Ready",
        "False",
        "SecretClaimedByOther",
        TIMEOUT,
    )
    .await;
    let message = second
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready")
        .message;
    assert!(message.contains("first"), "{message}");
    wait_event(
        &admin,
        &namespace,
        "second",
        "SecretClaimedByOther",
        TIMEOUT,
    )
    .await;

    // A Secret the operator did not create.
    let foreign = Secret {
        metadata: fixtures::metadata("theirs", &namespace),
        string_data: Some(BTreeMap::from([(
            "token1".to_string(),
            "keep-me".to_string(),
        )])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .expect("foreign secret");
    support::apply(
        &tokens,
        &fixtures::token("third", &namespace)
            .secret_name("theirs")
            .build(),
    )
    .await;
    wait_condition(
        &tokens,
        "third",
        "Ready",
        "False",
        "SecretNotOwned",
        TIMEOUT,
    )
    .await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = secrets.get("shared").await.expect("shared");
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "the first Secret was not overwritten"
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "theirs", "token1")
            .await
            .as_deref(),
        Some("keep-me")
    );
    assert_eq!(
        support::secret_value(&admin, &namespace, "theirs", "token2").await,
        None
    );
    wait_condition(&tokens, "first", "Ready", "True", "TokensReady", TIMEOUT).await;
}

/// Each bad input gets a condition with a reason and a Warning Event, backs off instead of
/// looping, and leaves a healthy StreamingToken in the same namespace untouched.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_reason_an_event_and_backoff() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "mirror-bad").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("healthy", &namespace).build()).await;
    wait_condition(&tokens, "healthy", "Ready", "True", "TokensReady", TIMEOUT).await;
    let healthy_version = secrets
        .get("healthy")
        .await
        .expect("healthy")
        .metadata
        .resource_version;

    let oversized = "x".repeat(5000);
    let source = |name: &str, data: Vec<(&str, &str)>| Secret {
        metadata: fixtures::metadata(name, &namespace),
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    // (name, source Secret to create, the StreamingToken, expected reason)
    let cases: Vec<(&str, Option<Secret>, StreamingToken, &str)> = vec![
        (
            "missing",
            None,
            fixtures::token("missing", &namespace)
                .secret_ref("nowhere")
                .build(),
            "SourceSecretNotFound",
        ),
        (
            "no-key",
            Some(source("src-no-key", vec![("token1", "only-one")])),
            fixtures::token("no-key", &namespace)
                .secret_ref("src-no-key")
                .build(),
            "SourceKeyMissing",
        ),
        (
            "empty",
            Some(source("src-empty", vec![("token1", ""), ("token2", "b")])),
            fixtures::token("empty", &namespace)
                .secret_ref("src-empty")
                .build(),
            "SourceTokenInvalid",
        ),
        (
            "oversized",
            Some(source(
                "src-big",
                vec![("token1", oversized.as_str()), ("token2", "b")],
            )),
            fixtures::token("oversized", &namespace)
                .secret_ref("src-big")
                .build(),
            "SourceTokenInvalid",
        ),
        (
            "same",
            Some(source(
                "src-same",
                vec![("token1", "same"), ("token2", "same")],
            )),
            fixtures::token("same", &namespace)
                .secret_ref("src-same")
                .build(),
            "SourceTokensIdentical",
        ),
        (
            "self-source",
            None,
            fixtures::token("self-source", &namespace)
                .secret_ref("self-source")
                .build(),
            "InvalidSpec",
        ),
    ];
    for (_, secret, token, _) in &cases {
        if let Some(secret) = secret {
            support::apply(&secrets, secret).await;
        }
        support::apply(&tokens, token).await;
    }
    for (name, _, _, reason) in &cases {
        let token = wait_condition(&tokens, name, "Ready", "False", reason, TIMEOUT).await;
        let degraded = support::condition(&token, "Degraded").expect("Degraded");
        assert_eq!(degraded, ("True".to_string(), reason.to_string()), "{name}");
        wait_event(&admin, &namespace, name, reason, TIMEOUT).await;
    }
    // No hot loop: over 6 seconds, a handful of retries at most across all six bad objects.
    let before = support::metric_sum(&operator.metrics().await, "streamingtoken_reconciles_total");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = support::metric_sum(&operator.metrics().await, "streamingtoken_reconciles_total");
    assert!(
        after - before <= 24.0,
        "{} reconciles in 6 s for 6 bad objects: a hot loop",
        after - before
    );
    // The healthy one was not touched.
    assert_eq!(
        secrets
            .get("healthy")
            .await
            .expect("healthy")
            .metadata
            .resource_version,
        healthy_version
    );
    wait_condition(&tokens, "healthy", "Ready", "True", "TokensReady", TIMEOUT).await;

    // Fixing the input recovers without a restart.
    support::apply(
        &secrets,
        &source(
            "src-no-key",
            vec![("token1", "fixed-one"), ("token2", "fixed-two")],
        ),
    )
    .await;
    wait_condition(
        &tokens,
        "no-key",
        "Ready",
        "True",
        "TokensReady",
        Duration::from_secs(120),
    )
    .await;
}

/// What the schema and CEL rules reject before the operator sees it.
#[tokio::test(flavor = "multi_thread")]
async fn schema_and_cel_reject_invalid_specs() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "mirror-schema").await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &namespace,
        &kube::discovery::ApiResource::erase::<StreamingToken>(&()),
    );
    let cases = [
        (
            json!({"source": {"generate": {}, "secretRef": {"name": "x"}}}),
            "exactly one of source.generate, source.secretRef or source.platform",
        ),
        (
            json!({"source": {}}),
            "exactly one of source.generate, source.secretRef or source.platform",
        ),
        (json!({"source": {"generate": {"length": 8}}}), "length"),
        (
            json!({"source": {"generate": {}}, "secret": {"token1Key": "same", "token2Key": "same"}}),
            "must differ",
        ),
        (
            json!({"source": {"generate": {}}, "rotation": {"interval": "5m"}}),
            "at least 1h",
        ),
        (
            json!({"source": {"generate": {}}, "rotation": {"rolloutTimeout": "1s"}}),
            "between 30s and 24h",
        ),
        (
            json!({"source": {"generate": {}}, "rotation": {"strategy": "Sometimes"}}),
            "strategy",
        ),
        (
            json!({"source": {"generate": {}}, "consumers": {"envVar": "not valid"}}),
            "envVar",
        ),
        (
            json!({"source": {"generate": {"prefix": "has space"}}}),
            "prefix",
        ),
        // The platform: generated tokens are unknown to it; source.platform needs rotate and
        // rotate needs source.platform; a check is Quix or HTTP, and an HTTP check carries the
        // token in a header, never in the URL.
        (
            json!({"source": {"generate": {}}, "platform": {"quix": {"portalApi": "https://p.example", "workspaceId": "ws"}}}),
            "generated tokens are unknown to the platform",
        ),
        (
            json!({"source": {"platform": {}}, "platform": {"quix": {"portalApi": "https://p.example", "workspaceId": "ws"}}}),
            "source.platform needs spec.platform with rotate",
        ),
        (
            json!({"source": {"secretRef": {"name": "s"}}, "platform": {"quix": {"portalApi": "https://p.example", "workspaceId": "ws"}, "rotate": {"credentialsSecretRef": {"name": "p", "key": "pat"}, "read": {"url": "/r"}, "rotate": {"url": "/x"}, "token1Path": "$.a", "token2Path": "$.b"}}}),
            "spec.platform.rotate needs source.platform",
        ),
        (
            json!({"source": {"secretRef": {"name": "s"}}, "platform": {}}),
            "exactly one of platform.quix or platform.http",
        ),
        (
            json!({"source": {"secretRef": {"name": "s"}}, "platform": {"http": {"url": "https://p.example/check?t={token}", "headers": [{"name": "X", "value": "{token}"}]}}}),
            "url",
        ),
        (
            json!({"source": {"secretRef": {"name": "s"}}, "platform": {"http": {"url": "https://p.example/check", "headers": [{"name": "X", "value": "static"}]}}}),
            "needs a header whose value carries {token}",
        ),
        (
            json!({"source": {"secretRef": {"name": "s"}}, "platform": {"quix": {"portalApi": "https://p.example", "workspaceId": "ws"}, "checkInterval": "1s"}}),
            "checkInterval must be between 5s and 24h",
        ),
    ];
    for (index, (spec, expected)) in cases.iter().enumerate() {
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "streamingtoken.io/v1alpha1",
            "kind": "StreamingToken",
            "metadata": {"name": format!("bad-{index}"), "namespace": namespace},
            "spec": spec,
        }))
        .expect("object");
        match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{spec}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{spec}: message {:?} lacks {expected:?}",
                    status.message
                );
            }
            other => panic!("{spec} must be rejected, got {other:?}"),
        }
    }

    // A name over 63 characters would fail every label on the mirror Secret: rejected up front.
    let long_name = format!("n{}", "x".repeat(63));
    let long: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "streamingtoken.io/v1alpha1",
        "kind": "StreamingToken",
        "metadata": {"name": long_name, "namespace": namespace},
        "spec": {"source": {"generate": {}}},
    }))
    .expect("object");
    match api.create(&PostParams::default(), &long).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("at most 63 characters"),
                "{status:?}"
            );
        }
        other => panic!("a 64-character name must be rejected, got {other:?}"),
    }
    let sixty_three = format!("n{}", "x".repeat(62));
    support::apply(
        &Api::<StreamingToken>::namespaced(admin.clone(), &namespace),
        &fixtures::token(&sixty_three, &namespace).build(),
    )
    .await;

    // Transition rule: the mirror Secret's name and keys cannot change under consumers.
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("fixed", &namespace).build()).await;
    let change = tokens
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secret": {"token2Key": "renamed"}}})),
        )
        .await;
    match change {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("spec.secret is immutable"),
            "{status:?}"
        ),
        other => panic!("renaming a key must be rejected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_policy_decides_the_fate_of_the_mirror_secret() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-deletion").await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("kept", &namespace).build()).await;
    support::apply(
        &tokens,
        &fixtures::token("dropped", &namespace)
            .deletion_policy(DeletionPolicy::Delete)
            .build(),
    )
    .await;
    wait_condition(&tokens, "kept", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_condition(&tokens, "dropped", "Ready", "True", "TokensReady", TIMEOUT).await;
    // A consumer of the Delete-policy Secret: the danger is said before anyone deletes.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("reader", &namespace, Some("dropped"), 1),
    )
    .await;
    wait_condition(
        &tokens,
        "dropped",
        "DeletesSecretInUse",
        "True",
        "SecretInUse",
        TIMEOUT,
    )
    .await;
    support::wait_event(
        &admin,
        &namespace,
        "dropped",
        "DeletionPolicyDeletesSecretInUse",
        TIMEOUT,
    )
    .await;
    let kept = tokens.get("kept").await.expect("kept");
    assert_eq!(
        support::condition(&kept, "DeletesSecretInUse"),
        None,
        "Retain: no warning"
    );
    tokens
        .delete("kept", &DeleteParams::default())
        .await
        .expect("deleted");
    tokens
        .delete("dropped", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for(
        "the Delete-policy Secret to be garbage-collected",
        TIMEOUT,
        || async {
            match secrets
                .get_opt("dropped")
                .await
                .map_err(|error| error.to_string())?
            {
                None => Ok(()),
                Some(_) => Err("still there".into()),
            }
        },
    )
    .await;
    assert!(
        secrets.get_opt("kept").await.expect("read").is_some(),
        "Retain keeps the Secret"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_streamingtoken_is_left_alone() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-suspend").await;
    let tokens = token_api(&admin, &namespace).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(&tokens, &fixtures::token("paused", &namespace).build()).await;
    wait_condition(&tokens, "paused", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::apply(
        &tokens,
        &fixtures::token("paused", &namespace).suspend(true).build(),
    )
    .await;
    wait_condition(&tokens, "paused", "Ready", "True", "Suspended", TIMEOUT).await;
    secrets
        .delete("paused", &DeleteParams::default())
        .await
        .expect("deleted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        secrets.get_opt("paused").await.expect("read").is_none(),
        "suspended: not repaired"
    );
    support::apply(
        &tokens,
        &fixtures::token("paused", &namespace).suspend(false).build(),
    )
    .await;
    wait_condition(&tokens, "paused", "Ready", "True", "TokensReady", TIMEOUT).await;
    assert!(
        secrets.get_opt("paused").await.expect("read").is_some(),
        "resumed: repaired"
    );
}

/// Invariant 6: a reconcile that finds everything converged makes zero API writes.
#[tokio::test(flavor = "multi_thread")]
async fn converged_reconcile_makes_zero_writes() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "mirror-zero-writes").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens = token_api(&admin, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("api", &namespace, Some("quiet"), 2),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("quiet", &namespace)
            .with_trigger("initial")
            .build(),
    )
    .await;
    wait_condition(&tokens, "quiet", "Ready", "True", "TokensReady", TIMEOUT).await;
    // Let the consumer finish rolling out, and any status echo settle.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let user = support::service_account_user(&namespace, "streaming-token-operator");
    let writes_before = support::audited_writes(&user).len();
    let reconciles_before =
        support::metric_sum(&operator.metrics().await, "streamingtoken_reconciles_total");
    // Wake the reconciler several times without changing anything it manages.
    for round in 0..3 {
        tokens
            .patch(
                "quiet",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"example.com/poke": round.to_string()}}}),
                ),
            )
            .await
            .expect("annotated");
        deployments
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"example.com/poke": round.to_string()}}}),
                ),
            )
            .await
            .expect("annotated");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let reconciles = wait_for("the pokes to be reconciled", TIMEOUT, || async {
        let now = support::metric_sum(&operator.metrics().await, "streamingtoken_reconciles_total");
        if now - reconciles_before >= 3.0 {
            Ok(now - reconciles_before)
        } else {
            Err(format!("{} reconciles", now - reconciles_before))
        }
    })
    .await;
    let writes = support::audited_writes(&user);
    let new_writes: Vec<String> = writes[writes_before..]
        .iter()
        .map(|entry| format!("{} {}", entry["verb"], entry["requestURI"]))
        .collect();
    assert!(
        new_writes.is_empty(),
        "{reconciles} converged reconciles wrote: {new_writes:?}"
    );
    eprintln!("[measure] {reconciles} converged reconciles, 0 writes");
}

/// An older copy of the mirror Secret put back after a rotation (a saved manifest re-applied)
/// is refused: the deactivated Token 1 does not come back, the serials never go backwards, and
/// no rotation is marked complete by it.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_mirror_put_back_after_a_rotation_is_refused() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("mirror-rollback").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &Api::<Deployment>::namespaced(admin.clone(), &namespace),
        &fixtures::deployment("api", &namespace, Some("rb"), 1),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("rb", &namespace).with_trigger("t0").build(),
    )
    .await;
    wait_condition(&tokens, "rb", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["api"]).await;
    let saved = secrets.get("rb").await.expect("mirror");
    let old_token1 = support::secret_value(&admin, &namespace, "rb", "token1")
        .await
        .expect("token1");
    support::set_trigger(&tokens, "rb", "t1").await;
    support::wait_rotation_done(&tokens, "rb", "r1", TIMEOUT * 2).await;

    // The saved copy is put back as it was (kubectl replace of the saved manifest).
    let mut copy = saved.clone();
    copy.metadata.resource_version = secrets
        .get("rb")
        .await
        .expect("mirror")
        .metadata
        .resource_version;
    copy.metadata.managed_fields = None;
    secrets
        .replace("rb", &PostParams::default(), &copy)
        .await
        .expect("the older copy is put back");
    support::wait_event(&admin, &namespace, "rb", "MirrorSecretRolledBack", TIMEOUT).await;
    wait_for("the older copy to be replaced", TIMEOUT, || async {
        let token1 = support::secret_value(&admin, &namespace, "rb", "token1").await;
        if token1.as_deref() != Some(old_token1.as_str()) {
            Ok(())
        } else {
            Err("the deactivated Token 1 is back".to_string())
        }
    })
    .await;
    let status = tokens
        .get("rb")
        .await
        .expect("token")
        .status
        .expect("status");
    assert!(
        status.token1.as_ref().expect("token1").serial > 2,
        "the serials never go backwards: {:?}",
        status.token1
    );
    // The only rotation after r1 is the restart onto the new pair (ids `x<serial>`).
    let last = status
        .last_rotation
        .as_ref()
        .expect("last rotation")
        .id
        .clone();
    assert!(
        last == "r1" || last.starts_with('x'),
        "no rotation is marked complete by the older copy: {last}"
    );
}
