//! Which pods may still hold Token 1: the pod-level half of "verified" (pure).
//!
//! A kubelet resolves `env[].valueFrom.secretKeyRef` and `envFrom` when a container starts, and
//! a process reads a mounted Secret file whenever it likes. So a pod may hold every value that a
//! mirror-Secret key it references had between the pod's creation and now. For the Token 1 a
//! rotation is about to deactivate that means:
//!
//! - a pod that references the Token 1 key (through any variable, `envFrom`, a `secret` or
//!   `projected` volume, in any container) may hold it;
//! - a pod that references the Token 2 key may hold it too if it may have read that key before
//!   Token 1 was promoted out of it: unless it was created from a pod template stamped with this
//!   rotation's id (stamped after the promotion) or was created strictly after the mirror's token
//!   values were last written (both times from the API server's clock, whole seconds, so the same
//!   second counts as "maybe before").
//!
//! Whatever owns the pod: a labelled consumer, an unlabelled workload, nothing at all, or a
//! workload deleted mid-rotation. Terminating pods count until they are gone.

use crate::model::pod::{Owner, PodRecord, SecretReference, SecretUse};
use crate::model::reason;
use std::collections::BTreeMap;

pub use super::snapshot::KUBELET_CACHE_MARGIN_SECONDS;

/// A terminating pod this long past its grace period, with no finalizer to explain it, is
/// reported as stuck rather than waited for silently.
pub const STUCK_TERMINATING_AFTER_SECONDS: i64 = 30;

/// What the decision needs to know of the pair and the rotation.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// Name of the mirror Secret.
    pub secret: &'a str,
    pub token1_key: &'a str,
    pub token2_key: &'a str,
    /// The rotation in progress, whose id stamps pod templates rolled during it.
    pub rotation_id: &'a str,
    /// When the mirror's token values were last written (seconds, API server clock): until
    /// then the Token 2 key may have held today's Token 1. `None` when unknown (every Token 2
    /// reader not rolled during this rotation is suspect).
    pub values_written_at: Option<i64>,
    /// The `secretRef` source Secret and its keys: it holds the same tokens, and a pod that
    /// reads it directly can be neither repointed nor verified, so any reader of it may hold
    /// Token 1.
    pub source: Option<(&'a str, &'a str, &'a str)>,
}

/// Why a pod may hold Token 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding<'a> {
    /// It references the Token 1 key.
    Token1(&'a SecretReference),
    /// It references the Token 2 key and may have read it while it still held Token 1.
    Token2BeforePromotion(&'a SecretReference),
}

impl<'a> Holding<'a> {
    pub fn reference(&self) -> &'a SecretReference {
        match self {
            Self::Token1(reference) | Self::Token2BeforePromotion(reference) => reference,
        }
    }
}

/// Whether `pod` may hold the Token 1 of `pair`, and through which reference.
pub fn may_hold_token1<'a>(pod: &'a PodRecord, pair: &Pair) -> Option<Holding<'a>> {
    if let Some((source, token1_key, token2_key)) = pair.source
        && let Some(reference) = pod.references.iter().find(|reference| {
            reference.secret == source
                && (reference.keys.includes(token1_key) || reference.keys.includes(token2_key))
        })
    {
        return Some(Holding::Token1(reference));
    }
    let mirror = || {
        pod.references
            .iter()
            .filter(|reference| reference.secret == pair.secret)
    };
    if let Some(reference) = mirror().find(|reference| reference.keys.includes(pair.token1_key)) {
        return Some(Holding::Token1(reference));
    }
    // The key's history since the pod's creation decides: a pod created (past the kubelet's
    // cache margin) after the last write of the values read what the Token 2 key holds now.
    // The rotation's stamp alone does not: the values may have been written after the pod
    // started (a mirror rewritten mid-rotation). Only when the write time is unknown does the
    // stamp stand in for it.
    let created_after_write = pair
        .values_written_at
        .is_some_and(|written| pod.created_at > written + KUBELET_CACHE_MARGIN_SECONDS);
    let rolled_on_this_rotation =
        pair.values_written_at.is_none() && pod.stamped_with(pair.rotation_id);
    if rolled_on_this_rotation || created_after_write {
        return None;
    }
    mirror()
        .find(|reference| reference.keys.includes(pair.token2_key))
        .map(Holding::Token2BeforePromotion)
}

