//! Batch consumers: a CronJob (its job template repointed, the Jobs it runs waited for) and a
//! labelled Job (never patched, waited for), under the independent token ledger.

use crate::support::ledger::Ledger;
use crate::support::{self, fixtures, wait_condition, wait_for};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;
use streaming_token_operator::api::{ROTATION_ANNOTATION, StreamingToken, TOKEN_LABEL};

const TIMEOUT: Duration = Duration::from_secs(240);

/// A pod template that reads `key` of Secret `secret` into STREAMING_TOKEN. Labelled `stotest:
/// runs`, its pods keep running on KWOK (the harness's stages) until their Job ends them, as a
/// job whose work takes long: KWOK would otherwise complete them at once.
fn pod_template(secret: &str, key: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"stotest": "runs"}}, "spec": pod_spec(secret, key)})
}

fn pod_spec(secret: &str, key: &str) -> serde_json::Value {
    json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": "registry.example/job:1", "env": [
            {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        ]}]
    })
}

/// A CronJob firing every minute whose Jobs run until their deadline (`activeDeadlineSeconds`
/// ends each Job, as a real job ends its work).
fn cronjob(name: &str, namespace: &str, token: &str, deadline: i64) -> CronJob {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {TOKEN_LABEL: token}},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {
                "activeDeadlineSeconds": deadline,
                "backoffLimit": 0,
                "template": pod_template(token, "token1")
            }}
        }
    }))
    .expect("cronjob")
}

/// The Jobs the CronJob runs now.
async fn active_jobs(cronjobs: &Api<CronJob>, name: &str) -> Result<Vec<String>, String> {
    let cronjob = cronjobs
        .get(name)
        .await
        .map_err(|error| error.to_string())?;
    Ok(cronjob
        .status
        .and_then(|status| status.active)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|reference| reference.name)
        .collect())
}

/// A CronJob is a consumer: a ZeroDowntime rotation repoints its job template at Token 2 at once,
/// waits for the Job it started before (reported as running, then `JobStillRunning` past
/// `rolloutTimeout`, never restarted mid-run), and deactivates Token 1 only once that Job has
/// ended. Jobs started after the repoint read Token 2. The ledger sees no pod on a dead token.
#[tokio::test(flavor = "multi_thread")]
async fn a_cronjob_is_repointed_and_its_running_job_is_waited_for() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("batch-cron").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let cronjobs: Api<CronJob> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &tokens,
        &fixtures::token("bt", &namespace)
            .with_trigger("t0")
            .rollout_timeout("30s")
            .build(),
    )
    .await;
    wait_condition(&tokens, "bt", "Ready", "True", "TokensReady", TIMEOUT).await;
    support::apply(&cronjobs, &cronjob("every-minute", &namespace, "bt", 75)).await;
    let first = wait_for("the CronJob to start a Job", TIMEOUT, || async {
        let jobs = active_jobs(&cronjobs, "every-minute").await?;
        jobs.first()
            .cloned()
            .ok_or_else(|| "no active Job".to_string())
    })
    .await;

    let ledger = Ledger::start(&admin, &namespace, "bt").await;
    support::set_trigger(&tokens, "bt", "t1").await;
    // Repointed at once: the job template reads Token 2 and carries the rotation's stamp.
    let stamp = support::rotation_stamp(&tokens, "bt", "r1").await;
    wait_for("the job template repointed", TIMEOUT, || async {
        let cronjob = cronjobs
            .get("every-minute")
            .await
            .map_err(|e| e.to_string())?;
        let template =
            serde_json::to_value(&cronjob.spec).map_err(|e| e.to_string())?["jobTemplate"]["spec"]
                ["template"]
                .clone();
        let key =
            template["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"].clone();
        let stamped = template["metadata"]["annotations"][ROTATION_ANNOTATION].clone();
        if key == "token2" && stamped == json!(stamp) {
            Ok(())
        } else {
            Err(format!("key {key}, stamp {stamped}"))
        }
    })
    .await;
    // The Job it started before is waited for, and reported by name past the timeout while it
    // still runs.
    let blocked = wait_for("JobStillRunning reported", TIMEOUT, || async {
        let token = tokens.get("bt").await.map_err(|error| error.to_string())?;
        let status = token.status.unwrap_or_default();
        if status
            .last_rotation
            .as_ref()
            .is_some_and(|last| last.id == "r1")
        {
            return Err("the rotation completed while the first Job may still run".into());
        }
        status
            .consumers
            .iter()
            .flat_map(|summary| summary.blocked.iter())
            .find(|blocked| blocked.reason == "JobStillRunning")
            .map(|blocked| blocked.message.clone())
            .ok_or_else(|| format!("blocked: {:?}", status.consumers))
    })
    .await;
    assert!(
        blocked.contains(&first),
        "names a pod of {first}: {blocked}"
    );
    assert!(
        active_jobs(&cronjobs, "every-minute")
            .await
            .expect("cronjob")
            .contains(&first),
        "the rotation waited on a Job that had already ended"
    );
    // It ends by its deadline; then Token 1 is deactivated.
    support::wait_rotation_done(&tokens, "bt", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &namespace);
    let running_after: Vec<String> = active_jobs(&cronjobs, "every-minute")
        .await
        .expect("cronjob");
    assert!(!running_after.contains(&first), "{first} still runs");
    for name in running_after {
        let job = jobs.get(&name).await.expect("job");
        let annotations = job
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|metadata| metadata.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations.get(ROTATION_ANNOTATION),
            Some(&stamp),
            "Job {name}, started after the repoint, runs the repointed template"
        );
    }
}

