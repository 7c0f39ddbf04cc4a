//! `streaming-token-operator rotate`: ask for one rotation, and optionally follow it.
//!
//! It sets the StreamingToken's `streamingtoken.io/rotate` annotation, never the spec: a GitOps
//! tool that owns `spec.rotation.trigger` neither undoes the request nor, by restoring its own
//! value, asks for a second rotation. The API server's RBAC decides who may rotate: the caller
//! needs `patch` on `streamingtokens` (admins, with the chart's aggregated roles).

use crate::api::{ClusterStreamingToken, HasTokenStatus, ROTATE_ANNOTATION, StreamingToken};
use crate::model::reason;
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

const CLI_MANAGER: &str = "streaming-token-operator-cli";

/// Asks for one rotation of `name` (a ClusterStreamingToken with `cluster`) and, with `wait`,
/// prints the phases until it completes.
pub async fn rotate(
    name: &str,
    namespace: Option<&str>,
    cluster: bool,
    trigger: Option<String>,
    wait: bool,
    timeout: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let timeout =
        crate::api::parse_duration(timeout).ok_or("--timeout must look like 30m, 1h or 90s")?;
    let client = Client::try_default().await?;
    if cluster {
        let api: Api<ClusterStreamingToken> = Api::all(client);
        return rotate_object(api, "clusterstreamingtoken", name, trigger, wait, timeout).await;
    }
    let api: Api<StreamingToken> = match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::default_namespaced(client),
    };
    rotate_object(api, "streamingtoken", name, trigger, wait, timeout).await
}

async fn rotate_object<K>(
    api: Api<K>,
    kind: &str,
    name: &str,
    trigger: Option<String>,
    wait: bool,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>>
where
    K: kube::Resource
        + HasTokenStatus
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let trigger = trigger.unwrap_or_else(|| {
        format!(
            "manual-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        )
    });
    let before = api
        .get(name)
        .await
        .map_err(|error| format!("reading {kind} {name}: {error}"))?;
    let last_before = before
        .token_status()
        .and_then(|status| status.last_rotation.clone())
        .map(|last| last.id);
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(CLI_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_ANNOTATION: trigger}}})),
    )
    .await
    .map_err(|error| format!("requesting a rotation of {kind} {name}: {error}"))?;
    println!("{kind}/{name}: rotation requested ({ROTATE_ANNOTATION}={trigger})");
    if !wait {
        return Ok(());
    }
    let follow = async {
        let mut last_phase = String::new();
        let mut last_waves = None;
        let mut seen_our_rotation = false;
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api.clone(), config).applied_objects().boxed();
        while let Some(object) = stream.next().await {
            let object = object?;
            let Some(status) = object.token_status().cloned() else {
                continue;
            };
            if let Some(rotation) = &status.rotation {
                if rotation.trigger.as_deref() == Some(trigger.as_str()) {
                    seen_our_rotation = true;
                }
                if seen_our_rotation && rotation.waves.is_some() && rotation.waves != last_waves {
                    if let Some(waves) = &rotation.waves {
                        println!(
                            "{kind}/{name}: wave {}: {} rolling, {} verified, {} not started (at most {} at once)",
                            waves.current,
                            waves.rolling,
                            waves.verified,
                            waves.pending,
                            waves.max_concurrent
                        );
                    }
                    last_waves = rotation.waves.clone();
                }
                if seen_our_rotation && rotation.phase != last_phase {
                    println!("{kind}/{name}: rotation {} {}", rotation.id, rotation.phase);
                    for namespace in &status.namespaces {
                        if let Some(verified) = namespace.verified {
                            println!(
                                "  namespace {}: {verified}/{} verified",
                                namespace.name, namespace.consumers
                            );
                        }
                    }
                    for blocked in status
                        .consumers
                        .iter()
                        .flat_map(|summary| summary.blocked.iter())
                    {
                        let place = blocked
                            .namespace
                            .as_ref()
                            .map(|namespace| format!(" in {namespace}"))
                            .unwrap_or_default();
                        println!(
                            "  blocked: {}/{}{place} ({}) {}",
                            blocked.kind, blocked.name, blocked.reason, blocked.message
                        );
                    }
                    last_phase = rotation.phase.clone();
                }
            }
            let completed = status
                .rotation
                .as_ref()
                .is_none_or(|rotation| rotation.trigger.as_deref() != Some(trigger.as_str()))
                && status.observed_rotate_request.as_deref() == Some(trigger.as_str())
                && status.last_rotation.as_ref().map(|last| &last.id) != last_before.as_ref();
            if completed && (seen_our_rotation || status.rotation.is_none()) {
                if let Some(last) = &status.last_rotation {
                    println!(
                        "{kind}/{name}: rotation {} completed in {}s",
                        last.id, last.duration_seconds
                    );
                }
                return Ok::<(), Box<dyn std::error::Error>>(());
            }
        }
        Err("the watch ended before the rotation completed".into())
    };
    match tokio::time::timeout(timeout, follow).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "rotation did not complete within {}",
            humantime::format_duration(Duration::from_secs(timeout.as_secs()))
        )
        .into()),
    }
}

