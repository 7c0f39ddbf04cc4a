//! The operator's vocabulary, in one place: every reason its conditions, Events, blocked
//! consumers, errors and metrics carry, the actions of its Events, the phases of a rotation and
//! the states it reports. Code names these constants, never the strings (`tests/layout.rs`
//! counts the literals left elsewhere: none), so a typo does not compile; the README's tables
//! list the same words.

// Conditions: the pair and its source.

/// `Ready=True`: the mirror Secret holds a valid pair.
pub const TOKENS_READY: &str = "TokensReady";
/// `Ready=True`: `spec.suspend` is set; nothing is repaired or rotated.
pub const SUSPENDED: &str = "Suspended";
/// `Degraded=False` / `Stalled=False` / `ReadyToRotate=False`: nothing is wrong, nothing waits.
pub const AS_EXPECTED: &str = "AsExpected";
/// The spec contradicts itself (the source and the mirror are the same Secret).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// (ClusterStreamingToken) The operator's namespace, where the pair of record lives, changed.
pub const HOME_NAMESPACE_CHANGED: &str = "HomeNamespaceChanged";
/// The `secretRef` source Secret does not exist.
pub const SOURCE_SECRET_NOT_FOUND: &str = "SourceSecretNotFound";
/// The source Secret lacks a token key.
pub const SOURCE_KEY_MISSING: &str = "SourceKeyMissing";
/// A source token is empty, oversized or not printable.
pub const SOURCE_TOKEN_INVALID: &str = "SourceTokenInvalid";
/// The source holds the same value under both keys.
pub const SOURCE_TOKENS_IDENTICAL: &str = "SourceTokensIdentical";
/// One key of the source changed and the other still holds its recorded token: a pair being
/// pasted in.
pub const SOURCE_INCOMPLETE: &str = "SourceIncomplete";
/// The source holds a pair that is neither the recorded one nor its promotion.
pub const SOURCE_UNRECOGNIZED: &str = "SourceUnrecognized";
/// (Event) The source's new pair is the promotion of the recorded one.
pub const SOURCE_PROMOTED: &str = "SourcePromoted";
/// (Event) The source was promoted before the consumers were verified on Token 2.
pub const SOURCE_PROMOTED_EARLY: &str = "SourcePromotedEarly";
/// (Event) The source holds a confirmed replacement pair.
pub const SOURCE_REPLACED: &str = "SourceReplaced";
/// (`spec.platform`) The platform rejects a token of the source.
pub const SOURCE_TOKEN_REJECTED: &str = "SourceTokenRejected";
/// (`spec.platform`) The source shows a promotion the platform has not made.
pub const SOURCE_NOT_ROTATED_AT_PLATFORM: &str = "SourceNotRotatedAtPlatform";

// The mirror Secret.

/// `spec.secret.name` names a Secret the operator did not create.
pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
/// The mirror Secret is managed by another StreamingToken.
pub const SECRET_CLAIMED_BY_OTHER: &str = "SecretClaimedByOther";
/// (Event) A Secret left by an earlier StreamingToken of the same name was adopted.
pub const SECRET_ADOPTED: &str = "SecretAdopted";
/// The mirror Secret (or a namespace's copy) was replaced by another object.
pub const SECRET_REPLACED: &str = "SecretReplaced";
/// `DeletesSecretInUse=True`: consumers or pods read the mirror Secret.
pub const SECRET_IN_USE: &str = "SecretInUse";
/// (Event) `deletionPolicy: Delete` while consumers or pods read the mirror Secret.
pub const DELETION_POLICY_DELETES_SECRET_IN_USE: &str = "DeletionPolicyDeletesSecretInUse";
/// (Event) A pair was generated.
pub const TOKENS_ISSUED: &str = "TokensIssued";
/// (Event) The pair was written to the mirror Secret.
pub const TOKENS_MIRRORED: &str = "TokensMirrored";
/// (Event) The mirror Secret was put back to the recorded pair.
pub const MIRROR_SECRET_REPAIRED: &str = "MirrorSecretRepaired";
/// (Event) The mirror Secret's values were edited by someone else.
pub const MIRROR_SECRET_TAMPERED: &str = "MirrorSecretTampered";
/// (Event) The mirror Secret was deleted and is recreated.
pub const MIRROR_SECRET_DELETED: &str = "MirrorSecretDeleted";
/// (Event) An older copy of the mirror Secret was put back; refused, the current pair restored.
pub const MIRROR_SECRET_ROLLED_BACK: &str = "MirrorSecretRolledBack";
/// (Event) The mirror Secret was lost while a rotation was in flight.
pub const MIRROR_LOST_DURING_ROTATION: &str = "MirrorLostDuringRotation";

