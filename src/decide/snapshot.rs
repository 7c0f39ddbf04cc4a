//! What the decisions read and what they return: the [`Snapshot`] the controller gathers, the
//! [`Plan`] it carries out, and the parts of a plan (the mirror write, Events, the requeue). Types
//! only: this module imports no decision, so every decision module can import it.

use crate::api::{StreamingTokenSpec, StreamingTokenStatus, TokenIdentity};
use crate::pods::PodRecord;
use crate::token::{Token, TokenPair, TokenProblem};
use crate::workload::{ConsumerObservation, ConsumerPatch};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Annotations the operator keeps on the mirror Secret: the pair's bookkeeping lives with the
/// pair, so a crash between two writes never loses it.
pub const ANNOTATION_TOKEN1_SERIAL: &str = "streamingtoken.io/token1-serial";
pub const ANNOTATION_TOKEN2_SERIAL: &str = "streamingtoken.io/token2-serial";
pub const ANNOTATION_TOKEN1_ISSUED_AT: &str = "streamingtoken.io/token1-issued-at";
pub const ANNOTATION_TOKEN2_ISSUED_AT: &str = "streamingtoken.io/token2-issued-at";
pub const ANNOTATION_TOKEN1_FINGERPRINT: &str = "streamingtoken.io/token1-fingerprint";
pub const ANNOTATION_TOKEN2_FINGERPRINT: &str = "streamingtoken.io/token2-fingerprint";
pub const ANNOTATION_FINGERPRINT_KEY: &str = "streamingtoken.io/fingerprint-key";
/// On a `secretRef` source Secret: confirms that a pair the operator does not recognize (neither
/// the recorded pair, nor its promotion) replaced the old one out of band. Every new value is
/// acted on once; the mirror Secret keeps the value it acted on under the same key.
pub const ANNOTATION_REPLACEMENT: &str = "streamingtoken.io/replacement";
/// MAC over the four identity annotations, so an edited serial is noticed and restored.
pub const ANNOTATION_IDENTITY_MAC: &str = "streamingtoken.io/identity-mac";

/// Longest wait between retries of a problem the user must fix.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an unlabelled source Secret (not watched) is re-read.
pub const UNWATCHED_SOURCE_RESYNC: Duration = Duration::from_secs(120);

/// Everything `plan` needs, gathered by the controller.
pub struct Snapshot {
    pub name: String,
    /// The StreamingToken's uid: its incarnation. A StreamingToken deleted and created again
    /// starts its serials (and so its rotation ids) again; the stamp on pod templates carries
    /// the incarnation, so an old stamp never passes for this incarnation's rollout.
    pub uid: String,
    pub namespace: String,
    pub generation: i64,
    /// The `streamingtoken.io/rotate` annotation: a manual rotation request.
    pub rotate_request: Option<String>,
    pub spec: StreamingTokenSpec,
    pub status: StreamingTokenStatus,
    pub secret_name: String,
    pub mirror: MirrorObservation,
    pub source: SourceObservation,
    pub consumers: Vec<ConsumerObservation>,
    /// Every pod of the namespace that references a Secret or carries the token label (compact
    /// records): whatever owns them, they are what "may hold Token 1" is decided on.
    pub pods: Vec<Arc<PodRecord>>,
    /// Random material drawn before planning, so that `plan` stays pure.
    pub fresh: FreshMaterial,
    /// Consecutive failed reconciles of this object, for exponential backoff.
    pub failures: u32,
}

impl Snapshot {
    /// The value of the `streamingtoken.io/rotation` annotation that rotation `id` stamps on
    /// pod templates: `<id>.<first 8 characters of the uid>` (just `id` without a uid).
    pub fn stamp(&self, id: &str) -> String {
        stamp(id, &self.uid)
    }
}

/// The rotation annotation rotation `id` of the StreamingToken with `uid` stamps on templates.
pub fn stamp(id: &str, uid: &str) -> String {
    match uid.get(..8) {
        Some(incarnation) => format!("{id}.{incarnation}"),
        None if uid.is_empty() => id.to_string(),
        None => format!("{id}.{uid}"),
    }
}

/// New tokens and a new fingerprint key, used only if the plan issues tokens.
pub struct FreshMaterial {
    pub tokens: [Token; 2],
    pub fingerprint_key: String,
}

