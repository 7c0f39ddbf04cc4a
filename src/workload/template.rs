//! What every consumer kind shares: a pod template read into the compact [`CachedWorkload`] the
//! cache keeps, and a [`ConsumerPatch`] written as a server-side-apply body.

use super::CONSUMERS_MANAGER;
use crate::api::ROTATION_ANNOTATION;
use crate::model::consumer::{ConsumerObservation, ConsumerPatch, ContainerEnv, EnvSource, Writer};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::ObjectMeta;
use serde_json::{Value, json};

/// The server-side-apply body of a kind whose pod template is `spec.template`.
pub fn apply_body(patch: &ConsumerPatch, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": patch.kind.as_str(),
        "metadata": {"name": patch.name},
        "spec": {"template": template_body(patch)}
    })
}

/// The pod template part of a server-side-apply body: only the fields the operator owns (one
/// template annotation, one pod label and, when repointing, one environment variable per
/// container).
pub fn template_body(patch: &ConsumerPatch) -> Value {
    let entries = |init: bool| -> Vec<Value> {
        patch.repoint
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
        "metadata": {"annotations": {patch.stamp_key.as_str(): patch.rotation_id}}
    });
    if patch.by_label_token() {
        template["metadata"]["labels"] = json!({crate::api::TOKEN_LABEL: patch.token_name});
    }
    let (containers, init_containers) = (entries(false), entries(true));
    if !containers.is_empty() {
        template["spec"]["containers"] = Value::Array(containers);
    }
    if !init_containers.is_empty() {
        template["spec"]["initContainers"] = Value::Array(init_containers);
    }
    template
}

pub(super) fn template_rotation(template: &PodTemplateSpec) -> Option<String> {
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

pub(super) fn pod_selector(
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
    /// The StreamingTokens it reads: its `streamingtoken.io/token` label first, then those its
    /// `streamingtoken.io/tokens` annotation lists.
    pub tokens: Vec<String>,
    base: ConsumerObservation,
    /// The stamps on its pod template: `(annotation, rotation)`.
    stamps: Vec<(String, String)>,
    /// Every container and init container.
    containers: Vec<CachedContainer>,
    /// `((container, variable), managers)`: who else owns a variable's Secret key.
    key_owners: Vec<((String, String), Vec<String>)>,
    /// `(manager, container, variable)` entries the operator's repointing managers own.
    repointed: Vec<(String, String, String)>,
}

impl CachedWorkload {
    /// True when it reads StreamingToken `token` (its label or its annotation names it).
    pub fn reads(&self, token: &str) -> bool {
        self.tokens.iter().any(|name| name == token)
    }

    /// The observation for StreamingToken `writer`, whose consumers read `env_var`, mirrored
    /// into Secret `mirror`: its own stamp, and the variables its own manager applied.
    pub fn observe(&self, env_var: &str, mirror: &str, writer: &Writer) -> ConsumerObservation {
        let by_label = self.tokens.first() == Some(&writer.name);
        let stamp_key = crate::model::consumer::stamp_key(by_label, &writer.name);
        let manager = super::consumers_manager(writer, &self.base.namespace);
        // Before each StreamingToken had a manager of its own, the shared one applied for the
        // label's StreamingToken.
        let ours = |entry: &str| entry == manager || (by_label && entry == CONSUMERS_MANAGER);
        let mut observation = self.base.clone();
        observation.template_rotation = self
            .stamps
            .iter()
            .find(|(key, _)| *key == stamp_key)
            .map(|(_, rotation)| rotation.clone());
        observation.stamp_key = stamp_key;
        observation.shared = self.tokens.len() > 1;
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
                    .filter(|(entry, container, _)| container == name && ours(entry))
                    .map(|(_, _, variable)| variable.clone())
                    .collect(),
            })
            .collect();
        observation
    }
}

/// Who, besides the operator, owns each container variable's `valueFrom.secretKeyRef`, and
/// which variables the operator's repointing manager has applied, read from the workload's
/// managedFields (a GitOps tool that re-applies a manifest owns the fields it sets).
pub(super) type EnvOwnership = (
    Vec<((String, String), Vec<String>)>,
    Vec<(String, String, String)>,
);

