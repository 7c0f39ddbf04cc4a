//! Consumer workloads: one adapter per kind (Deployment, StatefulSet, DaemonSet) that turns the
//! object into the compact [`CachedWorkload`] and the [`ConsumerObservation`] the decisions read,
//! and the server-side-apply body of a [`ConsumerPatch`] that repoints or restarts it. What to
//! patch and whether a consumer is verified is decided in [`crate::decide::consumers`].

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::ObjectMeta;
use serde_json::{Value, json};

/// The field manager of repoints (variables and the rotation stamp) on consumers.
pub const CONSUMERS_MANAGER: &str = "streamingtoken.io/consumers";
/// Restarts apply only the template annotation and label. A field manager of their own: under
/// server-side apply, an apply that omits a field its manager owned removes it, so a restart
/// applied by the repointing manager would strip the environment variable it had set.
pub const RESTARTS_MANAGER: &str = "streamingtoken.io/restarts";

/// Pod-template (and so pod) annotation naming the rotation the template belongs to.
pub const ROTATION_ANNOTATION: &str = "streamingtoken.io/rotation";

/// The kinds of workload that can consume a StreamingToken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// An Argo Rollouts `Rollout` (argoproj.io/v1alpha1).
    Rollout,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Rollout => "Rollout",
        }
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

/// Caches an Argo Rollouts `Rollout`: its pod template (`spec.template`, a PodTemplateSpec) and
/// what its own status says of the rollout. A Rollout is rolled out when its controller has
/// observed the latest generation, every replica is updated, ready and available, and the new
/// revision is the stable one (`status.stableRS` is `status.currentPodHash`: a canary fully
/// promoted, a blue-green switched); paused (`spec.paused`, pause conditions) or aborted
/// (`status.abort`) is blocked.
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
    let paused = data["spec"]["paused"].as_bool().unwrap_or(false)
        || status["pauseConditions"]
            .as_array()
            .is_some_and(|conditions| !conditions.is_empty())
        || status["controllerPause"].as_bool().unwrap_or(false);
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
    };
    cached(&rollout.metadata, base, &template)
}

/// How a container's environment variable currently gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Absent,
    Literal,
    SecretKey { secret: String, key: String },
    Other,
}

/// One container (or init container) of the pod template, as far as the token goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnv {
    pub name: String,
    /// An init container (native sidecars included).
    pub init: bool,
    /// How it sets the variable you control (`spec.consumers.envVar`).
    pub source: EnvSource,
    /// Its other variables that read a key of the mirror Secret: `(variable, key)`.
    pub mirror_reads: Vec<(String, String)>,
    /// Field managers other than the operator's that own a variable's Secret reference
    /// (`valueFrom.secretKeyRef`): `(variable, managers)`, for the variables that have one.
    pub key_owners: Vec<(String, Vec<String>)>,
    /// Variables the operator's repointing manager has applied before (it owns their entry).
    pub repointed: Vec<String>,
}

/// A pod selected by the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub name: String,
    pub rotation: Option<String>,
    pub terminating: bool,
    /// Finalizers of a terminating pod whose grace period is over: something holds it.
    pub held_by: Vec<String>,
}

/// Everything verification and repointing need to know about one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerObservation {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// Its `streamingtoken.io/wave` label.
    pub wave: Wave,
    /// (Rollout) The rollout was aborted (`status.abort`).
    pub aborted: bool,
    /// The new revision is the one serving (Rollout: the stable ReplicaSet is the current one;
    /// always true for the other kinds).
    pub promoted: bool,
    pub generation: i64,
    pub observed_generation: i64,
    pub paused: bool,
    pub progress_deadline_exceeded: bool,
    pub on_delete_strategy: bool,
    pub desired: i32,
    pub total: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    pub template_rotation: Option<String>,
    pub containers: Vec<ContainerEnv>,
    /// The pods selected by the workload; `None` when they were not listed (not rotating).
    pub pods: Option<Vec<PodObservation>>,
    /// The workload's pod selector (`None` if it is empty or invalid: such a workload is never
    /// verified, so a rotation waits on it and reports it).
    pub selector: Option<kube::core::Selector>,
}

/// A consumer's place in the rotation order (its `streamingtoken.io/wave` label).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Wave {
    /// No label: the last wave.
    #[default]
    Unlabelled,
    Number(i64),
    /// A value that is not a whole number (kept to report it).
    Invalid(String),
}

