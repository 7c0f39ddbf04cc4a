//! What the decisions read and what they return: the [`Snapshot`] the controller gathers, the
//! [`Plan`] it carries out, and the parts of a plan (the mirror write, Events, the requeue). Types
//! only: this module imports no decision, so every decision module can import it.

use crate::api::{StreamingTokenSpec, StreamingTokenStatus, TokenIdentity};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, PodObservation};
use crate::model::pod::PodRecord;
use crate::model::reason;
use crate::token::{Token, TokenPair, TokenProblem};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap};
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

/// How long after the mirror's values were written a new pod still counts as having maybe read
/// the values before: a kubelet resolves a Secret from its own watch-fed cache, which can lag.
/// Repointing (and restarting) waits this long after a write, for the same reason. Measured on
/// a real kubelet (v1.37.2, `tests/e2e/realnode.rs`): pods created 0.0-1.1 s after a write got
/// the new value through `env` 10 times of 10; 2 s keeps a margin for a loaded API server's
/// watch without making every Restart outage 5 s longer (it was 5 s before it was measured).
pub const KUBELET_CACHE_MARGIN_SECONDS: i64 = 2;

/// The rotation phase that waits for the source to show the promoted pair (`ReadyToRotate`, or
/// the operator's own rotate call at the platform).
pub const PHASE_AWAITING_SOURCE: &str = reason::phase::AWAITING_SOURCE;

/// Longest wait between retries of a problem the user must fix.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an unlabelled source Secret (not watched) is re-read.
pub const UNWATCHED_SOURCE_RESYNC: Duration = Duration::from_secs(120);
/// How often member clusters (not watched) are read at rest.
pub const MEMBER_RESYNC: Duration = Duration::from_secs(60);
/// How often member clusters are read while a rotation runs.
pub const MEMBER_RESYNC_ROTATING: Duration = Duration::from_secs(3);

/// Which kind of object a snapshot is of: one state machine serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A `StreamingToken`: one namespace, whose mirror Secret is the pair of record.
    Namespaced,
    /// A `ClusterStreamingToken`: the pair of record lives in a home Secret in the operator's
    /// namespace and is copied into every selected namespace.
    Cluster,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespaced => "StreamingToken",
            Self::Cluster => "ClusterStreamingToken",
        }
    }
}

/// Everything `plan` needs, gathered by the controller.
pub struct Snapshot {
    pub kind: TokenKind,
    pub name: String,
    /// The StreamingToken's uid: its incarnation. A StreamingToken deleted and created again
    /// starts its serials (and so its rotation ids) again; the stamp on pod templates carries
    /// the incarnation, so an old stamp never passes for this incarnation's rollout.
    pub uid: String,
    /// Where the pair of record (`mirror`) lives: the StreamingToken's namespace, or the
    /// operator's for a ClusterStreamingToken.
    pub namespace: String,
    /// Namespace of a `secretRef` source Secret.
    pub source_namespace: String,
    pub generation: i64,
    /// The `streamingtoken.io/rotate` annotation: a manual rotation request.
    pub rotate_request: Option<String>,
    /// The `streamingtoken.io/ignore-windows` annotation: the trigger or request of this value
    /// starts outside the maintenance windows.
    pub ignore_windows: Option<String>,
    /// Webhook deliveries in flight or finished since status last recorded them.
    pub notifications: NotificationObservation,
    pub spec: StreamingTokenSpec,
    pub status: StreamingTokenStatus,
    pub secret_name: String,
    /// The Secret that holds the pair of record: the mirror Secret of a StreamingToken, the home
    /// Secret of a ClusterStreamingToken.
    pub mirror: MirrorObservation,
    pub source: SourceObservation,
    /// Where the pair comes from.
    pub origin: SourceOrigin,
    /// The namespaces the pair reaches, each with its consumers and pods (one, the
    /// StreamingToken's own, for the namespaced kind), sorted by name.
    pub namespaces: Vec<NamespaceView>,
    /// (ClusterStreamingToken) `unselectedPolicy: Retain`: a copy nobody reads any more in a
    /// namespace no longer selected is kept as it is (else deleted).
    pub retain_unselected: bool,
    /// (ClusterStreamingToken) Why the namespace selection cannot be evaluated (an invalid
    /// selector), if so: nothing is written until it is fixed.
    pub selection_problem: Option<String>,
    /// What the platform says (with `spec.platform`).
    pub platform: Option<PlatformObservation>,
    /// Random material drawn before planning, so that `plan` stays pure.
    pub fresh: FreshMaterial,
    /// Consecutive failed reconciles of this object, for exponential backoff.
    pub failures: u32,
}

