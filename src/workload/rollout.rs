//! An Argo Rollouts `Rollout` (argoproj.io/v1alpha1), watched as a dynamic object: its CRD may be
//! absent. Its ReplicaSets are `<rollout>-<rollouts-pod-template-hash>`.

use super::cache::WorkloadCache;
use super::template::{CachedWorkload, cached, generation_of, pod_selector, template_rotation};
use super::typed::Controls;
use super::{ConsumerKind, Touched, manager_of, typed};
use crate::api::ROTATION_ANNOTATION;
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Wave, WorkloadKind};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::info;

/// The label Argo Rollouts puts on a Rollout's pods (its ReplicaSets are `<rollout>-<hash>`).
const ROLLOUTS_POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

pub struct Rollouts;

impl ConsumerKind for Rollouts {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Rollout
    }

    /// Served when the Rollout CRD is installed (looked up once, at start).
    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        async move {
            let api: Api<DynamicObject> = match &namespace {
                None => Api::all_with(client, &rollout_resource()),
                Some(namespace) => Api::namespaced_with(client, namespace, &rollout_resource()),
            };
            match api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(_) => {
                    info!("Argo Rollouts is installed: Rollouts labelled as consumers are served");
                    Some(typed::watch(api, cache, WorkloadKind::Rollout, cache_rollout))
                }
                Err(error) => {
                    info!(error = %crate::error::api_summary(&error), "Argo Rollouts is not installed (or not readable): Rollouts are not watched; restart the operator after installing it");
                    None
                }
            }
        }
        .boxed()
    }

    fn list<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CachedWorkload>, kube::Error>> {
        async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &rollout_resource());
            match api.list(&ListParams::default().labels(selector)).await {
                Ok(list) => Ok(list.items.iter().map(cache_rollout).collect()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
                Err(error) => Err(error),
            }
        }
        .boxed()
    }

    /// Read, changed in place, written back with the resourceVersion it was read at (a conflict
    /// if it changed since; retried): the Rollout CRD declares no list merge keys, so a
    /// server-side apply would replace the containers list.
    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &patch.namespace, &rollout_resource());
            let current = api.get(&patch.name).await?;
            let mut template = current.data["spec"]["template"].clone();
            apply_to_template(patch, &mut template);
            if template == current.data["spec"]["template"] {
                return Ok(());
            }
            let body = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"template": template},
            });
            let params = PatchParams {
                field_manager: Some(manager_of(patch).into()),
                ..PatchParams::default()
            };
            api.patch(&patch.name, &params, &Patch::Merge(body))
                .await
                .map(drop)
        }
        .boxed()
    }

    fn controls(
        &self,
        controller: &OwnerReference,
        pod_labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        Controls::ThroughReplicaSets(ROLLOUTS_POD_TEMPLATE_HASH_LABEL).owner(
            WorkloadKind::Rollout,
            controller,
            pod_labels,
        )
    }
}

/// The Argo Rollouts `Rollout` resource, watched as a dynamic object (its CRD may be absent).
pub fn rollout_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// True when every pause condition is a canary step's pause and the current step's pause has a
/// duration: it ends by itself.
fn timed_step_pause(data: &Value) -> bool {
    let status = &data["status"];
    let Some(conditions) = status["pauseConditions"].as_array() else {
        return false;
    };
    let all_step_pauses = !conditions.is_empty()
        && conditions
            .iter()
            .all(|condition| condition["reason"] == "CanaryPauseStep");
    let step = status["currentStepIndex"]
        .as_u64()
        .and_then(|index| usize::try_from(index).ok())
        .and_then(|index| data["spec"]["strategy"]["canary"]["steps"].get(index));
    let duration = step.map(|step| &step["pause"]["duration"]);
    let timed = match duration {
        Some(Value::String(text)) => !text.is_empty() && text != "0" && text != "0s",
        Some(Value::Number(number)) => number.as_i64().is_some_and(|seconds| seconds > 0),
        _ => false,
    };
    all_step_pauses && timed
}

