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
            },
            status: StreamingTokenStatus::default(),
            secret_name: "telemetry".into(),
            mirror: MirrorObservation::Missing,
            source: SourceObservation::Issued,
            namespaces: vec![NamespaceView {
                namespace: "prod".into(),
                copy: CopyObservation::Home,
                selected: true,
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

#[test]
fn mirror_decisions() {
    struct Case {
        name: &'static str,
        fixture: Fixture,
        pair: Option<(&'static str, &'static str, i64, i64)>,
        ready: (&'static str, &'static str),
        event: Option<&'static str>,
    }
    let mut tampered = mirror_of(("one", "two"), (1, 2));
    tampered.token1 = Some(Ok(token("edited")));
    let mut edited_serial = mirror_of(("one", "two"), (1, 2));
    edited_serial
        .annotations
        .insert(ANNOTATION_TOKEN2_SERIAL.into(), "99".into());
    let cases = vec![
        Case {
            name: "first pair is issued",
            fixture: fixture(),
            pair: Some(("fresh-a", "fresh-b", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("TokensIssued"),
        },
        Case {
            name: "converged: nothing written",
            fixture: fixture().established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: None,
        },
        Case {
            name: "deleted generated Secret: new pair, warning",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Missing;
                fixture
            },
            pair: Some(("fresh-a", "fresh-b", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretDeleted"),
        },
        Case {
            name: "edited value: pair lost, new pair, warning",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Owned(tampered);
                fixture
            },
            pair: Some(("fresh-a", "fresh-b", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretTampered"),
        },
        Case {
            name: "edited serial annotation: restored from status",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Owned(edited_serial);
                fixture
            },
            pair: Some(("one", "two", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("MirrorSecretRepaired"),
        },
        Case {
            name: "secretRef first mirror",
            fixture: fixture().secret_ref(Ok(("p1", "p2"))),
            pair: Some(("p1", "p2", 1, 2)),
            ready: ("True", "TokensReady"),
            event: Some("TokensMirrored"),
        },
        Case {
            name: "secretRef unchanged",
            fixture: fixture()
                .secret_ref(Ok(("one", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: None,
        },
        Case {
            name: "secretRef promoted at the platform",
            fixture: fixture()
                .secret_ref(Ok(("two", "three")))
                .established(("one", "two"), (1, 2)),
            pair: Some(("two", "three", 2, 3)),
            ready: ("True", "TokensReady"),
            event: Some("SourcePromoted"),
        },
        Case {
            name: "secretRef replaced out of band, confirmed",
            fixture: fixture()
                .secret_ref(Ok(("x", "y")))
                .confirmed("leak-1")
                .established(("one", "two"), (1, 2)),
            pair: Some(("x", "y", 3, 4)),
            ready: ("True", "TokensReady"),
            event: Some("SourceReplaced"),
        },
        Case {
            name: "secretRef: an unrecognized pair (another environment's) waits for confirmation",
            fixture: fixture()
                .secret_ref(Ok(("x", "y")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceUnrecognized"),
        },
        Case {
            name: "secretRef: keys swapped",
            fixture: fixture()
                .secret_ref(Ok(("two", "one")))
                .confirmed("leak-1")
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceUnrecognized"),
        },
        Case {
            name: "secretRef: the new Token 2 pasted first",
            fixture: fixture()
                .secret_ref(Ok(("one", "three")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef: the promoted Token 1 pasted first (both keys hold the former Token 2)",
            fixture: fixture()
                .secret_ref(Ok(("two", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef: the same unknown value twice",
            fixture: fixture()
                .secret_ref(Ok(("same", "same")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("False", "SourceTokensIdentical"),
            event: Some("SourceTokensIdentical"),
        },
        Case {
            name: "secretRef: a new Token 1 pasted first",
            fixture: fixture()
                .secret_ref(Ok(("three", "two")))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("True", "TokensReady"),
            event: Some("SourceIncomplete"),
        },
        Case {
            name: "secretRef source missing: mirror kept",
            fixture: fixture()
                .secret_ref(Err(SourceProblem::NotFound {
                    name: "portal".into(),
                }))
                .established(("one", "two"), (1, 2)),
            pair: None,
            ready: ("False", "SourceSecretNotFound"),
            event: Some("SourceSecretNotFound"),
        },
        Case {
            name: "secretRef invalid token",
            fixture: fixture().secret_ref(Err(SourceProblem::InvalidToken {
                name: "portal".into(),
                key: "token1".into(),
                problem: TokenProblem::Empty,
            })),
            pair: None,
            ready: ("False", "SourceTokenInvalid"),
            event: Some("SourceTokenInvalid"),
        },
        Case {
            name: "foreign Secret",
            fixture: {
                let mut fixture = fixture();
                fixture.snapshot.mirror = MirrorObservation::NotOwned;
                fixture
            },
            pair: None,
            ready: ("False", "SecretNotOwned"),
            event: Some("SecretNotOwned"),
        },
        Case {
            name: "Secret of another StreamingToken",
            fixture: {
                let mut fixture = fixture();
                fixture.snapshot.mirror = MirrorObservation::ClaimedBy("other".into());
                fixture
            },
            pair: None,
            ready: ("False", "SecretClaimedByOther"),
            event: Some("SecretClaimedByOther"),
        },
        Case {
            name: "source and mirror are one Secret",
            fixture: {
                let mut fixture = fixture().secret_ref(Ok(("p1", "p2")));
                fixture.snapshot.secret_name = "portal".into();
                fixture
            },
            pair: None,
            ready: ("False", "InvalidSpec"),
            event: Some("InvalidSpec"),
        },
        Case {
            name: "suspended: deleted Secret not repaired",
            fixture: {
                let mut fixture = fixture().established(("one", "two"), (1, 2));
                fixture.snapshot.mirror = MirrorObservation::Missing;
                fixture.snapshot.spec.suspend = true;
                fixture
            },
            pair: None,
            ready: ("False", "Suspended"),
            event: None,
        },
    ];
    for case in cases {
        let plan = case.fixture.plan();
        let pair = written_pair(&plan);
        let want = case
            .pair
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c, d));
        assert_eq!(pair, want, "{}: written pair", case.name);
        assert_eq!(
            condition(&plan, READY),
            Some((case.ready.0.to_string(), case.ready.1.to_string())),
            "{}: Ready",
            case.name
        );
        assert_eq!(
            reasons(&plan).first().copied(),
            case.event,
            "{}: first event",
            case.name
        );
    }
}

#[test]
fn a_problem_already_reported_is_not_reported_again_and_backs_off() {
    let mut fixture = fixture().secret_ref(Err(SourceProblem::NotFound {
        name: "portal".into(),
    }));
    let first = fixture.plan();
    assert_eq!(first.failed, Some("SourceSecretNotFound"));
    assert_eq!(first.requeue, Requeue::After(Duration::from_secs(5)));
    fixture.snapshot.status = first.status;
    fixture.snapshot.failures = 3;
    let again = fixture.plan();
    assert!(
        again.events.is_empty(),
        "no duplicate Event: {:?}",
        reasons(&again)
    );
    assert_eq!(again.requeue, Requeue::After(Duration::from_secs(40)));
    fixture.snapshot.failures = 30;
    assert_eq!(fixture.plan().requeue, Requeue::After(MAX_BACKOFF));
}

#[test]
fn the_trigger_a_streamingtoken_is_created_with_does_not_rotate() {
    let plan = fixture()
        .trigger("initial")
        .consumer(consumer("api", None, false))
        .plan();
    assert!(plan.status.rotation.is_none());
    assert_eq!(plan.status.observed_trigger.as_deref(), Some("initial"));
    assert!(plan.consumer_patches.is_empty());
    assert_eq!(
        condition(&plan, ROTATING),
        Some(("False".into(), "Idle".into()))
    );
}

#[test]
fn the_same_trigger_again_does_nothing() {
    let plan = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false))
        .plan();
    assert!(plan.status.rotation.is_none());
    assert!(plan.secret.is_none());
    assert!(plan.consumer_patches.is_empty());
}

#[test]
fn a_new_trigger_starts_a_zero_downtime_rotation_by_repointing() {
    let mut fixture = fixture().trigger("t1").established(("one", "two"), (1, 2));
    fixture = fixture
        .trigger("t2")
        .consumer(consumer("api", None, false))
        .consumer(consumer("web", Some("r0"), true));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("rotation started");
    assert_eq!(
        (rotation.id.as_str(), rotation.phase.as_str()),
        ("r1", PHASE_REPOINTING)
    );
    assert_eq!(rotation.deactivates_serial, 1);
    assert_eq!(started.status.observed_trigger.as_deref(), Some("t2"));
    assert_eq!(
        reasons(&started),
        ["RotationStarted"],
        "the start is recorded before anything is written"
    );
    let plan = fixture.after(&started);
    assert!(plan.secret.is_none(), "Token 1 stays active");
    let patched: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.name.as_str())
        .collect();
    assert_eq!(patched, ["api", "web"]);
    let repoint = plan.consumer_patches[0].repoint.clone().expect("repoint");
    assert_eq!(
        (
            repoint.containers[0].variables[0].as_str(),
            repoint.key.as_str()
        ),
        ("STREAMING_TOKEN", "token2")
    );
    assert_eq!(reasons(&plan), ["ConsumersRepointed"]);
}

#[test]
fn zero_downtime_deactivates_only_once_every_consumer_is_verified() {
    let base = || {
        fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_AWAITING_ROLLOUT,
            1,
            RotationStrategy::ZeroDowntime,
        )
    };
    let mut terminating = consumer("web", Some("r1"), true);
    terminating
        .pods
        .as_mut()
        .expect("pods")
        .push(PodObservation {
            name: "web-old".into(),
            rotation: None,
            terminating: true,
            held_by: vec![],
        });
    let mut paused = consumer("web", Some("r1"), true);
    paused.paused = true;
    let cases: Vec<(&str, Fixture, bool)> = vec![
        (
            "all verified",
            base().consumer(consumer("api", Some("r1"), true)),
            true,
        ),
        ("no consumers", base(), true),
        (
            "an old pod is terminating",
            base()
                .consumer(consumer("api", Some("r1"), true))
                .consumer(terminating),
            false,
        ),
        ("a consumer is paused", base().consumer(paused), false),
    ];
    for (name, fixture, deactivated) in cases {
        let plan = fixture.plan();
        match written_pair(&plan) {
            Some(pair) => {
                assert!(deactivated, "{name}: deactivated too early");
                assert_eq!(pair, ("two".into(), "fresh-a".into(), 2, 3), "{name}");
                assert!(plan.status.rotation.is_none(), "{name}: completed");
                assert_eq!(
                    plan.status
                        .last_rotation
                        .as_ref()
                        .map(|last| last.id.as_str()),
                    Some("r1")
                );
                assert!(reasons(&plan).contains(&"TokenDeactivated"));
                assert!(reasons(&plan).contains(&"RotationCompleted"));
            }
            None => {
                assert!(!deactivated, "{name}: should have deactivated");
                assert!(plan.status.rotation.is_some(), "{name}: still rotating");
            }
        }
    }
}

#[test]
fn a_blocked_consumer_is_reported_and_degrades() {
    let mut paused = consumer("web", Some("r1"), true);
    paused.paused = true;
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(paused)
        .plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.blocked.len(), 1);
    assert_eq!(summary.blocked[0].reason, "Paused");
    assert!(reasons(&plan).contains(&"ConsumerBlocked"));
    assert!(plan.secret.is_none());
}

#[test]
fn restart_strategy_deactivates_first_then_restarts_consumers() {
    let mut fixture = fixture()
        .trigger("t1")
        .established(("one", "two"), (1, 2))
        .trigger("t2")
        .strategy(RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    let started = fixture.plan();
    assert_eq!(reasons(&started), ["RotationStarted"]);
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    let rotation = plan.status.rotation.clone().expect("still restarting");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(reasons(&plan), ["TokenDeactivated", "Restarting"]);
    // Restarted pods read Token 1: only once kubelets can have the new values.
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
    assert!(
        plan.consumer_patches[0].repoint.is_none(),
        "Restart does not repoint"
    );
    assert_eq!(reasons(&plan), ["ConsumersRestarted"]);
}

#[test]
fn a_crash_after_the_deactivating_write_completes_without_writing_again() {
    // Status still says AwaitingRollout for r1, but the Secret already holds the promoted pair.
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.status.token1 = Some(identity(1));
    fixture.snapshot.status.token2 = Some(identity(2));
    let plan = fixture.plan();
    assert!(plan.secret.is_none(), "no second deactivation");
    assert!(plan.status.rotation.is_none());
    assert!(
        reasons(&plan).contains(&"TokenDeactivated"),
        "the Event the interrupted pass never published"
    );
    assert_eq!(
        plan.status.token1.as_ref().map(|token| token.serial),
        Some(2)
    );
}

#[test]
fn replayed_repoint_is_a_no_op() {
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .plan();
    assert!(
        plan.consumer_patches.is_empty(),
        "already on r1 and Token 2: no second roll"
    );
}

#[test]
fn a_trigger_during_a_rotation_is_queued_and_runs_next() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.namespaces[0].consumers[0].pods = Some(vec![]);
    fixture.snapshot.spec.rotation.trigger = Some("t3".into());
    fixture.snapshot.namespaces[0].consumers[0].template_rotation = Some("r1".into());
    fixture.snapshot.namespaces[0].consumers[0]
        .pods
        .as_mut()
        .expect("pods")
        .push(PodObservation {
            name: "old".into(),
            rotation: None,
            terminating: true,
            held_by: vec![],
        });
    let plan = fixture.plan();
    let rotation = plan.status.rotation.clone().expect("same rotation");
    assert_eq!(rotation.id, "r1", "not interrupted");
    assert_eq!(rotation.queued_trigger.as_deref(), Some("t3"));
    assert!(reasons(&plan).contains(&"RotationQueued"));

    // Once r1 completes, the queued trigger starts r2.
    fixture.snapshot.status = plan.status;
    fixture.snapshot.namespaces[0].consumers[0].pods = Some(vec![]);
    let plan = fixture.plan();
    assert_eq!(written_pair(&plan).map(|pair| pair.2), Some(2));
    let next = plan.status.rotation.expect("queued rotation started");
    assert_eq!(next.id, "r2");
    assert_eq!(plan.status.observed_trigger.as_deref(), Some("t3"));
}

#[test]
fn secret_ref_rotation_hands_over_to_a_person_and_completes_on_promotion() {
    let waiting = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let plan = waiting.plan();
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_SOURCE)
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    assert!(plan.secret.is_none());

    let mut promoted = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    promoted.snapshot.status.conditions = plan.status.conditions.clone();
    let plan = promoted.plan();
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "NoRotation".into()))
    );
}

#[test]
fn secret_ref_consumers_not_verified_means_not_ready_to_rotate() {
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .consumer(consumer("web", Some("r1"), true))
        .plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    let mut unverified = consumer("web", Some("r1"), true);
    unverified.ready = 1;
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(unverified)
        .plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
}

#[test]
fn tokens_replaced_out_of_band_restart_every_consumer() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-2026-12-01")
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r1"), true));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("restart rotation");
    assert_eq!(rotation.cause, "TokensReplaced");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(
        rotation.id, "x3",
        "named after the new Token 1, unlike any earlier rotation"
    );
    assert_eq!(
        started.status.token1.as_ref().map(|token| token.serial),
        Some(1),
        "not mirrored yet"
    );
    let plan = fixture.after(&started);
    assert_eq!(written_pair(&plan), Some(("x".into(), "y".into(), 3, 4)));
    assert!(reasons(&plan).contains(&"SourceReplaced"));
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(
        plan.consumer_patches.len(),
        1,
        "a consumer already on r1 restarts too"
    );
    assert_eq!(
        plan.status.rotation.map(|rotation| rotation.id),
        Some("x3".into())
    );
}

#[test]
fn replacement_during_a_rotation_abandons_it_and_restarts_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-2026-12-01")
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let started = fixture.plan();
    assert_eq!(reasons(&started), ["RotationAborted", "RotationStarted"]);
    let plan = fixture.after(&started);
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.id.as_str()),
        Some("x3")
    );
    assert!(
        !reasons(&plan).contains(&"RotationAborted"),
        "the restart is not abandoned for itself"
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn secret_ref_promoted_before_consumers_are_verified_waits_for_them() {
    let mut unverified = consumer("api", Some("r1"), true);
    unverified.ready = 1;
    let plan = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(unverified)
        .plan();
    assert!(reasons(&plan).contains(&"SourcePromotedEarly"));
    assert!(
        plan.status.rotation.is_some(),
        "not complete while a consumer is unverified"
    );
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3)),
        "the mirror follows the source"
    );
}

#[test]
fn ready_to_rotate_is_withdrawn_when_a_consumer_regresses() {
    let mut regressed = consumer("api", Some("r1"), true);
    regressed.pods.as_mut().expect("pods").push(PodObservation {
        name: "api-old".into(),
        rotation: Some("r0".into()),
        terminating: false,
        held_by: vec![],
    });
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(regressed);
    fixture.snapshot.status.conditions.clear();
    let plan = fixture.plan();
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_ROLLOUT)
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
}

#[test]
fn periodic_rotation_is_scheduled_and_starts_when_due() {
    let mut fixture = fixture().established(("one", "two"), (1, 2));
    fixture.snapshot.spec.rotation.interval = Some("1h".into());
    let plan = plan(&fixture.snapshot, &at(60));
    assert_eq!(plan.status.next_rotation_at, Some(at(3600)));
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(3540)));
    assert!(plan.status.rotation.is_none());
    // The start is recorded first; with no consumers the rotation then completes at once.
    let started = super::plan(&fixture.snapshot, &at(3600));
    assert_eq!(
        started
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.cause.as_str()),
        Some("Interval")
    );
    assert!(started.secret.is_none());
    fixture.snapshot.status = started.status.clone();
    let plan = super::plan(&fixture.snapshot, &at(3600));
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    assert!(reasons(&plan).contains(&"RotationCompleted"));
    assert_eq!(
        plan.status.last_rotation.map(|last| last.completed_at),
        Some(at(3600))
    );
    assert_eq!(plan.status.next_rotation_at, Some(at(7200)));
}

