//! Pure decisions: `plan(&Snapshot, now) -> Plan`.
//!
//! The controller observes (the StreamingToken, its mirror Secret, its source, its consumers,
//! and fresh random material drawn in advance), this module decides, and `apply` writes. Nothing
//! here touches a client or reads the clock, so every decision is a table-driven unit test. Each
//! decision carries a PascalCase reason that the condition, the Event and the metric label share.

use crate::api::{
    ConsumerSummary, DeletionPolicy, StreamingTokenSpec, StreamingTokenStatus, TokenIdentity,
};
use crate::conditions::{self, DEGRADED, READY};
use crate::rotation::{self, PairChange};
use crate::token::{Token, TokenPair, TokenProblem};
use crate::workload::{ConsumerObservation, ConsumerPatch};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
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
/// MAC over the four identity annotations, so an edited serial is noticed and restored.
pub const ANNOTATION_IDENTITY_MAC: &str = "streamingtoken.io/identity-mac";

/// Longest wait between retries of a problem the user must fix.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an unlabelled source Secret (not watched) is re-read.
pub const UNWATCHED_SOURCE_RESYNC: Duration = Duration::from_secs(120);

/// Everything `plan` needs, gathered by the controller.
pub struct Snapshot {
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    pub spec: StreamingTokenSpec,
    pub status: StreamingTokenStatus,
    pub secret_name: String,
    pub mirror: MirrorObservation,
    pub source: SourceObservation,
    pub consumers: Vec<ConsumerObservation>,
    /// Random material drawn before planning, so that `plan` stays pure.
    pub fresh: FreshMaterial,
    /// Consecutive failed reconciles of this object, for exponential backoff.
    pub failures: u32,
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
}

/// What the source says (see [`crate::source`]).
pub enum SourceObservation {
    /// The operator issues the tokens; the pair lives only in the mirror Secret.
    Issued,
    /// Someone else issues and rotates them: the pair as the source holds it now.
    External(Result<TokenPair, SourceProblem>),
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
}

impl SourceProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "SourceSecretNotFound",
            Self::KeyMissing { .. } => "SourceKeyMissing",
            Self::InvalidToken { .. } => "SourceTokenInvalid",
            Self::IdenticalTokens { .. } => "SourceTokensIdentical",
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
}

/// Exponential backoff for problems the user must fix: 5 s doubling to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.min(10));
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}

