//! Member clusters (`spec.clusters`): the hub reaches each member's API server with a kubeconfig
//! kept in a Secret of the StreamingToken's namespace, and reads the member afresh on every
//! pass (its mirror Secret, its labelled consumers, its pods: consistent lists, no watch that
//! could lag). Each member's namespace becomes one more [`NamespaceView`], named
//! `<cluster>/<namespace>`, decided on by the same rules as this cluster's; a member that cannot
//! be read becomes [`CopyObservation::Unreachable`] and holds every rotation.
//!
//! Writes to a member (its copy, its consumers, evictions, fresh pod lists) go through
//! [`route`], which finds the client this pass built.

use super::*;
use crate::api::{KubeconfigSecretRef, MemberCluster};
use crate::decide::Membership;
use crate::model::consumer::ConsumerObservation;
use crate::model::member;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long a member's API server gets to accept a connection, and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// (hub namespace, StreamingToken name, member name).
type MemberKey = (String, String, String);

/// Member clients, by (hub namespace, StreamingToken name, member name), each with the
/// kubeconfig Secret's resourceVersion it was built from (rebuilt when the Secret changes).
#[derive(Default)]
pub struct MemberClients {
    entries: Mutex<HashMap<MemberKey, (String, Client)>>,
}

impl MemberClients {
    fn get(&self, key: &MemberKey, version: &str) -> Option<Client> {
        lock(&self.entries)
            .get(key)
            .filter(|(built_from, _)| built_from == version)
            .map(|(_, client)| client.clone())
    }

    fn put(&self, key: MemberKey, version: String, client: Client) {
        lock(&self.entries).insert(key, (version, client));
    }

    fn find(&self, key: &MemberKey) -> Option<Client> {
        lock(&self.entries)
            .get(key)
            .map(|(_, client)| client.clone())
    }
}

/// The client and the namespace there for a view's `namespace` (`<cluster>/<namespace>` for a
/// member's, built by this pass's [`member_views`]; this cluster's client otherwise).
pub(super) fn route(
    target: &Target,
    context: &Context,
    namespace: &str,
) -> Result<(Client, String), Error> {
    match member::split(namespace) {
        (None, local) => Ok((context.client.clone(), local.to_string())),
        (Some(cluster), local) => {
            let (hub_namespace, name) = target.key();
            context
                .members
                .find(&(hub_namespace, name, cluster.to_string()))
                .map(|client| (client, local.to_string()))
                .ok_or_else(|| Error::MemberUnreachable {
                    cluster: cluster.to_string(),
                    message: "no client built for it in this pass".into(),
                })
        }
    }
}

/// One member to read: from `spec.clusters` (selected) or only from status (removed, revoked).
struct Member {
    name: String,
    namespace: String,
    credentials: KubeconfigSecretRef,
    membership: Membership,
}

/// The members of `target`: those of `spec.clusters`, then those status still lists that were
/// removed from it (revoked until their copy can go).
fn members(target: &Target) -> Vec<Member> {
    let spec = target.spec();
    let home = target.key().0;
    let mut members: Vec<Member> = spec
        .clusters
        .iter()
        .map(|cluster: &MemberCluster| Member {
            name: cluster.name.clone(),
            namespace: cluster.namespace.clone().unwrap_or_else(|| home.clone()),
            credentials: cluster.kubeconfig_secret_ref.clone(),
            membership: Membership::Selected,
        })
        .collect();
    if let Some(status) = target.status() {
        for known in &status.clusters {
            if !members.iter().any(|member| member.name == known.name) {
                members.push(Member {
                    name: known.name.clone(),
                    namespace: known.namespace.clone(),
                    credentials: known.kubeconfig_secret_ref.clone(),
                    membership: Membership::Revoked,
                });
            }
        }
    }
    members
}