impl Snapshot {
    /// Every labelled consumer, in every namespace.
    pub fn consumers(&self) -> impl Iterator<Item = &ConsumerObservation> {
        self.namespaces
            .iter()
            .flat_map(|view| view.consumers.iter())
    }

    /// How a consumer is named in status lists (`rotation.leftAlone`): `Kind/name`, with its
    /// namespace first for a ClusterStreamingToken or a member cluster's.
    pub fn consumer_key(&self, kind: &str, namespace: &str, name: &str) -> String {
        match self.kind {
            TokenKind::Namespaced if !crate::model::member::is_member(namespace) => {
                format!("{kind}/{name}")
            }
            _ => format!("{namespace}/{kind}/{name}"),
        }
    }

    /// How many labelled consumers there are, in every namespace.
    pub fn consumer_count(&self) -> usize {
        self.namespaces
            .iter()
            .map(|view| view.consumers.len())
            .sum()
    }

    /// When the token values of the Secret pods in `view` read were last written.
    pub fn values_written_at(&self, view: &NamespaceView) -> Option<i64> {
        match &view.copy {
            CopyObservation::Home => match &self.mirror {
                MirrorObservation::Owned(observed) => observed.values_written_at,
                _ => None,
            },
            CopyObservation::Current {
                values_written_at, ..
            } => *values_written_at,
            CopyObservation::Read(observed) => observed.values_written_at,
            CopyObservation::Missing
            | CopyObservation::NotOwned
            | CopyObservation::ClaimedBy(_)
            | CopyObservation::Unreachable(_) => None,
        }
    }

    /// True when the Secret of `view` was this object's copy and someone else's Secret took its
    /// name (the previous status knew it as a copy), and a pod reads that name that was created
    /// before the new Secret (it may have started on the copy and hold Token 1). Pods created
    /// since read the new Secret, so restarting the readers clears it.
    pub fn copy_replaced(&self, view: &NamespaceView) -> bool {
        if view.serves_pair() {
            return false;
        }
        let was_copy = held_a_copy(&self.status, &view.namespace);
        let margin = KUBELET_CACHE_MARGIN_SECONDS;
        was_copy
            && view.pods.iter().any(|pod| {
                pod.references
                    .iter()
                    .any(|reference| reference.secret == self.secret_name)
                    && view
                        .foreign_since
                        .is_none_or(|since| pod.created_at <= since.saturating_add(margin))
            })
    }

    /// True when a pod of `view` references a Secret of the mirror's name (any key, terminating
    /// or not).
    pub fn read_in(&self, view: &NamespaceView) -> bool {
        view.pods.iter().any(|pod| {
            pod.references
                .iter()
                .any(|reference| reference.secret == self.secret_name)
        })
    }

    /// True when the mirror Secret in `view` holds the pair of record (the same values and
    /// serials as the Secret of record holds now).
    pub fn copy_in_sync(&self, view: &NamespaceView) -> bool {
        match &view.copy {
            CopyObservation::Home | CopyObservation::Current { .. } => true,
            CopyObservation::Read(copy) => match &self.mirror {
                MirrorObservation::Owned(home) => same_pair(home, copy),
                _ => false,
            },
            CopyObservation::Missing
            | CopyObservation::NotOwned
            | CopyObservation::ClaimedBy(_)
            | CopyObservation::Unreachable(_) => false,
        }
    }

