//! The `StreamingToken` custom resource: the single source of truth for `crds/`.
//!
//! Every field carries a `///` doc that becomes its `kubectl explain` text. Bounds, patterns and
//! CEL rules reject what can be rejected before the operator ever sees it; what cannot (a source
//! Secret that does not exist, a Secret name that collides) is answered with a status condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every resource this operator defines.
pub const GROUP: &str = "streamingtoken.io";
/// Label that ties a workload (a consumer), a mirror Secret or a source Secret to a StreamingToken.
pub const TOKEN_LABEL: &str = "streamingtoken.io/token";
/// Label on a consumer that orders rotations: consumers roll in ascending order of its value
/// (a whole number), a wave only once every consumer of the earlier waves is verified;
/// unlabelled consumers form the last wave.
pub const WAVE_LABEL: &str = "streamingtoken.io/wave";
/// Annotation on a StreamingToken that asks for one rotation per new value, without touching
/// the spec (so a GitOps tool that owns the spec never undoes it): what
/// `streaming-token-operator rotate` sets.
pub const ROTATE_ANNOTATION: &str = "streamingtoken.io/rotate";
/// Annotation on a StreamingToken that lets the trigger or rotate request of the same value start
/// at once, outside the maintenance windows (`spec.rotation.windows`): what
/// `streaming-token-operator rotate --now` sets, for an emergency. It matches that one value only,
/// so leaving it in Git lets later rotations wait for their window again.
pub const IGNORE_WINDOWS_ANNOTATION: &str = "streamingtoken.io/ignore-windows";
/// Pod-template (and so pod) annotation naming the rotation the template belongs to: the stamp
/// of the StreamingToken its `streamingtoken.io/token` label names.
pub const ROTATION_ANNOTATION: &str = "streamingtoken.io/rotation";
/// Annotation on a consumer (already labelled `streamingtoken.io/token: <name>`) naming more
/// StreamingTokens it reads, comma-separated: it is a consumer of each. The label marks the
/// object as a consumer (what the watches select); label values cannot hold a list of names.
pub const TOKENS_ANNOTATION: &str = "streamingtoken.io/tokens";
/// Prefix of the stamp annotation of a StreamingToken named in [`TOKENS_ANNOTATION`] (and not in
/// the label): `rotation.streamingtoken.io/<name>`, so two StreamingTokens' stamps never collide.
pub const TOKEN_STAMP_PREFIX: &str = "rotation.streamingtoken.io/";
/// Label the operator puts on the Secrets it manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on Secrets this operator manages.
pub const MANAGER_NAME: &str = "streaming-token-operator";

/// A pair of streaming tokens (Token 1 and Token 2, both valid at all times), where they come
/// from, the Secret they are mirrored into, the workloads that consume them and how they rotate.
// clippy reads the repeated `type_` of printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "streamingtoken.io",
    version = "v1alpha1",
    kind = "StreamingToken",
    plural = "streamingtokens",
    shortname = "stok",
    category = "streaming",
    namespaced,
    status = "StreamingTokenStatus",
    // The name becomes a label value on the mirror Secret (at most 63 characters).
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it is the value of the streamingtoken.io/token label on the mirror Secret and on consumers"),
    doc = "A pair of streaming tokens mirrored into a Secret and rotated safely across its consumers.",
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.rotation.strategy"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.rotation.phase"),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].reason"
    ),
    printcolumn(
        name = "Consumers",
        type_ = "integer",
        json_path = ".status.consumers.total"
    ),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastRotation.completedAt"
    ),
    printcolumn(
        name = "Window",
        type_ = "string",
        json_path = ".status.maintenanceWindow.state",
        priority = 1
    ),
    printcolumn(
        name = "Next Window",
        type_ = "string",
        json_path = ".status.maintenanceWindow.nextOpensAt",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.source.platform) || (has(self.platform) && has(self.platform.rotate))").message("source.platform needs spec.platform with rotate (how to read and rotate the pair at the platform)"))]
#[x_kube(validation = Rule::new("!has(self.platform) || !has(self.platform.rotate) || has(self.source.platform)").message("spec.platform.rotate needs source.platform: the pair is then read from the platform"))]
#[x_kube(validation = Rule::new("!has(self.platform) || !has(self.source.generate)").message("generated tokens are unknown to the platform: with spec.platform use source.secretRef or source.platform"))]
#[x_kube(validation = Rule::new("!has(self.clusters) || self.clusters.all(c, self.clusters.exists_one(d, d.name == c.name))").message("spec.clusters[].name must be unique"))]
#[x_kube(validation = Rule::new("!has(self.rotation) || !has(self.rotation.notifications) || !has(self.rotation.notifications.webhook.urlSecretRef.namespace)").message("rotation.notifications.webhook.urlSecretRef.namespace is not allowed: a StreamingToken reads Secrets of its own namespace only"))]
#[serde(rename_all = "camelCase")]
pub struct StreamingTokenSpec {
    /// Where Token 1 and Token 2 come from. Exactly one of `generate` or `secretRef`.
    pub source: TokenSource,

    /// The mirror Secret, in the same namespace, that holds the current pair for consumers.
    /// Immutable: consumers reference its name and keys.
    #[serde(default)]
    pub secret: MirrorSecret,

    /// How consumers use the token. A consumer is a Deployment, StatefulSet, DaemonSet or Argo
    /// Rollouts Rollout in the same namespace labelled
    /// `streamingtoken.io/token: <name of this StreamingToken>`.
    #[serde(default)]
    pub consumers: Consumers,

    /// When and how the pair is rotated.
    #[serde(default)]
    pub rotation: Rotation,

    /// Pauses the operator for this StreamingToken: nothing is written (the mirror Secret is not
    /// repaired, no rotation starts or advances) until it is set back to false.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to the mirror Secret when this StreamingToken is deleted. `Retain` (the
    /// default) keeps it, so consumers keep working; `Delete` lets Kubernetes garbage-collect it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The streaming platform where the tokens are checked (and, with `rotate`, rotated). With
    /// it, a pair is mirrored only once the platform accepts both tokens, a promoted pair only
    /// once the platform rejects the former Token 1, and the mirrored pair is checked every
    /// `checkInterval`, so a rotation done in the portal behind the operator's back is seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,

