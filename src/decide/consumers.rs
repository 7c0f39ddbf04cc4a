//! The consumer decision (pure): what to write to each labelled workload, and whether each one is
//! rolled out on a rotation's pod template.
//!
//! **Repointing** ([`patches`], ZeroDowntime): in the selected containers (those named in
//! `spec.consumers.containers`, or every container and init container when none is named) every
//! variable that reads the mirror Secret's Token 1 key, whatever its name, and the variable you
//! control (`spec.consumers.envVar`) are pointed at the Token 2 key, and the pod template is
//! stamped with the rotation id so it rolls. The variable you control is added only to containers
//! that already declare it or are named; never to any other container. **Restarting** (the
//! Restart strategy) only stamps the template.
//!
//! **Verification** ([`verify`]) of one workload for rotation `id`: its controller has observed
//! the latest generation, updated, ready and available replicas all equal the desired count, no
//! surplus replicas remain, no pod it owns carries an older rotation id (terminating pods
//! included). Paused, `ProgressDeadlineExceeded`, an `OnDelete` update strategy, or a rollout past
//! the timeout is *blocked*. This is necessary, not sufficient: what each pod may still hold is
//! decided from the pods themselves in [`super::holders`].

use super::snapshot::{Snapshot, TokenKind};
use crate::api::BlockedConsumer;
use crate::model::consumer::{
    ConsumerObservation, ConsumerPatch, ContainerEnv, ContainerRepoint, EnvSource, PodObservation,
    Repoint,
};
use crate::model::reason;
use std::time::Duration;

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

/// What a consumer's pod template needs for a rotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// Already stamped with the rotation (and, when repointing, reading Token 2).
    Nothing,
    Patch(ConsumerPatch),
    /// It cannot be repointed until a person changes it.
    Blocked(BlockedConsumer),
}

/// Patches for consumers whose template is not yet on rotation `id` (or, when `repoint`, whose
/// selected variables do not all read the Token 2 key), and the consumers that cannot be patched.
pub fn patches(
    snapshot: &Snapshot,
    id: &str,
    repoint: bool,
) -> (Vec<ConsumerPatch>, Vec<BlockedConsumer>) {
    let mut patches = Vec::new();
    let mut blocked = Vec::new();
    // A namespace whose mirror Secret does not hold the pair of record yet is left for the
    // pass after its copy is written: a consumer repointed or restarted onto it could read old
    // values.
    let ready = snapshot
        .namespaces
        .iter()
        .filter(|view| snapshot.copy_in_sync(view));
    for consumer in ready.flat_map(|view| view.consumers.iter()) {
        // A Job's template cannot change: its pods are waited for, never patched.
        if consumer
            .batch
            .as_ref()
            .is_some_and(|batch| batch.fixed_template)
        {
            continue;
        }
        let need = if repoint {
            repoint_need(snapshot, consumer, id)
        } else {
            restart_need(snapshot, consumer, id)
        };
        match need {
            Need::Nothing => {}
            Need::Patch(patch) => patches.push(patch),
            Need::Blocked(mut entry) => {
                entry.namespace = listed_namespace(snapshot, &consumer.namespace);
                blocked.push(entry);
            }
        }
    }
    (patches, blocked)
}

/// The namespace a blocked entry names: a ClusterStreamingToken's span several namespaces, a
/// StreamingToken's are all in its own (but for its member clusters', `<cluster>/<namespace>`).
pub fn listed_namespace(snapshot: &Snapshot, namespace: &str) -> Option<String> {
    (snapshot.kind == TokenKind::Cluster || crate::model::member::is_member(namespace))
        .then(|| namespace.to_string())
}

fn patch(snapshot: &Snapshot, consumer: &ConsumerObservation, id: &str) -> ConsumerPatch {
    ConsumerPatch {
        kind: consumer.kind,
        namespace: consumer.namespace.clone(),
        name: consumer.name.clone(),
        rotation_id: id.into(),
        stamp_key: consumer.stamp_key.clone(),
        token_name: snapshot.name.clone(),
        writer: crate::model::consumer::Writer {
            cluster: snapshot.kind == TokenKind::Cluster,
            name: snapshot.name.clone(),
        },
        repoint: None,
    }
}

fn blocked(consumer: &ConsumerObservation, reason: &str, message: String) -> Need {
    Need::Blocked(BlockedConsumer {
        namespace: None,
        kind: consumer.kind.as_str().into(),
        name: consumer.name.clone(),
        reason: reason.into(),
        message,
    })
}