impl Wave {
    fn of(labels: Option<&std::collections::BTreeMap<String, String>>) -> Self {
        match labels.and_then(|labels| labels.get(crate::api::WAVE_LABEL)) {
            None => Self::Unlabelled,
            Some(value) => value
                .trim()
                .parse()
                .map_or_else(|_| Self::Invalid(value.clone()), Self::Number),
        }
    }
}

/// What the operator does to a consumer's pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPatch {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub rotation_id: String,
    /// The StreamingToken's name, set as a pod label so that new pods are watched.
    pub token_name: String,
    /// Repoint these containers' variable to the mirror Secret's Token 2 key (ZeroDowntime).
    pub repoint: Option<Repoint>,
}

/// A repoint of variables in `containers` to `secret`/`key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repoint {
    pub containers: Vec<ContainerRepoint>,
    pub secret: String,
    pub key: String,
}

/// The variables of one container set to the repoint's Secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRepoint {
    pub name: String,
    /// An init container (`spec.initContainers`).
    pub init: bool,
    pub variables: Vec<String>,
}

impl ConsumerPatch {
    /// This patch applied to a whole pod template (JSON): for a Rollout, whose CRD declares no
    /// list merge keys, so server-side apply would replace the containers list. Variables are
    /// set in place (or added), nothing else is touched.
    pub fn apply_to_template(&self, template: &mut Value) {
        template["metadata"]["annotations"][ROTATION_ANNOTATION] = json!(self.rotation_id);
        template["metadata"]["labels"][crate::api::TOKEN_LABEL] = json!(self.token_name);
        let Some(repoint) = &self.repoint else {
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

    /// The server-side-apply body: only the fields the operator owns (one template annotation,
    /// one pod label and, when repointing, one environment variable per container).
    pub fn body(&self) -> Value {
        let entries = |init: bool| -> Vec<Value> {
            self.repoint
                .iter()
                .flat_map(|repoint| {
                    repoint
                        .containers
                        .iter()
                        .filter(move |container| container.init == init)
                        .map(move |container| {
                            let env: Vec<Value> = container
                                .variables
                                .iter()
                                .map(|variable| {
                                    json!({
                                        "name": variable,
                                        "valueFrom": {"secretKeyRef": {"name": repoint.secret, "key": repoint.key}}
                                    })
                                })
                                .collect();
                            json!({"name": container.name, "env": env})
                        })
                })
                .collect()
        };
        let mut template = json!({
            "metadata": {
                "annotations": {ROTATION_ANNOTATION: self.rotation_id},
                "labels": {crate::api::TOKEN_LABEL: self.token_name},
            }
        });
        let (containers, init_containers) = (entries(false), entries(true));
        if !containers.is_empty() {
            template["spec"]["containers"] = Value::Array(containers);
        }
        if !init_containers.is_empty() {
            template["spec"]["initContainers"] = Value::Array(init_containers);
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": self.kind.as_str(),
            "metadata": {"name": self.name},
            "spec": {"template": template}
        })
    }
}

fn template_rotation(template: &PodTemplateSpec) -> Option<String> {
    template
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(ROTATION_ANNOTATION))
        .cloned()
}

fn env_source(variable: &k8s_openapi::api::core::v1::EnvVar) -> EnvSource {
    match (&variable.value, &variable.value_from) {
        (Some(value), _) if !value.is_empty() => EnvSource::Literal,
        (_, Some(from)) => match &from.secret_key_ref {
            Some(reference) => EnvSource::SecretKey {
                secret: reference.name.clone(),
                key: reference.key.clone(),
            },
            None => EnvSource::Other,
        },
        _ => EnvSource::Absent,
    }
}

fn pod_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<kube::core::Selector> {
    let selector = kube::core::Selector::try_from(selector.clone()).ok()?;
    // An empty selector would select every pod of the namespace.
    (!selector.selects_all()).then_some(selector)
}

/// `(name, init container, variables and how each gets its value)`.
type CachedContainer = (String, bool, Vec<(String, EnvSource)>);