pub(super) fn key_owners(metadata: &ObjectMeta) -> EnvOwnership {
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
        // The repointing managers: the shared one of earlier versions, and each
        // StreamingToken's own (`streamingtoken.io/consumers.<namespace>.<name>`, a
        // ClusterStreamingToken's `streamingtoken.io/cluster-consumers.<name>`).
        let ours = manager == CONSUMERS_MANAGER
            || manager.starts_with("streamingtoken.io/consumers.")
            || manager.starts_with("streamingtoken.io/cluster-consumers.");
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
                            repointed.push((
                                manager.to_string(),
                                container_name.clone(),
                                variable_name,
                            ));
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

/// The managers other than the operator's (and those `excluded`) that own a field of the pod
/// template, the most recent writers only (managedFields record when each manager last
/// changed a field). For a kind whose CRD declares its lists atomic (a Rollout), this is who set
/// a variable back: its managedFields own the containers list only as a whole, and the Rollout's
/// controller takes that over when it writes the object back.
pub(super) fn template_writers(metadata: &ObjectMeta, excluded: &[&str]) -> Vec<String> {
    let mut writers: Vec<(Option<k8s_openapi::jiff::Timestamp>, String)> = metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| {
            let manager = entry.manager.as_deref()?;
            if manager.starts_with("streamingtoken.io/") || excluded.contains(&manager) {
                return None;
            }
            let fields = &entry.fields_v1.as_ref()?.0;
            fields["f:spec"].get("f:template")?;
            Some((entry.time.as_ref().map(|time| time.0), manager.to_string()))
        })
        .collect();
    let Some(latest) = writers.iter().map(|(time, _)| *time).max() else {
        return Vec::new();
    };
    writers.retain(|(time, _)| *time == latest);
    let mut managers: Vec<String> = writers.into_iter().map(|(_, manager)| manager).collect();
    managers.sort_unstable();
    managers.dedup();
    managers
}

/// Every container variable of `template` that reads a Secret key, owned by `managers` (whose
/// managedFields own the containers list as a whole).
pub(super) fn atomic_key_owners(
    template: &PodTemplateSpec,
    managers: &[String],
) -> Vec<((String, String), Vec<String>)> {
    if managers.is_empty() {
        return Vec::new();
    }
    let Some(spec) = template.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|container| {
            container
                .env
                .iter()
                .flatten()
                .filter(|variable| matches!(env_source(variable), EnvSource::SecretKey { .. }))
                .map(|variable| {
                    (
                        (container.name.clone(), variable.name.clone()),
                        managers.to_vec(),
                    )
                })
        })
        .collect()
}

pub(super) fn cached(
    metadata: &ObjectMeta,
    base: ConsumerObservation,
    template: &PodTemplateSpec,
) -> CachedWorkload {
    cached_with(metadata, base, template, key_owners(metadata))
}

