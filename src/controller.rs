//! Watches and the reconcile driver: observe -> decide ([`crate::decide`]) -> apply.
//!
//! Watches are narrow: StreamingTokens in full; Secrets and consumer workloads only when they
//! carry the `streamingtoken.io/token` label, with managedFields stripped before caching. Secrets
//! are watched by metadata only, to wake the right StreamingToken; the reconcile reads the (few)
//! Secrets it needs directly, so no Secret data is ever cached. Pods are watched in the served
//! namespaces but kept only as compact records of the Secrets they reference ([`crate::pods`]):
//! any pod may read a mirror Secret, labelled or not, and none is kept whole.

use crate::api::{
    CLUSTER_TOKEN_LABEL, ClusterStreamingToken, MANAGED_BY_LABEL, MANAGER_NAME, StreamingToken,
    TOKEN_LABEL, UnselectedPolicy,
};
use crate::apply;
use crate::decide::{
    self, CopyObservation, MirrorObservation, NamespaceView, ObservedMirror, Plan,
    PlatformObservation, Requeue, Snapshot, SourceObservation, SourceProblem,
};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::consumer::{ConsumerObservation, PodObservation};
use crate::model::pod::PodRecord;
use crate::model::reason;
use crate::platform::{Platform, RotateOutcome};
use crate::pods::{self, PodCache};
use crate::source;
use crate::target::Target;
use crate::token::Token;
use crate::workload::{self, cache::WorkloadCache};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Which namespaces the operator serves.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    /// The one namespace served, or `None` for every namespace.
    fn namespace(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Namespace(namespace) => Some(namespace),
        }
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Self::All => Api::all(client.clone()),
            Self::Namespace(namespace) => Api::namespaced(client.clone(), namespace),
        }
    }
}

/// What one controller serves besides its scope.
#[derive(Debug, Clone)]
pub struct Serve {
    /// StreamingTokens of the scope.
    pub namespaced: bool,
    /// ClusterStreamingTokens (needs every namespace in scope).
    pub cluster: bool,
    /// Only the ClusterStreamingTokens with these labels.
    pub cluster_token_selector: Option<String>,
    /// Where ClusterStreamingTokens keep their pair of record (the operator's namespace).
    pub home_namespace: String,
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub reporter: Reporter,
    /// Labelled consumer workloads, in compact form.
    pub workloads: Arc<WorkloadCache>,
    /// Pods that reference a Secret or carry the token label, in compact form.
    pub pods: Arc<PodCache>,
    pub metrics: Arc<Metrics>,
    /// True while this replica holds the leader lease; only the leader writes.
    pub leader: watch::Receiver<bool>,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Platform clients by object uid (with the spec they were built from, and when).
    platforms: Mutex<HashMap<String, PlatformEntry>>,
    /// Rotate calls made whose outcome could not be recorded in status, by object uid.
    unrecorded_calls: Mutex<HashMap<String, (i32, String, String)>>,
    halt_after: Option<String>,
    /// True once every cache has its first full list: before that, an empty consumer cache
    /// would look like "no consumers" and let a rotation deactivate Token 1 at once.
    synced: watch::Receiver<bool>,
    /// StreamingTokens: whether one owns a namespace's consumer label.
    tokens: Store<StreamingToken>,
    /// False when this instance leaves StreamingTokens to another (`--kinds`).
    serve_namespaced: bool,
    /// What ClusterStreamingTokens need (only when every namespace is served).
    cluster: Option<ClusterContext>,
}

/// What ClusterStreamingTokens need besides the shared caches.
struct ClusterContext {
    /// Where they keep their pair of record: the operator's namespace.
    home_namespace: String,
    /// Namespaces (metadata): what their selectors match.
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Their mirror Secrets (metadata), to find those in namespaces no longer selected.
    copies: Store<PartialObjectMeta<Secret>>,
    /// Copies last read holding the pair of record: `(token, namespace)` -> (the copy's
    /// resourceVersion, the pair of record's, when the copy's values were written). While both
    /// resourceVersions stay the same the copy is not read again, except for a decision that
    /// deactivates Token 1, which reads every copy afresh.
    in_sync: Mutex<HashMap<(String, String), InSync>>,
}

/// A platform client and what it was built from.
struct PlatformEntry {
    spec: String,
    built: Instant,
    client: Arc<Platform>,
}

/// A platform client is rebuilt this often, so that a changed Secret it reads (the PAT, a
/// header) is taken up.
const PLATFORM_CLIENT_TTL: Duration = Duration::from_secs(60);

/// A copy last read holding the pair of record.
struct InSync {
    copy_version: String,
    record_version: String,
    values_written_at: Option<i64>,
}

fn token_ref(
    labels: &std::collections::BTreeMap<String, String>,
    namespace: Option<String>,
) -> Option<ObjectRef<StreamingToken>> {
    let name = labels.get(TOKEN_LABEL)?;
    let namespace = namespace?;
    Some(ObjectRef::new(name).within(&namespace))
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Waits until `store` has its first full list. Polls again every half second: the store's
/// readiness signal wakes only one waiter, and the controller waits on it too.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
}