/// What the cache keeps of a consumer workload: its observation without the per-token choice
/// of environment variable, and every container's variables in compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedWorkload {
    /// The value of its `streamingtoken.io/token` label.
    pub token: String,
    base: ConsumerObservation,
    /// Every container and init container.
    containers: Vec<CachedContainer>,
    /// `((container, variable), managers)`: who else owns a variable's Secret key.
    key_owners: Vec<((String, String), Vec<String>)>,
    /// `(container, variable)` entries the operator's repointing manager owns.
    repointed: Vec<(String, String)>,
}

impl CachedWorkload {
    /// The observation for a StreamingToken whose consumers read `env_var`, mirrored into
    /// Secret `mirror`.
    pub fn observe(&self, env_var: &str, mirror: &str) -> ConsumerObservation {
        let mut observation = self.base.clone();
        observation.containers = self
            .containers
            .iter()
            .map(|(name, init, variables)| ContainerEnv {
                name: name.clone(),
                init: *init,
                source: variables
                    .iter()
                    .find(|(variable, _)| variable == env_var)
                    .map_or(EnvSource::Absent, |(_, source)| source.clone()),
                mirror_reads: variables
                    .iter()
                    .filter(|(variable, _)| variable != env_var)
                    .filter_map(|(variable, source)| match source {
                        EnvSource::SecretKey { secret, key } if secret == mirror => {
                            Some((variable.clone(), key.clone()))
                        }
                        _ => None,
                    })
                    .collect(),
                key_owners: self
                    .key_owners
                    .iter()
                    .filter(|((container, _), _)| container == name)
                    .map(|((_, variable), managers)| (variable.clone(), managers.clone()))
                    .collect(),
                repointed: self
                    .repointed
                    .iter()
                    .filter(|(container, _)| container == name)
                    .map(|(_, variable)| variable.clone())
                    .collect(),
            })
            .collect();
        observation
    }
}

/// Who, besides the operator, owns each container variable's `valueFrom.secretKeyRef`, and
/// which variables the operator's repointing manager has applied, read from the workload's
/// managedFields (a GitOps tool that re-applies a manifest owns the fields it sets).
type EnvOwnership = (Vec<((String, String), Vec<String>)>, Vec<(String, String)>);

fn key_owners(metadata: &ObjectMeta) -> EnvOwnership {
    let mut owners: std::collections::BTreeMap<(String, String), Vec<String>> =
        std::collections::BTreeMap::new();
    let mut repointed = Vec::new();
    let name_in = |key: &str| -> Option<String> {
        let value: Value = serde_json::from_str(key.strip_prefix("k:")?).ok()?;
        value.get("name")?.as_str().map(str::to_string)
    };
    for entry in metadata.managed_fields.iter().flatten() {
        let Some(manager) = entry.manager.as_deref() else {
            continue;
        };
        let ours = manager == CONSUMERS_MANAGER;
        if manager.starts_with("streamingtoken.io/") && !ours {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref() else {
            continue;
        };
        let spec = &fields.0["f:spec"]["f:template"]["f:spec"];
        for list in ["f:containers", "f:initContainers"] {
            let Some(containers) = spec[list].as_object() else {
                continue;
            };
            for (container_key, container) in containers {
                let (Some(container_name), Some(env)) =
                    (name_in(container_key), container["f:env"].as_object())
                else {
                    continue;
                };
                for (variable_key, variable) in env {
                    if ours {
                        if let Some(variable_name) = name_in(variable_key) {
                            repointed.push((container_name.clone(), variable_name));
                        }
                        continue;
                    }
                    // `secretKeyRef` is an atomic struct: owned as a whole.
                    let owns_key = variable["f:valueFrom"].get("f:secretKeyRef").is_some();
                    if let (true, Some(variable_name)) = (owns_key, name_in(variable_key)) {
                        owners
                            .entry((container_name.clone(), variable_name))
                            .or_default()
                            .push(manager.to_string());
                    }
                }
            }
        }
    }
    (owners.into_iter().collect(), repointed)
}

fn cached(
    metadata: &ObjectMeta,
    base: ConsumerObservation,
    template: &PodTemplateSpec,
) -> CachedWorkload {
    let variables =
        |container: &k8s_openapi::api::core::v1::Container| -> Vec<(String, EnvSource)> {
            container
                .env
                .iter()
                .flatten()
                .map(|variable| (variable.name.clone(), env_source(variable)))
                .collect()
        };
    let containers = template
        .spec
        .as_ref()
        .map(|spec| {
            let init = spec
                .init_containers
                .iter()
                .flatten()
                .map(|container| (container.name.clone(), true, variables(container)));
            spec.containers
                .iter()
                .map(|container| (container.name.clone(), false, variables(container)))
                .chain(init)
                .collect()
        })
        .unwrap_or_default();
    let (key_owners, repointed) = key_owners(metadata);
    CachedWorkload {
        token: metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(crate::api::TOKEN_LABEL))
            .cloned()
            .unwrap_or_default(),
        base,
        containers,
        key_owners,
        repointed,
    }
}