/// Restart: stamp the template once per rotation.
pub fn restart_need(snapshot: &Snapshot, consumer: &ConsumerObservation, id: &str) -> Need {
    if consumer.template_rotation.as_deref() == Some(id) {
        Need::Nothing
    } else {
        Need::Patch(patch(snapshot, consumer, id))
    }
}

/// ZeroDowntime: the variables to point at Token 2 in each container, and the stamp.
pub fn repoint_need(snapshot: &Snapshot, consumer: &ConsumerObservation, id: &str) -> Need {
    let named = &snapshot.spec.consumers.containers;
    if !named.is_empty()
        && !consumer
            .containers
            .iter()
            .any(|container| named.contains(&container.name))
    {
        return blocked(
            consumer,
            reason::NO_MATCHING_CONTAINER,
            format!(
                "none of its containers is named in spec.consumers.containers ({})",
                named.join(", ")
            ),
        );
    }
    let stamped = consumer.template_rotation.as_deref() == Some(id);
    let mut containers = Vec::new();
    let mut pointed = true;
    for container in &consumer.containers {
        match container_repoint(snapshot, container, consumer.shared) {
            Ok(Some((repoint, already))) => {
                if stamped && !already && was_reverted(snapshot, container, &repoint) {
                    // This rotation's apply set every one of these to Token 2 together with the
                    // stamp: something set one back. Applying again would fight it (and roll
                    // the pods on every flip); report it instead.
                    let (reason, message) = reverted(snapshot, container, &repoint);
                    return blocked(consumer, reason, message);
                }
                pointed &= already;
                containers.push(repoint);
            }
            Ok(None) => {}
            Err((reason, message)) => return blocked(consumer, reason, message),
        }
    }
    if stamped && pointed {
        return Need::Nothing;
    }
    Need::Patch(ConsumerPatch {
        repoint: (!containers.is_empty()).then(|| Repoint {
            containers,
            secret: snapshot.secret_name.clone(),
            key: snapshot.spec.secret.token2_key.clone(),
        }),
        ..patch(snapshot, consumer, id)
    })
}

/// True when a variable this operator already pointed at Token 2 reads something else now:
/// another manager set it back. A variable it never applied (a container named in
/// `spec.consumers.containers` mid-rotation, a new variable) is simply repointed.
fn was_reverted(snapshot: &Snapshot, container: &ContainerEnv, repoint: &ContainerRepoint) -> bool {
    let mirror = &snapshot.secret_name;
    let token2_key = &snapshot.spec.secret.token2_key;
    repoint.variables.iter().any(|variable| {
        let on_token2 = if *variable == snapshot.spec.consumers.env_var {
            container.source
                == EnvSource::SecretKey {
                    secret: mirror.clone(),
                    key: token2_key.clone(),
                }
        } else {
            container
                .mirror_reads
                .iter()
                .any(|(name, key)| name == variable && key == token2_key)
        };
        !on_token2 && container.repointed.contains(variable)
    })
}

/// Why a stamped consumer reads something other than Token 2 again: another field manager (a
/// GitOps sync, `kubectl apply` from CI) re-applied a manifest that still says the old key.
fn reverted(
    snapshot: &Snapshot,
    container: &ContainerEnv,
    repoint: &ContainerRepoint,
) -> (&'static str, String) {
    let token2_key = &snapshot.spec.secret.token2_key;
    let mirror = &snapshot.secret_name;
    let mut managers: Vec<&str> = container
        .key_owners
        .iter()
        .filter(|(variable, _)| repoint.variables.contains(variable))
        .flat_map(|(_, managers)| managers.iter().map(String::as_str))
        .collect();
    managers.sort_unstable();
    managers.dedup();
    let by = if managers.is_empty() {
        "another field manager".to_string()
    } else {
        format!("field manager {}", managers.join(", "))
    };
    (
        reason::ENV_VAR_REVERTED,
        format!(
            "container {}: {by} set {} back after this rotation pointed it at key {token2_key} (a GitOps sync or kubectl apply of a manifest that still reads the old key); change the manifest to secretKeyRef {{name: {mirror}, key: {token2_key}}}, where every consumer ends after a rotation, and sync; the operator does not apply again",
            container.name,
            repoint.variables.join(", ")
        ),
    )
}