/// Runs the controllers until `shutdown` resolves: StreamingTokens in `scope`, and (when every
/// namespace is served) ClusterStreamingTokens, whose pair of record lives in `home_namespace`.
/// `ready` is set once every cache has synced.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    scope: Scope,
    serve: Serve,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let labelled = |label: &str| watcher::Config::default().labels(label).any_semantic();
    let mut serves_cluster = serve.cluster && matches!(scope, Scope::All);
    if serves_cluster {
        // Without the ClusterStreamingToken CRD (or the RBAC for it and for namespaces) its
        // caches would never sync, and StreamingTokens would wait with them: serve those alone.
        let probe = kube::api::ListParams::default().limit(1);
        let missing = match Api::<ClusterStreamingToken>::all(client.clone())
            .list_metadata(&probe)
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 403 => {
                Some(format!("ClusterStreamingTokens: {}", status.code))
            }
            _ => match Api::<Namespace>::all(client.clone())
                .list_metadata(&probe)
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    Some(format!("namespaces: {}", status.code))
                }
                _ => None,
            },
        };
        if let Some(missing) = missing {
            warn!(%missing, "the ClusterStreamingToken CRD is not installed, or RBAC does not allow serving it: serving StreamingTokens only (install crds/ and the chart's ClusterRole, then restart)");
            serves_cluster = false;
        }
    }
    let home_namespace = serve.home_namespace.clone();
    // The StreamingTokens are cached in full (their annotations stay; there are few of them).
    let (tokens, token_stream) = reflect(
        scope.api::<StreamingToken>(&client),
        watcher::Config::default().any_semantic(),
    );
    // A deleted StreamingToken is never reconciled again: drop its per-object metrics here (the
    // store has already forgotten it when its deletion passes by).
    let token_stream = {
        let store = tokens.clone();
        let metrics = metrics.clone();
        token_stream.inspect(move |result| {
            if let Ok(token) = result
                && store.get(&ObjectRef::from_obj(token)).is_none()
            {
                metrics.forget(&token.namespace().unwrap_or_default(), &token.name_any());
            }
        })
    };
    // ClusterStreamingTokens are woken by the same watches: every change a watch sees is also
    // offered to them through this channel.
    let mut cluster_config = watcher::Config::default().any_semantic();
    if let Some(selector) = &serve.cluster_token_selector {
        cluster_config = cluster_config.labels(selector);
    }
    let (cluster_tokens, cluster_stream) = reflect(
        Api::<ClusterStreamingToken>::all(client.clone()),
        cluster_config,
    );
    let (wake, woken) = futures::channel::mpsc::unbounded::<ObjectRef<ClusterStreamingToken>>();
    let wake_named = {
        let store = cluster_tokens.clone();
        let wake = wake.clone();
        move |labels: &std::collections::BTreeMap<String, String>| {
            for key in [TOKEN_LABEL, CLUSTER_TOKEN_LABEL] {
                if let Some(name) = labels.get(key) {
                    let reference = ObjectRef::new(name);
                    if store.get(&reference).is_some() {
                        let _ = wake.unbounded_send(reference);
                    }
                }
            }
        }
    };
    let workloads = Arc::new(WorkloadCache::default());
    let workload_stream = workload::watch_every(&client, scope.namespace(), &workloads).await;
    let secrets = watcher(
        scope.api::<PartialObjectMeta<Secret>>(&client),
        labelled(TOKEN_LABEL),
    )
    .default_backoff()
    .touched_objects();
    let pod_records = Arc::new(PodCache::default());
    let pod_changes = pods::watch(scope.api::<Pod>(&client), pod_records.clone());

    let cluster = serves_cluster.then(|| {
        let (namespaces, namespace_stream) = reflect(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        );
        let (copies, copy_stream) = reflect(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            labelled(CLUSTER_TOKEN_LABEL),
        );
        (
            ClusterContext {
                home_namespace: home_namespace.clone(),
                namespaces,
                copies,
                in_sync: Mutex::default(),
            },
            namespace_stream,
            copy_stream,
        )
    });

    let context = Arc::new(Context {
        client: client.clone(),
        reporter,
        workloads: workloads.clone(),
        pods: pod_records.clone(),
        metrics,
        leader: leader.clone(),
        failures: Mutex::new(HashMap::new()),
        platforms: Mutex::new(HashMap::new()),
        unrecorded_calls: Mutex::new(HashMap::new()),
        // The crash-safety tests' halt hook exists only in builds with the `e2e` feature (the
        // ones `make test` runs); a release build ignores the variable.
        halt_after: if cfg!(feature = "e2e") {
            std::env::var("STREAMING_TOKEN_OPERATOR_HALT_AFTER").ok()
        } else {
            None
        },
        synced: ready.subscribe(),
        tokens: tokens.clone(),
        serve_namespaced: serve.namespaced,
        cluster: cluster.as_ref().map(|(cluster, _, _)| ClusterContext {
            home_namespace: cluster.home_namespace.clone(),
            namespaces: cluster.namespaces.clone(),
            copies: cluster.copies.clone(),
            in_sync: Mutex::default(),
        }),
    });

    {
        let token_store = tokens.clone();
        let cluster_store = cluster_tokens.clone();
        let stores = cluster
            .as_ref()
            .map(|(cluster, _, _)| (cluster.namespaces.clone(), cluster.copies.clone()));
        tokio::spawn(async move {
            let mut synced = synced(&token_store).await;
            if let Some((namespaces, copies)) = stores {
                synced = synced
                    && self::synced(&cluster_store).await
                    && self::synced(&namespaces).await
                    && self::synced(&copies).await;
            }
            while !workloads.ready() || !pod_records.ready() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if synced {
                info!("caches synced");
                let _ = ready.send(true);
            }
        });
    }

    // A replica that becomes leader re-reconciles everything: it skipped work while standby.
    let became_leader = || {
        futures::stream::unfold(leader.clone(), |mut receiver| async move {
            loop {
                receiver.changed().await.ok()?;
                if *receiver.borrow_and_update() {
                    return Some(((), receiver));
                }
            }
        })
    };
    let shutdown = futures::FutureExt::shared(shutdown);
    let config = || {
        kube::runtime::controller::Config::default()
            .concurrency(16)
            .debounce(Duration::from_millis(50))
    };

    let namespaced = {
        let wake_named = wake_named.clone();
        let wake_pods = wake.clone();
        let cluster_store = cluster_tokens.clone();
        let token_store = tokens.clone();
        let offer_workloads = wake_named.clone();
        let pods = pod_changes
            .map(move |touched| {
                if serves_cluster {
                    for reference in pods::concerned_cluster(&cluster_store, &touched) {
                        let _ = wake_pods.unbounded_send(reference);
                    }
                }
                futures::stream::iter(pods::concerned(&token_store, &touched))
            })
            .flatten();
        Controller::for_stream(token_stream, tokens)
            .with_config(config())
            .watches_stream(secrets, |secret| {
                token_ref(secret.labels(), secret.namespace())
            })
            .reconcile_on(pods)
            .reconcile_on(workload_stream.filter_map(move |touched| {
                offer_workloads(&touched.labels);
                futures::future::ready(token_ref(&touched.labels, Some(touched.namespace)))
            }))
            .reconcile_all_on(became_leader())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                reconcile_namespaced,
                error_policy_namespaced,
                context.clone(),
            )
            .for_each(|result| async move {
                if let Err(error) = result {
                    debug!(error = %error, "controller event");
                }
            })
    };

    let Some((_, namespace_stream, copy_stream)) = cluster else {
        drop(wake);
        namespaced.await;
        return;
    };
    // Any namespace change (created, relabelled, deleted) may change what a selector matches.
    let every_cluster_token = {
        let store = cluster_tokens.clone();
        move || {
            store
                .state()
                .iter()
                .map(|token| ObjectRef::from_obj(token.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let namespace_changes = namespace_stream
        .filter_map(move |result| {
            futures::future::ready(
                result
                    .ok()
                    .map(|_| futures::stream::iter(every_cluster_token())),
            )
        })
        .flatten();
    let copy_changes = {
        let wake_named = wake_named.clone();
        copy_stream.filter_map(move |result| {
            if let Ok(secret) = &result {
                wake_named(secret.labels());
            }
            futures::future::ready(None::<ObjectRef<ClusterStreamingToken>>)
        })
    };
    let cluster_stream = {
        let metrics = context.metrics.clone();
        let store = cluster_tokens.clone();
        cluster_stream.inspect(move |result| {
            if let Ok(token) = result
                && store.get(&ObjectRef::from_obj(token)).is_none()
            {
                metrics.forget("", &token.name_any());
            }
        })
    };
    drop(wake);
    let clustered = Controller::for_stream(cluster_stream, cluster_tokens)
        .with_config(config())
        .reconcile_on(woken)
        .reconcile_on(namespace_changes)
        .reconcile_on(copy_changes)
        .reconcile_all_on(became_leader())
        .graceful_shutdown_on(shutdown)
        .run(reconcile_cluster, error_policy_cluster, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error, "controller event");
            }
        });
    futures::future::join(namespaced, clustered).await;
}

