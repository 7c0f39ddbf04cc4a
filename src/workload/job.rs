//! A labelled `Job` (batch/v1). Its pod template cannot change after creation, so it is never
//! patched: its pods, which may hold Token 1, are waited for until they finish.

use super::template::{CachedWorkload, cached, generation_of, template_rotation};
use super::typed::{Controls, Typed};
use crate::model::consumer::{BatchObservation, ConsumerObservation, Wave, WorkloadKind};
use k8s_openapi::api::batch::v1::Job;

/// The registry's adapter. Never patched: a Job's template is fixed.
pub static JOBS: Typed<Job> = Typed {
    kind: WorkloadKind::Job,
    convert: cache_job,
    body: None,
    controls: Controls::Directly,
};

/// Caches a Job.
pub fn cache_job(job: &Job) -> CachedWorkload {
    let template = job
        .spec
        .as_ref()
        .map(|spec| spec.template.clone())
        .unwrap_or_default();
    let generation = generation_of(&job.metadata);
    let observation = ConsumerObservation {
        kind: WorkloadKind::Job,
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(job.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: job.metadata.name.clone().unwrap_or_default(),
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
        template_rotation: template_rotation(&template),
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: Vec::new(),
        pods: None,
        selector: None,
        batch: Some(BatchObservation {
            jobs: Vec::new(),
            fixed_template: true,
        }),
    };
    cached(&job.metadata, observation, &template)
}