#[test]
fn a_literal_env_value_blocks_repointing_with_a_clear_reason() {
    let mut literal = consumer("api", None, false);
    literal.containers[0].source = EnvSource::Literal;
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(literal)
        .plan();
    assert!(plan.consumer_patches.is_empty());
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.blocked[0].reason, "LiteralEnvValue");
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "ConsumerBlocked".into()))
    );
    assert!(plan.secret.is_none());
}

#[test]
fn no_token_value_reaches_status_events_or_debug_output() {
    let sentinel = "SENTINEL-value-0123456789";
    let fixtures = [
        fixture().secret_ref(Ok((sentinel, "other"))),
        fixture()
            .secret_ref(Ok(("other", sentinel)))
            .established(("one", "two"), (1, 2)),
        fixture().secret_ref(Ok((sentinel, sentinel))),
    ];
    for fixture in fixtures {
        let plan = fixture.plan();
        let status = serde_json::to_string(&plan.status).expect("serializes");
        assert!(!status.contains(sentinel));
        for notice in &plan.events {
            assert!(!notice.message.contains(sentinel));
        }
        assert!(
            !format!("{plan:?}").contains(sentinel),
            "Debug of a plan redacts tokens"
        );
    }
}

#[test]
fn waiting_on_the_source_is_stable_across_reconciles() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let first = fixture.plan();
    assert_eq!(
        first
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_AWAITING_SOURCE)
    );
    fixture.snapshot.status = first.status.clone();
    let again = plan(&fixture.snapshot, &at(300));
    assert!(
        again.events.is_empty(),
        "no Events while waiting: {:?}",
        reasons(&again)
    );
    assert_eq!(again.status, first.status, "no status write while waiting");
    assert!(again.secret.is_none() && again.consumer_patches.is_empty());
}