/// Caches a Deployment.
pub fn cache_deployment(deployment: &Deployment) -> CachedWorkload {
    cached(
        &deployment.metadata,
        base_deployment(deployment),
        &deployment.spec.template,
    )
}

/// Caches a StatefulSet.
pub fn cache_statefulset(statefulset: &StatefulSet) -> CachedWorkload {
    cached(
        &statefulset.metadata,
        base_statefulset(statefulset),
        &statefulset.spec.template,
    )
}

/// Caches a DaemonSet.
pub fn cache_daemonset(daemonset: &DaemonSet) -> CachedWorkload {
    cached(
        &daemonset.metadata,
        base_daemonset(daemonset),
        &daemonset.spec.template,
    )
}

fn generation_of(metadata: &ObjectMeta) -> i64 {
    metadata.generation.unwrap_or(0)
}

/// What a Deployment says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn base_deployment(deployment: &Deployment) -> ConsumerObservation {
    let spec = deployment.spec.clone();
    let status = deployment.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let progress_deadline_exceeded = status.conditions.iter().flatten().any(|condition| {
        condition.type_.as_deref() == Some("Progressing")
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    ConsumerObservation {
        kind: WorkloadKind::Deployment,
        namespace: deployment.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(deployment.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: deployment.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&deployment.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: spec.paused.unwrap_or(false),
        progress_deadline_exceeded,
        on_delete_strategy: false,
        desired: spec.replicas.unwrap_or(1),
        total: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        template_rotation,
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
    }
}

/// What a StatefulSet says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn base_statefulset(statefulset: &StatefulSet) -> ConsumerObservation {
    let spec = statefulset.spec.clone();
    let status = statefulset.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let on_delete_strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        == Some("OnDelete");
    ConsumerObservation {
        kind: WorkloadKind::StatefulSet,
        namespace: statefulset.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(statefulset.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: statefulset.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&statefulset.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy,
        desired: spec.replicas.unwrap_or(1),
        total: status.replicas,
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        template_rotation,
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
    }
}

/// What a DaemonSet says of its rollout (containers are filled in by [`CachedWorkload::observe`]).
fn base_daemonset(daemonset: &DaemonSet) -> ConsumerObservation {
    let spec = daemonset.spec.clone();
    let status = daemonset.status.clone().unwrap_or_default();
    let template_rotation = template_rotation(&spec.template);
    let on_delete_strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        == Some("OnDelete");
    ConsumerObservation {
        kind: WorkloadKind::DaemonSet,
        namespace: daemonset.metadata.namespace.clone().unwrap_or_default(),
        wave: Wave::of(daemonset.metadata.labels.as_ref()),
        aborted: false,
        promoted: true,
        name: daemonset.metadata.name.clone().unwrap_or_default(),
        generation: generation_of(&daemonset.metadata),
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy,
        desired: status.desired_number_scheduled,
        total: status.current_number_scheduled,
        updated: status.updated_number_scheduled.unwrap_or(0),
        ready: status.number_ready,
        available: status.number_available.unwrap_or(0),
        template_rotation,
        containers: Vec::new(),
        pods: None,
        selector: pod_selector(&spec.selector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_form_keeps_what_verification_and_repointing_read() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {
                "name": "api", "namespace": "prod", "generation": 4,
                "labels": {"streamingtoken.io/token": "telemetry"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(4000)},
                "managedFields": [
                    {"manager": "argocd-controller", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:env": {
                        "k:{\"name\":\"STREAMING_TOKEN\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:secretKeyRef": {}}},
                        "k:{\"name\":\"OTHER_TOKEN\"}": {".": {}, "f:name": {}, "f:value": {}}
                     }}}}}}}},
                    {"manager": "streamingtoken.io/consumers", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:env": {
                        "k:{\"name\":\"STREAMING_TOKEN\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:secretKeyRef": {}}}
                     }}}}}}}}
                ]
            },
            "spec": {
                "replicas": 3, "paused": true,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}, "annotations": {ROTATION_ANNOTATION: "r4", "other": "y"}},
                    "spec": {"containers": [
                        {"name": "app", "image": "registry.example/app:1", "env": [
                            {"name": "STREAMING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "token2"}}},
                            {"name": "OTHER_TOKEN", "value": "literal"}
                        ]},
                        {"name": "sidecar", "image": "registry.example/sidecar:1"}
                    ], "volumes": [{"name": "v", "emptyDir": {}}]}
                }
            },
            "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}
        }))
        .expect("deployment");
        let cached = cache_deployment(&deployment);
        assert_eq!(cached.token, "telemetry");
        let observed = cached.observe("STREAMING_TOKEN", "t");
        assert_eq!(
            (
                observed.kind,
                observed.name.as_str(),
                observed.generation,
                observed.observed_generation
            ),
            (WorkloadKind::Deployment, "api", 4, 4)
        );
        assert!(observed.paused);
        assert_eq!(
            (
                observed.desired,
                observed.total,
                observed.updated,
                observed.ready,
                observed.available
            ),
            (3, 3, 3, 3, 3)
        );
        assert_eq!(observed.template_rotation.as_deref(), Some("r4"));
        assert!(observed.selector.is_some());
        let sources = |variable: &str| -> Vec<(String, EnvSource)> {
            cached
                .observe(variable, "t")
                .containers
                .into_iter()
                .map(|container| (container.name, container.source))
                .collect()
        };
        let secret_key = EnvSource::SecretKey {
            secret: "t".into(),
            key: "token2".into(),
        };
        assert_eq!(
            sources("STREAMING_TOKEN"),
            [
                ("app".to_string(), secret_key),
                ("sidecar".to_string(), EnvSource::Absent)
            ]
        );
        assert_eq!(sources("OTHER_TOKEN")[0].1, EnvSource::Literal);
        assert_eq!(
            cached.observe("STREAMING_TOKEN", "t").containers[0].key_owners,
            [(
                "STREAMING_TOKEN".to_string(),
                vec!["argocd-controller".to_string()]
            )],
            "who else owns the Secret reference (the operator's own manager left out)"
        );
        assert_eq!(
            cached.observe("STREAMING_TOKEN", "t").containers[0].repointed,
            ["STREAMING_TOKEN"],
            "what the operator applied before"
        );
        assert_eq!(sources("ABSENT")[0].1, EnvSource::Absent);
    }

    #[test]
    fn patch_touches_only_owned_fields() {
        let patch = ConsumerPatch {
            namespace: "prod".into(),
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
            rotation_id: "r7".into(),
            token_name: "telemetry".into(),
            repoint: Some(Repoint {
                containers: vec![
                    ContainerRepoint {
                        name: "app".into(),
                        init: false,
                        variables: vec!["STREAMING_TOKEN".into(), "Quix__Sdk__Token".into()],
                    },
                    ContainerRepoint {
                        name: "setup".into(),
                        init: true,
                        variables: vec!["TOKEN".into()],
                    },
                ],
                secret: "telemetry".into(),
                key: "token2".into(),
            }),
        };
        let body = patch.body();
        assert_eq!(body["kind"], "StatefulSet");
        assert_eq!(
            body["spec"]["template"]["metadata"]["annotations"][ROTATION_ANNOTATION],
            "r7"
        );
        let container = &body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["name"], "app");
        assert!(container.get("image").is_none());
        assert_eq!(
            container["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "token2"
        );
        assert_eq!(container["env"][1]["name"], "Quix__Sdk__Token");
        let init = &body["spec"]["template"]["spec"]["initContainers"];
        assert_eq!(init.as_array().map(Vec::len), Some(1), "{init}");
        assert_eq!(init[0]["name"], "setup");
        assert_eq!(
            init[0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "telemetry"
        );
        let restart = ConsumerPatch {
            namespace: "prod".into(),
            repoint: None,
            ..patch
        };
        assert!(restart.body()["spec"]["template"].get("spec").is_none());
    }
}
