//! Webhook notifications end to end, against a receiver the test starts on 127.0.0.1: it counts
//! the notifications of a rotation (each once, a restart sends none again); a receiver that
//! fails or hangs is retried and never holds the rotation up; one that refuses is given up with
//! a Warning. The webhook URL carries a sentinel that must never appear in the operator's logs
//! (every HTTP layer at trace level), Events or status.

use crate::support::{self, Operator, OperatorOptions, fixtures, wait_condition, wait_for};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streaming_token_operator::api::{
    Notifications, StreamingToken, WebhookNotification, WebhookSecretRef,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(120);

/// How the receiver answers its n-th request (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    /// Reads the request and answers nothing for this long.
    Hang(Duration),
}

/// One request the receiver got: when, its path, the delivery header, the JSON body.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    delivery: String,
    body: serde_json::Value,
    answered_ok: bool,
}

/// A webhook receiver on 127.0.0.1 (a port the kernel chose, kept bound for the whole test).
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: fn(usize) -> Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = received.clone();
        tokio::spawn(async move {
            let mut count = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let answer = script(count);
                count += 1;
                tokio::spawn(serve(stream, answer, sink.clone()));
            }
        });
        Self { port, received }
    }

    fn url(&self, sentinel: &str) -> String {
        format!("http://127.0.0.1:{}/services/{sentinel}", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// How many requests of `event` it got (each attempt counts).
    fn count(&self, event: &str) -> usize {
        self.all()
            .iter()
            .filter(|request| request.body["event"] == event)
            .count()
    }
}

/// Reads one request (head and `Content-Length` body), records it, answers as told.
async fn serve(mut stream: tokio::net::TcpStream, answer: Answer, sink: Arc<Mutex<Vec<Received>>>) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let (head, body_start) = loop {
        let Ok(read) = stream.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        data.extend_from_slice(&buffer[..read]);
        if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&data[..end]).to_string(), end + 4);
        }
    };
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while data.len() < body_start + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => data.extend_from_slice(&buffer[..read]),
        }
    }
    let body = serde_json::from_slice(&data[body_start..body_start + length]).unwrap_or_default();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(status) => status,
        Answer::Hang(duration) => {
            sink.lock().expect("lock").push(Received {
                at: Instant::now(),
                path,
                delivery: header("x-streamingtoken-delivery"),
                body,
                answered_ok: false,
            });
            tokio::time::sleep(duration).await;
            return;
        }
    };
    sink.lock().expect("lock").push(Received {
        at: Instant::now(),
        path,
        delivery: header("x-streamingtoken-delivery"),
        body,
        answered_ok: status == 200,
    });
    let response =
        format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A sentinel that stands for the credential a webhook URL embeds.
fn sentinel() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("SENTINEL-{}-{nanos}", std::process::id())
}

fn notifications(timeout: &str) -> Notifications {
    Notifications {
        webhook: WebhookNotification {
            url_secret_ref: WebhookSecretRef {
                name: "hook".into(),
                key: "url".into(),
                namespace: None,
            },
            timeout: timeout.into(),
            events: Vec::new(),
        },
    }
}

