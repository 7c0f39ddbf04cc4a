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
//! A namespace that stops being selected is revoked (`Leaving`): its copy keeps the pair it had
//! and never receives a later one, nothing there is repointed or restarted, and pods still
//! reading it are reported, not waited for; the copy is deleted once no pod reads it
//! (`unselectedPolicy: Delete`, after naming the workloads that still reference it) or kept as
//! it is (`Retain`: `Retained`). A namespace being deleted is not revoked: nothing is written
//! there and its pods are verified until they are gone (`Terminating`). A Secret of the
//! mirror's name that is not this object's is never touched. Which namespaces hold or held a
//! copy is kept in `status.copiedNamespaces`, never capped.

use super::members;
use super::pair;
use super::snapshot::{
    CopyObservation, CopyWrite, Membership, MirrorObservation, MirrorWrite, NamespaceView, Notice,
    Snapshot, TokenKind, held_a_copy,
};
use super::verification::NamespaceVerification;
use crate::api::{BlockedConsumer, NamespaceStatus, StreamingTokenStatus};
use crate::model::member;
use crate::model::reason::{self, NamespaceState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Most namespaces listed in status.
pub const MAX_NAMESPACES_LISTED: usize = 200;
/// How the status message of a revoked namespace whose pods still read its copy begins.
const REVOKED_READ: &str = "no longer selected (revoked)";
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

impl FanOut {
    /// Takes in what the copy of `view` needs (a copy deleted under workloads that still
    /// reference it is said first).
    fn need(
        &mut self,
        snapshot: &Snapshot,
        view: &NamespaceView,
        need: CopyNeed,
        events: &mut Vec<Notice>,
    ) {
        match need {
            CopyNeed::Nothing => {}
            CopyNeed::Write(write) => self.copies.push(CopyWrite {
                namespace: view.namespace.clone(),
                write,
            }),
            CopyNeed::Delete => {
                if !view.referencing.is_empty() {
                    events.push(referenced_copy_deleted(snapshot, view));
                }
                self.deletes.push(view.namespace.clone());
            }
        }
    }
}

/// The copies to write and delete for `mirror` (the pair of record as it will be after this
/// reconcile), the namespace list in `status`, and Events for namespaces that changed state.
pub fn plan(
    snapshot: &Snapshot,
    mirror: &MirrorWrite,
    verified: &[NamespaceVerification],
    status: &mut StreamingTokenStatus,
    events: &mut Vec<Notice>,
    now: &Time,
) -> FanOut {
    let mut fan = FanOut::default();
    // A StreamingToken fans out to its member clusters only.
    let members_only = snapshot.kind != TokenKind::Cluster;
    let mut listed: Vec<NamespaceStatus> = Vec::new();
    for (index, view) in snapshot.namespaces.iter().enumerate() {
        if view.membership == Membership::Source
            || (members_only && !member::is_member(&view.namespace))
        {
            continue;
        }
        let state = state(snapshot, view);
        fan.need(snapshot, view, copy_need(snapshot, view, mirror), events);
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
    status.copied_namespaces = copied_namespaces(snapshot, &fan.deletes);
    status.clusters = members::statuses(snapshot, &listed, now);
    if members_only && listed.is_empty() {
        status.namespace_count = None;
        status.namespaces = Vec::new();
        return fan;
    }
    status.namespace_count = Some(
        i32::try_from(
            snapshot
                .namespaces
                .iter()
                .filter(|view| view.serves_pair() && view.membership != Membership::Source)
                .filter(|view| !members_only || member::is_member(&view.namespace))
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

/// The namespaces that hold or held this object's copy, as status keeps them: every
/// namespace reached whose copy is this object's (or is about to be), and every one known
/// before that is still reached (a copy gone while pods there may still read it). A namespace
/// whose copy is deleted now, or that is no longer reached at all, is dropped.
fn copied_namespaces(snapshot: &Snapshot, deleted: &[String]) -> Vec<String> {
    let mut names: Vec<String> = snapshot
        .namespaces
        .iter()
        .filter(|view| view.membership != Membership::Source)
        .filter(|view| !deleted.contains(&view.namespace))
        .filter(|view| {
            let ours = match view.copy {
                CopyObservation::Current { .. } | CopyObservation::Read(_) => true,
                CopyObservation::Missing => view.selected(),
                CopyObservation::Home => false,
                CopyObservation::NotOwned
                | CopyObservation::ClaimedBy(_)
                | CopyObservation::Unreachable(_) => false,
            };
            ours || held_a_copy(&snapshot.status, &view.namespace)
        })
        .map(|view| view.namespace.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The Warning said before a revoked copy that workloads still reference is deleted.
fn referenced_copy_deleted(snapshot: &Snapshot, view: &NamespaceView) -> Notice {
    Notice::warning(
        reason::REVOKED_COPY_REFERENCED,
        reason::action::MIRROR_SECRET,
        format!(
            "namespace {}: Secret {} is deleted (no longer selected, no pod reads it) while {} still reference it: their next pods fail to start until they stop reading it",
            view.namespace,
            snapshot.secret_name,
            view.referencing.join(", ")
        ),
    )
    .about_namespace(&view.namespace)
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
    if matches!(view.membership, Membership::Selected | Membership::Source) {
        return true;
    }
    let was_copy = || status.is_some_and(|status| held_a_copy(status, &view.namespace));
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
        CopyObservation::Home
        | CopyObservation::Current { .. }
        | CopyObservation::Missing
        | CopyObservation::Unreachable(_) => true,
        // Someone else's Secret where a copy was: still checked for pods left behind on it
        // (never written).
        CopyObservation::NotOwned | CopyObservation::ClaimedBy(_) => was_copy(),
        CopyObservation::Read(copy) => {
            let known = tokens(record);
            was_copy() || tokens(copy).iter().any(|token| known.contains(token))
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
            // A member cluster's copy has no owner there: an owner reference to an object of
            // another cluster would have that cluster's garbage collector delete it.
            owned: mirror.owned && !member::is_member(&view.namespace),
            ..mirror.clone()
        })
    };
    match view.membership {
        Membership::Selected => {}
        // A revoked copy never receives a later pair: deleted once nothing reads it.
        Membership::Revoked => {
            return match view.copy {
                CopyObservation::Read(_) | CopyObservation::Current { .. }
                    if !snapshot.retain_unselected && !snapshot.read_in(view) =>
                {
                    CopyNeed::Delete
                }
                _ => CopyNeed::Nothing,
            };
        }
        Membership::Terminating | Membership::Source => return CopyNeed::Nothing,
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
        CopyObservation::Home
        | CopyObservation::NotOwned
        | CopyObservation::ClaimedBy(_)
        | CopyObservation::Unreachable(_) => CopyNeed::Nothing,
        CopyObservation::Missing => write(None),
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
        CopyObservation::Unreachable(why) => {
            return (
                NamespaceState::Unreachable,
                match view.membership {
                    Membership::Revoked => format!(
                        "{why}; removed from spec.clusters: Secret {secret} there receives no later pair, and is deleted once it can be read again and no pod reads it"
                    ),
                    _ => format!(
                        "{why}; nothing is written there, and Token 1 stays active until every pod there is verified again"
                    ),
                },
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
    match view.membership {
        Membership::Terminating => {
            return (
                NamespaceState::Terminating,
                format!(
                    "the namespace is being deleted: nothing is written there, and rotations wait until no pod there may still hold Token 1 (read from Secret {secret})"
                ),
            );
        }
        Membership::Revoked => return revoked(snapshot, view),
        Membership::Selected | Membership::Source => {}
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

/// The state of a namespace no longer selected: its copy is revoked.
fn revoked(snapshot: &Snapshot, view: &NamespaceView) -> (NamespaceState, String) {
    let secret = &snapshot.secret_name;
    let readers = readers_of(snapshot, view);
    if readers.is_empty() {
        return if snapshot.retain_unselected {
            (
                NamespaceState::Retained,
                format!(
                    "no longer selected: Secret {secret} is kept as it is and receives no later pair (unselectedPolicy: Retain); its Token 1 stops working at the next rotation"
                ),
            )
        } else {
            (
                NamespaceState::Leaving,
                format!("no longer selected: Secret {secret} is deleted"),
            )
        };
    }
    (
        if snapshot.retain_unselected {
            NamespaceState::Retained
        } else {
            NamespaceState::Leaving
        },
        format!(
            "{REVOKED_READ}: Secret {secret} keeps the pair it had and receives no later one; {} pod(s) here still read it ({}) and lose access when its Token 1 is deactivated{}",
            readers.len(),
            readers
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if snapshot.retain_unselected {
                ""
            } else {
                "; it is deleted once none reads it"
            }
        ),
    )
}

/// The pods of `view` that reference the mirror Secret's name (`Pod/name`).
fn readers_of(snapshot: &Snapshot, view: &NamespaceView) -> Vec<String> {
    view.pods
        .iter()
        .filter(|pod| {
            pod.references
                .iter()
                .any(|reference| reference.secret == snapshot.secret_name)
        })
        .map(|pod| format!("Pod/{}", pod.name))
        .collect()
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
        if member::is_member(&entry.name) {
            events.extend(members::notice(entry, was, secret));
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
            Some(NamespaceState::Leaving | NamespaceState::Retained)
                if entry.message.starts_with(REVOKED_READ) =>
            {
                Notice::warning(
                    reason::REVOKED_COPY_READ,
                    reason::action::MIRROR_SECRET,
                    said(&entry.message),
                )
            }
            Some(NamespaceState::Leaving) => Notice::normal(
                reason::NAMESPACE_LEAVING,
                reason::action::MIRROR_SECRET,
                said(&entry.message),
            ),
            Some(NamespaceState::Terminating) => Notice::normal(
                reason::NAMESPACE_TERMINATING,
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
    announce_removed(snapshot, listed, events);
}

/// Events for namespaces listed before and no longer.
fn announce_removed(snapshot: &Snapshot, listed: &[NamespaceStatus], events: &mut Vec<Notice>) {
    let secret = &snapshot.secret_name;
    for entry in &snapshot.status.namespaces {
        if listed.iter().any(|listed| listed.name == entry.name) {
            continue;
        }
        events.push(if member::is_member(&entry.name) {
            members::removed(&entry.name, secret)
        } else {
            Notice::normal(
                reason::NAMESPACE_REMOVED,
                reason::action::MIRROR_SECRET,
                format!(
                    "namespace {}: Secret {secret} is no longer managed there",
                    entry.name
                ),
            )
            .about_namespace(&entry.name)
        });
    }
}