#[test]
fn promotion_seen_with_an_unrepointed_consumer_rolls_it_first() {
    // The platform was rotated while a newly labelled consumer still reads Token 1.
    let plan = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .consumer(consumer("late", None, false))
        .plan();
    assert!(
        plan.status.rotation.is_some(),
        "not complete with a consumer left behind"
    );
    assert_eq!(plan.consumer_patches.len(), 1);
    assert_eq!(plan.consumer_patches[0].name, "late");
}

#[test]
fn a_promotion_with_no_rotation_restarts_consumers_under_a_new_id() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false));
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("restart");
    assert_eq!(
        (rotation.id.as_str(), rotation.cause.as_str()),
        ("x2", "TokensReplaced")
    );
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn a_restart_replayed_after_its_deactivating_write_does_not_deactivate_again() {
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_DEACTIVATING, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    fixture.snapshot.status.token1 = Some(identity(1));
    fixture.snapshot.status.token2 = Some(identity(2));
    let plan = fixture.plan();
    assert!(plan.secret.is_none(), "Token 1 was already deactivated");
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .map(|rotation| rotation.phase.as_str()),
        Some(PHASE_RESTARTING)
    );
    assert_eq!(plan.consumer_patches.len(), 1);
}

#[test]
fn a_deleted_generated_secret_with_consumers_restarts_them_once_recorded() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let started = fixture.plan();
    assert_eq!(
        started
            .status
            .rotation
            .as_ref()
            .map(|rotation| rotation.id.as_str()),
        Some("x3")
    );
    let plan = fixture.after(&started);
    assert_eq!(
        written_pair(&plan).map(|pair| (pair.2, pair.3)),
        Some((3, 4))
    );
    assert!(reasons(&plan).contains(&"MirrorSecretDeleted"));
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&plan);
    assert_eq!(plan.consumer_patches.len(), 1);
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

#[test]
fn deactivation_waits_for_every_pod_that_may_hold_token1_whatever_owns_it() {
    let base = || {
        let mut fixture = fixture()
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
            .consumer(consumer("api", Some("r1"), true));
        fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
        fixture
    };
    let with = |extra: Arc<PodRecord>| {
        let mut fixture = base();
        fixture.snapshot.namespaces[0].pods.push(extra);
        fixture
    };
    let mut terminating =
        (*pod_record("gone-1", Some(("Deployment", "gone")), "token1", None)).clone();
    terminating.deletion_deadline = Some(1_800_000_000 + 130);
    let mut held = terminating.clone();
    held.name = "gone-2".into();
    held.deletion_deadline = Some(1_800_000_000 + 10);
    held.finalizers = vec!["example.com/hold".into()];
    let mut stuck = terminating.clone();
    stuck.name = "gone-3".into();
    stuck.deletion_deadline = Some(1_800_000_000 + 100 - 31);
    let reverted = pod_record("api-9", Some(("Deployment", "api")), "token1", Some("r1"));
    let mut early_reader =
        (*pod_record("old-0", Some(("StatefulSet", "old")), "token2", None)).clone();
    // Created before the previous deactivation wrote the values: its Token 2 was today's Token 1.
    early_reader.created_at = 1_800_000_000 - 100;
    let cases: Vec<(&str, Fixture, Option<&str>)> = vec![
        ("only rolled pods reading Token 2", base(), None),
        (
            "an unlabelled Deployment reads Token 1",
            with(pod_record(
                "batch-1",
                Some(("Deployment", "batch")),
                "token1",
                None,
            )),
            Some("UnlabelledReader"),
        ),
        (
            "a bare pod reads Token 1",
            with(pod_record("debug", None, "token1", None)),
            Some("UnmanagedPodReadsToken"),
        ),
        (
            "a pod of a deleted consumer is terminating within its grace period",
            with(Arc::new(terminating)),
            Some("Waiting"),
        ),
        (
            "a pod of a deleted consumer is held by a finalizer",
            with(Arc::new(held)),
            Some("PodHeldByFinalizer"),
        ),
        (
            "a pod stuck terminating well past its grace period, no finalizer",
            with(Arc::new(stuck)),
            Some("PodStuckTerminating"),
        ),
        (
            "a consumer pod stamped with the rotation still reads Token 1 (reverted template)",
            with(reverted),
            Some("ContainerNotRepointed"),
        ),
        (
            "an unlabelled pod read Token 2 before the last write",
            with(Arc::new(early_reader)),
            Some("UnlabelledReader"),
        ),
    ];
    for (name, fixture, held_by) in cases {
        let plan = fixture.plan();
        let blocked: Vec<String> = plan
            .status
            .consumers
            .as_ref()
            .map(|summary| summary.blocked.iter().map(|b| b.reason.clone()).collect())
            .unwrap_or_default();
        match held_by {
            None => {
                assert!(plan.deactivates, "{name}: should deactivate");
                assert!(written_pair(&plan).is_some(), "{name}");
            }
            Some(reason) => {
                assert!(
                    !plan.deactivates && plan.secret.is_none(),
                    "{name}: deactivated"
                );
                assert!(plan.status.rotation.is_some(), "{name}: still rotating");
                if reason == "Waiting" {
                    assert!(
                        blocked.is_empty(),
                        "{name}: waiting is not blocked: {blocked:?}"
                    );
                } else {
                    assert_eq!(blocked, [reason], "{name}");
                    assert_eq!(
                        condition(&plan, DEGRADED),
                        Some(("True".into(), "ConsumerBlocked".into())),
                        "{name}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_secret_ref_rotation_is_not_ready_to_rotate_while_a_pod_may_hold_token1() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
    fixture.snapshot.namespaces[0].pods.push(pod_record(
        "batch-1",
        Some(("Deployment", "batch")),
        "token1",
        None,
    ));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
    fixture.snapshot.namespaces[0].pods.pop();
    assert_eq!(
        condition(&fixture.plan(), READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
}

#[test]
fn an_unlabelled_reader_is_reported_before_any_rotation() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r0");
    fixture.snapshot.namespaces[0].pods.push(pod_record(
        "batch-1",
        Some(("Deployment", "batch")),
        "token1",
        None,
    ));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "UnlabelledReader".into()))
    );
    assert_eq!(reasons(&plan), ["UnlabelledReader"]);
    let summary = plan.status.consumers.clone().expect("summary");
    assert_eq!(summary.unlabelled_readers.len(), 1);
    assert_eq!(summary.unlabelled_readers[0].name, "batch");
    assert!(
        summary.unlabelled_readers[0]
            .message
            .contains("variable Quix__Sdk__Token"),
        "{}",
        summary.unlabelled_readers[0].message
    );
    // Reported once: the same reader again is no new Event and no status change.
    fixture.snapshot.status = plan.status.clone();
    let again = fixture.plan();
    assert!(again.events.is_empty(), "{:?}", reasons(&again));
    assert_eq!(again.status, plan.status);
}

#[test]
fn restart_with_secret_ref_does_not_claim_consumers_use_token2() {
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_DEACTIVATING, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false))
        .plan();
    let ready = conditions::get(&plan.status.conditions, READY_TO_ROTATE).expect("condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "RestartAfterRotation")
    );
    assert!(
        !ready.message.contains("every consumer uses Token 2"),
        "{}",
        ready.message
    );
}

#[test]
fn a_stamp_from_another_incarnation_does_not_count_as_rolled() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        // Stamped `r1` by a StreamingToken of the same name that was deleted.
        .consumer(consumer("api", Some("r1.deadbeef"), true));
    fixture.snapshot.uid = "0123456789abcdef".into();
    let plan = fixture.plan();
    assert!(
        plan.secret.is_none(),
        "not verified on this incarnation's r1"
    );
    assert_eq!(plan.consumer_patches.len(), 1);
    assert_eq!(plan.consumer_patches[0].rotation_id, "r1.01234567");
}

