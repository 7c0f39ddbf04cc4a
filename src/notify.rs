//! Webhook notifications: delivers what [`crate::decide::notifications::due`] lists, beside the
//! reconcile.
//!
//! Each delivery is a task of its own: it reads the webhook's URL from its Secret, POSTs a
//! plain JSON body (a `text` for people, which Slack and Teams incoming webhooks show, and
//! structured fields: `object`, `event`, `rotation`, `reason`), and records how the attempt
//! ended in the [`Outbox`]. The next reconcile of the object reads that
//! ([`Outbox::observe`]), [`crate::decide::notifications`] records it in status, and once status is
//! written the outcome is forgotten here ([`Outbox::settle`]). The reconcile never waits for a
//! receiver: a slow, failing or hanging one delays nothing (each request has its own timeout),
//! and only the outcome of its own notifications.
//!
//! The URL often embeds a credential (a Slack webhook's path is one). It is read at each
//! delivery, used for the request and dropped: never logged, never put in an error, an Event,
//! status or a metric. Errors name a status code or a kind of transport failure, nothing of the
//! request; redirects are not followed.

use crate::api::WebhookNotification;
use crate::decide::{Delivery, NotificationObservation, Outgoing};
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Header that names one notification (the same on every attempt), for receivers that drop
/// duplicates.
pub const DELIVERY_HEADER: &str = "X-StreamingToken-Delivery";

/// Longest one attempt may take, the Secret read and the POST together.
const WHOLE_ATTEMPT: Duration = Duration::from_secs(60);

/// What is in flight and what ended, by object uid.
#[derive(Debug, Default)]
pub struct Outbox {
    in_flight: Mutex<HashMap<String, BTreeSet<(String, String)>>>,
    finished: Mutex<HashMap<String, Vec<Delivery>>>,
}

/// The object a notification is about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: &'static str,
    /// `None` for a ClusterStreamingToken.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// Notifications to deliver to one webhook.
pub struct Dispatch {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub webhook: WebhookNotification,
    /// Where the webhook's Secret lives.
    pub secret_namespace: String,
    pub subject: Subject,
    pub outgoing: Vec<Outgoing>,
}

/// The process's outbox: deliveries belong to the process that started them (like its HTTP
/// client), whichever controller of it reconciles the object next.
pub fn outbox() -> &'static Arc<Outbox> {
    static OUTBOX: std::sync::OnceLock<Arc<Outbox>> = std::sync::OnceLock::new();
    OUTBOX.get_or_init(Arc::default)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    /// The deliveries of object `uid` in flight, and those that ended and are not recorded yet.
    pub fn observe(&self, uid: &str) -> NotificationObservation {
        NotificationObservation {
            in_flight: lock(&self.in_flight)
                .get(uid)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
            finished: lock(&self.finished).get(uid).cloned().unwrap_or_default(),
        }
    }

    /// Forgets the outcomes `observed` showed, once status has recorded them.
    pub fn settle(&self, uid: &str, observed: &NotificationObservation) {
        if observed.finished.is_empty() {
            return;
        }
        let mut finished = lock(&self.finished);
        if let Some(list) = finished.get_mut(uid) {
            list.retain(|delivery| !observed.finished.contains(delivery));
            if list.is_empty() {
                finished.remove(uid);
            }
        }
    }

    /// Starts a delivery task for each notification not already in flight.
    pub fn dispatch(self: &Arc<Self>, dispatch: Dispatch) {
        let Dispatch {
            client,
            metrics,
            webhook,
            secret_namespace,
            subject,
            outgoing,
        } = dispatch;
        for notification in outgoing {
            let key = (notification.rotation.clone(), notification.event.clone());
            if !lock(&self.in_flight)
                .entry(subject.uid.clone())
                .or_default()
                .insert(key.clone())
            {
                continue;
            }
            let task = Task {
                outbox: self.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                webhook: webhook.clone(),
                secret_namespace: secret_namespace.clone(),
                subject: subject.clone(),
                notification,
            };
            tokio::spawn(task.run());
        }
    }

    fn finish(&self, uid: &str, delivery: Delivery) {
        let key = (delivery.rotation.clone(), delivery.event.clone());
        lock(&self.finished)
            .entry(uid.to_string())
            .or_default()
            .push(delivery);
        let mut in_flight = lock(&self.in_flight);
        if let Some(keys) = in_flight.get_mut(uid) {
            keys.remove(&key);
            if keys.is_empty() {
                in_flight.remove(uid);
            }
        }
    }
}

