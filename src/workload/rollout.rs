//! An Argo Rollouts `Rollout` (argoproj.io/v1alpha1), watched as a dynamic object: its CRD may be
//! absent, or installed after the operator started (then its CustomResourceDefinition is watched
//! by name, or, where the operator may not read it, the Rollout API is looked for every 30 s, and
//! Rollouts are served from the moment it is). Its ReplicaSets are
//! `<rollout>-<rollouts-pod-template-hash>`.
//!
//! Its pod template is its own `spec.template`, or, with `spec.workloadRef`, the template of the
//! Deployment (ReplicaSet, PodTemplate) it names, which Argo Rollouts copies into the Rollout's
//! ReplicaSets. An own template is read, changed in place and written back whole (the CRD
//! declares no list merge keys, so server-side apply would replace the containers list), with a
//! record of the variables repointed ([`REPOINTED_ANNOTATION`]): the CRD's lists are atomic, so
//! managedFields cannot say, as they do for a Deployment, which variables the operator set, and a
//! Git revert must be told from a variable never repointed. A referenced template is repointed
//! where it lives, with server-side apply like any Deployment's; such a Rollout is never given a
//! template (Argo Rollouts refuses one that has both).

use super::cache::WorkloadCache;
use super::template::{
    CachedWorkload, atomic_key_owners, cached_with, generation_of, key_owners, pod_selector,
    template_body, template_rotation, template_writers,
};
use super::typed::Controls;
use super::{ConsumerKind, Touched, manager_of};
use crate::api::TOKEN_LABEL;
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, Repoint, Wave, WorkloadKind};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DynamicObject, ListParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The label Argo Rollouts puts on a Rollout's pods (its ReplicaSets are `<rollout>-<hash>`).
const ROLLOUTS_POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// The Rollout CRD, watched by name while Argo Rollouts is not installed.
const ROLLOUT_CRD: &str = "rollouts.argoproj.io";
/// How often the Rollout API is looked for where the operator may not read its CRD (a
/// namespaced install: Roles cannot grant a cluster-scoped read).
const LOOK_AGAIN: Duration = Duration::from_secs(30);
/// The field manager of the Argo Rollouts controller. It writes a Rollout back after each change
/// (normalizing its containers), so it then owns the atomic containers list: never the one that
/// set a variable back.
const ROLLOUTS_CONTROLLER_MANAGER: &str = "argo-rollouts";
/// The variables the operator pointed at Token 2 in a Rollout's own template, and the rotation
/// that did, written together with them: `{"rotation": "r1.…", "containers": {"app":
/// ["STREAMING_TOKEN"]}}`. A variable it lists that reads Token 1 again while the template still
/// carries that rotation's stamp was set back by someone else (`EnvVarReverted`).
pub const REPOINTED_ANNOTATION: &str = "streamingtoken.io/repointed";

pub struct Rollouts;

