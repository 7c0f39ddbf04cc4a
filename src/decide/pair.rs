//! The pair decision (pure): which Token 1 and Token 2 the mirror Secret must hold before any
//! rotation step, with their identities, and what changed since the last reconcile.
//!
//! [`resolve`] reads the source and the mirror and lands on exactly one named case:
//!
//! | source | case | what it means |
//! | --- | --- | --- |
//! | `generate` | [`IssuedCase::Recorded`] | the mirror holds the issued pair with its bookkeeping |
//! | `generate` | [`IssuedCase::Adopt`] / [`IssuedCase::Repair`] | valid values, bookkeeping missing (a Secret adopted) or edited (restored) |
//! | `generate` | [`IssuedCase::FirstIssue`] / [`IssuedCase::Tampered`] / [`IssuedCase::Deleted`] | no valid pair: a new one is issued |
//! | `secretRef` | [`ExternalCase::Unchanged`] | the source holds the recorded pair (a damaged mirror is repaired) |
//! | `secretRef` | [`ExternalCase::PromotionObserved`] | the source's Token 1 is the recorded Token 2: the platform rotated |
//! | `secretRef` | [`ExternalCase::Incomplete`] | one key changed, the other still holds its recorded token (a pair pasted key by key): wait |
//! | `secretRef` | [`ExternalCase::Unrecognized`] | neither the recorded pair nor its promotion (keys swapped, another environment's pair, a replacement): wait for a person's confirmation |
//! | `secretRef` | [`ExternalCase::ReplacedOutOfBand`] | an unrecognized pair confirmed with the `streamingtoken.io/replacement` annotation: both tokens are new |
//! | `secretRef` | [`ExternalCase::FirstMirror`] / [`ExternalCase::Restore`] | nothing recorded yet, or the mirror was deleted |
//! | `secretRef` | [`ExternalCase::LostDuringRotation`] | the mirror was deleted while a rotation waited for the platform: its records are gone |
//! | either | (`MirrorSecretRolledBack`) | the mirror records serials below those in status: an older copy of itself put back; its records are not taken (`generate`: [`IssuedCase::RolledBack`], a new pair; `secretRef`: as if it were deleted, the source mirrored again) |

use super::platform::Mirroring;
use super::snapshot::{
    ANNOTATION_FINGERPRINT_KEY, ANNOTATION_IDENTITY_MAC, ANNOTATION_REPLACEMENT,
    ANNOTATION_TOKEN1_FINGERPRINT, ANNOTATION_TOKEN1_ISSUED_AT, ANNOTATION_TOKEN1_SERIAL,
    ANNOTATION_TOKEN2_FINGERPRINT, ANNOTATION_TOKEN2_ISSUED_AT, ANNOTATION_TOKEN2_SERIAL,
    MirrorObservation, MirrorWrite, Notice, ObservedMirror, Snapshot, SourceObservation,
    SourceProblem,
};
use crate::api::{DeletionPolicy, TokenIdentity};
use crate::model::reason;
use crate::token::{Token, TokenPair, TokenProblem};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// What changed in the pair while resolving it, before rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairChange {
    /// Nothing, or only the Secret's metadata.
    None,
    /// The first pair for this StreamingToken.
    Initial,
    /// The source promoted Token 2 to Token 1 (the platform rotated).
    Promoted,
    /// Both tokens are new (source replaced out of band, or a lost generated pair reissued):
    /// consumers hold dead tokens and must restart.
    Replaced,
    /// The mirror's records were lost during a rotation that waited for the platform: the pair
    /// is mirrored under new serials, and whether the platform had rotated cannot be told.
    Relabelled,
}

/// The pair as resolved: the mirror write it calls for (written only if it differs from the
/// observed Secret) and what changed.
pub struct Resolved {
    pub mirror: MirrorWrite,
    pub change: PairChange,
    /// The source cannot be mirrored yet, although the mirror keeps a valid pair: a reason and
    /// a message for `Degraded` (the mirror and the rotation stay as they are).
    pub waiting: Option<(&'static str, String)>,
}

/// The cases of a `generate` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedCase {
    Recorded(TokenPair, [TokenIdentity; 2]),
    /// Valid values without the operator's bookkeeping: a Secret it had created is adopted.
    Adopt(TokenPair),
    /// Valid values whose bookkeeping was edited: restored.
    Repair(TokenPair),
    /// No pair yet: the first one is issued.
    FirstIssue,
    /// The mirror no longer holds the issued pair (a value edited or removed): a new pair.
    Tampered,
    /// The mirror Secret was deleted, and the generated pair with it: a new pair.
    Deleted,
    /// The mirror Secret was replaced by an older copy of itself: the issued pair is lost and
    /// the copy's Token 1 was deactivated: a new pair (`MirrorSecretRolledBack`).
    RolledBack,
}