/// One delivery attempt.
struct Task {
    outbox: Arc<Outbox>,
    client: Client,
    metrics: Arc<Metrics>,
    webhook: WebhookNotification,
    secret_namespace: String,
    subject: Subject,
    notification: Outgoing,
}

impl Task {
    async fn run(self) {
        // Reading the Secret has the client's own timeouts, the POST its own; this bounds the
        // whole attempt all the same, so nothing stays in flight for long.
        let outcome = tokio::time::timeout(WHOLE_ATTEMPT, self.deliver())
            .await
            .unwrap_or_else(|_| {
                Err((
                    format!(
                        "the attempt did not end within {}s",
                        WHOLE_ATTEMPT.as_secs()
                    ),
                    false,
                ))
            });
        let subject = &self.subject;
        let namespace = subject.namespace.as_deref().unwrap_or_default();
        let notification = &self.notification;
        match &outcome {
            Ok(()) => {
                info!(namespace, name = %subject.name, rotation = %notification.rotation, event = %notification.event, attempt = notification.attempt, "webhook notification delivered");
            }
            Err((error, permanent)) => {
                warn!(namespace, name = %subject.name, rotation = %notification.rotation, event = %notification.event, attempt = notification.attempt, permanent, %error, "webhook notification failed");
            }
        }
        self.metrics
            .observe_notification(&notification.event, outcome.is_ok());
        let now =
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default();
        self.outbox.finish(
            &subject.uid,
            Delivery {
                rotation: notification.rotation.clone(),
                event: notification.event.clone(),
                attempt: notification.attempt,
                at: Time(now),
                outcome,
            },
        );
    }

    async fn deliver(&self) -> Result<(), (String, bool)> {
        let url = self.url().await?;
        let timeout =
            crate::api::parse_duration(&self.webhook.timeout).unwrap_or(Duration::from_secs(5));
        let body = payload(&self.subject, &self.notification);
        let request = client()
            .map_err(|message| (message, false))?
            .post(url)
            .timeout(timeout)
            .header(
                DELIVERY_HEADER,
                delivery_id(&self.subject, &self.notification),
            )
            .json(&body);
        match request.send().await {
            Ok(response) => judge(response.status().as_u16()),
            Err(error) => Err((transport(&error, timeout), false)),
        }
    }

    /// The webhook's URL, from its Secret. Errors name the Secret and the key, never a value.
    async fn url(&self) -> Result<url::Url, (String, bool)> {
        let reference = &self.webhook.url_secret_ref;
        let place = format!(
            "Secret {}/{} (key {})",
            self.secret_namespace, reference.name, reference.key
        );
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.secret_namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|error| {
                (
                    format!("reading {place}: {}", crate::error::api_summary(&error)),
                    false,
                )
            })?
            .ok_or_else(|| (format!("{place} does not exist"), false))?;
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&reference.key))
            .ok_or_else(|| (format!("{place}: the key is missing"), false))?;
        let text = std::str::from_utf8(&value.0)
            .map_err(|_| (format!("{place} does not hold text"), true))?;
        url::Url::parse(text.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| (format!("{place} does not hold an http(s) URL"), true))
    }
}

/// The JSON body: what a person reads (`text`) and what a program reads.
#[derive(Serialize)]
struct Payload<'a> {
    text: &'a str,
    event: &'a str,
    reason: &'a str,
    rotation: &'a str,
    object: Object<'a>,
    /// The same on every attempt of this notification.
    id: String,
    attempt: i32,
}

#[derive(Serialize)]
struct Object<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    name: &'a str,
    uid: &'a str,
}

fn delivery_id(subject: &Subject, notification: &Outgoing) -> String {
    format!(
        "{}/{}/{}",
        subject.uid, notification.rotation, notification.event
    )
}

