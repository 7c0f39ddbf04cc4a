//! Consumer workloads: one adapter per kind (Deployment, StatefulSet, DaemonSet) that turns the
//! object into a [`ConsumerObservation`], decides whether it is *verified* on a rotation's pod
//! template, and builds the server-side-apply patch that repoints or restarts it.
//!
//! A consumer is verified for rotation `id` when its controller has observed the latest
//! generation, updated, ready and available replicas all equal the desired count, no surplus
//! replicas remain, and **no pod of an older template exists, terminating pods included**: every
//! pod selected by the workload carries the `streamingtoken.io/rotation: <id>` annotation that it
//! inherited from the template. Paused, `ProgressDeadlineExceeded`, an `OnDelete` update strategy,
//! or a rollout past the timeout is *blocked*.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use std::time::Duration;

/// Pod-template (and so pod) annotation naming the rotation the template belongs to.
pub const ROTATION_ANNOTATION: &str = "streamingtoken.io/rotation";

/// The kinds of workload that can consume a StreamingToken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// How a container's environment variable currently gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Absent,
    Literal,
    SecretKey { secret: String, key: String },
    Other,
}

/// One container of the pod template, as far as the token goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnv {
    pub name: String,
    pub source: EnvSource,
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
    pub name: String,
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

/// The outcome of checking one consumer against a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    Progressing(String),
    Blocked {
        reason: &'static str,
        message: String,
    },
}

/// Decides whether `consumer` is verified on rotation `id`. `waited` is how long the current
/// phase has lasted; past `timeout` a consumer still progressing is blocked.
pub fn verify(
    consumer: &ConsumerObservation,
    id: &str,
    waited: Duration,
    timeout: Duration,
) -> Verdict {
    if consumer.paused {
        return Verdict::Blocked {
            reason: "Paused",
            message: "the rollout is paused; resume it (kubectl rollout resume)".into(),
        };
    }
    if consumer.progress_deadline_exceeded {
        return Verdict::Blocked {
            reason: "ProgressDeadlineExceeded",
            message: "the rollout exceeded its progress deadline".into(),
        };
    }
    if consumer.on_delete_strategy {
        return Verdict::Blocked {
            reason: "OnDeleteUpdateStrategy",
            message: "the OnDelete update strategy never replaces pods by itself; delete its pods or use RollingUpdate".into(),
        };
    }
    if let Some(pods) = &consumer.pods
        && consumer.template_rotation.as_deref() == Some(id)
        && let Some(held) = pods
            .iter()
            .find(|pod| pod.rotation.as_deref() != Some(id) && !pod.held_by.is_empty())
    {
        return Verdict::Blocked {
            reason: "PodHeldByFinalizer",
            message: format!(
                "pod {} of an older template is terminating past its grace period, held by finalizer(s) {}; it may still hold Token 1",
                held.name,
                held.held_by.join(", ")
            ),
        };
    }
    let progressing = progress(consumer, id);
    match progressing {
        None => Verdict::Verified,
        // The message names the timeout, not the time waited: status must not change every pass.
        Some(message) if waited > timeout => Verdict::Blocked {
            reason: "RolloutTimeout",
            message: format!(
                "not rolled out within spec.rotation.rolloutTimeout ({}s): {message}",
                timeout.as_secs()
            ),
        },
        Some(message) => Verdict::Progressing(message),
    }
}

fn progress(consumer: &ConsumerObservation, id: &str) -> Option<String> {
    if consumer.template_rotation.as_deref() != Some(id) {
        return Some("the pod template is not yet on this rotation".into());
    }
    if consumer.observed_generation < consumer.generation {
        return Some(format!(
            "its controller has observed generation {} of {}",
            consumer.observed_generation, consumer.generation
        ));
    }
    let desired = consumer.desired;
    if consumer.updated < desired || consumer.ready < desired || consumer.available < desired {
        return Some(format!(
            "{desired} desired, {} updated, {} ready, {} available",
            consumer.updated, consumer.ready, consumer.available
        ));
    }
    if consumer.total > desired {
        return Some(format!(
            "{} replicas exist for {desired} desired",
            consumer.total
        ));
    }
    let Some(pods) = &consumer.pods else {
        return Some("its pods have not been listed".into());
    };
    let old: Vec<&PodObservation> = pods
        .iter()
        .filter(|pod| pod.rotation.as_deref() != Some(id))
        .collect();
    if !old.is_empty() {
        let terminating = old.iter().filter(|pod| pod.terminating).count();
        return Some(format!(
            "{} pods of an older template remain ({terminating} terminating), for example {}",
            old.len(),
            old[0].name
        ));
    }
    None
}