// Rotations.

/// (Event, condition) A rotation started.
pub const ROTATION_STARTED: &str = "RotationStarted";
/// (Event) A rotation was asked for while another runs; it starts next.
pub const ROTATION_QUEUED: &str = "RotationQueued";
/// (Event, condition) A rotation was given up (the spec changed under it, the mirror was lost).
pub const ROTATION_ABORTED: &str = "RotationAborted";
/// (Event) A rotation finished.
pub const ROTATION_COMPLETED: &str = "RotationCompleted";
/// (Event) Token 1 was deactivated (generate: a new pair issued after verification).
pub const TOKEN_DEACTIVATED: &str = "TokenDeactivated";
/// A rotation cause: the source's pair was replaced.
pub const TOKENS_REPLACED: &str = "TokensReplaced";
/// `Rotating=False`: no rotation runs.
pub const NO_ROTATION: &str = "NoRotation";
/// (Event) Consumers were repointed to Token 2.
pub const CONSUMERS_REPOINTED: &str = "ConsumersRepointed";
/// (Event) Consumers were restarted.
pub const CONSUMERS_RESTARTED: &str = "ConsumersRestarted";
/// (Event) Consumers that need no change were left alone.
pub const CONSUMERS_LEFT_ALONE: &str = "ConsumersLeftAlone";
/// The consumers have not finished rolling out.
pub const CONSUMERS_NOT_READY: &str = "ConsumersNotReady";
/// `ReadyToRotate=True`: every consumer is verified on Token 2 and no pod may hold Token 1.
pub const CONSUMERS_ON_TOKEN2: &str = "ConsumersOnToken2";
/// `ReadyToRotate=True` (Restart): nothing is checked; consumers restart after the promotion.
pub const RESTART_AFTER_ROTATION: &str = "RestartAfterRotation";
/// `ReadyToRotate=True`: after a rotation out of band, every consumer uses the platform's new
/// Token 1.
pub const ALREADY_ROTATED_AT_PLATFORM: &str = "AlreadyRotatedAtPlatform";

// Consumers and pods that hold a rotation (`Degraded=True ConsumerBlocked`, each one's reason).