/// A pod that may hold Token 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder<'a> {
    pub pod: &'a PodRecord,
    pub holding: Holding<'a>,
}

/// Every pod of `pods` that may hold Token 1.
pub fn holders<'a, P: AsRef<PodRecord>>(pods: &'a [P], pair: &Pair) -> Vec<Holder<'a>> {
    pods.iter()
        .map(AsRef::as_ref)
        .filter_map(|pod| may_hold_token1(pod, pair).map(|holding| Holder { pod, holding }))
        .collect()
}

/// What holds a rotation up, per owner: waiting for terminating pods to go, or blocked until a
/// person acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Terminating pods within their grace period: they go by themselves.
    Waiting(String),
    Blocked {
        reason: &'static str,
        message: String,
    },
}

/// Holders grouped by the workload (or bare pod) they belong to, with what holds the rotation up.
/// `is_consumer` says whether an owner is a labelled consumer of this StreamingToken: those
/// are repointed and rolled, so their live pods only mean "not rolled out yet", which their own
/// verification reports; they are listed here only when `consumer_verified` says the consumer
/// counts as rolled out although a pod may still hold Token 1.
pub fn holds(
    holders: &[Holder],
    pair: &Pair,
    token_name: &str,
    is_consumer: impl Fn(&Owner) -> bool,
    consumer_verified: impl Fn(&Owner) -> bool,
    now: i64,
) -> Vec<(Owner, Hold)> {
    let mut by_owner: BTreeMap<Owner, Vec<&Holder>> = BTreeMap::new();
    for holder in holders {
        let owner = holder.pod.owner.clone().unwrap_or_else(|| Owner {
            kind: "Pod".into(),
            name: holder.pod.name.clone(),
        });
        by_owner.entry(owner).or_default().push(holder);
    }
    by_owner
        .into_iter()
        .filter_map(|(owner, held)| {
            let consumer = is_consumer(&owner);
            if consumer && !consumer_verified(&owner) {
                return None;
            }
            let hold = owner_hold(&owner, &held, consumer, pair, token_name, now);
            Some((owner, hold))
        })
        .collect()
}

fn owner_hold(
    owner: &Owner,
    held: &[&Holder],
    consumer: bool,
    pair: &Pair,
    token_name: &str,
    now: i64,
) -> Hold {
    if let Some(holder) = held
        .iter()
        .find(|holder| !holder.pod.held_by(now).is_empty())
    {
        return Hold::Blocked {
            reason: reason::POD_HELD_BY_FINALIZER,
            message: format!(
                "pod {} is terminating past its grace period, held by finalizer(s) {}, and may hold Token 1 ({}); remove the finalizer or wait for whatever set it",
                holder.pod.name,
                holder.pod.held_by(now).join(", "),
                describe(holder, pair)
            ),
        };
    }
    let Some(live) = held.iter().find(|holder| !holder.pod.terminating()) else {
        if let Some(stuck) = held.iter().find(|holder| {
            holder
                .pod
                .deletion_deadline
                .is_some_and(|deadline| deadline + STUCK_TERMINATING_AFTER_SECONDS <= now)
        }) {
            return Hold::Blocked {
                reason: reason::POD_STUCK_TERMINATING,
                message: format!(
                    "pod {} is still terminating well past its grace period, with no finalizer (its node may be unreachable), and may hold Token 1 ({}); check its node, or force-delete it once its containers are known to be stopped",
                    stuck.pod.name,
                    describe(stuck, pair)
                ),
            };
        }
        return Hold::Waiting(format!(
            "{} terminating pod(s) may hold Token 1, for example {} ({}); waiting for them to go",
            held.len(),
            held[0].pod.name,
            describe(held[0], pair)
        ));
    };
    let (reason, advice) = blocked_reason(owner, live, consumer, pair, token_name);
    Hold::Blocked {
        reason,
        message: format!(
            "pod {} may hold Token 1 ({}); {advice}",
            live.pod.name,
            describe(live, pair)
        ),
    }
}

