//! The platform in the loop, against the test platform (`tests/platform`, a real HTTP server
//! that knows which tokens are valid at every moment and records every call): pasted pairs
//! checked before they are mirrored, a rotation clicked in the portal behind the operator's back
//! detected and answered, and rotations done at the platform by the operator itself with
//! exactly one rotate call through lost responses, a SIGKILL and an outage of the platform.

use crate::support::ledger::Ledger;
use crate::support::platform::{BROKER_PASSWORD, TestPlatform};
use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use streaming_token_operator::api::StreamingToken;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Consumers `names` of StreamingToken `token`, two replicas each, reading Token 1.
async fn consumers(admin: &Client, namespace: &str, token: &str, names: &[&str]) {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    for name in names {
        support::apply(
            &deployments,
            &fixtures::deployment(name, namespace, Some(token), 2),
        )
        .await;
    }
}

/// A StreamingToken `name` with `spec.platform` from `platform_spec`.
fn token_with_platform(
    name: &str,
    namespace: &str,
    source_secret: Option<&str>,
    platform_spec: serde_json::Value,
) -> StreamingToken {
    let mut builder = fixtures::token(name, namespace).with_trigger("t0");
    if let Some(secret) = source_secret {
        builder = builder.secret_ref(secret);
    }
    let mut token = builder.build();
    if source_secret.is_none() {
        token.spec.source.generate = None;
        token.spec.source.platform = Some(Default::default());
    }
    token.spec.platform = Some(serde_json::from_value(platform_spec).expect("platform spec"));
    token
}

