//! A labelled `Job` (batch/v1). Its pod template cannot change after creation, so it is never
//! patched: its pods, which may hold Token 1, are waited for until they finish.

use super::cache::WorkloadCache;
use super::template::{CachedWorkload, cached, generation_of, template_rotation};
use super::{ConsumerKind, Touched, typed};
use crate::model::consumer::{
    BatchObservation, ConsumerObservation, ConsumerPatch, Wave, WorkloadKind,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Jobs;

impl ConsumerKind for Jobs {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Job
    }

    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        let api = typed::api::<Job>(client, namespace.as_deref());
        futures::future::ready(Some(typed::watch(api, cache, self.kind(), cache_job))).boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        typed::list::<Job>(client, namespace, selector, cache_job).boxed()
    }

    /// Never asked: a Job's template is fixed (the decisions plan no patch for it).
    fn patch<'a>(
        &'a self,
        _client: &'a Client,
        _patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        _pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        (controller.kind == WorkloadKind::Job.as_str()).then(|| controller.name.clone())
    }
}

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