fn payload<'a>(subject: &'a Subject, notification: &'a Outgoing) -> Payload<'a> {
    Payload {
        text: &notification.message,
        event: &notification.event,
        reason: &notification.reason,
        rotation: &notification.rotation,
        object: Object {
            kind: subject.kind,
            namespace: subject.namespace.as_deref(),
            name: &subject.name,
            uid: &subject.uid,
        },
        id: delivery_id(subject, notification),
        attempt: notification.attempt,
    }
}

/// What a response status means: 2xx delivered; 408, 429 and 5xx worth another attempt; any
/// other answer a refusal (`true`: trying again is pointless).
fn judge(status: u16) -> Result<(), (String, bool)> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err((format!("the receiver answered HTTP {status}"), false)),
        300..=399 => Err((
            format!("the receiver answered HTTP {status} (redirects are not followed)"),
            true,
        )),
        _ => Err((format!("the receiver refused it: HTTP {status}"), true)),
    }
}

/// A transport failure's kind, without the URL or anything of the request.
fn transport(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {}s", timeout.as_secs())
    } else if error.is_connect() {
        "could not connect".into()
    } else if error.is_body() || error.is_decode() {
        "the connection broke off".into()
    } else {
        "the request failed".into()
    }
}

/// The HTTP client every delivery shares: no redirects, a connection given up after 5 s (each
/// request has its own timeout besides).
fn client() -> Result<reqwest::Client, String> {
    static SHARED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = SHARED.get() {
        return Ok(client.clone());
    }
    // kube's TLS uses ring; reqwest takes the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "streaming-token-operator/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|_| "the HTTP client could not be built".to_string())?;
    Ok(SHARED.get_or_init(|| client).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged() {
        assert!(judge(200).is_ok() && judge(204).is_ok());
        for retried in [408, 429, 500, 502, 503] {
            assert_eq!(
                judge(retried).map_err(|(_, permanent)| permanent),
                Err(false)
            );
        }
        for refused in [301, 400, 401, 403, 404, 410] {
            assert_eq!(
                judge(refused).map_err(|(_, permanent)| permanent),
                Err(true)
            );
        }
    }

    #[test]
    fn the_payload_has_a_text_and_structured_fields() {
        let subject = Subject {
            kind: "StreamingToken",
            namespace: Some("prod".into()),
            name: "telemetry".into(),
            uid: "uid-1".into(),
        };
        let notification = Outgoing {
            rotation: "r7".into(),
            event: crate::decide::notifications::event_word(
                crate::api::NotificationEvent::NeedsAction,
            )
            .into(),
            reason: "ConsumersOnToken2".into(),
            message: "StreamingToken prod/telemetry: a person must act".into(),
            attempt: 2,
        };
        let body = serde_json::to_value(payload(&subject, &notification)).expect("json");
        assert_eq!(
            body["text"],
            "StreamingToken prod/telemetry: a person must act"
        );
        assert_eq!(body["event"], "NeedsAction");
        assert_eq!(body["rotation"], "r7");
        assert_eq!(body["reason"], "ConsumersOnToken2");
        assert_eq!(body["object"]["namespace"], "prod");
        assert_eq!(body["object"]["kind"], "StreamingToken");
        assert_eq!(body["id"], "uid-1/r7/NeedsAction");
        assert_eq!(body["attempt"], 2);
    }

    #[test]
    fn the_outbox_reports_until_status_records() {
        let outbox = Outbox::default();
        let delivery = Delivery {
            rotation: "r1".into(),
            event: "RotationStarted".into(),
            attempt: 1,
            at: Time(jiff::Timestamp::UNIX_EPOCH),
            outcome: Ok(()),
        };
        lock(&outbox.in_flight)
            .entry("uid".into())
            .or_default()
            .insert(("r1".into(), "RotationStarted".into()));
        assert_eq!(outbox.observe("uid").in_flight.len(), 1);
        outbox.finish("uid", delivery.clone());
        let observed = outbox.observe("uid");
        assert!(observed.in_flight.is_empty());
        assert_eq!(observed.finished, vec![delivery]);
        outbox.settle("uid", &observed);
        assert_eq!(outbox.observe("uid"), NotificationObservation::default());
        assert!(lock(&outbox.finished).is_empty() && lock(&outbox.in_flight).is_empty());
    }
}
