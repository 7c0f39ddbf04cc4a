//! Status after refused and failed writes (`decide::after_write`).

use super::*;
use crate::decide::after_write::{FailedWrite, RefusedApply, consumers_refused, write_failed};
use crate::model::reason;

fn refusal(name: &str) -> RefusedApply {
    RefusedApply {
        kind: WorkloadKind::Deployment,
        namespace: "prod".into(),
        name: name.into(),
        error: "422 Invalid (spec.template.spec.containers[0].env[0].valueFrom)".into(),
    }
}

fn blocked_names(plan: &Plan) -> Vec<(String, String)> {
    plan.status
        .consumers
        .iter()
        .flat_map(|summary| summary.blocked.iter())
        .map(|blocked| (blocked.name.clone(), blocked.reason.clone()))
        .collect()
}

#[test]
fn refused_applies_block_degrade_and_are_announced_once() {
    // (refused now, already listed as refused before, Events expected)
    let cases: [(&[&str], &[&str], usize); 4] = [
        (&["api"], &[], 1),
        (&["api", "worker"], &[], 1),
        (&["api"], &["api"], 0),
        (&["api", "worker"], &["api"], 1),
    ];
    for (refused, before, events) in cases {
        let mut snapshot = fixture().snapshot;
        snapshot.status.consumers = Some(crate::api::ConsumerSummary {
            blocked: before
                .iter()
                .map(|name| crate::api::BlockedConsumer {
                    namespace: None,
                    kind: "Deployment".into(),
                    name: (*name).into(),
                    reason: reason::CONSUMER_APPLY_REFUSED.into(),
                    message: String::new(),
                })
                .collect(),
            ..Default::default()
        });
        let mut plan = crate::decide::plan(&snapshot, &at(10));
        plan.events.clear();
        let refusals: Vec<RefusedApply> = refused.iter().map(|name| refusal(name)).collect();
        consumers_refused(&snapshot, &mut plan, &refusals, &at(10));
        let listed = blocked_names(&plan);
        assert_eq!(
            listed,
            refused
                .iter()
                .map(|name| (name.to_string(), reason::CONSUMER_APPLY_REFUSED.to_string()))
                .collect::<Vec<_>>(),
            "{refused:?} after {before:?}"
        );
        let degraded = crate::conditions::get(&plan.status.conditions, crate::conditions::DEGRADED)
            .expect("Degraded set");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", reason::CONSUMER_BLOCKED)
        );
        assert_eq!(plan.events.len(), events, "{refused:?} after {before:?}");
        for notice in &plan.events {
            assert_eq!(notice.reason, reason::CONSUMER_APPLY_REFUSED);
            for name in refused {
                assert_eq!(
                    notice.message.contains(&format!("Deployment/{name}")),
                    !before.contains(name),
                    "only the newly refused are announced: {}",
                    notice.message
                );
            }
        }
        assert!(
            matches!(plan.requeue, Requeue::After(_)),
            "comes back with backoff"
        );
        let messages: Vec<&str> = plan
            .status
            .consumers
            .iter()
            .flat_map(|summary| summary.blocked.iter())
            .map(|blocked| blocked.message.as_str())
            .collect();
        assert!(
            messages
                .iter()
                .all(|message| message.contains("422 Invalid")),
            "{messages:?}"
        );
    }
}

#[test]
fn a_failed_write_is_reported_once_per_reason_and_a_conflict_never() {
    let failure = |reason: &'static str, conflict: bool| FailedWrite {
        reason,
        message: format!("{reason}: 403 Forbidden"),
        conflict,
    };
    let degraded_with = |reason: &str| {
        let mut status = StreamingTokenStatus::default();
        crate::conditions::set(
            &mut status.conditions,
            crate::conditions::DEGRADED,
            true,
            reason,
            "before",
            Some(1),
            &at(0),
        );
        status
    };
    // (status before, failure, reported)
    let cases = [
        (
            StreamingTokenStatus::default(),
            failure(reason::APPLY_SECRET_FAILED, false),
            true,
        ),
        (
            StreamingTokenStatus::default(),
            failure(reason::PATCH_STATUS_FAILED, true),
            false,
        ),
        (
            degraded_with(reason::APPLY_SECRET_FAILED),
            failure(reason::APPLY_SECRET_FAILED, false),
            false,
        ),
        (
            degraded_with(reason::APPLY_SECRET_FAILED),
            failure(reason::APPLY_CONSUMER_FAILED, false),
            true,
        ),
    ];
    for (before, failure, reported) in cases {
        let outcome = write_failed(&before, 3, &failure, &at(5));
        assert_eq!(outcome.is_some(), reported, "{failure:?}");
        if let Some((status, notice)) = outcome {
            let degraded = crate::conditions::get(&status.conditions, crate::conditions::DEGRADED)
                .expect("Degraded");
            assert_eq!(degraded.reason, failure.reason);
            assert_eq!(degraded.observed_generation, Some(3));
            assert_eq!(notice.reason, failure.reason);
            assert_eq!(notice.severity, Severity::Warning);
            assert_eq!(notice.message, failure.message);
        }
    }
}

#[test]
fn a_pod_that_read_token1_around_the_deactivating_write_slipped_through() {
    let fixture = fixture().established(("one", "two"), (1, 2));
    let written_at = 1_800_000_100;
    let mut early = pod_record("early", Some(("ReplicaSet", "late-1")), "token1", None);
    Arc::make_mut(&mut early).created_at = written_at - 3;
    let mut cached = pod_record("cached", None, "token1", None);
    Arc::make_mut(&mut cached).created_at = written_at + KUBELET_CACHE_MARGIN_SECONDS;
    let mut after = pod_record("after", Some(("ReplicaSet", "late-1")), "token1", None);
    Arc::make_mut(&mut after).created_at = written_at + KUBELET_CACHE_MARGIN_SECONDS + 1;
    let mut on_token2 = pod_record("repointed", Some(("ReplicaSet", "api-2")), "token2", None);
    Arc::make_mut(&mut on_token2).created_at = written_at - 60;
    let fresh = vec![("team".to_string(), vec![early, cached, after, on_token2])];
    let slipped =
        crate::decide::after_write::slipped_through(&fixture.snapshot, &fresh, written_at);
    assert_eq!(
        slipped,
        [
            crate::decide::after_write::SlippedPod {
                namespace: "team".into(),
                pod: "early".into(),
                restartable: true
            },
            crate::decide::after_write::SlippedPod {
                namespace: "team".into(),
                pod: "cached".into(),
                restartable: false
            }
        ]
    );
    let notice = crate::decide::after_write::slipped_notice(&fixture.snapshot, &slipped[1]);
    assert_eq!(notice.reason, "PodSlippedThrough");
    assert!(notice.message.contains("bare pod"), "{}", notice.message);
}