/// One consumer as `status` shows it.
#[derive(Debug, serde::Serialize)]
struct ConsumerLine {
    kind: String,
    name: String,
    /// `Verified`, `Progressing`, `Blocked` or `Idle`.
    state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

/// `streaming-token-operator status NAME`: the pair's serials and ages, the rotation, and where
/// every consumer stands (verified, progressing, blocked and why), as a table or JSON. What is
/// blocked comes from the StreamingToken's status (the operator's own verdict, pods included);
/// the rest is read from the labelled workloads.
pub async fn status(
    name: &str,
    namespace: Option<&str>,
    cluster: bool,
    json_output: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    if cluster {
        return cluster_status(client, name, json_output).await;
    }
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<StreamingToken> = Api::namespaced(client.clone(), &namespace);
    let token = api
        .get(name)
        .await
        .map_err(|error| format!("reading StreamingToken {name}: {error}"))?;
    let observed = consumers_in(
        &client,
        &namespace,
        name,
        &token.spec.consumers.env_var,
        &token.secret_name(),
    )
    .await?;
    let status = token.status.clone().unwrap_or_default();
    let blocked = status
        .consumers
        .as_ref()
        .map(|summary| summary.blocked.clone())
        .unwrap_or_default();
    let stamp = status.rotation.as_ref().map(|rotation| {
        crate::decide::stamp(
            &rotation.id,
            token.metadata.uid.as_deref().unwrap_or_default(),
        )
    });
    let mut lines: Vec<ConsumerLine> = observed
        .into_iter()
        .map(|mut consumer| {
            consumer.pods = Some(Vec::new());
            let kind = consumer.kind.as_str().to_string();
            if let Some(found) = blocked
                .iter()
                .find(|item| item.kind == kind && item.name == consumer.name)
            {
                return ConsumerLine {
                    kind,
                    name: consumer.name.clone(),
                    state: reason::progress::BLOCKED.into(),
                    reason: found.reason.clone(),
                    detail: found.message.clone(),
                };
            }
            let (state, detail) = match &stamp {
                None => (
                    reason::phase::IDLE,
                    consumer
                        .template_rotation
                        .as_ref()
                        .map(|stamp| format!("last rolled by {stamp}"))
                        .unwrap_or_default(),
                ),
                Some(stamp) => match crate::decide::consumers::verify(
                    &consumer,
                    stamp,
                    Duration::ZERO,
                    Duration::MAX,
                ) {
                    crate::decide::consumers::Verdict::Verified => {
                        (reason::progress::VERIFIED, String::new())
                    }
                    crate::decide::consumers::Verdict::Progressing(detail) => {
                        ("Progressing", detail)
                    }
                    crate::decide::consumers::Verdict::Blocked { message, .. } => {
                        (reason::progress::BLOCKED, message)
                    }
                },
            };
            ConsumerLine {
                kind,
                name: consumer.name.clone(),
                state: state.into(),
                reason: String::new(),
                detail,
            }
        })
        .collect();
    lines.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    // What blocks the rotation without being a labelled consumer (other workloads, bare pods).
    let others: Vec<&crate::api::BlockedConsumer> = blocked
        .iter()
        .filter(|item| {
            !lines
                .iter()
                .any(|line| line.kind == item.kind && line.name == item.name)
        })
        .collect();
    if json_output {
        let value = json!({
            "namespace": namespace,
            "name": name,
            "secret": token.secret_name(),
            "strategy": token.spec.rotation.strategy.as_str(),
            "token1": status.token1,
            "token2": status.token2,
            "rotation": status.rotation,
            "lastRotation": status.last_rotation,
            "conditions": status.conditions,
            "consumers": lines,
            "otherBlockers": others,
            "unlabelledReaders": status.consumers.as_ref().map(|summary| summary.unlabelled_readers.clone()).unwrap_or_default(),
            "platform": status.platform,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let age = |time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        let seconds = now.duration_since(time.0).as_secs().max(0);
        humantime::format_duration(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
            .to_string()
    };
    println!(
        "StreamingToken {namespace}/{name}  Secret {}  Strategy {}",
        token.secret_name(),
        token.spec.rotation.strategy.as_str()
    );
    for (label, identity) in [("Token 1", &status.token1), ("Token 2", &status.token2)] {
        match identity {
            Some(identity) => println!(
                "{label}  serial {}  issued {} ago",
                identity.serial,
                age(&identity.issued_at)
            ),
            None => println!("{label}  (not issued yet)"),
        }
    }
    if let Some(platform) = &status.platform {
        let word = |verdict: &Option<String>| {
            verdict
                .clone()
                .unwrap_or_else(|| reason::platform::UNKNOWN.into())
        };
        let mut line = format!(
            "Platform  Token 1 {}  Token 2 {}",
            word(&platform.token1),
            word(&platform.token2)
        );
        if let Some(expires) = &platform.credentials_expire_at {
            line.push_str(&format!("  credentials expire {}", expires.0));
        }
        if let Some(since) = &platform.rotated_out_of_band_at {
            line.push_str(&format!("  ROTATED OUT OF BAND at {}", since.0));
        }
        println!("{line}");
    }
    if let Some(call) = status
        .rotation
        .as_ref()
        .and_then(|rotation| rotation.platform_rotate.as_ref())
    {
        println!(
            "Platform rotate call  attempt {}  {}  {}",
            call.attempts, call.state, call.message
        );
    }
    match (&status.rotation, &status.last_rotation) {
        (Some(rotation), _) => println!(
            "Rotation {}  phase {}  started {} ago",
            rotation.id,
            rotation.phase,
            age(&rotation.started_at)
        ),
        (None, Some(last)) => println!(
            "Rotation none; last {} completed {} ago",
            last.id,
            age(&last.completed_at)
        ),
        (None, None) => println!("Rotation none yet"),
    }
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|condition| {
            format!(
                "{}={} ({})",
                condition.type_, condition.status, condition.reason
            )
        })
        .collect();
    println!("Conditions  {}", conditions.join("  "));
    println!();
    println!("{:<12} {:<40} {:<12} DETAIL", "KIND", "NAME", "STATE");
    for line in &lines {
        let detail = if line.reason.is_empty() {
            line.detail.clone()
        } else {
            format!("{}: {}", line.reason, line.detail)
        };
        println!(
            "{:<12} {:<40} {:<12} {detail}",
            line.kind, line.name, line.state
        );
    }
    for other in others {
        println!(
            "{:<12} {:<40} {:<12} {}: {}",
            other.kind,
            other.name,
            reason::progress::BLOCKED,
            other.reason,
            other.message
        );
    }
    Ok(())
}

/// `status NAME --cluster`: a ClusterStreamingToken's pair, rotation, and where each namespace
/// stands (from its status: the operator's own verdict).
async fn cluster_status(
    client: Client,
    name: &str,
    json_output: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let token = Api::<ClusterStreamingToken>::all(client)
        .get(name)
        .await
        .map_err(|error| format!("reading ClusterStreamingToken {name}: {error}"))?;
    let status = token.status.clone().unwrap_or_default();
    let blocked = status
        .consumers
        .as_ref()
        .map(|summary| summary.blocked.clone())
        .unwrap_or_default();
    if json_output {
        let value = json!({
            "name": name,
            "secret": token.secret_name(),
            "strategy": token.spec.rotation.strategy.as_str(),
            "token1": status.token1,
            "token2": status.token2,
            "rotation": status.rotation,
            "lastRotation": status.last_rotation,
            "conditions": status.conditions,
            "namespaces": status.namespaces,
            "blocked": blocked,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "ClusterStreamingToken {name}  Secret {}  Strategy {}  Namespaces {}",
        token.secret_name(),
        token.spec.rotation.strategy.as_str(),
        status.namespace_count.unwrap_or(0)
    );
    for (label, identity) in [("Token 1", &status.token1), ("Token 2", &status.token2)] {
        match identity {
            Some(identity) => println!("{label}  serial {}", identity.serial),
            None => println!("{label}  (not issued yet)"),
        }
    }
    match (&status.rotation, &status.last_rotation) {
        (Some(rotation), _) => println!("Rotation {}  phase {}", rotation.id, rotation.phase),
        (None, Some(last)) => println!("Rotation none; last {}", last.id),
        (None, None) => println!("Rotation none yet"),
    }
    println!();
    println!(
        "{:<40} {:<20} {:>9} {:>9} DETAIL",
        "NAMESPACE", "STATE", "CONSUMERS", "VERIFIED"
    );
    for namespace in &status.namespaces {
        println!(
            "{:<40} {:<20} {:>9} {:>9} {}",
            namespace.name,
            namespace.state,
            namespace.consumers,
            namespace
                .verified
                .map_or_else(|| "-".to_string(), |verified| verified.to_string()),
            namespace.message
        );
    }
    for item in &blocked {
        println!(
            "blocked: {}/{}/{} ({}) {}",
            item.namespace.as_deref().unwrap_or(""),
            item.kind,
            item.name,
            item.reason,
            item.message
        );
    }
    Ok(())
}

/// The labelled consumers of `token_name` in `namespace`, as the operator observes them.
async fn consumers_in(
    client: &Client,
    namespace: &str,
    token_name: &str,
    env_var: &str,
    secret: &str,
) -> Result<Vec<crate::model::consumer::ConsumerObservation>, Box<dyn std::error::Error>> {
    let selector = format!("{}={token_name}", crate::api::TOKEN_LABEL);
    let cached = crate::workload::list_every(client, namespace, &selector).await?;
    let mut consumers: Vec<_> = cached
        .iter()
        .map(|workload| workload.observe(env_var, secret))
        .collect();
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(consumers)
}

/// `rotate NAME --dry-run`: what the next rotation would do to each consumer, decided by the
/// operator's own consumer decision on the workloads as they are now. Writes nothing.
pub async fn rotate_dry_run(
    name: &str,
    namespace: Option<&str>,
    cluster: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use crate::decide::{
        CopyObservation, FreshMaterial, MirrorObservation, NamespaceView, Snapshot,
        SourceObservation, TokenKind,
    };
    let client = Client::try_default().await?;
    let (kind, spec, status, uid, secret, namespaces) = if cluster {
        let token = Api::<ClusterStreamingToken>::all(client.clone())
            .get(name)
            .await
            .map_err(|error| format!("reading ClusterStreamingToken {name}: {error}"))?;
        let status = token.status.clone().unwrap_or_default();
        let namespaces: Vec<String> = status
            .namespaces
            .iter()
            .filter(|entry| entry.state != reason::NamespaceState::Retained.as_str())
            .map(|entry| entry.name.clone())
            .collect();
        (
            TokenKind::Cluster,
            token.common_spec(),
            status,
            token.metadata.uid.clone().unwrap_or_default(),
            token.secret_name(),
            namespaces,
        )
    } else {
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| client.default_namespace().to_string());
        let token = Api::<StreamingToken>::namespaced(client.clone(), &namespace)
            .get(name)
            .await
            .map_err(|error| format!("reading StreamingToken {name}: {error}"))?;
        (
            TokenKind::Namespaced,
            token.spec.clone(),
            token.status.clone().unwrap_or_default(),
            token.metadata.uid.clone().unwrap_or_default(),
            token.secret_name(),
            vec![namespace],
        )
    };
    let mut views = Vec::new();
    for namespace in &namespaces {
        views.push(NamespaceView {
            namespace: namespace.clone(),
            copy: CopyObservation::Home,
            selected: true,
            foreign_since: None,
            label_taken: false,
            consumers: consumers_in(&client, namespace, name, &spec.consumers.env_var, &secret)
                .await?,
            pods: Vec::new(),
        });
    }
    let serial = status.token1.as_ref().map_or(1, |token| token.serial);
    let id = status
        .rotation
        .as_ref()
        .map_or_else(|| format!("r{serial}"), |rotation| rotation.id.clone());
    let strategy = spec.rotation.strategy;
    let snapshot = Snapshot {
        kind,
        name: name.to_string(),
        uid,
        namespace: namespaces.first().cloned().unwrap_or_default(),
        source_namespace: String::new(),
        generation: 0,
        rotate_request: None,
        spec,
        status,
        secret_name: secret.clone(),
        mirror: MirrorObservation::Missing,
        source: SourceObservation::Issued,
        namespaces: views,
        retain_unselected: false,
        selection_problem: None,
        platform: None,
        // Unused: nothing is issued by a dry run.
        fresh: FreshMaterial {
            tokens: [
                crate::token::Token::generate("", 32)?,
                crate::token::Token::generate("", 32)?,
            ],
            fingerprint_key: String::new(),
        },
        failures: 0,
    };
    let stamp = snapshot.stamp(&id);
    let repoint = strategy == crate::api::RotationStrategy::ZeroDowntime;
    let (patches, blocked) = crate::decide::consumers::patches(&snapshot, &stamp, repoint);
    println!(
        "{name}: rotation {id} ({}) would, without writing anything now:",
        strategy.as_str()
    );
    if repoint {
        println!(
            "  point each consumer at Token 2 of Secret {secret}, roll it, verify every pod, then deactivate Token 1"
        );
    } else {
        println!(
            "  deactivate Token 1 first, then restart every consumer (they fail until they restart)"
        );
    }
    if let Some(platform) = &snapshot.spec.platform {
        let who = if platform.rotate.is_some() {
            "the operator calls the platform's rotate endpoint (once), then mirrors the pair it reads back"
        } else {
            "a person rotates at the platform (ReadyToRotate) and pastes the promoted pair, mirrored once the platform rejects the former Token 1"
        };
        let word = |verdict: &Option<String>| {
            verdict
                .clone()
                .unwrap_or_else(|| reason::platform::UNKNOWN.into())
        };
        let (token1, token2) = snapshot
            .status
            .platform
            .as_ref()
            .map(|status| (word(&status.token1), word(&status.token2)))
            .unwrap_or_else(|| {
                (
                    reason::platform::UNKNOWN.into(),
                    reason::platform::UNKNOWN.into(),
                )
            });
        println!("  at the platform: {who}; it last said Token 1 {token1}, Token 2 {token2}");
    }
    let place = |consumer_namespace: &str| {
        if cluster {
            format!("{consumer_namespace}/")
        } else {
            String::new()
        }
    };
    for patch in &patches {
        let action = match &patch.repoint {
            Some(repoint) => repoint
                .containers
                .iter()
                .map(|container| {
                    format!(
                        "container {}: {} -> {}/{}",
                        container.name,
                        container.variables.join(", "),
                        repoint.secret,
                        repoint.key
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            None if repoint => "roll (already reads Token 2)".to_string(),
            None => "restart".to_string(),
        };
        println!(
            "  {}{}/{}: {action}",
            place(&patch.namespace),
            patch.kind.as_str(),
            patch.name
        );
    }
    for item in &blocked {
        println!(
            "  {}{}/{}: BLOCKED {} ({})",
            item.namespace
                .as_deref()
                .map(|namespace| format!("{namespace}/"))
                .unwrap_or_default(),
            item.kind,
            item.name,
            item.reason,
            item.message
        );
    }
    let untouched = snapshot.consumer_count() - patches.len() - blocked.len();
    if untouched > 0 {
        println!("  {untouched} consumer(s) already on this rotation: left as they are");
    }
    if snapshot.consumer_count() == 0 {
        println!("  no labelled consumers");
    }
    Ok(())
}

/// `dotenv NAME`: the token a developer's machine should use (Token 2: the one the next
/// rotation keeps) as a dotenv line for the client's variable. Read with the caller's own
/// credentials (so only people RBAC lets read the mirror Secret get it), and recorded first as
/// an Event on the StreamingToken naming who read it (never the value): no Event, no value.
pub async fn dotenv(
    name: &str,
    namespace: Option<&str>,
    variable: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;
    let client = Client::try_default().await?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let token = Api::<StreamingToken>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
        .map_err(|error| format!("reading StreamingToken {namespace}/{name}: {error}"))?;
    let secret_name = token.secret_name();
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&secret_name)
        .await
        .map_err(|error| match &error {
            kube::Error::Api(status) if status.code == 403 => format!(
                "you may not read Secret {namespace}/{secret_name} (RBAC): ask for `get` on it"
            ),
            _ => format!("reading Secret {namespace}/{secret_name}: {error}"),
        })?;
    let key = &token.spec.secret.token2_key;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| crate::token::Token::parse(&value.0))
        .ok_or_else(|| format!("Secret {namespace}/{secret_name} has no key {key}"))?
        .map_err(|problem| format!("the value under key {key} {problem}"))?;
    let who = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|review| review.status?.user_info?.username)
        .unwrap_or_else(|| "an unidentified user".into());
    let serial = token
        .status
        .as_ref()
        .and_then(|status| status.token2.as_ref())
        .map_or_else(|| "?".to_string(), |identity| identity.serial.to_string());
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "streaming-token-operator-cli".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Normal,
                reason: reason::TOKEN_READ.into(),
                note: Some(format!(
                    "{who} read Token 2 (serial {serial}) of Secret {secret_name} for a local environment (dotenv)"
                )),
                action: reason::action::READ.into(),
                secondary: None,
            },
            &kube::Resource::object_ref(&token, &()),
        )
        .await
        .map_err(|error| {
            format!("could not record who reads the token (an Event on StreamingToken {namespace}/{name}): {error}; nothing printed")
        })?;
    let variable = variable.unwrap_or_else(|| token.spec.consumers.env_var.clone());
    println!("{variable}={}", dotenv_value(value.expose()));
    Ok(())
}

/// A dotenv value: as it is when it holds only characters no dotenv reader treats specially;
/// else single-quoted, or double-quoted with escapes when it holds a single quote itself.
fn dotenv_value(value: &str) -> String {
    let plain = value
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || "-._~+/=:@".contains(character));
    if plain {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`")
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dotenv_values_are_quoted_only_when_needed() {
        let cases = [
            ("sdk-AbC123", "sdk-AbC123"),
            ("a b#c", "'a b#c'"),
            ("a$b", "'a$b'"),
            ("it's", "\"it's\""),
            ("it's `x`", "\"it's \\`x\\`\""),
        ];
        for (value, want) in cases {
            assert_eq!(super::dotenv_value(value), want, "{value}");
        }
    }
}