async fn reconcile_namespaced(
    token: Arc<StreamingToken>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    if !context.serve_namespaced {
        // Another instance serves them; this one only keeps the watches that wake its
        // ClusterStreamingTokens.
        return Ok(Action::await_change());
    }
    reconcile(Target::Namespaced(token), context).await
}

async fn reconcile_cluster(
    token: Arc<ClusterStreamingToken>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    reconcile(Target::Cluster(token), context).await
}

fn error_policy_namespaced(
    token: Arc<StreamingToken>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    error_policy(&Target::Namespaced(token), error, &context)
}

fn error_policy_cluster(
    token: Arc<ClusterStreamingToken>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    error_policy(&Target::Cluster(token), error, &context)
}

/// Whole seconds: Kubernetes serializes times to the second, and a status compared with its
/// stored copy must not differ by a fraction of a second (that would write on every reconcile).
fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

async fn reconcile(target: Target, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let (namespace, name) = target.key();
    if target.deleting() {
        return Ok(Action::await_change());
    }
    if !*context.leader.borrow() {
        // A standby keeps its caches warm and writes nothing.
        return Ok(Action::await_change());
    }
    if !*context.synced.borrow() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let now = now();
    let mut snapshot = observe(&target, &context, &now, false).await?;
    let mut plan = decide::plan(&snapshot, &now);
    if plan.deactivates {
        // The decision that deactivates Token 1 is taken again on every Secret read afresh and
        // on pods read afresh from the API server (a consistent list per namespace), so no watch
        // lag can hide a pod that may still hold it, nor a copy that changed.
        if target.kind() == decide::TokenKind::Cluster {
            snapshot = observe(&target, &context, &now, true).await?;
        }
        for view in &mut snapshot.namespaces {
            let fresh = pods::list_fresh(&context.client, &view.namespace)
                .await
                .map_err(|source| Error::ListPods {
                    namespace: view.namespace.clone(),
                    source,
                })?;
            with_pods(view, fresh.into_iter().map(Arc::new).collect(), &now);
        }
        plan = decide::plan(&snapshot, &now);
        debug!(%namespace, %name, still_deactivates = plan.deactivates, "deactivation re-decided on a fresh pod list");
    }
    remember_copies_in_sync(&target, &context, &snapshot);
    if let Some(next) = next_platform_check(&target, &context, &snapshot) {
        plan.requeue = match plan.requeue {
            Requeue::After(after) if after <= next => Requeue::After(after),
            _ => Requeue::After(next),
        };
    }
    let result = execute(&target, &context, &snapshot, plan).await;
    context.metrics.observe_reconcile(
        &namespace,
        &name,
        started.elapsed(),
        result.as_ref().err().map(Error::reason),
    );
    result
}

async fn execute(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    mut plan: Plan,
) -> Result<Action, Error> {
    let (namespace, name) = target.key();
    if let Err(error) = write(target, context, snapshot, &mut plan).await {
        if matches!(error, Error::NotLeader) {
            // The new leader reconciles everything; this replica waits to lead again.
            info!(%namespace, %name, "stopped leading mid-reconcile; writes stopped");
            return Ok(Action::await_change());
        }
        report_write_failure(target, context, &error).await;
        return Err(error);
    }
    for notice in &plan.events {
        info!(%namespace, %name, reason = notice.reason, message = %notice.message, "event");
        apply::event(
            &context.client,
            &context.reporter,
            &target.object_ref(),
            notice,
        )
        .await;
    }
    // A ClusterStreamingToken's Events are repeated on its mirror Secret in the namespaces they
    // concern, where that namespace's people look (and only what concerns them).
    let copies = copy_notices(snapshot, &plan);
    futures::stream::iter(copies)
        .for_each_concurrent(8, |(copy, notice)| async move {
            apply::event(&context.client, &context.reporter, &copy, &notice).await;
        })
        .await;
    context.metrics.observe_status(
        &namespace,
        &name,
        target.status(),
        &plan.status,
        &plan.events,
    );

    let key = (namespace.clone(), name.clone());
    let mut failures = context
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match plan.failed {
        Some(reason) => {
            context.metrics.observe_problem(reason);
            *failures.entry(key).or_insert(0) += 1;
            warn!(%namespace, %name, reason, "needs attention");
        }
        None => {
            failures.remove(&key);
        }
    }
    Ok(match plan.requeue {
        Requeue::Never => Action::await_change(),
        Requeue::After(after) => Action::requeue(after),
    })
}