/// Decides everything for one StreamingToken.
pub fn plan(snapshot: &Snapshot, now: &Time) -> Plan {
    let generation = Some(snapshot.generation);
    let mut status = snapshot.status.clone();
    status.observed_generation = generation;
    status.secret_name = Some(snapshot.secret_name.clone());
    let previous_consumers = status.consumers.take();
    status.consumers = Some(ConsumerSummary {
        total: i32::try_from(snapshot.consumers.len()).unwrap_or(i32::MAX),
        ..previous_consumers.unwrap_or_default()
    });
    let mut events = Vec::new();

    if let Some((reason, message)) = spec_problem(snapshot) {
        return failure(snapshot, status, events, reason, message, now);
    }
    let observed = match &snapshot.mirror {
        MirrorObservation::NotOwned => {
            let message = format!(
                "Secret {} exists and was not created by the operator; delete it or set spec.secret.name to another name",
                snapshot.secret_name
            );
            return failure(snapshot, status, events, "SecretNotOwned", message, now);
        }
        MirrorObservation::ClaimedBy(other) => {
            let message = format!(
                "Secret {} is managed for StreamingToken {other}; set spec.secret.name to another name",
                snapshot.secret_name
            );
            return failure(
                snapshot,
                status,
                events,
                "SecretClaimedByOther",
                message,
                now,
            );
        }
        MirrorObservation::Missing => None,
        MirrorObservation::Owned(observed) => Some(observed),
    };

    if snapshot.spec.suspend {
        let healthy = observed.is_some_and(|mirror| current_pair(mirror).is_some());
        conditions::set(
            &mut status.conditions,
            READY,
            healthy,
            "Suspended",
            "reconciliation is suspended (spec.suspend): the mirror Secret is not repaired and no rotation starts or advances",
            generation,
            now,
        );
        return Plan {
            secret: None,
            consumer_patches: Vec::new(),
            status,
            events,
            requeue: Requeue::Never,
            failed: None,
        };
    }

    let (mut mirror, change) = match resolve_pair(snapshot, observed, now, &mut events) {
        Ok(resolved) => resolved,
        Err(problem) => {
            let reason = problem.reason();
            return failure(snapshot, status, events, reason, problem.message(), now);
        }
    };

    status.token1 = Some(mirror.identities[0].clone());
    status.token2 = Some(mirror.identities[1].clone());
    let rotation = rotation::advance(snapshot, &mut mirror, change, &mut status, now, &mut events);
    if rotation.hold_writes {
        // Only the rotation's start is recorded now; the pair is written on the next pass.
        status.token1 = snapshot.status.token1.clone();
        status.token2 = snapshot.status.token2.clone();
        let plan_events = events
            .into_iter()
            .filter(|notice| {
                notice.reason == "RotationStarted" || notice.reason == "RotationAborted"
            })
            .collect();
        return Plan {
            secret: None,
            consumer_patches: Vec::new(),
            status,
            events: plan_events,
            requeue: rotation.requeue,
            failed: None,
        };
    }
    status.token1 = Some(mirror.identities[0].clone());
    status.token2 = Some(mirror.identities[1].clone());
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        "TokensReady",
        format!(
            "Secret {} holds Token 1 (serial {}) and Token 2 (serial {})",
            snapshot.secret_name, mirror.identities[0].serial, mirror.identities[1].serial
        ),
        generation,
        now,
    );
    match &rotation.degraded {
        Some((reason, message)) => conditions::set(
            &mut status.conditions,
            DEGRADED,
            true,
            reason,
            message.clone(),
            generation,
            now,
        ),
        None => conditions::set(
            &mut status.conditions,
            DEGRADED,
            false,
            "AsExpected",
            "no problems found",
            generation,
            now,
        ),
    }

    let secret = needs_write(&mirror, observed).then_some(mirror);
    let mut requeue = rotation.requeue;
    if snapshot.spec.source.secret_ref.is_some() && requeue == Requeue::Never {
        // An unlabelled source Secret is not watched: look again from time to time.
        requeue = Requeue::After(UNWATCHED_SOURCE_RESYNC);
    }
    Plan {
        secret,
        consumer_patches: rotation.patches,
        status,
        events,
        requeue,
        failed: None,
    }
}

/// Checks the schema cannot express (they involve the object's name).
fn spec_problem(snapshot: &Snapshot) -> Option<(&'static str, String)> {
    if let Some(source) = &snapshot.spec.source.secret_ref
        && source.name == snapshot.secret_name
    {
        return Some((
            "InvalidSpec",
            format!(
                "the source Secret and the mirror Secret are both {}; set spec.secret.name to another name",
                source.name
            ),
        ));
    }
    None
}

fn failure(
    snapshot: &Snapshot,
    mut status: StreamingTokenStatus,
    mut events: Vec<Notice>,
    reason: &'static str,
    message: String,
    now: &Time,
) -> Plan {
    let generation = Some(snapshot.generation);
    let already = conditions::get(&status.conditions, DEGRADED)
        .is_some_and(|condition| condition.status == "True" && condition.reason == reason);
    if !already {
        events.push(Notice::warning(reason, "Reconcile", message.clone()));
    }
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        message.clone(),
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    Plan {
        secret: None,
        consumer_patches: Vec::new(),
        status,
        events,
        requeue: Requeue::After(backoff(snapshot.failures)),
        failed: Some(reason),
    }
}

