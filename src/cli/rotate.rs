//! `rotate NAME`: ask for one rotation, and optionally follow it.
//!
//! It sets the StreamingToken's `streamingtoken.io/rotate` annotation, never the spec: a GitOps
//! tool that owns `spec.rotation.trigger` neither undoes the request nor, by restoring its own
//! value, asks for a second rotation. The API server's RBAC decides who may rotate: the caller
//! needs `patch` on `streamingtokens` (admins, with the chart's aggregated roles).

use super::{Connect, Outcome, Target};
use crate::api::{
    ClusterStreamingToken, HasTokenStatus, IGNORE_WINDOWS_ANNOTATION, ROTATE_ANNOTATION,
    StreamingToken, StreamingTokenStatus,
};
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::time::Duration;

const CLI_MANAGER: &str = "streaming-token-operator-cli";

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Request value to set (default: `manual-<current time>`); each new value asks for one
    /// rotation.
    #[arg(long, alias = "trigger")]
    pub request: Option<String>,
    /// Start now, even while every maintenance window (`spec.rotation.windows`) is closed: for
    /// an emergency such as a leaked token. Sets the `streamingtoken.io/ignore-windows`
    /// annotation to the request's value too.
    #[arg(long)]
    pub now: bool,
    /// Follow the rotation to its end, printing its phases.
    #[arg(long)]
    pub wait: bool,
    /// Print what the rotation would do to each consumer and pod, and change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Give up waiting after this long (for example 30m).
    #[arg(long, default_value = "30m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).ok_or_else(|| "must look like 30m, 1h or 90s".to_string())
}

/// Asks for one rotation of the target and, with `--wait`, prints the phases until it
/// completes.
pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client = connect.client().await?;
    let request = args.request.clone().unwrap_or_else(|| {
        format!(
            "manual-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        )
    });
    if args.target.cluster {
        let api: Api<ClusterStreamingToken> = Api::all(client);
        return rotate_object(api, "clusterstreamingtoken", args, request).await;
    }
    let namespace = args.target.namespace_or_default(&client);
    let api: Api<StreamingToken> = Api::namespaced(client, &namespace);
    rotate_object(api, "streamingtoken", args, request).await
}

/// An object the CLI can rotate.
trait Rotatable:
    kube::Resource
    + HasTokenStatus
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Rotatable for K where
    K: kube::Resource
        + HasTokenStatus
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

async fn rotate_object<K: Rotatable>(
    api: Api<K>,
    kind: &str,
    args: &Args,
    request: String,
) -> Outcome {
    let name = args.target.name.as_str();
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
        &Patch::Merge(json!({"metadata": {"annotations": annotations(&request, args.now)}})),
    )
    .await
    .map_err(|error| format!("requesting a rotation of {kind} {name}: {error}"))?;
    let now = if args.now {
        ", maintenance windows ignored"
    } else {
        ""
    };
    println!("{kind}/{name}: rotation requested ({ROTATE_ANNOTATION}={request}{now})");
    if !args.wait {
        return Ok(());
    }
    let follow = Follow {
        label: format!("{kind}/{name}"),
        request,
        last_before,
        ..Follow::default()
    };
    match tokio::time::timeout(args.timeout, follow.run(api, name)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "rotation did not complete within {}",
            humantime::format_duration(Duration::from_secs(args.timeout.as_secs()))
        )
        .into()),
    }
}

/// The annotations a request sets: with `now`, the value also in `ignore-windows`, so that this
/// request (and no later one) starts outside the maintenance windows.
fn annotations(request: &str, now: bool) -> serde_json::Value {
    if now {
        json!({ROTATE_ANNOTATION: request, IGNORE_WINDOWS_ANNOTATION: request})
    } else {
        json!({ROTATE_ANNOTATION: request})
    }
}

/// Following one requested rotation through the object's status.
#[derive(Default)]
struct Follow {
    /// `kind/name`, at the start of every line.
    label: String,
    /// The request value set: the rotation it started carries it as its trigger.
    request: String,
    /// The last completed rotation before the request.
    last_before: Option<String>,
    last_phase: String,
    last_waves: Option<crate::api::WaveProgress>,
    seen_our_rotation: bool,
}

impl Follow {
    /// Prints each new phase (and wave) until the requested rotation completes.
    async fn run<K: Rotatable>(mut self, api: Api<K>, name: &str) -> Outcome {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(object) = stream.next().await {
            let object = object?;
            let Some(status) = object.token_status().cloned() else {
                continue;
            };
            self.show_progress(&status);
            if self.completed(&status) {
                if let Some(last) = &status.last_rotation {
                    println!(
                        "{}: rotation {} completed in {}s",
                        self.label, last.id, last.duration_seconds
                    );
                }
                return Ok(());
            }
        }
        Err("the watch ended before the rotation completed".into())
    }

    /// Whether the requested rotation has completed (or the request was taken with nothing to
    /// rotate).
    fn completed(&self, status: &StreamingTokenStatus) -> bool {
        let ours_running = status
            .rotation
            .as_ref()
            .is_some_and(|rotation| rotation.trigger.as_deref() == Some(self.request.as_str()));
        let done = !ours_running
            && status.observed_rotate_request.as_deref() == Some(self.request.as_str())
            && status.last_rotation.as_ref().map(|last| &last.id) != self.last_before.as_ref();
        done && (self.seen_our_rotation || status.rotation.is_none())
    }

    /// Prints what changed: the wave, the phase with where namespaces and blocked consumers
    /// stand.
    fn show_progress(&mut self, status: &StreamingTokenStatus) {
        let Some(rotation) = &status.rotation else {
            return;
        };
        if rotation.trigger.as_deref() == Some(self.request.as_str()) {
            self.seen_our_rotation = true;
        }
        if !self.seen_our_rotation {
            return;
        }
        if let Some(waves) = &rotation.waves
            && self.last_waves.as_ref() != Some(waves)
        {
            println!(
                "{}: wave {}: {} rolling, {} verified, {} not started (at most {} at once)",
                self.label,
                waves.current,
                waves.rolling,
                waves.verified,
                waves.pending,
                waves.max_concurrent
            );
            self.last_waves = Some(waves.clone());
        }
        if rotation.phase != self.last_phase {
            println!(
                "{}: rotation {} {}",
                self.label, rotation.id, rotation.phase
            );
            print_where_it_stands(status);
            self.last_phase = rotation.phase.clone();
        }
    }
}

/// Each namespace's verified count and every blocked consumer.
fn print_where_it_stands(status: &StreamingTokenStatus) {
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
}
