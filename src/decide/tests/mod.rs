//! Table-driven tests of `plan` with a fixed clock and fixed "random" material.

use super::pair::{mirror_annotations, mirror_labels};
use super::rotation::{
    PHASE_AWAITING_ROLLOUT, PHASE_AWAITING_SOURCE, PHASE_DEACTIVATING, PHASE_REPOINTING,
    PHASE_RESTARTING,
};
use super::*;
use crate::api::{
    DeletionPolicy, GenerateSource, RotationStrategy, SecretRefSource, StreamingTokenSpec,
    TokenIdentity, TokenSource,
};
use crate::conditions::{READY_TO_ROTATE, ROTATING};
use crate::model::consumer::{
    ConsumerObservation, ContainerEnv, EnvSource, PodObservation, WorkloadKind,
};
use crate::model::pod::{Owner, PodRecord, SecretKeys, SecretReference, SecretUse};
use crate::token::{Token, TokenPair, TokenProblem};
use std::sync::Arc;
use std::time::Duration;

mod after_write;
mod batch;
mod cluster;
mod holders;
mod members;
mod notifications;
mod pair;
mod platform;
mod rotation;
mod waves;
mod windows;

fn at(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).expect("valid"))
}

fn token(value: &str) -> Token {
    Token::parse(value.as_bytes()).expect("valid token")
}

fn identity(serial: i64) -> TokenIdentity {
    TokenIdentity {
        serial,
        issued_at: at(0),
    }
}

const KEY: &str = "fingerprint-key";

/// Builds snapshots: a `generate` StreamingToken named `telemetry` by default.
struct Fixture {
    snapshot: Snapshot,
}

/// The default snapshot, for the decision modules' own tests.
pub(crate) fn base_snapshot() -> Snapshot {
    fixture().snapshot
}

fn fixture() -> Fixture {
    Fixture {
        snapshot: Snapshot {
            kind: TokenKind::Namespaced,
            name: "telemetry".into(),
            uid: String::new(),
            rotate_request: None,
            ignore_windows: None,
            notifications: Default::default(),
            namespace: "prod".into(),
            source_namespace: "prod".into(),
            generation: 1,
            spec: StreamingTokenSpec {
                source: TokenSource {
                    generate: Some(GenerateSource::default()),
                    secret_ref: None,
                    platform: None,
                },
                secret: Default::default(),
                consumers: Default::default(),
                rotation: Default::default(),
                suspend: false,
                deletion_policy: DeletionPolicy::Retain,
                platform: None,
                clusters: Vec::new(),
            },
            status: StreamingTokenStatus::default(),
            secret_name: "telemetry".into(),
            mirror: MirrorObservation::Missing,
            source: SourceObservation::Issued,
            origin: SourceOrigin {
                label: "the generated pair".into(),
                ..SourceOrigin::default()
            },
            namespaces: vec![NamespaceView {
                namespace: "prod".into(),
                copy: CopyObservation::Home,
                membership: Membership::Selected,
                referencing: Vec::new(),
                foreign_since: None,
                label_taken: false,
                consumers: Vec::new(),
                pods: Vec::new(),
            }],
            retain_unselected: false,
            selection_problem: None,
            platform: None,
            fresh: FreshMaterial {
                tokens: [token("fresh-a"), token("fresh-b")],
                fingerprint_key: "new-key".into(),
            },
            failures: 0,
        },
    }
}

fn mirror_of(pair: (&str, &str), serials: (i64, i64)) -> ObservedMirror {
    let write = MirrorWrite {
        pair: TokenPair {
            token1: token(pair.0),
            token2: token(pair.1),
        },
        identities: [identity(serials.0), identity(serials.1)],
        fingerprint_key: KEY.into(),
        owned: false,
        precondition: None,
        replacement: None,
    };
    ObservedMirror {
        resource_version: Some("10".into()),
        token1: Some(Ok(token(pair.0))),
        token2: Some(Ok(token(pair.1))),
        labels: mirror_labels(crate::api::TOKEN_LABEL, "telemetry"),
        annotations: mirror_annotations(&write),
        owner_uids: Vec::new(),
        values_written_at: Some(1_800_000_000),
    }
}

impl Fixture {
    /// An established pair: mirror Secret and status agree.
    fn established(mut self, pair: (&str, &str), serials: (i64, i64)) -> Self {
        self.snapshot.mirror = MirrorObservation::Owned(mirror_of(pair, serials));
        self.snapshot.status.token1 = Some(identity(serials.0));
        self.snapshot.status.token2 = Some(identity(serials.1));
        self.snapshot.status.observed_trigger = self.snapshot.spec.rotation.trigger.clone();
        self
    }