/// The variables of one container the repoint sets to the Token 2 key, and whether they all read
/// it already; `None` when the container has none; an error when it cannot be repointed. In a
/// consumer that reads several StreamingTokens (`shared`), only what reads this one's mirror
/// Secret is its own: the variable you control set from another Secret is another's.
fn container_repoint(
    snapshot: &Snapshot,
    container: &ContainerEnv,
    shared: bool,
) -> Result<Option<(ContainerRepoint, bool)>, (&'static str, String)> {
    let named = &snapshot.spec.consumers.containers;
    let selected = named.is_empty() || named.contains(&container.name);
    let env_var = &snapshot.spec.consumers.env_var;
    let mirror = &snapshot.secret_name;
    let token1_key = &snapshot.spec.secret.token1_key;
    let token2_key = &snapshot.spec.secret.token2_key;
    let on_token2 = |secret: &str, key: &str| secret == mirror && key == token2_key;
    let mut variables = Vec::new();
    let mut pointed = true;
    match &container.source {
        EnvSource::Absent if selected && named.contains(&container.name) => {
            variables.push(env_var.clone());
            pointed = false;
        }
        EnvSource::Absent => {}
        EnvSource::Literal if selected => {
            return Err((
                reason::LITERAL_ENV_VALUE,
                format!(
                    "container {} sets {env_var} to a literal value; use valueFrom.secretKeyRef (or remove it) so the operator can repoint it",
                    container.name
                ),
            ));
        }
        EnvSource::Other if selected => {
            return Err((
                reason::ENV_VAR_NOT_FROM_SECRET,
                format!(
                    "container {} sets {env_var} from a ConfigMap or a field, which a Secret reference cannot replace; remove that valueFrom or read the {token2_key} key of Secret {mirror} with secretKeyRef",
                    container.name
                ),
            ));
        }
        EnvSource::Literal | EnvSource::Other => {}
        // A container no longer selected keeps the variable the operator set (server-side apply
        // would remove it if the apply left it out).
        EnvSource::SecretKey { secret, .. } if shared && secret != mirror => {}
        EnvSource::SecretKey { secret, key } if selected || secret == mirror => {
            variables.push(env_var.clone());
            pointed &= on_token2(secret, key);
        }
        EnvSource::SecretKey { .. } => {}
    }
    for (variable, key) in &container.mirror_reads {
        // Token 1 readers are repointed where selected (elsewhere the pod-level check reports
        // them); Token 2 readers stay in the apply so the fields the operator owns stay put.
        if (key == token1_key && selected) || key == token2_key {
            variables.push(variable.clone());
            pointed &= key == token2_key;
        }
    }
    if variables.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        ContainerRepoint {
            name: container.name.clone(),
            init: container.init,
            variables,
        },
        pointed,
    )))
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
            reason: reason::PAUSED,
            message: "the rollout is paused; resume it (kubectl rollout resume)".into(),
        };
    }
    if consumer.aborted {
        return Verdict::Blocked {
            reason: reason::ROLLOUT_ABORTED,
            message: "the Rollout was aborted: its stable pods still run the previous template; retry it (kubectl argo rollouts retry rollout) or promote it".into(),
        };
    }
    if consumer.progress_deadline_exceeded {
        return Verdict::Blocked {
            reason: reason::PROGRESS_DEADLINE_EXCEEDED,
            message: "the rollout exceeded its progress deadline".into(),
        };
    }
    if consumer.on_delete_strategy {
        return Verdict::Blocked {
            reason: reason::ON_DELETE_UPDATE_STRATEGY,
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
            reason: reason::POD_HELD_BY_FINALIZER,
            message: format!(
                "pod {} of an older template is terminating past its grace period, held by finalizer(s) {}; it may still hold Token 1",
                held.name,
                held.held_by.join(", ")
            ),
        };
    }
    if consumer.batch.is_some() {
        return batch_verdict(consumer, id, waited, timeout);
    }
    match progress(consumer, id) {
        None => Verdict::Verified,
        // The message names the timeout, not the time waited: status must not change every pass.
        Some(message) if waited > timeout => Verdict::Blocked {
            reason: reason::ROLLOUT_TIMEOUT,
            message: format!(
                "not rolled out within spec.rotation.rolloutTimeout ({}s): {message}",
                timeout.as_secs()
            ),
        },
        Some(message) => Verdict::Progressing(message),
    }
}