#[test]
fn a_pair_pasted_key_by_key_waits_then_promotes_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let first = fixture.plan();
    assert!(first.secret.is_none() && first.consumer_patches.is_empty());
    assert_eq!(
        condition(&first, DEGRADED),
        Some(("True".into(), "SourceIncomplete".into()))
    );
    let message = &conditions::get(&first.status.conditions, DEGRADED)
        .expect("degraded")
        .message;
    assert!(message.contains("key token1"), "{message}");
    assert!(!reasons(&first).contains(&"RotationAborted"));
    assert!(!reasons(&first).contains(&"SourceReplaced"));
    // Reported once while it stays incomplete.
    fixture.snapshot.status = first.status.clone();
    assert!(fixture.plan().events.is_empty());
    // The second key lands: the promotion completes the rotation, and nobody restarts.
    fixture = fixture.secret_ref(Ok(("two", "three")));
    let done = fixture.plan();
    assert_eq!(
        written_pair(&done),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(done.status.rotation.is_none());
    assert!(done.consumer_patches.is_empty());
    assert_eq!(
        condition(&done, DEGRADED),
        Some(("False".into(), "AsExpected".into()))
    );
}

#[test]
fn a_confirmation_is_acted_on_once() {
    let mut fixture = fixture()
        .secret_ref(Ok(("x", "y")))
        .confirmed("leak-1")
        .established(("one", "two"), (1, 2));
    // The mirror already acted on "leak-1" (for an earlier replacement).
    if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
        mirror
            .annotations
            .insert(ANNOTATION_REPLACEMENT.into(), "leak-1".into());
    }
    let plan = fixture.plan();
    assert!(
        plan.secret.is_none(),
        "an old confirmation does not confirm a new pair"
    );
    assert_eq!(
        condition(&plan, DEGRADED),
        Some(("True".into(), "SourceUnrecognized".into()))
    );
    let confirmed = fixture.confirmed("leak-2").plan();
    let write = confirmed.secret.expect("mirrored");
    assert_eq!(write.replacement.as_deref(), Some("leak-2"));
    assert_eq!(
        mirror_annotations(&write)
            .get(ANNOTATION_REPLACEMENT)
            .map(String::as_str),
        Some("leak-2")
    );
}

#[test]
fn a_mirror_deleted_while_waiting_for_the_platform_is_reported_and_the_rotation_abandoned() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let plan = fixture.plan();
    assert!(
        reasons(&plan).contains(&"MirrorLostDuringRotation"),
        "{:?}",
        reasons(&plan)
    );
    assert!(reasons(&plan).contains(&"RotationAborted"));
    assert!(plan.status.rotation.is_none());
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 3, 4)),
        "new serials: the old ones cannot be matched to this pair"
    );
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "NoRotation".into()))
    );
    assert!(
        plan.consumer_patches.is_empty(),
        "consumers read Token 2, which either pair holds"
    );
}

#[test]
fn a_rotate_request_starts_one_rotation_and_is_queued_during_one() {
    let mut fixture = fixture().established(("one", "two"), (1, 2));
    fixture.snapshot.rotate_request = Some("manual-1".into());
    let started = fixture.plan();
    let rotation = started.status.rotation.clone().expect("started");
    assert_eq!(
        (rotation.cause.as_str(), rotation.trigger.as_deref()),
        ("Request", Some("manual-1"))
    );
    assert_eq!(
        started.status.observed_rotate_request.as_deref(),
        Some("manual-1")
    );
    assert_eq!(
        started.status.observed_trigger, None,
        "the Git-owned trigger is not involved"
    );
    // The same request again is not a new one.
    fixture.snapshot.status = started.status.clone();
    fixture.snapshot.status.rotation = None;
    assert!(fixture.plan().status.rotation.is_none());
    // A new request during a rotation waits its turn.
    let mut rotating = fixture
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", None, false));
    rotating.snapshot.status.observed_rotate_request = Some("manual-1".into());
    rotating.snapshot.rotate_request = Some("manual-2".into());
    let plan = rotating.plan();
    assert!(reasons(&plan).contains(&"RotationQueued"));
    assert_eq!(
        plan.status
            .rotation
            .and_then(|rotation| rotation.queued_request)
            .as_deref(),
        Some("manual-2")
    );
}

#[test]
fn delete_policy_with_readers_is_warned_about_before_anyone_deletes() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", Some("r0"), true));
    fixture.snapshot.spec.deletion_policy = DeletionPolicy::Delete;
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r0");
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, conditions::DELETES_SECRET_IN_USE),
        Some(("True".into(), "SecretInUse".into()))
    );
    assert!(reasons(&plan).contains(&"DeletionPolicyDeletesSecretInUse"));
    fixture.snapshot.status = plan.status.clone();
    assert!(fixture.plan().events.is_empty(), "said once");
    fixture.snapshot.spec.deletion_policy = DeletionPolicy::Retain;
    assert_eq!(
        condition(&fixture.plan(), conditions::DELETES_SECRET_IN_USE),
        None
    );
}

#[test]
fn a_restart_leaves_alone_consumers_whose_pods_cannot_hold_the_deactivated_token() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::Restart)
        .consumer(consumer("fresh", Some("r0"), true))
        .consumer(consumer("stale", None, false));
    // fresh: its pods read Token 2 and started after the last write (they hold "two", which
    // the promotion keeps). stale: its pods read Token 1.
    fixture.snapshot.namespaces[0].pods = consumer_pods("fresh", "r0");
    fixture.snapshot.namespaces[0]
        .pods
        .extend((0..2).map(|index| {
            pod_record(
                &format!("stale-{index}"),
                Some(("Deployment", "stale")),
                "token1",
                None,
            )
        }));
    let first = fixture.plan();
    assert!(reasons(&first).contains(&"ConsumersLeftAlone"));
    assert!(
        first.consumer_patches.is_empty(),
        "restarted before the values settle"
    );
    let plan = fixture.settled(&first);
    let rotation = plan.status.rotation.clone().expect("restarting");
    assert_eq!(rotation.phase, PHASE_RESTARTING);
    assert_eq!(rotation.left_alone, ["Deployment/fresh"]);
    let restarted: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.name.as_str())
        .collect();
    assert_eq!(restarted, ["stale"], "no needless second restart");
    // Once the restarted consumer has rolled out, the rotation completes (the one left alone
    // counts as verified).
    fixture.snapshot.status = plan.status.clone();
    fixture.snapshot.mirror = MirrorObservation::Owned(mirror_of(("two", "three"), (2, 3)));
    let stamp = fixture.snapshot.stamp("r1");
    fixture.snapshot.namespaces[0].consumers[1] = consumer("stale", Some(&stamp), false);
    let done = fixture.plan();
    assert!(done.status.rotation.is_none(), "{:?}", done.status.rotation);
}

#[test]
fn a_mirror_lost_during_a_restart_is_restored_in_the_same_pass_not_in_a_loop() {
    let mut fixture = fixture()
        .secret_ref(Ok(("two", "three")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::Restart)
        .consumer(consumer("api", None, false));
    fixture.snapshot.mirror = MirrorObservation::Missing;
    let plan = fixture.plan();
    assert!(plan.secret.is_some(), "the mirror is restored now");
    let restart = plan
        .status
        .rotation
        .clone()
        .expect("a restart replaces the rotation");
    assert_eq!(restart.phase, PHASE_RESTARTING);
    // Next pass: the mirror exists again; the restart proceeds instead of starting over.
    let written = plan.secret.clone().expect("write");
    fixture.snapshot.status = plan.status.clone();
    let mut observed = mirror_of(
        (written.pair.token1.expose(), written.pair.token2.expose()),
        (written.identities[0].serial, written.identities[1].serial),
    );
    observed.annotations = mirror_annotations(&written);
    fixture.snapshot.mirror = MirrorObservation::Owned(observed);
    let next = fixture.plan();
    assert!(
        !reasons(&next).contains(&"RotationAborted"),
        "{:?}",
        reasons(&next)
    );
    assert_eq!(
        next.status.rotation.map(|rotation| rotation.id),
        Some(restart.id)
    );
    assert_eq!(next.consumer_patches.len(), 1, "the consumer restarts once");
}

#[test]
fn plans_that_rest_on_no_pod_holding_token1_ask_for_a_fresh_pod_list() {
    // ReadyToRotate turning True.
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    let flip = fixture.plan();
    assert_eq!(
        condition(&flip, READY_TO_ROTATE),
        Some(("True".into(), "ConsumersOnToken2".into()))
    );
    assert!(flip.deactivates, "ReadyToRotate turning True");
    // Staying True is not a new decision.
    fixture.snapshot.status = flip.status.clone();
    assert!(!fixture.plan().deactivates);
    // The deactivating write.
    let deactivating = fixture_deactivating();
    assert!(deactivating.deactivates && deactivating.secret.is_some());
}

fn fixture_deactivating() -> Plan {
    fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .plan()
}

#[test]
fn repointing_waits_until_kubelet_caches_have_the_latest_values() {
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", None, false));
    // The values were written 1 s before this reconcile (a queued rotation right after one).
    if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
        mirror.values_written_at = Some(1_800_000_000 + 99);
    }
    let early = fixture.plan();
    assert!(
        early.consumer_patches.is_empty(),
        "no repoint within the margin"
    );
    let margin = KUBELET_CACHE_MARGIN_SECONDS;
    // Settled at 99 + margin; looked at again one second after.
    assert_eq!(
        early.requeue,
        Requeue::After(Duration::from_secs(
            u64::try_from(margin).expect("positive")
        ))
    );
    let later = plan(&fixture.snapshot, &at(99 + margin + 1));
    assert_eq!(later.consumer_patches.len(), 1);
}

