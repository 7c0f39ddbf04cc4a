//! A ClusterStreamingToken's namespaces (pure): which mirror Secrets to write or delete so every
//! selected namespace holds the pair of record, and where each namespace stands.
//!
//! The pair of record lives in the home Secret (the operator's namespace), decided by
//! [`super::pair`] and [`super::rotation`] exactly as a StreamingToken's mirror. Every other
//! namespace gets a copy: the same values and the same bookkeeping annotations, written right
//! after the home Secret. A copy that does not hold the pair of record holds its namespace's
//! verification back ([`super::verification`]), so Token 1 is never deactivated while some
//! namespace's Secret may still say otherwise.
//!
//! A namespace that stops being selected is `Leaving`: its copy is kept up to date, and its
//! consumers served and verified, until no pod there reads it; then the copy is deleted
//! (`unselectedPolicy: Delete`) or kept as it is, no longer updated (`Retain`: `Retained`). A
//! copy in a namespace not selected is only ever written if it still holds a token of the record
//! (so a Secret someone labelled to look like a copy never receives the pair), and a Secret of
//! the mirror's name that is not this object's is never touched.

use super::pair;
use super::snapshot::{
    CopyObservation, CopyWrite, MirrorObservation, MirrorWrite, NamespaceView, Notice, Snapshot,
    TokenKind,
};
use super::verification::NamespaceVerification;
use crate::api::{BlockedConsumer, NamespaceStatus, StreamingTokenStatus};
use crate::model::reason::{self, NamespaceState};

/// Most namespaces listed in status.
pub const MAX_NAMESPACES_LISTED: usize = 200;
/// Most blocked entries listed per namespace.
const MAX_BLOCKED_PER_NAMESPACE: usize = 5;

