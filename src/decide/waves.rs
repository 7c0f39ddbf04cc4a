//! Waves and the restart budget (pure): which of the consumers a rotation still has to patch it
//! patches now.
//!
//! `spec.rotation.maxConcurrentConsumers` caps the consumers rolling at once: started by this
//! rotation (their template carries its stamp) and not verified yet. The `streamingtoken.io/wave`
//! label orders them: the current wave is the lowest one with a consumer not verified, and only
//! its consumers start; unlabelled consumers form the last wave. A blocked consumer is not
//! verified, so it keeps its slot and its wave: nothing after it starts until it clears.
//!
//! Everything is derived from the consumers themselves (their stamps and rollouts), never from
//! a counter in status, so a wave survives SIGKILL and failover, and a replayed pass starts
//! nobody twice.

use super::consumers::{self, Verdict};
use super::snapshot::Snapshot;
use crate::api::{BlockedConsumer, WaveProgress};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave};
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;

/// What starts now.
#[derive(Debug, Default)]
pub struct Selection {
    /// The patches to write in this pass.
    pub start: Vec<ConsumerPatch>,
    /// Where the waves stand (`None` with neither a budget nor wave labels).
    pub progress: Option<WaveProgress>,
    /// What holds the waves up, reported as blocked consumers: a started consumer whose rollout
    /// is blocked (it keeps its slot and its wave), a wave label that is not a whole number.
    pub blocked: Vec<BlockedConsumer>,
}

/// The budget: `maxConcurrentConsumers` resolved against `total` consumers (a percentage rounded
/// up, at least 1). `None` without a budget.
pub fn budget(spec: Option<&IntOrString>, total: usize) -> Option<usize> {
    let budget = match spec? {
        IntOrString::Int(count) => usize::try_from(*count).unwrap_or(1),
        IntOrString::String(text) => {
            let percent: usize = text.trim_end_matches('%').trim().parse().unwrap_or(100);
            (total * percent.min(100)).div_ceil(100)
        }
    };
    Some(budget.max(1))
}

/// The order of waves: numbered ones ascending, then the unlabelled.
fn rank(wave: &Wave) -> (u8, i64) {
    match wave {
        Wave::Number(number) => (0, *number),
        Wave::Unlabelled | Wave::Invalid(_) => (1, 0),
    }
}

fn label(rank: (u8, i64)) -> String {
    match rank {
        (0, number) => number.to_string(),
        _ => "unlabelled".into(),
    }
}

/// Picks, out of `needed` (the patches every consumer still needs for rotation `stamp`), those
/// to write now. `done` tells a consumer that needs nothing more from this rotation (Restart:
/// left alone) besides being verified; `waited` and `timeout` are the rollout clock.
pub fn select(
    snapshot: &Snapshot,
    stamp: &str,
    needed: Vec<ConsumerPatch>,
    done: impl Fn(&ConsumerObservation) -> bool,
    waited: Duration,
    timeout: Duration,
) -> Selection {
    let consumers: Vec<&ConsumerObservation> = snapshot.consumers().collect();
    let budget = budget(
        snapshot.spec.rotation.max_concurrent_consumers.as_ref(),
        consumers.len(),
    );
    let waves_labelled = consumers
        .iter()
        .any(|consumer| consumer.wave != Wave::Unlabelled);
    if budget.is_none() && !waves_labelled {
        return Selection {
            start: needed,
            ..Selection::default()
        };
    }
    let tally = tally(snapshot, &consumers, stamp, &needed, &done, waited, timeout);
    let slots = budget.map_or(usize::MAX, |budget| budget.saturating_sub(tally.rolling));
    let candidates = in_wave_order(&consumers, needed);
    let starts = start_now(candidates, stamp, tally.current, slots);
    let count = |value: usize| i32::try_from(value).unwrap_or(i32::MAX);
    Selection {
        progress: Some(WaveProgress {
            current: tally.current.map_or_else(|| "done".to_string(), label),
            rolling: count(tally.rolling + starts.started_new),
            verified: count(tally.verified),
            pending: count(starts.pending),
            max_concurrent: count(budget.unwrap_or(consumers.len())),
        }),
        start: starts.start,
        blocked: tally.blocked,
    }
}

/// Where the consumers stand before anything starts in this pass.
struct Tally {
    /// What holds the waves up (see [`Selection::blocked`]).
    blocked: Vec<BlockedConsumer>,
    /// Started by this rotation and not verified yet: each holds a slot.
    rolling: usize,
    /// Verified, or needing nothing more from this rotation.
    verified: usize,
    /// The rank of the current wave: the lowest with a consumer not verified (`None`: all are).
    current: Option<(u8, i64)>,
}