impl ConsumerKind for Rollouts {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Rollout
    }

    /// Served when the Rollout CRD is installed, at start or later.
    fn watch(
        &self,
        client: Client,
        namespace: Option<String>,
        cache: Arc<WorkloadCache>,
    ) -> BoxFuture<'static, Option<BoxStream<'static, Touched>>> {
        async move {
            let api: Api<DynamicObject> = match &namespace {
                None => Api::all_with(client.clone(), &rollout_resource()),
                Some(namespace) => {
                    Api::namespaced_with(client.clone(), namespace, &rollout_resource())
                }
            };
            match api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(_) => {
                    info!("Argo Rollouts is installed: Rollouts labelled as consumers are served");
                    Some(watch_rollouts(client, api, cache))
                }
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    info!(error = %crate::error::api_summary(&kube::Error::Api(status)), "Rollouts are not readable (RBAC): Rollouts are not watched");
                    None
                }
                Err(error) => {
                    info!(error = %crate::error::api_summary(&error), "Argo Rollouts is not installed: Rollouts will be served once it is");
                    Some(watch_when_served(client, api, cache))
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
            let list = match api.list(&ListParams::default().labels(selector)).await {
                Ok(list) => list,
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
                Err(error) => return Err(error),
            };
            let mut found = Vec::new();
            for rollout in list.items {
                found.push(cache_resolved(&resolve(client, rollout).await));
            }
            Ok(found)
        }
        .boxed()
    }

    /// An own template: read, changed in place, written back with the resourceVersion it was
    /// read at (a conflict if it changed since; retried). A template the Rollout takes from its
    /// `spec.workloadRef`: applied to that workload.
    fn patch<'a>(
        &'a self,
        client: &'a Client,
        patch: &'a ConsumerPatch,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &patch.namespace, &rollout_resource());
            let current = api.get(&patch.name).await?;
            match workload_ref(&current.data) {
                None => patch_own_template(&api, &current, patch).await,
                Some(Ok(reference)) => patch_workload(client, &reference, patch).await,
                // Argo Rollouts refuses such a Rollout itself (InvalidSpec); it is never given a
                // template of its own.
                Some(Err(unsupported)) => {
                    warn!(namespace = %patch.namespace, rollout = %patch.name, workload_ref = %unsupported, "the Rollout's spec.workloadRef names a kind Argo Rollouts takes no template from: nothing written");
                    Ok(())
                }
            }
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
pub fn rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// The labelled Rollouts, watched into the cache, each with the workload its `spec.workloadRef`
/// names read when the Rollout changes (Argo Rollouts writes the referenced workload's new
/// generation on the Rollout whenever that workload changes).
fn watch_rollouts(
    client: Client,
    api: Api<DynamicObject>,
    cache: Arc<WorkloadCache>,
) -> BoxStream<'static, Touched> {
    cache.require(WorkloadKind::Rollout);
    let config = watcher::Config::default()
        .labels(TOKEN_LABEL)
        .any_semantic();
    watcher(api, config)
        .default_backoff()
        .then(move |event| resolve_event(client.clone(), event))
        .inspect(move |event| {
            if let Ok(event) = event {
                cache.apply(WorkloadKind::Rollout, event, cache_resolved);
            }
        })
        .touched_objects()
        .filter_map(|result| {
            futures::future::ready(result.ok().map(|resolved: Resolved| Touched {
                namespace: resolved.namespace().unwrap_or_default(),
                tokens: crate::model::consumer::tokens_of(
                    resolved.rollout.metadata.labels.as_ref(),
                    resolved.rollout.metadata.annotations.as_ref(),
                ),
                labels: resolved.labels().clone(),
            }))
        })
        .boxed()
}

/// [`watch_rollouts`] from the moment the API server serves Rollouts.
fn watch_when_served(
    client: Client,
    api: Api<DynamicObject>,
    cache: Arc<WorkloadCache>,
) -> BoxStream<'static, Touched> {
    futures::stream::once(async move {
        wait_until_served(&client, &api).await;
        info!("Argo Rollouts was installed: Rollouts labelled as consumers are served from now on");
        watch_rollouts(client, api, cache)
    })
    .flatten()
    .boxed()
}

/// Waits until Rollouts can be listed: on every change of the Rollout CRD (watched by name), or
/// every [`LOOK_AGAIN`] where the operator may not read CRDs.
async fn wait_until_served(client: &Client, api: &Api<DynamicObject>) {
    let crds: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let by_name = format!("metadata.name={ROLLOUT_CRD}");
    if let Err(kube::Error::Api(status)) = crds.list(&ListParams::default().fields(&by_name)).await
        && status.code == 403
    {
        info!(every = ?LOOK_AGAIN, "the Rollout CRD is not readable (a namespaced install): looking for the Rollout API periodically");
        loop {
            tokio::time::sleep(LOOK_AGAIN).await;
            if served(api).await {
                return;
            }
        }
    }
    let mut changes = watcher(crds, watcher::Config::default().fields(&by_name))
        .default_backoff()
        .touched_objects()
        .boxed();
    while let Some(change) = changes.next().await {
        if change.is_ok() && established(api).await {
            return;
        }
    }
}

/// Whether Rollouts can be listed.
async fn served(api: &Api<DynamicObject>) -> bool {
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .is_ok()
}