/// Why a live pod that may hold Token 1 cannot be helped by the rotation, and what to do.
fn blocked_reason(
    owner: &Owner,
    holder: &Holder,
    consumer: bool,
    pair: &Pair,
    token_name: &str,
) -> (&'static str, String) {
    let token2 = pair.token2_key;
    if holder.holding.reference().secret != pair.secret {
        return (
            reason::READS_SOURCE_SECRET,
            format!(
                "it reads source Secret {} directly, which the operator can neither repoint nor verify; read the {token2} key of the mirror Secret {} instead",
                holder.holding.reference().secret,
                pair.secret
            ),
        );
    }
    if !consumer {
        let reason = if owner.kind == "Pod" {
            reason::UNMANAGED_POD_READS_TOKEN
        } else {
            reason::UNLABELLED_READER
        };
        let fix = if owner.kind == "Pod" {
            "recreate it reading the Token 2 key, or delete it".to_string()
        } else {
            format!(
                "label {} {} `streamingtoken.io/token: {token_name}` so rotations repoint and roll it, or point it at the {token2} key and restart it",
                owner.kind, owner.name
            )
        };
        return (reason, fix);
    }
    match (&holder.holding, &holder.holding.reference().used) {
        (Holding::Token1(_), SecretUse::EnvFrom { container }) => (
            reason::ENV_FROM_MIRROR_SECRET,
            format!(
                "container {container} loads the whole Secret {} with envFrom, so it always holds Token 1; read the {token2} key through env[].valueFrom.secretKeyRef instead",
                pair.secret
            ),
        ),
        (Holding::Token1(_), SecretUse::Volume { volume }) => (
            reason::VOLUME_EXPOSES_TOKEN1,
            format!(
                "volume {volume} exposes the {} key; mount only the {token2} key (items: [{{key: {token2}, path: ...}}])",
                pair.token1_key
            ),
        ),
        (Holding::Token1(_), SecretUse::Env { container, .. }) => (
            reason::CONTAINER_NOT_REPOINTED,
            format!(
                "container {container} still reads the {} key; add it to spec.consumers.containers, or point it at the {token2} key",
                pair.token1_key
            ),
        ),
        (Holding::Token2BeforePromotion(_), _) => (
            reason::POD_NOT_ROLLED,
            "it was not rolled during this rotation; restart it (kubectl rollout restart)".into(),
        ),
    }
}

/// Where a pod uses a Secret, for messages: `container app, variable T`, `container app,
/// envFrom`, `volume token`.
fn usage(used: &SecretUse) -> String {
    match used {
        SecretUse::Env {
            container,
            variable,
        } => format!("container {container}, variable {variable}"),
        SecretUse::EnvFrom { container } => format!("container {container}, envFrom"),
        SecretUse::Volume { volume } => format!("volume {volume}"),
    }
}