/// `Degraded=True`: a rotation waits on a consumer or a pod.
pub const CONSUMER_BLOCKED: &str = "ConsumerBlocked";
/// The API server refused the operator's apply to a consumer.
pub const CONSUMER_APPLY_REFUSED: &str = "ConsumerApplyRefused";
/// The consumer's rollout is paused.
pub const PAUSED: &str = "Paused";
/// The Deployment's rollout passed its progress deadline (its own condition's reason).
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// A StatefulSet or DaemonSet updates its pods only when they are deleted.
pub const ON_DELETE_UPDATE_STRATEGY: &str = "OnDeleteUpdateStrategy";
/// The consumer did not roll out within `rolloutTimeout`.
pub const ROLLOUT_TIMEOUT: &str = "RolloutTimeout";
/// (Rollout) The rollout was aborted.
pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
/// `envVar` is set to a literal value.
pub const LITERAL_ENV_VALUE: &str = "LiteralEnvValue";
/// `envVar` comes from a ConfigMap or a field, not from the mirror Secret.
pub const ENV_VAR_NOT_FROM_SECRET: &str = "EnvVarNotFromSecret";
/// Another field manager set a repointed variable back to the old key.
pub const ENV_VAR_REVERTED: &str = "EnvVarReverted";
/// No container of the consumer reads `envVar`.
pub const NO_MATCHING_CONTAINER: &str = "NoMatchingContainer";
/// A pod reads the whole mirror Secret through `envFrom`.
pub const ENV_FROM_MIRROR_SECRET: &str = "EnvFromMirrorSecret";
/// A volume exposes the Token 1 key (no `items`, or the Token 1 key among them).
pub const VOLUME_EXPOSES_TOKEN1: &str = "VolumeExposesToken1";
/// A container not named in `spec.consumers.containers` reads the Token 1 key.
pub const CONTAINER_NOT_REPOINTED: &str = "ContainerNotRepointed";
/// A pod of an older template still runs.
pub const POD_NOT_ROLLED: &str = "PodNotRolled";
/// A workload or bare pod reads the mirror Secret without the consumer label.
pub const UNLABELLED_READER: &str = "UnlabelledReader";
/// A bare pod reads the token.
pub const UNMANAGED_POD_READS_TOKEN: &str = "UnmanagedPodReadsToken";
/// A pod reads the `secretRef` source Secret directly.
pub const READS_SOURCE_SECRET: &str = "ReadsSourceSecret";
/// A terminating pod a finalizer keeps past its grace period.
pub const POD_HELD_BY_FINALIZER: &str = "PodHeldByFinalizer";
/// A pod terminating 30 s past its grace period with no finalizer.
pub const POD_STUCK_TERMINATING: &str = "PodStuckTerminating";
/// (CronJob, Job) A Job started before the repoint still runs past `rolloutTimeout`: its pods
/// may hold Token 1 and are not restarted mid-run.
pub const JOB_STILL_RUNNING: &str = "JobStillRunning";
/// A `streamingtoken.io/wave` label that is not a whole number.
pub const INVALID_WAVE_LABEL: &str = "InvalidWaveLabel";

// ClusterStreamingToken namespaces.

/// (Event) A namespace joined the selection.
pub const NAMESPACE_ADDED: &str = "NamespaceAdded";
/// (Event) A namespace left the selection; its copy goes once nothing reads it.
pub const NAMESPACE_LEAVING: &str = "NamespaceLeaving";
/// (Event) A namespace left the selection; its copy is kept (`Retain`).
pub const NAMESPACE_RETAINED: &str = "NamespaceRetained";
/// (Event) A namespace's copy was removed.
pub const NAMESPACE_REMOVED: &str = "NamespaceRemoved";
/// (Event, Warning) Pods of a namespace no longer selected still read its revoked copy: they
/// lose access when its Token 1 is deactivated.
pub const REVOKED_COPY_READ: &str = "RevokedCopyRead";
/// (Event, Warning) A revoked copy is deleted while workloads there still reference it (scaled
/// to zero, or a CronJob): their next pods fail to start.
pub const REVOKED_COPY_REFERENCED: &str = "RevokedCopyReferenced";
/// (Event, Warning) A pod started reading Token 1 between the last pod check and the write that
/// deactivated it: deleted at once so its controller starts it again (a bare pod: reported).
pub const POD_SLIPPED_THROUGH: &str = "PodSlippedThrough";
/// (Event) A namespace being deleted: its pods are verified until they are gone.
pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
/// (Event) A namespace cannot be served (its Secret or consumer label is someone else's).
pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
/// A namespace's consumer label belongs to a StreamingToken there.
pub const CONSUMER_LABEL_TAKEN: &str = "ConsumerLabelTaken";

// Member clusters (`spec.clusters`).

/// A member cluster cannot be read (its API server does not answer, its credentials are
/// missing or refused): nothing is deactivated until it is verified again.
pub const MEMBER_UNREACHABLE: &str = "MemberUnreachable";
/// The kind a member cluster is listed as in `consumers.blocked` (named by the member's name).
pub const MEMBER_KIND: &str = "Cluster";
/// (Event) A member cluster answers again.
pub const MEMBER_REACHABLE: &str = "MemberReachable";
/// (Event) A member cluster joined `spec.clusters`: the pair is mirrored there.
pub const MEMBER_ADDED: &str = "MemberAdded";
/// (Event) A member cluster was removed from `spec.clusters` while its copy is still there.
pub const MEMBER_LEAVING: &str = "MemberLeaving";
/// (Event) A member cluster is no longer managed (its copy is gone, or its credentials are).
pub const MEMBER_REMOVED: &str = "MemberRemoved";