/// Whether Rollouts can be listed within about half a minute of their CRD's change (a new CRD
/// is served once the API server has established it).
async fn established(api: &Api<DynamicObject>) -> bool {
    let mut wait = Duration::from_millis(250);
    for _ in 0..8 {
        if served(api).await {
            return true;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    false
}

/// A Rollout, with the workload its `spec.workloadRef` names when it has one (as read when the
/// Rollout was last seen; `None` when it could not be read).
#[derive(Clone, Debug)]
pub struct Resolved {
    rollout: DynamicObject,
    workload: Option<DynamicObject>,
}

impl kube::Resource for Resolved {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Rollout".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "argoproj.io".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "rollouts".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.rollout.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.rollout.metadata
    }
}

/// The Rollout of a watch event, resolved.
async fn resolve_event(
    client: Client,
    event: Result<watcher::Event<DynamicObject>, watcher::Error>,
) -> Result<watcher::Event<Resolved>, watcher::Error> {
    Ok(match event? {
        watcher::Event::Apply(rollout) => watcher::Event::Apply(resolve(&client, rollout).await),
        watcher::Event::InitApply(rollout) => {
            watcher::Event::InitApply(resolve(&client, rollout).await)
        }
        watcher::Event::Delete(rollout) => watcher::Event::Delete(Resolved {
            rollout,
            workload: None,
        }),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// Reads the workload `rollout`'s `spec.workloadRef` names, if any.
async fn resolve(client: &Client, rollout: DynamicObject) -> Resolved {
    let workload = match workload_ref(&rollout.data) {
        Some(Ok(reference)) => {
            let namespace = rollout.namespace().unwrap_or_default();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &reference.resource);
            match api.get(&reference.name).await {
                Ok(workload) => Some(workload),
                Err(error) => {
                    info!(%namespace, rollout = %rollout.name_any(), workload = %reference.name, error = %crate::error::api_summary(&error), "the workload a Rollout's spec.workloadRef names could not be read");
                    None
                }
            }
        }
        _ => None,
    };
    Resolved { rollout, workload }
}

/// The workload a Rollout's `spec.workloadRef` names: one of the kinds Argo Rollouts takes a pod
/// template from.
struct WorkloadRef {
    resource: ApiResource,
    name: String,
    /// Where its pod template is.
    template_path: &'static [&'static str],
}

/// The Rollout's `spec.workloadRef`: `None` without one; an error naming what it names when
/// Argo Rollouts takes no template from that.
fn workload_ref(data: &Value) -> Option<Result<WorkloadRef, String>> {
    let reference = data["spec"]
        .get("workloadRef")
        .filter(|reference| !reference.is_null())?;
    let api_version = reference["apiVersion"].as_str().unwrap_or_default();
    let kind = reference["kind"].as_str().unwrap_or_default();
    let name = reference["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let known: Option<(&str, &'static [&'static str])> = match (group, kind) {
        ("apps", "Deployment") => Some(("deployments", &["spec", "template"])),
        ("apps", "ReplicaSet") => Some(("replicasets", &["spec", "template"])),
        ("", "PodTemplate") => Some(("podtemplates", &["template"])),
        _ => None,
    };
    let Some((plural, template_path)) = known.filter(|_| !name.is_empty() && !version.is_empty())
    else {
        return Some(Err(format!("{api_version} {kind} {name}")));
    };
    Some(Ok(WorkloadRef {
        resource: ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        name: name.into(),
        template_path,
    }))
}

/// The value at `path` of `data`.
fn at<'a>(data: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(data, |value, key| &value[*key])
}

/// Applies `patch` to the workload a Rollout's `spec.workloadRef` names, with server-side apply
/// of only the fields the operator owns (as to a Deployment consumer). Never creates one.
async fn patch_workload(
    client: &Client,
    reference: &WorkloadRef,
    patch: &ConsumerPatch,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &patch.namespace, &reference.resource);
    api.get(&reference.name).await?;
    let body = workload_body(reference, patch);
    let params = PatchParams::apply(&manager_of(patch)).force();
    let applied = api
        .patch(&reference.name, &params, &Patch::Apply(body))
        .await?;
    let managed = applied.metadata.managed_fields.clone().unwrap_or_default();
    let empty = json!({
        "apiVersion": reference.resource.api_version,
        "kind": reference.resource.kind,
        "metadata": {"name": reference.name},
    });
    super::release_legacy(patch, &managed, |legacy| {
        let (api, empty) = (api.clone(), empty.clone());
        async move {
            api.patch(
                &reference.name,
                &PatchParams::apply(legacy),
                &Patch::Apply(empty),
            )
            .await
            .map(drop)
        }
    })
    .await
}

