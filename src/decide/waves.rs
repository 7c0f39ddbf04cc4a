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
    let is_needed = |consumer: &ConsumerObservation| {
        needed.iter().any(|patch| {
            patch.kind == consumer.kind
                && patch.namespace == consumer.namespace
                && patch.name == consumer.name
        })
    };
    let mut blocked = Vec::new();
    let mut rolling = 0usize;
    let mut verified = 0usize;
    let mut current: Option<(u8, i64)> = None;
    for consumer in &consumers {
        let stamped = consumer.template_rotation.as_deref() == Some(stamp);
        if let Wave::Invalid(value) = &consumer.wave
            && !stamped
            && !done(consumer)
        {
            blocked.push(BlockedConsumer {
                namespace: consumers::listed_namespace(snapshot, &consumer.namespace),
                kind: consumer.kind.as_str().into(),
                name: consumer.name.clone(),
                reason: reason::INVALID_WAVE_LABEL.into(),
                message: format!(
                    "label streamingtoken.io/wave is {value:?}, not a whole number; fix or remove it (it is not rolled until then)"
                ),
            });
        }
        let verdict = (!is_needed(consumer) && !done(consumer))
            .then(|| consumers::verify(consumer, stamp, waited, timeout));
        let finished =
            !is_needed(consumer) && (done(consumer) || verdict == Some(Verdict::Verified));
        if finished {
            verified += 1;
            continue;
        }
        // Started by this rotation (stamped) and not verified: it holds a slot (also while it
        // needs a second patch). One that could not be started (blocked before its patch) holds
        // its wave, not a slot.
        if stamped {
            rolling += 1;
            if let Some(Verdict::Blocked { reason, message }) = verdict {
                blocked.push(BlockedConsumer {
                    namespace: consumers::listed_namespace(snapshot, &consumer.namespace),
                    kind: consumer.kind.as_str().into(),
                    name: consumer.name.clone(),
                    reason: reason.into(),
                    message,
                });
            }
        }
        let rank = rank(&consumer.wave);
        current = Some(current.map_or(rank, |current| current.min(rank)));
    }
    let slots = budget.map_or(usize::MAX, |budget| budget.saturating_sub(rolling));
    let mut start = Vec::new();
    let mut pending = 0usize;
    let mut candidates: Vec<(&ConsumerObservation, ConsumerPatch)> = needed
        .into_iter()
        .filter_map(|patch| {
            consumers
                .iter()
                .find(|consumer| {
                    patch.kind == consumer.kind
                        && patch.namespace == consumer.namespace
                        && patch.name == consumer.name
                })
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
    let mut started_new = 0usize;
    for (consumer, patch) in candidates {
        // A consumer this rotation started already (a second patch: a container named since,
        // a reverted variable) keeps the slot it holds.
        if consumer.template_rotation.as_deref() == Some(stamp) {
            start.push(patch);
            continue;
        }
        let startable = Some(rank(&consumer.wave)) == current
            && !matches!(consumer.wave, Wave::Invalid(_))
            && started_new < slots;
        if startable {
            start.push(patch);
            started_new += 1;
        } else {
            pending += 1;
        }
    }
    let count = |value: usize| i32::try_from(value).unwrap_or(i32::MAX);
    Selection {
        progress: Some(WaveProgress {
            current: current.map_or_else(|| "done".to_string(), label),
            rolling: count(rolling + started_new),
            verified: count(verified),
            pending: count(pending),
            max_concurrent: count(budget.unwrap_or(consumers.len())),
        }),
        start,
        blocked,
    }
}
