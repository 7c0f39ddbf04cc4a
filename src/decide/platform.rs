//! The platform's word in the decisions (pure). With `spec.platform`:
//!
//! - [`gate`]: a pair is mirrored only once the platform accepts both tokens, and a promoted
//!   pair only once it also rejects the former Token 1 (the platform really rotated);
//! - [`detect_out_of_band`]: a mirrored Token 1 the platform rejects although no rotation of
//!   the operator deactivated it (someone rotated in the portal) is reported at once;
//! - [`report`]: `status.platform`, `PlatformVerified` and `CredentialsExpiring`.
//!
//! A platform that does not answer is never read as valid or as invalid: what needs its word
//! waits, and says so (`PlatformUnreachable`).

use super::snapshot::{
    MirrorWrite, Notice, PHASE_AWAITING_SOURCE, PlatformObservation, Snapshot, Verdict,
};
use crate::api::{OutOfBandAction, PlatformStatus, StreamingTokenStatus};
use crate::conditions::{self, CREDENTIALS_EXPIRING, PLATFORM_VERIFIED};
use crate::model::reason;
use crate::token::{Token, TokenPair};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Credentials that expire within this long are reported.
pub const CREDENTIALS_WARNING_SECONDS: i64 = 7 * 24 * 3600;

/// The keys of the source pair and where it lives, for messages.
fn source_terms(snapshot: &Snapshot) -> (String, String, String) {
    let (token1_key, token2_key) = snapshot
        .origin
        .keys
        .clone()
        .unwrap_or_else(|| ("token1".into(), "token2".into()));
    (token1_key, token2_key, snapshot.origin.label.clone())
}

fn unknown(why: &str, what: &str) -> (&'static str, String) {
    (
        reason::PLATFORM_UNREACHABLE,
        format!(
            "the platform could not say whether {what} ({why}); nothing that needs its word moves until it answers, and the mirror keeps its pair"
        ),
    )
}

/// What a source pair would do to the mirror, as far as the platform's word matters.
pub enum Mirroring<'a> {
    /// Nothing new is mirrored (the recorded pair, or a pair still settling).
    Nothing,
    /// A pair is written (a first mirror, a restore, a confirmed replacement, a repair).
    Pair,
    /// The platform's rotation: the former Token 1 (the mirror's, if valid) must be rejected.
    Promotion(Option<&'a Token>),
}

/// Why a source pair that would be mirrored now must wait for (or is refused by) the
/// platform, if it must.
pub fn gate(
    snapshot: &Snapshot,
    source: &TokenPair,
    mirroring: Mirroring,
) -> Option<(&'static str, String)> {
    let platform = snapshot.platform.as_ref()?;
    if matches!(mirroring, Mirroring::Nothing) {
        return None;
    }
    if let Some(problem) = &platform.problem {
        return Some((reason::PLATFORM_MISCONFIGURED, problem.clone()));
    }
    let (key1, key2, place) = source_terms(snapshot);
    for (token, key) in [(&source.token1, &key1), (&source.token2, &key2)] {
        match platform.verdict(token) {
            Some(Verdict::Accepted) => {}
            Some(Verdict::Rejected) => {
                return Some((
                    reason::SOURCE_TOKEN_REJECTED,
                    format!(
                        "the platform rejects the token under key {key} of {place} (mistyped, already deactivated, or another environment's); it is not mirrored, and the mirror keeps the pair it holds"
                    ),
                ));
            }
            Some(Verdict::Unknown(why)) => {
                return Some(unknown(
                    why,
                    &format!("the token under key {key} of {place} is valid"),
                ));
            }
            None => return Some(unknown("not asked yet", "the new pair is valid")),
        }
    }
    if let Mirroring::Promotion(former) = mirroring {
        match former.and_then(|token| platform.verdict(token)) {
            Some(Verdict::Rejected) => {}
            Some(Verdict::Accepted) => {
                return Some((
                    reason::SOURCE_NOT_ROTATED_AT_PLATFORM,
                    format!(
                        "{place} shows Token 2 promoted to Token 1, but the platform still accepts the former Token 1: rotate at the platform first, then paste the pair it shows (or fix the pasted pair); the mirror keeps the current pair"
                    ),
                ));
            }
            Some(Verdict::Unknown(why)) => {
                return Some(unknown(why, "the former Token 1 is deactivated"));
            }
            None => {
                return Some(unknown(
                    "not asked yet",
                    "the former Token 1 is deactivated",
                ));
            }
        }
    }
    None
}