    /// Member clusters that use the same pair (a disaster-recovery twin, one cluster per
    /// region). The operator here is the hub: it mirrors the pair into each member's namespace,
    /// repoints the consumers there (workloads labelled `streamingtoken.io/token: <name>`) and
    /// verifies every pod there by the same rule as here. Token 1 is deactivated (or
    /// `ReadyToRotate` set) only once every member is verified; a member that cannot be reached
    /// holds the rotation (`MemberUnreachable`). A member removed from this list is revoked:
    /// its mirror Secret receives no later pair and is deleted once no pod there reads it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub clusters: Vec<MemberCluster>,
}

/// A member cluster, reached with a kubeconfig kept in a Secret of the StreamingToken's
/// namespace (the shape Cluster API writes: `<cluster>-kubeconfig` with key `value`). Give it a
/// ServiceAccount token with the least privilege the README lists for members: no more than
/// the mirror Secret, the labelled workloads and the pods of one namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberCluster {
    /// The member's name, as status, Events and metrics show it (`<name>/<namespace>`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The Secret, in this StreamingToken's namespace, holding the member's kubeconfig.
    pub kubeconfig_secret_ref: KubeconfigSecretRef,

    /// The member's namespace that holds the mirror Secret and the consumers. Defaults to this
    /// StreamingToken's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// A key of a Secret that holds a kubeconfig.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key of the kubeconfig in the Secret.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "value".into()
}

/// Where the token pair comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.generate) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.platform) ? 1 : 0) == 1").message("exactly one of source.generate, source.secretRef or source.platform must be set"))]
pub struct TokenSource {
    /// The operator issues the tokens itself from the operating system's secure random source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSource>,

    /// A person or pipeline supplies Token 1 and Token 2 in a Secret of the same namespace (for
    /// example copied from the streaming platform's portal); the operator mirrors them. Label that
    /// Secret `streamingtoken.io/token: <name>` so its changes are seen at once; an unlabelled
    /// source Secret is re-read every few minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRefSource>,

    /// The pair lives at the streaming platform: the operator reads it there, and rotates it
    /// there itself once every consumer is verified on Token 2, with the credentials of
    /// `spec.platform.rotate` (which must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSource>,
}

/// The pair is read from, and rotated at, the platform (`spec.platform.rotate` says how).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSource {}

/// The streaming platform that checks (and may rotate) the tokens. Exactly one of `quix` or
/// `http` says how a token is checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.quix) != has(self.http)").message("exactly one of platform.quix or platform.http must be set"))]
#[x_kube(validation = Rule::new("duration(self.timeout) >= duration('1s') && duration(self.timeout) <= duration('60s')").message("platform.timeout must be between 1s and 60s"))]
#[x_kube(validation = Rule::new("duration(self.checkInterval) >= duration('5s') && duration(self.checkInterval) <= duration('24h')").message("platform.checkInterval must be between 5s and 24h"))]
#[x_kube(validation = Rule::new("!has(self.rotate) || has(self.quix) || (self.rotate.read.url.startsWith('https://') || self.rotate.read.url.startsWith('http://')) && (self.rotate.rotate.url.startsWith('https://') || self.rotate.rotate.url.startsWith('http://'))").message("with platform.http, rotate.read.url and rotate.rotate.url must be absolute URLs"))]
pub struct PlatformSpec {
    /// The Quix preset: a token is checked the way every Quix client turns it into broker
    /// settings, `GET {portalApi}/workspaces/{workspaceId}/broker/librdkafka` with
    /// `Authorization: Bearer <token>` and `X-Version: 2.0`: 200 means valid, 401 or 403 means
    /// rejected (the response body holds broker credentials and is dropped unread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quix: Option<QuixPlatform>,

    /// A generic HTTP check, for another platform or a proxy in front of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,

    /// PEM certificates (a CA bundle) trusted for the platform's TLS, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,

    /// How long one request may take (a Go duration, 1s to 60s; default `10s`). A check is
    /// tried three times with backoff; a platform that does not answer is reported as
    /// unreachable, which is never read as valid or as invalid.
    #[serde(default = "default_platform_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub timeout: String,

    /// How often the mirrored pair is checked at the platform (a Go duration, 5s to 24h;
    /// default `5m`). A Token 1 the platform rejects although no rotation of the operator
    /// deactivated it means someone rotated in the portal: `RotatedOutOfBand`.
    #[serde(default = "default_check_interval")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub check_interval: String,

    /// What to do when the platform rejects the mirrored Token 1 although no rotation of the
    /// operator deactivated it (a rotation clicked in the portal). `RestartHolders` (the
    /// default): report it and at once move every consumer onto the token the platform still
    /// accepts (repointed to Token 2; with `source.platform` the promoted pair is mirrored and
    /// consumers restart), the shortest outage possible. `Report`: only report it.
    #[serde(default)]
    pub on_rotated_out_of_band: OutOfBandAction,

    /// Rotate at the platform: the operator itself calls the platform's rotate endpoint when it
    /// would deactivate Token 1 (ZeroDowntime: once every consumer is verified on Token 2;
    /// Restart: first), then reads, checks and mirrors the new pair. At most one rotate call is
    /// made per rotation, across crashes, lost responses and failovers. Needs
    /// `source.platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<PlatformRotate>,
}

fn default_platform_timeout() -> String {
    "10s".into()
}

fn default_check_interval() -> String {
    "5m".into()
}

/// The Quix portal API of one environment (workspace).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuixPlatform {
    /// Base URL of the portal API (what clients read from `Quix__Portal__Api`), for example
    /// `https://portal-api.platform.quix.io`.
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://[^\s{}]+$"))]
    pub portal_api: String,

    /// The workspace (environment) id whose token pair this is.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub workspace_id: String,
}

/// A generic HTTP check of one token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.headers.exists(h, has(h.value) && h.value.contains('{token}'))").message("platform.http needs a header whose value carries {token}, for example Authorization: Bearer {token}"))]
pub struct HttpCheck {
    /// The URL to call. The token is never put in a URL (URLs end up in logs): it goes in a
    /// header, see `headers`.
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://[^\s{}]+$"))]
    pub url: String,