/// The cases of a `secretRef` source whose pair is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalCase {
    /// The source holds the recorded pair (`repaired`: the mirror had been edited).
    Unchanged {
        identities: [TokenIdentity; 2],
        repaired: bool,
    },
    /// The source's Token 1 is the recorded Token 2.
    PromotionObserved { promoted: TokenIdentity },
    /// One key changed and the other still holds its recorded token: a pair being pasted in.
    Incomplete {
        /// The key that still holds the recorded token.
        stale_key: String,
        /// True when Token 1 is the stale one (Token 2 was pasted first).
        token1_stale: bool,
    },
    /// Neither the recorded pair nor its promotion, and no confirmation to act on.
    Unrecognized { swapped: bool },
    /// An unrecognized pair confirmed by the source's replacement annotation (`confirmed`).
    ReplacedOutOfBand { confirmed: Option<String> },
    /// The mirror Secret was deleted while a rotation waited for the platform.
    LostDuringRotation,
    /// The mirror Secret was deleted; the pair is restored with the identities in status.
    Restore([TokenIdentity; 2]),
    /// Nothing recorded: the first mirror (or a pair whose records are lost).
    FirstMirror,
}

/// Works out the pair the mirror Secret must hold before any rotation step.
pub fn resolve(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Result<Resolved, SourceProblem> {
    let next = highest_serial(snapshot) + 1;
    // An older copy of the mirror put back (a saved manifest re-applied, a backup restored):
    // history never goes backwards, so what it records is not taken as the pair's records.
    let history = match observed {
        Some(mirror) if rolled_back(snapshot, mirror) => {
            events.push(Notice::warning(
                reason::MIRROR_SECRET_ROLLED_BACK,
                reason::action::MIRROR_SECRET,
                format!(
                    "Secret {} was replaced by an older copy of itself (its serials are below those in status: a saved manifest re-applied, or a backup restored); it is not taken as the pair: {}",
                    snapshot.secret_name,
                    if matches!(snapshot.source, SourceObservation::Issued) {
                        "the issued pair it replaced is lost, so a new pair is issued and every consumer restarts (the older copy's Token 1 was deactivated)"
                    } else {
                        "the current pair is mirrored again from the source"
                    }
                ),
            ));
            None
        }
        other => other,
    };
    let (pair, identities, change) = match &snapshot.source {
        SourceObservation::Issued => {
            let case = match history {
                None if observed.is_some() => IssuedCase::RolledBack,
                _ => issued_case(snapshot, history),
            };
            issued(snapshot, case, next, now, events)
        }
        SourceObservation::External(Err(problem), _) => {
            // The platform's pair could not be read: the mirror keeps the pair it holds.
            if let SourceProblem::PlatformUnreadable { .. } = problem
                && let Some((pair, Some(identities))) = history.and_then(current_pair)
            {
                return Ok(Resolved {
                    mirror: write(snapshot, observed, pair, identities, None),
                    change: PairChange::None,
                    waiting: Some((problem.reason(), problem.message())),
                });
            }
            return Err(problem.clone());
        }
        SourceObservation::External(Ok(source), replacement) => {
            return resolve_external(
                snapshot,
                (observed, history),
                source,
                replacement.as_deref(),
                next,
                now,
                events,
            );
        }
    };
    Ok(Resolved {
        mirror: write(snapshot, observed, pair, identities, None),
        change,
        waiting: None,
    })
}

/// A `secretRef` source's valid pair: which case it is, and what the mirror then holds.
/// `observed`: the mirror Secret as it is (written over); `history`: the same, unless it is an
/// older copy put back (then `None`: its records are not the pair's).
fn resolve_external(
    snapshot: &Snapshot,
    (observed, history): (Option<&ObservedMirror>, Option<&ObservedMirror>),
    source: &TokenPair,
    replacement: Option<&str>,
    next: i64,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Result<Resolved, SourceProblem> {
    let case = if source.token1 == source.token2 {
        identical_case(snapshot, history, source)?
    } else {
        external_case(snapshot, history, source, replacement)
    };
    let former = history.and_then(current_pair).map(|(pair, _)| pair.token1);
    let mirroring = match &case {
        ExternalCase::Unchanged {
            repaired: false, ..
        }
        | ExternalCase::Incomplete { .. }
        | ExternalCase::Unrecognized { .. } => Mirroring::Nothing,
        ExternalCase::PromotionObserved { .. } => Mirroring::Promotion(former.as_ref()),
        _ => Mirroring::Pair,
    };
    let waiting =
        waiting(snapshot, &case).or_else(|| super::platform::gate(snapshot, source, mirroring));
    if let Some(waiting) = waiting {
        // The mirror keeps the pair it holds; nothing moves until the source settles.
        let Some((pair, Some(identities))) = history.and_then(current_pair) else {
            return Err(SourceProblem::Unsettled {
                reason: waiting.0,
                message: waiting.1,
            });
        };
        return Ok(Resolved {
            mirror: write(snapshot, observed, pair, identities, None),
            change: PairChange::None,
            waiting: Some(waiting),
        });
    }
    let had_tokens = snapshot.status.token1.is_some();
    let (identities, change) = external(snapshot, &case, next, had_tokens, now, events);
    let acted = match &case {
        ExternalCase::ReplacedOutOfBand { confirmed } => confirmed.clone(),
        _ => None,
    };
    let mut resolved = write(snapshot, observed, source.clone(), identities, acted);
    if resolved.replacement.is_none() {
        resolved.replacement = replacement.map(str::to_string).filter(|_| {
            // A first mirror (or a restore) takes the source's confirmation as seen.
            matches!(case, ExternalCase::FirstMirror | ExternalCase::Restore(_))
        });
    }
    Ok(Resolved {
        mirror: resolved,
        change,
        waiting: None,
    })
}

/// The mirror write for `pair` with `identities`; `replacement` is the confirmation acted on
/// now (otherwise the one the mirror recorded is kept).
fn write(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    pair: TokenPair,
    identities: [TokenIdentity; 2],
    replacement: Option<String>,
) -> MirrorWrite {
    MirrorWrite {
        pair,
        identities,
        fingerprint_key: observed
            .and_then(|mirror| mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY))
            .cloned()
            .unwrap_or_else(|| snapshot.fresh.fingerprint_key.clone()),
        owned: snapshot.spec.deletion_policy == DeletionPolicy::Delete,
        precondition: observed.and_then(|mirror| mirror.resource_version.clone()),
        replacement: replacement.or_else(|| {
            observed.and_then(|mirror| mirror.annotations.get(ANNOTATION_REPLACEMENT).cloned())
        }),
    }
}

/// Why a source pair is not mirrored yet, if it is not.
fn waiting(snapshot: &Snapshot, case: &ExternalCase) -> Option<(&'static str, String)> {
    let source = source_name(snapshot);
    match case {
        ExternalCase::Incomplete {
            stale_key,
            token1_stale,
        } => {
            let hint = if *token1_stale {
                "if the platform rotated, Token 1 must now hold the former Token 2"
            } else {
                "Token 2 must hold a token the operator has not seen"
            };
            Some((
                reason::SOURCE_INCOMPLETE,
                format!(
                    "source Secret {source} changed one key while key {stale_key} still holds the recorded token; waiting for the pair to settle ({hint}); the mirror keeps the current pair"
                ),
            ))
        }
        ExternalCase::Unrecognized { swapped } => {
            let what = if *swapped {
                "its keys look swapped (Token 1 holds the recorded Token 2 and Token 2 the recorded Token 1)"
            } else {
                "it is neither the recorded pair nor the platform's rotation of it (another environment's pair, or tokens replaced at the platform)"
            };
            Some((
                reason::SOURCE_UNRECOGNIZED,
                format!(
                    "source Secret {source} holds a pair the operator does not recognize: {what}; the mirror keeps the current pair and no consumer restarts. If both tokens really were replaced at the platform, confirm it: kubectl annotate secret {source} {ANNOTATION_REPLACEMENT}=<a new value> --overwrite (every consumer then restarts once)"
                ),
            ))
        }
        _ => None,
    }
}

fn status_identities(snapshot: &Snapshot) -> Option<[TokenIdentity; 2]> {
    Some([
        snapshot.status.token1.clone()?,
        snapshot.status.token2.clone()?,
    ])
}

/// Which case a `generate` source is in.
pub fn issued_case(snapshot: &Snapshot, observed: Option<&ObservedMirror>) -> IssuedCase {
    match observed.and_then(current_pair) {
        Some((pair, Some(identities))) => IssuedCase::Recorded(pair, identities),
        Some((pair, None)) => {
            let fingerprinted = observed
                .is_some_and(|mirror| mirror.annotations.contains_key(ANNOTATION_FINGERPRINT_KEY));
            if fingerprinted {
                IssuedCase::Repair(pair)
            } else {
                IssuedCase::Adopt(pair)
            }
        }
        None if observed.is_some() => IssuedCase::Tampered,
        None if snapshot.status.token1.is_none() => IssuedCase::FirstIssue,
        None => IssuedCase::Deleted,
    }
}

fn issued(
    snapshot: &Snapshot,
    case: IssuedCase,
    next: i64,
    now: &Time,
    events: &mut Vec<Notice>,
) -> (TokenPair, [TokenIdentity; 2], PairChange) {
    let secret = &snapshot.secret_name;
    let fresh_pair = || TokenPair {
        token1: snapshot.fresh.tokens[0].clone(),
        token2: snapshot.fresh.tokens[1].clone(),
    };
    let fresh_identities = [fresh_identity(next, now), fresh_identity(next + 1, now)];
    let kept = |pair: TokenPair| {
        let identities = status_identities(snapshot).unwrap_or_else(|| fresh_identities.clone());
        (pair, identities, PairChange::None)
    };
    match case {
        IssuedCase::Recorded(pair, identities) => (pair, identities, PairChange::None),
        IssuedCase::Adopt(pair) => {
            events.push(Notice::normal(
                reason::SECRET_ADOPTED,
                reason::action::MIRROR_SECRET,
                format!("adopted the pair already in Secret {secret}"),
            ));
            kept(pair)
        }
        IssuedCase::Repair(pair) => {
            events.push(Notice::warning(
                reason::MIRROR_SECRET_REPAIRED,
                reason::action::MIRROR_SECRET,
                format!("the operator's annotations on Secret {secret} were edited; restored them"),
            ));
            kept(pair)
        }
        IssuedCase::FirstIssue => {
            events.push(Notice::normal(
                reason::TOKENS_ISSUED,
                reason::action::ISSUE_TOKENS,
                format!(
                    "issued Token 1 (serial {next}) and Token 2 (serial {}) into Secret {secret}",
                    next + 1
                ),
            ));
            (fresh_pair(), fresh_identities, PairChange::Initial)
        }
        IssuedCase::Tampered => {
            events.push(Notice::warning(
                reason::MIRROR_SECRET_TAMPERED,
                reason::action::ISSUE_TOKENS,
                format!(
                    "Secret {secret} no longer held the issued pair (a value was edited or removed); the pair is lost, so a new pair was issued (serials {next} and {})",
                    next + 1
                ),
            ));
            // A Secret whose values are unusable before any pair was recorded is a first issue.
            let change = if snapshot.status.token1.is_some() {
                PairChange::Replaced
            } else {
                PairChange::Initial
            };
            (fresh_pair(), fresh_identities, change)
        }
        IssuedCase::RolledBack => (fresh_pair(), fresh_identities, PairChange::Replaced),
        IssuedCase::Deleted => {
            events.push(Notice::warning(
                reason::MIRROR_SECRET_DELETED,
                reason::action::ISSUE_TOKENS,
                format!(
                    "Secret {secret} was deleted and the generated pair with it; a new pair was issued (serials {next} and {})",
                    next + 1
                ),
            ));
            (fresh_pair(), fresh_identities, PairChange::Replaced)
        }
    }
}

/// The same value under both keys: the promoted Token 1 pasted in before the new Token 2 (the
/// value is the recorded Token 2) is a pair being pasted; anything else is a problem to fix.
fn identical_case(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    source: &TokenPair,
) -> Result<ExternalCase, SourceProblem> {
    let promoted_first = observed.is_some_and(|mirror| {
        let key = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY);
        let recorded2 = mirror.annotations.get(ANNOTATION_TOKEN2_FINGERPRINT);
        matches!((key, recorded2), (Some(key), Some(recorded2)) if source.token1.fingerprint(key) == *recorded2)
    });
    if promoted_first {
        let stale_key = snapshot
            .origin
            .keys
            .as_ref()
            .map(|(_, token2_key)| token2_key.clone())
            .unwrap_or_default();
        return Ok(ExternalCase::Incomplete {
            stale_key,
            token1_stale: false,
        });
    }
    Err(SourceProblem::IdenticalTokens {
        name: source_name(snapshot).to_string(),
    })
}

