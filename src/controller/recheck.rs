//! Right after the write that deactivated Token 1: how long the window from the last pod check
//! to the last write was, and every pod that slipped through it, which is evicted at once (its
//! controller starts it again on the new pair) and reported, never left on a dead token.

use super::*;
use crate::decide::after_write::{self, SlippedPod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::EvictParams;

/// True when `plan` wrote a pair of record whose Token 1 is not the one status knew: Token 1
/// was deactivated by a ZeroDowntime rotation (a Restart deactivates first, on purpose).
pub(super) fn deactivated(snapshot: &Snapshot, plan: &Plan) -> bool {
    let promoted = plan.secret.as_ref().is_some_and(|write| {
        snapshot.status.token1.as_ref().map(|token| token.serial)
            != Some(write.identities[0].serial)
    });
    plan.deactivates
        && promoted
        && snapshot.status.token1.is_some()
        && snapshot.spec.rotation.strategy == crate::api::RotationStrategy::ZeroDowntime
}

/// Lists the pods of every namespace that is verified again, finds those that slipped through
/// since `checked_at` (the fresh pod check the deactivation rested on), evicts them, and returns
/// the Warnings that report them.
pub(super) async fn after_deactivation(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    checked_at: Instant,
) -> Vec<decide::Notice> {
    let (namespace, name) = target.key();
    let window = checked_at.elapsed();
    info!(%namespace, %name, window_ms = window.as_millis() as u64, namespaces = snapshot.namespaces.len(), "Token 1 deactivated: from the last pod check to the last write");
    let written_at = jiff::Timestamp::now().as_second();
    let lists: Vec<_> = snapshot
        .namespaces
        .iter()
        .filter(|view| {
            view.verified_here()
                && (view.membership != decide::Membership::Source
                    || matches!(view.copy, CopyObservation::Home))
        })
        .map(|view| {
            let route = super::members::route(target, context, &view.namespace);
            let namespace = view.namespace.clone();
            async move {
                let pods = match route {
                    Ok((client, local)) => pods::list_fresh(&client, &local)
                        .await
                        .map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                (namespace, pods)
            }
        })
        .collect();
    let lists: Vec<_> = futures::stream::iter(lists).buffered(16).collect().await;
    let mut fresh: Vec<(String, Vec<Arc<PodRecord>>)> = Vec::new();
    for (pod_namespace, pods) in lists {
        match pods {
            Ok(pods) => fresh.push((pod_namespace, pods.into_iter().map(Arc::new).collect())),
            Err(error) => {
                warn!(%pod_namespace, error = %error, "pods not listed again after deactivating Token 1");
            }
        }
    }
    let mut notices = Vec::new();
    for slipped in after_write::slipped_through(snapshot, &fresh, written_at) {
        restart(target, context, &slipped).await;
        warn!(%namespace, %name, pod_namespace = %slipped.namespace, pod = %slipped.pod, "a pod slipped through the deactivation window");
        notices.push(after_write::slipped_notice(snapshot, &slipped));
    }
    notices
}

/// Evicts a pod that slipped through (a controller starts it again); a bare pod is only
/// reported.
async fn restart(target: &Target, context: &Context, slipped: &SlippedPod) {
    if !slipped.restartable {
        return;
    }
    let evicted = match super::members::route(target, context, &slipped.namespace) {
        Ok((client, local)) => Api::<Pod>::namespaced(client, &local)
            .evict(&slipped.pod, &EvictParams::default())
            .await
            .map(|_| ())
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = evicted {
        warn!(pod_namespace = %slipped.namespace, pod = %slipped.pod, error = %error, "a pod that slipped through could not be evicted");
    }
}