// The platform (`spec.platform`).

/// `PlatformVerified=True`: the platform accepts the mirrored pair.
pub const TOKENS_ACCEPTED: &str = "TokensAccepted";
/// `PlatformVerified=False`: the platform rejects a mirrored token.
pub const TOKEN_REJECTED: &str = "TokenRejected";
/// The platform does not answer, or answers neither valid nor invalid.
pub const PLATFORM_UNREACHABLE: &str = "PlatformUnreachable";
/// A Secret `spec.platform` names is missing, or the CA bundle holds no certificate.
pub const PLATFORM_MISCONFIGURED: &str = "PlatformMisconfigured";
/// The pair was rotated at the platform behind the operator's back.
pub const ROTATED_OUT_OF_BAND: &str = "RotatedOutOfBand";
/// (Event) The operator is calling the platform's rotate endpoint.
pub const PLATFORM_ROTATE_CALLED: &str = "PlatformRotateCalled";
/// (Event) The platform rotated the pair.
pub const PLATFORM_ROTATED: &str = "PlatformRotated";
/// The rotate call never reached the platform, or it refused it.
pub const PLATFORM_ROTATE_FAILED: &str = "PlatformRotateFailed";
/// The rotate call's outcome is unknown; it is never repeated.
pub const PLATFORM_ROTATE_IN_DOUBT: &str = "PlatformRotateInDoubt";
/// `CredentialsExpiring=False`: the platform credentials are valid for more than 7 days.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// `CredentialsExpiring=True`: they expire within 7 days.
pub const CREDENTIALS_EXPIRE_SOON: &str = "CredentialsExpireSoon";
/// `CredentialsExpiring=True`: they have expired.
pub const CREDENTIALS_EXPIRED: &str = "CredentialsExpired";

// Writes that failed (`Degraded=True`, the error's reason).

/// Writing a Secret failed.
pub const APPLY_SECRET_FAILED: &str = "ApplySecretFailed";
/// Writing a consumer failed.
pub const APPLY_CONSUMER_FAILED: &str = "ApplyConsumerFailed";
/// Writing the status failed.
pub const PATCH_STATUS_FAILED: &str = "PatchStatusFailed";
/// Reading a Secret failed.
pub const GET_SECRET_FAILED: &str = "GetSecretFailed";
/// Listing pods failed.
pub const LIST_PODS_FAILED: &str = "ListPodsFailed";
/// An object could not be serialized.
pub const SERIALIZE_FAILED: &str = "SerializeFailed";
/// The random source failed.
pub const RANDOM_SOURCE_FAILED: &str = "RandomSourceFailed";
/// This replica lost the leader lease before writing.
pub const NOT_LEADER: &str = "NotLeader";

// Audit.

/// (Event, by the CLI) Someone read Token 2 with `streaming-token-operator dotenv`, recorded with
/// their own credentials: a courtesy record, not an audit trail (see the README).
pub const TOKEN_READ: &str = "TokenRead";

// Maintenance windows (`spec.rotation.windows`) and notifications (`spec.rotation.notifications`).

