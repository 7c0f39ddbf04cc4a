//! Fixtures as builders: `token("telemetry").generate().with_trigger("x")`.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Secret, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;
use streaming_token_operator::api::{
    DeletionPolicy, GenerateSource, Rotation, RotationStrategy, SecretRefSource, StreamingToken,
    StreamingTokenSpec, TOKEN_LABEL, TokenSource,
};

pub fn metadata(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    }
}

pub struct TokenBuilder(StreamingToken);

/// A StreamingToken with a `generate` source and defaults everywhere else.
pub fn token(name: &str, namespace: &str) -> TokenBuilder {
    let mut object = StreamingToken::new(
        name,
        StreamingTokenSpec {
            source: TokenSource {
                generate: Some(GenerateSource::default()),
                secret_ref: None,
                platform: None,
            },
            secret: Default::default(),
            consumers: Default::default(),
            rotation: Rotation::default(),
            suspend: false,
            deletion_policy: DeletionPolicy::Retain,
            platform: None,
            clusters: Vec::new(),
        },
    );
    object.metadata.namespace = Some(namespace.into());
    TokenBuilder(object)
}

impl TokenBuilder {
    pub fn generate(mut self, prefix: &str, length: i32) -> Self {
        self.0.spec.source = TokenSource {
            generate: Some(GenerateSource {
                length,
                prefix: prefix.into(),
            }),
            secret_ref: None,
            platform: None,
        };
        self
    }

    pub fn secret_ref(mut self, name: &str) -> Self {
        self.0.spec.source = TokenSource {
            generate: None,
            secret_ref: Some(SecretRefSource {
                name: name.into(),
                token1_key: "token1".into(),
                token2_key: "token2".into(),
            }),
            platform: None,
        };
        self
    }

    pub fn secret_name(mut self, name: &str) -> Self {
        self.0.spec.secret.name = Some(name.into());
        self
    }

    pub fn with_trigger(mut self, trigger: &str) -> Self {
        self.0.spec.rotation.trigger = Some(trigger.into());
        self
    }

    pub fn strategy(mut self, strategy: RotationStrategy) -> Self {
        self.0.spec.rotation.strategy = strategy;
        self
    }

    pub fn rollout_timeout(mut self, timeout: &str) -> Self {
        self.0.spec.rotation.rollout_timeout = timeout.into();
        self
    }

    pub fn deletion_policy(mut self, policy: DeletionPolicy) -> Self {
        self.0.spec.deletion_policy = policy;
        self
    }

    pub fn suspend(mut self, suspend: bool) -> Self {
        self.0.spec.suspend = suspend;
        self
    }

    pub fn build(self) -> StreamingToken {
        self.0
    }
}

/// A source Secret holding the given pair, labelled so the operator watches it.
pub fn source_secret(
    name: &str,
    namespace: &str,
    token_name: &str,
    token1: &str,
    token2: &str,
) -> Secret {
    let mut meta = metadata(name, namespace);
    meta.labels = Some(BTreeMap::from([(
        TOKEN_LABEL.to_string(),
        token_name.to_string(),
    )]));
    Secret {
        metadata: meta,
        data: Some(BTreeMap::from([
            ("token1".to_string(), ByteString(token1.as_bytes().to_vec())),
            ("token2".to_string(), ByteString(token2.as_bytes().to_vec())),
        ])),
        ..Secret::default()
    }
}

fn pod_template(app: &str, env: Option<(&str, &str, &str)>) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(1),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                env: env.map(|(variable, secret, key)| {
                    vec![EnvVar {
                        name: variable.into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                name: secret.into(),
                                key: key.into(),
                                optional: None,
                            }),
                            ..EnvVarSource::default()
                        }),
                        ..EnvVar::default()
                    }]
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// What a consumer reads before its first rotation: `STREAMING_TOKEN` from the Token 1 key of
/// the mirror Secret named after the StreamingToken.
fn reads_token1(token_name: &str) -> Option<(&'static str, &str, &'static str)> {
    Some(("STREAMING_TOKEN", token_name, "token1"))
}

/// A Deployment labelled as a consumer of `token_name` and reading its Token 1 (or, with `None`,
/// a Deployment that reads nothing).
pub fn deployment(
    name: &str,
    namespace: &str,
    token_name: Option<&str>,
    replicas: i32,
) -> Deployment {
    let mut meta = metadata(name, namespace);
    if let Some(token_name) = token_name {
        meta.labels = Some(BTreeMap::from([(
            TOKEN_LABEL.to_string(),
            token_name.to_string(),
        )]));
    }
    Deployment {
        metadata: meta,
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..LabelSelector::default()
            },
            template: pod_template(name, token_name.and_then(reads_token1)),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// A StatefulSet labelled as a consumer of `token_name`, reading its Token 1.
pub fn statefulset(name: &str, namespace: &str, token_name: &str, replicas: i32) -> StatefulSet {
    let mut meta = metadata(name, namespace);
    meta.labels = Some(BTreeMap::from([(
        TOKEN_LABEL.to_string(),
        token_name.to_string(),
    )]));
    StatefulSet {
        metadata: meta,
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..LabelSelector::default()
            },
            service_name: Some(name.into()),
            template: pod_template(name, reads_token1(token_name)),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// A DaemonSet (one pod per fake node) labelled as a consumer of `token_name`, reading its
/// Token 1.
pub fn daemonset(name: &str, namespace: &str, token_name: &str) -> DaemonSet {
    let mut meta = metadata(name, namespace);
    meta.labels = Some(BTreeMap::from([(
        TOKEN_LABEL.to_string(),
        token_name.to_string(),
    )]));
    DaemonSet {
        metadata: meta,
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..LabelSelector::default()
            },
            template: pod_template(name, reads_token1(token_name)),
            ..DaemonSetSpec::default()
        },
        ..DaemonSet::default()
    }
}

/// A ClusterStreamingToken with a `generate` source selecting the namespaces labelled
/// `selector_label=selector_value`, labelled `run_label=run` so that only the test's own
/// operator serves it.
pub fn cluster_token(
    name: &str,
    selector: (&str, &str),
    run: (&str, &str),
) -> streaming_token_operator::api::ClusterStreamingToken {
    use streaming_token_operator::api::{
        ClusterStreamingToken, ClusterStreamingTokenSpec, ClusterTokenSource, NamespaceSelection,
    };
    let mut object = ClusterStreamingToken::new(
        name,
        ClusterStreamingTokenSpec {
            source: ClusterTokenSource {
                generate: Some(GenerateSource::default()),
                secret_ref: None,
                platform: None,
            },
            secret: Default::default(),
            namespaces: NamespaceSelection {
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        selector.0.to_string(),
                        selector.1.to_string(),
                    )])),
                    ..LabelSelector::default()
                }),
                names: Vec::new(),
                unselected_policy: Default::default(),
            },
            consumers: Default::default(),
            rotation: Rotation::default(),
            suspend: false,
            deletion_policy: DeletionPolicy::Retain,
            platform: None,
        },
    );
    object.metadata.labels = Some(BTreeMap::from([(run.0.to_string(), run.1.to_string())]));
    object
}