/// Events of a ClusterStreamingToken's plan as they are repeated on its mirror Secrets: those
/// about the pair and the rotation on every copy; those about a namespace on its copy only;
/// blocked consumers on the copy of their own namespace. Never another namespace's workloads.
fn copy_notices(snapshot: &Snapshot, plan: &Plan) -> Vec<(ObjectReference, decide::Notice)> {
    const ABOUT_THE_PAIR: &[&str] = &[
        reason::TOKENS_ISSUED,
        reason::TOKENS_MIRRORED,
        reason::SOURCE_PROMOTED,
        reason::SOURCE_PROMOTED_EARLY,
        reason::SOURCE_REPLACED,
        reason::ROTATION_STARTED,
        reason::ROTATION_QUEUED,
        reason::ROTATION_ABORTED,
        reason::ROTATION_COMPLETED,
        reason::TOKEN_DEACTIVATED,
        reason::MIRROR_LOST_DURING_ROTATION,
    ];
    if snapshot.kind != decide::TokenKind::Cluster {
        return Vec::new();
    }
    let copy = |namespace: &str| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.to_string()),
        name: Some(snapshot.secret_name.clone()),
        ..ObjectReference::default()
    };
    let served: Vec<&str> = snapshot
        .namespaces
        .iter()
        .filter(|view| !matches!(view.copy, CopyObservation::Home) && view.serves_pair())
        .filter(|view| !plan.copy_deletes.contains(&view.namespace))
        .map(|view| view.namespace.as_str())
        .collect();
    let mut notices = Vec::new();
    for notice in &plan.events {
        if ABOUT_THE_PAIR.contains(&notice.reason) {
            notices.extend(
                served
                    .iter()
                    .map(|namespace| (copy(namespace), notice.clone())),
            );
        } else if let Some(namespace) = &notice.namespace {
            if served.contains(&namespace.as_str()) {
                notices.push((copy(namespace), notice.clone()));
            }
        } else if notice.reason == reason::CONSUMER_BLOCKED {
            for entry in &plan.status.namespaces {
                if entry.blocked.is_empty() || !served.contains(&entry.name.as_str()) {
                    continue;
                }
                let list: Vec<String> = entry
                    .blocked
                    .iter()
                    .map(|blocked| {
                        format!("{}/{} ({})", blocked.kind, blocked.name, blocked.reason)
                    })
                    .collect();
                notices.push((
                    copy(&entry.name),
                    decide::Notice::warning(
                        reason::CONSUMER_BLOCKED,
                        notice.action,
                        format!(
                            "the rotation of this Secret's pair waits for {} here; Token 1 stays active until they are verified",
                            list.join(", ")
                        ),
                    ),
                ));
            }
        }
    }
    notices
}