/// How a holder reaches Token 1, for messages: names only, never a value.
pub fn describe(holder: &Holder, pair: &Pair) -> String {
    let reference = holder.holding.reference();
    if reference.secret != pair.secret {
        return format!(
            "{}, source Secret {}",
            usage(&reference.used),
            reference.secret
        );
    }
    let key = match holder.holding {
        Holding::Token1(_) => pair.token1_key,
        Holding::Token2BeforePromotion(_) => pair.token2_key,
    };
    let how = match &holder.holding.reference().used {
        SecretUse::Env {
            container,
            variable,
        } => format!("container {container}, variable {variable}, key {key}"),
        SecretUse::EnvFrom { container } => {
            format!("container {container}, envFrom of the whole Secret")
        }
        SecretUse::Volume { volume } => format!("volume {volume}, key {key}"),
    };
    match holder.holding {
        Holding::Token1(_) => how,
        Holding::Token2BeforePromotion(_) => {
            format!("{how}, read before Token 1 was promoted out of it")
        }
    }
}

/// Workloads (and bare pods) that read the mirror Secret without being labelled consumers: a
/// rotation can not repoint them, so they are reported at any time, before anyone rotates.
pub fn unlabelled_readers<P: AsRef<PodRecord>>(
    pods: &[P],
    secrets: &[&str],
    is_consumer: impl Fn(&Owner) -> bool,
) -> Vec<(Owner, String)> {
    let mut found: BTreeMap<Owner, String> = BTreeMap::new();
    for pod in pods.iter().map(AsRef::as_ref) {
        if pod.terminating() {
            continue;
        }
        let Some(reference) = pod
            .references
            .iter()
            .find(|reference| secrets.contains(&reference.secret.as_str()))
        else {
            continue;
        };
        let owner = pod.owner.clone().unwrap_or_else(|| Owner {
            kind: "Pod".into(),
            name: pod.name.clone(),
        });
        if is_consumer(&owner) {
            continue;
        }
        found.entry(owner).or_insert_with(|| {
            format!(
                "pod {} reads Secret {} ({})",
                pod.name,
                reference.secret,
                usage(&reference.used)
            )
        });
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pod::SecretKeys;

    const NOW: i64 = 1_000;
    const WRITTEN: i64 = 500;

    fn pair() -> Pair<'static> {
        Pair {
            secret: "telemetry",
            token1_key: "token1",
            token2_key: "token2",
            rotation_id: "r7",
            values_written_at: Some(WRITTEN),
            source: Some(("portal", "token1", "token2")),
        }
    }

    fn env(key: &str) -> SecretReference {
        SecretReference {
            secret: "telemetry".into(),
            keys: SecretKeys::Listed(vec![key.into()]),
            used: SecretUse::Env {
                container: "app".into(),
                variable: "Quix__Sdk__Token".into(),
            },
        }
    }

    fn pod(references: Vec<SecretReference>) -> PodRecord {
        PodRecord {
            name: "api-1".into(),
            owner: Some(Owner {
                kind: "Deployment".into(),
                name: "api".into(),
            }),
            rotation: None,
            token_stamps: Vec::new(),
            token_label: None,
            created_at: 100,
            deletion_deadline: None,
            finalizers: Vec::new(),
            references,
        }
    }

    #[test]
    fn may_hold_table() {
        type Case = (&'static str, fn(&mut PodRecord), Option<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "token1 under the client's own variable",
                |p| p.references = vec![env("token1")],
                Some("Token1"),
            ),
            (
                "token1, rolled on this rotation (a reverted template)",
                |p| {
                    p.references = vec![env("token1")];
                    p.rotation = Some("r7".into());
                },
                Some("Token1"),
            ),
            (
                "token2 from an old template",
                |p| p.references = vec![env("token2")],
                Some("Token2BeforePromotion"),
            ),
            (
                "token2, rolled on this rotation but created before the values' last write",
                |p| {
                    p.references = vec![env("token2")];
                    p.rotation = Some("r7".into());
                },
                Some("Token2BeforePromotion"),
            ),
            (
                "token2, rolled on this rotation after the values' last write",
                |p| {
                    p.references = vec![env("token2")];
                    p.rotation = Some("r7".into());
                    p.created_at = WRITTEN + KUBELET_CACHE_MARGIN_SECONDS + 1;
                },
                None,
            ),
            (
                "token2, stamped by an earlier rotation",
                |p| {
                    p.references = vec![env("token2")];
                    p.rotation = Some("r6".into());
                },
                Some("Token2BeforePromotion"),
            ),
            (
                "token2, created after the last write and the kubelet cache margin",
                |p| {
                    p.references = vec![env("token2")];
                    p.created_at = WRITTEN + KUBELET_CACHE_MARGIN_SECONDS + 1;
                },
                None,
            ),
            (
                "token2, created within the kubelet cache margin after the last write",
                |p| {
                    p.references = vec![env("token2")];
                    p.created_at = WRITTEN + KUBELET_CACHE_MARGIN_SECONDS;
                },
                Some("Token2BeforePromotion"),
            ),
            (
                "token2, created in the second of the last write",
                |p| {
                    p.references = vec![env("token2")];
                    p.created_at = WRITTEN;
                },
                Some("Token2BeforePromotion"),
            ),
            (
                "envFrom of the whole mirror",
                |p| {
                    p.references = vec![SecretReference {
                        secret: "telemetry".into(),
                        keys: SecretKeys::All,
                        used: SecretUse::EnvFrom {
                            container: "app".into(),
                        },
                    }]
                },
                Some("Token1"),
            ),
            (
                "volume without items",
                |p| {
                    p.references = vec![SecretReference {
                        secret: "telemetry".into(),
                        keys: SecretKeys::All,
                        used: SecretUse::Volume {
                            volume: "token".into(),
                        },
                    }]
                },
                Some("Token1"),
            ),
            (
                "volume with only the token2 item, rolled after the values' last write",
                |p| {
                    p.references = vec![SecretReference {
                        secret: "telemetry".into(),
                        keys: SecretKeys::Listed(vec!["token2".into()]),
                        used: SecretUse::Volume {
                            volume: "token".into(),
                        },
                    }];
                    p.rotation = Some("r7".into());
                    p.created_at = WRITTEN + KUBELET_CACHE_MARGIN_SECONDS + 1;
                },
                None,
            ),
            (
                "another Secret's token1 key",
                |p| {
                    p.references = vec![SecretReference {
                        secret: "other".into(),
                        ..env("token1")
                    }]
                },
                None,
            ),
            ("no reference at all", |p| p.references = vec![], None),
            (
                "the source Secret's Token 2, rolled on this rotation",
                |p| {
                    p.references = vec![SecretReference {
                        secret: "portal".into(),
                        ..env("token2")
                    }];
                    p.rotation = Some("r7".into());
                },
                Some("Token1"),
            ),
            (
                "terminating pod reading token1",
                |p| {
                    p.references = vec![env("token1")];
                    p.deletion_deadline = Some(NOW + 30);
                },
                Some("Token1"),
            ),
        ];
        for (name, mutate, want) in cases {
            let mut record = pod(vec![]);
            mutate(&mut record);
            let got = may_hold_token1(&record, &pair()).map(|holding| match holding {
                Holding::Token1(_) => "Token1",
                Holding::Token2BeforePromotion(_) => "Token2BeforePromotion",
            });
            assert_eq!(got, want, "case {name}");
        }
        let unknown_write = Pair {
            values_written_at: None,
            ..pair()
        };
        let mut late = pod(vec![env("token2")]);
        late.created_at = NOW;
        assert!(
            may_hold_token1(&late, &unknown_write).is_some(),
            "without the write time every unrolled Token 2 reader is suspect"
        );
        late.rotation = Some("r7".into());
        assert!(
            may_hold_token1(&late, &unknown_write).is_none(),
            "without the write time the rotation's stamp stands in for it"
        );
    }

    fn owner(kind: &str, name: &str) -> Owner {
        Owner {
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn holds_name_the_owner_and_the_fix() {
        let mut consumer_pod = pod(vec![env("token1")]);
        consumer_pod.name = "api-1".into();
        let mut unlabelled = pod(vec![env("token1")]);
        unlabelled.name = "batch-1".into();
        unlabelled.owner = Some(owner("Deployment", "batch"));
        let mut bare = pod(vec![env("token1")]);
        bare.name = "debug".into();
        bare.owner = None;
        let mut deleted = pod(vec![env("token1")]);
        deleted.name = "gone-1".into();
        deleted.owner = Some(owner("Deployment", "gone"));
        deleted.deletion_deadline = Some(NOW + 30);
        let mut held = pod(vec![env("token1")]);
        held.name = "held-1".into();
        held.owner = Some(owner("StatefulSet", "held"));
        held.deletion_deadline = Some(NOW - 1);
        held.finalizers = vec!["example.com/hold".into()];
        let mut envfrom = pod(vec![SecretReference {
            secret: "telemetry".into(),
            keys: SecretKeys::All,
            used: SecretUse::EnvFrom {
                container: "app".into(),
            },
        }]);
        envfrom.name = "loader-1".into();
        envfrom.owner = Some(owner("Deployment", "loader"));
        let pods = vec![consumer_pod, unlabelled, bare, deleted, held, envfrom];
        let found = holders(&pods, &pair());
        assert_eq!(found.len(), 6);

        let consumers = [owner("Deployment", "api"), owner("Deployment", "loader")];
        let is_consumer = |candidate: &Owner| consumers.contains(candidate);
        // The api consumer is still rolling out: its own verification speaks for it.
        let verified = |candidate: &Owner| candidate.name == "loader";
        let reported: Vec<(String, String)> =
            holds(&found, &pair(), "telemetry", is_consumer, verified, NOW)
                .into_iter()
                .map(|(owner, hold)| {
                    let what = match hold {
                        Hold::Waiting(_) => "Waiting".to_string(),
                        Hold::Blocked { reason, .. } => reason.to_string(),
                    };
                    (format!("{}/{}", owner.kind, owner.name), what)
                })
                .collect();
        assert_eq!(
            reported,
            vec![
                ("Deployment/batch".into(), "UnlabelledReader".into()),
                ("Deployment/gone".into(), "Waiting".into()),
                ("Deployment/loader".into(), "EnvFromMirrorSecret".into()),
                ("Pod/debug".into(), "UnmanagedPodReadsToken".into()),
                ("StatefulSet/held".into(), "PodHeldByFinalizer".into()),
            ]
        );
        let messages: Vec<String> = holds(&found, &pair(), "telemetry", is_consumer, verified, NOW)
            .into_iter()
            .map(|(_, hold)| match hold {
                Hold::Waiting(message) | Hold::Blocked { message, .. } => message,
            })
            .collect();
        assert!(
            messages[0].contains("streamingtoken.io/token: telemetry"),
            "{}",
            messages[0]
        );
        assert!(
            messages[0].contains("variable Quix__Sdk__Token"),
            "{}",
            messages[0]
        );
        assert!(messages[4].contains("example.com/hold"), "{}", messages[4]);
    }

    #[test]
    fn unlabelled_readers_are_found_whatever_key_they_read() {
        let mut token2_reader = pod(vec![env("token2")]);
        token2_reader.owner = Some(owner("Deployment", "reader"));
        let mut consumer = pod(vec![env("token1")]);
        consumer.owner = Some(owner("Deployment", "api"));
        let mut gone = pod(vec![env("token1")]);
        gone.owner = Some(owner("Deployment", "gone"));
        gone.deletion_deadline = Some(NOW);
        let other = pod(vec![SecretReference {
            secret: "unrelated".into(),
            ..env("token1")
        }]);
        let pods = vec![token2_reader, consumer, gone, other];
        let found = unlabelled_readers(&pods, &["telemetry"], |candidate| candidate.name == "api");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, owner("Deployment", "reader"));
        assert!(found[0].1.contains("variable Quix__Sdk__Token"));
    }
}