    /// The latest time any Secret the pods read had its values written.
    pub fn latest_values_written_at(&self) -> Option<i64> {
        self.namespaces
            .iter()
            .filter_map(|view| self.values_written_at(view))
            .max()
    }

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

/// One namespace the pair reaches.
pub struct NamespaceView {
    pub namespace: String,
    /// The mirror Secret in this namespace.
    pub copy: CopyObservation,
    /// Why the pair reaches this namespace (a StreamingToken's own namespace is `Selected`).
    pub membership: Membership,
    /// When the Secret under the mirror's name here was created, if it is not this object's
    /// (seconds, API server clock): pods created after it cannot have read a former copy.
    pub foreign_since: Option<i64>,
    /// A StreamingToken of the same name lives here: the consumer label is its, so the
    /// ClusterStreamingToken repoints and restarts nothing here (`consumers` is empty).
    pub label_taken: bool,
    /// Labelled consumers in the namespace.
    pub consumers: Vec<ConsumerObservation>,
    /// Every pod of the namespace that references a Secret or carries the token label (compact
    /// records): whatever owns them, they are what "may hold Token 1" is decided on.
    pub pods: Vec<Arc<PodRecord>>,
    /// (Revoked) Labelled workloads here whose pod template still reads the copy (`Kind/name`,
    /// with their replicas when scaled to zero): named before the copy is deleted.
    pub referencing: Vec<String>,
}

/// Why a ClusterStreamingToken reaches a namespace, which decides what is done there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Selected: its copy holds the pair of record, its consumers are served, its pods verified.
    Selected,
    /// Being deleted, and selected (or known to hold a copy) until then: nothing is written
    /// there, and its pods, which may still hold Token 1 while they terminate, are verified
    /// until they are gone.
    Terminating,
    /// No longer selected: a revocation. Its copy never receives a later pair, nothing there is
    /// repointed or restarted, and its pods still reading the copy are reported, not waited
    /// for; the copy is deleted once nothing reads it (`unselectedPolicy: Delete`) or kept as
    /// it is (`Retain`).
    Revoked,
    /// Not selected, but the Secret of record or the `secretRef` source Secret lives here: only
    /// the pods that read one of them directly are verified (never written, never listed).
    Source,
}

impl NamespaceView {
    /// True when the namespace is selected (its copy is kept in sync, its consumers served).
    pub fn selected(&self) -> bool {
        self.membership == Membership::Selected
    }

    /// True when the pods here hold a rotation while they may hold Token 1.
    pub fn verified_here(&self) -> bool {
        self.membership != Membership::Revoked
    }

    /// True when this namespace's pods may read this pair from the mirror Secret here.
    pub fn serves_pair(&self) -> bool {
        !matches!(
            self.copy,
            CopyObservation::NotOwned | CopyObservation::ClaimedBy(_)
        )
    }
}

/// True when `status` knows `namespace` as one that held (or holds) this object's copy: in the
/// uncapped `copiedNamespaces`, or (a status written before it existed) in `namespaces`.
pub fn held_a_copy(status: &StreamingTokenStatus, namespace: &str) -> bool {
    status
        .copied_namespaces
        .iter()
        .any(|name| name == namespace)
        || status.namespaces.iter().any(|entry| {
            entry.name == namespace
                && crate::model::reason::NamespaceState::parse(&entry.state)
                    .is_some_and(crate::model::reason::NamespaceState::held_a_copy)
        })
}

/// The mirror Secret of one namespace, next to the pair of record.
pub enum CopyObservation {
    /// It is the Secret of record itself (a StreamingToken's mirror; a ClusterStreamingToken's
    /// home namespace).
    Home,
    Missing,
    /// A Secret of that name the operator did not create.
    NotOwned,
    /// A Secret of that name the operator manages for someone else (named).
    ClaimedBy(String),
    /// Owned, and known from an earlier read to hold what the Secret of record holds (its
    /// resourceVersion has not changed since).
    Current {
        resource_version: String,
        values_written_at: Option<i64>,
    },
    /// Owned, read now.
    Read(ObservedMirror),
    /// (A member cluster's namespace) Not readable now: why (never a token value). Nothing is
    /// written there and nothing there is verified until it is read again.
    Unreachable(String),
}