/// What the namespaces need.
#[derive(Debug, Default)]
pub struct FanOut {
    pub copies: Vec<CopyWrite>,
    pub deletes: Vec<String>,
    /// `Degraded` when nothing worse is reported: namespaces whose Secret or label is taken.
    pub degraded: Option<(&'static str, String)>,
}

/// The copies to write and delete for `mirror` (the pair of record as it will be after this
/// reconcile), the namespace list in `status`, and Events for namespaces that changed state.
pub fn plan(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    verified: &[NamespaceVerification],
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
) -> FanOut {
    let mut fan = FanOut::default();
    if snapshot.kind != TokenKind::Cluster {
        return fan;
    }
    let mut listed: Vec<NamespaceStatus> = Vec::new();
    for (index, view) in snapshot.namespaces.iter().enumerate() {
        let state = state(snapshot, view);
        match copy_need(snapshot, view, mirror) {
            CopyNeed::Nothing => {}
            CopyNeed::Write(write) => fan.copies.push(CopyWrite {
                namespace: view.namespace.clone(),
                write,
            }),
            CopyNeed::Delete => fan.deletes.push(view.namespace.clone()),
        }
        let verification = verified.get(index);
        let mut blocked: Vec<BlockedConsumer> = verification
            .map(|verification| verification.blocked.clone())
            .unwrap_or_default();
        blocked.truncate(MAX_BLOCKED_PER_NAMESPACE);
        listed.push(NamespaceStatus {
            name: view.namespace.clone(),
            state: state.0.as_str().into(),
            consumers: i32::try_from(view.consumers.len()).unwrap_or(i32::MAX),
            verified: status
                .rotation
                .as_ref()
                .and(verification)
                .map(|verification| i32::try_from(verification.verified).unwrap_or(i32::MAX)),
            blocked,
            message: state.1,
        });
    }
    announce(snapshot, &listed, events);
    let conflicts: Vec<String> = listed
        .iter()
        .filter(|entry| is_conflict(&entry.state))
        .map(|entry| format!("{} ({})", entry.name, entry.state))
        .collect();
    if !conflicts.is_empty() {
        fan.degraded = Some((
            reason::NAMESPACE_CONFLICT,
            format!(
                "{} namespace(s) cannot be served: {}; see status.namespaces",
                conflicts.len(),
                conflicts.join(", ")
            ),
        ));
    }
    status.namespace_count = Some(
        i32::try_from(
            snapshot
                .namespaces
                .iter()
                .filter(|view| view.serves_pair())
                .count(),
        )
        .unwrap_or(i32::MAX),
    );
    // Those that need attention first, then by name.
    listed.sort_by(|a, b| (attention(a) == 0, &a.name).cmp(&(attention(b) == 0, &b.name)));
    listed.truncate(MAX_NAMESPACES_LISTED);
    status.namespaces = listed;
    fan
}

fn attention(entry: &NamespaceStatus) -> usize {
    usize::from(entry.state != NamespaceState::Synced.as_str()) + entry.blocked.len()
}

fn is_conflict(state: &str) -> bool {
    NamespaceState::parse(state).is_some_and(NamespaceState::is_conflict)
}

/// True when `view` is one this object serves: selected, or no longer selected but with a copy
/// that still holds a token of the record (or none left, while pods there read the name), or
/// where someone else's Secret replaced a copy. Anything else (a Secret that only looks like a
/// copy) is not this object's.
pub fn reached(
    mirror: &MirrorObservation,
    status: Option<&StreamingTokenStatus>,
    view: &NamespaceView,
) -> bool {
    if view.selected {
        return true;
    }
    let was_copy = || {
        status
            .iter()
            .flat_map(|status| status.namespaces.iter())
            .any(|entry| {
                entry.name == view.namespace
                    && NamespaceState::parse(&entry.state).is_some_and(NamespaceState::held_a_copy)
            })
    };
    let record = match mirror {
        MirrorObservation::Owned(record) => record,
        _ => return false,
    };
    let tokens = |observed: &super::snapshot::ObservedMirror| -> Vec<crate::token::Token> {
        [&observed.token1, &observed.token2]
            .into_iter()
            .filter_map(|token| {
                token
                    .as_ref()
                    .and_then(|token| token.as_ref().ok())
                    .cloned()
            })
            .collect()
    };
    match &view.copy {
        CopyObservation::Home | CopyObservation::Current { .. } | CopyObservation::Missing => true,
        // Someone else's Secret where a copy was: still checked for pods left behind on it
        // (never written).
        CopyObservation::NotOwned | CopyObservation::ClaimedBy(_) => was_copy(),
        CopyObservation::Read(copy) => {
            let known = tokens(record);
            tokens(copy).iter().any(|token| known.contains(token))
        }
    }
}

enum CopyNeed {
    Nothing,
    Write(MirrorWrite),
    Delete,
}

/// What the copy in `view` needs so that it holds `mirror`.
fn copy_need(snapshot: &Snapshot, view: &NamespaceView, mirror: &MirrorWrite) -> CopyNeed {
    let write = |precondition: Option<String>| {
        CopyNeed::Write(MirrorWrite {
            precondition,
            ..mirror.clone()
        })
    };
    let read_here = snapshot.read_in(view);
    if !view.selected && !read_here {
        return match view.copy {
            CopyObservation::Read(_) | CopyObservation::Current { .. }
                if !snapshot.retain_unselected =>
            {
                CopyNeed::Delete
            }
            _ => CopyNeed::Nothing,
        };
    }
    match &view.copy {
        // In sync with the record as observed: written again only if the record changes now.
        CopyObservation::Current {
            resource_version, ..
        } => {
            if pair::needs_write(mirror, pair::owned_mirror(snapshot)) {
                write(Some(resource_version.clone()))
            } else {
                CopyNeed::Nothing
            }
        }
        CopyObservation::Home | CopyObservation::NotOwned | CopyObservation::ClaimedBy(_) => {
            CopyNeed::Nothing
        }
        // Created only where selected: a leaving namespace's deleted copy is not brought back.
        CopyObservation::Missing if view.selected => write(None),
        CopyObservation::Missing => CopyNeed::Nothing,
        CopyObservation::Read(observed) => {
            if pair::needs_write(mirror, Some(observed)) {
                write(observed.resource_version.clone())
            } else {
                CopyNeed::Nothing
            }
        }
    }
}

/// The state of a namespace and what it means, for status.
fn state(snapshot: &Snapshot, view: &NamespaceView) -> (NamespaceState, String) {
    let secret = &snapshot.secret_name;
    if snapshot.copy_replaced(view) {
        return (
            NamespaceState::SecretReplaced,
            format!(
                "Secret {secret} here was this object's copy and is now someone else's; pods here that read it may still hold Token 1 from before, so rotations wait for them: restart them, or stop selecting this namespace"
            ),
        );
    }
    match &view.copy {
        CopyObservation::NotOwned => {
            return (
                NamespaceState::SecretNotOwned,
                format!(
                    "Secret {secret} exists here and was not created by the operator; it is left alone (delete it, or set spec.secret.name to another name)"
                ),
            );
        }
        CopyObservation::ClaimedBy(other) => {
            return (
                NamespaceState::SecretClaimedByOther,
                format!("Secret {secret} here is managed for {other}; it is left alone"),
            );
        }
        _ => {}
    }
    if view.label_taken {
        return (
            NamespaceState::ConsumerLabelTaken,
            format!(
                "StreamingToken {} lives here and owns the label streamingtoken.io/token: {}; workloads here are not repointed or restarted (pods reading Secret {secret} are still verified)",
                snapshot.name, snapshot.name
            ),
        );
    }
    if !view.selected {
        if !snapshot.read_in(view) && snapshot.retain_unselected {
            return (
                NamespaceState::Retained,
                format!(
                    "no longer selected and no pod reads Secret {secret} here: it is kept as it is and no longer updated (unselectedPolicy: Retain); its Token 1 stops working at the next rotation"
                ),
            );
        }
        return (
            NamespaceState::Leaving,
            format!(
                "no longer selected; Secret {secret} is kept up to date and verified until no pod here reads it, then {}",
                if snapshot.retain_unselected {
                    "kept as it is"
                } else {
                    "deleted"
                }
            ),
        );
    }
    if snapshot.copy_in_sync(view) {
        (
            NamespaceState::Synced,
            format!("Secret {secret} holds the pair"),
        )
    } else if matches!(view.copy, CopyObservation::Missing) {
        (
            NamespaceState::Pending,
            format!("Secret {secret} is being created"),
        )
    } else {
        (
            NamespaceState::Pending,
            format!("Secret {secret} is being updated"),
        )
    }
}

/// Events for namespaces whose state changed since the last status: joined, left, conflicting.
/// Each names its namespace as data ([`Notice::namespace`]).
fn announce(snapshot: &Snapshot, listed: &[NamespaceStatus], events: &mut Vec<Notice>) {
    let before = |name: &str| {
        snapshot
            .status
            .namespaces
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| entry.state.as_str())
    };
    let secret = &snapshot.secret_name;
    for entry in listed {
        let was = before(&entry.name);
        if was == Some(entry.state.as_str()) {
            continue;
        }
        let said = |message: &str| format!("namespace {}: {message}", entry.name);
        let notice = match NamespaceState::parse(&entry.state) {
            Some(NamespaceState::Pending) if was.is_none() => Notice::normal(
                reason::NAMESPACE_ADDED,
                reason::action::MIRROR_SECRET,
                format!(
                    "namespace {} is selected: Secret {secret} is written there",
                    entry.name
                ),
            ),
            Some(NamespaceState::Leaving) => Notice::normal(
                reason::NAMESPACE_LEAVING,
                reason::action::MIRROR_SECRET,
                said(&entry.message),
            ),
            Some(NamespaceState::Retained) => Notice::warning(
                reason::NAMESPACE_RETAINED,
                reason::action::MIRROR_SECRET,
                said(&entry.message),
            ),
            Some(state) if state.is_conflict() => Notice::warning(
                reason::NAMESPACE_CONFLICT,
                reason::action::MIRROR_SECRET,
                said(&entry.message),
            ),
            _ => continue,
        };
        events.push(notice.about_namespace(&entry.name));
    }
    for entry in &snapshot.status.namespaces {
        if !listed.iter().any(|listed| listed.name == entry.name) {
            events.push(
                Notice::normal(
                    reason::NAMESPACE_REMOVED,
                    reason::action::MIRROR_SECRET,
                    format!(
                        "namespace {}: Secret {secret} is no longer managed there",
                        entry.name
                    ),
                )
                .about_namespace(&entry.name),
            );
        }
    }
}
