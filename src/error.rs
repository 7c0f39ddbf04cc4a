//! Errors name the operation that failed. Messages never carry token values, nor the API
//! server's free text: an admission webhook or policy message can quote the object it refused
//! (a Secret's data, a template with a literal token), and these messages reach status, Events
//! and logs that the read-only `view` role can read. They keep the status code, the reason and
//! the paths of the invalid fields (see [`api_summary`]).

use crate::token::RandomSourceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {name}: {}", api_summary(.source))]
    GetSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying Secret {name}: {}", api_summary(.source))]
    ApplySecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {name}: {}", api_summary(.source))]
    ApplyConsumer {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods of namespace {namespace}: {}", api_summary(.source))]
    ListPods {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status: {}", api_summary(.source))]
    PatchStatus {
        #[source]
        source: kube::Error,
    },
    #[error("serializing an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error(transparent)]
    RandomSource(#[from] RandomSourceError),
    /// This replica stopped leading between the decision and a write: nothing more is written.
    #[error("no longer the leader; the write was not made")]
    NotLeader,
}

/// What an API error says, without the server's free text: the status code, the reason and,
/// for an invalid object, the paths of the fields it names (for example
/// `422 Invalid (spec.template.spec.containers[0].env[0].valueFrom)`). Other errors (transport,
/// timeouts) carry no object and are shown as they are.
pub fn api_summary(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let fields: Vec<&str> = status
                .details
                .as_ref()
                .map(|details| {
                    details
                        .causes
                        .iter()
                        .map(|cause| cause.field.as_str())
                        .filter(|field| !field.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let reason = if status.reason.is_empty() {
                "Failure"
            } else {
                status.reason.as_str()
            };
            if fields.is_empty() {
                format!("{} {reason}", status.code)
            } else {
                format!("{} {reason} ({})", status.code, fields.join(", "))
            }
        }
        kube::Error::SerdeError(_) => "the response could not be decoded".into(),
        other => other.to_string(),
    }
}

impl Error {
    /// A static PascalCase reason, for Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::GetSecret { .. } => "GetSecretFailed",
            Self::ApplySecret { .. } => "ApplySecretFailed",
            Self::ApplyConsumer { .. } => "ApplyConsumerFailed",
            Self::ListPods { .. } => "ListPodsFailed",
            Self::PatchStatus { .. } => "PatchStatusFailed",
            Self::Serialize(_) => "SerializeFailed",
            Self::RandomSource(_) => "RandomSourceFailed",
            Self::NotLeader => "NotLeader",
        }
    }

    /// True when the API server refused a write because the object changed since it was read
    /// (optimistic concurrency): retry at once rather than back off.
    pub fn is_conflict(&self) -> bool {
        let source = match self {
            Self::GetSecret { source, .. }
            | Self::ApplySecret { source, .. }
            | Self::ApplyConsumer { source, .. }
            | Self::ListPods { source, .. }
            | Self::PatchStatus { source } => source,
            _ => return false,
        };
        matches!(source, kube::Error::Api(status) if status.code == 409)
    }
}