/// The pair and identities recorded on an owned mirror Secret, when both tokens are valid and
/// match their fingerprints (or carry none yet).
fn current_pair(mirror: &ObservedMirror) -> Option<(TokenPair, Option<[TokenIdentity; 2]>)> {
    let token1 = mirror.token1.clone()?.ok()?;
    let token2 = mirror.token2.clone()?.ok()?;
    if let Some(key) = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY) {
        let expected1 = mirror.annotations.get(ANNOTATION_TOKEN1_FINGERPRINT);
        let expected2 = mirror.annotations.get(ANNOTATION_TOKEN2_FINGERPRINT);
        if expected1 != Some(&token1.fingerprint(key))
            || expected2 != Some(&token2.fingerprint(key))
        {
            return None;
        }
    }
    Some((TokenPair { token1, token2 }, recorded_identities(mirror)))
}

fn identity_mac(key: &str, identities: &[TokenIdentity; 2]) -> String {
    let message = format!(
        "{}|{}|{}|{}",
        identities[0].serial,
        identities[0].issued_at.0,
        identities[1].serial,
        identities[1].issued_at.0
    );
    crate::token::mac(key, message.as_bytes())
}

/// The identities recorded on the mirror Secret, if present and not edited by hand.
fn recorded_identities(mirror: &ObservedMirror) -> Option<[TokenIdentity; 2]> {
    let key = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY)?;
    let identity = |serial_key: &str, time_key: &str| -> Option<TokenIdentity> {
        let serial = mirror.annotations.get(serial_key)?.parse().ok()?;
        let issued_at = mirror.annotations.get(time_key)?.parse().ok()?;
        Some(TokenIdentity {
            serial,
            issued_at: Time(issued_at),
        })
    };
    let identities = [
        identity(ANNOTATION_TOKEN1_SERIAL, ANNOTATION_TOKEN1_ISSUED_AT)?,
        identity(ANNOTATION_TOKEN2_SERIAL, ANNOTATION_TOKEN2_ISSUED_AT)?,
    ];
    (mirror.annotations.get(ANNOTATION_IDENTITY_MAC) == Some(&identity_mac(key, &identities)))
        .then_some(identities)
}

/// Highest serial known from status and the mirror Secret.
pub fn highest_serial(snapshot: &Snapshot) -> i64 {
    let mut highest = 0;
    for identity in [&snapshot.status.token1, &snapshot.status.token2]
        .into_iter()
        .flatten()
    {
        highest = highest.max(identity.serial);
    }
    if let MirrorObservation::Owned(mirror) = &snapshot.mirror
        && let Some(identities) = recorded_identities(mirror)
    {
        highest = highest.max(identities[0].serial).max(identities[1].serial);
    }
    highest
}

fn fresh_identity(serial: i64, now: &Time) -> TokenIdentity {
    TokenIdentity {
        serial,
        issued_at: now.clone(),
    }
}

