//! A `CronJob` (batch/v1): its job template's pod template is repointed like any pod template.
//! Its pods are never rolled: each Job it starts runs to completion. The Jobs it runs now
//! (`status.active`) are named in its observation, and their pods are its pods; a Job it started
//! before the repoint keeps the rotation until it finishes.

use super::template::{CachedWorkload, cached, generation_of, template_body, template_rotation};
use super::typed::{Controls, Typed};
use crate::model::consumer::{
    BatchObservation, ConsumerObservation, ConsumerPatch, Wave, WorkloadKind,
};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::json;

/// The registry's adapter. A CronJob controls its Jobs, not their pods: its pods are found
/// through the Jobs its status names (`status.active`), never guessed from a Job's name.
pub static CRONJOBS: Typed<CronJob> = Typed {
    kind: WorkloadKind::CronJob,
    convert: cache_cronjob,
    body: Some(apply_body),
    controls: Controls::Nothing,
};

/// The server-side-apply body: the job template's pod template fields the operator owns.
fn apply_body(patch: &ConsumerPatch) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": patch.kind.as_str(),
        "metadata": {"name": patch.name},
        "spec": {"jobTemplate": {"spec": {"template": template_body(patch)}}}
    })
}

/// The pod template of a CronJob's job template.
fn pod_template(cronjob: &CronJob) -> PodTemplateSpec {
    cronjob
        .spec
        .job_template
        .spec
        .as_ref()
        .map(|job| job.template.clone())
        .unwrap_or_default()
}

/// Caches a CronJob.
pub fn cache_cronjob(cronjob: &CronJob) -> CachedWorkload {
    let template = pod_template(cronjob);
    cached(&cronjob.metadata, observe(cronjob, &template), &template)
}

/// What a CronJob says: which Jobs run now. It has no rollout of its own (no replicas, no
/// observed generation); its pods decide.
fn observe(cronjob: &CronJob, template: &PodTemplateSpec) -> ConsumerObservation {
    let generation = generation_of(&cronjob.metadata);
    let jobs = cronjob
        .status
        .iter()
        .flat_map(|status| status.active.iter().flatten())
        .filter_map(|reference| reference.name.clone())
        .collect();
    ConsumerObservation {
        kind: WorkloadKind::CronJob,
        namespace: cronjob.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(cronjob.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: cronjob.metadata.name.clone().unwrap_or_default(),
        generation,
        observed_generation: generation,
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy: false,
        desired: 0,
        total: 0,
        updated: 0,
        ready: 0,
        available: 0,
        template_rotation: template_rotation(template),
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: Vec::new(),
        pods: None,
        selector: None,
        batch: Some(BatchObservation {
            jobs,
            fixed_template: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::consumer::Writer;

    #[test]
    fn a_cronjob_is_read_from_its_job_template_and_active_jobs() {
        let cronjob: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "prod", "generation": 3,
                         "labels": {"streamingtoken.io/token": "telemetry"}},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"annotations": {"streamingtoken.io/rotation": "r4.abcd"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "env": [
                    {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": "token1"}}}
                ]}]}
            }}}},
            "status": {"active": [{"kind": "Job", "name": "nightly-29000000"}]}
        }))
        .expect("cronjob");
        let cached = cache_cronjob(&cronjob);
        assert_eq!(cached.tokens, ["telemetry"]);
        let observed = cached.observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        assert_eq!(observed.kind, WorkloadKind::CronJob);
        assert_eq!(observed.template_rotation.as_deref(), Some("r4.abcd"));
        assert_eq!(
            observed.batch,
            Some(BatchObservation {
                jobs: vec!["nightly-29000000".into()],
                fixed_template: false
            })
        );
        assert_eq!(observed.containers[0].name, "app");
        assert_eq!(
            observed.generation, observed.observed_generation,
            "no rollout of its own to wait for"
        );
    }
}