/// Every member's namespace, read afresh (a few members at once).
pub(super) async fn member_views(
    target: &Target,
    context: &Context,
    now: &Time,
) -> Vec<NamespaceView> {
    let reads: Vec<_> = members(target)
        .into_iter()
        .map(|member| read_member(target, context, member, now))
        .collect();
    futures::stream::iter(reads)
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One member's view; `None` for a removed member whose credentials are gone (it is forgotten:
/// nothing can be done there any more).
async fn read_member(
    target: &Target,
    context: &Context,
    member: Member,
    now: &Time,
) -> Option<NamespaceView> {
    let qualified = member::qualified(&member.name, &member.namespace);
    let mut view = NamespaceView {
        namespace: qualified,
        copy: CopyObservation::Missing,
        membership: member.membership,
        foreign_since: None,
        label_taken: false,
        consumers: Vec::new(),
        pods: Vec::new(),
        referencing: Vec::new(),
    };
    let client = match client(target, context, &member).await {
        Ok(client) => client,
        Err(Unreached::CredentialsGone(_)) if member.membership == Membership::Revoked => {
            return None;
        }
        Err(unreached) => {
            view.copy = CopyObservation::Unreachable(unreached.to_string());
            return Some(view);
        }
    };
    if let Err(why) = fill_member(target, &client, &member, &mut view, now).await {
        warn!(namespace = %target.key().0, name = %target.name(), cluster = %member.name, error = %why, "member cluster not read");
        view.copy = CopyObservation::Unreachable(why);
        view.consumers.clear();
        view.pods.clear();
        view.referencing.clear();
        return Some(view);
    }
    // A member removed from spec.clusters whose copy is gone and that no pod reads any more
    // is done with (as a namespace that left).
    let secret = target.secret_name();
    let read = view.pods.iter().any(|pod| {
        pod.references
            .iter()
            .any(|reference| reference.secret == secret)
    });
    let done = member.membership == Membership::Revoked
        && matches!(view.copy, CopyObservation::Missing)
        && !read;
    (!done).then_some(view)
}

/// Reads a member's copy, consumers and pods into `view`; why it could not, if so.
async fn fill_member(
    target: &Target,
    client: &Client,
    member: &Member,
    view: &mut NamespaceView,
    now: &Time,
) -> Result<(), String> {
    let unreached = |what: &str, error: &kube::Error| {
        format!(
            "its API server did not answer {what}: {}",
            crate::error::api_summary(error)
        )
    };
    let secret_name = target.secret_name();
    let secret = Api::<Secret>::namespaced(client.clone(), &member.namespace)
        .get_opt(&secret_name)
        .await
        .map_err(|error| unreached("the mirror Secret's read", &error))?;
    (view.copy, view.foreign_since) = match secret {
        None => (CopyObservation::Missing, None),
        Some(secret) => {
            let created = secret
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0.as_second());
            match classify_mirror(target, &secret) {
                MirrorObservation::Owned(observed) => (CopyObservation::Read(observed), None),
                MirrorObservation::NotOwned => (CopyObservation::NotOwned, created),
                MirrorObservation::ClaimedBy(other) => (CopyObservation::ClaimedBy(other), created),
                MirrorObservation::Missing => (CopyObservation::Missing, None),
            }
        }
    };
    // Every labelled workload: those naming this token in `streamingtoken.io/tokens` are
    // labelled with another's name.
    let selector = TOKEN_LABEL.to_string();
    let spec = target.spec();
    let writer = writer_of(target);
    let mut consumers: Vec<ConsumerObservation> = Vec::new();
    for kind in workload::every() {
        let listed = kind
            .list(client, &member.namespace, &selector)
            .await
            .map_err(|error| {
                unreached(&format!("the list of {}s", kind.kind().as_str()), &error)
            })?;
        let name = target.name();
        consumers.extend(
            listed
                .iter()
                .filter(|workload| workload.reads(&name))
                .map(|workload| {
                    let mut consumer =
                        workload.observe(&spec.consumers.env_var, &secret_name, &writer);
                    consumer.namespace = view.namespace.clone();
                    consumer
                }),
        );
    }
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    fill_consumers(target, view, consumers);
    let pods = pods::list_fresh(client, &member.namespace)
        .await
        .map_err(|error| unreached("the list of pods", &error))?;
    set_pods(target, view, pods.into_iter().map(Arc::new).collect(), now);
    Ok(())
}

/// Why a member's client could not be built.
#[derive(Debug, thiserror::Error)]
enum Unreached {
    #[error("its kubeconfig Secret {0} does not exist")]
    CredentialsGone(String),
    #[error("its kubeconfig Secret {secret} cannot be used: {why}")]
    Credentials { secret: String, why: String },
    #[error("reading its kubeconfig Secret {secret}: {why}")]
    Read { secret: String, why: String },
}

/// The member's client: the one built from the kubeconfig Secret's current version, or a new one.
async fn client(target: &Target, context: &Context, member: &Member) -> Result<Client, Unreached> {
    let (hub_namespace, name) = target.key();
    let secret_name = member.credentials.name.clone();
    let secret = Api::<Secret>::namespaced(context.client.clone(), &hub_namespace)
        .get_opt(&secret_name)
        .await
        .map_err(|error| Unreached::Read {
            secret: secret_name.clone(),
            why: crate::error::api_summary(&error),
        })?
        .ok_or_else(|| Unreached::CredentialsGone(secret_name.clone()))?;
    let key = (hub_namespace, name, member.name.clone());
    let version = secret.resource_version().unwrap_or_default();
    if let Some(client) = context.members.get(&key, &version) {
        return Ok(client);
    }
    let refused = |why: String| Unreached::Credentials {
        secret: secret_name.clone(),
        why,
    };
    let text = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&member.credentials.key))
        .ok_or_else(|| refused(format!("it has no key {}", member.credentials.key)))?;
    let text = std::str::from_utf8(&text.0).map_err(|_| refused("it is not text".into()))?;
    let client = build_client(text).await.map_err(refused)?;
    context.members.put(key, version, client.clone());
    Ok(client)
}

/// A client from kubeconfig `text`: only what the kubeconfig itself holds (server, CA,
/// token or client certificate). Whatever would make the operator read its own files or run a
/// command (`exec`, `auth-provider`, file paths) is refused: a kubeconfig Secret must not be a
/// way to borrow the operator's identity.
async fn build_client(text: &str) -> Result<Client, String> {
    let kubeconfig =
        Kubeconfig::from_yaml(text).map_err(|_| "it is not a kubeconfig".to_string())?;
    for auth in kubeconfig
        .auth_infos
        .iter()
        .filter_map(|named| named.auth_info.as_ref())
    {
        if auth.exec.is_some() || auth.auth_provider.is_some() {
            return Err("exec and auth-provider credentials are not allowed: give a token or a client certificate".into());
        }
        if auth.token_file.is_some()
            || auth.client_certificate.is_some()
            || auth.client_key.is_some()
        {
            return Err("credentials read from files are not allowed: put the token or certificate in the kubeconfig".into());
        }
    }
    if kubeconfig
        .clusters
        .iter()
        .filter_map(|named| named.cluster.as_ref())
        .any(|cluster| cluster.certificate_authority.is_some())
    {
        return Err(
            "a certificate-authority file is not allowed: use certificate-authority-data".into(),
        );
    }
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|error| format!("it is not usable: {error}"))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(READ_TIMEOUT);
    Client::try_from(config).map_err(|error| format!("no client could be built: {error}"))
}
