//! Errors name the operation that failed. Messages never carry token values: the only values
//! that reach an error are names, keys and the API server's own messages.

use crate::token::RandomSourceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {name}: {source}")]
    GetSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying Secret {name}: {source}")]
    ApplySecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {name}: {source}")]
    ApplyConsumer {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods of namespace {namespace}: {source}")]
    ListPods {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status: {source}")]
    PatchStatus {
        #[source]
        source: kube::Error,
    },
    #[error("serializing an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error(transparent)]
    RandomSource(#[from] RandomSourceError),
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
