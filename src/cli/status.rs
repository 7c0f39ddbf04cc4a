//! `status NAME`: the pair's serials and ages, the rotation, and where every consumer stands
//! (verified, progressing, blocked and why), as a table or JSON. What is blocked comes from the
//! object's status (the operator's own verdict, pods included); the rest is read from the
//! labelled workloads with the operator's own consumer decision.

use super::{Connect, Outcome, Output, Target, consumers_in};
use crate::api::{BlockedConsumer, ClusterStreamingToken, StreamingToken, StreamingTokenStatus};
use crate::decide::consumers::Verdict;
use crate::model::consumer::ConsumerObservation;
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
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

pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client = connect.client().await?;
    if args.target.cluster {
        return cluster_status(client, &args.target.name, args.output).await;
    }
    let name = args.target.name.as_str();
    let namespace = args.target.namespace_or_default(&client);
    let token = Api::<StreamingToken>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
        .map_err(|error| format!("reading StreamingToken {name}: {error}"))?;
    let observed = consumers_in(
        &client,
        &namespace,
        &crate::model::consumer::Writer {
            cluster: false,
            name: name.to_string(),
        },
        &token.spec.consumers.env_var,
        &token.secret_name(),
    )
    .await?;
    let status = token.status.clone().unwrap_or_default();
    let blocked = blocked_of(&status);
    let stamp = status.rotation.as_ref().map(|rotation| {
        crate::decide::stamp(
            &rotation.id,
            token.metadata.uid.as_deref().unwrap_or_default(),
        )
    });
    let lines = consumer_lines(observed, &blocked, stamp.as_deref());
    // What blocks the rotation without being a labelled consumer (other workloads, bare pods).
    let others: Vec<&BlockedConsumer> = blocked
        .iter()
        .filter(|item| {
            !lines
                .iter()
                .any(|line| line.kind == item.kind && line.name == item.name)
        })
        .collect();
    if args.output != Output::Table {
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
            "clusters": status.clusters,
        });
        return args.output.print(&value);
    }
    println!(
        "StreamingToken {namespace}/{name}  Secret {}  Strategy {}",
        token.secret_name(),
        token.spec.rotation.strategy.as_str()
    );
    print_pair(&status);
    print_platform(&status);
    print_rotation(&status);
    print_consumers(&lines, &others);
    print_members(&status);
    Ok(())
}

/// Member clusters (`spec.clusters`), as the operator last read them.
fn print_members(status: &StreamingTokenStatus) {
    if status.clusters.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<30} {:<14} {:>9} {:>9} DETAIL",
        "MEMBER CLUSTER", "STATE", "CONSUMERS", "VERIFIED"
    );
    for member in &status.clusters {
        println!(
            "{:<30} {:<14} {:>9} {:>9} {}",
            format!("{}/{}", member.name, member.namespace),
            member.state,
            member.consumers,
            member
                .verified
                .map_or_else(|| "-".to_string(), |verified| verified.to_string()),
            member.message
        );
    }
}

fn blocked_of(status: &StreamingTokenStatus) -> Vec<BlockedConsumer> {
    status
        .consumers
        .as_ref()
        .map(|summary| summary.blocked.clone())
        .unwrap_or_default()
}

/// Where each consumer stands: blocked as the status says, else the operator's own verdict on
/// the workload for the rotation stamped `stamp` (idle when none runs).
fn consumer_lines(
    observed: Vec<ConsumerObservation>,
    blocked: &[BlockedConsumer],
    stamp: Option<&str>,
) -> Vec<ConsumerLine> {
    let mut lines: Vec<ConsumerLine> = observed
        .into_iter()
        .map(|mut consumer| {
            consumer.pods = Some(Vec::new());
            let kind = consumer.kind.as_str().to_string();
            let line = |state: &str, reason: String, detail: String| ConsumerLine {
                kind: kind.clone(),
                name: consumer.name.clone(),
                state: state.into(),
                reason,
                detail,
            };
            if let Some(found) = blocked
                .iter()
                .find(|item| item.kind == kind && item.name == consumer.name)
            {
                return line(
                    reason::progress::BLOCKED,
                    found.reason.clone(),
                    found.message.clone(),
                );
            }
            let (state, detail) = match stamp {
                None => (
                    reason::phase::IDLE,
                    consumer
                        .template_rotation
                        .as_ref()
                        .map(|stamp| format!("last rolled by {stamp}"))
                        .unwrap_or_default(),
                ),
                Some(stamp) => verdict(&consumer, stamp),
            };
            line(state, String::new(), detail)
        })
        .collect();
    lines.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    lines
}

/// The operator's verdict on one consumer for the rotation stamped `stamp`.
fn verdict(consumer: &ConsumerObservation, stamp: &str) -> (&'static str, String) {
    match crate::decide::consumers::verify(consumer, stamp, Duration::ZERO, Duration::MAX) {
        Verdict::Verified => (reason::progress::VERIFIED, String::new()),
        Verdict::Progressing(detail) => ("Progressing", detail),
        Verdict::Blocked { message, .. } => (reason::progress::BLOCKED, message),
    }
}

/// How long ago `time` was, for people.
fn age(time: &Time) -> String {
    let seconds = jiff::Timestamp::now()
        .duration_since(time.0)
        .as_secs()
        .max(0);
    humantime::format_duration(Duration::from_secs(u64::try_from(seconds).unwrap_or(0))).to_string()
}

fn print_pair(status: &StreamingTokenStatus) {
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
}

fn print_platform(status: &StreamingTokenStatus) {
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
}

fn print_rotation(status: &StreamingTokenStatus) {
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
}

fn print_consumers(lines: &[ConsumerLine], others: &[&BlockedConsumer]) {
    println!();
    println!("{:<12} {:<40} {:<12} DETAIL", "KIND", "NAME", "STATE");
    for line in lines {
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
}

/// `status NAME --cluster`: a ClusterStreamingToken's pair, rotation, and where each namespace
/// stands (from its status: the operator's own verdict).
async fn cluster_status(client: Client, name: &str, output: Output) -> Outcome {
    let token = Api::<ClusterStreamingToken>::all(client)
        .get(name)
        .await
        .map_err(|error| format!("reading ClusterStreamingToken {name}: {error}"))?;
    let status = token.status.clone().unwrap_or_default();
    let blocked = blocked_of(&status);
    if output != Output::Table {
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
        return output.print(&value);
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
    print_namespaces(&status, &blocked);
    Ok(())
}

fn print_namespaces(status: &StreamingTokenStatus, blocked: &[BlockedConsumer]) {
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
    for item in blocked {
        println!(
            "blocked: {}/{}/{} ({}) {}",
            item.namespace.as_deref().unwrap_or(""),
            item.kind,
            item.name,
            item.reason,
            item.message
        );
    }
}