/// What the operator does to a consumer's pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPatch {
    pub kind: WorkloadKind,
    pub name: String,
    pub rotation_id: String,
    /// The StreamingToken's name, set as a pod label so that new pods are watched.
    pub token_name: String,
    /// Repoint these containers' variable to the mirror Secret's Token 2 key (ZeroDowntime).
    pub repoint: Option<Repoint>,
}

/// A repoint of `env_var` in `containers` to `secret`/`key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repoint {
    pub containers: Vec<String>,
    pub env_var: String,
    pub secret: String,
    pub key: String,
}

impl ConsumerPatch {
    /// The server-side-apply body: only the fields the operator owns (one template annotation,
    /// one pod label and, when repointing, one environment variable per container).
    pub fn body(&self) -> Value {
        let containers: Vec<Value> = self
            .repoint
            .iter()
            .flat_map(|repoint| {
                repoint.containers.iter().map(move |container| {
                    json!({
                        "name": container,
                        "env": [{
                            "name": repoint.env_var,
                            "valueFrom": {"secretKeyRef": {"name": repoint.secret, "key": repoint.key}}
                        }]
                    })
                })
            })
            .collect();
        let mut template = json!({
            "metadata": {
                "annotations": {ROTATION_ANNOTATION: self.rotation_id},
                "labels": {crate::api::TOKEN_LABEL: self.token_name},
            }
        });
        if !containers.is_empty() {
            template["spec"] = json!({"containers": containers});
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": self.kind.as_str(),
            "metadata": {"name": self.name},
            "spec": {"template": template}
        })
    }
}

/// The containers of `consumer` the operator manages: the named ones, or all of them.
pub fn selected_containers<'a>(
    consumer: &'a ConsumerObservation,
    names: &[String],
) -> Vec<&'a ContainerEnv> {
    consumer
        .containers
        .iter()
        .filter(|container| names.is_empty() || names.contains(&container.name))
        .collect()
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

/// What the cache keeps of a consumer workload: its observation without the per-token choice
/// of environment variable, and every container's variables in compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedWorkload {
    /// The value of its `streamingtoken.io/token` label.
    pub token: String,
    base: ConsumerObservation,
    containers: Vec<(String, Vec<(String, EnvSource)>)>,
}

impl CachedWorkload {
    /// The observation for a StreamingToken whose consumers read `env_var`.
    pub fn observe(&self, env_var: &str) -> ConsumerObservation {
        let mut observation = self.base.clone();
        observation.containers = self
            .containers
            .iter()
            .map(|(name, variables)| ContainerEnv {
                name: name.clone(),
                source: variables
                    .iter()
                    .find(|(variable, _)| variable == env_var)
                    .map_or(EnvSource::Absent, |(_, source)| source.clone()),
            })
            .collect();
        observation
    }
}