/// True when a rejected Token 1 is what the rotation in progress expects: a person was told to
/// rotate (`ReadyToRotate`), or the operator called the platform's rotate endpoint.
fn rotation_expects_it(status: &StreamingTokenStatus) -> bool {
    status.rotation.as_ref().is_some_and(|rotation| {
        rotation.phase == PHASE_AWAITING_SOURCE || rotation.platform_rotate.is_some()
    })
}

/// Reports a Token 1 rotated at the platform behind the operator's back (`RotatedOutOfBand`):
/// `status.platform.rotatedOutOfBandAt`, a Warning Event and the `Degraded` reason. The
/// rotation reads the timestamp: with `RestartHolders` every consumer moves at once onto the
/// token the platform still accepts. Cleared once the platform accepts the mirrored Token 1
/// and no rotation is in progress.
pub fn detect_out_of_band(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    (unchanged, promoted): (bool, bool),
    status: &mut StreamingTokenStatus,
    now: &Time,
    events: &mut Vec<Notice>,
) -> Option<(&'static str, String)> {
    let platform = snapshot.platform.as_ref()?;
    let expected = rotation_expects_it(&snapshot.status);
    let token1 = platform.verdict(&mirror.pair.token1);
    let rejected_unasked = unchanged && token1 == Some(&Verdict::Rejected);
    // source.platform: the read already shows the platform's rotation.
    let promoted_unasked = promoted && snapshot.status.token1.is_some();
    let entry = status.platform.get_or_insert_with(PlatformStatus::default);
    if !expected && (rejected_unasked || promoted_unasked) && entry.rotated_out_of_band_at.is_none()
    {
        entry.rotated_out_of_band_at = Some(now.clone());
        let serial = snapshot
            .status
            .token1
            .as_ref()
            .map_or(0, |identity| identity.serial);
        let action = match platform_action(snapshot) {
            OutOfBandAction::RestartHolders if promoted_unasked => {
                "the platform's new pair is mirrored and every consumer restarts now"
            }
            OutOfBandAction::RestartHolders => {
                "every consumer is moved onto Token 2 (which the platform still accepts) now; paste the platform's new pair into the source Secret to finish"
            }
            OutOfBandAction::Report => {
                "spec.platform.onRotatedOutOfBand is Report: restart the consumers yourself"
            }
        };
        events.push(Notice::warning(
            reason::ROTATED_OUT_OF_BAND,
            reason::action::CHECK_PLATFORM,
            format!(
                "the platform no longer accepts Token 1 (serial {serial}), and no rotation of the operator deactivated it: it was rotated at the platform (in the portal?) behind the operator's back; pods that still hold it are cut off: {action}"
            ),
        ));
    } else if entry.rotated_out_of_band_at.is_some()
        && status.rotation.is_none()
        && token1 == Some(&Verdict::Accepted)
    {
        entry.rotated_out_of_band_at = None;
    }
    let since = entry.rotated_out_of_band_at.clone()?;
    Some((
        reason::ROTATED_OUT_OF_BAND,
        format!(
            "the pair was rotated at the platform behind the operator's back (seen at {}); pods that held the former Token 1 were cut off",
            since.0
        ),
    ))
}

/// What the strategy consents to on a rotation done behind the operator's back.
pub fn platform_action(snapshot: &Snapshot) -> OutOfBandAction {
    snapshot
        .spec
        .platform
        .as_ref()
        .map(|platform| platform.on_rotated_out_of_band)
        .unwrap_or_default()
}

/// True when consumers must move at once (a rotation done behind the operator's back, with
/// the strategy's consent): no restart budget, no waves.
pub fn all_at_once(snapshot: &Snapshot, status: &StreamingTokenStatus) -> bool {
    platform_action(snapshot) == OutOfBandAction::RestartHolders
        && status
            .platform
            .as_ref()
            .is_some_and(|platform| platform.rotated_out_of_band_at.is_some())
}

fn word(verdict: Option<&Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Accepted) => reason::platform::ACCEPTED,
        Some(Verdict::Rejected) => reason::platform::REJECTED,
        Some(Verdict::Unknown(_)) | None => reason::platform::UNKNOWN,
    }
}