/// Caches an Argo Rollouts `Rollout`: its pod template (`spec.template`, a PodTemplateSpec) and
/// what its own status says of the rollout. A Rollout is rolled out when its controller has
/// observed the latest generation, every replica is updated, ready and available, and the new
/// revision is the stable one (`status.stableRS` is `status.currentPodHash`: a canary fully
/// promoted, a blue-green switched); paused (`spec.paused`, a pause without an end: a canary step
/// without a duration, an analysis) or aborted (`status.abort`) is blocked. A canary step's
/// timed pause is a rollout in progress.
pub fn cache_rollout(rollout: &kube::api::DynamicObject) -> CachedWorkload {
    let data = &rollout.data;
    let template: PodTemplateSpec =
        serde_json::from_value(data["spec"]["template"].clone()).unwrap_or_default();
    let status = &data["status"];
    let int = |value: &Value| -> i32 {
        value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .unwrap_or(0)
    };
    // Argo Rollouts writes observedGeneration as a string.
    let observed_generation = match &status["observedGeneration"] {
        Value::String(text) => text.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    };
    // A canary step's timed pause is the rollout running its course; only a pause without an
    // end (a step without a duration, `spec.paused`, an inconclusive analysis) blocks.
    let held = status["pauseConditions"]
        .as_array()
        .is_some_and(|conditions| !conditions.is_empty())
        || status["controllerPause"].as_bool().unwrap_or(false);
    let paused =
        data["spec"]["paused"].as_bool().unwrap_or(false) || (held && !timed_step_pause(data));
    let promoted = match (
        status["stableRS"].as_str(),
        status["currentPodHash"].as_str(),
    ) {
        (Some(stable), Some(current)) => stable == current,
        _ => false,
    };
    let base = ConsumerObservation {
        kind: WorkloadKind::Rollout,
        namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(rollout.metadata.labels.as_ref()),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&rollout.metadata),
        observed_generation,
        paused,
        progress_deadline_exceeded: false,
        on_delete_strategy: false,
        aborted: status["abort"].as_bool().unwrap_or(false),
        promoted,
        desired: data["spec"]["replicas"]
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .unwrap_or(1),
        total: int(&status["replicas"]),
        updated: int(&status["updatedReplicas"]),
        ready: int(&status["readyReplicas"]),
        available: int(&status["availableReplicas"]),
        template_rotation: template_rotation(&template),
        containers: Vec::new(),
        pods: None,
        selector: serde_json::from_value::<
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        >(data["spec"]["selector"].clone())
        .ok()
        .as_ref()
        .and_then(pod_selector),
        batch: None,
    };
    cached(&rollout.metadata, base, &template)
}
/// This patch applied to a whole pod template (JSON): for a Rollout, whose CRD declares no
/// list merge keys, so server-side apply would replace the containers list. Variables are
/// set in place (or added), nothing else is touched.
fn apply_to_template(patch: &ConsumerPatch, template: &mut Value) {
    template["metadata"]["annotations"][ROTATION_ANNOTATION] = json!(patch.rotation_id);
    template["metadata"]["labels"][crate::api::TOKEN_LABEL] = json!(patch.token_name);
    let Some(repoint) = &patch.repoint else {
        return;
    };
    let value_from = json!({"secretKeyRef": {"name": repoint.secret, "key": repoint.key}});
    for container in &repoint.containers {
        let list = if container.init {
            "initContainers"
        } else {
            "containers"
        };
        let Some(target) = template["spec"][list]
            .as_array_mut()
            .and_then(|containers| {
                containers
                    .iter_mut()
                    .find(|candidate| candidate["name"] == json!(container.name))
            })
        else {
            continue;
        };
        if !target["env"].is_array() {
            target["env"] = json!([]);
        }
        let Some(env) = target["env"].as_array_mut() else {
            continue;
        };
        for variable in &container.variables {
            match env
                .iter_mut()
                .find(|entry| entry["name"] == json!(variable))
            {
                Some(entry) => {
                    *entry = json!({"name": variable, "valueFrom": value_from.clone()});
                }
                None => env.push(json!({"name": variable, "valueFrom": value_from.clone()})),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(step_pause: Value, conditions: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "cn", "namespace": "prod"},
            "spec": {
                "selector": {"matchLabels": {"app": "cn"}},
                "template": {"spec": {"containers": [{"name": "app"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": step_pause}]}}
            },
            "status": {"currentStepIndex": 1, "controllerPause": true, "pauseConditions": conditions}
        }))
        .expect("rollout")
    }

    #[test]
    fn a_timed_canary_pause_is_a_rollout_in_progress_and_an_endless_one_blocks() {
        let step = json!([{"reason": "CanaryPauseStep", "startTime": "2026-12-06T10:00:00Z"}]);
        let analysis =
            json!([{"reason": "InconclusiveAnalysis", "startTime": "2026-12-06T10:00:00Z"}]);
        let cases = [
            (json!({"duration": "20s"}), step.clone(), false),
            (json!({"duration": 20}), step.clone(), false),
            (json!({}), step, true),
            (json!({"duration": "20s"}), analysis, true),
        ];
        for (pause, conditions, blocked) in cases {
            let observed = cache_rollout(&rollout(pause.clone(), conditions.clone()))
                .observe("STREAMING_TOKEN", "t");
            assert_eq!(observed.paused, blocked, "{pause} {conditions}");
        }
    }
}