    /// `GET` (the default), `POST` or `HEAD`.
    #[serde(default)]
    pub method: CheckMethod,

    /// Request headers. A value may carry `{token}`, replaced by the token being checked, or
    /// come from a Secret in the object's namespace (`valueFrom`).
    #[schemars(length(min = 1, max = 16))]
    pub headers: Vec<HttpHeader>,

    /// Response statuses that mean "the token is valid" (default `[200]`).
    #[serde(default = "default_valid_statuses")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 100, max = 599)))]
    pub valid_statuses: Vec<i32>,

    /// Response statuses that mean "the token is rejected" (default `[401, 403]`). Any other
    /// status, and no answer, is unreachable: never valid, never invalid.
    #[serde(default = "default_invalid_statuses")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 100, max = 599)))]
    pub invalid_statuses: Vec<i32>,
}

fn default_valid_statuses() -> Vec<i32> {
    vec![200]
}

fn default_invalid_statuses() -> Vec<i32> {
    vec![401, 403]
}

/// HTTP method of a token check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckMethod {
    #[default]
    Get,
    Post,
    Head,
}

/// One request header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a header needs exactly one of value or valueFrom"))]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub name: String,
    /// Header value; `{token}` is replaced by the token being checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
    /// Header value read from a Secret of the object's namespace (ClusterStreamingToken: the
    /// operator's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// A key of a Secret in the object's namespace (ClusterStreamingToken: the operator's).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// How the operator reads and rotates the pair at the platform.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlatformRotate {
    /// The Secret key holding the platform credentials: a Personal Access Token with the Admin
    /// role, sent as `Authorization: bearer <PAT>`. A PAT that is a JWT with `exp` is reported
    /// before it expires (`CredentialsExpiring`).
    pub credentials_secret_ref: SecretKeyRef,
    /// The endpoint that returns the current pair (read before every rotate call and after any
    /// doubt).
    pub read: PlatformEndpoint,
    /// The endpoint that rotates the pair (not idempotent: the operator calls it at most once
    /// per rotation).
    pub rotate: PlatformEndpoint,
    /// JSONPath (RFC 9535) to Token 1 in the read (and rotate) response, e.g. `$.token1.value`.
    #[schemars(length(min = 2, max = 256))]
    pub token1_path: String,
    /// JSONPath to Token 2 in the read (and rotate) response.
    #[schemars(length(min = 2, max = 256))]
    pub token2_path: String,
}

/// One endpoint of the platform's API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlatformEndpoint {
    /// An absolute URL, or (with `quix`) a path starting with `/` under `portalApi`.
    /// `{workspaceId}` is replaced by the Quix workspace id. The platform's CLI has
    /// `tokens get` and `tokens rotate` commands, but their paths are not documented: take them
    /// from your platform's API reference.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^(https?://|/)[^\s]*$"))]
    pub url: String,
    /// HTTP method: `GET` for the read and `POST` for the rotate unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<EndpointMethod>,
}

/// HTTP method of a platform endpoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointMethod {
    Get,
    Post,
    Put,
    Patch,
}

/// What the operator does when the platform rejects the mirrored Token 1 behind its back.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutOfBandAction {
    /// Report it, and move every consumer onto the token the platform still accepts at once.
    #[default]
    RestartHolders,
    /// Only report it.
    Report,
}

/// Tokens issued by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateSource {
    /// Number of random characters (A-Z, a-z, 0-9) in each token after the prefix: 48 by
    /// default (about 285 bits), at least 32 and at most 256.
    #[serde(default = "default_generate_length")]
    #[schemars(range(min = 32, max = 256))]
    pub length: i32,

    /// Fixed text put before the random part of each token, for example `sdk-`.
    #[serde(default)]
    #[schemars(length(max = 32), regex(pattern = r"^[A-Za-z0-9._-]*$"))]
    pub prefix: String,
}

impl Default for GenerateSource {
    fn default() -> Self {
        Self {
            length: default_generate_length(),
            prefix: String::new(),
        }
    }
}

fn default_generate_length() -> i32 {
    48
}

/// A Secret that supplies the pair.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.token1Key != self.token2Key").message("secretRef.token1Key and secretRef.token2Key must differ"))]
pub struct SecretRefSource {
    /// Name of the source Secret, in the StreamingToken's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key of Token 1 in the source Secret.
    #[serde(default = "default_token1_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token1_key: String,

    /// Key of Token 2 in the source Secret.
    #[serde(default = "default_token2_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token2_key: String,
}

/// The Secret the operator writes and consumers read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.token1Key != self.token2Key").message("secret.token1Key and secret.token2Key must differ"))]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec.secret is immutable: consumers reference its name and keys; create a new StreamingToken to change them"))]
pub struct MirrorSecret {
    /// Name of the mirror Secret. Defaults to the StreamingToken's name. The operator refuses to
    /// take over a Secret it did not create, or one that another StreamingToken manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: Option<String>,

    /// Key holding Token 1 (the older token, deactivated by the next rotation).
    #[serde(default = "default_token1_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token1_key: String,

    /// Key holding Token 2 (the newer token; zero-downtime consumers point here).
    #[serde(default = "default_token2_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token2_key: String,
}

impl Default for MirrorSecret {
    fn default() -> Self {
        Self {
            name: None,
            token1_key: default_token1_key(),
            token2_key: default_token2_key(),
        }
    }
}

fn default_token1_key() -> String {
    "token1".into()
}

fn default_token2_key() -> String {
    "token2".into()
}

/// How consumers receive the token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    /// The environment variable, under your control, from which each consumer container reads
    /// the token (the zero-downtime procedure). During a ZeroDowntime rotation the operator points
    /// it at the mirror Secret's Token 2 key, together with every other variable of the selected
    /// containers that reads the Token 1 key (for example the client library's own
    /// `Quix__Sdk__Token`). It is added only to containers named in `containers`.
    #[serde(default = "default_env_var")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub env_var: String,

    /// Names of the containers (or init containers) that use the token. Empty (the default)
    /// means: in every container and init container, repoint the variables that already read the
    /// mirror Secret (and `envVar` where it is declared), and add `envVar` nowhere. A container
    /// named here gets `envVar` even if it does not declare it yet; containers not named are
    /// never given the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    pub containers: Vec<String>,
}

