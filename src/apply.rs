//! Every API write the operator makes: server-side apply with named field managers, force for
//! what it owns, and only the fields it manages on objects it does not own.

use crate::api::{ClusterStreamingToken, StreamingToken};
use crate::decide::{self, MirrorWrite, Notice, Severity};
use crate::error::Error;
use crate::model::consumer::ConsumerPatch;
use crate::target::Target;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

pub const SECRETS_MANAGER: &str = "streamingtoken.io/secrets";
pub use crate::workload::{CONSUMERS_MANAGER, RESTARTS_MANAGER};
pub const STATUS_MANAGER: &str = "streamingtoken.io/status";

/// The mirror Secret of `target` in `namespace` for `write`. The one place token values leave
/// [`crate::token::Token`].
pub fn mirror_secret(target: &Target, namespace: &str, write: &MirrorWrite) -> Secret {
    let spec = target.spec().secret;
    let data = BTreeMap::from([
        (
            spec.token1_key.clone(),
            ByteString(write.pair.token1.expose().as_bytes().to_vec()),
        ),
        (
            spec.token2_key.clone(),
            ByteString(write.pair.token2.expose().as_bytes().to_vec()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(target.secret_name()),
            namespace: Some(namespace.to_string()),
            labels: Some(decide::pair::mirror_labels(
                target.label_key(),
                &target.name(),
            )),
            annotations: Some(decide::pair::mirror_annotations(write)),
            owner_references: if write.owned {
                target.owner_ref().map(|reference| vec![reference])
            } else {
                None
            },
            resource_version: write.precondition.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Writes the mirror Secret of `target` in `namespace` (creating it, or updating it if
/// unchanged since it was observed).
pub async fn secret(
    client: &Client,
    target: &Target,
    namespace: &str,
    write: &MirrorWrite,
) -> Result<(), Error> {
    let name = target.secret_name();
    let mut body =
        serde_json::to_value(mirror_secret(target, namespace, write)).map_err(Error::Serialize)?;
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("Secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(SECRETS_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| Error::ApplySecret { name, source })?;
    Ok(())
}

/// Deletes a ClusterStreamingToken's mirror Secret in a namespace it no longer serves, if it is
/// still the version the decision was taken on (`resource_version`).
pub async fn delete_copy(
    client: &Client,
    target: &Target,
    namespace: &str,
    resource_version: Option<String>,
) -> Result<(), Error> {
    let name = target.secret_name();
    let params = DeleteParams {
        preconditions: resource_version.map(|resource_version| kube::api::Preconditions {
            resource_version: Some(resource_version),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::ApplySecret { name, source }),
    }
}

/// Applies one consumer patch, through its kind's adapter.
pub async fn consumer(client: &Client, patch: &ConsumerPatch) -> Result<(), Error> {
    crate::workload::adapter(patch.kind)
        .patch(client, patch)
        .await
        .map_err(|source| Error::ApplyConsumer {
            kind: patch.kind.as_str(),
            name: patch.name.clone(),
            source,
        })
}

/// Writes the status.
pub async fn status(
    client: &Client,
    target: &Target,
    status: &crate::api::StreamingTokenStatus,
) -> Result<(), Error> {
    status_at(client, target, status, target.resource_version())
        .await
        .map(drop)
}

/// Writes the status on the condition that the object is still at `resource_version` (a
/// reconcile working from a stale copy gets a conflict instead of overwriting newer rotation
/// state); returns the resourceVersion the write produced.
pub async fn status_at(
    client: &Client,
    target: &Target,
    status: &crate::api::StreamingTokenStatus,
    resource_version: Option<String>,
) -> Result<Option<String>, Error> {
    let params = PatchParams::apply(STATUS_MANAGER).force();
    let name = target.name();
    let body = |api_version: String, kind: String| {
        Patch::Apply(json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": resource_version},
            "status": status,
        }))
    };
    let result = match target {
        Target::Namespaced(token) => Api::<StreamingToken>::namespaced(
            client.clone(),
            &token.namespace().unwrap_or_default(),
        )
        .patch_status(
            &name,
            &params,
            &body(
                StreamingToken::api_version(&()).into(),
                StreamingToken::kind(&()).into(),
            ),
        )
        .await
        .map(|written| written.metadata.resource_version),
        Target::Cluster(_) => Api::<ClusterStreamingToken>::all(client.clone())
            .patch_status(
                &name,
                &params,
                &body(
                    ClusterStreamingToken::api_version(&()).into(),
                    ClusterStreamingToken::kind(&()).into(),
                ),
            )
            .await
            .map(|written| written.metadata.resource_version),
    };
    result.map_err(|source| Error::PatchStatus { source })
}

/// The API server refuses an Event whose note is over 1 KiB: longer messages are cut at a
/// character boundary, with a marker (status keeps the full message).
pub const MAX_EVENT_NOTE: usize = 1024;

pub fn fit_note(message: &str) -> String {
    if message.len() <= MAX_EVENT_NOTE {
        return message.to_string();
    }
    const MARKER: &str = " ... (cut; see the StreamingToken's status)";
    let mut end = MAX_EVENT_NOTE - MARKER.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARKER}", &message[..end])
}

/// Publishes an Event on `regarding` (the StreamingToken, or a ClusterStreamingToken or one of
/// its mirror Secrets). Failing to publish is logged, not fatal.
///
/// A fresh `Recorder` each time: a shared one folds every Event with the same reason into one
/// series that keeps the first message (rotation r1's "completed" would stand for r2 and r3).
/// The plan already publishes an Event only when something changes, so nothing repeats.
pub async fn event(
    client: &Client,
    reporter: &Reporter,
    regarding: &ObjectReference,
    notice: &Notice,
) {
    let recorder = Recorder::new(client.clone(), reporter.clone());
    let event = Event {
        type_: match notice.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: notice.reason.into(),
        note: Some(fit_note(&notice.message)),
        action: notice.action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(reason = notice.reason, error = %error, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_fit_the_api_limit() {
        assert_eq!(fit_note("short"), "short");
        let long = "consumer Deployment/é-".repeat(200);
        let note = fit_note(&long);
        assert!(note.len() <= MAX_EVENT_NOTE, "{}", note.len());
        assert!(note.ends_with("status)"));
        let exact = "x".repeat(MAX_EVENT_NOTE);
        assert_eq!(fit_note(&exact), exact);
    }
}