/// The server-side-apply body of `patch` for the workload `reference` names.
fn workload_body(reference: &WorkloadRef, patch: &ConsumerPatch) -> Value {
    let mut body = json!({
        "apiVersion": reference.resource.api_version,
        "kind": reference.resource.kind,
        "metadata": {"name": reference.name},
    });
    let template = reference
        .template_path
        .iter()
        .fold(&mut body, |value, key| &mut value[*key]);
    *template = template_body(patch);
    body
}

/// Writes `patch` into a Rollout's own template, with the record of what it repointed.
async fn patch_own_template(
    api: &Api<DynamicObject>,
    current: &DynamicObject,
    patch: &ConsumerPatch,
) -> Result<(), kube::Error> {
    let mut template = current.data["spec"]["template"].clone();
    apply_to_template(patch, &mut template);
    let record = patch
        .repoint
        .as_ref()
        .map(|repoint| record_of(&patch.rotation_id, repoint));
    let recorded = current
        .annotations()
        .get(REPOINTED_ANNOTATION)
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if template == current.data["spec"]["template"] && (record.is_none() || record == recorded) {
        return Ok(());
    }
    let mut metadata = json!({"resourceVersion": current.metadata.resource_version});
    if let Some(record) = &record {
        metadata["annotations"] = json!({REPOINTED_ANNOTATION: record.to_string()});
    }
    let params = PatchParams {
        field_manager: Some(manager_of(patch)),
        ..PatchParams::default()
    };
    let body = json!({"metadata": metadata, "spec": {"template": template}});
    api.patch(&current.name_any(), &params, &Patch::Merge(body))
        .await
        .map(drop)
}

/// The [`REPOINTED_ANNOTATION`] record of a repoint.
fn record_of(rotation_id: &str, repoint: &Repoint) -> Value {
    let containers: serde_json::Map<String, Value> = repoint
        .containers
        .iter()
        .map(|container| (container.name.clone(), json!(container.variables)))
        .collect();
    json!({"rotation": rotation_id, "containers": containers})
}

/// `(container, variable)` a Rollout's record lists for the rotation its template is stamped
/// with (nothing for another rotation's record).
fn recorded(metadata: &ObjectMeta, template_rotation: Option<&str>) -> Vec<(String, String)> {
    let Some(record) = metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REPOINTED_ANNOTATION))
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return Vec::new();
    };
    if template_rotation.is_none() || record["rotation"].as_str() != template_rotation {
        return Vec::new();
    }
    record["containers"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(container, variables)| {
            variables
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(move |variable| (container.clone(), variable.to_string()))
        })
        .collect()
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

/// Caches a Rollout read without its referenced workload.
#[cfg(test)]
fn cache_rollout(rollout: &DynamicObject) -> CachedWorkload {
    cache_resolved(&Resolved {
        rollout: rollout.clone(),
        workload: None,
    })
}

/// Caches an Argo Rollouts `Rollout`: its pod template (its own, or the referenced workload's)
/// and what its own status says of the rollout (see [`observe`]).
pub fn cache_resolved(resolved: &Resolved) -> CachedWorkload {
    let rollout = &resolved.rollout;
    let mut base = observe(rollout);
    let Some(reference) = workload_ref(&rollout.data) else {
        let template: PodTemplateSpec =
            serde_json::from_value(rollout.data["spec"]["template"].clone()).unwrap_or_default();
        base.template_rotation = template_rotation(&template);
        let writers = template_writers(&rollout.metadata, &[ROLLOUTS_CONTROLLER_MANAGER]);
        let ownership = (
            atomic_key_owners(&template, &writers),
            // The record is kept for the rotation the label's StreamingToken stamped.
            recorded(&rollout.metadata, base.template_rotation.as_deref())
                .into_iter()
                .map(|(container, variable)| {
                    (super::CONSUMERS_MANAGER.to_string(), container, variable)
                })
                .collect(),
        );
        return cached_with(&rollout.metadata, base, &template, ownership);
    };
    let Some((workload, reference)) = resolved.workload.as_ref().zip(reference.ok()) else {
        return cached_with(
            &rollout.metadata,
            base,
            &PodTemplateSpec::default(),
            Default::default(),
        );
    };
    let template: PodTemplateSpec =
        serde_json::from_value(at(&workload.data, reference.template_path).clone())
            .unwrap_or_default();
    base.template_rotation = template_rotation(&template);
    if base.selector.is_none() {
        base.selector =
            serde_json::from_value::<LabelSelector>(workload.data["spec"]["selector"].clone())
                .ok()
                .as_ref()
                .and_then(pod_selector);
    }
    // Argo Rollouts has not acted on the workload's latest template yet.
    let observed = generation_string(&rollout.data["status"]["workloadObservedGeneration"]);
    if observed < generation_of(&workload.metadata) {
        base.observed_generation = base.observed_generation.min(base.generation - 1);
    }
    cached_with(
        &rollout.metadata,
        base,
        &template,
        key_owners(&workload.metadata),
    )
}