async fn pat_secret(admin: &Client, namespace: &str, pat: &str) {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    support::apply(
        &secrets,
        &Secret {
            metadata: fixtures::metadata("quix-pat", namespace),
            data: Some(BTreeMap::from([(
                "pat".to_string(),
                ByteString(pat.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        },
    )
    .await;
}

fn message(token: &StreamingToken, type_: &str) -> String {
    token
        .status
        .iter()
        .flat_map(|status| status.conditions.iter())
        .find(|condition| condition.type_ == type_)
        .map(|condition| condition.message.clone())
        .unwrap_or_default()
}

/// Nothing the operator says anywhere carries a secret of the platform's.
async fn assert_nothing_leaks(
    admin: &Client,
    namespace: &str,
    name: &str,
    operator: &Operator,
    secrets: &[&str],
) {
    let logs = operator.logs();
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), namespace);
    let status = serde_json::to_string(&tokens.get(name).await.expect("token").status)
        .expect("status serializes");
    let events = format!("{:?}", support::events(admin, namespace, name).await);
    let metrics = operator.metrics().await;
    for secret in secrets {
        for (place, text) in [
            ("logs", &logs),
            ("status", &status),
            ("Events", &events),
            ("metrics", &metrics),
        ] {
            assert!(
                !text.contains(secret),
                "a platform secret appears in the operator's {place}"
            );
        }
    }
}

/// A StreamingToken with the platform in the loop and a rotation of its own at the platform:
/// namespace, platform, operator, consumers, the object Ready.
struct AtPlatform {
    admin: Client,
    namespace: String,
    tokens: Api<StreamingToken>,
    platform: TestPlatform,
    operator: Operator,
    pat: String,
}

const NAMES: [&str; 2] = ["ingest", "enrich"];

impl AtPlatform {
    async fn start(prefix: &str, options: OperatorOptions) -> Self {
        Self::start_with(prefix, options, "720h").await
    }

    async fn start_with(prefix: &str, options: OperatorOptions, pat_expires_in: &str) -> Self {
        let admin = support::admin_client().await;
        let namespace = support::namespace(&admin, prefix).await;
        let platform = TestPlatform::start().await;
        platform.workspace("ws").await;
        let pat = platform.pat("Admin", pat_expires_in).await;
        pat_secret(&admin, &namespace, &pat).await;
        consumers(&admin, &namespace, "pp", &NAMES).await;
        let operator = Operator::start(&admin, &namespace, options).await;
        let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
        support::apply(
            &tokens,
            &token_with_platform(
                "pp",
                &namespace,
                None,
                platform.spec("ws", "5s", Some("quix-pat")),
            ),
        )
        .await;
        wait_condition(&tokens, "pp", "Ready", "True", "TokensReady", TIMEOUT).await;
        wait_condition(
            &tokens,
            "pp",
            "PlatformVerified",
            "True",
            "TokensAccepted",
            TIMEOUT,
        )
        .await;
        support::wait_deployments_available(&admin, &namespace, &NAMES).await;
        Self {
            admin,
            namespace,
            tokens,
            platform,
            operator,
            pat,
        }
    }

    async fn mirror(&self) -> (String, String) {
        let value = |key: &'static str| async move {
            support::secret_value(&self.admin, &self.namespace, "pp", key)
                .await
                .expect("mirror key")
        };
        (value("token1").await, value("token2").await)
    }

    /// The rotation completes with the platform's new pair mirrored, after exactly one rotate
    /// call, and without any pod left on the deactivated token (the ledger).
    async fn assert_rotated_once(&self, before: &(String, String), ledger: &Ledger) {
        support::wait_rotation_done(&self.tokens, "pp", "r1", TIMEOUT).await;
        ledger.assert_no_outage().await;
        let calls = self.platform.calls("rotate").await;
        assert_eq!(calls.len(), 1, "exactly one rotate call: {calls:?}");
        let now = self.platform.pair("ws").await;
        assert_eq!(now.0, before.1, "the platform promoted Token 2");
        assert_eq!(
            self.mirror().await,
            now,
            "the mirror holds the platform's pair"
        );
        wait_condition(
            &self.tokens,
            "pp",
            "PlatformVerified",
            "True",
            "TokensAccepted",
            TIMEOUT,
        )
        .await;
        assert_nothing_leaks(
            &self.admin,
            &self.namespace,
            "pp",
            &self.operator,
            &[
                &self.pat,
                BROKER_PASSWORD,
                &before.0,
                &before.1,
                &now.0,
                &now.1,
            ],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pasted_pairs_are_checked_at_the_platform_before_they_are_mirrored() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "platform-pasted").await;
    let platform = TestPlatform::start().await;
    let (one, two) = platform.workspace("ws").await;
    let (foreign1, foreign2) = platform.workspace("ws-other").await;
    let _operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    consumers(&admin, &namespace, "pt", &NAMES).await;
    let paste = |token1: String, token2: String| {
        let secrets = secrets.clone();
        let namespace = namespace.clone();
        async move {
            support::apply(
                &secrets,
                &fixtures::source_secret("portal", &namespace, "pt", &token1, &token2),
            )
            .await;
        }
    };

    // A typo in Token 2 at set-up: refused, naming the key; nothing is mirrored.
    paste(one.clone(), format!("{two}x")).await;
    support::apply(
        &tokens,
        &token_with_platform(
            "pt",
            &namespace,
            Some("portal"),
            platform.spec("ws", "5s", None),
        ),
    )
    .await;
    let token = wait_condition(
        &tokens,
        "pt",
        "Ready",
        "False",
        "SourceTokenRejected",
        TIMEOUT,
    )
    .await;
    assert!(
        message(&token, "Ready").contains("key token2"),
        "{}",
        message(&token, "Ready")
    );
    assert!(
        secrets.get_opt("pt").await.expect("get").is_none(),
        "nothing mirrored"
    );
    support::wait_event(&admin, &namespace, "pt", "SourceTokenRejected", TIMEOUT).await;

    // Another environment's pair: refused, naming Token 1's key.
    paste(foreign1, foreign2).await;
    wait_for("the foreign pair refused", TIMEOUT, || async {
        let token = tokens.get("pt").await.map_err(|error| error.to_string())?;
        let text = message(&token, "Ready");
        if text.contains("key token1") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;

    // The right pair: mirrored, and the platform accepts it.
    paste(one.clone(), two.clone()).await;
    wait_condition(&tokens, "pt", "Ready", "True", "TokensReady", TIMEOUT).await;
    wait_condition(
        &tokens,
        "pt",
        "PlatformVerified",
        "True",
        "TokensAccepted",
        TIMEOUT,
    )
    .await;
    support::wait_deployments_available(&admin, &namespace, &NAMES).await;

    // A rotation: the person rotates at the platform when told, then pastes the new pair with
    // a typo in the new Token 2: it is not taken as the promotion.
    let ledger = Ledger::start(&admin, &namespace, "pt").await;
    support::set_trigger(&tokens, "pt", "t1").await;
    wait_condition(
        &tokens,
        "pt",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    let (new1, new2) = platform.portal_rotate("ws").await;
    assert_eq!(new1, two);
    paste(new1.clone(), format!("{new2}y")).await;
    let token = wait_condition(
        &tokens,
        "pt",
        "Degraded",
        "True",
        "SourceTokenRejected",
        TIMEOUT,
    )
    .await;
    assert!(message(&token, "Degraded").contains("key token2"));
    assert_eq!(
        support::secret_value(&admin, &namespace, "pt", "token1")
            .await
            .as_deref(),
        Some(one.as_str()),
        "the mistyped promotion is not mirrored"
    );
    paste(new1.clone(), new2.clone()).await;
    support::wait_rotation_done(&tokens, "pt", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    assert_eq!(
        support::secret_value(&admin, &namespace, "pt", "token2")
            .await
            .as_deref(),
        Some(new2.as_str())
    );
    assert!(
        platform.calls("rotate").await.is_empty(),
        "with secretRef the operator never rotates itself"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_portal_rotation_behind_the_operators_back_is_detected_and_answered() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "platform-oob").await;
    let platform = TestPlatform::start().await;
    let (one, two) = platform.workspace("ws").await;
    let operator = Operator::start(&admin, &namespace, OperatorOptions::default()).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    consumers(&admin, &namespace, "ob", &NAMES).await;
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "ob", &one, &two),
    )
    .await;
    support::apply(
        &tokens,
        &token_with_platform(
            "ob",
            &namespace,
            Some("portal"),
            // The generic HTTP form, asking what the Quix preset asks.
            serde_json::json!({
                "http": {
                    "url": format!("{}/workspaces/ws/broker/librdkafka", platform.url),
                    "headers": [
                        {"name": "Authorization", "value": "Bearer {token}"},
                        {"name": "X-Version", "value": "2.0"},
                        {"name": "Accept", "value": "application/json"},
                    ],
                },
                "timeout": "2s",
                "checkInterval": "5s",
            }),
        ),
    )
    .await;
    wait_condition(
        &tokens,
        "ob",
        "PlatformVerified",
        "True",
        "TokensAccepted",
        TIMEOUT,
    )
    .await;
    support::wait_deployments_available(&admin, &namespace, &NAMES).await;

    // Someone follows the platform's docs by hand and clicks rotate in the portal.
    let clicked = Instant::now();
    let (new1, new2) = platform.portal_rotate("ws").await;
    wait_condition(
        &tokens,
        "ob",
        "Degraded",
        "True",
        "RotatedOutOfBand",
        TIMEOUT,
    )
    .await;
    let detected = clicked.elapsed();
    support::wait_event(&admin, &namespace, "ob", "RotatedOutOfBand", TIMEOUT).await;
    assert!(
        detected < Duration::from_secs(5 + 10),
        "detected within one check interval (5 s) and a reconcile: {detected:?}"
    );
    // Every consumer is moved onto Token 2 (the platform's Token 1 now) at once; once every
    // pod that may hold the dead token is gone, the person is told to paste the new pair.
    let token = wait_condition(
        &tokens,
        "ob",
        "ReadyToRotate",
        "True",
        "AlreadyRotatedAtPlatform",
        TIMEOUT,
    )
    .await;
    let replaced = clicked.elapsed();
    assert_eq!(
        token
            .status
            .as_ref()
            .and_then(|status| status.rotation.as_ref())
            .map(|rotation| rotation.cause.clone()),
        Some("RotatedOutOfBand".to_string())
    );
    eprintln!(
        "[platform] portal rotation behind the operator's back: detected after {:.1} s, every pod that could hold the dead token replaced after {:.1} s (the outage of Token 1 readers)",
        detected.as_secs_f64(),
        replaced.as_secs_f64()
    );
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "ob", &new1, &new2),
    )
    .await;
    support::wait_rotation_done(&tokens, "ob", "r1", TIMEOUT).await;
    wait_condition(&tokens, "ob", "Degraded", "False", "AsExpected", TIMEOUT).await;
    wait_condition(
        &tokens,
        "ob",
        "PlatformVerified",
        "True",
        "TokensAccepted",
        TIMEOUT,
    )
    .await;
    let metrics = operator.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("streamingtoken_events_total")
                && line.contains("reason=\"RotatedOutOfBand\"")),
        "the RotatedOutOfBand Event is counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_at_the_platform_makes_exactly_one_rotate_call() {
    // Every HTTP layer at trace: no header, body or token may reach a log line.
    let setup = AtPlatform::start(
        "platform-rotate",
        OperatorOptions {
            rust_log: "info,streaming_token_operator=trace,reqwest=trace,hyper=trace,hyper_util=trace,rustls=trace,kube=trace".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    let before = setup.platform.pair("ws").await;
    assert_eq!(
        setup.mirror().await,
        before,
        "the platform's pair is mirrored"
    );
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    support::set_trigger(&setup.tokens, "pp", "t1").await;
    setup.assert_rotated_once(&before, &ledger).await;
    support::wait_event(
        &setup.admin,
        &setup.namespace,
        "pp",
        "PlatformRotated",
        TIMEOUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_rotate_response_never_leads_to_a_second_call() {
    // A PAT that expires in two days is reported before it does.
    let setup = AtPlatform::start_with("platform-lost", OperatorOptions::default(), "48h").await;
    wait_condition(
        &setup.tokens,
        "pp",
        "CredentialsExpiring",
        "True",
        "CredentialsExpireSoon",
        TIMEOUT,
    )
    .await;
    let metrics = setup.operator.metrics().await;
    assert!(
        support::metric_sum(
            &metrics,
            "streamingtoken_platform_credentials_expiry_timestamp_seconds"
        ) > 0.0,
        "the expiry is exported"
    );
    let before = setup.platform.pair("ws").await;
    setup.platform.fault("rotate", "lostResponse", 1).await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    support::set_trigger(&setup.tokens, "pp", "t1").await;
    setup.assert_rotated_once(&before, &ledger).await;
    support::wait_event(
        &setup.admin,
        &setup.namespace,
        "pp",
        "PlatformRotateFailed",
        TIMEOUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_the_rotate_call_the_next_operator_never_calls_again() {
    let setup = AtPlatform::start(
        "platform-kill",
        OperatorOptions {
            extra_env: vec![(
                "STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(),
                "platform:called".into(),
            )],
            ..OperatorOptions::default()
        },
    )
    .await;
    let before = setup.platform.pair("ws").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    support::set_trigger(&setup.tokens, "pp", "t1").await;
    let mut setup = setup;
    wait_for("the operator to halt after the call", TIMEOUT, || async {
        if setup.operator.logs().contains("test halt point reached") {
            Ok(())
        } else {
            Err(support::tail(&setup.operator.logs(), 3))
        }
    })
    .await;
    setup.operator.kill().await;
    setup.operator =
        Operator::start(&setup.admin, &setup.namespace, OperatorOptions::default()).await;
    setup.assert_rotated_once(&before, &ledger).await;
    // The call was recorded (`Calling`) and never its outcome: the next operator read the
    // platform's pair back, found the rotation there, and mirrored it without calling.
    assert!(
        !setup.operator.logs().contains("calling the platform"),
        "the operator after the crash made no rotate call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_down_mid_rotation_holds_it_and_it_resumes() {
    let setup = AtPlatform::start("platform-down", OperatorOptions::default()).await;
    let before = setup.platform.pair("ws").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    setup.platform.down(60).await;
    let down = Instant::now();
    support::set_trigger(&setup.tokens, "pp", "t1").await;
    let token = wait_condition(
        &setup.tokens,
        "pp",
        "Degraded",
        "True",
        "PlatformUnreachable",
        TIMEOUT,
    )
    .await;
    assert!(
        token
            .status
            .as_ref()
            .and_then(|status| status.rotation.as_ref())
            .is_some(),
        "the rotation is held, not dropped"
    );
    assert!(
        setup.platform.calls("rotate").await.is_empty(),
        "nothing called while down"
    );
    assert_eq!(
        setup.mirror().await,
        before,
        "nothing deactivated while the platform is down"
    );
    assert!(
        down.elapsed() < Duration::from_secs(55),
        "the check above ran while it was down"
    );
    setup.assert_rotated_once(&before, &ledger).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_failover_after_the_rotate_call_never_calls_again() {
    let options = |instance: &str, halt: bool| OperatorOptions {
        leader_elect: true,
        lease_duration_seconds: 6,
        instance: instance.into(),
        extra_env: if halt {
            vec![(
                "STREAMING_TOKEN_OPERATOR_HALT_AFTER".into(),
                "platform:called".into(),
            )]
        } else {
            Vec::new()
        },
        ..OperatorOptions::default()
    };
    let mut setup = AtPlatform::start("platform-failover", options("replica-a", true)).await;
    let identity = support::operator_identity(&setup.admin, &setup.namespace).await;
    let _standby =
        Operator::start_as(identity, &setup.namespace, options("replica-b", false)).await;
    let before = setup.platform.pair("ws").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    support::set_trigger(&setup.tokens, "pp", "t1").await;
    wait_for("the leader to halt after the call", TIMEOUT, || async {
        if setup.operator.logs().contains("test halt point reached") {
            Ok(())
        } else {
            Err(support::tail(&setup.operator.logs(), 3))
        }
    })
    .await;
    setup.operator.kill().await;
    wait_for("replica-b to lead", TIMEOUT, || async {
        let holder = support::lease_holder(&setup.admin, &setup.namespace).await;
        (holder == "replica-b").then_some(()).ok_or(holder)
    })
    .await;
    setup.operator = _standby;
    setup.assert_rotated_once(&before, &ledger).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_rotates_at_the_platform_first_then_restarts_every_consumer() {
    let setup = AtPlatform::start("platform-restart", OperatorOptions::default()).await;
    let mut token = setup.tokens.get("pp").await.expect("token");
    token.spec.rotation.strategy = streaming_token_operator::api::RotationStrategy::Restart;
    token.spec.rotation.trigger = Some("t1".into());
    token.metadata.managed_fields = None;
    token.status = None;
    let before = setup.platform.pair("ws").await;
    let ledger = Ledger::start(&setup.admin, &setup.namespace, "pp").await;
    support::apply(&setup.tokens, &token).await;
    support::wait_rotation_done(&setup.tokens, "pp", "r1", TIMEOUT).await;
    // Restart accepts the outage: the ledger sees pods on the deactivated token until they
    // restart (the positive control), and each consumer restarted once.
    let outage = ledger.assert_outage().await;
    assert!(!outage.is_empty());
    for name in NAMES {
        assert_eq!(
            support::rollouts(&setup.admin, &setup.namespace, name).await,
            1
        );
    }
    assert_eq!(setup.platform.calls("rotate").await.len(), 1);
    let now = setup.platform.pair("ws").await;
    assert_eq!(now.0, before.1);
    assert_eq!(setup.mirror().await, now);
}

/// The checks' cost: 100 StreamingTokens (secretRef, the Quix preset) checked every 30 s, over
/// two minutes: the platform's own count of check requests per StreamingToken per minute, and the
/// operator's memory before and after.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_platform_checks_at_100_streamingtokens() {
    const TOKENS: usize = 100;
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "bench-platform").await;
    let platform = TestPlatform::start().await;
    let (one, two) = platform.workspace("ws").await;
    let operator = Operator::start(
        &admin,
        &namespace,
        OperatorOptions {
            rust_log: "warn".into(),
            ..OperatorOptions::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = operator.child.id().expect("pid");
    let base = support::rss_kib(pid);
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    for index in 0..TOKENS {
        let name = format!("check-{index:03}");
        let source = format!("{name}-source");
        support::apply(
            &secrets,
            &fixtures::source_secret(&source, &namespace, &name, &one, &two),
        )
        .await;
        support::apply(
            &tokens,
            &token_with_platform(
                &name,
                &namespace,
                Some(&source),
                platform.spec("ws", "30s", None),
            ),
        )
        .await;
    }
    let started = Instant::now();
    wait_for("every StreamingToken verified", TIMEOUT * 3, || async {
        let list = tokens
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let verified = list
            .items
            .iter()
            .filter(|token| {
                support::condition(token, "PlatformVerified")
                    .is_some_and(|(status, _)| status == "True")
            })
            .count();
        (verified == TOKENS)
            .then_some(())
            .ok_or(format!("{verified}/{TOKENS}"))
    })
    .await;
    let settled = started.elapsed();
    let first_checks = platform.calls("broker").await.len();
    platform.clear_calls().await;
    let window = Duration::from_secs(120);
    tokio::time::sleep(window).await;
    let checks = platform.calls("broker").await.len();
    let rss = support::rss_kib(pid);
    #[allow(clippy::cast_precision_loss)]
    let per_token_minute = checks as f64 / TOKENS as f64 / (window.as_secs_f64() / 60.0);
    eprintln!(
        "[bench] platform checks: {TOKENS} StreamingTokens verified in {:.1} s with {first_checks} check requests; then {checks} requests in {} s at checkInterval 30s = {per_token_minute:.2} per StreamingToken per minute (2 tokens each; at the default 5m: 0.4); operator RSS {:.1} MiB before, {:.1} MiB with {TOKENS} StreamingTokens checked",
        settled.as_secs_f64(),
        window.as_secs(),
        base as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    assert!(checks > 0, "the periodic checks ran");
}