    fn secret_ref(mut self, source: Result<(&str, &str), SourceProblem>) -> Self {
        self.snapshot.spec.source = TokenSource {
            generate: None,
            secret_ref: Some(SecretRefSource {
                name: "portal".into(),
                token1_key: "token1".into(),
                token2_key: "token2".into(),
            }),
            platform: None,
        };
        // The origin as the real source describes itself.
        self.snapshot.origin = crate::source::from_spec(&self.snapshot.spec.source).origin();
        self.snapshot.source = SourceObservation::External(
            source.map(|(one, two)| TokenPair {
                token1: token(one),
                token2: token(two),
            }),
            None,
        );
        self
    }

    /// The source Secret carries `streamingtoken.io/replacement: value` (a person's
    /// confirmation that an unrecognized pair is a real replacement).
    fn confirmed(mut self, value: &str) -> Self {
        if let SourceObservation::External(_, replacement) = &mut self.snapshot.source {
            *replacement = Some(value.into());
        }
        self
    }

    fn trigger(mut self, value: &str) -> Self {
        self.snapshot.spec.rotation.trigger = Some(value.into());
        self
    }

    fn strategy(mut self, strategy: RotationStrategy) -> Self {
        self.snapshot.spec.rotation.strategy = strategy;
        self
    }

    fn consumer(mut self, consumer: ConsumerObservation) -> Self {
        self.snapshot.namespaces[0].consumers.push(consumer);
        self
    }

    fn rotating(mut self, phase: &str, deactivates: i64, strategy: RotationStrategy) -> Self {
        self.snapshot.status.rotation = Some(crate::api::RotationStatus {
            id: format!("r{deactivates}"),
            cause: "Trigger".into(),
            trigger: Some("t2".into()),
            strategy,
            phase: phase.into(),
            started_at: at(0),
            phase_started_at: at(0),
            rollout_started_at: None,
            deactivates_serial: deactivates,
            queued_trigger: None,
            queued_request: None,
            waves: None,
            consumers_started_at: None,
            started: Vec::new(),
            left_alone: Vec::new(),
            platform_rotate: None,
        });
        self.snapshot.status.observed_trigger = Some("t2".into());
        self.snapshot.spec.rotation.trigger = Some("t2".into());
        self
    }

    fn plan(&self) -> Plan {
        plan(&self.snapshot, &at(100))
    }

    /// The pass after `previous` wrote the mirror Secret, once kubelets can have its values:
    /// its status recorded and the pair it wrote observed (written 50 s before now).
    fn settled(&mut self, previous: &Plan) -> Plan {
        self.snapshot.status = previous.status.clone();
        if let Some(write) = &previous.secret {
            let mut observed = mirror_of(
                (write.pair.token1.expose(), write.pair.token2.expose()),
                (write.identities[0].serial, write.identities[1].serial),
            );
            observed.annotations = mirror_annotations(write);
            observed.values_written_at = Some(1_800_000_000 + 50);
            self.snapshot.mirror = MirrorObservation::Owned(observed);
        }
        self.plan()
    }

    /// The next reconcile, after `previous` was carried out (its status written; a Secret it
    /// held back is still as observed).
    fn after(&mut self, previous: &Plan) -> Plan {
        assert!(
            previous.secret.is_none() && previous.consumer_patches.is_empty(),
            "a persist-first plan writes only status"
        );
        self.snapshot.status = previous.status.clone();
        self.plan()
    }
}

/// A Deployment consumer that is (or is not) rolled out on rotation `id`.
fn consumer(name: &str, rotation: Option<&str>, pointed_at_token2: bool) -> ConsumerObservation {
    ConsumerObservation {
        kind: WorkloadKind::Deployment,
        namespace: "prod".into(),
        name: name.into(),
        wave: Default::default(),
        aborted: false,
        promoted: true,
        generation: 2,
        observed_generation: 2,
        paused: false,
        progress_deadline_exceeded: false,
        on_delete_strategy: false,
        desired: 2,
        total: 2,
        updated: 2,
        ready: 2,
        available: 2,
        template_rotation: rotation.map(Into::into),
        stamp_key: crate::api::ROTATION_ANNOTATION.into(),
        shared: false,
        containers: vec![ContainerEnv {
            name: "app".into(),
            init: false,
            // Not yet repointed: the variable reads Token 1, as every consumer does before its
            // first rotation.
            source: EnvSource::SecretKey {
                secret: "telemetry".into(),
                key: if pointed_at_token2 {
                    "token2"
                } else {
                    "token1"
                }
                .into(),
            },
            mirror_reads: Vec::new(),
            key_owners: Vec::new(),
            repointed: Vec::new(),
        }],
        pods: Some(
            (0..2)
                .map(|index| PodObservation {
                    name: format!("{name}-{index}"),
                    rotation: rotation.map(Into::into),
                    terminating: false,
                    held_by: vec![],
                })
                .collect(),
        ),
        selector: None,
        batch: None,
    }
}

fn condition(plan: &Plan, type_: &str) -> Option<(String, String)> {
    conditions::get(&plan.status.conditions, type_)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|notice| notice.reason).collect()
}

