//! Member clusters (`spec.clusters`, pure): where each stands in `status.clusters`, and the
//! Events said when that changes.
//!
//! A member's namespace is one more namespace of the fan-out ([`super::fanout`]), named
//! `<cluster>/<namespace>`: its copy is written, its consumers repointed and its pods verified
//! exactly as a namespace of this cluster's, on lists read afresh from its API server on every
//! pass. A member that cannot be read is [`CopyObservation::Unreachable`]: nothing is written
//! there and it holds every rotation (see [`super::verification`]).
//!
//! [`CopyObservation::Unreachable`]: super::snapshot::CopyObservation::Unreachable

use super::snapshot::{Notice, Snapshot};
use crate::api::{KubeconfigSecretRef, MemberStatus, NamespaceStatus};
use crate::model::member;
use crate::model::reason::{self, NamespaceState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `status.clusters`: one entry per member namespace listed (those of `spec.clusters`, and
/// those removed from it whose copy is still there), in the order of `listed`.
pub fn statuses(snapshot: &Snapshot, listed: &[NamespaceStatus], now: &Time) -> Vec<MemberStatus> {
    listed
        .iter()
        .filter_map(|entry| {
            let (Some(cluster), namespace) = member::split(&entry.name) else {
                return None;
            };
            let before = snapshot
                .status
                .clusters
                .iter()
                .find(|status| status.name == cluster);
            let since = match before {
                Some(before) if before.state == entry.state => before.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            Some(MemberStatus {
                name: cluster.to_string(),
                namespace: namespace.to_string(),
                kubeconfig_secret_ref: credentials(snapshot, cluster)
                    .or_else(|| before.map(|before| before.kubeconfig_secret_ref.clone()))
                    .unwrap_or_default(),
                state: entry.state.clone(),
                // An unreadable member's consumers are not known now: the last count stays.
                consumers: match before {
                    Some(before) if entry.state == NamespaceState::Unreachable.as_str() => {
                        before.consumers
                    }
                    _ => entry.consumers,
                },
                verified: entry.verified,
                last_transition_time: since,
                message: entry.message.clone(),
            })
        })
        .collect()
}

/// The kubeconfig Secret `spec.clusters` names for `cluster`.
fn credentials(snapshot: &Snapshot, cluster: &str) -> Option<KubeconfigSecretRef> {
    snapshot
        .spec
        .clusters
        .iter()
        .find(|member| member.name == cluster)
        .map(|member| member.kubeconfig_secret_ref.clone())
}

/// The Event for a member namespace whose state changed from `was` (`None`: new), if any.
pub fn notice(entry: &NamespaceStatus, was: Option<&str>, secret: &str) -> Option<Notice> {
    let (cluster, namespace) = member::split(&entry.name);
    let cluster = cluster.unwrap_or_default();
    let state = NamespaceState::parse(&entry.state)?;
    let said = |what: &str| format!("member cluster {cluster}: {what}");
    let notice = match state {
        NamespaceState::Unreachable => Notice::warning(
            reason::MEMBER_UNREACHABLE,
            reason::action::MIRROR_SECRET,
            said(&entry.message),
        ),
        _ if was == Some(NamespaceState::Unreachable.as_str()) => Notice::normal(
            reason::MEMBER_REACHABLE,
            reason::action::MIRROR_SECRET,
            said(&format!(
                "answers again ({}: {})",
                entry.state, entry.message
            )),
        ),
        NamespaceState::Pending if was.is_none() => Notice::normal(
            reason::MEMBER_ADDED,
            reason::action::MIRROR_SECRET,
            said(&format!(
                "Secret {secret} is written in namespace {namespace}"
            )),
        ),
        NamespaceState::Leaving | NamespaceState::Retained => Notice::warning(
            reason::MEMBER_LEAVING,
            reason::action::MIRROR_SECRET,
            said(&entry.message),
        ),
        state if state.is_conflict() => Notice::warning(
            reason::NAMESPACE_CONFLICT,
            reason::action::MIRROR_SECRET,
            said(&format!("namespace {namespace}: {}", entry.message)),
        ),
        _ => return None,
    };
    Some(notice.about_namespace(&entry.name))
}

/// The Event for a member namespace no longer listed.
pub fn removed(name: &str, secret: &str) -> Notice {
    let (cluster, namespace) = member::split(name);
    Notice::normal(
        reason::MEMBER_REMOVED,
        reason::action::MIRROR_SECRET,
        format!(
            "member cluster {}: Secret {secret} in namespace {namespace} is no longer managed",
            cluster.unwrap_or_default()
        ),
    )
    .about_namespace(name)
}