#[test]
fn a_pod_reading_the_source_secret_directly_keeps_ready_to_rotate_false() {
    let mut fixture = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true));
    fixture.snapshot.namespaces[0].pods = consumer_pods("api", "r1");
    let mut direct = (*pod_record("debug", None, "token2", None)).clone();
    direct.references[0].secret = "portal".into();
    fixture.snapshot.namespaces[0].pods.push(Arc::new(direct));
    let plan = fixture.plan();
    assert_eq!(
        condition(&plan, READY_TO_ROTATE),
        Some(("False".into(), "ConsumersNotReady".into()))
    );
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].reason, "ReadsSourceSecret");
    assert!(
        blocked[0].message.contains("source Secret portal"),
        "{}",
        blocked[0].message
    );
}

#[test]
fn the_rollout_timeout_counts_from_the_start_of_waiting_not_from_each_phase() {
    let mut progressing = consumer("api", Some("r1"), true);
    progressing.ready = 1;
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .consumer(progressing);
    // A revert flipped the phase a moment ago; the rotation has waited 20 minutes in all.
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.rollout_started_at = Some(at(-1200));
        rotation.phase_started_at = at(99);
    }
    let plan = fixture.plan();
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].reason, "RolloutTimeout");
}

// ClusterStreamingToken: the same state machine over several namespaces.

/// A selected namespace of a ClusterStreamingToken whose mirror Secret is `copy`.
fn cluster_view(namespace: &str, copy: CopyObservation) -> NamespaceView {
    NamespaceView {
        namespace: namespace.into(),
        copy,
        selected: true,
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

#[test]
fn cluster_copies_follow_the_pair_of_record() {
    let reader = || pod_record("old-0", Some(("Deployment", "old")), "token2", Some("r0.x"));
    let leaving = |pods: Vec<Arc<PodRecord>>| NamespaceView {
        selected: false,
        pods,
        ..cluster_view("gone", copy_of(("one", "two"), (1, 2)))
    };
    /// (case, view, written with precondition, deleted, state, degraded reason)
    type Case<'a> = (
        &'a str,
        NamespaceView,
        Option<Option<&'a str>>,
        bool,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "a new namespace gets a copy",
            cluster_view("a", CopyObservation::Missing),
            Some(None),
            false,
            "Pending",
            "AsExpected",
        ),
        (
            "a copy in sync is left alone",
            cluster_view("a", copy_of(("one", "two"), (1, 2))),
            None,
            false,
            "Synced",
            "AsExpected",
        ),
        (
            "a copy known in sync (unchanged since read) is not read or written",
            cluster_view(
                "a",
                CopyObservation::Current {
                    resource_version: "7".into(),
                    values_written_at: Some(1_800_000_000),
                },
            ),
            None,
            false,
            "Synced",
            "AsExpected",
        ),
        (
            "a stale copy is rewritten from what was read",
            cluster_view("a", copy_of(("zero", "one"), (0, 1))),
            Some(Some("10")),
            false,
            "Pending",
            "AsExpected",
        ),
        (
            "someone else's Secret is never touched",
            cluster_view("a", CopyObservation::NotOwned),
            None,
            false,
            "SecretNotOwned",
            "NamespaceConflict",
        ),
        (
            "a StreamingToken's mirror is never touched",
            cluster_view(
                "a",
                CopyObservation::ClaimedBy("StreamingToken telemetry".into()),
            ),
            None,
            false,
            "SecretClaimedByOther",
            "NamespaceConflict",
        ),
        (
            "a leaving namespace keeps its copy while a pod reads it",
            leaving(vec![reader()]),
            None,
            false,
            "Leaving",
            // Its pod is no labelled consumer: still found, as anywhere else.
            "UnlabelledReader",
        ),
        (
            "a leaving namespace nobody reads loses its copy",
            leaving(Vec::new()),
            None,
            true,
            "Leaving",
            "AsExpected",
        ),
    ];
    for (case, view, written, deleted, state, degraded) in cases {
        let namespace = view.namespace.clone();
        let plan = fixture()
            .established(("one", "two"), (1, 2))
            .cluster(vec![view])
            .plan();
        assert!(plan.secret.is_none(), "{case}: the record is already right");
        let copy = plan.copies.iter().find(|copy| copy.namespace == namespace);
        assert_eq!(
            copy.map(|copy| copy.write.precondition.as_deref()),
            written,
            "{case}"
        );
        if let Some(copy) = copy {
            assert_eq!(copy.write.pair.token1.expose(), "one", "{case}");
            assert_eq!(copy.write.identities[1].serial, 2, "{case}");
        }
        assert_eq!(plan.copy_deletes.contains(&namespace), deleted, "{case}");
        let listed = plan
            .status
            .namespaces
            .iter()
            .find(|entry| entry.name == namespace)
            .expect("listed");
        assert_eq!(listed.state, state, "{case}");
        assert_eq!(
            condition(&plan, DEGRADED).map(|(_, reason)| reason),
            Some(degraded.to_string()),
            "{case}"
        );
    }
}

#[test]
fn a_cluster_rotation_deactivates_only_when_every_namespace_is_verified() {
    let rolled =
        |name: &str, namespace: &str| in_namespace(consumer(name, Some("r1"), true), namespace);
    let base = |b_copy: CopyObservation, b_consumer: ConsumerObservation| {
        let mut a = cluster_view("a", copy_of(("one", "two"), (1, 2)));
        a.consumers.push(rolled("api", "a"));
        let mut b = cluster_view("b", b_copy);
        b.consumers.push(b_consumer);
        fixture()
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
            .cluster(vec![a, b])
    };
    let mut paused = rolled("api", "b");
    paused.paused = true;

    // A paused consumer in b holds the whole rotation, and says where it is.
    let plan = base(copy_of(("one", "two"), (1, 2)), paused).plan();
    assert!(plan.secret.is_none(), "deactivated with b blocked");
    let blocked = &plan.status.consumers.as_ref().expect("summary").blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].namespace.as_deref(), Some("b"));
    assert!(blocked[0].message.contains("paused") || blocked[0].reason == "Paused");
    let b = plan
        .status
        .namespaces
        .iter()
        .find(|entry| entry.name == "b")
        .expect("b listed");
    assert_eq!(b.blocked.len(), 1);
    assert_eq!(b.verified, Some(0));
    assert!(
        condition(&plan, DEGRADED).is_some_and(|(_, reason)| reason == "ConsumerBlocked"),
        "degraded"
    );

    // Every consumer rolled, but b's Secret does not hold the pair of record yet: what its
    // Token 2 key held is unknown, so nothing is deactivated; the copy is written first.
    let plan = base(copy_of(("zero", "one"), (0, 1)), rolled("api", "b")).plan();
    assert!(plan.secret.is_none(), "deactivated with b's Secret stale");
    assert_eq!(plan.copies.len(), 1);
    assert_eq!(plan.copies[0].namespace, "b");

    // Everything verified: Token 1 goes once, and every namespace gets the new pair.
    let plan = base(copy_of(("one", "two"), (1, 2)), rolled("api", "b")).plan();
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "fresh-a".into(), 2, 3))
    );
    assert!(plan.deactivates, "decided again on fresh pods");
    let mut namespaces: Vec<&str> = plan
        .copies
        .iter()
        .map(|copy| copy.namespace.as_str())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["a", "b"]);
    assert!(
        plan.copies
            .iter()
            .all(|copy| copy.write.pair.token1.expose() == "two")
    );

    // A copy known in sync follows the record when the record changes, from its own version.
    let current = CopyObservation::Current {
        resource_version: "7".into(),
        values_written_at: Some(1_800_000_000),
    };
    let plan = base(current, rolled("api", "b")).plan();
    assert_eq!(written_pair(&plan).map(|pair| pair.2), Some(2));
    let b = plan
        .copies
        .iter()
        .find(|copy| copy.namespace == "b")
        .expect("b written");
    assert_eq!(b.write.precondition.as_deref(), Some("7"));
}