/// `Rotating=False`: a rotation was asked for while every maintenance window was closed; it
/// starts when the next one opens.
pub const WAITING_FOR_WINDOW: &str = "WaitingForWindow";
/// (Event) A rotation asked for outside the maintenance windows waits for the next one.
pub const ROTATION_DEFERRED: &str = "RotationDeferred";
/// (Event) A rotation starts outside the maintenance windows: `streamingtoken.io/ignore-windows`
/// (`rotate --now`) asked for it.
pub const WINDOWS_BYPASSED: &str = "WindowsBypassed";
/// `Degraded=True`: a maintenance window cannot be read (its schedule is not a cron expression,
/// its time zone is unknown): it never opens.
pub const INVALID_WINDOW: &str = "InvalidWindow";
/// `Degraded=True`: a maintenance window's schedule names a time that never occurs (February 30):
/// it never opens.
pub const WINDOW_UNREACHABLE: &str = "WindowUnreachable";
/// (Notification) A person must act: `ReadyToRotate=True`.
pub const NEEDS_ACTION: &str = "NeedsAction";
/// (Notification) A rotation is blocked: only a person can clear what holds it up.
pub const ROTATION_BLOCKED: &str = "RotationBlocked";
/// (Event) A webhook notification was not delivered: the receiver refused it, or every attempt
/// failed.
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

/// The types of the conditions the operator sets.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const DEGRADED: &str = "Degraded";
    pub const ROTATING: &str = "Rotating";
    pub const READY_TO_ROTATE: &str = "ReadyToRotate";
    /// kstatus: a rotation (or a settling source) is in progress.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: only a person can clear what holds the StreamingToken up (the reason says what).
    pub const STALLED: &str = "Stalled";
    /// `deletionPolicy: Delete` while consumers or pods read the mirror Secret: deleting the
    /// StreamingToken would delete a Secret in use.
    pub const DELETES_SECRET_IN_USE: &str = "DeletesSecretInUse";
    /// (`spec.platform`) True: the platform accepts the mirrored pair. False: it rejects a token.
    /// Unknown: it could not be reached (never read as valid or as invalid).
    pub const PLATFORM_VERIFIED: &str = "PlatformVerified";
    /// (`spec.platform.rotate`) The platform credentials expire within 7 days, or have expired.
    pub const CREDENTIALS_EXPIRING: &str = "CredentialsExpiring";
}

/// What started a rotation (`status.rotation.cause`).
pub mod cause {
    /// `spec.rotation.trigger` changed.
    pub const TRIGGER: &str = "Trigger";
    /// The `streamingtoken.io/rotate` annotation asked for one.
    pub const REQUEST: &str = "Request";
    /// `spec.rotation.interval` elapsed.
    pub const INTERVAL: &str = "Interval";
}

/// The actions of the operator's Events (what it was doing).
pub mod action {
    /// A rotation step.
    pub const ROTATE: &str = "Rotate";
    /// Any other reconcile step.
    pub const RECONCILE: &str = "Reconcile";
    /// Generating a pair.
    pub const ISSUE_TOKENS: &str = "IssueTokens";
    /// Writing the mirror Secret.
    pub const MIRROR_SECRET: &str = "MirrorSecret";
    /// Asking the platform.
    pub const CHECK_PLATFORM: &str = "CheckPlatform";
    /// Reading the tokens (the CLI's audit Event).
    pub const READ: &str = "Read";
}

/// The phases of a rotation (`status.rotation.phase`).
pub mod phase {
    /// No rotation runs.
    pub const IDLE: &str = "Idle";
    /// Consumers are being repointed to Token 2 (ZeroDowntime).
    pub const REPOINTING: &str = "Repointing";
    /// Consumers are being restarted (Restart).
    pub const RESTARTING: &str = "Restarting";
    /// Waiting for the consumers' rollouts.
    pub const AWAITING_ROLLOUT: &str = "AwaitingRollout";
    /// Waiting for the source to show the promoted pair.
    pub const AWAITING_SOURCE: &str = "AwaitingSource";
    /// Token 1 is being deactivated.
    pub const DEACTIVATING: &str = "Deactivating";
}

/// The states of a wave of consumers (`status.rotation.waves[].state`) and of a consumer.
pub mod progress {
    /// Verified on Token 2.
    pub const VERIFIED: &str = "Verified";
    /// Held by a blocked consumer.
    pub const BLOCKED: &str = "Blocked";
}