/// A batch consumer (CronJob, Job) has no rollout: it is verified once its template is on the
/// rotation (a CronJob's; a Job's never changes) and none of its pods is of an older template.
/// Those finish by themselves and are never restarted mid-run: waited for within the timeout,
/// then reported as `JobStillRunning`.
fn batch_verdict(
    consumer: &ConsumerObservation,
    id: &str,
    waited: Duration,
    timeout: Duration,
) -> Verdict {
    let fixed = consumer
        .batch
        .as_ref()
        .is_some_and(|batch| batch.fixed_template);
    if !fixed && consumer.template_rotation.as_deref() != Some(id) {
        return Verdict::Progressing("the job template is not yet on this rotation".into());
    }
    let Some(pods) = &consumer.pods else {
        return Verdict::Progressing("its pods have not been listed".into());
    };
    let old: Vec<&PodObservation> = pods
        .iter()
        .filter(|pod| pod.rotation.as_deref() != Some(id))
        .collect();
    let Some(first) = old.first() else {
        return Verdict::Verified;
    };
    let message = format!(
        "{} pod(s) of Jobs started before this rotation still run (for example {}) and may hold Token 1; they finish by themselves and are not restarted mid-run",
        old.len(),
        first.name
    );
    if waited > timeout {
        return Verdict::Blocked {
            reason: reason::JOB_STILL_RUNNING,
            message: format!(
                "{message}; still running after spec.rotation.rolloutTimeout ({}s): wait for them, or delete the Job if it may be cut short",
                timeout.as_secs()
            ),
        };
    }
    Verdict::Progressing(message)
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
    if !consumer.promoted {
        return Some("the new revision is not the stable one yet (canary steps, or a blue-green switch, to come)".into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::consumer::WorkloadKind;

    fn consumer(name: &str) -> ConsumerObservation {
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
            desired: 3,
            total: 3,
            updated: 3,
            ready: 3,
            available: 3,
            template_rotation: Some("r1".into()),
            stamp_key: crate::api::ROTATION_ANNOTATION.into(),
            shared: false,
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
            batch: None,
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

    fn container(
        name: &str,
        init: bool,
        source: EnvSource,
        reads: &[(&str, &str)],
    ) -> ContainerEnv {
        ContainerEnv {
            name: name.into(),
            init,
            source,
            mirror_reads: reads
                .iter()
                .map(|(variable, key)| (variable.to_string(), key.to_string()))
                .collect(),
            key_owners: vec![("Q".into(), vec!["argocd-controller".into()])],
            repointed: vec!["Q".into()],
        }
    }

    fn mirror_key(key: &str) -> EnvSource {
        EnvSource::SecretKey {
            secret: "telemetry".into(),
            key: key.into(),
        }
    }

    fn snapshot(named: &[&str]) -> Snapshot {
        let mut snapshot = crate::decide::tests::base_snapshot();
        snapshot.spec.consumers.containers = named.iter().map(|name| name.to_string()).collect();
        snapshot
    }

    /// `(container, variables)` a repoint sets, or the reason it is blocked, or "Nothing".
    fn repointed(named: &[&str], containers: Vec<ContainerEnv>, rotation: Option<&str>) -> String {
        let mut observed = consumer("api");
        observed.containers = containers;
        observed.template_rotation = rotation.map(Into::into);
        match repoint_need(&snapshot(named), &observed, "r1") {
            Need::Nothing => "Nothing".into(),
            Need::Blocked(blocked) => blocked.reason,
            Need::Patch(patch) => match patch.repoint {
                None => "Stamp".into(),
                Some(repoint) => repoint
                    .containers
                    .iter()
                    .map(|container| {
                        format!(
                            "{}{}={}",
                            if container.init { "init:" } else { "" },
                            container.name,
                            container.variables.join("+")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            },
        }
    }

    #[test]
    fn repoint_table() {
        let absent = || EnvSource::Absent;
        type Case = (
            &'static str,
            &'static [&'static str],
            Vec<ContainerEnv>,
            Option<&'static str>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "the client's own variable reads Token 1: repointed, nothing added",
                &[],
                vec![container(
                    "app",
                    false,
                    absent(),
                    &[("Quix__Sdk__Token", "token1")],
                )],
                None,
                "app=Quix__Sdk__Token",
            ),
            (
                "the variable you control reads Token 1",
                &[],
                vec![container("app", false, mirror_key("token1"), &[])],
                None,
                "app=STREAMING_TOKEN",
            ),
            (
                "a sidecar that reads nothing is left alone",
                &[],
                vec![
                    container("app", false, mirror_key("token1"), &[]),
                    container("log-shipper", false, absent(), &[]),
                ],
                None,
                "app=STREAMING_TOKEN",
            ),
            (
                "a named container gets the variable you control",
                &["app"],
                vec![
                    container("app", false, absent(), &[]),
                    container("log-shipper", false, absent(), &[]),
                ],
                None,
                "app=STREAMING_TOKEN",
            ),
            (
                "an init container (native sidecar) is repointed too",
                &[],
                vec![
                    container("app", false, mirror_key("token1"), &[]),
                    container("proxy", true, absent(), &[("TOKEN", "token1")]),
                ],
                None,
                "app=STREAMING_TOKEN init:proxy=TOKEN",
            ),
            (
                "a Token 1 reader in a container not named stays (the pod check reports it)",
                &["app"],
                vec![
                    container("app", false, mirror_key("token1"), &[]),
                    container("other", false, absent(), &[("T", "token1")]),
                ],
                None,
                "app=STREAMING_TOKEN",
            ),
            (
                "nothing reads the mirror: only the stamp",
                &[],
                vec![container("app", false, absent(), &[])],
                None,
                "Stamp",
            ),
            (
                "already on Token 2 and stamped",
                &[],
                vec![container(
                    "app",
                    false,
                    mirror_key("token2"),
                    &[("Q", "token2")],
                )],
                Some("r1"),
                "Nothing",
            ),
            (
                "stamped but one variable reads Token 1 again: reverted, not fought",
                &[],
                vec![container(
                    "app",
                    false,
                    mirror_key("token2"),
                    &[("Q", "token1")],
                )],
                Some("r1"),
                "EnvVarReverted",
            ),
            (
                "stamped, and a variable the operator never applied reads Token 1 (a container named mid-rotation): repointed",
                &[],
                vec![container(
                    "app",
                    false,
                    mirror_key("token2"),
                    &[("NEW", "token1")],
                )],
                Some("r1"),
                "app=STREAMING_TOKEN+NEW",
            ),
            (
                "stamped by an earlier rotation and reading Token 1: repointed",
                &[],
                vec![container(
                    "app",
                    false,
                    mirror_key("token2"),
                    &[("Q", "token1")],
                )],
                Some("r0"),
                "app=STREAMING_TOKEN+Q",
            ),
            (
                "a literal value",
                &[],
                vec![container("app", false, EnvSource::Literal, &[])],
                None,
                "LiteralEnvValue",
            ),
            (
                "a ConfigMap reference",
                &[],
                vec![container("app", false, EnvSource::Other, &[])],
                None,
                "EnvVarNotFromSecret",
            ),
            (
                "no container named matches",
                &["web"],
                vec![container("app", false, mirror_key("token1"), &[])],
                None,
                "NoMatchingContainer",
            ),
            (
                "another Secret's key under the variable you control is repointed to the mirror",
                &[],
                vec![container(
                    "app",
                    false,
                    EnvSource::SecretKey {
                        secret: "portal".into(),
                        key: "token".into(),
                    },
                    &[],
                )],
                None,
                "app=STREAMING_TOKEN",
            ),
        ];
        for (name, named, containers, rotation, want) in cases {
            assert_eq!(repointed(named, containers, rotation), want, "case {name}");
        }
    }

    #[test]
    fn a_consumer_of_two_tokens_keeps_the_other_tokens_variable() {
        // STREAMING_TOKEN (the variable you control, by default) reads another StreamingToken's
        // Secret: in a consumer of both it is that one's, never repointed to this mirror.
        let mut observed = consumer("api");
        observed.containers = vec![container(
            "app",
            false,
            EnvSource::SecretKey {
                secret: "billing".into(),
                key: "token2".into(),
            },
            &[("TELEMETRY", "token1")],
        )];
        observed.template_rotation = None;
        observed.shared = true;
        let Need::Patch(patch) = repoint_need(&snapshot(&[]), &observed, "r1") else {
            panic!("a patch");
        };
        let repoint = patch.repoint.expect("repoint");
        assert_eq!(repoint.containers[0].variables, ["TELEMETRY"]);
        observed.shared = false;
        let Need::Patch(patch) = repoint_need(&snapshot(&[]), &observed, "r1") else {
            panic!("a patch");
        };
        assert_eq!(
            patch.repoint.expect("repoint").containers[0].variables,
            ["STREAMING_TOKEN", "TELEMETRY"],
            "a consumer of one token: its variable is repointed to the mirror, as before"
        );
    }

    #[test]
    fn a_revert_names_the_field_manager_and_the_fix() {
        let mut observed = consumer("api");
        observed.containers = vec![container(
            "app",
            false,
            mirror_key("token2"),
            &[("Q", "token1")],
        )];
        observed.template_rotation = Some("r1".into());
        let Need::Blocked(blocked) = repoint_need(&snapshot(&[]), &observed, "r1") else {
            panic!("blocked");
        };
        assert!(
            blocked.message.contains("field manager argocd-controller"),
            "{}",
            blocked.message
        );
        assert!(
            blocked.message.contains("key: token2"),
            "{}",
            blocked.message
        );
    }
}
