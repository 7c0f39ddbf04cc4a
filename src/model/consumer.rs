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
    pub template_rotation: Option<String>,
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