impl Default for Consumers {
    fn default() -> Self {
        Self {
            env_var: default_env_var(),
            containers: Vec::new(),
        }
    }
}

fn default_env_var() -> String {
    "STREAMING_TOKEN".into()
}

/// When and how the pair is rotated.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.interval) || duration(self.interval) >= duration('1h')").message("rotation.interval must be at least 1h"))]
#[x_kube(validation = Rule::new("duration(self.rolloutTimeout) >= duration('30s') && duration(self.rolloutTimeout) <= duration('24h')").message("rotation.rolloutTimeout must be between 30s and 24h"))]
#[x_kube(validation = Rule::new("!has(self.maxConcurrentConsumers) || (type(self.maxConcurrentConsumers) == int ? int(self.maxConcurrentConsumers) >= 1 : string(self.maxConcurrentConsumers).matches('^([1-9][0-9]?|100)%$'))").message("rotation.maxConcurrentConsumers must be a number of at least 1 or a percentage from 1% to 100%"))]
pub struct Rotation {
    /// `ZeroDowntime` (the default): point every consumer at Token 2, wait until no live or
    /// terminating pod can still hold Token 1, then deactivate Token 1. `Restart`: deactivate
    /// Token 1 first, then restart every consumer (consumers fail until they restart).
    #[serde(default)]
    pub strategy: RotationStrategy,

    /// Any value; every new value asks for exactly one rotation, and re-applying the same value
    /// does nothing. Change it from Git (for example to a date) or with
    /// `streaming-token-operator rotate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub trigger: Option<String>,

    /// Rotate periodically, this long after the previous rotation completed (a Go duration such
    /// as `720h`; at least `1h`). Unset means no periodic rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub interval: Option<String>,

    /// How long a consumer may take to roll out before it is reported as blocked (a Go duration,
    /// 30s to 24h; default `10m`). A blocked consumer is reported and waited for, never ignored:
    /// Token 1 is not deactivated while any consumer is blocked.
    #[serde(default = "default_rollout_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub rollout_timeout: String,

    /// The restart budget: at most this many consumers roll at once (a number such as `5`, or a
    /// percentage of all consumers such as `10%`, rounded up). The operator repoints (or
    /// restarts) the next consumer only when an earlier one is verified; a blocked consumer keeps
    /// its place (and its wave) until it clears. Consumers labelled `streamingtoken.io/wave:
    /// "<n>"` roll in ascending order of n, each wave only once every consumer of the earlier
    /// waves is verified; unlabelled consumers form the last wave. Unset: every consumer at once
    /// (still in wave order when waves are labelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_consumers: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,

    /// Maintenance windows: a rotation asked for by `trigger`, by `interval` or by the
    /// `streamingtoken.io/rotate` annotation starts only while one of them is open; asked for
    /// outside every window it waits (`Rotating=False WaitingForWindow`,
    /// `status.maintenanceWindow`) and starts when the next one opens. A rotation in progress is
    /// never held by a window: one that starts near a window's end finishes after it. The
    /// annotation `streamingtoken.io/ignore-windows: <value>` (what `rotate --now` sets) lets the
    /// trigger or rotate request of that value start at once, outside the windows. Rotations
    /// that answer tokens replaced or rotated behind the operator's back are never held. Unset:
    /// no restriction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub windows: Vec<MaintenanceWindow>,

    /// Tell people about rotations: a JSON POST to a webhook (Slack and Teams incoming webhooks
    /// accept it) when a rotation starts, when a person must act (`ReadyToRotate=True`), when a
    /// rotation is blocked, and when it completes. Delivery never holds a rotation up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            strategy: RotationStrategy::default(),
            trigger: None,
            interval: None,
            rollout_timeout: default_rollout_timeout(),
            max_concurrent_consumers: None,
            windows: Vec::new(),
            notifications: None,
        }
    }
}

/// One maintenance window: opens at every time `schedule` names, in `timeZone`, and stays open
/// for `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.duration) >= duration('1m') && duration(self.duration) <= duration('744h')").message("a window's duration must be between 1m and 744h (31 days)"))]
pub struct MaintenanceWindow {
    /// When the window opens: a cron expression of five fields (minute, hour, day of month,
    /// month, day of week), as a CronJob's `schedule`, for example `0 2 * * SAT` (Saturdays at
    /// 02:00), or `@daily`, `@weekly`, `@monthly`. Day names (`MON`-`SUN`), month names, `L`
    /// (last day), `W` (nearest weekday) and `#` (nth weekday) are understood. A schedule
    /// that never occurs (`0 0 30 2 *`) is reported as `WindowUnreachable`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^(@[a-z]+|[0-9A-Za-z*,/?#+-]+( +[0-9A-Za-z*,/?#+-]+){4})$")
    )]
    pub schedule: String,

    /// How long the window stays open after each opening (a Go duration such as `4h` or
    /// `90m`, 1m to 744h), in real time: a window that spans a daylight saving change lasts
    /// exactly this long.
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub duration: String,

    /// The IANA time zone `schedule` is read in, for example `Europe/Berlin` (default `UTC`).
    /// An opening that falls into a daylight saving gap opens at the first valid time after it
    /// (the same day); one that falls into the repeated hour opens once, at its first
    /// occurrence.
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
    )]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// Where rotations are told about.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// A webhook that receives a JSON POST: a `text` field for people (what Slack and Teams
    /// incoming webhooks show) and structured fields (`object`, `event`, `rotation`, `reason`).
    pub webhook: WebhookNotification,
}

/// A webhook whose URL is kept in a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.timeout) >= duration('1s') && duration(self.timeout) <= duration('30s')").message("webhook.timeout must be between 1s and 30s"))]
pub struct WebhookNotification {
    /// The Secret key that holds the webhook's URL (such URLs often embed a credential: the
    /// URL is never logged, nor put in Events, status or errors). A StreamingToken's Secret
    /// lives in its own namespace (`namespace` must be unset); a ClusterStreamingToken must name
    /// the Secret's namespace.
    pub url_secret_ref: WebhookSecretRef,

