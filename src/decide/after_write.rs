//! Status after writes that did not go as planned, decided from what the writes returned: the
//! driver reports what the API server said ([`RefusedApply`], [`FailedWrite`]) and writes what
//! these functions decide.

use super::snapshot::{Notice, Plan, Requeue, Snapshot, backoff};
use crate::api::{BlockedConsumer, StreamingTokenStatus};
use crate::conditions;
use crate::model::consumer::WorkloadKind;
use crate::model::reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A consumer whose apply the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedApply {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// What the API server said, reduced to status code, reason and fields (no free text).
    pub error: String,
}

/// A write of the plan that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedWrite {
    /// The error's reason (one of [`crate::model::reason`]'s write failures).
    pub reason: &'static str,
    pub message: String,
    /// A resourceVersion conflict: the normal price of optimistic concurrency.
    pub conflict: bool,
}

/// Consumers whose apply the API server refused join `status.consumers.blocked` (reason
/// `ConsumerApplyRefused`) with `Degraded=True ConsumerBlocked`, and a Warning Event when one is
/// newly refused (not already listed so); the reconcile comes back with backoff. The other
/// consumers' writes stand.
pub fn consumers_refused(
    snapshot: &Snapshot,
    plan: &mut Plan,
    refused: &[RefusedApply],
    now: &Time,
) {
    let listed_before = |namespace: &Option<String>, kind: &str, name: &str| {
        snapshot
            .status
            .consumers
            .iter()
            .flat_map(|summary| summary.blocked.iter())
            .any(|blocked| {
                blocked.reason == reason::CONSUMER_APPLY_REFUSED
                    && &blocked.namespace == namespace
                    && blocked.kind == kind
                    && blocked.name == name
            })
    };
    let mut newly = Vec::new();
    let summary = plan.status.consumers.get_or_insert_default();
    for refusal in refused {
        let kind = refusal.kind.as_str();
        let listed = super::consumers::listed_namespace(snapshot, &refusal.namespace);
        if !listed_before(&listed, kind, &refusal.name) {
            newly.push(snapshot.consumer_key(kind, &refusal.namespace, &refusal.name));
        }
        summary.blocked.retain(|blocked| {
            !(blocked.namespace == listed && blocked.kind == kind && blocked.name == refusal.name)
        });
        summary.blocked.push(BlockedConsumer {
            namespace: listed,
            kind: kind.into(),
            name: refusal.name.clone(),
            reason: reason::CONSUMER_APPLY_REFUSED.into(),
            message: format!(
                "the API server refused the operator's apply ({}); fix what refuses it (an admission policy, or a variable that also sets configMapKeyRef or fieldRef); other consumers continue",
                refusal.error
            ),
        });
    }
    summary
        .blocked
        .truncate(super::rotation::MAX_BLOCKED_LISTED);
    let rotation_id = plan
        .status
        .rotation
        .as_ref()
        .map_or("", |rotation| rotation.id.as_str());
    let message = super::rotation::blocked_message(rotation_id, &summary.blocked);
    conditions::set(
        &mut plan.status.conditions,
        conditions::DEGRADED,
        true,
        reason::CONSUMER_BLOCKED,
        message,
        Some(snapshot.generation),
        now,
    );
    if !newly.is_empty() {
        plan.events.push(Notice::warning(
            reason::CONSUMER_APPLY_REFUSED,
            reason::action::ROTATE,
            format!(
                "the API server refused the apply to {}; the other consumers continue",
                newly.join(", ")
            ),
        ));
    }
    plan.requeue = Requeue::After(backoff(snapshot.failures));
}

/// A write the API server refused is reported on the object: `Degraded=True` with the error's
/// reason, and a Warning Event, once per reason (`None` when it already says so). Conflicts are
/// retried silently (`None`).
pub fn write_failed(
    status: &StreamingTokenStatus,
    generation: i64,
    failure: &FailedWrite,
    now: &Time,
) -> Option<(StreamingTokenStatus, Notice)> {
    if failure.conflict {
        return None;
    }
    let already = conditions::get(&status.conditions, conditions::DEGRADED)
        .is_some_and(|condition| condition.status == "True" && condition.reason == failure.reason);
    if already {
        return None;
    }
    let mut status = status.clone();
    conditions::set(
        &mut status.conditions,
        conditions::DEGRADED,
        true,
        failure.reason,
        failure.message.clone(),
        Some(generation),
        now,
    );
    let notice = Notice::warning(
        failure.reason,
        reason::action::RECONCILE,
        failure.message.clone(),
    );
    Some((status, notice))
}

/// A pod found after Token 1 was deactivated that may have read it: it started (or its kubelet
/// may still have served the old value) between the last pod check and the deactivating write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlippedPod {
    pub namespace: String,
    pub pod: String,
    /// It has a controller that starts it again once deleted; a bare pod can only be reported.
    pub restartable: bool,
}

/// The pods of `fresh` (listed again per namespace right after the deactivating write, which
/// ended at `written_at`, API server seconds) that may hold the Token 1 just deactivated: every
/// one that reads the mirror's Token 1 key and was created no later than the kubelet's cache
/// margin after the write. The decision that deactivated found none, so each of these slipped
/// through the window between that check and the write.
pub fn slipped_through(
    snapshot: &Snapshot,
    fresh: &[(String, Vec<std::sync::Arc<crate::model::pod::PodRecord>>)],
    written_at: i64,
) -> Vec<SlippedPod> {
    let token1_key = &snapshot.spec.secret.token1_key;
    let deadline = written_at.saturating_add(super::snapshot::KUBELET_CACHE_MARGIN_SECONDS);
    let mut slipped = Vec::new();
    for (namespace, pods) in fresh {
        for pod in pods {
            let reads_token1 = pod.references.iter().any(|reference| {
                reference.secret == snapshot.secret_name && reference.keys.includes(token1_key)
            });
            if reads_token1 && pod.created_at <= deadline && !pod.terminating() {
                slipped.push(SlippedPod {
                    namespace: namespace.clone(),
                    pod: pod.name.clone(),
                    restartable: pod.owner.is_some(),
                });
            }
        }
    }
    slipped
}

/// The Warning for a pod that slipped through (named as data, so it is shown in its namespace).
pub fn slipped_notice(snapshot: &Snapshot, slipped: &SlippedPod) -> Notice {
    let action = if slipped.restartable {
        "it was deleted at once so its controller starts it again on the new pair"
    } else {
        "it is a bare pod the operator cannot restart: restart it now"
    };
    Notice::warning(
        reason::POD_SLIPPED_THROUGH,
        reason::action::ROTATE,
        format!(
            "Pod {}/{} started reading key {} of Secret {} between the last pod check and the write that deactivated Token 1, so it may hold the deactivated token; {action}",
            slipped.namespace,
            slipped.pod,
            snapshot.spec.secret.token1_key,
            snapshot.secret_name
        ),
    )
    .about_namespace(&slipped.namespace)
}
