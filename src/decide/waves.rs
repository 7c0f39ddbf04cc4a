//! Waves and the restart budget (pure): which of the consumers a rotation still has to patch it
//! patches now.
//!
//! `spec.rotation.maxConcurrentConsumers` caps the consumers rolling at once: started by this
//! rotation (their template carries its stamp) and not verified yet. The `streamingtoken.io/wave`
//! label orders them: the current wave is the lowest one with a consumer not verified, and only
//! its consumers start; unlabelled consumers form the last wave. A blocked consumer is not
//! verified, so it keeps its slot and its wave: nothing after it starts until it clears.
//!
//! What is rolling is derived from the consumers themselves (their stamps and rollouts) *and*
//! from the record of the consumers this rotation started (`status.rotation.started`, written
//! with the pass that patches them): a consumer patched a moment ago whose new template the
//! workload watch has not delivered yet still holds its slot, so a consumer labelled meanwhile
//! cannot take it. A wave survives SIGKILL and failover (stamps and the record are on the API
//! server), and a replayed pass starts nobody twice. Each started consumer's `rolloutTimeout`
//! counts from its own start in the record: later starts never extend it.

use super::consumers::{self, Verdict};
use super::snapshot::Snapshot;
use crate::api::{BlockedConsumer, ConsumerStart, WaveProgress};
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave};
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
    /// The record of consumers started and not verified yet, with this pass's starts (the
    /// rotation's `started`).
    pub started: Vec<ConsumerStart>,
}

/// The most consumers `status.rotation.started` records (its schema's bound): those started
/// beyond it hold a slot once the watch shows their stamp, and time out from the latest start.
pub const MAX_RECORDED_STARTS: usize = 1000;

/// The rollout clock of a pass.
#[derive(Debug, Clone)]
pub struct Clock<'a> {
    pub now: &'a Time,
    /// How long the rollout has been waited for, for a consumer the record does not list.
    pub waited: Duration,
    pub timeout: Duration,
}

/// How long consumer `key` has been rolling: since this rotation started it (`started`, the
/// record), else `fallback`.
/// `now` in seconds.
pub fn waited_for(started: &[ConsumerStart], key: &str, now: i64, fallback: Duration) -> Duration {
    started
        .iter()
        .find(|start| start.consumer == key)
        .map_or(fallback, |start| {
            let seconds = now.saturating_sub(start.started_at.0.as_second());
            Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
        })
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
/// left alone) besides being verified; `started` is the record of consumers started so far.
pub fn select(
    snapshot: &Snapshot,
    stamp: &str,
    needed: Vec<ConsumerPatch>,
    done: impl Fn(&ConsumerObservation) -> bool,
    started: &[ConsumerStart],
    clock: &Clock,
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
    let recorded = |consumer: &ConsumerObservation| {
        let key = key_of(snapshot, consumer);
        started.iter().any(|start| start.consumer == key)
    };
    let tally = tally(
        snapshot,
        &consumers,
        stamp,
        &needed,
        &done,
        (started, clock),
    );
    let slots = budget.map_or(usize::MAX, |budget| budget.saturating_sub(tally.rolling));
    let candidates = in_wave_order(&consumers, needed);
    let starts = start_now(candidates, stamp, &recorded, tally.current, slots);
    let count = |value: usize| i32::try_from(value).unwrap_or(i32::MAX);
    let record = record(
        snapshot,
        started,
        &tally.unfinished,
        &starts.fresh,
        clock.now,
    );
    Selection {
        started: record,
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

/// How status names `consumer` (`Kind/name`, with its namespace for a ClusterStreamingToken).
fn key_of(snapshot: &Snapshot, consumer: &ConsumerObservation) -> String {
    snapshot.consumer_key(consumer.kind.as_str(), &consumer.namespace, &consumer.name)
}

/// The record after this pass: what was recorded and is not finished (a consumer gone or
/// verified leaves it), and the consumers started now (`starting`, their first patch).
fn record(
    snapshot: &Snapshot,
    started: &[ConsumerStart],
    unfinished: &[String],
    starting: &[ConsumerPatch],
    now: &Time,
) -> Vec<ConsumerStart> {
    let mut record: Vec<ConsumerStart> = started
        .iter()
        .filter(|start| unfinished.contains(&start.consumer))
        .cloned()
        .collect();
    for patch in starting {
        let key = snapshot.consumer_key(patch.kind.as_str(), &patch.namespace, &patch.name);
        if record.len() < MAX_RECORDED_STARTS && !record.iter().any(|start| start.consumer == key) {
            record.push(ConsumerStart {
                consumer: key,
                started_at: now.clone(),
            });
        }
    }
    record
}

/// Where the consumers stand before anything starts in this pass.
struct Tally {
    /// The consumers not finished (not verified, needing more), as status names them.
    unfinished: Vec<String>,
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
    (started, clock): (&[ConsumerStart], &Clock),
) -> Tally {
    let is_needed =
        |consumer: &ConsumerObservation| needed.iter().any(|patch| is_for(patch, consumer));
    let mut tally = Tally {
        unfinished: Vec::new(),
        blocked: Vec::new(),
        rolling: 0,
        verified: 0,
        current: None,
    };
    for consumer in consumers {
        let key = key_of(snapshot, consumer);
        let recorded = started.iter().any(|start| start.consumer == key);
        // Started by this rotation: its template carries the stamp, or the record says this
        // rotation patched it (the watch may not show the new template yet).
        let stamped = consumer.template_rotation.as_deref() == Some(stamp) || recorded;
        let waited = waited_for(started, &key, clock.now.0.as_second(), clock.waited);
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
            .then(|| consumers::verify(consumer, stamp, waited, clock.timeout));
        let finished =
            !is_needed(consumer) && (done(consumer) || verdict == Some(Verdict::Verified));
        if finished {
            tally.verified += 1;
            continue;
        }
        tally.unfinished.push(key);
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
    /// Their patches.
    fresh: Vec<ConsumerPatch>,
    pending: usize,
}

/// Which candidates start now: a second patch of a consumer already started always; a first
/// one only in the `current` wave, with a valid wave label, while `slots` remain.
fn start_now(
    candidates: Vec<(&ConsumerObservation, ConsumerPatch)>,
    stamp: &str,
    recorded: &impl Fn(&ConsumerObservation) -> bool,
    current: Option<(u8, i64)>,
    slots: usize,
) -> Starts {
    let mut starts = Starts {
        start: Vec::new(),
        started_new: 0,
        fresh: Vec::new(),
        pending: 0,
    };
    for (consumer, patch) in candidates {
        // A consumer this rotation started already (a second patch: a container named since,
        // a reverted variable) keeps the slot it holds.
        if consumer.template_rotation.as_deref() == Some(stamp) || recorded(consumer) {
            starts.start.push(patch);
            continue;
        }
        let startable = Some(rank(&consumer.wave)) == current
            && !matches!(consumer.wave, Wave::Invalid(_))
            && starts.started_new < slots;
        if startable {
            starts.fresh.push(patch.clone());
            starts.start.push(patch);
            starts.started_new += 1;
        } else {
            starts.pending += 1;
        }
    }
    starts
}
