//! Consumer workloads as the decisions see them: what is observed of one
//! ([`ConsumerObservation`]) and what the operator writes to its pod template
//! ([`ConsumerPatch`]). How each kind is watched, cached and patched is [`crate::workload`].

/// Declares the consumer kinds: the enum, its every-kind list and its names, from one list, so
/// that [`WorkloadKind::ALL`] cannot miss a kind. A new kind is one line here and one adapter in
/// [`crate::workload`] (whose registry does not compile until the kind is registered).
macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident),+ $(,)?) => {
        /// The kinds of workload that can consume a StreamingToken.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum WorkloadKind {
            $($(#[$doc])* $kind),+
        }

        impl WorkloadKind {
            /// Every kind, in the order their adapters are asked (who controls a pod).
            pub const ALL: &'static [Self] = &[$(Self::$kind),+];

            /// The kind as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => stringify!($kind)),+
                }
            }
        }
    };
}

kinds! {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// An Argo Rollouts `Rollout` (argoproj.io/v1alpha1).
    Rollout,
    /// A `CronJob`: its job template is repointed like a pod template; the pods of the Jobs it
    /// runs finish by themselves.
    CronJob,
    /// A labelled `Job`: its template cannot change, so its pods are waited for until they
    /// finish.
    Job,
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
    /// The stamp of the StreamingToken observing it, read under [`ConsumerObservation::stamp_key`].
    pub template_rotation: Option<String>,
    /// The annotation that carries that StreamingToken's stamp: `streamingtoken.io/rotation` for
    /// the token its label names, `rotation.streamingtoken.io/<name>` for one named in
    /// `streamingtoken.io/tokens` (see [`stamp_key`]).
    pub stamp_key: String,
    /// It reads more than one StreamingToken: the variable another one's Secret sets is that
    /// one's, never repointed by this one.
    pub shared: bool,
    pub containers: Vec<ContainerEnv>,
    /// The pods selected by the workload; `None` when they were not listed (not rotating).
    pub pods: Option<Vec<PodObservation>>,
    /// The workload's pod selector (`None` if it is empty or invalid: such a workload is never
    /// verified, so a rotation waits on it and reports it).
    pub selector: Option<kube::core::Selector>,
    /// (CronJob, Job) Pods that run to completion instead of being rolled.
    pub batch: Option<BatchObservation>,
}

/// What sets a batch consumer apart: its pods are never replaced by a rollout, they finish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchObservation {
    /// The Jobs it runs now (a CronJob's `status.active`): their pods are its pods.
    pub jobs: Vec<String>,
    /// Its pod template cannot be changed (a Job's): nothing is patched, its pods are waited for.
    pub fixed_template: bool,
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
    pub fn of(labels: Option<&std::collections::BTreeMap<String, String>>) -> Self {
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
    /// The annotation the rotation id is stamped under (the consumer's
    /// [`ConsumerObservation::stamp_key`]).
    pub stamp_key: String,
    /// The StreamingToken's name, set as a pod label so that new pods are watched (only by the
    /// StreamingToken the consumer's own label names: two would fight over the label).
    pub token_name: String,
    /// The StreamingToken that writes the patch: its own field managers, so that two
    /// StreamingTokens' applies never strip each other's fields.
    pub writer: Writer,
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
    /// True when the writer is the StreamingToken the consumer's label names (its stamp is
    /// `streamingtoken.io/rotation`).
    pub fn by_label_token(&self) -> bool {
        self.stamp_key == crate::api::ROTATION_ANNOTATION
    }
}

/// A StreamingToken (or ClusterStreamingToken) as the writer of consumer patches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Writer {
    /// A ClusterStreamingToken (cluster-scoped: its name is unique in the cluster).
    pub cluster: bool,
    pub name: String,
}

impl Writer {
    /// A (namespaced) StreamingToken named `name`.
    pub fn namespaced(name: &str) -> Self {
        Self {
            cluster: false,
            name: name.to_string(),
        }
    }
}

/// The names of the StreamingTokens a consumer reads: its `streamingtoken.io/token` label
/// first, then those its `streamingtoken.io/tokens` annotation lists (comma-separated, blanks
/// ignored, each once). Empty without the label: the annotation alone makes no consumer.
pub fn tokens_of(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<String> {
    let Some(label) = labels.and_then(|labels| labels.get(crate::api::TOKEN_LABEL)) else {
        return Vec::new();
    };
    let mut tokens = vec![label.clone()];
    let listed = annotations
        .and_then(|annotations| annotations.get(crate::api::TOKENS_ANNOTATION))
        .map(String::as_str)
        .unwrap_or_default();
    for name in listed.split(',').map(str::trim) {
        if !name.is_empty() && !tokens.iter().any(|token| token == name) {
            tokens.push(name.to_string());
        }
    }
    tokens
}

/// The annotation a StreamingToken named `token` stamps a consumer's template with: the
/// consumer's own label names it (`by_label`): `streamingtoken.io/rotation`, as always; else
/// `rotation.streamingtoken.io/<token>`, the name cut to 47 characters and followed by a hash
/// of the whole when it is longer than an annotation name may be (63).
pub fn stamp_key(by_label: bool, token: &str) -> String {
    if by_label {
        return crate::api::ROTATION_ANNOTATION.to_string();
    }
    format!(
        "{}{}",
        crate::api::TOKEN_STAMP_PREFIX,
        bounded_name(token, 63)
    )
}

/// `name` when it has at most `limit` characters, else its first `limit - 17` characters, a
/// `-` and 16 hex digits of a hash of the whole (FNV-1a: a name, not a secret), so two long
/// names that share a beginning stay apart.
pub fn bounded_name(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_string();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let keep: String = name.chars().take(limit.saturating_sub(17)).collect();
    format!("{}-{hash:016x}", keep.trim_end_matches(['.', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_reads_the_label_token_and_those_the_annotation_lists() {
        let labels = [(crate::api::TOKEN_LABEL.to_string(), "a".to_string())].into();
        let annotations = [(
            crate::api::TOKENS_ANNOTATION.to_string(),
            " b, a ,,c.d , b".to_string(),
        )]
        .into();
        assert_eq!(
            tokens_of(Some(&labels), Some(&annotations)),
            ["a", "b", "c.d"]
        );
        assert_eq!(tokens_of(Some(&labels), None), ["a"]);
        assert!(
            tokens_of(None, Some(&annotations)).is_empty(),
            "no label: no consumer"
        );
    }

    #[test]
    fn stamp_keys_are_valid_annotation_names_and_distinct() {
        assert_eq!(stamp_key(true, "billing"), "streamingtoken.io/rotation");
        assert_eq!(
            stamp_key(false, "billing"),
            "rotation.streamingtoken.io/billing"
        );
        let long_a = format!("{}a", "x".repeat(80));
        let long_b = format!("{}b", "x".repeat(80));
        let (a, b) = (stamp_key(false, &long_a), stamp_key(false, &long_b));
        assert_ne!(a, b);
        for key in [a, b] {
            let name = key
                .strip_prefix(crate::api::TOKEN_STAMP_PREFIX)
                .expect("prefix");
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            );
        }
    }
}