/// The writes of a plan, in order: the Secret of record first, then its copies (consumers are
/// only ever pointed at keys that exist), then consumers, then the status that records what was
/// done.
async fn write(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
    plan: &mut Plan,
) -> Result<(), Error> {
    let (namespace, name) = target.key();
    if let Some(attempt) = plan.platform_rotate {
        return rotate_at_platform(target, context, plan, attempt).await;
    }
    if let Some(write) = &plan.secret {
        still_leader(context)?;
        apply::secret(&context.client, target, &snapshot.namespace, write).await?;
        info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %snapshot.namespace, token1_serial = write.identities[0].serial, token2_serial = write.identities[1].serial, "mirror Secret written");
        halt_point(context, "secret").await;
    }
    // One namespace that refuses its copy (a policy, a namespace being deleted) must not keep
    // the others from theirs: it is logged, stays unverified, and the reconcile retries.
    let mut copy_failure = None;
    for copy in &plan.copies {
        still_leader(context)?;
        match apply::secret(&context.client, target, &copy.namespace, &copy.write).await {
            Ok(()) => {
                info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %copy.namespace, token1_serial = copy.write.identities[0].serial, "mirror Secret copy written");
            }
            Err(error) if error.is_conflict() => return Err(error),
            Err(error) => {
                warn!(%namespace, %name, secret_namespace = %copy.namespace, reason = error.reason(), error = %error, "mirror Secret copy refused");
                copy_failure.get_or_insert(error);
            }
        }
    }
    if !plan.copies.is_empty() {
        halt_point(context, "copies").await;
    }
    for copy_namespace in &plan.copy_deletes {
        still_leader(context)?;
        // The version the decision saw: a copy written or read since is not deleted (a
        // conflict, and the next pass decides again).
        let version = snapshot
            .namespaces
            .iter()
            .find(|view| view.namespace == *copy_namespace)
            .and_then(|view| match &view.copy {
                CopyObservation::Read(copy) => copy.resource_version.clone(),
                CopyObservation::Current {
                    resource_version, ..
                } => Some(resource_version.clone()),
                _ => None,
            });
        apply::delete_copy(&context.client, target, copy_namespace, version).await?;
        info!(%namespace, %name, secret = %snapshot.secret_name, secret_namespace = %copy_namespace, "mirror Secret deleted from a namespace no longer selected");
    }
    let mut refused = Vec::new();
    for patch in &plan.consumer_patches {
        still_leader(context)?;
        match apply::consumer(&context.client, patch).await {
            Ok(()) => {
                info!(%namespace, %name, consumer_namespace = %patch.namespace, kind = patch.kind.as_str(), consumer = %patch.name, rotation = %patch.rotation_id, "consumer patched");
                halt_point(context, "consumer").await;
            }
            // Someone changed the workload since it was read: look again soon.
            Err(error) if error.is_conflict() => return Err(error),
            // One consumer the API server refuses (a webhook, a policy, an invalid merge) must
            // not stop the others from being repointed: it is reported and retried.
            Err(error) => {
                warn!(%namespace, %name, consumer_namespace = %patch.namespace, kind = patch.kind.as_str(), consumer = %patch.name, reason = error.reason(), error = %error, "consumer apply refused");
                refused.push(decide::after_write::RefusedApply {
                    kind: patch.kind,
                    namespace: patch.namespace.clone(),
                    name: patch.name.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
    if !refused.is_empty() {
        decide::after_write::consumers_refused(snapshot, plan, &refused, &now());
    }
    if target.status() != Some(&plan.status) {
        still_leader(context)?;
        apply::status(&context.client, target, &plan.status).await?;
        debug!(%namespace, %name, "status written");
        let phase = plan
            .status
            .rotation
            .as_ref()
            .map_or(reason::phase::IDLE, |rotation| rotation.phase.as_str());
        halt_point(context, &format!("status:{phase}")).await;
    }
    match copy_failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The rotate call at the platform (see `decide::rotation::rotate_at_platform`): the attempt
/// recorded in status first (conditional on the resourceVersion observed: a stale or deposed
/// replica gets a conflict and calls nothing), then the one call, then its outcome.
async fn rotate_at_platform(
    target: &Target,
    context: &Context,
    plan: &mut Plan,
    attempt: i32,
) -> Result<(), Error> {
    let (namespace, name) = target.key();
    let uid = target.uid().unwrap_or_default();
    let client = lock(&context.platforms)
        .get(&uid)
        .map(|entry| entry.client.clone());
    let Some(client) = client else {
        // Never without the client the decision was made with.
        return Ok(());
    };
    still_leader(context)?;
    let version = apply::status_at(
        &context.client,
        target,
        &plan.status,
        target.resource_version(),
    )
    .await?;
    info!(%namespace, %name, attempt, "rotate call recorded; calling the platform");
    halt_point(context, "platform:recorded").await;
    still_leader(context)?;
    let outcome = client.rotate().await;
    context.metrics.observe_platform_rotate(outcome.state());
    info!(%namespace, %name, attempt, outcome = outcome.state(), detail = %outcome.message(), "platform rotate call made");
    halt_point(context, "platform:called").await;
    let now = now();
    if let Some(call) = plan
        .status
        .rotation
        .as_mut()
        .and_then(|rotation| rotation.platform_rotate.as_mut())
    {
        call.state = outcome.state().into();
        call.message = outcome.message();
        call.at = now;
    }
    lock(&context.unrecorded_calls).insert(
        uid.clone(),
        (attempt, outcome.state().into(), outcome.message()),
    );
    if let RotateOutcome::Rotated = outcome {
        plan.events.push(decide::Notice::normal(
            reason::PLATFORM_ROTATED,
            reason::action::ROTATE,
            "the platform rotated the pair; the operator reads, checks and mirrors it next",
        ));
    } else {
        plan.events.push(decide::Notice::warning(
            reason::PLATFORM_ROTATE_FAILED,
            reason::action::ROTATE,
            outcome.message(),
        ));
    }
    apply::status_at(&context.client, target, &plan.status, version).await?;
    lock(&context.unrecorded_calls).remove(&uid);
    plan.requeue = Requeue::After(Duration::from_secs(1));
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When the mirrored pair is next due for its check at the platform.
fn next_platform_check(
    target: &Target,
    context: &Context,
    snapshot: &Snapshot,
) -> Option<Duration> {
    snapshot.platform.as_ref()?;
    let uid = target.uid().unwrap_or_default();
    let client = lock(&context.platforms).get(&uid)?.client.clone();
    let MirrorObservation::Owned(observed) = &snapshot.mirror else {
        return Some(client.check_interval);
    };
    let Some((pair, _)) = decide::pair::current_pair(observed) else {
        return Some(client.check_interval);
    };
    Some(client.next_check_in(&[&pair.token1, &pair.token2]))
}

/// The platform client of `target` (built, or rebuilt when its spec changed or it is older
/// than [`PLATFORM_CLIENT_TTL`]); Secrets it names are read in `namespace`.
async fn platform_client(
    target: &Target,
    context: &Context,
    spec: &crate::api::PlatformSpec,
    namespace: &str,
) -> Result<Arc<Platform>, String> {
    let uid = target.uid().unwrap_or_default();
    let key = serde_json::to_string(spec).unwrap_or_default();
    let previous = lock(&context.platforms).get(&uid).map(|entry| {
        (
            entry.spec == key && entry.built.elapsed() < PLATFORM_CLIENT_TTL,
            entry.client.clone(),
        )
    });
    if let Some((true, client)) = &previous {
        return Ok(client.clone());
    }
    let secrets = Api::<Secret>::namespaced(context.client.clone(), namespace);
    let client = Arc::new(
        Platform::build(spec, &secrets)
            .await
            .map_err(|error| error.to_string())?,
    );
    if let Some((_, old)) = &previous {
        client.inherit(old);
    }
    let mut platforms = lock(&context.platforms);
    // Clients of objects not reconciled for an hour (deleted ones, mostly) are let go.
    platforms.retain(|_, entry| entry.built.elapsed() < Duration::from_secs(3600));
    platforms.insert(
        uid,
        PlatformEntry {
            spec: key,
            built: Instant::now(),
            client: client.clone(),
        },
    );
    Ok(client)
}

/// True when the platform's pair must be read afresh in this pass: a rotation is at (or past)
/// the point where it rotates at the platform, or the mirrored Token 1 was rejected.
fn needs_fresh_read(status: Option<&crate::api::StreamingTokenStatus>) -> bool {
    let Some(status) = status else {
        return true;
    };
    let rotating_there = status.rotation.as_ref().is_some_and(|rotation| {
        rotation.phase == decide::rotation::PHASE_AWAITING_SOURCE
            || rotation.platform_rotate.is_some()
    });
    let rejected = status
        .platform
        .as_ref()
        .is_some_and(|platform| platform.token1.as_deref() == Some(reason::platform::REJECTED));
    rotating_there || rejected
}

/// What the platform says about the pair: the source (`source.platform`: the pair read there)
/// and the verdict on every token of the mirror and the source.
async fn observe_platform(
    target: &Target,
    context: &Context,
    spec: &crate::api::PlatformSpec,
    home: &str,
    mirror: &MirrorObservation,
    source: &mut SourceObservation,
    reads_platform: bool,
) -> PlatformObservation {
    let uid = target.uid().unwrap_or_default();
    let unrecorded_call = lock(&context.unrecorded_calls).get(&uid).cloned();
    let client = match platform_client(target, context, spec, home).await {
        Ok(client) => client,
        Err(problem) => {
            if reads_platform {
                *source = SourceObservation::External(
                    Err(SourceProblem::PlatformUnreadable {
                        message: problem.clone(),
                    }),
                    None,
                );
            }
            return PlatformObservation {
                problem: Some(problem),
                rotates: reads_platform,
                unrecorded_call,
                ..PlatformObservation::default()
            };
        }
    };
    let mut read_fresh = false;
    if reads_platform {
        *source = match client.read_pair(needs_fresh_read(target.status())).await {
            Ok((pair, read_now)) => {
                read_fresh = read_now;
                SourceObservation::External(Ok(pair), None)
            }
            Err(error) => SourceObservation::External(
                Err(SourceProblem::PlatformUnreadable {
                    message: error.to_string(),
                }),
                None,
            ),
        };
    }
    let mirror_pair = match mirror {
        MirrorObservation::Owned(observed) => {
            decide::pair::current_pair(observed).map(|(pair, _)| pair)
        }
        _ => None,
    };
    let source_pair = match source {
        SourceObservation::External(Ok(pair), _) => Some(pair.clone()),
        _ => None,
    };
    let (tokens, fresh) =
        decide::platform::tokens_to_check(mirror_pair.as_ref(), source_pair.as_ref());
    let verdicts = futures::future::join_all(
        tokens
            .iter()
            .map(|token| async { ((*token).clone(), client.verdict(token, fresh).await) }),
    )
    .await;
    for (_, verdict) in &verdicts {
        context.metrics.observe_platform_check(verdict);
    }
    PlatformObservation {
        verdicts,
        problem: None,
        rotates: client.rotates(),
        read_fresh,
        credentials_expire_at: client.credentials_expire_at,
        unrecorded_call,
    }
}

/// Leadership is checked again before every write: a replica that stepped down mid-reconcile
/// (its lease renewals failing) writes nothing more.
fn still_leader(context: &Context) -> Result<(), Error> {
    if *context.leader.borrow() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

/// A write the API server refused is reported on the object, as
/// [`decide::after_write::write_failed`] decides.
async fn report_write_failure(target: &Target, context: &Context, error: &Error) {
    let failure = decide::after_write::FailedWrite {
        reason: error.reason(),
        message: error.to_string(),
        conflict: error.is_conflict(),
    };
    let status = target.status().cloned().unwrap_or_default();
    let Some((status, notice)) =
        decide::after_write::write_failed(&status, target.generation(), &failure, &now())
    else {
        return;
    };
    if let Err(status_error) = apply::status(&context.client, target, &status).await {
        debug!(error = %status_error, "could not record the failed write in status");
    }
    apply::event(
        &context.client,
        &context.reporter,
        &target.object_ref(),
        &notice,
    )
    .await;
}

/// Crash-safety tests stop the operator right after a given write (`secret`, `copies`,
/// `consumer`, `status:<phase>`) through `STREAMING_TOKEN_OPERATOR_HALT_AFTER`, then SIGKILL it
/// there. Unset in production, where this is a no-op.
async fn halt_point(context: &Context, step: &str) {
    if context.halt_after.as_deref() == Some(step) {
        warn!(step, "test halt point reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

fn error_policy(target: &Target, error: &Error, context: &Context) -> Action {
    let key = target.key();
    let failures = {
        let mut failures = context
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.clone()).or_insert(0);
        *count += 1;
        *count
    };
    if error.is_conflict() {
        // The normal price of optimistic concurrency: retried, not worth a warning.
        debug!(namespace = %key.0, name = %key.1, reason = error.reason(), failures, "conflict; retrying");
    } else {
        warn!(namespace = %key.0, name = %key.1, reason = error.reason(), error = %error, failures, "reconcile failed");
    }
    if error.is_conflict() && failures <= 3 {
        // Someone changed the object since it was read: look again at once (a few times; then
        // back off, in case the cached copy stays stale).
        return Action::requeue(Duration::from_millis(200));
    }
    Action::requeue(decide::backoff(failures.saturating_sub(1)))
}

/// Records which copies were read holding the pair of record (see [`ClusterContext::in_sync`]).
fn remember_copies_in_sync(target: &Target, context: &Context, snapshot: &Snapshot) {
    let (Some(cluster), MirrorObservation::Owned(home)) = (&context.cluster, &snapshot.mirror)
    else {
        return;
    };
    let Some(home_version) = &home.resource_version else {
        return;
    };
    let mut in_sync = cluster
        .in_sync
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for view in &snapshot.namespaces {
        let key = (target.name(), view.namespace.clone());
        match &view.copy {
            CopyObservation::Read(copy) if snapshot.copy_in_sync(view) => {
                if let Some(version) = &copy.resource_version {
                    in_sync.insert(
                        key,
                        InSync {
                            copy_version: version.clone(),
                            record_version: home_version.clone(),
                            values_written_at: copy.values_written_at,
                        },
                    );
                }
            }
            CopyObservation::Current { .. } => {}
            _ => {
                in_sync.remove(&key);
            }
        }
    }
}

/// Gathers the snapshot `plan` decides on. `fresh`: read every Secret from the API server
/// (no copy is taken as unchanged).
async fn observe(
    target: &Target,
    context: &Context,
    now: &Time,
    fresh: bool,
) -> Result<Snapshot, Error> {
    let (key_namespace, name) = target.key();
    let spec = target.spec();
    let secret_name = target.secret_name();
    let (home, source_namespace) = match target {
        Target::Namespaced(_) => (key_namespace.clone(), key_namespace.clone()),
        Target::Cluster(token) => {
            let home = context
                .cluster
                .as_ref()
                .map(|cluster| cluster.home_namespace.clone())
                .unwrap_or_default();
            let source_namespace = token.source_namespace(&home);
            (home, source_namespace)
        }
    };
    let mirror = read_mirror(target, context, &home).await?;
    let source = source::from_spec(&spec.source);
    let mut observed_source = source
        .observe(&Api::<Secret>::namespaced(
            context.client.clone(),
            &source_namespace,
        ))
        .await?;
    let platform = match &spec.platform {
        Some(platform) => Some(
            observe_platform(
                target,
                context,
                platform,
                &home,
                &mirror,
                &mut observed_source,
                spec.source.platform.is_some(),
            )
            .await,
        ),
        None => None,
    };
    let (namespaces, selection_problem) = match target {
        Target::Namespaced(_) => {
            let mut view = NamespaceView {
                namespace: home.clone(),
                copy: CopyObservation::Home,
                selected: true,
                foreign_since: None,
                label_taken: false,
                consumers: Vec::new(),
                pods: Vec::new(),
            };
            fill_view(target, context, &mut view, now);
            (vec![view], None)
        }
        Target::Cluster(token) => {
            let home_version = match &mirror {
                MirrorObservation::Owned(observed) if !fresh => observed.resource_version.clone(),
                _ => None,
            };
            let (mut views, problem) =
                cluster_views(target, token, context, &home, home_version, now).await?;
            // A namespace no longer selected whose Secret only looks like a copy (labelled,
            // but holding no token of the record) is not this object's: never written to.
            views.retain(|view| decide::fanout::reached(&mirror, token.status.as_ref(), view));
            (views, problem)
        }
    };
    let fresh = source.fresh()?;
    let failures = context
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&(key_namespace, name.clone()))
        .copied()
        .unwrap_or(0);
    Ok(Snapshot {
        kind: target.kind(),
        uid: target.uid().unwrap_or_default(),
        rotate_request: target.rotate_request(),
        name,
        namespace: home,
        source_namespace,
        generation: target.generation(),
        spec,
        status: target.status().cloned().unwrap_or_default(),
        secret_name,
        mirror,
        source: observed_source,
        namespaces,
        retain_unselected: match target {
            Target::Cluster(token) => {
                token.spec.namespaces.unselected_policy == UnselectedPolicy::Retain
            }
            Target::Namespaced(_) => false,
        },
        selection_problem,
        platform,
        fresh,
        failures,
    })
}

/// The mirror Secret of `target` in `namespace` as the operator sees it, and when it was
/// created.
async fn read_secret(
    target: &Target,
    context: &Context,
    namespace: &str,
) -> Result<(MirrorObservation, Option<i64>), Error> {
    let secret_name = target.secret_name();
    let secret = Api::<Secret>::namespaced(context.client.clone(), namespace)
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name.clone(),
            source,
        })?;
    Ok(match secret {
        None => (MirrorObservation::Missing, None),
        Some(secret) => (
            classify_mirror(target, &secret),
            secret
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0.as_second()),
        ),
    })
}

/// The mirror Secret of `target` in `namespace`, as the operator sees it.
async fn read_mirror(
    target: &Target,
    context: &Context,
    namespace: &str,
) -> Result<MirrorObservation, Error> {
    Ok(read_secret(target, context, namespace).await?.0)
}

/// The namespaces a ClusterStreamingToken reaches: those it selects, and those it no longer
/// selects but still has a mirror Secret in (`Leaving`, or `Retained` as a bare list).
/// `home_version`: the pair of record's resourceVersion, to take unchanged copies as in sync
/// (`None`: read every copy).
async fn cluster_views(
    target: &Target,
    token: &ClusterStreamingToken,
    context: &Context,
    home: &str,
    home_version: Option<String>,
    now: &Time,
) -> Result<(Vec<NamespaceView>, Option<String>), Error> {
    let Some(cluster) = &context.cluster else {
        return Ok((Vec::new(), None));
    };
    let name = target.name();
    let secret_name = target.secret_name();
    let (selected, problem) = selected_namespaces(token, &cluster.namespaces);
    // Not selected but still reached: where a copy exists (by its labels), and where the last
    // status knew one and pods still read that name (a copy deleted under them).
    let mut existing: BTreeSet<String> = cluster
        .copies
        .state()
        .iter()
        .filter(|secret| {
            secret.labels().get(CLUSTER_TOKEN_LABEL) == Some(&name)
                && secret.name_any() == secret_name
        })
        .filter_map(|secret| secret.namespace())
        .filter(|namespace| namespace != home || selected.contains(namespace))
        .collect();
    if let Some(status) = &token.status {
        for entry in &status.namespaces {
            let read = context.pods.in_namespace(&entry.name).iter().any(|pod| {
                pod.references
                    .iter()
                    .any(|reference| reference.secret == secret_name)
            });
            if read && entry.name != home {
                existing.insert(entry.name.clone());
            }
        }
    }
    let reached: Vec<(String, bool)> = selected
        .union(&existing)
        .map(|namespace| (namespace.clone(), selected.contains(namespace)))
        .collect();
    // A copy whose resourceVersion (from the watch) and the record's are those it was last
    // read in sync at is in sync still.
    let unchanged = |namespace: &str| -> Option<CopyObservation> {
        let home_version = home_version.as_ref()?;
        let version = cluster
            .copies
            .get(&ObjectRef::new(&target.secret_name()).within(namespace))?
            .resource_version()?;
        let in_sync = cluster
            .in_sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = in_sync.get(&(name.clone(), namespace.into()))?;
        (known.copy_version == version && known.record_version == *home_version).then_some(
            CopyObservation::Current {
                resource_version: version,
                values_written_at: known.values_written_at,
            },
        )
    };
    // The others are read a few at a time: their data is never cached.
    /// A namespace, whether it is selected, its copy, and when a Secret not ours was created.
    type Read = (String, bool, CopyObservation, Option<i64>);
    let copies: Vec<Result<Read, Error>> = futures::stream::iter(reached)
        .map(|(namespace, is_selected)| async move {
            let copy = if namespace == home {
                CopyObservation::Home
            } else if let Some(copy) = unchanged(&namespace) {
                copy
            } else {
                let (observed, created) = read_secret(target, context, &namespace).await?;
                match observed {
                    MirrorObservation::Missing => CopyObservation::Missing,
                    MirrorObservation::NotOwned => {
                        return Ok((namespace, is_selected, CopyObservation::NotOwned, created));
                    }
                    MirrorObservation::ClaimedBy(other) => {
                        return Ok((
                            namespace,
                            is_selected,
                            CopyObservation::ClaimedBy(other),
                            created,
                        ));
                    }
                    MirrorObservation::Owned(observed) => CopyObservation::Read(observed),
                }
            };
            Ok((namespace, is_selected, copy, None))
        })
        .buffered(8)
        .collect()
        .await;
    let mut views = Vec::new();
    for copy in copies {
        let (namespace, selected, copy, foreign_since) = copy?;
        let label_taken = context
            .tokens
            .get(&ObjectRef::new(&name).within(&namespace))
            .is_some();
        let mut view = NamespaceView {
            namespace,
            copy,
            selected,
            foreign_since,
            label_taken,
            consumers: Vec::new(),
            pods: Vec::new(),
        };
        fill_view(target, context, &mut view, now);
        views.push(view);
    }
    Ok((views, problem))
}

/// The namespaces `token` selects now: named or matching its selector, and not being deleted;
/// and why the selector cannot be evaluated, if it cannot (then only named ones are selected).
fn selected_namespaces(
    token: &ClusterStreamingToken,
    namespaces: &Store<PartialObjectMeta<Namespace>>,
) -> (BTreeSet<String>, Option<String>) {
    let selection = &token.spec.namespaces;
    let (selector, problem) = match selection
        .selector
        .clone()
        .map(kube::core::Selector::try_from)
    {
        None => (None, None),
        Some(Ok(selector)) => (Some(selector), None),
        Some(Err(error)) => (
            None,
            Some(format!(
                "spec.namespaces.selector is not a valid label selector: {error}"
            )),
        ),
    };
    let selected = namespaces
        .state()
        .iter()
        .filter(|namespace| namespace.metadata.deletion_timestamp.is_none())
        .filter(|namespace| {
            let name = namespace.name_any();
            selection.names.contains(&name)
                || selector.as_ref().is_some_and(|selector| {
                    kube::core::SelectorExt::matches(selector, namespace.labels())
                })
        })
        .map(|namespace| namespace.name_any())
        .collect();
    (selected, problem)
}

fn classify_mirror(target: &Target, secret: &Secret) -> MirrorObservation {
    let labels = secret.labels();
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGER_NAME) {
        return MirrorObservation::NotOwned;
    }
    let name = target.name();
    let namespaced = labels.get(TOKEN_LABEL);
    let clustered = labels.get(CLUSTER_TOKEN_LABEL);
    let owner = match (namespaced, clustered) {
        (_, Some(owner)) if target.label_key() != CLUSTER_TOKEN_LABEL || *owner != name => {
            return MirrorObservation::ClaimedBy(format!("ClusterStreamingToken {owner}"));
        }
        (Some(owner), None) if target.label_key() != TOKEN_LABEL || *owner != name => {
            return MirrorObservation::ClaimedBy(format!("StreamingToken {owner}"));
        }
        (None, None) => return MirrorObservation::NotOwned,
        _ => name,
    };
    let _ = owner;
    let spec = target.spec().secret;
    let read = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|value| Token::parse(&value.0))
    };
    let uid = target.uid();
    MirrorObservation::Owned(ObservedMirror {
        resource_version: secret.resource_version(),
        token1: read(&spec.token1_key),
        token2: read(&spec.token2_key),
        labels: labels.clone(),
        annotations: secret.annotations().clone(),
        owner_uids: secret
            .owner_references()
            .iter()
            .filter(|reference| Some(&reference.uid) == uid.as_ref())
            .map(|reference| reference.uid.clone())
            .collect(),
        values_written_at: secret
            .managed_fields()
            .iter()
            .filter_map(|entry| entry.time.as_ref().map(|time| time.0.as_second()))
            .max(),
    })
}

/// Fills a namespace's consumers and pods from the caches: no consumers where the pair is not
/// served (another's Secret) or a StreamingToken owns the label; the pods always (a Secret that
/// replaced a copy may leave pods behind that hold Token 1).
fn fill_view(target: &Target, context: &Context, view: &mut NamespaceView, now: &Time) {
    let spec = target.spec();
    let secret = target.secret_name();
    if view.serves_pair() && !view.label_taken {
        view.consumers = context
            .workloads
            .consumers(&view.namespace, &target.name())
            .iter()
            .map(|workload| workload.observe(&spec.consumers.env_var, &secret))
            .collect();
        view.consumers
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    }
    let records = context.pods.in_namespace(&view.namespace);
    with_pods(view, records, now);
}

/// Replaces the view's pods (and each consumer's own) with `records`.
fn with_pods(view: &mut NamespaceView, records: Vec<Arc<PodRecord>>, now: &Time) {
    attach_pods(&mut view.consumers, &records, now);
    view.pods = records;
}
/// Each consumer's pods: the records it controls (a Deployment through its ReplicaSets).
/// Grouped by owner once, so a reconcile costs one pass over the namespace's pods.
fn attach_pods(consumers: &mut [ConsumerObservation], records: &[Arc<PodRecord>], now: &Time) {
    let now = now.0.as_second();
    let mut by_owner: HashMap<(&str, &str), Vec<PodObservation>> = HashMap::new();
    for record in records {
        let Some(owner) = &record.owner else {
            continue;
        };
        by_owner
            .entry((owner.kind.as_str(), owner.name.as_str()))
            .or_default()
            .push(PodObservation {
                name: record.name.clone(),
                rotation: record.rotation.clone(),
                terminating: record.terminating(),
                // deletionTimestamp is when the grace period ends; past it, only a finalizer
                // keeps the pod (and whatever token it holds) around.
                held_by: record.held_by(now).to_vec(),
            });
    }
    for consumer in consumers {
        let pods = by_owner
            .remove(&(consumer.kind.as_str(), consumer.name.as_str()))
            .unwrap_or_default();
        consumer.pods = Some(pods);
    }
}