#[test]
fn a_cluster_restart_restarts_every_consumer_in_every_namespace_once() {
    let mut a = cluster_view("a", copy_of(("one", "two"), (1, 2)));
    a.consumers
        .push(in_namespace(consumer("api", None, false), "a"));
    let mut b = cluster_view("b", copy_of(("one", "two"), (1, 2)));
    b.consumers
        .push(in_namespace(consumer("api", None, false), "b"));
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_RESTARTING, 1, RotationStrategy::Restart)
        .cluster(vec![a, b]);
    // The Secret of record was promoted already (Token 1 deactivated); copies follow first, and
    // nobody restarts onto a copy that still holds the deactivated token.
    let plan = fixture.plan();
    assert_eq!(plan.copies.len(), 2, "copies follow the promoted pair");
    assert!(
        plan.consumer_patches.is_empty(),
        "restarted before its copy"
    );
    for view in &mut fixture.snapshot.namespaces {
        view.copy = copy_of(("two", "three"), (2, 3));
    }
    let plan = fixture.plan();
    let mut patched: Vec<(String, String)> = plan
        .consumer_patches
        .iter()
        .map(|patch| (patch.namespace.clone(), patch.name.clone()))
        .collect();
    patched.sort();
    assert_eq!(
        patched,
        [
            ("a".to_string(), "api".to_string()),
            ("b".into(), "api".into())
        ]
    );
    // Replayed with both stamped: nothing is restarted again.
    for view in &mut fixture.snapshot.namespaces {
        view.consumers[0].template_rotation = Some("r1".into());
    }
    let plan = fixture.plan();
    assert!(plan.consumer_patches.is_empty(), "restarted twice");
}

// Waves and the restart budget.

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

#[test]
fn budgets_resolve_numbers_and_percentages() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let cases = [
        (Some(IntOrString::Int(5)), 30, Some(5)),
        (Some(IntOrString::Int(0)), 30, Some(1)),
        (Some(IntOrString::String("10%".into())), 30, Some(3)),
        (Some(IntOrString::String("10%".into())), 31, Some(4)),
        (Some(IntOrString::String("1%".into())), 30, Some(1)),
        (Some(IntOrString::String("100%".into())), 30, Some(30)),
        (None, 30, None),
    ];
    for (spec, total, want) in cases {
        assert_eq!(
            waves::budget(spec.as_ref(), total),
            want,
            "{spec:?} of {total}"
        );
    }
}

#[test]
fn a_budget_caps_the_consumers_rolling_at_once() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let base = || {
        let mut fixture = fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_REPOINTING,
            1,
            RotationStrategy::ZeroDowntime,
        );
        fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(2));
        fixture
    };
    // (case, consumers, patched now, rolling, verified, pending)
    type Case<'a> = (
        &'a str,
        Vec<ConsumerObservation>,
        Vec<&'a str>,
        i32,
        i32,
        i32,
    );
    let cases: Vec<Case> = vec![
        (
            "five to go: two start",
            ["a", "b", "c", "d", "e"]
                .iter()
                .map(|name| consumer(name, None, false))
                .collect(),
            vec!["a", "b"],
            2,
            0,
            3,
        ),
        (
            "two rolling: none starts",
            vec![
                rolling_consumer("a"),
                rolling_consumer("b"),
                consumer("c", None, false),
            ],
            vec![],
            2,
            0,
            1,
        ),
        (
            "one verified, one rolling: one more starts",
            vec![
                consumer("a", Some("r1"), true),
                rolling_consumer("b"),
                consumer("c", None, false),
                consumer("d", None, false),
            ],
            vec!["c"],
            2,
            1,
            1,
        ),
    ];
    for (case, consumers, want, rolling, verified, pending) in cases {
        let mut fixture = base();
        for consumer in consumers {
            fixture = fixture.consumer(consumer);
        }
        let plan = fixture.plan();
        assert_eq!(patched(&plan), want, "{case}");
        assert!(plan.secret.is_none(), "{case}: nothing deactivated");
        let waves = plan
            .status
            .rotation
            .as_ref()
            .and_then(|rotation| rotation.waves.clone())
            .expect("waves reported");
        assert_eq!(
            (
                waves.rolling,
                waves.verified,
                waves.pending,
                waves.max_concurrent
            ),
            (rolling, verified, pending, 2),
            "{case}"
        );
    }
}

#[test]
fn waves_roll_in_order_and_a_blocked_consumer_holds_the_next_wave() {
    let base = || {
        fixture().established(("one", "two"), (1, 2)).rotating(
            PHASE_REPOINTING,
            1,
            RotationStrategy::ZeroDowntime,
        )
    };
    // Wave 1 first; wave 2 and the unlabelled wait.
    let plan = base()
        .consumer(waved(consumer("first", None, false), 1))
        .consumer(waved(consumer("second", None, false), 2))
        .consumer(consumer("last", None, false))
        .plan();
    assert_eq!(patched(&plan), ["first"]);
    assert_eq!(
        plan.status
            .rotation
            .as_ref()
            .and_then(|rotation| rotation.waves.as_ref())
            .map(|waves| waves.current.as_str()),
        Some("1")
    );
    // Wave 1 verified: wave 2 starts, the unlabelled still wait.
    let plan = base()
        .consumer(waved(consumer("first", Some("r1"), true), 1))
        .consumer(waved(consumer("second", None, false), 2))
        .consumer(consumer("last", None, false))
        .plan();
    assert_eq!(patched(&plan), ["second"]);
    // A paused consumer of wave 2, already started, holds the unlabelled wave: nothing starts,
    // it is reported, and Token 1 stays.
    let mut paused = waved(rolling_consumer("second"), 2);
    paused.paused = true;
    let plan = base()
        .consumer(waved(consumer("first", Some("r1"), true), 1))
        .consumer(paused)
        .consumer(consumer("last", None, false))
        .plan();
    assert!(patched(&plan).is_empty(), "{:?}", patched(&plan));
    assert!(plan.secret.is_none());
    // A wave label that is not a number: never started, reported with a reason.
    let mut odd = consumer("odd", None, false);
    odd.wave = crate::model::consumer::Wave::Invalid("two".into());
    let plan = base().consumer(odd).plan();
    assert!(patched(&plan).is_empty());
    let blocked = plan.status.consumers.expect("summary").blocked;
    assert_eq!(blocked[0].reason, "InvalidWaveLabel", "{blocked:?}");
}

#[test]
fn a_restart_under_a_budget_restarts_a_few_at_a_time_and_none_twice() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut fixture = fixture()
        .established(("two", "three"), (2, 3))
        .rotating(PHASE_RESTARTING, 1, RotationStrategy::Restart)
        .consumer(consumer("a", None, false))
        .consumer(consumer("b", None, false))
        .consumer(consumer("c", None, false));
    fixture.snapshot.spec.rotation.max_concurrent_consumers = Some(IntOrString::Int(1));
    assert_eq!(patched(&fixture.plan()), ["a"]);
    // a restarted and rolling: nothing more; a verified: b.
    fixture.snapshot.namespaces[0].consumers[0] = rolling_consumer("a");
    assert!(patched(&fixture.plan()).is_empty());
    fixture.snapshot.namespaces[0].consumers[0] = consumer("a", Some("r1"), true);
    assert_eq!(patched(&fixture.plan()), ["b"]);
}

#[test]
fn a_namespace_no_longer_selected_is_served_until_nobody_reads_it() {
    let reader = || pod_record("api-0", Some(("Deployment", "api")), "token2", Some("r0.x"));
    let leaving = |copy: CopyObservation, pods: Vec<Arc<PodRecord>>| NamespaceView {
        selected: false,
        pods,
        ..cluster_view("gone", copy)
    };
    let record = MirrorObservation::Owned(mirror_of(("one", "two"), (1, 2)));
    // A labelled Secret that holds no token of the record is not a copy: never written.
    assert!(!fanout::reached(
        &record,
        None,
        &leaving(copy_of(("forged", "values"), (7, 8)), vec![reader()])
    ));
    // A copy one rotation behind still shares Token 2 with the record: it is ours.
    assert!(fanout::reached(
        &record,
        None,
        &leaving(copy_of(("zero", "one"), (0, 1)), vec![reader()])
    ));

    // Read: kept up to date (a stale copy is written) under either policy.
    for retain in [false, true] {
        let mut fixture = fixture()
            .established(("one", "two"), (1, 2))
            .cluster(vec![leaving(
                copy_of(("zero", "one"), (0, 1)),
                vec![reader()],
            )]);
        fixture.snapshot.retain_unselected = retain;
        let plan = fixture.plan();
        assert_eq!(plan.copies.len(), 1, "retain {retain}");
        assert!(plan.copy_deletes.is_empty());
        assert_eq!(plan.status.namespaces[0].state, "Leaving");
    }
    // Nobody reads it: deleted (Delete), or kept as it is (Retain).
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .cluster(vec![leaving(copy_of(("one", "two"), (1, 2)), Vec::new())]);
    assert_eq!(fixture.plan().copy_deletes, ["gone"]);
    fixture.snapshot.retain_unselected = true;
    let plan = fixture.plan();
    assert!(plan.copy_deletes.is_empty() && plan.copies.is_empty());
    assert_eq!(plan.status.namespaces[0].state, "Retained");
}