/// A labelled Job's template cannot change: it is never patched, and Token 1 is deactivated
/// only once it has ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_job_is_waited_for_and_never_patched() {
    let support::Scenario {
        admin,
        namespace,
        operator: _operator,
    } = support::Scenario::start("batch-job").await;
    let tokens: Api<StreamingToken> = Api::namespaced(admin.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &namespace);
    support::apply(
        &tokens,
        &fixtures::token("jt", &namespace).with_trigger("t0").build(),
    )
    .await;
    wait_condition(&tokens, "jt", "Ready", "True", "TokensReady", TIMEOUT).await;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": namespace, "labels": {TOKEN_LABEL: "jt"}},
        "spec": {"activeDeadlineSeconds": 30, "backoffLimit": 0, "template": pod_template("jt", "token1")}
    }))
    .expect("job");
    support::apply(&jobs, &job).await;
    wait_for("the Job's pod", TIMEOUT, || async {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), &namespace);
        let list = pods
            .list(&kube::api::ListParams::default().labels("job-name=migrate"))
            .await
            .map_err(|error| error.to_string())?;
        (!list.items.is_empty())
            .then_some(())
            .ok_or_else(|| "no pod yet".to_string())
    })
    .await;
    // A consumer (counted, never an unlabelled reader of its own token).
    wait_for("the Job counted as a consumer", TIMEOUT, || async {
        let token = tokens.get("jt").await.map_err(|error| error.to_string())?;
        let status = token.status.unwrap_or_default();
        let total = status.consumers.as_ref().map_or(0, |summary| summary.total);
        let degraded = status
            .conditions
            .iter()
            .find(|condition| condition.type_ == "Degraded")
            .map(|condition| condition.reason.clone());
        (total == 1 && degraded.as_deref() != Some("UnlabelledReader"))
            .then_some(())
            .ok_or_else(|| format!("{total} consumer(s), Degraded {degraded:?}"))
    })
    .await;
    let ledger = Ledger::start(&admin, &namespace, "jt").await;
    support::set_trigger(&tokens, "jt", "t1").await;
    let token = support::wait_rotation_done(&tokens, "jt", "r1", TIMEOUT).await;
    ledger.assert_no_outage().await;
    let after = jobs.get("migrate").await.expect("job");
    assert!(
        after
            .managed_fields()
            .iter()
            .all(|entry| entry.manager.as_deref() != Some("streamingtoken.io/consumers")),
        "the operator applied to a Job"
    );
    // Token 1 was deactivated only after the Job's deadline ended it.
    let completed = token
        .status
        .and_then(|status| status.last_rotation)
        .expect("last rotation");
    let started = after
        .status
        .and_then(|status| status.start_time)
        .expect("the Job started");
    let waited = completed.completed_at.0.duration_since(started.0).as_secs();
    assert!(
        waited >= 29,
        "Token 1 was deactivated {waited}s after the Job started, before its 30 s deadline"
    );
}