/// Which case a valid `secretRef` pair is in, compared with what the mirror recorded.
pub fn external_case(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    source: &TokenPair,
    replacement: Option<&str>,
) -> ExternalCase {
    match recorded_pair(snapshot, observed) {
        Some(recorded)
            if source.token1.fingerprint(&recorded.key) == recorded.fingerprint1
                && source.token2.fingerprint(&recorded.key) == recorded.fingerprint2 =>
        {
            ExternalCase::Unchanged {
                identities: recorded.identities,
                repaired: observed.and_then(current_pair).is_none(),
            }
        }
        Some(recorded) => changed_case(snapshot, observed, source, replacement, &recorded),
        None => unrecorded_case(snapshot, observed),
    }
}

/// What the mirror Secret recorded of the pair it holds.
struct RecordedPair {
    /// The key its fingerprints are made with.
    key: String,
    fingerprint1: String,
    fingerprint2: String,
    identities: [TokenIdentity; 2],
}

/// What `observed` recorded of its pair: `None` without a fingerprint key, without a
/// fingerprint (or a valid value standing for it) for either token, or without identities
/// (on the mirror, else in status).
fn recorded_pair(snapshot: &Snapshot, observed: Option<&ObservedMirror>) -> Option<RecordedPair> {
    let mirror = observed?;
    let key = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY)?;
    // A fingerprint annotation removed: the value under its key (valid, and not shown
    // edited by the other) stands for it.
    let (pair, _) = current_pair(mirror).unzip();
    let fingerprint = |annotation: &str, value: Option<&Token>| {
        mirror
            .annotations
            .get(annotation)
            .cloned()
            .or_else(|| Some(value?.fingerprint(key)))
    };
    Some(RecordedPair {
        key: key.clone(),
        fingerprint1: fingerprint(
            ANNOTATION_TOKEN1_FINGERPRINT,
            pair.as_ref().map(|pair| &pair.token1),
        )?,
        fingerprint2: fingerprint(
            ANNOTATION_TOKEN2_FINGERPRINT,
            pair.as_ref().map(|pair| &pair.token2),
        )?,
        identities: recorded_identities(mirror).or_else(|| status_identities(snapshot))?,
    })
}