/// A generation Argo Rollouts writes as a string (0 when absent).
fn generation_string(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// What a Rollout's own status says of its rollout (its template is read by
/// [`cache_resolved`]). It is rolled out when its controller has observed the latest
/// generation, every replica is updated, ready and available, and the new revision is the
/// stable one (`status.stableRS` is `status.currentPodHash`: a canary fully promoted, a
/// blue-green switched); paused (`spec.paused`, a pause without an end: a canary step without a
/// duration, an analysis) or aborted (`status.abort`) is blocked. A canary step's timed pause is
/// a rollout in progress.
fn observe(rollout: &DynamicObject) -> ConsumerObservation {
    let data = &rollout.data;
    let status = &data["status"];
    let int = |value: &Value| -> i32 {
        value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .unwrap_or(0)
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
    ConsumerObservation {
        kind: WorkloadKind::Rollout,
        namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(rollout.metadata.labels.as_ref()),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&rollout.metadata),
        // Argo Rollouts writes observedGeneration as a string.
        observed_generation: generation_string(&status["observedGeneration"]),
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
        template_rotation: None,
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: Vec::new(),
        pods: None,
        selector: serde_json::from_value::<LabelSelector>(data["spec"]["selector"].clone())
            .ok()
            .as_ref()
            .and_then(pod_selector),
        batch: None,
    }
}

/// This patch applied to a whole pod template (JSON): for a Rollout, whose CRD declares no
/// list merge keys, so server-side apply would replace the containers list. Variables are
/// set in place (or added), nothing else is touched.
fn apply_to_template(patch: &ConsumerPatch, template: &mut Value) {
    template["metadata"]["annotations"][patch.stamp_key.as_str()] = json!(patch.rotation_id);
    if patch.by_label_token() {
        template["metadata"]["labels"][crate::api::TOKEN_LABEL] = json!(patch.token_name);
    }
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
    use crate::api::ROTATION_ANNOTATION;
    use crate::model::consumer::Writer;

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
            let observed = cache_rollout(&rollout(pause.clone(), conditions.clone())).observe(
                "STREAMING_TOKEN",
                "t",
                &Writer::namespaced("telemetry"),
            );
            assert_eq!(observed.paused, blocked, "{pause} {conditions}");
        }
    }
    /// A Rollout of its own template reading `key` of the mirror Secret `telemetry`, stamped
    /// with `stamp`, with `annotations` and `managed_fields`.
    fn own_template(
        key: &str,
        stamp: &str,
        annotations: Value,
        managed_fields: Value,
    ) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {
                "name": "web", "namespace": "prod", "generation": 3,
                "labels": {"streamingtoken.io/token": "telemetry"},
                "annotations": annotations,
                "managedFields": managed_fields
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"annotations": {ROTATION_ANNOTATION: stamp}},
                    "spec": {"containers": [{"name": "app", "image": "app:1", "env": [
                        {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": key}}}
                    ]}]}
                }
            }
        }))
        .expect("rollout")
    }

    fn entry(manager: &str, time: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": "Update", "apiVersion": "argoproj.io/v1alpha1",
               "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    /// What `kubectl apply` of the original manifest leaves after the operator's repoint: the
    /// containers list (atomic) owned by Argo Rollouts, which wrote the Rollout back last.
    fn after_a_revert() -> Value {
        let template = |spec: Value| json!({"f:spec": {"f:template": spec}});
        json!([
            entry(
                "e2e",
                "2026-12-06T10:00:00Z",
                template(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
            ),
            entry(
                "streamingtoken.io/consumers",
                "2026-12-06T10:04:00Z",
                template(
                    json!({"f:metadata": {"f:annotations": {"f:streamingtoken.io/rotation": {}}}})
                )
            ),
            entry(
                "kubectl-client-side-apply",
                "2026-12-06T10:05:00Z",
                template(json!({"f:spec": {"f:terminationGracePeriodSeconds": {}}}))
            ),
            entry(
                "argo-rollouts",
                "2026-12-06T10:05:01Z",
                template(json!({"f:spec": {"f:containers": {}}}))
            ),
        ])
    }

    fn need(rollout: &DynamicObject, id: &str) -> crate::decide::consumers::Need {
        let snapshot = crate::decide::tests::base_snapshot();
        let observed = cache_rollout(rollout).observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        crate::decide::consumers::repoint_need(&snapshot, &observed, id)
    }

    #[test]
    fn a_recorded_variable_set_back_is_a_revert_naming_who_wrote_the_template_last() {
        use crate::decide::consumers::Need;
        let record = json!({"rotation": "r1", "containers": {"app": ["STREAMING_TOKEN"]}});
        let reverted = own_template(
            "token1",
            "r1",
            json!({REPOINTED_ANNOTATION: record.to_string()}),
            after_a_revert(),
        );
        let Need::Blocked(blocked) = need(&reverted, "r1") else {
            panic!(
                "a revert is reported, not fought: {:?}",
                need(&reverted, "r1")
            );
        };
        assert_eq!(blocked.reason, crate::model::reason::ENV_VAR_REVERTED);
        assert!(
            blocked
                .message
                .contains("field manager kubectl-client-side-apply "),
            "{}",
            blocked.message
        );
        // Without the record (or with another rotation's), the operator never set it: repointed.
        for annotations in [
            json!({}),
            json!({REPOINTED_ANNOTATION: json!({"rotation": "r0", "containers": {"app": ["STREAMING_TOKEN"]}}).to_string()}),
            json!({REPOINTED_ANNOTATION: "not json"}),
        ] {
            let never_set = own_template("token1", "r1", annotations.clone(), after_a_revert());
            assert!(
                matches!(need(&never_set, "r1"), Need::Patch(_)),
                "{annotations}"
            );
        }
        // On Token 2 as recorded: nothing to do.
        let pointed = own_template(
            "token2",
            "r1",
            json!({REPOINTED_ANNOTATION: record.to_string()}),
            after_a_revert(),
        );
        assert_eq!(need(&pointed, "r1"), Need::Nothing);
    }

    #[test]
    fn a_repoint_of_an_own_template_is_recorded_with_its_rotation() {
        use crate::model::consumer::ContainerRepoint;
        let rollout = own_template("token1", "r0", json!({}), json!([]));
        let patch = ConsumerPatch {
            namespace: "prod".into(),
            kind: WorkloadKind::Rollout,
            name: "web".into(),
            rotation_id: "r1".into(),
            stamp_key: ROTATION_ANNOTATION.into(),
            token_name: "telemetry".into(),
            writer: Writer::namespaced("telemetry"),
            repoint: Some(Repoint {
                containers: vec![ContainerRepoint {
                    name: "app".into(),
                    init: false,
                    variables: vec!["STREAMING_TOKEN".into()],
                }],
                secret: "telemetry".into(),
                key: "token2".into(),
            }),
        };
        let mut template = rollout.data["spec"]["template"].clone();
        apply_to_template(&patch, &mut template);
        assert_eq!(template["spec"]["containers"][0]["image"], "app:1");
        assert_eq!(
            template["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "token2"
        );
        let record = record_of(&patch.rotation_id, patch.repoint.as_ref().expect("repoint"));
        let mut written = rollout.clone();
        written.data["spec"]["template"] = template;
        written.metadata.annotations =
            Some([(REPOINTED_ANNOTATION.to_string(), record.to_string())].into());
        assert_eq!(
            recorded(&written.metadata, Some("r1")),
            [("app".to_string(), "STREAMING_TOKEN".to_string())]
        );
        assert!(recorded(&written.metadata, Some("r2")).is_empty());
    }

    fn referencing(reference: Value, status: Value, selector: Option<Value>) -> DynamicObject {
        let mut spec = json!({"replicas": 2, "workloadRef": reference, "strategy": {"canary": {}}});
        if let Some(selector) = selector {
            spec["selector"] = selector;
        }
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "prod", "generation": 2,
                         "labels": {"streamingtoken.io/token": "telemetry"}},
            "spec": spec,
            "status": status
        }))
        .expect("rollout")
    }

    fn deployment(generation: i64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-template", "namespace": "prod", "generation": generation,
                "managedFields": [entry("argocd-controller", "2026-12-06T10:00:00Z", json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:env": {
                    "k:{\"name\":\"STREAMING_TOKEN\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:secretKeyRef": {}}}}}}}}}}))]},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {ROTATION_ANNOTATION: "r1"}},
                    "spec": {"containers": [{"name": "app", "env": [
                        {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": "token2"}}}
                    ]}]}
                }
            }
        }))
        .expect("deployment")
    }

    #[test]
    fn a_workload_ref_rollout_reads_the_referenced_template_and_is_never_given_one() {
        let reference =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-template"});
        let status = |observed: &str| {
            json!({"observedGeneration": "2", "workloadObservedGeneration": observed,
                   "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
                   "stableRS": "abc", "currentPodHash": "abc"})
        };
        let resolved = |observed: &str, selector: Option<Value>| Resolved {
            rollout: referencing(reference.clone(), status(observed), selector),
            workload: Some(deployment(4)),
        };
        let observed = cache_resolved(&resolved("4", None)).observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        assert_eq!(observed.template_rotation.as_deref(), Some("r1"));
        assert_eq!(observed.containers.len(), 1);
        assert_eq!(
            observed.containers[0].key_owners,
            [(
                "STREAMING_TOKEN".to_string(),
                vec!["argocd-controller".to_string()]
            )],
            "who owns the variable, from the Deployment's managedFields"
        );
        assert!(
            observed.selector.is_some(),
            "the Deployment's selector when the Rollout names none"
        );
        assert_eq!(observed.observed_generation, observed.generation);
        let behind = cache_resolved(&resolved("3", None)).observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        assert!(
            behind.observed_generation < behind.generation,
            "Argo Rollouts has not acted on the Deployment's latest template yet"
        );
        // Not read (yet): nothing stamped, nothing to read.
        let unread = Resolved {
            rollout: referencing(reference.clone(), status("4"), None),
            workload: None,
        };
        let observed = cache_resolved(&unread).observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        assert_eq!(observed.template_rotation, None);
        assert!(observed.containers.is_empty());

        let patch = ConsumerPatch {
            namespace: "prod".into(),
            kind: WorkloadKind::Rollout,
            name: "web".into(),
            rotation_id: "r2".into(),
            stamp_key: ROTATION_ANNOTATION.into(),
            token_name: "telemetry".into(),
            writer: Writer::namespaced("telemetry"),
            repoint: None,
        };
        let Some(Ok(parsed)) = workload_ref(&unread.rollout.data) else {
            panic!("a Deployment reference");
        };
        let body = workload_body(&parsed, &patch);
        assert_eq!(body["kind"], "Deployment");
        assert_eq!(body["metadata"]["name"], "web-template");
        assert_eq!(
            body["spec"]["template"]["metadata"]["annotations"][ROTATION_ANNOTATION],
            "r2"
        );
        let pod_template = json!({"apiVersion": "v1", "kind": "PodTemplate", "name": "t"});
        let Some(Ok(parsed)) = workload_ref(&json!({"spec": {"workloadRef": pod_template}})) else {
            panic!("a PodTemplate reference");
        };
        let body = workload_body(&parsed, &patch);
        assert_eq!(
            body["template"]["metadata"]["annotations"][ROTATION_ANNOTATION],
            "r2"
        );
        for unsupported in [
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s"}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
        ] {
            assert!(
                matches!(
                    workload_ref(&json!({"spec": {"workloadRef": unsupported}})),
                    Some(Err(_))
                ),
                "{unsupported}"
            );
        }
        assert!(workload_ref(&json!({"spec": {"template": {}}})).is_none());
    }
}