async fn webhook_secret(admin: &kube::Client, namespace: &str, url: &str) {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    support::apply(
        &secrets,
        &Secret {
            metadata: fixtures::metadata("hook", namespace),
            data: Some(BTreeMap::from([(
                "url".to_string(),
                ByteString(url.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        },
    )
    .await;
}

/// An operator whose every HTTP layer logs at trace level (to prove the URL is never logged).
async fn verbose_operator(admin: &kube::Client, namespace: &str) -> Operator {
    Operator::start(
        admin,
        namespace,
        OperatorOptions {
            rust_log: "info,streaming_token_operator=trace,reqwest=trace,hyper=trace,hyper_util=trace,rustls=trace".into(),
            ..OperatorOptions::default()
        },
    )
    .await
}

/// Nothing the operator wrote or said carries the sentinel: logs, Events, the object.
async fn assert_sentinel_nowhere(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    sentinel: &str,
    logs: &str,
) {
    assert!(!logs.is_empty(), "the operator logged something");
    assert!(
        !logs.contains(sentinel),
        "the webhook URL is in the operator's logs"
    );
    let events = support::events(admin, namespace, name).await;
    assert!(!format!("{events:?}").contains(sentinel), "in an Event");
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), namespace);
    let token = tokens.get(name).await.expect("token");
    let text = serde_json::to_string(&token).expect("json");
    assert!(!text.contains(sentinel), "in the object or its status");
}

async fn wait_records(
    tokens: &Api<StreamingToken>,
    name: &str,
    what: &str,
    check: impl Fn(&[streaming_token_operator::api::NotificationRecord]) -> bool,
) -> Vec<streaming_token_operator::api::NotificationRecord> {
    wait_for(what, TIMEOUT, || async {
        let token = tokens.get(name).await.map_err(|error| error.to_string())?;
        let records = token.status.unwrap_or_default().notifications;
        if check(&records) {
            Ok(records)
        } else {
            Err(format!("{records:?}"))
        }
    })
    .await
}

fn state_of(
    records: &[streaming_token_operator::api::NotificationRecord],
    event: &str,
) -> Option<(String, i32)> {
    records
        .iter()
        .find(|record| record.event == event)
        .map(|record| (record.state.clone(), record.attempts))
}

/// A secretRef rotation, told to a receiver: RotationStarted, NeedsAction (the person's cue)
/// and RotationCompleted, each exactly once with the same rotation id; a restarted operator
/// sends none again; the URL is nowhere to be read.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_counts_the_notifications_of_a_rotation() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "notify-count").await;
    let receiver = Receiver::start(|_| Answer::Ok).await;
    let sentinel = sentinel();
    webhook_secret(&admin, &namespace, &receiver.url(&sentinel)).await;
    let mut operator = verbose_operator(&admin, &namespace).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &Api::<Deployment>::namespaced(admin.clone(), &namespace),
        &fixtures::deployment("app", &namespace, Some("told"), 1),
    )
    .await;
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "told", "p-one", "p-two"),
    )
    .await;
    let mut token = fixtures::token("told", &namespace)
        .secret_ref("portal")
        .with_trigger("t1")
        .build();
    token.spec.rotation.notifications = Some(notifications("5s"));
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, "told", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;

    support::set_trigger(&tokens, "told", "t2").await;
    wait_condition(
        &tokens,
        "told",
        "ReadyToRotate",
        "True",
        "ConsumersOnToken2",
        TIMEOUT,
    )
    .await;
    wait_records(&tokens, "told", "NeedsAction sent", |records| {
        state_of(records, "NeedsAction") == Some(("Sent".into(), 1))
    })
    .await;
    assert_eq!(receiver.count("RotationStarted"), 1);
    assert_eq!(receiver.count("NeedsAction"), 1);
    let needs_action = receiver
        .all()
        .into_iter()
        .find(|request| request.body["event"] == "NeedsAction")
        .expect("received");
    assert_eq!(needs_action.path, format!("/services/{sentinel}"));
    assert_eq!(needs_action.body["object"]["name"], "told");
    assert_eq!(needs_action.body["object"]["namespace"], namespace.as_str());
    assert_eq!(needs_action.body["object"]["kind"], "StreamingToken");
    assert_eq!(needs_action.body["rotation"], "r1");
    assert_eq!(needs_action.body["reason"], "ConsumersOnToken2");
    let text = needs_action.body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("a person must act") && text.contains("rotate the tokens at the platform"),
        "{text}"
    );
    assert!(
        needs_action.delivery.ends_with("/r1/NeedsAction"),
        "{}",
        needs_action.delivery
    );

    // The person rotates at the platform and pastes the promoted pair.
    support::apply(
        &secrets,
        &fixtures::source_secret("portal", &namespace, "told", "p-two", "p-three"),
    )
    .await;
    support::wait_rotation_done(&tokens, "told", "r1", TIMEOUT).await;
    let records = wait_records(&tokens, "told", "every notification sent", |records| {
        records.len() == 3 && records.iter().all(|record| record.state == "Sent")
    })
    .await;
    assert!(
        records.iter().all(|record| record.rotation == "r1"),
        "{records:?}"
    );
    assert_eq!(receiver.count("RotationCompleted"), 1);

    // A restarted operator sends nothing again.
    operator.kill().await;
    let logs_before = operator.logs();
    let restarted = verbose_operator(&admin, &namespace).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let counts: Vec<usize> = [
        "RotationStarted",
        "NeedsAction",
        "RotationBlocked",
        "RotationCompleted",
    ]
    .iter()
    .map(|event| receiver.count(event))
    .collect();
    assert_eq!(
        counts,
        vec![1, 1, 0, 1],
        "each once, none again after a restart"
    );
    let metrics = operator_metrics(&restarted).await;
    assert!(!metrics.contains(&sentinel));
    let logs = format!("{logs_before}\n{}", restarted.logs());
    assert!(
        logs.contains("webhook notification delivered"),
        "the deliveries were logged"
    );
    assert_sentinel_nowhere(&admin, &namespace, "told", &sentinel, &logs).await;
}

async fn operator_metrics(operator: &Operator) -> String {
    operator.metrics().await
}

