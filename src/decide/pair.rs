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
//! | `secretRef` | [`ExternalCase::ReplacedOutOfBand`] | neither: both tokens are new |
//! | `secretRef` | [`ExternalCase::FirstMirror`] / [`ExternalCase::Restore`] | nothing recorded yet, or the mirror was deleted |

use super::snapshot::{
    ANNOTATION_FINGERPRINT_KEY, ANNOTATION_IDENTITY_MAC, ANNOTATION_TOKEN1_FINGERPRINT,
    ANNOTATION_TOKEN1_ISSUED_AT, ANNOTATION_TOKEN1_SERIAL, ANNOTATION_TOKEN2_FINGERPRINT,
    ANNOTATION_TOKEN2_ISSUED_AT, ANNOTATION_TOKEN2_SERIAL, MirrorObservation, MirrorWrite, Notice,
    ObservedMirror, Snapshot, SourceObservation, SourceProblem,
};
use crate::api::{DeletionPolicy, TokenIdentity};
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
}

/// The pair as resolved: the mirror write it calls for (written only if it differs from the
/// observed Secret) and what changed.
pub struct Resolved {
    pub mirror: MirrorWrite,
    pub change: PairChange,
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
    /// Neither token is what was recorded.
    ReplacedOutOfBand,
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
    let had_tokens = snapshot.status.token1.is_some();
    let (pair, identities, change) = match &snapshot.source {
        SourceObservation::Issued => {
            let case = issued_case(snapshot, observed);
            issued(snapshot, case, next, now, events)
        }
        SourceObservation::External(Err(problem)) => return Err(problem.clone()),
        SourceObservation::External(Ok(source)) => {
            let case = external_case(snapshot, observed, source);
            let (identities, change) = external(snapshot, &case, next, had_tokens, now, events);
            (source.clone(), identities, change)
        }
    };
    Ok(Resolved {
        mirror: MirrorWrite {
            pair,
            identities,
            fingerprint_key: observed
                .and_then(|mirror| mirror.annotations.get(ANNOTATION_FINGERPRINT_KEY))
                .cloned()
                .unwrap_or_else(|| snapshot.fresh.fingerprint_key.clone()),
            owned: snapshot.spec.deletion_policy == DeletionPolicy::Delete,
            precondition: observed.and_then(|mirror| mirror.resource_version.clone()),
        },
        change,
    })
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
                "SecretAdopted",
                "MirrorSecret",
                format!("adopted the pair already in Secret {secret}"),
            ));
            kept(pair)
        }
        IssuedCase::Repair(pair) => {
            events.push(Notice::warning(
                "MirrorSecretRepaired",
                "MirrorSecret",
                format!("the operator's annotations on Secret {secret} were edited; restored them"),
            ));
            kept(pair)
        }
        IssuedCase::FirstIssue => {
            events.push(Notice::normal(
                "TokensIssued",
                "IssueTokens",
                format!(
                    "issued Token 1 (serial {next}) and Token 2 (serial {}) into Secret {secret}",
                    next + 1
                ),
            ));
            (fresh_pair(), fresh_identities, PairChange::Initial)
        }
        IssuedCase::Tampered => {
            events.push(Notice::warning(
                "MirrorSecretTampered",
                "IssueTokens",
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
        IssuedCase::Deleted => {
            events.push(Notice::warning(
                "MirrorSecretDeleted",
                "IssueTokens",
                format!(
                    "Secret {secret} was deleted and the generated pair with it; a new pair was issued (serials {next} and {})",
                    next + 1
                ),
            ));
            (fresh_pair(), fresh_identities, PairChange::Replaced)
        }
    }
}

/// Which case a valid `secretRef` pair is in, compared with what the mirror recorded.
pub fn external_case(
    snapshot: &Snapshot,
    observed: Option<&ObservedMirror>,
    source: &TokenPair,
) -> ExternalCase {
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
            recorded_identities(mirror).or_else(|| status_identities(snapshot))?,
        ))
    });
    match recorded {
        Some((key, fingerprint1, fingerprint2, identities))
            if source.token1.fingerprint(&key) == fingerprint1
                && source.token2.fingerprint(&key) == fingerprint2 =>
        {
            ExternalCase::Unchanged {
                identities,
                repaired: observed.and_then(current_pair).is_none(),
            }
        }
        Some((key, _, fingerprint2, identities))
            if source.token1.fingerprint(&key) == fingerprint2 =>
        {
            ExternalCase::PromotionObserved {
                promoted: identities[1].clone(),
            }
        }
        Some(_) => ExternalCase::ReplacedOutOfBand,
        None => match (observed.is_none(), status_identities(snapshot)) {
            (true, Some(identities)) => ExternalCase::Restore(identities),
            _ => ExternalCase::FirstMirror,
        },
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
    let source = source_name(snapshot);
    let secret = &snapshot.secret_name;
    let fresh_identities = [fresh_identity(next, now), fresh_identity(next + 1, now)];
    match case {
        ExternalCase::Unchanged {
            identities,
            repaired,
        } => {
            if *repaired {
                events.push(Notice::warning(
                    "MirrorSecretRepaired",
                    "MirrorSecret",
                    format!(
                        "Secret {secret} had been edited; restored the pair from source Secret {source}"
                    ),
                ));
            }
            (identities.clone(), PairChange::None)
        }
        ExternalCase::PromotionObserved { promoted } => {
            events.push(Notice::normal(
                "SourcePromoted",
                "MirrorSecret",
                format!(
                    "source Secret {source} promoted Token 2 (serial {}) to Token 1; mirrored the new Token 2 as serial {next}",
                    promoted.serial
                ),
            ));
            (
                [promoted.clone(), fresh_identity(next, now)],
                PairChange::Promoted,
            )
        }
        ExternalCase::ReplacedOutOfBand => {
            events.push(Notice::warning(
                "SourceReplaced",
                "MirrorSecret",
                format!(
                    "both tokens in source Secret {source} were replaced out of band; mirrored them as serials {next} and {}",
                    next + 1
                ),
            ));
            (fresh_identities, PairChange::Replaced)
        }
        ExternalCase::Restore(identities) => {
            events.push(Notice::warning(
                "MirrorSecretRepaired",
                "MirrorSecret",
                format!("Secret {secret} was deleted; restored it from source Secret {source}"),
            ));
            (identities.clone(), PairChange::None)
        }
        ExternalCase::FirstMirror => {
            events.push(Notice::normal(
                "TokensMirrored",
                "MirrorSecret",
                format!(
                    "mirrored Token 1 (serial {next}) and Token 2 (serial {}) from source Secret {source} into Secret {secret}",
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
    }
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
pub fn needs_write(write: &MirrorWrite, observed: Option<&ObservedMirror>) -> bool {
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