/// True when `patch` is for `consumer`.
fn is_for(patch: &ConsumerPatch, consumer: &ConsumerObservation) -> bool {
    patch.kind == consumer.kind
        && patch.namespace == consumer.namespace
        && patch.name == consumer.name
}

/// Counts the consumers verified and those rolling (holding a slot), finds the current wave,
/// and lists what holds the waves up (a rolling consumer blocked, a wave label not a number).
fn tally(
    snapshot: &Snapshot,
    consumers: &[&ConsumerObservation],
    stamp: &str,
    needed: &[ConsumerPatch],
    done: &impl Fn(&ConsumerObservation) -> bool,
    waited: Duration,
    timeout: Duration,
) -> Tally {
    let is_needed =
        |consumer: &ConsumerObservation| needed.iter().any(|patch| is_for(patch, consumer));
    let mut tally = Tally {
        blocked: Vec::new(),
        rolling: 0,
        verified: 0,
        current: None,
    };
    for consumer in consumers {
        let stamped = consumer.template_rotation.as_deref() == Some(stamp);
        if let Wave::Invalid(value) = &consumer.wave
            && !stamped
            && !done(consumer)
        {
            tally.blocked.push(blocked(
                snapshot,
                consumer,
                reason::INVALID_WAVE_LABEL,
                format!(
                    "label streamingtoken.io/wave is {value:?}, not a whole number; fix or remove it (it is not rolled until then)"
                ),
            ));
        }
        let verdict = (!is_needed(consumer) && !done(consumer))
            .then(|| consumers::verify(consumer, stamp, waited, timeout));
        let finished =
            !is_needed(consumer) && (done(consumer) || verdict == Some(Verdict::Verified));
        if finished {
            tally.verified += 1;
            continue;
        }
        // Started by this rotation (stamped) and not verified: it holds a slot (also while it
        // needs a second patch). One that could not be started (blocked before its patch) holds
        // its wave, not a slot.
        if stamped {
            tally.rolling += 1;
            if let Some(Verdict::Blocked { reason, message }) = verdict {
                tally
                    .blocked
                    .push(blocked(snapshot, consumer, reason, message));
            }
        }
        let rank = rank(&consumer.wave);
        tally.current = Some(tally.current.map_or(rank, |current| current.min(rank)));
    }
    tally
}

/// `consumer` reported as holding the waves up, for `reason`.
fn blocked(
    snapshot: &Snapshot,
    consumer: &ConsumerObservation,
    reason: &str,
    message: String,
) -> BlockedConsumer {
    BlockedConsumer {
        namespace: consumers::listed_namespace(snapshot, &consumer.namespace),
        kind: consumer.kind.as_str().into(),
        name: consumer.name.clone(),
        reason: reason.into(),
        message,
    }
}

/// The needed patches with their consumers, in the order they start: by wave, then by kind,
/// namespace and name. A patch for no observed consumer is dropped.
fn in_wave_order<'a>(
    consumers: &[&'a ConsumerObservation],
    needed: Vec<ConsumerPatch>,
) -> Vec<(&'a ConsumerObservation, ConsumerPatch)> {
    let mut candidates: Vec<(&ConsumerObservation, ConsumerPatch)> = needed
        .into_iter()
        .filter_map(|patch| {
            consumers
                .iter()
                .find(|consumer| is_for(&patch, consumer))
                .map(|consumer| (*consumer, patch))
        })
        .collect();
    candidates.sort_by(|(a, _), (b, _)| {
        (rank(&a.wave), a.kind, &a.namespace, &a.name).cmp(&(
            rank(&b.wave),
            b.kind,
            &b.namespace,
            &b.name,
        ))
    });
    candidates
}

/// The patches written in this pass, and how many consumers wait for a later one.
struct Starts {
    start: Vec<ConsumerPatch>,
    /// Consumers this pass starts (their first patch): each takes a slot.
    started_new: usize,
    pending: usize,
}

/// Which candidates start now: a second patch of a consumer already started always; a first
/// one only in the `current` wave, with a valid wave label, while `slots` remain.
fn start_now(
    candidates: Vec<(&ConsumerObservation, ConsumerPatch)>,
    stamp: &str,
    current: Option<(u8, i64)>,
    slots: usize,
) -> Starts {
    let mut starts = Starts {
        start: Vec::new(),
        started_new: 0,
        pending: 0,
    };
    for (consumer, patch) in candidates {
        // A consumer this rotation started already (a second patch: a container named since,
        // a reverted variable) keeps the slot it holds.
        if consumer.template_rotation.as_deref() == Some(stamp) {
            starts.start.push(patch);
            continue;
        }
        let startable = Some(rank(&consumer.wave)) == current
            && !matches!(consumer.wave, Wave::Invalid(_))
            && starts.started_new < slots;
        if startable {
            starts.start.push(patch);
            starts.started_new += 1;
        } else {
            starts.pending += 1;
        }
    }
    starts
}
