//! "Verified", as one decision (pure): every labelled consumer rolled out on the rotation's pod
//! template ([`super::consumers::verify`]) **and** no live or terminating pod of the namespace,
//! whatever owns it, may still hold Token 1 ([`super::holders`]). Token 1 is deactivated (or
//! `ReadyToRotate` set) only when [`Verification::complete`] holds.

use super::consumers::{self, Verdict};
use super::holders::{self, Hold, Pair};
use super::snapshot::{CopyObservation, NamespaceView, Snapshot};
use crate::api::{BlockedConsumer, RotationStatus};
use crate::model::consumer::ConsumerObservation;
use crate::model::member;
use crate::model::pod::Owner;
use crate::model::reason;
use std::collections::BTreeSet;
use std::time::Duration;

/// Where a rotation's consumers and pods stand.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verification {
    /// Labelled consumers verified (rolled out, and none of their pods may hold Token 1).
    pub verified: usize,
    /// Consumers, other workloads and bare pods that hold the rotation up until a person acts.
    pub blocked: Vec<BlockedConsumer>,
    /// Owners whose terminating pods may hold Token 1 and go by themselves, and mirror
    /// Secrets not yet holding the pair of record.
    pub waiting: usize,
    /// The same, per namespace (in the snapshot's order).
    pub namespaces: Vec<NamespaceVerification>,
}

/// Where one namespace's consumers and pods stand.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceVerification {
    pub verified: usize,
    pub blocked: Vec<BlockedConsumer>,
    pub waiting: usize,
}

impl Verification {
    /// True when Token 1 may be deactivated.
    pub fn complete(&self, consumers: usize) -> bool {
        self.verified == consumers && self.blocked.is_empty() && self.waiting == 0
    }
}

/// Which pod-level check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodCheck {
    /// Token 1 is about to be deactivated: no pod may hold it.
    NoPodHoldsToken1,
    /// Token 1 is already gone (Restart, or the platform rotated): only the rollouts matter.
    RolloutsOnly,
}

/// Verifies every consumer, and (with [`PodCheck::NoPodHoldsToken1`]) every pod, for `rotation`.
/// `waited` is how long the current phase has lasted (for `rolloutTimeout`).
pub fn verify(
    snapshot: &Snapshot,
    rotation: &RotationStatus,
    check: PodCheck,
    waited: Duration,
    now: i64,
) -> Verification {
    let pass = Pass {
        snapshot,
        rotation,
        timeout: rollout_timeout(snapshot),
        stamp: snapshot.stamp(&rotation.id),
        waited,
        now,
    };
    let mut verification = Verification::default();
    for view in &snapshot.namespaces {
        if !view.verified_here() {
            // Revoked: its pods are reported, never waited for.
            verification
                .namespaces
                .push(NamespaceVerification::default());
            continue;
        }
        let listed = consumers::listed_namespace(snapshot, &view.namespace);
        let blocked_before = verification.blocked.len();
        if let CopyObservation::Unreachable(why) = &view.copy {
            // Nothing there can be verified: a partition is not a verification.
            verification
                .blocked
                .push(unreachable(view, listed.clone(), why));
        }
        let mut verified = pass.rolled_out(view, &listed, &mut verification.blocked);
        if check == PodCheck::NoPodHoldsToken1 && snapshot.copy_replaced(view) {
            verification
                .blocked
                .push(copy_replaced(snapshot, view, listed.clone()));
        }
        let waiting = if check == PodCheck::NoPodHoldsToken1 && view.serves_pair() {
            pass.pod_holds(view, &listed, &mut verified, &mut verification.blocked)
        } else {
            0
        };
        verification.verified += verified.len();
        verification.waiting += waiting;
        verification.namespaces.push(NamespaceVerification {
            verified: verified.len(),
            blocked: verification.blocked[blocked_before..].to_vec(),
            waiting,
        });
    }
    verification
}

/// A member cluster that cannot be read, as what holds the rotation.
fn unreachable(view: &NamespaceView, listed: Option<String>, why: &str) -> BlockedConsumer {
    let (cluster, _) = member::split(&view.namespace);
    BlockedConsumer {
        namespace: listed,
        kind: reason::MEMBER_KIND.into(),
        name: cluster.unwrap_or_default().to_string(),
        reason: reason::MEMBER_UNREACHABLE.into(),
        message: format!(
            "{why}: its pods cannot be verified, so Token 1 stays active until it is read again"
        ),
    }
}

/// What verifying one rotation reads in every namespace.
struct Pass<'a> {
    snapshot: &'a Snapshot,
    rotation: &'a RotationStatus,
    /// The rotation's stamp on pod templates.
    stamp: String,
    waited: Duration,
    timeout: Duration,
    now: i64,
}