/// True when two observed mirror Secrets hold the same valid tokens under the same serials.
fn same_pair(a: &ObservedMirror, b: &ObservedMirror) -> bool {
    let same = |x: &Option<Result<Token, TokenProblem>>,
                y: &Option<Result<Token, TokenProblem>>| {
        matches!((x, y), (Some(Ok(x)), Some(Ok(y))) if x == y)
    };
    let serials = |mirror: &ObservedMirror| {
        (
            mirror.annotations.get(ANNOTATION_TOKEN1_SERIAL).cloned(),
            mirror.annotations.get(ANNOTATION_TOKEN2_SERIAL).cloned(),
        )
    };
    same(&a.token1, &b.token1) && same(&a.token2, &b.token2) && serials(a) == serials(b)
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
    /// A Secret the operator manages for another object (named: `StreamingToken x`,
    /// `ClusterStreamingToken y`).
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

/// Where the pair comes from, as the source describes itself ([`crate::source::Source::origin`]):
/// the decisions read this, never `spec.source`, so a new kind of source needs no decision
/// change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOrigin {
    /// How messages name it: `source Secret portal-tokens`, `the platform's pair`.
    pub label: String,
    /// The source's own keys of Token 1 and Token 2 (a Secret's).
    pub keys: Option<(String, String)>,
    /// A Secret of the source's namespace that holds the pair: pods that read it directly can be
    /// neither repointed nor verified.
    pub secret: Option<String>,
    /// It changes without a watch event (an unlabelled Secret): read again from time to time.
    pub polled: bool,
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

/// What the platform answered about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The platform accepts it.
    Accepted,
    /// The platform rejects it (deactivated, mistyped, or another environment's).
    Rejected,
    /// No answer that says either (unreachable, a timeout, an unexpected status): never read
    /// as valid or as invalid.
    Unknown(String),
}

/// What the platform said, gathered before planning (see [`crate::platform`]).
#[derive(Debug, Clone, Default)]
pub struct PlatformObservation {
    /// The verdict on each token the mirror or the source holds (as far as asked).
    pub verdicts: Vec<(Token, Verdict)>,
    /// The platform configuration cannot be used (a Secret it names is missing, a bad CA
    /// bundle): nothing is asked, and nothing that needs the platform's word moves.
    pub problem: Option<String>,
    /// `source.platform`: the operator rotates at the platform itself.
    pub rotates: bool,
    /// (`source.platform`) The pair was read from the platform in this pass (not a cached
    /// read): what a rotate call is decided on.
    pub read_fresh: bool,
    /// When the platform credentials expire (seconds), if they say.
    pub credentials_expire_at: Option<i64>,
    /// The attempt number and outcome of a rotate call this process made whose outcome could
    /// not be recorded in status (a refused status write): `(attempt, state, message)`.
    pub unrecorded_call: Option<(i32, String, String)>,
}

impl PlatformObservation {
    /// The platform's verdict on `token`, if it was asked.
    pub fn verdict(&self, token: &Token) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .find(|(known, _)| known == token)
            .map(|(_, verdict)| verdict)
    }
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
    /// The platform's pair could not be read (`source.platform`).
    PlatformUnreadable {
        message: String,
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
            Self::NotFound { .. } => reason::SOURCE_SECRET_NOT_FOUND,
            Self::KeyMissing { .. } => reason::SOURCE_KEY_MISSING,
            Self::InvalidToken { .. } => reason::SOURCE_TOKEN_INVALID,
            Self::IdenticalTokens { .. } => reason::SOURCE_TOKENS_IDENTICAL,
            Self::PlatformUnreadable { .. } => reason::PLATFORM_UNREACHABLE,
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
            Self::PlatformUnreadable { message } => {
                format!("the pair could not be read from the platform: {message}")
            }
            Self::Unsettled { message, .. } => message.clone(),
        }
    }
}

/// Webhook deliveries as the controller knows them (see [`crate::decide::notifications`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationObservation {
    /// Deliveries being made now: `(rotation, event)`.
    pub in_flight: Vec<(String, String)>,
    /// Attempts that ended and that status has not recorded yet.
    pub finished: Vec<Delivery>,
}

/// One delivery attempt that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub rotation: String,
    pub event: String,
    /// Which attempt (1 for the first).
    pub attempt: i32,
    /// When it ended.
    pub at: Time,
    /// `Err(message, permanent)`: why it failed (never the URL), and whether trying again is
    /// pointless (the receiver refused it).
    pub outcome: Result<(), (String, bool)>,
}

/// A notification to deliver now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub rotation: String,
    pub event: String,
    pub reason: String,
    pub message: String,
    /// Which attempt this is (1 for the first).
    pub attempt: i32,
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
    /// One of [`crate::model::reason`]'s reasons.
    pub reason: &'static str,
    /// One of [`crate::model::reason::action`]'s.
    pub action: &'static str,
    pub message: String,
    /// (ClusterStreamingToken) The namespace the Event concerns, also recorded on that
    /// namespace's copy.
    pub namespace: Option<String>,
}