/// A source pair that differs from the `recorded` one: the recorded Token 2 promoted, the two
/// swapped, one key pasted while the other still holds its recorded token, or a new pair
/// (acted on only when the source's `replacement` annotation confirms it).
fn changed_case(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    source: &TokenPair,
    replacement: Option<&str>,
    recorded: &RecordedPair,
) -> ExternalCase {
    let token1 = source.token1.fingerprint(&recorded.key);
    let token2 = source.token2.fingerprint(&recorded.key);
    let token_keys = &snapshot.origin.keys.clone().unwrap_or_default();
    if token1 == recorded.fingerprint2 && token2 != recorded.fingerprint1 {
        ExternalCase::PromotionObserved {
            promoted: recorded.identities[1].clone(),
        }
    } else if token1 == recorded.fingerprint2 && token2 == recorded.fingerprint1 {
        ExternalCase::Unrecognized { swapped: true }
    } else if token1 == recorded.fingerprint1 {
        ExternalCase::Incomplete {
            stale_key: token_keys.0.clone(),
            token1_stale: true,
        }
    } else if token2 == recorded.fingerprint2 {
        ExternalCase::Incomplete {
            stale_key: token_keys.1.clone(),
            token1_stale: false,
        }
    } else {
        let acted = observed
            .and_then(|mirror| mirror.annotations.get(ANNOTATION_REPLACEMENT))
            .map(String::as_str);
        match replacement.filter(|value| !value.is_empty() && Some(*value) != acted) {
            Some(value) => ExternalCase::ReplacedOutOfBand {
                confirmed: Some(value.to_string()),
            },
            None => ExternalCase::Unrecognized { swapped: false },
        }
    }
}