/// Works out the pair the mirror Secret must hold before any rotation step.
fn resolve_pair(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Result<(MirrorWrite, PairChange), SourceProblem> {
    let owned = snapshot.spec.deletion_policy == DeletionPolicy::Delete;
    let precondition = observed.and_then(|mirror| mirror.resource_version.clone());
    let existing_key = observed
        .and_then(|mirror| mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY))
        .cloned();
    let fingerprint_key = existing_key.unwrap_or_else(|| snapshot.fresh.fingerprint_key.clone());
    let current = observed.and_then(current_pair);
    let had_tokens = snapshot.status.token1.is_some();
    let next = highest_serial(snapshot) + 1;
    let status_identities = || -> Option<[TokenIdentity; 2]> {
        Some([
            snapshot.status.token1.clone()?,
            snapshot.status.token2.clone()?,
        ])
    };

    let mut change = PairChange::None;
    let (pair, identities) = match &snapshot.source {
        SourceObservation::Issued => {
            match current {
                Some((pair, Some(identities))) => (pair, identities),
                Some((pair, None)) => {
                    let identities = status_identities().unwrap_or_else(|| {
                        [fresh_identity(next, now), fresh_identity(next + 1, now)]
                    });
                    let verified_values = observed.is_some_and(|mirror| {
                        mirror.annotations.contains_key(ANNOTATION_FINGERPRINT_KEY)
                    });
                    events.push(if verified_values {
                    Notice::warning(
                        "MirrorSecretRepaired",
                        "MirrorSecret",
                        format!("the operator's annotations on Secret {} were edited; restored them", snapshot.secret_name),
                    )
                } else {
                    Notice::normal(
                        "SecretAdopted",
                        "MirrorSecret",
                        format!("adopted the pair already in Secret {}", snapshot.secret_name),
                    )
                });
                    (pair, identities)
                }
                None => {
                    let pair = TokenPair {
                        token1: snapshot.fresh.tokens[0].clone(),
                        token2: snapshot.fresh.tokens[1].clone(),
                    };
                    let identities = [fresh_identity(next, now), fresh_identity(next + 1, now)];
                    change = if had_tokens {
                        PairChange::Replaced
                    } else {
                        PairChange::Initial
                    };
                    events.push(match (observed, had_tokens) {
                    (Some(_), _) => Notice::warning(
                        "MirrorSecretTampered",
                        "IssueTokens",
                        format!(
                            "Secret {} no longer held the issued pair (a value was edited or removed); the pair is lost, so a new pair was issued (serials {} and {})",
                            snapshot.secret_name, next, next + 1
                        ),
                    ),
                    (None, true) => Notice::warning(
                        "MirrorSecretDeleted",
                        "IssueTokens",
                        format!(
                            "Secret {} was deleted and the generated pair with it; a new pair was issued (serials {} and {})",
                            snapshot.secret_name, next, next + 1
                        ),
                    ),
                    (None, false) => Notice::normal(
                        "TokensIssued",
                        "IssueTokens",
                        format!(
                            "issued Token 1 (serial {}) and Token 2 (serial {}) into Secret {}",
                            next,
                            next + 1,
                            snapshot.secret_name
                        ),
                    ),
                });
                    (pair, identities)
                }
            }
        }
        SourceObservation::External(Err(problem)) => return Err(problem.clone()),
        SourceObservation::External(Ok(source)) => {
            let recorded = observed.and_then(|mirror| {
                let key = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY)?;
                Some((
                    key.clone(),
                    mirror
                        .annotations
                        .get(ANNOTATION_TOKEN1_FINGERPRINT)?
                        .clone(),
                    mirror
                        .annotations
                        .get(ANNOTATION_TOKEN2_FINGERPRINT)?
                        .clone(),
                    recorded_identities(mirror).or_else(status_identities)?,
                ))
            });
            match recorded {
                Some((key, fingerprint1, fingerprint2, identities))
                    if source.token1.fingerprint(&key) == fingerprint1
                        && source.token2.fingerprint(&key) == fingerprint2 =>
                {
                    if current.is_none() {
                        events.push(Notice::warning(
                            "MirrorSecretRepaired",
                            "MirrorSecret",
                            format!(
                                "Secret {} had been edited; restored the pair from source Secret {}",
                                snapshot.secret_name,
                                source_name(snapshot)
                            ),
                        ));
                    }
                    (source.clone(), identities)
                }
                Some((key, _, fingerprint2, identities))
                    if source.token1.fingerprint(&key) == fingerprint2 =>
                {
                    events.push(Notice::normal(
                        "SourcePromoted",
                        "MirrorSecret",
                        format!(
                            "source Secret {} promoted Token 2 (serial {}) to Token 1; mirrored the new Token 2 as serial {next}",
                            source_name(snapshot),
                            identities[1].serial
                        ),
                    ));
                    change = PairChange::Promoted;
                    (
                        source.clone(),
                        [identities[1].clone(), fresh_identity(next, now)],
                    )
                }
                Some(_) => {
                    events.push(Notice::warning(
                        "SourceReplaced",
                        "MirrorSecret",
                        format!(
                            "both tokens in source Secret {} were replaced out of band; mirrored them as serials {} and {}",
                            source_name(snapshot),
                            next,
                            next + 1
                        ),
                    ));
                    change = PairChange::Replaced;
                    (
                        source.clone(),
                        [fresh_identity(next, now), fresh_identity(next + 1, now)],
                    )
                }
                None => {
                    let identities = match (observed.is_none(), status_identities()) {
                        (true, Some(identities)) => {
                            events.push(Notice::warning(
                                "MirrorSecretRepaired",
                                "MirrorSecret",
                                format!(
                                    "Secret {} was deleted; restored it from source Secret {}",
                                    snapshot.secret_name,
                                    source_name(snapshot)
                                ),
                            ));
                            identities
                        }
                        _ => {
                            change = if had_tokens {
                                PairChange::Replaced
                            } else {
                                PairChange::Initial
                            };
                            events.push(Notice::normal(
                                "TokensMirrored",
                                "MirrorSecret",
                                format!(
                                    "mirrored Token 1 (serial {next}) and Token 2 (serial {}) from source Secret {} into Secret {}",
                                    next + 1,
                                    source_name(snapshot),
                                    snapshot.secret_name
                                ),
                            ));
                            [fresh_identity(next, now), fresh_identity(next + 1, now)]
                        }
                    };
                    (source.clone(), identities)
                }
            }
        }
    };
    Ok((
        MirrorWrite {
            pair,
            identities,
            fingerprint_key,
            owned,
            precondition,
        },
        change,
    ))
}