impl Notice {
    pub fn normal(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Normal,
            reason,
            action,
            message: message.into(),
            namespace: None,
        }
    }

    pub fn warning(reason: &'static str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            reason,
            action,
            message: message.into(),
            namespace: None,
        }
    }

    /// This notice concerns `namespace`.
    pub fn about_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
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

/// A mirror Secret to write in another namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyWrite {
    pub namespace: String,
    pub write: MirrorWrite,
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
    /// (ClusterStreamingToken) Mirror Secrets to write in other namespaces, after `secret`:
    /// the same pair, with each copy's own precondition.
    pub copies: Vec<CopyWrite>,
    /// (ClusterStreamingToken) Namespaces whose mirror Secret is deleted (no longer selected,
    /// and no pod there reads it).
    pub copy_deletes: Vec<String>,
    /// Consumer workloads to patch (rotation annotation and environment variable).
    pub consumer_patches: Vec<ConsumerPatch>,
    /// The status as it should be (written only if it differs from the observed one).
    pub status: StreamingTokenStatus,
    pub events: Vec<Notice>,
    pub requeue: Requeue,
    /// True when the plan reports a problem the user must fix (drives backoff and metrics).
    pub failed: Option<&'static str>,
    /// (`spec.platform.rotate`) Call the platform's rotate endpoint once `status` (which records
    /// this attempt as `Calling`) is written, and record the outcome: the attempt number.
    pub platform_rotate: Option<i32>,
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

impl NamespaceView {
    /// The consumer a pod owner belongs to: a CronJob for the Jobs it runs now (its
    /// observation names them), else the owner itself.
    pub fn consumer_of(&self, owner: &crate::model::pod::Owner) -> crate::model::pod::Owner {
        let job = crate::model::consumer::WorkloadKind::Job.as_str();
        if owner.kind == job
            && let Some(cronjob) = self.consumers.iter().find(|consumer| {
                consumer
                    .batch
                    .as_ref()
                    .is_some_and(|batch| batch.jobs.contains(&owner.name))
            })
        {
            return crate::model::pod::Owner {
                kind: cronjob.kind.as_str().into(),
                name: cronjob.name.clone(),
            };
        }
        owner.clone()
    }

    /// Replaces the view's pods (and each consumer's own) with `records`.
    pub fn with_pods(&mut self, records: Vec<Arc<PodRecord>>, now: &Time) {
        attach_pods(&mut self.consumers, &records, now);
        self.pods = records;
    }
}

/// Each consumer's pods: the records it controls (a Deployment through its ReplicaSets, a
/// CronJob through the Jobs it runs).
/// Grouped by owner once, so a reconcile costs one pass over the namespace's pods.
fn attach_pods(consumers: &mut [ConsumerObservation], records: &[Arc<PodRecord>], now: &Time) {
    let now = now.0.as_second();
    let mut by_owner: HashMap<(&str, &str), Vec<&PodRecord>> = HashMap::new();
    for record in records {
        let Some(owner) = &record.owner else {
            continue;
        };
        by_owner
            .entry((owner.kind.as_str(), owner.name.as_str()))
            .or_default()
            .push(record);
    }
    // Each consumer reads its pods' stamp under its own key (the StreamingToken's).
    let observe = |record: &PodRecord, stamp_key: &str| PodObservation {
        name: record.name.clone(),
        rotation: record.stamp(stamp_key).cloned(),
        terminating: record.terminating(),
        // deletionTimestamp is when the grace period ends; past it, only a finalizer
        // keeps the pod (and whatever token it holds) around.
        held_by: record.held_by(now).to_vec(),
    };
    for consumer in consumers {
        let mut pods = by_owner
            .remove(&(consumer.kind.as_str(), consumer.name.as_str()))
            .unwrap_or_default();
        // A CronJob's pods are those of the Jobs it runs now.
        for job in consumer.batch.iter().flat_map(|batch| &batch.jobs) {
            let key = (
                crate::model::consumer::WorkloadKind::Job.as_str(),
                job.as_str(),
            );
            pods.extend(by_owner.remove(&key).unwrap_or_default());
        }
        consumer.pods = Some(
            pods.into_iter()
                .map(|record| observe(record, &consumer.stamp_key))
                .collect(),
        );
    }
}