/// Nothing recorded on the mirror Secret: deleted while a rotation waited for the platform,
/// deleted and restored from the identities in status, or the first mirror.
fn unrecorded_case(snapshot: &Snapshot, observed: Option<&ObservedMirror>) -> ExternalCase {
    match (observed.is_none(), status_identities(snapshot)) {
        (true, Some(_)) if snapshot.status.rotation.is_some() => ExternalCase::LostDuringRotation,
        (true, Some(identities)) => ExternalCase::Restore(identities),
        _ => ExternalCase::FirstMirror,
    }
}

fn external(
    snapshot: &Snapshot,
    case: &ExternalCase,
    next: i64,
    had_tokens: bool,
    now: &Time,
    events: &mut Vec<Notice>,
) -> ([TokenIdentity; 2], PairChange) {
    let source = source_label(snapshot);
    let secret = &snapshot.secret_name;
    let fresh_identities = [fresh_identity(next, now), fresh_identity(next + 1, now)];
    match case {
        ExternalCase::Unchanged {
            identities,
            repaired,
        } => {
            if *repaired {
                events.push(Notice::warning(
                    reason::MIRROR_SECRET_REPAIRED,
                    reason::action::MIRROR_SECRET,
                    format!("Secret {secret} had been edited; restored the pair from {source}"),
                ));
            }
            (identities.clone(), PairChange::None)
        }
        ExternalCase::PromotionObserved { promoted } => {
            events.push(Notice::normal(
                reason::SOURCE_PROMOTED,
                reason::action::MIRROR_SECRET,
                format!(
                    "{source} promoted Token 2 (serial {}) to Token 1; mirrored the new Token 2 as serial {next}",
                    promoted.serial
                ),
            ));
            (
                [promoted.clone(), fresh_identity(next, now)],
                PairChange::Promoted,
            )
        }
        ExternalCase::LostDuringRotation => (
            lost_during_rotation(snapshot, next, now, events),
            PairChange::Relabelled,
        ),
        // Waiting cases never reach here (see `waiting`): nothing changes.
        ExternalCase::Incomplete { .. } | ExternalCase::Unrecognized { .. } => (
            status_identities(snapshot).unwrap_or(fresh_identities),
            PairChange::None,
        ),
        ExternalCase::ReplacedOutOfBand { .. } => {
            events.push(Notice::warning(
                reason::SOURCE_REPLACED,
                reason::action::MIRROR_SECRET,
                format!(
                    "both tokens in {source} were replaced out of band (confirmed with the {ANNOTATION_REPLACEMENT} annotation); mirrored them as serials {next} and {}",
                    next + 1
                ),
            ));
            (fresh_identities, PairChange::Replaced)
        }
        ExternalCase::Restore(identities) => {
            events.push(Notice::warning(
                reason::MIRROR_SECRET_REPAIRED,
                reason::action::MIRROR_SECRET,
                format!("Secret {secret} was deleted; restored it from {source}"),
            ));
            (identities.clone(), PairChange::None)
        }
        ExternalCase::FirstMirror => first_mirror(snapshot, next, had_tokens, now, events),
    }
}

