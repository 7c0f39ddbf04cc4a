//! `streaming-token-operator rotate`: ask for one rotation, and optionally follow it.
//!
//! It sets the StreamingToken's `streamingtoken.io/rotate` annotation, never the spec: a GitOps
//! tool that owns `spec.rotation.trigger` neither undoes the request nor, by restoring its own
//! value, asks for a second rotation. The API server's RBAC decides who may rotate: the caller
//! needs `patch` on `streamingtokens` (admins, with the chart's aggregated roles).

use crate::api::{ROTATE_ANNOTATION, StreamingToken};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

const CLI_MANAGER: &str = "streaming-token-operator-cli";

/// Asks for one rotation of `name` and, with `wait`, prints the phases until it completes.
pub async fn rotate(
    name: &str,
    namespace: Option<&str>,
    trigger: Option<String>,
    wait: bool,
    timeout: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let timeout =
        crate::api::parse_duration(timeout).ok_or("--timeout must look like 30m, 1h or 90s")?;
    let client = Client::try_default().await?;
    let api: Api<StreamingToken> = match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::default_namespaced(client),
    };
    let trigger = trigger.unwrap_or_else(|| {
        format!(
            "manual-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        )
    });
    let before = api
        .get(name)
        .await
        .map_err(|error| format!("reading StreamingToken {name}: {error}"))?;
    let last_before = before
        .status
        .as_ref()
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
    .map_err(|error| format!("requesting a rotation of StreamingToken {name}: {error}"))?;
    println!("streamingtoken/{name}: rotation requested ({ROTATE_ANNOTATION}={trigger})");
    if !wait {
        return Ok(());
    }
    let follow = async {
        let mut last_phase = String::new();
        let mut seen_our_rotation = false;
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api.clone(), config).applied_objects().boxed();
        while let Some(object) = stream.next().await {
            let object = object?;
            let Some(status) = object.status else {
                continue;
            };
            if let Some(rotation) = &status.rotation {
                if rotation.trigger.as_deref() == Some(trigger.as_str()) {
                    seen_our_rotation = true;
                }
                if seen_our_rotation && rotation.phase != last_phase {
                    println!(
                        "streamingtoken/{name}: rotation {} {}",
                        rotation.id, rotation.phase
                    );
                    for blocked in status
                        .consumers
                        .iter()
                        .flat_map(|summary| summary.blocked.iter())
                    {
                        println!(
                            "  blocked: {}/{} ({}) {}",
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
                        "streamingtoken/{name}: rotation {} completed in {}s",
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
