//! Invariant 5: no token value, nor its base64, in logs (at the most verbose level), Events,
//! status or metrics, through mirroring, bad input, a rotation and a promotion.

use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::time::Duration;
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(90);
const SENTINEL: &str = "STO-SENTINEL-7f3a9c2e41b8d6";
const SENTINEL_NEXT: &str = "STO-SENTINEL-NEXT-5d0e7a93c1";

fn base64(text: &str) -> String {
    use std::fmt::Write;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                let _ = out.write_char(char::from(
                    ALPHABET[((n >> (18 - 6 * index)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_clean(place: &str, text: &str) {
    for secret in [SENTINEL, SENTINEL_NEXT] {
        assert!(!text.contains(secret), "{place} contains a token value");
        let encoded = base64(secret);
        assert!(
            !text.contains(encoded.trim_end_matches('=')),
            "{place} contains a token value in base64"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_values_never_reach_logs_events_status_or_metrics() {
    assert_eq!(base64("Man"), "TWFu");
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "secrecy").await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "trace".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &deployments,
        &fixtures::deployment("api", &namespace, Some("sentinel"), 1),
    )
    .await;

    // Bad input first: both keys hold the sentinel.
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "sentinel", SENTINEL, SENTINEL),
    )
    .await;
    support::apply(
        &tokens,
        &fixtures::token("sentinel", &namespace)
            .secret_ref("portal")
            .with_trigger("one")
            .build(),
    )
    .await;
    wait_condition(
        &tokens,
        "sentinel",
        "Ready",
        "False",
        "SourceTokensIdentical",
        TIMEOUT,
    )
    .await;

    // Then a valid pair, mirrored.
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "sentinel", "plain-first", SENTINEL),
    )
    .await;
    wait_condition(&tokens, "sentinel", "Ready", "True", "TokensReady", TIMEOUT).await;

    // A rotation: consumers move to Token 2 (the sentinel), then the platform promotes it.
    support::apply(
        &tokens,
        &fixtures::token("sentinel", &namespace)
            .secret_ref("portal")
            .with_trigger("two")
            .build(),
    )
    .await;
    wait_condition(
        &tokens,
        "sentinel",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "sentinel", SENTINEL, SENTINEL_NEXT),
    )
    .await;
    support::wait_rotation_done(&tokens, "sentinel", "r1", TIMEOUT).await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "sentinel", "token1")
            .await
            .as_deref(),
        Some(SENTINEL)
    );

    let logs = operator.logs();
    // The HTTP and client layers stay at info whatever RUST_LOG says (they could log bodies);
    // everything else logs at trace.
    assert!(
        logs.lines().count() > 100,
        "trace logging is on ({} lines)",
        logs.lines().count()
    );
    assert!(logs.contains("TRACE"), "trace level reached");
    assert_clean("the operator's logs", &logs);
    let events = support::events(&admin, &namespace, "sentinel").await;
    assert!(events.len() >= 4, "{events:?}");
    assert_clean("Events", &format!("{events:?}"));
    let status =
        serde_json::to_string(&tokens.get("sentinel").await.expect("token")).expect("serializes");
    assert_clean("the StreamingToken (status included)", &status);
    assert_clean("metrics", &operator.metrics().await);
}