/// Nothing recorded yet: the source's pair is mirrored under new serials.
fn first_mirror(
    snapshot: &Snapshot,
    next: i64,
    had_tokens: bool,
    now: &Time,
    events: &mut Vec<Notice>,
) -> ([TokenIdentity; 2], PairChange) {
    let source = source_label(snapshot);
    let secret = &snapshot.secret_name;
    let fresh_identities = [fresh_identity(next, now), fresh_identity(next + 1, now)];

    events.push(Notice::normal(
                reason::TOKENS_MIRRORED,
                reason::action::MIRROR_SECRET,
                format!(
                    "mirrored Token 1 (serial {next}) and Token 2 (serial {}) from {source} into Secret {secret}",
                    next + 1
                ),
            ));
    let change = if had_tokens {
        PairChange::Replaced
    } else {
        PairChange::Initial
    };
    (fresh_identities, change)
}

/// The mirror was deleted while a rotation waited for the platform: mirrored again under new
/// serials (the old ones cannot be matched to whatever pair the source holds now).
fn lost_during_rotation(
    snapshot: &Snapshot,
    next: i64,
    now: &Time,
    events: &mut Vec<Notice>,
) -> [TokenIdentity; 2] {
    let source = source_label(snapshot);
    let secret = &snapshot.secret_name;
    let rotation = snapshot
        .status
        .rotation
        .as_ref()
        .map_or(String::new(), |rotation| format!(" {}", rotation.id));
    events.push(Notice::warning(
        reason::MIRROR_LOST_DURING_ROTATION,
        reason::action::MIRROR_SECRET,
        format!(
            "Secret {secret} was deleted during rotation{rotation}; without it the operator cannot tell whether the platform has rotated, so it mirrored {source} again as serials {next} and {} and abandoned the rotation (consumers keep the token they hold); if you have not rotated at the platform yet, ask for a new rotation",
            next + 1
        ),
    ));
    [fresh_identity(next, now), fresh_identity(next + 1, now)]
}