/// What the platform says of one token (`status.platform.token1`/`token2`), and of a rotate call
/// (`status.rotation.platformRotate.state`).
pub mod platform {
    /// The platform accepts the token.
    pub const ACCEPTED: &str = "Accepted";
    /// The platform rejects the token.
    pub const REJECTED: &str = "Rejected";
    /// The platform gave no verdict (never read as valid or invalid).
    pub const UNKNOWN: &str = "Unknown";
    /// The rotate call is being made (recorded before the call).
    pub const CALLING: &str = "Calling";
    /// The platform rotated the pair.
    pub const ROTATED: &str = "Rotated";
    /// The call never left (a connection refused).
    pub const NOT_SENT: &str = "NotSent";
    /// The platform refused the call (a 4xx).
    pub const REFUSED: &str = "Refused";
    /// The call's outcome is unknown.
    pub const IN_DOUBT: &str = "InDoubt";
}

/// The state of the maintenance windows (`status.maintenanceWindow.state`).
pub mod window {
    /// A window is open: a rotation asked for now starts now.
    pub const OPEN: &str = "Open";
    /// Every window is closed: a rotation asked for now waits for the next one.
    pub const CLOSED: &str = "Closed";
}

/// The state of a webhook notification (`status.notifications[].state`).
pub mod delivery {
    /// To be sent, or to be tried again.
    pub const PENDING: &str = "Pending";
    /// Delivered (the receiver answered 2xx).
    pub const SENT: &str = "Sent";
    /// Given up: refused by the receiver, or every attempt failed.
    pub const UNDELIVERED: &str = "Undelivered";
}

/// The state of one namespace of a ClusterStreamingToken (`status.namespaces[].state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceState {
    /// Its copy holds the pair.
    Synced,
    /// Its copy is being created or updated.
    Pending,
    /// No longer selected (revoked): its copy never receives a later pair; deleted once no pod
    /// reads it.
    Leaving,
    /// No longer selected and nothing reads its copy: kept as it is (`unselectedPolicy: Retain`).
    Retained,
    /// Its copy was replaced by someone else's Secret.
    SecretReplaced,
    /// A Secret of the copy's name there was not created by the operator.
    SecretNotOwned,
    /// A Secret of the copy's name there is managed for another object.
    SecretClaimedByOther,
    /// A StreamingToken there owns the consumer label.
    ConsumerLabelTaken,
    /// The namespace is being deleted: its pods are verified until they are gone.
    Terminating,
    /// (A member cluster's namespace) It cannot be read: rotations wait for it.
    Unreachable,
}

impl NamespaceState {
    /// Every state.
    pub const ALL: [Self; 10] = [
        Self::Synced,
        Self::Pending,
        Self::Leaving,
        Self::Retained,
        Self::SecretReplaced,
        Self::SecretNotOwned,
        Self::SecretClaimedByOther,
        Self::ConsumerLabelTaken,
        Self::Terminating,
        Self::Unreachable,
    ];

    /// The word in `status.namespaces[].state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::Pending => "Pending",
            Self::Leaving => "Leaving",
            Self::Retained => "Retained",
            Self::SecretReplaced => SECRET_REPLACED,
            Self::SecretNotOwned => SECRET_NOT_OWNED,
            Self::SecretClaimedByOther => SECRET_CLAIMED_BY_OTHER,
            Self::ConsumerLabelTaken => CONSUMER_LABEL_TAKEN,
            Self::Terminating => "Terminating",
            Self::Unreachable => "Unreachable",
        }
    }

    /// The state `word` names (as written in status).
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == word)
    }

    /// The namespace cannot be served: someone else's Secret or label is in the way.
    pub fn is_conflict(self) -> bool {
        matches!(
            self,
            Self::SecretReplaced
                | Self::SecretNotOwned
                | Self::SecretClaimedByOther
                | Self::ConsumerLabelTaken
        )
    }

    /// The namespace held (or holds) this object's copy.
    pub fn held_a_copy(self) -> bool {
        matches!(
            self,
            Self::Synced
                | Self::Pending
                | Self::Leaving
                | Self::Retained
                | Self::SecretReplaced
                | Self::Terminating
        )
    }
}