fn cached(
    metadata: &ObjectMeta,
    base: ConsumerObservation,
    template: &PodTemplateSpec,
) -> CachedWorkload {
    let containers = template
        .spec
        .as_ref()
        .map(|spec| {
            spec.containers
                .iter()
                .map(|container| {
                    let variables = container
                        .env
                        .iter()
                        .flatten()
                        .map(|variable| (variable.name.clone(), env_source(variable)))
                        .collect();
                    (container.name.clone(), variables)
                })
                .collect()
        })
        .unwrap_or_default();
    CachedWorkload {
        token: metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(crate::api::TOKEN_LABEL))
            .cloned()
            .unwrap_or_default(),
        base,
        containers,
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

    pub fn consumer(name: &str) -> ConsumerObservation {
        ConsumerObservation {
            kind: WorkloadKind::Deployment,
            name: name.into(),
            generation: 2,
            observed_generation: 2,
            paused: false,
            progress_deadline_exceeded: false,
            on_delete_strategy: false,
            desired: 3,
            total: 3,
            updated: 3,
            ready: 3,
            available: 3,
            template_rotation: Some("r1".into()),
            containers: vec![],
            pods: Some(
                (0..3)
                    .map(|index| PodObservation {
                        name: format!("{name}-{index}"),
                        rotation: Some("r1".into()),
                        terminating: false,
                        held_by: vec![],
                    })
                    .collect(),
            ),
            selector: None,
        }
    }

    #[test]
    fn verification_table() {
        let minute = Duration::from_secs(60);
        let timeout = Duration::from_secs(600);
        type Case = (
            &'static str,
            fn(&mut ConsumerObservation),
            Duration,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("rolled out", |_| {}, minute, "Verified"),
            ("paused", |c| c.paused = true, minute, "Paused"),
            (
                "deadline",
                |c| c.progress_deadline_exceeded = true,
                minute,
                "ProgressDeadlineExceeded",
            ),
            (
                "on delete",
                |c| c.on_delete_strategy = true,
                minute,
                "OnDeleteUpdateStrategy",
            ),
            (
                "not repointed",
                |c| c.template_rotation = None,
                minute,
                "Progressing",
            ),
            (
                "old generation",
                |c| c.observed_generation = 1,
                minute,
                "Progressing",
            ),
            ("not all updated", |c| c.updated = 2, minute, "Progressing"),
            ("not all ready", |c| c.ready = 2, minute, "Progressing"),
            (
                "not all available",
                |c| c.available = 2,
                minute,
                "Progressing",
            ),
            ("surplus replica", |c| c.total = 4, minute, "Progressing"),
            ("pods unknown", |c| c.pods = None, minute, "Progressing"),
            (
                "terminating old pod",
                |c| {
                    c.pods.as_mut().expect("pods").push(PodObservation {
                        name: "old".into(),
                        rotation: None,
                        terminating: true,
                        held_by: vec![],
                    })
                },
                minute,
                "Progressing",
            ),
            (
                "old pod past timeout",
                |c| {
                    c.pods.as_mut().expect("pods")[0].rotation = Some("r0".into());
                },
                Duration::from_secs(601),
                "RolloutTimeout",
            ),
            (
                "autoscaled up mid-rollout",
                |c| c.desired = 5,
                minute,
                "Progressing",
            ),
            (
                "scaled to zero, no pods",
                |c| {
                    c.desired = 0;
                    c.total = 0;
                    c.pods = Some(vec![]);
                },
                minute,
                "Verified",
            ),
        ];
        for (name, mutate, waited, want) in cases {
            let mut observed = consumer("api");
            mutate(&mut observed);
            let got = match verify(&observed, "r1", waited, timeout) {
                Verdict::Verified => "Verified",
                Verdict::Progressing(_) => "Progressing",
                Verdict::Blocked { reason, .. } => reason,
            };
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn the_cached_form_keeps_what_verification_and_repointing_read() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {
                "name": "api", "namespace": "prod", "generation": 4,
                "labels": {"streamingtoken.io/token": "telemetry"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(4000)}
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
        let observed = cached.observe("STREAMING_TOKEN");
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
                .observe(variable)
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
        assert_eq!(sources("ABSENT")[0].1, EnvSource::Absent);
    }

    #[test]
    fn patch_touches_only_owned_fields() {
        let patch = ConsumerPatch {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
            rotation_id: "r7".into(),
            token_name: "telemetry".into(),
            repoint: Some(Repoint {
                containers: vec!["app".into()],
                env_var: "STREAMING_TOKEN".into(),
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
        let restart = ConsumerPatch {
            repoint: None,
            ..patch
        };
        assert!(restart.body()["spec"]["template"].get("spec").is_none());
    }
}
