//! The object a reconcile serves: a namespaced `StreamingToken` or a `ClusterStreamingToken`.
//! One state machine ([`crate::decide`]) serves both; this is where they differ: where their
//! Secrets live and how they are labelled, how their status is written and where their Events go.

use crate::api::{
    CLUSTER_TOKEN_LABEL, ClusterStreamingToken, IGNORE_WINDOWS_ANNOTATION, ROTATE_ANNOTATION,
    StreamingToken, StreamingTokenSpec, StreamingTokenStatus, TOKEN_LABEL,
};
use crate::decide::TokenKind;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

/// A StreamingToken or a ClusterStreamingToken.
#[derive(Clone, Debug)]
pub enum Target {
    Namespaced(Arc<StreamingToken>),
    Cluster(Arc<ClusterStreamingToken>),
}

impl Target {
    pub fn kind(&self) -> TokenKind {
        match self {
            Self::Namespaced(_) => TokenKind::Namespaced,
            Self::Cluster(_) => TokenKind::Cluster,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Namespaced(token) => token.name_any(),
            Self::Cluster(token) => token.name_any(),
        }
    }

    /// The StreamingToken's namespace; empty for a ClusterStreamingToken (the `namespace`
    /// field of logs and the `namespace` label of metrics).
    pub fn namespace(&self) -> String {
        match self {
            Self::Namespaced(token) => token.namespace().unwrap_or_default(),
            Self::Cluster(_) => String::new(),
        }
    }

    /// `(namespace, name)`: unique across both kinds (a cluster object's namespace is empty).
    pub fn key(&self) -> (String, String) {
        (self.namespace(), self.name())
    }

    fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Self::Namespaced(token) => token.meta(),
            Self::Cluster(token) => token.meta(),
        }
    }

    pub fn uid(&self) -> Option<String> {
        self.meta().uid.clone()
    }

    pub fn generation(&self) -> i64 {
        self.meta().generation.unwrap_or(0)
    }

    pub fn resource_version(&self) -> Option<String> {
        self.meta().resource_version.clone()
    }

    pub fn deleting(&self) -> bool {
        self.meta().deletion_timestamp.is_some()
    }

    pub fn rotate_request(&self) -> Option<String> {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(ROTATE_ANNOTATION).cloned())
    }

    /// The `streamingtoken.io/ignore-windows` annotation (`rotate --now`).
    pub fn ignore_windows(&self) -> Option<String> {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(IGNORE_WINDOWS_ANNOTATION).cloned())
    }

    /// The spec as the shared decisions read it.
    pub fn spec(&self) -> StreamingTokenSpec {
        match self {
            Self::Namespaced(token) => token.spec.clone(),
            Self::Cluster(token) => token.common_spec(),
        }
    }

    pub fn status(&self) -> Option<&StreamingTokenStatus> {
        match self {
            Self::Namespaced(token) => token.status.as_ref(),
            Self::Cluster(token) => token.status.as_ref(),
        }
    }

    pub fn secret_name(&self) -> String {
        match self {
            Self::Namespaced(token) => token.secret_name(),
            Self::Cluster(token) => token.secret_name(),
        }
    }

    /// The label that ties its Secrets to it: `streamingtoken.io/token` for a StreamingToken,
    /// `streamingtoken.io/cluster-token` for a ClusterStreamingToken.
    pub fn label_key(&self) -> &'static str {
        match self {
            Self::Namespaced(_) => TOKEN_LABEL,
            Self::Cluster(_) => CLUSTER_TOKEN_LABEL,
        }
    }

    /// How people name it: `StreamingToken prod/telemetry`, `ClusterStreamingToken telemetry`.
    pub fn display(&self) -> String {
        match self {
            Self::Namespaced(token) => format!(
                "StreamingToken {}/{}",
                token.namespace().unwrap_or_default(),
                token.name_any()
            ),
            Self::Cluster(token) => format!("ClusterStreamingToken {}", token.name_any()),
        }
    }

    /// Where its Events go.
    pub fn object_ref(&self) -> ObjectReference {
        match self {
            Self::Namespaced(token) => token.object_ref(&()),
            Self::Cluster(token) => token.object_ref(&()),
        }
    }

    /// The owner reference its Secrets carry with `deletionPolicy: Delete`.
    pub fn owner_ref(&self) -> Option<OwnerReference> {
        match self {
            Self::Namespaced(token) => token.controller_owner_ref(&()),
            Self::Cluster(token) => token.controller_owner_ref(&()),
        }
    }
}