/// [`cached`] with the template's ownership read elsewhere (a Rollout's: from the workload its
/// `spec.workloadRef` names, or from its atomic lists and its record of what was repointed).
/// `metadata` is the consumer's own (its token label).
pub(super) fn cached_with(
    metadata: &ObjectMeta,
    base: ConsumerObservation,
    template: &PodTemplateSpec,
    (key_owners, repointed): EnvOwnership,
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
    let stamps = template
        .metadata
        .iter()
        .flat_map(|metadata| metadata.annotations.iter().flatten())
        .filter(|(key, _)| {
            *key == ROTATION_ANNOTATION || key.starts_with(crate::api::TOKEN_STAMP_PREFIX)
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    CachedWorkload {
        tokens: crate::model::consumer::tokens_of(
            metadata.labels.as_ref(),
            metadata.annotations.as_ref(),
        ),
        base,
        stamps,
        containers,
        key_owners,
        repointed,
    }
}

pub(super) fn generation_of(metadata: &ObjectMeta) -> i64 {
    metadata.generation.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ROTATION_ANNOTATION;
    use crate::model::consumer::Writer;
    use crate::model::consumer::{ContainerRepoint, Repoint, WorkloadKind};
    use crate::workload::deployment::cache_deployment;
    use k8s_openapi::api::apps::v1::Deployment;

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
        assert_eq!(cached.tokens, ["telemetry"]);
        let observed = cached.observe("STREAMING_TOKEN", "t", &Writer::namespaced("telemetry"));
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
                .observe(variable, "t", &Writer::namespaced("telemetry"))
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
            cached
                .observe("STREAMING_TOKEN", "t", &Writer::namespaced("telemetry"))
                .containers[0]
                .key_owners,
            [(
                "STREAMING_TOKEN".to_string(),
                vec!["argocd-controller".to_string()]
            )],
            "who else owns the Secret reference (the operator's own manager left out)"
        );
        assert_eq!(
            cached
                .observe("STREAMING_TOKEN", "t", &Writer::namespaced("telemetry"))
                .containers[0]
                .repointed,
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
            stamp_key: ROTATION_ANNOTATION.into(),
            token_name: "telemetry".into(),
            writer: Writer::namespaced("telemetry"),
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
        let body = apply_body(&patch, "apps/v1");
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
        assert!(
            apply_body(&restart, "apps/v1")["spec"]["template"]
                .get("spec")
                .is_none()
        );
    }

    /// A Deployment labelled for `telemetry` and annotated for `billing`, stamped by both, with
    /// one variable each applied by: the shared manager of earlier versions (`TELEMETRY`) and
    /// billing's own (`BILLING`).
    fn two_readers() -> Deployment {
        let env_entry = |name: &str| {
            json!({"f:containers": {"k:{\"name\":\"app\"}": {"f:env": {
                format!("k:{{\"name\":\"{name}\"}}"): {".": {}, "f:name": {}, "f:valueFrom": {"f:secretKeyRef": {}}}
            }}}})
        };
        serde_json::from_value(json!({
            "metadata": {
                "name": "api", "namespace": "prod",
                "labels": {"streamingtoken.io/token": "telemetry"},
                "annotations": {"streamingtoken.io/tokens": "billing"},
                "managedFields": [
                    {"manager": "streamingtoken.io/consumers", "operation": "Apply", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:template": {"f:spec": env_entry("TELEMETRY")}}}},
                    {"manager": "streamingtoken.io/consumers.prod.billing", "operation": "Apply", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:template": {"f:spec": env_entry("BILLING")}}}}
                ]
            },
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"annotations": {
                        ROTATION_ANNOTATION: "r4.aaaa", "rotation.streamingtoken.io/billing": "r2.bbbb"
                    }},
                    "spec": {"containers": [{"name": "app", "env": [
                        {"name": "TELEMETRY", "valueFrom": {"secretKeyRef": {"name": "telemetry", "key": "token2"}}},
                        {"name": "BILLING", "valueFrom": {"secretKeyRef": {"name": "billing", "key": "token2"}}}
                    ]}]}
                }
            }
        }))
        .expect("deployment")
    }

    #[test]
    fn each_token_sees_its_own_stamp_and_what_its_own_manager_applied() {
        let cached = cache_deployment(&two_readers());
        assert_eq!(cached.tokens, ["telemetry", "billing"]);
        assert!(cached.reads("billing") && cached.reads("telemetry") && !cached.reads("other"));
        let telemetry = cached.observe(
            "STREAMING_TOKEN",
            "telemetry",
            &Writer::namespaced("telemetry"),
        );
        assert_eq!(telemetry.stamp_key, ROTATION_ANNOTATION);
        assert_eq!(telemetry.template_rotation.as_deref(), Some("r4.aaaa"));
        assert!(telemetry.shared);
        assert_eq!(
            telemetry.containers[0].repointed,
            ["TELEMETRY"],
            "the shared manager of earlier versions applied for the label's token"
        );
        let billing = cached.observe("STREAMING_TOKEN", "billing", &Writer::namespaced("billing"));
        assert_eq!(billing.stamp_key, "rotation.streamingtoken.io/billing");
        assert_eq!(billing.template_rotation.as_deref(), Some("r2.bbbb"));
        assert_eq!(billing.containers[0].repointed, ["BILLING"]);
        assert_eq!(
            billing.containers[0].mirror_reads,
            [("BILLING".to_string(), "token2".to_string())],
            "only what reads its own Secret"
        );
    }

    #[test]
    fn a_second_token_stamps_its_own_annotation_and_leaves_the_pod_label_alone() {
        let patch = ConsumerPatch {
            namespace: "prod".into(),
            kind: WorkloadKind::Deployment,
            name: "api".into(),
            rotation_id: "r3.bbbb".into(),
            stamp_key: crate::model::consumer::stamp_key(false, "billing"),
            token_name: "billing".into(),
            writer: Writer::namespaced("billing"),
            repoint: None,
        };
        let body = apply_body(&patch, "apps/v1");
        let metadata = &body["spec"]["template"]["metadata"];
        assert_eq!(
            metadata["annotations"]["rotation.streamingtoken.io/billing"],
            "r3.bbbb"
        );
        assert!(
            metadata["annotations"].get(ROTATION_ANNOTATION).is_none(),
            "{body}"
        );
        assert!(metadata.get("labels").is_none(), "{body}");
    }
}
