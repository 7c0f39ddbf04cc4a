//! Errors name the operation that failed. Messages never carry token values, nor the API
//! server's free text: an admission webhook or policy message can quote the object it refused
//! (a Secret's data, a template with a literal token), and these messages reach status, Events
//! and logs that the read-only `view` role can read. They keep the status code, the reason and
//! the paths of the invalid fields (see [`api_summary`]).

use crate::model::reason;
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
    #[error("member cluster {cluster}: {message}")]
    MemberUnreachable { cluster: String, message: String },
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
            // A webhook sets these too: keep only what looks like a field path.
            let fields: Vec<&str> = status
                .details
                .as_ref()
                .map(|details| {
                    details
                        .causes
                        .iter()
                        .map(|cause| cause.field.as_str())
                        .filter(|field| is_field_path(field))
                        .take(5)
                        .collect()
                })
                .unwrap_or_default();
            // Only the API's own reasons (a webhook may put any text there).
            let reason = match status.reason.as_str() {
                known @ ("BadRequest"
                | "Unauthorized"
                | "Forbidden"
                | "NotFound"
                | "AlreadyExists"
                | "Conflict"
                | "Gone"
                | "Invalid"
                | "ServerTimeout"
                | "Timeout"
                | "TooManyRequests"
                | "MethodNotAllowed"
                | "NotAcceptable"
                | "RequestEntityTooLarge"
                | "UnsupportedMediaType"
                | "InternalError"
                | "Expired"
                | "ServiceUnavailable") => known,
                _ => "Failure",
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

/// A field path as the API server writes them (`spec.template.spec.containers[0].env`).
fn is_field_path(field: &str) -> bool {
    !field.is_empty()
        && field.len() <= 200
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'))
}

impl Error {
    /// A static PascalCase reason, for Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::GetSecret { .. } => reason::GET_SECRET_FAILED,
            Self::ApplySecret { .. } => reason::APPLY_SECRET_FAILED,
            Self::ApplyConsumer { .. } => reason::APPLY_CONSUMER_FAILED,
            Self::ListPods { .. } => reason::LIST_PODS_FAILED,
            Self::PatchStatus { .. } => reason::PATCH_STATUS_FAILED,
            Self::Serialize(_) => reason::SERIALIZE_FAILED,
            Self::RandomSource(_) => reason::RANDOM_SOURCE_FAILED,
            Self::NotLeader => reason::NOT_LEADER,
            Self::MemberUnreachable { .. } => reason::MEMBER_UNREACHABLE,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(reason: &str, fields: &[&str]) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "code": 422,
            "reason": reason,
            "message": "SENTINEL the webhook quoted the object",
            "details": {"causes": fields.iter().map(|field| serde_json::json!({"field": field, "message": "SENTINEL"})).collect::<Vec<_>>()}
        }))
        .expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn api_errors_keep_the_code_reason_and_field_paths_only() {
        let summary = api_summary(&api_error(
            "Invalid",
            &[
                "spec.template.spec.containers[0].env[0].valueFrom",
                "SENTINEL with spaces",
            ],
        ));
        assert_eq!(
            summary,
            "422 Invalid (spec.template.spec.containers[0].env[0].valueFrom)"
        );
        let webhook = api_summary(&api_error("token value SENTINEL", &[]));
        assert_eq!(webhook, "422 Failure");
    }
}