/// `status.platform` and the `PlatformVerified` and `CredentialsExpiring` conditions, for the
/// pair the mirror holds after this reconcile.
pub fn report(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    status: &mut StreamingTokenStatus,
    now: &Time,
) {
    let generation = Some(snapshot.generation);
    let Some(platform) = &snapshot.platform else {
        status.platform = None;
        conditions::remove(&mut status.conditions, PLATFORM_VERIFIED);
        conditions::remove(&mut status.conditions, CREDENTIALS_EXPIRING);
        return;
    };
    let verdicts = [&mirror.pair.token1, &mirror.pair.token2].map(|token| platform.verdict(token));
    let entry = status.platform.get_or_insert_with(PlatformStatus::default);
    entry.token1 = Some(word(verdicts[0]).into());
    entry.token2 = Some(word(verdicts[1]).into());
    entry.credentials_expire_at = platform
        .credentials_expire_at
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .map(Time);
    let (state, reason, message) = verified(platform, verdicts);
    conditions::set_status(
        &mut status.conditions,
        PLATFORM_VERIFIED,
        state,
        reason,
        message,
        generation,
        now,
    );
    match platform.credentials_expire_at {
        Some(expires) if expires - now.0.as_second() <= CREDENTIALS_WARNING_SECONDS => {
            let (reason, message) = if expires <= now.0.as_second() {
                (
                    reason::CREDENTIALS_EXPIRED,
                    "the platform credentials (spec.platform.rotate.credentialsSecretRef) have expired: the operator cannot read or rotate the pair; put a new Personal Access Token in the Secret".to_string(),
                )
            } else {
                (
                    reason::CREDENTIALS_EXPIRE_SOON,
                    format!(
                        "the platform credentials (spec.platform.rotate.credentialsSecretRef) expire in {} hour(s): put a new Personal Access Token in the Secret",
                        (expires - now.0.as_second()) / 3600
                    ),
                )
            };
            conditions::set(
                &mut status.conditions,
                CREDENTIALS_EXPIRING,
                true,
                reason,
                message,
                generation,
                now,
            );
        }
        Some(_) => conditions::set(
            &mut status.conditions,
            CREDENTIALS_EXPIRING,
            false,
            reason::CREDENTIALS_VALID,
            "the platform credentials do not expire within 7 days",
            generation,
            now,
        ),
        None => conditions::remove(&mut status.conditions, CREDENTIALS_EXPIRING),
    }
}

fn verified(
    platform: &PlatformObservation,
    verdicts: [Option<&Verdict>; 2],
) -> (&'static str, &'static str, String) {
    if let Some(problem) = &platform.problem {
        return ("Unknown", reason::PLATFORM_MISCONFIGURED, problem.clone());
    }
    match verdicts {
        [Some(Verdict::Accepted), Some(Verdict::Accepted)] => (
            "True",
            reason::TOKENS_ACCEPTED,
            "the platform accepts Token 1 and Token 2".into(),
        ),
        [first, second]
            if first == Some(&Verdict::Rejected) || second == Some(&Verdict::Rejected) =>
        {
            let which = if first == Some(&Verdict::Rejected) {
                "Token 1"
            } else {
                "Token 2"
            };
            (
                "False",
                reason::TOKEN_REJECTED,
                format!("the platform rejects the mirrored {which}"),
            )
        }
        [first, second] => {
            let why = [first, second]
                .into_iter()
                .find_map(|verdict| match verdict {
                    Some(Verdict::Unknown(why)) => Some(why.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "not asked yet".into());
            (
                "Unknown",
                reason::PLATFORM_UNREACHABLE,
                format!("the platform could not be asked about the mirrored pair ({why})"),
            )
        }
    }
}

/// Tokens the controller asks the platform about for this pass: those of the mirror and of
/// the source (deduplicated), and whether acceptances must be asked afresh (the source holds a
/// pair the mirror does not: whatever is decided on it must be current).
pub fn tokens_to_check<'a>(
    mirror: Option<&'a TokenPair>,
    source: Option<&'a TokenPair>,
) -> (Vec<&'a Token>, bool) {
    let mut tokens: Vec<&Token> = Vec::new();
    for pair in [mirror, source].into_iter().flatten() {
        for token in [&pair.token1, &pair.token2] {
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
    }
    let fresh = match (mirror, source) {
        (Some(mirror), Some(source)) => mirror != source,
        _ => true,
    };
    (tokens, fresh)
}