fn source_name(snapshot: &Snapshot) -> &str {
    snapshot
        .spec
        .source
        .secret_ref
        .as_ref()
        .map_or("", |source| source.name.as_str())
}

/// Labels the mirror Secret carries.
pub fn mirror_labels(token_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::api::MANAGED_BY_LABEL.to_string(),
            crate::api::MANAGER_NAME.to_string(),
        ),
        (crate::api::TOKEN_LABEL.to_string(), token_name.to_string()),
    ])
}

/// Annotations the mirror Secret carries for `write`.
pub fn mirror_annotations(write: &MirrorWrite) -> BTreeMap<String, String> {
    let key = &write.fingerprint_key;
    BTreeMap::from([
        (ANNOTATION_FINGERPRINT_KEY.to_string(), key.clone()),
        (
            ANNOTATION_TOKEN1_FINGERPRINT.to_string(),
            write.pair.token1.fingerprint(key),
        ),
        (
            ANNOTATION_TOKEN2_FINGERPRINT.to_string(),
            write.pair.token2.fingerprint(key),
        ),
        (
            ANNOTATION_TOKEN1_SERIAL.to_string(),
            write.identities[0].serial.to_string(),
        ),
        (
            ANNOTATION_TOKEN2_SERIAL.to_string(),
            write.identities[1].serial.to_string(),
        ),
        (
            ANNOTATION_TOKEN1_ISSUED_AT.to_string(),
            write.identities[0].issued_at.0.to_string(),
        ),
        (
            ANNOTATION_TOKEN2_ISSUED_AT.to_string(),
            write.identities[1].issued_at.0.to_string(),
        ),
        (
            ANNOTATION_IDENTITY_MAC.to_string(),
            identity_mac(key, &write.identities),
        ),
    ])
}

/// True when the observed mirror Secret differs from `write` in anything the operator owns.
fn needs_write(write: &MirrorWrite, observed: Option<&ObservedMirror>) -> bool {
    let Some(observed) = observed else {
        return true;
    };
    let same_token = |observed: &Option<Result<Token, TokenProblem>>, wanted: &Token| matches!(observed, Some(Ok(token)) if token == wanted);
    let labels_present = observed
        .labels
        .get(crate::api::TOKEN_LABEL)
        .is_some_and(|value| !value.is_empty())
        && observed.labels.contains_key(crate::api::MANAGED_BY_LABEL);
    let annotations_present = mirror_annotations(write)
        .iter()
        .all(|(key, value)| observed.annotations.get(key) == Some(value));
    let owner_matches = write.owned != observed.owner_uids.is_empty();
    !(same_token(&observed.token1, &write.pair.token1)
        && same_token(&observed.token2, &write.pair.token2)
        && labels_present
        && annotations_present
        && owner_matches)
}

#[cfg(test)]
pub mod tests;
