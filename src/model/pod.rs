//! Pods as far as a token goes: the compact record the operator keeps of a pod that may hold a
//! token, and how it reaches a Secret. How pods are watched and recorded is [`crate::pods`].

/// The workload that controls a pod, as people know it (a ReplicaSet of a Deployment is
/// reported as the Deployment).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// Which keys of a Secret a reference exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeys {
    /// Every key (`envFrom`, a volume without `items`).
    All,
    Listed(Vec<String>),
}

impl SecretKeys {
    pub fn includes(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Listed(keys) => keys.iter().any(|listed| listed == key),
        }
    }
}

/// How a pod reaches a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUse {
    /// `env[].valueFrom.secretKeyRef` of a container (init and ephemeral ones included).
    Env { container: String, variable: String },
    /// `envFrom[].secretRef` of a container.
    EnvFrom { container: String },
    /// A `secret` volume, or a `projected` volume with a secret source.
    Volume { volume: String },
}

/// One reference of a pod to a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub secret: String,
    pub keys: SecretKeys,
    pub used: SecretUse,
}

/// What the operator keeps of a pod that may hold a token (see [`crate::pods`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub name: String,
    pub owner: Option<Owner>,
    /// The `streamingtoken.io/rotation` annotation it inherited from its template.
    pub rotation: Option<String>,
    /// The stamps of StreamingTokens a consumer reads besides its label's:
    /// `(rotation.streamingtoken.io/<name>, rotation)`.
    pub token_stamps: Vec<(String, String)>,
    /// Its `streamingtoken.io/token` label.
    pub token_label: Option<String>,
    /// `creationTimestamp`, in seconds (API server clock).
    pub created_at: i64,
    /// `deletionTimestamp` (when its grace period ends), in seconds, once it is terminating.
    pub deletion_deadline: Option<i64>,
    /// Finalizers of a terminating pod.
    pub finalizers: Vec<String>,
    pub references: Vec<SecretReference>,
}

impl AsRef<PodRecord> for PodRecord {
    fn as_ref(&self) -> &PodRecord {
        self
    }
}

impl PodRecord {
    /// The stamp under annotation `key` (see [`crate::model::consumer::stamp_key`]).
    pub fn stamp(&self, key: &str) -> Option<&String> {
        if key == crate::api::ROTATION_ANNOTATION {
            return self.rotation.as_ref();
        }
        self.token_stamps
            .iter()
            .find(|(stamp_key, _)| stamp_key == key)
            .map(|(_, rotation)| rotation)
    }

    /// True when any of its stamps is `rotation` (a rotation id names its StreamingToken's
    /// incarnation, so it is never another's).
    pub fn stamped_with(&self, rotation: &str) -> bool {
        self.rotation.as_deref() == Some(rotation)
            || self.token_stamps.iter().any(|(_, stamp)| stamp == rotation)
    }

    pub fn terminating(&self) -> bool {
        self.deletion_deadline.is_some()
    }

    /// The finalizers that keep a terminating pod past its grace period.
    pub fn held_by(&self, now: i64) -> &[String] {
        match self.deletion_deadline {
            Some(deadline) if deadline <= now => &self.finalizers,
            _ => &[],
        }
    }
}