#[test]
fn pods_left_behind_by_a_copy_someone_replaced_hold_the_rotation() {
    let mut view = cluster_view("team", CopyObservation::NotOwned);
    view.pods = vec![pod_record(
        "old-0",
        Some(("Deployment", "old")),
        "token1",
        Some("r0.x"),
    )];
    let mut fixture = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![view]);
    // Never a copy here: someone's own Secret of that name; nothing to wait for.
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_some(),
        "a stranger's Secret held the rotation"
    );
    // It was the copy (the last status says so): its readers may hold Token 1.
    fixture.snapshot.status.namespaces = vec![crate::api::NamespaceStatus {
        name: "team".into(),
        state: "Synced".into(),
        ..Default::default()
    }];
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_none(),
        "deactivated under pods of a replaced copy"
    );
    let blocked = &plan.status.consumers.as_ref().expect("summary").blocked;
    assert_eq!(blocked[0].reason, "SecretReplaced", "{blocked:?}");
    assert_eq!(plan.status.namespaces[0].state, "SecretReplaced");
    // No longer selected: still checked (never written).
    let record = MirrorObservation::Owned(mirror_of(("one", "two"), (1, 2)));
    fixture.snapshot.namespaces[0].selected = false;
    assert!(fanout::reached(
        &record,
        Some(&fixture.snapshot.status),
        &fixture.snapshot.namespaces[0]
    ));
    fixture.snapshot.namespaces[0].selected = true;
    // Its readers restarted after the new Secret appeared: they read that one; it clears.
    fixture.snapshot.namespaces[0].foreign_since = Some(1_800_000_000);
    let plan = fixture.plan();
    assert!(
        written_pair(&plan).is_some(),
        "pods started after the replacement held it"
    );
}

#[test]
fn a_cluster_token_refuses_an_invalid_selector_and_a_moved_home() {
    let base = || {
        fixture()
            .established(("one", "two"), (1, 2))
            .cluster(vec![cluster_view("a", CopyObservation::Missing)])
    };
    let mut invalid = base();
    invalid.snapshot.selection_problem = Some("spec.namespaces.selector is not valid".into());
    let plan = invalid.plan();
    assert_eq!(
        condition(&plan, READY),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert!(plan.copies.is_empty() && plan.secret.is_none());

    let mut moved = base();
    moved.snapshot.status.home_namespace = Some("old-home".into());
    let plan = moved.plan();
    assert_eq!(
        condition(&plan, READY),
        Some(("False".into(), "HomeNamespaceChanged".into()))
    );
    assert!(plan.copies.is_empty() && plan.secret.is_none());

    // The home is recorded on first sight.
    let plan = base().plan();
    assert_eq!(plan.status.home_namespace.as_deref(), Some("sto-system"));
}

#[test]
fn consumers_are_not_repointed_in_the_pass_that_writes_their_namespace_copy() {
    let mut a = cluster_view("a", copy_of(("zero", "one"), (0, 1)));
    a.consumers
        .push(in_namespace(consumer("api", None, false), "a"));
    let mut b = cluster_view("b", copy_of(("one", "two"), (1, 2)));
    b.consumers
        .push(in_namespace(consumer("api", None, false), "b"));
    let plan = fixture()
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_REPOINTING, 1, RotationStrategy::ZeroDowntime)
        .cluster(vec![a, b])
        .plan();
    assert_eq!(plan.copies.len(), 1);
    let namespaces: Vec<&str> = plan
        .consumer_patches
        .iter()
        .map(|patch| patch.namespace.as_str())
        .collect();
    assert_eq!(
        namespaces,
        ["b"],
        "a is repointed once its copy has settled"
    );
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
        self
    }
}

fn message_of(plan: &Plan, type_: &str) -> String {
    conditions::get(&plan.status.conditions, type_)
        .map(|condition| condition.message.clone())
        .unwrap_or_default()
}

#[test]
fn a_pasted_pair_is_mirrored_only_once_the_platform_accepts_both_tokens() {
    use Verdict::{Accepted, Rejected, Unknown};
    let unknown = || Unknown("timed out".into());
    type Case<'a> = (Vec<(&'a str, Verdict)>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("one", Accepted), ("two", Accepted)], None, ""),
        (
            vec![("one", Accepted), ("two", Rejected)],
            Some("SourceTokenRejected"),
            "key token2",
        ),
        (
            vec![("one", Rejected), ("two", Rejected)],
            Some("SourceTokenRejected"),
            "key token1",
        ),
        // Unreachable is neither valid nor invalid: nothing is mirrored, and it says why.
        (
            vec![("one", unknown()), ("two", Accepted)],
            Some("PlatformUnreachable"),
            "timed out",
        ),
        (
            vec![("one", Accepted)],
            Some("PlatformUnreachable"),
            "not asked",
        ),
    ];
    for (verdicts, failed, says) in cases {
        let plan = fixture()
            .secret_ref(Ok(("one", "two")))
            .with_platform(platform(&verdicts, false, false))
            .plan();
        assert_eq!(plan.failed, failed, "{verdicts:?}");
        assert_eq!(plan.secret.is_some(), failed.is_none(), "{verdicts:?}");
        assert!(message_of(&plan, "Ready").contains(says), "{verdicts:?}");
        if failed.is_none() {
            assert_eq!(
                condition(&plan, "PlatformVerified"),
                Some(("True".into(), "TokensAccepted".into()))
            );
        }
    }
}

#[test]
fn a_promotion_is_taken_only_once_the_platform_rejects_the_former_token1() {
    use Verdict::{Accepted, Rejected, Unknown};
    let promoted = |former: Verdict, new2: Verdict| {
        fixture()
            .secret_ref(Ok(("two", "three")))
            .established(("one", "two"), (1, 2))
            .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
            .consumer(consumer("api", Some("r1"), true))
            .with_platform(platform(
                &[("one", former), ("two", Accepted), ("three", new2)],
                false,
                false,
            ))
            .plan()
    };
    let plan = promoted(Rejected, Accepted);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none(), "completed");
    for (former, new2, reason) in [
        (Accepted, Accepted, "SourceNotRotatedAtPlatform"),
        (Rejected, Rejected, "SourceTokenRejected"),
        (Unknown("down".into()), Accepted, "PlatformUnreachable"),
    ] {
        let plan = promoted(former, new2);
        assert!(plan.secret.is_none(), "{reason}: the mirror keeps its pair");
        assert_eq!(
            condition(&plan, "Degraded").map(|(_, reason)| reason),
            Some(reason.to_string())
        );
        assert!(plan.status.rotation.is_some(), "{reason}: still waiting");
    }
}

#[test]
fn a_token1_rejected_behind_the_operators_back_moves_every_consumer_at_once() {
    use Verdict::{Accepted, Rejected};
    let mut oob = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .strategy(RotationStrategy::Restart)
        .consumer(consumer("api", None, false))
        .consumer(consumer("web", None, false))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ));
    oob.snapshot.spec.rotation.max_concurrent_consumers =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1));
    let plan = oob.plan();
    assert!(reasons(&plan).contains(&"RotatedOutOfBand"));
    assert!(
        plan.status
            .platform
            .as_ref()
            .is_some_and(|platform| platform.rotated_out_of_band_at.is_some())
    );
    let rotation = plan.status.rotation.clone().expect("a rotation starts");
    assert_eq!(rotation.cause, "RotatedOutOfBand");
    assert_eq!(
        rotation.strategy,
        RotationStrategy::ZeroDowntime,
        "finished by repointing, whatever the strategy"
    );
    // The next pass repoints both consumers at once, despite a budget of one.
    let plan = oob.after(&plan);
    assert_eq!(plan.consumer_patches.len(), 2);
    assert_eq!(
        condition(&plan, "Degraded").map(|(_, reason)| reason),
        Some("RotatedOutOfBand".to_string())
    );
    // Reported once: the next pass publishes no second Event.
    oob.snapshot.status = plan.status.clone();
    assert!(!reasons(&oob.plan()).contains(&"RotatedOutOfBand"));

    // With `Report`, it is only reported.
    let mut report = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .consumer(consumer("api", None, false))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ));
    let mut spec: crate::api::PlatformSpec = serde_json::from_value(serde_json::json!({
        "quix": {"portalApi": "https://portal.example", "workspaceId": "ws"},
        "onRotatedOutOfBand": "Report",
    }))
    .expect("spec");
    spec.timeout = "10s".into();
    report.snapshot.spec.platform = Some(spec);
    let plan = report.plan();
    assert!(reasons(&plan).contains(&"RotatedOutOfBand"));
    assert!(plan.status.rotation.is_none(), "Report starts nothing");
}