/// The mirror Secret as observed, if the operator owns it.
pub fn owned_mirror(snapshot: &Snapshot) -> Option<&ObservedMirror> {
    match &snapshot.mirror {
        MirrorObservation::Owned(observed) => Some(observed),
        _ => None,
    }
}

/// The pair and identities recorded on an owned mirror Secret, when both tokens are valid and
/// match their fingerprints (or carry none yet).
pub fn current_pair(mirror: &ObservedMirror) -> Option<(TokenPair, Option<[TokenIdentity; 2]>)> {
    let token1 = mirror.token1.clone()?.ok()?;
    let token2 = mirror.token2.clone()?.ok()?;
    if let Some(key) = mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY) {
        // A fingerprint that differs means an edited value; a missing one (an annotation
        // removed, say by a tool that prunes them) proves nothing either way: the value is taken
        // as it is, and the write that follows restores the annotation.
        let edited = |token: &Token, annotation: &str| {
            mirror
                .annotations
                .get(annotation)
                .is_some_and(|expected| *expected != token.fingerprint(key))
        };
        if edited(&token1, ANNOTATION_TOKEN1_FINGERPRINT)
            || edited(&token2, ANNOTATION_TOKEN2_FINGERPRINT)
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

/// True when `mirror` records serials below those in status: an older copy of itself put back.
fn rolled_back(snapshot: &Snapshot, mirror: &ObservedMirror) -> bool {
    let (Some(recorded), Some(token1), Some(token2)) = (
        recorded_identities(mirror),
        &snapshot.status.token1,
        &snapshot.status.token2,
    ) else {
        return false;
    };
    recorded[0].serial < token1.serial || recorded[1].serial < token2.serial
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

/// How the source is named in messages: `source Secret <name>`, or the platform's pair.
fn source_label(snapshot: &Snapshot) -> String {
    snapshot.origin.label.clone()
}

fn source_name(snapshot: &Snapshot) -> &str {
    snapshot.origin.secret.as_deref().unwrap_or_default()
}

/// Labels the mirror Secret carries.
pub fn mirror_labels(label_key: &str, token_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::api::MANAGED_BY_LABEL.to_string(),
            crate::api::MANAGER_NAME.to_string(),
        ),
        (label_key.to_string(), token_name.to_string()),
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
    .into_iter()
    .chain(
        write
            .replacement
            .iter()
            .map(|value| (ANNOTATION_REPLACEMENT.to_string(), value.clone())),
    )
    .collect()
}

/// True when the observed mirror Secret differs from `write` in anything the operator owns.
pub fn needs_write(write: &MirrorWrite, observed: Option<&ObservedMirror>) -> bool {
    let Some(observed) = observed else {
        return true;
    };
    let same_token = |observed: &Option<Result<Token, TokenProblem>>, wanted: &Token| matches!(observed, Some(Ok(token)) if token == wanted);
    let labels_present = [crate::api::TOKEN_LABEL, crate::api::CLUSTER_TOKEN_LABEL]
        .iter()
        .any(|key| {
            observed
                .labels
                .get(*key)
                .is_some_and(|value| !value.is_empty())
        })
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