/// What exists under the mirror Secret's name.
pub enum MirrorObservation {
    Missing,
    /// A Secret the operator did not create.
    NotOwned,
    /// A Secret the operator manages for another StreamingToken.
    ClaimedBy(String),
    Owned(ObservedMirror),
}

/// The parts of an owned mirror Secret the operator cares about.
pub struct ObservedMirror {
    pub resource_version: Option<String>,
    pub token1: Option<Result<Token, TokenProblem>>,
    pub token2: Option<Result<Token, TokenProblem>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_uids: Vec<String>,
    /// The latest time (API server clock, seconds) any field manager wrote the Secret: the
    /// token values were last written no later than this.
    pub values_written_at: Option<i64>,
}

/// What the source says (see [`crate::source`]).
pub enum SourceObservation {
    /// The operator issues the tokens; the pair lives only in the mirror Secret.
    Issued,
    /// Someone else issues and rotates them: the pair as the source holds it now, and the
    /// source Secret's `streamingtoken.io/replacement` annotation (a person's confirmation that
    /// an unrecognized pair is a real replacement, see [`ANNOTATION_REPLACEMENT`]).
    External(Result<TokenPair, SourceProblem>, Option<String>),
}

/// Why a source Secret cannot be mirrored. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceProblem {
    NotFound {
        name: String,
    },
    KeyMissing {
        name: String,
        key: String,
    },
    InvalidToken {
        name: String,
        key: String,
        problem: TokenProblem,
    },
    IdenticalTokens {
        name: String,
    },
    /// The source is mid-change and the mirror holds no valid pair to keep meanwhile.
    Unsettled {
        reason: &'static str,
        message: String,
    },
}

impl SourceProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "SourceSecretNotFound",
            Self::KeyMissing { .. } => "SourceKeyMissing",
            Self::InvalidToken { .. } => "SourceTokenInvalid",
            Self::IdenticalTokens { .. } => "SourceTokensIdentical",
            Self::Unsettled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::NotFound { name } => format!("source Secret {name} does not exist"),
            Self::KeyMissing { name, key } => format!("source Secret {name} has no key {key}"),
            Self::InvalidToken { name, key, problem } => {
                format!("the value under key {key} of source Secret {name} {problem}")
            }
            Self::IdenticalTokens { name } => {
                format!("source Secret {name} holds the same value for Token 1 and Token 2")
            }
            Self::Unsettled { message, .. } => message.clone(),
        }
    }
}

/// Event severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An Event to publish on the StreamingToken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl Notice {
    pub fn normal(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Normal,
            reason,
            action,
            message: message.into(),
        }
    }

    pub fn warning(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            reason,
            action,
            message: message.into(),
        }
    }
}

/// The mirror Secret as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorWrite {
    pub pair: TokenPair,
    pub identities: [TokenIdentity; 2],
    pub fingerprint_key: String,
    /// Owner reference to the StreamingToken (deletion policy `Delete`).
    pub owned: bool,
    /// Optimistic concurrency: the resourceVersion the decision was based on (None to create).
    pub precondition: Option<String>,
    /// The source's replacement confirmation the operator has acted on (`secretRef`).
    pub replacement: Option<String>,
}

/// When to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Nothing to wait for: the next watch event will do.
    Never,
    After(Duration),
}

/// What the controller should do.
#[derive(Debug)]
pub struct Plan {
    /// The mirror Secret to write, or `None` when it is already as it should be.
    pub secret: Option<MirrorWrite>,
    /// Consumer workloads to patch (rotation annotation and environment variable).
    pub consumer_patches: Vec<ConsumerPatch>,
    /// The status as it should be (written only if it differs from the observed one).
    pub status: StreamingTokenStatus,
    pub events: Vec<Notice>,
    pub requeue: Requeue,
    /// True when the plan reports a problem the user must fix (drives backoff and metrics).
    pub failed: Option<&'static str>,
    /// True when the plan rests on no pod holding Token 1: `secret` deactivates it,
    /// `ReadyToRotate` turns True (a person will deactivate it), or a Restart rotation leaves
    /// consumers alone. The controller re-reads the namespace's pods from the API server and
    /// decides again before carrying such a plan out.
    pub deactivates: bool,
}

/// Exponential backoff for problems the user must fix: 5 s doubling to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.min(10));
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}
