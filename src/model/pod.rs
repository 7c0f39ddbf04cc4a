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