#[test]
fn a_rejection_the_rotation_asked_for_is_not_out_of_band() {
    use Verdict::{Accepted, Rejected};
    let plan = fixture()
        .secret_ref(Ok(("one", "two")))
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .with_platform(platform(
            &[("one", Rejected), ("two", Accepted)],
            false,
            false,
        ))
        .plan();
    assert!(!reasons(&plan).contains(&"RotatedOutOfBand"));
}

/// `source.platform` in `AwaitingSource` with every consumer verified, `call` recorded.
fn rotating_at_platform(
    call: Option<(i32, &str, i64)>,
    read_fresh: bool,
    source: (&str, &str),
) -> Plan {
    use Verdict::Accepted;
    let mut fixture = fixture()
        .at_platform(source)
        .established(("one", "two"), (1, 2))
        .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r1"), true))
        .with_platform(platform(
            &[
                // Once the platform shows the promotion, it rejects the former Token 1.
                (
                    "one",
                    if source.0 == "one" {
                        Accepted
                    } else {
                        Verdict::Rejected
                    },
                ),
                ("two", Accepted),
                ("three", Accepted),
            ],
            true,
            read_fresh,
        ));
    if let Some(rotation) = fixture.snapshot.status.rotation.as_mut() {
        rotation.platform_rotate =
            call.map(
                |(attempts, state, at_second)| crate::api::PlatformRotateStatus {
                    attempts,
                    state: state.into(),
                    at: at(at_second),
                    message: String::new(),
                },
            );
    }
    fixture.plan()
}

fn call_state(plan: &Plan) -> Option<(i32, String)> {
    let call = plan.status.rotation.as_ref()?.platform_rotate.as_ref()?;
    Some((call.attempts, call.state.clone()))
}

#[test]
fn the_rotate_call_is_recorded_first_and_never_repeated_after_any_doubt() {
    // Verified, and the platform shows the recorded pair, read in this pass: call (attempt 1),
    // recorded before, with nothing else written and the decision re-taken on fresh pods.
    let plan = rotating_at_platform(None, true, ("one", "two"));
    assert_eq!(plan.platform_rotate, Some(1));
    assert_eq!(call_state(&plan), Some((1, "Calling".into())));
    assert!(plan.deactivates);
    assert!(plan.secret.is_none() && plan.consumer_patches.is_empty());
    assert_eq!(
        condition(&plan, READY_TO_ROTATE).map(|(status, _)| status),
        None,
        "no person is asked to act"
    );
    // Not read in this pass: read first.
    assert_eq!(
        rotating_at_platform(None, false, ("one", "two")).platform_rotate,
        None
    );
    // A call found `Calling`: its outcome is in doubt; never called again.
    let plan = rotating_at_platform(Some((1, "Calling", 90)), true, ("one", "two"));
    assert_eq!(plan.platform_rotate, None);
    assert_eq!(call_state(&plan), Some((1, "InDoubt".into())));
    assert!(reasons(&plan).contains(&"PlatformRotateInDoubt"));
    for state in ["InDoubt", "Rotated"] {
        let plan = rotating_at_platform(Some((1, state, 0)), true, ("one", "two"));
        assert_eq!(plan.platform_rotate, None, "{state}");
    }
    // A call that certainly did not reach the platform (or that it refused) is made again,
    // after a backoff (10 s after attempt 1).
    for state in ["NotSent", "Refused"] {
        assert_eq!(
            rotating_at_platform(Some((1, state, 95)), true, ("one", "two")).platform_rotate,
            None,
            "{state}: backing off"
        );
        assert_eq!(
            rotating_at_platform(Some((1, state, 50)), true, ("one", "two")).platform_rotate,
            Some(2),
            "{state}: attempt 2"
        );
    }
    // The platform shows the promotion: mirrored, complete, no call.
    let plan = rotating_at_platform(Some((1, "InDoubt", 0)), true, ("two", "three"));
    assert_eq!(plan.platform_rotate, None);
    assert_eq!(
        written_pair(&plan),
        Some(("two".into(), "three".into(), 2, 3))
    );
    assert!(plan.status.rotation.is_none());
}

/// A fixture whose status records serials (3, 4) while the mirror Secret is an older copy of
/// itself (serials 1 and 2) put back.
fn rolled_back(fixture: Fixture) -> Fixture {
    let mut fixture = fixture.established(("one", "two"), (1, 2));
    fixture.snapshot.status.token1 = Some(identity(3));
    fixture.snapshot.status.token2 = Some(identity(4));
    fixture
}

#[test]
fn an_older_mirror_put_back_is_refused_and_never_completes_a_rotation() {
    // secretRef: the current pair is mirrored again from the source under the serials of
    // record; nothing is taken as a promotion.
    let plan = rolled_back(fixture().secret_ref(Ok(("three", "four"))))
        .consumer(consumer("api", None, true))
        .plan();
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    assert!(!reasons(&plan).contains(&"SourcePromoted"));
    assert_eq!(
        written_pair(&plan),
        Some(("three".into(), "four".into(), 3, 4))
    );
    assert!(
        plan.status.rotation.is_none(),
        "no rotation starts or completes"
    );

    // secretRef, mid-rotation: its records are gone, the rotation is not completed by it.
    let plan = rolled_back(fixture().secret_ref(Ok(("four", "five"))))
        .rotating(PHASE_AWAITING_SOURCE, 3, RotationStrategy::ZeroDowntime)
        .consumer(consumer("api", Some("r3"), true))
        .plan();
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    assert!(!reasons(&plan).contains(&"RotationCompleted"));
    assert!(
        plan.status
            .last_rotation
            .as_ref()
            .is_none_or(|last| last.id != "r3")
    );
    let written = written_pair(&plan).expect("the mirror is rewritten");
    assert!(written.2 > 4, "never the older serials: {written:?}");

    // generate: the issued pair is lost and the copy's Token 1 was deactivated: a new pair
    // above every serial, and every consumer restarts.
    let mut generated = rolled_back(fixture()).consumer(consumer("api", None, false));
    let first = generated.plan();
    // The restart is recorded first (nothing else written in that pass); the next pass writes.
    assert!(first.status.rotation.is_some() && first.secret.is_none());
    let plan = generated.after(&first);
    assert!(reasons(&plan).contains(&"MirrorSecretRolledBack"));
    let written = written_pair(&plan).expect("a new pair");
    assert_ne!((written.0.as_str(), written.1.as_str()), ("one", "two"));
    assert_eq!((written.2, written.3), (5, 6));
    assert!(
        plan.status
            .rotation
            .as_ref()
            .is_some_and(|rotation| rotation.strategy == RotationStrategy::Restart),
        "consumers restart"
    );
}

#[test]
fn a_removed_fingerprint_annotation_restarts_nobody_and_keeps_the_rotation() {
    for annotation in [
        super::snapshot::ANNOTATION_TOKEN1_FINGERPRINT,
        super::snapshot::ANNOTATION_TOKEN2_FINGERPRINT,
    ] {
        let strip = |mut fixture: Fixture| {
            if let MirrorObservation::Owned(mirror) = &mut fixture.snapshot.mirror {
                mirror.annotations.remove(annotation);
            }
            fixture
        };
        // generate, mid-rotation: the pair and its serials stand, the annotation is restored.
        let plan = strip(
            fixture()
                .established(("one", "two"), (1, 2))
                .rotating(PHASE_AWAITING_ROLLOUT, 1, RotationStrategy::ZeroDowntime)
                .consumer(consumer("api", Some("r1"), false)),
        )
        .plan();
        assert!(
            !reasons(&plan).contains(&"MirrorSecretTampered")
                && !reasons(&plan).contains(&"RotationAborted"),
            "{annotation}: {:?}",
            reasons(&plan)
        );
        assert_eq!(
            plan.status
                .rotation
                .as_ref()
                .map(|rotation| rotation.id.as_str()),
            Some("r1")
        );
        let written = written_pair(&plan).expect("the annotation is restored");
        assert_eq!(written, ("one".into(), "two".into(), 1, 2), "{annotation}");

        // secretRef, waiting for the platform: not a first mirror under new serials, and the
        // rotation is not completed by it.
        let plan = strip(
            fixture()
                .secret_ref(Ok(("one", "two")))
                .established(("one", "two"), (1, 2))
                .rotating(PHASE_AWAITING_SOURCE, 1, RotationStrategy::ZeroDowntime)
                .consumer(consumer("api", Some("r1"), true)),
        )
        .plan();
        assert!(
            !reasons(&plan).contains(&"RotationCompleted"),
            "{annotation}"
        );
        assert!(!reasons(&plan).contains(&"TokensMirrored"), "{annotation}");
        assert_eq!(
            plan.status
                .rotation
                .as_ref()
                .map(|rotation| rotation.id.as_str()),
            Some("r1")
        );
        assert_eq!(
            written_pair(&plan),
            Some(("one".into(), "two".into(), 1, 2)),
            "{annotation}: restored under the same serials"
        );
    }
}