/// A receiver that answers 500, then hangs past the timeout, then accepts: the rotation completes
/// as if there were none (before any notification is delivered), and the notifications are
/// retried with backoff until delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_or_hanging_receiver_never_holds_the_rotation_and_is_retried() {
    let admin = support::admin_client().await;
    let namespace = support::namespace(&admin, "notify-retry").await;
    let receiver = Receiver::start(|count| match count {
        0 | 1 => Answer::Status(500),
        2 | 3 => Answer::Hang(Duration::from_secs(30)),
        _ => Answer::Ok,
    })
    .await;
    let sentinel = sentinel();
    webhook_secret(&admin, &namespace, &receiver.url(&sentinel)).await;
    let operator = verbose_operator(&admin, &namespace).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &Api::<Deployment>::namespaced(admin.clone(), &namespace),
        &fixtures::deployment("app", &namespace, Some("busy"), 1),
    )
    .await;
    let mut token = fixtures::token("busy", &namespace)
        .with_trigger("t1")
        .build();
    token.spec.rotation.notifications = Some(notifications("2s"));
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, "busy", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::wait_deployments_available(&admin, &namespace, &["app"]).await;

    let asked = Instant::now();
    support::set_trigger(&tokens, "busy", "t2").await;
    support::wait_rotation_done(&tokens, "busy", "r1", TIMEOUT).await;
    let rotated = asked.elapsed();
    eprintln!("rotation with a failing receiver: {rotated:?}");
    let first_ok = receiver
        .all()
        .iter()
        .find(|request| request.answered_ok)
        .map(|request| request.at);
    assert!(
        first_ok.is_none(),
        "the rotation completed before any notification was delivered ({rotated:?})"
    );
    assert!(
        receiver.count("RotationStarted") >= 1,
        "the first attempt was made at once"
    );

    let records = wait_records(&tokens, "busy", "both notifications delivered", |records| {
        records.len() == 2 && records.iter().all(|record| record.state == "Sent")
    })
    .await;
    let attempts: i32 = records.iter().map(|record| record.attempts).sum();
    assert!(
        attempts >= 6,
        "4 failed attempts and 2 delivered: {records:?}"
    );
    let requests = receiver.all();
    eprintln!(
        "deliveries: {:?}",
        requests
            .iter()
            .map(|request| (
                request.body["event"].clone(),
                request.body["attempt"].clone(),
                request.at.duration_since(asked)
            ))
            .collect::<Vec<_>>()
    );
    for event in ["RotationStarted", "RotationCompleted"] {
        let ids: Vec<_> = requests
            .iter()
            .filter(|request| request.body["event"] == event)
            .map(|request| request.delivery.clone())
            .collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] == pair[1]),
            "one id per notification: {ids:?}"
        );
    }
    let logs = operator.logs();
    assert!(
        logs.contains("the receiver answered HTTP 500"),
        "failures are logged"
    );
    assert!(logs.contains("no answer within 2s"), "the hang timed out");
    assert_sentinel_nowhere(&admin, &namespace, "busy", &sentinel, &logs).await;
    let metrics = operator.metrics().await;
    let errors = metrics
        .lines()
        .filter(|line| {
            line.starts_with("streamingtoken_notifications_total")
                && line.contains("result=\"error\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(errors >= 4.0, "{metrics}");
}

/// A receiver that refuses (404: a revoked webhook) is not retried: the notification is
/// `Undelivered`, with a Warning Event that names no URL.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_receiver_is_given_up_with_a_warning() {
    let support::Scenario {
        admin,
        namespace,
        operator,
    } = support::Scenario::start("notify-refused").await;
    let receiver = Receiver::start(|_| Answer::Status(404)).await;
    let sentinel = sentinel();
    webhook_secret(&admin, &namespace, &receiver.url(&sentinel)).await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &Api::<Deployment>::namespaced(admin.clone(), &namespace),
        &fixtures::deployment("app", &namespace, Some("gone"), 1),
    )
    .await;
    let mut token = fixtures::token("gone", &namespace)
        .with_trigger("t1")
        .build();
    let mut only_started = notifications("5s");
    only_started.webhook.events =
        vec![streaming_token_operator::api::NotificationEvent::RotationStarted];
    token.spec.rotation.notifications = Some(only_started);
    support::apply(&tokens, &token).await;
    wait_condition(&tokens, "gone", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::set_trigger(&tokens, "gone", "t2").await;
    let (_, _, note) =
        support::wait_event(&admin, &namespace, "gone", "NotificationFailed", TIMEOUT).await;
    assert!(
        note.contains("HTTP 404") && note.contains("RotationStarted"),
        "{note}"
    );
    support::wait_rotation_done(&tokens, "gone", "r1", TIMEOUT).await;
    let records = wait_records(&tokens, "gone", "the refusal recorded", |records| {
        state_of(records, "RotationStarted") == Some(("Undelivered".into(), 1))
    })
    .await;
    assert_eq!(records.len(), 1, "only the events asked for: {records:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.count("RotationStarted"), 1, "not retried");
    assert_sentinel_nowhere(&admin, &namespace, "gone", &sentinel, &operator.logs()).await;

    // A URL that is not one is refused without a request, and says so without echoing it.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &namespace);
    secrets
        .patch(
            "hook",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"url": format!("not a url {sentinel}")}})),
        )
        .await
        .expect("patched");
    support::set_trigger(&tokens, "gone", "t3").await;
    let records = wait_records(&tokens, "gone", "the bad URL recorded", |records| {
        records
            .iter()
            .any(|record| record.rotation == "r2" && record.state == "Undelivered")
    })
    .await;
    let error = records
        .iter()
        .find(|record| record.rotation == "r2")
        .and_then(|record| record.error.clone())
        .unwrap_or_default();
    assert!(
        error.contains("does not hold an http(s) URL") && !error.contains(&sentinel),
        "{error}"
    );
    assert_sentinel_nowhere(&admin, &namespace, "gone", &sentinel, &operator.logs()).await;
}