    /// How long one delivery may take (a Go duration, 1s to 30s; default `5s`). A delivery that
    /// fails (no answer, a timeout, a 408, 429 or 5xx) is retried with backoff, up to 5 attempts;
    /// one the receiver refuses (another 4xx) is not retried. Deliveries run beside the
    /// rotation and never hold it up.
    #[serde(default = "default_webhook_timeout")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub timeout: String,

    /// Which events are sent (default: all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub events: Vec<NotificationEvent>,
}

fn default_webhook_timeout() -> String {
    "5s".into()
}

/// A Secret key, in the object's namespace (ClusterStreamingToken: in `namespace`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// Namespace of the Secret: required for a ClusterStreamingToken, not allowed for a
    /// StreamingToken (whose Secret is in its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// A moment of a rotation a webhook is told about.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationEvent {
    /// A rotation started.
    RotationStarted,
    /// A person must act: `ReadyToRotate=True` (rotate at the platform, update the source
    /// Secret).
    NeedsAction,
    /// A rotation is blocked: only a person can clear what holds it up (`Stalled=True`).
    RotationBlocked,
    /// A rotation completed.
    RotationCompleted,
}

fn default_rollout_timeout() -> String {
    "10m".into()
}

/// How a rotation reaches consumers.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RotationStrategy {
    /// Repoint consumers to Token 2, verify the rollout, then deactivate Token 1.
    #[default]
    ZeroDowntime,
    /// Deactivate Token 1, then restart every consumer.
    Restart,
}

impl RotationStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZeroDowntime => "ZeroDowntime",
            Self::Restart => "Restart",
        }
    }
}

/// What happens to the mirror Secret when the StreamingToken is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the mirror Secret; consumers keep working.
    #[default]
    Retain,
    /// Delete the mirror Secret with the StreamingToken (through an owner reference).
    Delete,
}

/// Observed state, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamingTokenStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: the mirror Secret holds a valid pair. `Degraded`: something needs attention (the
    /// reason says what). `Rotating`: a rotation is in progress. `ReadyToRotate` (secretRef
    /// sources): every consumer uses Token 2, so Token 1 may be rotated at the platform.
    /// `DeletesSecretInUse`: `deletionPolicy: Delete` would delete a Secret in use. `Reconciling`
    /// and `Stalled` follow the kstatus convention (Flux, cli-utils): in progress, or waiting
    /// for a person. With `spec.platform`: `PlatformVerified` (True: the platform accepts the
    /// mirrored pair; False: it rejects a token; Unknown: it cannot be reached) and
    /// `CredentialsExpiring` (the platform credentials expire within 7 days, or have).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Name of the mirror Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// Identity of Token 1 (never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token1: Option<TokenIdentity>,

    /// Identity of Token 2 (never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token2: Option<TokenIdentity>,

    /// The consumers found for this StreamingToken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<ConsumerSummary>,

    /// The rotation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,

    /// The most recent completed rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<LastRotation>,

    /// The last `spec.rotation.trigger` value acted upon (started, or recorded at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_trigger: Option<String>,

    /// The last `streamingtoken.io/rotate` annotation value acted upon (a manual rotation
    /// request, as `streaming-token-operator rotate` makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_rotate_request: Option<String>,

    /// When the next periodic rotation is due (with `spec.rotation.interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<Time>,

    /// Where the maintenance windows stand (with `spec.rotation.windows`): open or closed, when
    /// the next one opens, and what waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindowStatus>,

    /// The webhook notifications of the current and the last rotation (with
    /// `spec.rotation.notifications`): what was sent, what waits to be retried, what could not
    /// be delivered. Kept here so that a restarted operator sends nothing twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub notifications: Vec<NotificationRecord>,

    /// What the platform said about the mirrored pair (with `spec.platform`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformStatus>,

    /// (ClusterStreamingToken) The namespace of the pair of record (the operator's, when the
    /// pair was first issued or mirrored). An operator running elsewhere writes nothing for this
    /// object (`HomeNamespaceChanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_namespace: Option<String>,

    /// (ClusterStreamingToken) How many namespaces hold a mirror Secret of the pair, including
    /// those it is leaving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_count: Option<i32>,

    /// (ClusterStreamingToken) Where each namespace stands (at most 200 listed, those that need
    /// attention first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub namespaces: Vec<NamespaceStatus>,
    /// (ClusterStreamingToken) Every namespace that holds this object's copy of the pair, or
    /// held one that pods there may still read (sorted, and never capped: `namespaces` lists
    /// at most 200). A namespace deleted while the operator was down, or whose copy someone
    /// replaced, is found from here, so its pods are still checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copied_namespaces: Vec<String>,

    /// Where each member cluster stands (`spec.clusters`, and those removed while their
    /// mirror Secret is still read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 40))]
    pub clusters: Vec<MemberStatus>,
}