impl Pass<'_> {
    /// The consumers of `view` verified (rolled out on the rotation's template, or left alone by
    /// a Restart rotation); those whose rollout is blocked are added to `blocked`.
    fn rolled_out(
        &self,
        view: &NamespaceView,
        listed: &Option<String>,
        blocked: &mut Vec<BlockedConsumer>,
    ) -> BTreeSet<Owner> {
        let mut verified: BTreeSet<Owner> = BTreeSet::new();
        for consumer in &view.consumers {
            if self.left_alone(consumer) {
                // A Restart rotation did not restart it: its pods hold a token that stays valid.
                verified.insert(owner_of(consumer));
                continue;
            }
            // A consumer the waves started times out from its own start.
            let key = self.snapshot.consumer_key(
                consumer.kind.as_str(),
                &consumer.namespace,
                &consumer.name,
            );
            let waited =
                super::waves::waited_for(&self.rotation.started, &key, self.now, self.waited);
            match consumers::verify(consumer, &self.stamp, waited, self.timeout) {
                Verdict::Verified => {
                    verified.insert(owner_of(consumer));
                }
                Verdict::Progressing(_) => {}
                Verdict::Blocked { reason, message } => {
                    blocked.push(BlockedConsumer {
                        namespace: listed.clone(),
                        kind: consumer.kind.as_str().into(),
                        name: consumer.name.clone(),
                        reason: reason.into(),
                        message,
                    });
                }
            }
        }
        verified
    }

    /// True when the rotation left `consumer` alone (a Restart rotation that did not restart it).
    fn left_alone(&self, consumer: &ConsumerObservation) -> bool {
        self.rotation
            .left_alone
            .contains(&self.snapshot.consumer_key(
                consumer.kind.as_str(),
                &consumer.namespace,
                &consumer.name,
            ))
    }

    /// How many holds in `view` go by themselves (terminating pods, a mirror not yet in sync);
    /// every owner whose pods may hold Token 1 leaves `verified`, and those only a person can
    /// clear are added to `blocked`.
    fn pod_holds(
        &self,
        view: &NamespaceView,
        listed: &Option<String>,
        verified: &mut BTreeSet<Owner>,
        blocked: &mut Vec<BlockedConsumer>,
    ) -> usize {
        let snapshot = self.snapshot;
        let mut waiting = 0;
        if !snapshot.copy_in_sync(view) && (view.selected() || snapshot.read_in(view)) {
            // A mirror Secret that does not (yet) hold the pair of record, and is read: what
            // its Token 2 key held, and when, is not known, so nothing here counts as
            // verified.
            waiting += 1;
        }
        let pair = pair(snapshot, view, &self.stamp);
        let found = holders::holders(&view.pods, &pair);
        let consumers: BTreeSet<Owner> = view.consumers.iter().map(owner_of).collect();
        let holds = holders::holds(
            &found,
            &pair,
            &snapshot.name,
            |owner| consumers.contains(&view.consumer_of(owner)),
            |owner| verified.contains(&view.consumer_of(owner)),
            self.now,
        );
        for (owner, hold) in holds {
            let owner = view.consumer_of(&owner);
            verified.remove(&owner);
            match hold {
                Hold::Waiting(_) => waiting += 1,
                Hold::Blocked { reason, message } => {
                    blocked.push(BlockedConsumer {
                        namespace: listed.clone(),
                        kind: owner.kind,
                        name: owner.name,
                        reason: reason.into(),
                        message,
                    });
                }
            }
        }
        waiting
    }
}

/// The namespace reported blocked because someone else's Secret took the copy's name: pods
/// that read it may have started on the copy and hold Token 1; which of them did is not known.
fn copy_replaced(
    snapshot: &Snapshot,
    view: &NamespaceView,
    listed: Option<String>,
) -> BlockedConsumer {
    BlockedConsumer {
        namespace: listed,
        kind: "Namespace".into(),
        name: view.namespace.clone(),
        reason: reason::SECRET_REPLACED.into(),
        message: format!(
            "Secret {} here was this object's copy and is now someone else's; its pods may still hold Token 1: restart the pods that read it, or stop selecting this namespace",
            snapshot.secret_name
        ),
    }
}

/// What the pod-level check of the pods in `view` needs of the pair and the rotation (stamped
/// `stamp`).
pub fn pair<'a>(snapshot: &'a Snapshot, view: &NamespaceView, stamp: &'a str) -> Pair<'a> {
    let source_here = view.namespace == snapshot.source_namespace;
    Pair {
        secret: &snapshot.secret_name,
        token1_key: &snapshot.spec.secret.token1_key,
        token2_key: &snapshot.spec.secret.token2_key,
        rotation_id: stamp,
        values_written_at: snapshot.values_written_at(view),
        source: match (&snapshot.origin.secret, &snapshot.origin.keys) {
            (Some(secret), Some((token1_key, token2_key))) if source_here => {
                Some((secret.as_str(), token1_key.as_str(), token2_key.as_str()))
            }
            _ => None,
        },
    }
}

fn owner_of(consumer: &ConsumerObservation) -> Owner {
    Owner {
        kind: consumer.kind.as_str().into(),
        name: consumer.name.clone(),
    }
}

/// `spec.rotation.rolloutTimeout` (10 minutes when unparseable; the schema rejects that).
pub fn rollout_timeout(snapshot: &Snapshot) -> Duration {
    crate::api::parse_duration(&snapshot.spec.rotation.rollout_timeout)
        .unwrap_or(Duration::from_secs(600))
}