fn written_pair(plan: &Plan) -> Option<(String, String, i64, i64)> {
    plan.secret.as_ref().map(|write| {
        (
            write.pair.token1.expose().to_string(),
            write.pair.token2.expose().to_string(),
            write.identities[0].serial,
            write.identities[1].serial,
        )
    })
}

/// A pod record of `owner` that reads `key` of the mirror Secret through `variable`.
fn pod_record(
    name: &str,
    owner: Option<(&str, &str)>,
    key: &str,
    rotation: Option<&str>,
) -> Arc<PodRecord> {
    Arc::new(PodRecord {
        name: name.into(),
        owner: owner.map(|(kind, name)| Owner {
            kind: kind.into(),
            name: name.into(),
        }),
        rotation: rotation.map(Into::into),
        token_stamps: Vec::new(),
        token_label: None,
        created_at: 1_800_000_000 + 50,
        deletion_deadline: None,
        finalizers: Vec::new(),
        references: vec![SecretReference {
            secret: "telemetry".into(),
            keys: SecretKeys::Listed(vec![key.into()]),
            used: SecretUse::Env {
                container: "app".into(),
                variable: "Quix__Sdk__Token".into(),
            },
        }],
    })
}

/// The pods of a rolled-out consumer, as the pod watch records them.
fn consumer_pods(name: &str, rotation: &str) -> Vec<Arc<PodRecord>> {
    (0..2)
        .map(|index| {
            pod_record(
                &format!("{name}-{index}"),
                Some(("Deployment", name)),
                "token2",
                Some(rotation),
            )
        })
        .collect()
}

fn fixture_deactivating() -> Plan {
    fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .plan()
}

/// A selected namespace of a ClusterStreamingToken whose mirror Secret is `copy`.
fn cluster_view(namespace: &str, copy: CopyObservation) -> NamespaceView {
    NamespaceView {
        namespace: namespace.into(),
        copy,
        membership: Membership::Selected,
        referencing: Vec::new(),
        foreign_since: None,
        label_taken: false,
        consumers: Vec::new(),
        pods: Vec::new(),
    }
}

/// A copy read now, holding `pair` under `serials`.
fn copy_of(pair: (&str, &str), serials: (i64, i64)) -> CopyObservation {
    let mut observed = mirror_of(pair, serials);
    observed.labels = mirror_labels(crate::api::CLUSTER_TOKEN_LABEL, "telemetry");
    CopyObservation::Read(observed)
}

fn in_namespace(mut consumer: ConsumerObservation, namespace: &str) -> ConsumerObservation {
    consumer.namespace = namespace.into();
    consumer
}

impl Fixture {
    /// The same object as a ClusterStreamingToken whose pair of record lives in `sto-system`,
    /// reaching `views`.
    fn cluster(mut self, views: Vec<NamespaceView>) -> Self {
        self.snapshot.kind = TokenKind::Cluster;
        self.snapshot.namespace = "sto-system".into();
        self.snapshot.source_namespace = "sto-system".into();
        self.snapshot.namespaces = views;
        self
    }
}

/// A consumer started by rotation r1 (stamped, pointed at Token 2) whose pods are still old.
fn rolling_consumer(name: &str) -> ConsumerObservation {
    let mut consumer = consumer(name, Some("r1"), true);
    for pod in consumer.pods.as_mut().expect("pods") {
        pod.rotation = Some("r0".into());
    }
    consumer
}

fn waved(mut consumer: ConsumerObservation, wave: i64) -> ConsumerObservation {
    consumer.wave = crate::model::consumer::Wave::Number(wave);
    consumer
}

fn patched(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.name.clone())
        .collect();
    names.sort();
    names
}

/// The platform's word: `(token value, verdict)`.
fn platform(verdicts: &[(&str, Verdict)], rotates: bool, read_fresh: bool) -> PlatformObservation {
    PlatformObservation {
        verdicts: verdicts
            .iter()
            .map(|(value, verdict)| (token(value), verdict.clone()))
            .collect(),
        rotates,
        read_fresh,
        ..PlatformObservation::default()
    }
}

impl Fixture {
    fn with_platform(mut self, observation: PlatformObservation) -> Self {
        self.snapshot.platform = Some(observation);
        self
    }

    /// `source.platform`: the pair read from the platform (`External` with no confirmation).
    fn at_platform(mut self, pair: (&str, &str)) -> Self {
        self = self.secret_ref(Ok(pair));
        self.snapshot.spec.source = TokenSource {
            generate: None,
            secret_ref: None,
            platform: Some(Default::default()),
        };
        self.snapshot.origin = crate::source::from_spec(&self.snapshot.spec.source).origin();
        self
    }
}

fn message_of(plan: &Plan, type_: &str) -> String {
    conditions::get(&plan.status.conditions, type_)
        .map(|condition| condition.message.clone())
        .unwrap_or_default()
}