/// Where one member cluster stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member's name.
    pub name: String,
    /// Its namespace that holds the mirror Secret and the consumers.
    pub namespace: String,
    /// The Secret with its kubeconfig (kept so that a member removed from `spec.clusters` is
    /// still reached until its mirror Secret can go).
    pub kubeconfig_secret_ref: KubeconfigSecretRef,
    /// `Synced`, `Pending`, `Unreachable` (its API server or credentials fail: rotations wait),
    /// `Leaving` (removed from `spec.clusters`), or a conflict (see `namespaces`).
    pub state: String,
    /// Labelled consumers there.
    pub consumers: i32,
    /// Consumers verified on the current rotation (during a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<i32>,
    /// When it entered its state (every pass reads the member afresh; `Unreachable` since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Details for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Where the maintenance windows stand.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindowStatus {
    /// `Open` (a rotation asked for now starts now) or `Closed`.
    pub state: String,
    /// (Open) When the window open now closes (overlapping windows count as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<Time>,
    /// When a window opens next (none: no window ever opens, see `problem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_opens_at: Option<Time>,
    /// What waits for the next window: `Trigger`, `Request` or `Interval` (a rotation asked for
    /// while every window was closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Why a window never opens (a schedule that is not a cron expression, an unknown time
    /// zone, a date that never occurs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One webhook notification.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// The rotation it is about (`status.rotation.id`).
    pub rotation: String,
    /// `RotationStarted`, `NeedsAction`, `RotationBlocked` or `RotationCompleted`.
    pub event: String,
    /// The reason that goes with it (the rotation's cause, the condition's reason).
    pub reason: String,
    /// The text sent.
    pub message: String,
    /// `Pending` (to be sent, or retried), `Sent` or `Undelivered` (given up).
    pub state: String,
    /// Delivery attempts made.
    pub attempts: i32,
    /// When it was recorded (the transition it tells of).
    pub recorded_at: Time,
    /// When the last attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<Time>,
    /// Why the last attempt failed (a status code, a timeout; never the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where one namespace of a ClusterStreamingToken stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// The namespace.
    pub name: String,
    /// `Synced`: its mirror Secret holds the pair. `Pending`: the mirror Secret is being
    /// written. `Leaving`: no longer selected (a revocation): its mirror Secret keeps the pair
    /// it had and never receives a later one; pods still reading it are reported (they lose
    /// access when its Token 1 is deactivated) and it is deleted once none reads it.
    /// `Retained`: no longer selected, the mirror kept as it is (`unselectedPolicy: Retain`).
    /// `Terminating`: the namespace is being deleted: nothing is written there, and its pods
    /// hold rotations while they may hold Token 1. `SecretNotOwned` / `SecretClaimedByOther`:
    /// a Secret of the mirror's name exists there and is not this ClusterStreamingToken's; it is
    /// left alone. `ConsumerLabelTaken`: a StreamingToken of the same name lives there and owns
    /// the consumer label; workloads there are not repointed or restarted.
    pub state: String,
    /// Labelled consumers in the namespace.
    pub consumers: i32,
    /// Consumers verified on the current rotation (during a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<i32>,
    /// What holds the rotation up in this namespace (at most 5 listed; the top-level
    /// `consumers.blocked` lists more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub blocked: Vec<BlockedConsumer>,
    /// Details for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A condition in the Kubernetes convention.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Degraded`, `Rotating` or `ReadyToRotate`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable PascalCase reason.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: Time,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Identity of one token: a serial number that increases with every token issued or mirrored
/// for this StreamingToken, and when it was first seen. Never the value or a hash of it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenIdentity {
    /// Serial number of the token.
    pub serial: i64,
    /// When the operator issued or first mirrored the token.
    pub issued_at: Time,
}

/// Consumer counts and the consumers that hold a rotation up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSummary {
    /// Labelled workloads found.
    pub total: i32,
    /// Consumers verified on the current rotation's pod template (during a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<i32>,
    /// What holds the rotation up, and why (at most 20 listed): labelled consumers, and any
    /// other workload or bare pod whose pods may still hold Token 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub blocked: Vec<BlockedConsumer>,
    /// Workloads and bare pods that read the mirror Secret without the consumer label
    /// (reason `UnlabelledReader`, at most 20 listed): rotations can neither repoint nor restart
    /// them. Reported at any time, so they are found before a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub unlabelled_readers: Vec<BlockedConsumer>,
}

/// A consumer a rotation started (repointed or restarted), and when.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStart {
    /// `Kind/name` (`namespace/Kind/name` for a ClusterStreamingToken).
    #[schemars(length(max = 400))]
    pub consumer: String,
    /// When this rotation first patched it.
    pub started_at: Time,
}

/// A workload (or bare pod) that holds a rotation up or needs attention.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockedConsumer {
    /// Namespace of the workload or pod (ClusterStreamingToken only; a StreamingToken's are all
    /// in its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, another owner's kind (`ReplicaSet`, `Job`, ...)
    /// or `Pod` for a pod that nothing owns.
    pub kind: String,
    /// Name of the workload or pod.
    pub name: String,
    /// Why it is blocked, in PascalCase (for example `Paused`).
    pub reason: String,
    /// Details for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The rotation in progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// Deterministic identifier of this rotation, stamped on consumers' pod templates.
    pub id: String,
    /// What asked for it: `Trigger`, `Request` (the `streamingtoken.io/rotate` annotation),
    /// `Interval` or `TokensReplaced`.
    pub cause: String,
    /// The trigger value (or the `streamingtoken.io/rotate` request) that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The strategy it runs with (fixed when it starts).
    pub strategy: RotationStrategy,
    /// `Repointing`, `AwaitingRollout`, `Deactivating`, `AwaitingSource` or `Restarting`.
    pub phase: String,
    /// When the rotation started.
    pub started_at: Time,
    /// When the current phase started.
    pub phase_started_at: Time,
    /// When the rotation started waiting for consumers to roll out (ZeroDowntime: when it
    /// started; Restart: when the restarts began). `spec.rotation.rolloutTimeout` counts from
    /// here, and phases flipping back and forth do not reset it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started_at: Option<Time>,
    /// When this rotation last started a consumer (repointed or restarted one). With a restart
    /// budget or waves, `spec.rotation.rolloutTimeout` counts from here (or from
    /// `rolloutStartedAt`, whichever is later), so a consumer started late is not timed from the
    /// start of the rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers_started_at: Option<Time>,
    /// (With a restart budget or waves) The consumers this rotation started and has not seen
    /// verified yet, each with when it was started: each holds a slot of
    /// `maxConcurrentConsumers` from its patch on, even before the workload watch shows its new
    /// template, and `spec.rotation.rolloutTimeout` counts from its own start (later waves do
    /// not extend it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub started: Vec<ConsumerStart>,
    /// Serial of the Token 1 this rotation deactivates.
    pub deactivates_serial: i64,
    /// A trigger that arrived during this rotation; it runs next (at most one is queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_trigger: Option<String>,
    /// A rotate request that arrived during this rotation; it runs next (with a queued trigger,
    /// one rotation serves both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_request: Option<String>,
    /// Where a rotation with a restart budget or waves stands (`spec.rotation.maxConcurrentConsumers`,
    /// the `streamingtoken.io/wave` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<WaveProgress>,
    /// (Restart) Consumers, as `Kind/name`, that this rotation does not restart: none of their
    /// pods may hold the deactivated token (they read Token 2 since before it was promoted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub left_alone: Vec<String>,
    /// (`spec.platform.rotate`) The rotate call this rotation made at the platform: recorded
    /// before the call, so that no crash, lost response or failover leads to a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_rotate: Option<PlatformRotateStatus>,
}

/// What the platform said about the mirrored pair.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// `Accepted`, `Rejected` or `Unknown` (the platform could not be reached): Token 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token1: Option<String>,
    /// The same for Token 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token2: Option<String>,
    /// When the platform credentials (`spec.platform.rotate`) expire, if they say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire_at: Option<Time>,
    /// When the platform rejected the mirrored Token 1 behind the operator's back, if it did
    /// (cleared once a pair the platform accepts is mirrored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_out_of_band_at: Option<Time>,
}

/// The rotate call of a rotation at the platform.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlatformRotateStatus {
    /// Attempts recorded (a new attempt is made only when the previous one certainly did not
    /// reach the platform: the connection could not be made, or the platform refused it with a
    /// 4xx status).
    pub attempts: i32,
    /// `Calling` (recorded before the call; found so by a later pass: the outcome is in doubt),
    /// `Rotated`, `NotSent`, `Refused` or `InDoubt`.
    pub state: String,
    /// When the state was recorded.
    pub at: Time,
    /// Details for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Progress of a rotation that rolls consumers in waves or under a budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    /// The wave rolling now: its `streamingtoken.io/wave` value, or `unlabelled`.
    pub current: String,
    /// Consumers rolling now: started by this rotation and not verified yet.
    pub rolling: i32,
    /// Consumers verified.
    pub verified: i32,
    /// Consumers not started yet.
    pub pending: i32,
    /// The budget in effect (consumers at once).
    pub max_concurrent: i32,
}

/// The most recent completed rotation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastRotation {
    /// Identifier of the rotation.
    pub id: String,
    /// The strategy it ran with.
    pub strategy: RotationStrategy,
    /// When it started.
    pub started_at: Time,
    /// When it completed.
    pub completed_at: Time,
    /// How long it took, in seconds.
    pub duration_seconds: i64,
}

impl StreamingToken {
    /// Name of the mirror Secret: `spec.secret.name`, or the StreamingToken's own name.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret
            .name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

/// On the Secrets of a ClusterStreamingToken
/// (its home Secret, its mirror Secret in every selected namespace, a labelled source Secret)
/// this label names the ClusterStreamingToken instead, so no StreamingToken can take them for its
/// own.
pub const CLUSTER_TOKEN_LABEL: &str = "streamingtoken.io/cluster-token";

/// One pair of streaming tokens for many namespaces: mirrored into a Secret of the same name in
/// every selected namespace and rotated once, verified across all of them.
// clippy reads the repeated `type_` of printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "streamingtoken.io",
    version = "v1alpha1",
    kind = "ClusterStreamingToken",
    plural = "clusterstreamingtokens",
    shortname = "cstok",
    category = "streaming",
    status = "StreamingTokenStatus",
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it is the value of the streamingtoken.io/token label on consumers"),
    doc = "One pair of streaming tokens mirrored into a Secret in many namespaces and rotated once, safely, across the consumers of all of them.",
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.rotation.strategy"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.namespaceCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.rotation.phase"),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].reason"
    ),
    printcolumn(
        name = "Consumers",
        type_ = "integer",
        json_path = ".status.consumers.total"
    ),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastRotation.completedAt"
    ),
    printcolumn(
        name = "Window",
        type_ = "string",
        json_path = ".status.maintenanceWindow.state",
        priority = 1
    ),
    printcolumn(
        name = "Next Window",
        type_ = "string",
        json_path = ".status.maintenanceWindow.nextOpensAt",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.source.platform) || (has(self.platform) && has(self.platform.rotate))").message("source.platform needs spec.platform with rotate (how to read and rotate the pair at the platform)"))]
#[x_kube(validation = Rule::new("!has(self.platform) || !has(self.platform.rotate) || has(self.source.platform)").message("spec.platform.rotate needs source.platform: the pair is then read from the platform"))]
#[x_kube(validation = Rule::new("!has(self.platform) || !has(self.source.generate)").message("generated tokens are unknown to the platform: with spec.platform use source.secretRef or source.platform"))]
#[x_kube(validation = Rule::new("!has(self.rotation) || !has(self.rotation.notifications) || has(self.rotation.notifications.webhook.urlSecretRef.namespace)").message("rotation.notifications.webhook.urlSecretRef.namespace is required for a ClusterStreamingToken: name the namespace of the webhook's Secret"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterStreamingTokenSpec {
    /// Where Token 1 and Token 2 come from. Exactly one of `generate` or `secretRef`.
    pub source: ClusterTokenSource,

    /// The mirror Secret written into every selected namespace (and kept, as the pair of record,
    /// in the operator's namespace). Immutable: consumers reference its name and keys.
    #[serde(default)]
    pub secret: MirrorSecret,

    /// The namespaces the pair is mirrored into: those matching `selector`, and those named in
    /// `names`.
    pub namespaces: NamespaceSelection,

    /// How consumers use the token. A consumer is a Deployment, StatefulSet, DaemonSet or Argo
    /// Rollouts Rollout in a selected namespace labelled `streamingtoken.io/token: <name of this ClusterStreamingToken>`
    /// (unless a StreamingToken of that name lives in the namespace: the label is then its).
    #[serde(default)]
    pub consumers: Consumers,

    /// When and how the pair is rotated: once, for every selected namespace.
    #[serde(default)]
    pub rotation: Rotation,

    /// Pauses the operator for this ClusterStreamingToken: nothing is written until it is set
    /// back to false.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to the mirror Secrets when this ClusterStreamingToken is deleted. `Retain`
    /// (the default) keeps them, so consumers keep working; `Delete` lets Kubernetes
    /// garbage-collect them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The streaming platform where the tokens are checked (and, with `rotate`, rotated); see
    /// the StreamingToken's `spec.platform`. Secrets it names live in the operator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
}

/// Where the pair of a ClusterStreamingToken comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.generate) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.platform) ? 1 : 0) == 1").message("exactly one of source.generate, source.secretRef or source.platform must be set"))]
pub struct ClusterTokenSource {
    /// The operator issues the tokens itself from the operating system's secure random source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSource>,

    /// A person or pipeline supplies Token 1 and Token 2 in a Secret of a namespace the platform
    /// team controls (by default the operator's). Label it
    /// `streamingtoken.io/cluster-token: <name>` so its changes are seen at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ClusterSecretRefSource>,

    /// The pair lives at the streaming platform (see `spec.platform.rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSource>,
}

/// A Secret, in a namespace of the platform team, that supplies the pair.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.token1Key != self.token2Key").message("secretRef.token1Key and secretRef.token2Key must differ"))]
pub struct ClusterSecretRefSource {
    /// Name of the source Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Namespace of the source Secret. Defaults to the operator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// Key of Token 1 in the source Secret.
    #[serde(default = "default_token1_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token1_key: String,

    /// Key of Token 2 in the source Secret.
    #[serde(default = "default_token2_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub token2_key: String,
}

/// Which namespaces a ClusterStreamingToken serves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) || (has(self.names) && self.names.size() > 0)").message("namespaces needs a selector or at least one name"))]
pub struct NamespaceSelection {
    /// Namespaces whose labels match (a standard label selector; `{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,

    /// Namespaces selected by name (whatever their labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 500),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub names: Vec<String>,

    /// Removing a namespace from the selection revokes it: its mirror Secret never receives a
    /// later pair, nothing there is repointed or restarted, and pods there still reading it
    /// are reported (they lose access when its Token 1 is deactivated) but never waited for.
    /// What then happens to that mirror Secret: `Delete` (the default): it is deleted once no
    /// pod there reads it (status `Leaving` until then; a consumer scaled to zero or a CronJob
    /// that still references it is named in a Warning first); `Retain`: it is kept as it is
    /// (status `Retained`). A namespace being deleted is not a revocation: its terminating
    /// pods are verified until they are gone (status `Terminating`).
    #[serde(default)]
    pub unselected_policy: UnselectedPolicy,
}

/// What happens to the mirror Secret of a namespace that is no longer selected.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnselectedPolicy {
    /// Delete it once no pod there reads it; verify that namespace until then.
    #[default]
    Delete,
    /// Keep it, no longer updated.
    Retain,
}

impl ClusterStreamingToken {
    /// Name of the mirror Secret: `spec.secret.name`, or the ClusterStreamingToken's own name.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret
            .name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The parts of the spec the shared rotation logic reads, as a StreamingToken spec (the
    /// source Secret's namespace is kept apart: see [`Self::source_namespace`]).
    pub fn common_spec(&self) -> StreamingTokenSpec {
        let spec = &self.spec;
        StreamingTokenSpec {
            source: TokenSource {
                generate: spec.source.generate.clone(),
                secret_ref: spec
                    .source
                    .secret_ref
                    .as_ref()
                    .map(|reference| SecretRefSource {
                        name: reference.name.clone(),
                        token1_key: reference.token1_key.clone(),
                        token2_key: reference.token2_key.clone(),
                    }),
                platform: spec.source.platform.clone(),
            },
            secret: spec.secret.clone(),
            consumers: spec.consumers.clone(),
            rotation: spec.rotation.clone(),
            suspend: spec.suspend,
            deletion_policy: spec.deletion_policy,
            platform: spec.platform.clone(),
            clusters: Vec::new(),
        }
    }

    /// Namespace of a `secretRef` source Secret (`home` when unset).
    pub fn source_namespace(&self, home: &str) -> String {
        self.spec
            .source
            .secret_ref
            .as_ref()
            .and_then(|reference| reference.namespace.clone())
            .unwrap_or_else(|| home.to_string())
    }
}

/// The status both kinds share.
pub trait HasTokenStatus {
    fn token_status(&self) -> Option<&StreamingTokenStatus>;
}

impl HasTokenStatus for StreamingToken {
    fn token_status(&self) -> Option<&StreamingTokenStatus> {
        self.status.as_ref()
    }
}

impl HasTokenStatus for ClusterStreamingToken {
    fn token_status(&self) -> Option<&StreamingTokenStatus> {
        self.status.as_ref()
    }
}

/// Parses the Go-style durations the schema admits (`720h`, `1h30m`, `45s`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for character in text.chars() {
        if let Some(digit) = character.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(digit))?,
            );
            continue;
        }
        let unit = match character {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if number.is_some() || text.is_empty() {
        return None;
    }
    Some(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("720h", Some(720 * 3600)),
            ("1h30m", Some(5400)),
            ("45s", Some(45)),
            ("10m", Some(600)),
            ("", None),
            ("10", None),
            ("5d", None),
            ("h", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).map(|d| d.as_secs()), want, "{text:?}");
        }
    }

    #[test]
    fn committed_crd_matches_the_rust_types() {
        let generated = crate::crd_yaml();
        let committed = include_str!("../crds/streamingtokens.streamingtoken.io.yaml");
        assert!(
            generated == committed,
            "crds/streamingtokens.streamingtoken.io.yaml is out of date with src/api.rs; regenerate it with `make crds`"
        );
        let generated = crate::cluster_crd_yaml();
        let committed = include_str!("../crds/clusterstreamingtokens.streamingtoken.io.yaml");
        assert!(
            generated == committed,
            "crds/clusterstreamingtokens.streamingtoken.io.yaml is out of date with src/api.rs; regenerate it with `make crds`"
        );
    }

    #[test]
    fn crd_carries_the_cel_rules_and_printer_columns() {
        let crd = serde_json::to_string(&StreamingToken::crd()).expect("crd serializes");
        for needle in [
            "(has(self.generate) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.platform) ? 1 : 0) == 1",
            "!has(self.source.platform) || (has(self.platform) && has(self.platform.rotate))",
            "self.token1Key != self.token2Key",
            "duration(self.interval) >= duration('1h')",
            "Last Rotation",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
