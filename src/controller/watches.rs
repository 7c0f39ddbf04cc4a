//! The watches and the controllers that run on them. Watches are narrow: StreamingTokens in
//! full; Secrets and consumer workloads only when they carry the `streamingtoken.io/token` label.
//! Secrets are watched by metadata only, to wake the right StreamingToken; the reconcile reads the
//! (few) Secrets it needs directly, so no Secret data is ever cached. Pods are watched in the
//! served namespaces but kept only as compact records of the Secrets they reference
//! ([`crate::pods`]): any pod may read a mirror Secret, labelled or not, and none is kept whole.

use super::*;
use futures::FutureExt;
use futures::stream::BoxStream;

pub(super) fn token_ref(
    labels: &std::collections::BTreeMap<String, String>,
    namespace: Option<String>,
) -> Option<ObjectRef<StreamingToken>> {
    let name = labels.get(TOKEN_LABEL)?;
    let namespace = namespace?;
    Some(ObjectRef::new(name).within(&namespace))
}

pub(super) fn reflect<K>(
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
pub(super) async fn synced<K>(store: &Store<K>) -> bool
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
    let serves_cluster =
        serve.cluster && matches!(scope, Scope::All) && cluster_kind_served(&client).await;
    let (tokens, token_stream) = token_watch(&client, &scope, &metrics);
    let (cluster_tokens, cluster_stream) = reflect(
        Api::<ClusterStreamingToken>::all(client.clone()),
        cluster_token_config(&serve),
    );
    let (waker, woken) = ClusterWaker::new(cluster_tokens.clone());
    let workloads = Arc::new(WorkloadCache::default());
    let workload_stream = workload::watch_every(&client, scope.namespace(), &workloads).await;
    let pod_records = Arc::new(PodCache::default());
    let pod_changes = pods::watch(scope.api::<Pod>(&client), pod_records.clone());
    let cluster = serves_cluster.then(|| ClusterWatches::start(&client));
    let context = Arc::new(Context {
        client: client.clone(),
        reporter,
        workloads: workloads.clone(),
        pods: pod_records.clone(),
        metrics,
        leader: leader.clone(),
        failures: Mutex::default(),
        platforms: Mutex::default(),
        unrecorded_calls: Mutex::default(),
        started: Mutex::default(),
        halt_after: halt_after(),
        synced: ready.subscribe(),
        tokens: tokens.clone(),
        serve_namespaced: serve.namespaced,
        cluster: (cluster.as_ref()).map(|cluster| cluster.context(&serve.home_namespace)),
        members: Default::default(),
    });
    let caches = Caches {
        tokens: tokens.clone(),
        cluster_tokens: cluster_tokens.clone(),
        cluster: cluster
            .as_ref()
            .map(|cluster| (cluster.namespaces.clone(), cluster.copies.clone())),
        workloads,
        pods: pod_records,
    };
    tokio::spawn(caches.signal_synced(ready));
    let shared = Shared {
        leader,
        shutdown: futures::FutureExt::boxed(shutdown).shared(),
    };
    let namespaced = NamespacedWatches {
        tokens,
        token_stream: token_stream.boxed(),
        secrets: secret_watch(&client, &scope),
        pod_changes: pod_changes.boxed(),
        workload_stream,
    }
    .run(&shared, waker.clone(), serves_cluster, context.clone());
    let Some(cluster) = cluster else {
        namespaced.await;
        return;
    };
    let clustered = cluster.run(
        &shared,
        waker,
        woken,
        (cluster_tokens, cluster_stream.boxed()),
        context,
    );
    futures::future::join(namespaced, clustered).await;
}

/// The crash-safety tests' halt hook exists only in builds with the `e2e` feature (the ones
/// `make test` runs); a release build ignores the variable.
fn halt_after() -> Option<String> {
    cfg!(feature = "e2e")
        .then(|| std::env::var("STREAMING_TOKEN_OPERATOR_HALT_AFTER").ok())
        .flatten()
}

/// Whether ClusterStreamingTokens can be served: without their CRD (or the RBAC for them and for
/// namespaces) their caches would never sync, and StreamingTokens would wait with them.
async fn cluster_kind_served(client: &Client) -> bool {
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
    if let Some(missing) = &missing {
        warn!(%missing, "the ClusterStreamingToken CRD is not installed, or RBAC does not allow serving it: serving StreamingTokens only (install crds/ and the chart's ClusterRole, then restart)");
    }
    missing.is_none()
}

/// A watch of objects that carry `label` (any value).
fn labelled(label: &str) -> watcher::Config {
    watcher::Config::default().labels(label).any_semantic()
}

/// The StreamingTokens, cached in full (their annotations stay; there are few of them). A deleted
/// one is never reconciled again: its per-object metrics are dropped as its deletion passes by.
fn token_watch(
    client: &Client,
    scope: &Scope,
    metrics: &Arc<Metrics>,
) -> (
    Store<StreamingToken>,
    impl Stream<Item = Result<StreamingToken, watcher::Error>> + Send + 'static,
) {
    let (tokens, stream) = reflect(
        scope.api::<StreamingToken>(client),
        watcher::Config::default().any_semantic(),
    );
    let store = tokens.clone();
    let metrics = metrics.clone();
    let stream = stream.inspect(move |result| {
        if let Ok(token) = result
            && store.get(&ObjectRef::from_obj(token)).is_none()
        {
            metrics.forget(&token.namespace().unwrap_or_default(), &token.name_any());
        }
    });
    (tokens, stream)
}

/// The ClusterStreamingTokens this instance serves (`--cluster-token-selector`).
fn cluster_token_config(serve: &Serve) -> watcher::Config {
    let config = watcher::Config::default().any_semantic();
    match &serve.cluster_token_selector {
        Some(selector) => config.labels(selector),
        None => config,
    }
}

/// Labelled Secrets, by metadata only: a change wakes the StreamingToken the label names.
fn secret_watch(
    client: &Client,
    scope: &Scope,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    watcher(
        scope.api::<PartialObjectMeta<Secret>>(client),
        labelled(TOKEN_LABEL),
    )
    .default_backoff()
    .touched_objects()
    .boxed()
}

/// ClusterStreamingTokens are woken by the same watches: every change a watch sees is also
/// offered to the ClusterStreamingToken its labels name, through this channel.
#[derive(Clone)]
struct ClusterWaker {
    store: Store<ClusterStreamingToken>,
    wake: futures::channel::mpsc::UnboundedSender<ObjectRef<ClusterStreamingToken>>,
}

impl ClusterWaker {
    /// A waker over `store`, and the stream of the ClusterStreamingTokens it wakes.
    fn new(
        store: Store<ClusterStreamingToken>,
    ) -> (
        Self,
        futures::channel::mpsc::UnboundedReceiver<ObjectRef<ClusterStreamingToken>>,
    ) {
        let (wake, woken) = futures::channel::mpsc::unbounded();
        (Self { store, wake }, woken)
    }

    /// Wakes each of the ClusterStreamingTokens `names` that is served.
    fn offer_names(&self, names: &[String]) {
        for name in names {
            let reference = ObjectRef::new(name);
            if self.store.get(&reference).is_some() {
                let _ = self.wake.unbounded_send(reference);
            }
        }
    }

    /// Wakes the ClusterStreamingToken that `labels` name, if it is served.
    fn offer(&self, labels: &std::collections::BTreeMap<String, String>) {
        for key in [TOKEN_LABEL, CLUSTER_TOKEN_LABEL] {
            if let Some(name) = labels.get(key) {
                let reference = ObjectRef::new(name);
                if self.store.get(&reference).is_some() {
                    let _ = self.wake.unbounded_send(reference);
                }
            }
        }
    }
}

/// A ClusterStreamingToken's namespaces and copies.
type ClusterStores = (
    Store<PartialObjectMeta<Namespace>>,
    Store<PartialObjectMeta<Secret>>,
);

/// The caches whose first full list gates readiness.
struct Caches {
    tokens: Store<StreamingToken>,
    cluster_tokens: Store<ClusterStreamingToken>,
    cluster: Option<ClusterStores>,
    workloads: Arc<WorkloadCache>,
    pods: Arc<PodCache>,
}

impl Caches {
    /// Sets `ready` once every cache has its first full list.
    async fn signal_synced(self, ready: watch::Sender<bool>) {
        let mut synced = synced(&self.tokens).await;
        if let Some((namespaces, copies)) = &self.cluster {
            synced = synced
                && self::synced(&self.cluster_tokens).await
                && self::synced(namespaces).await
                && self::synced(copies).await;
        }
        while !self.workloads.ready() || !self.pods.ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if synced {
            info!("caches synced");
            let _ = ready.send(true);
        }
    }
}

/// What both controllers share: leadership and the shutdown signal.
struct Shared {
    leader: watch::Receiver<bool>,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
}

impl Shared {
    /// A replica that becomes leader re-reconciles everything: it skipped work while standby.
    fn became_leader(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.leader.clone(), |mut receiver| async move {
            loop {
                receiver.changed().await.ok()?;
                if *receiver.borrow_and_update() {
                    return Some(((), receiver));
                }
            }
        })
    }

    fn config() -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default()
            .concurrency(16)
            .debounce(Duration::from_millis(50))
    }
}

/// Logs what a controller run reports.
async fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(error) = result {
        debug!(error = %error, "controller event");
    }
}

/// The watches the StreamingToken controller runs on.
struct NamespacedWatches {
    tokens: Store<StreamingToken>,
    token_stream: BoxStream<'static, Result<StreamingToken, watcher::Error>>,
    secrets: BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>>,
    pod_changes: BoxStream<'static, Vec<pods::Touched>>,
    workload_stream: BoxStream<'static, workload::Touched>,
}

impl NamespacedWatches {
    /// The StreamingToken controller: woken by its objects, their labelled Secrets, consumer
    /// workloads and pods (offered to ClusterStreamingTokens too).
    async fn run(
        self,
        shared: &Shared,
        waker: ClusterWaker,
        serves_cluster: bool,
        context: Arc<Context>,
    ) {
        let pod_waker = waker.clone();
        let token_store = self.tokens.clone();
        let pods = self
            .pod_changes
            .map(move |touched| {
                if serves_cluster {
                    for reference in pods::concerned_cluster(&pod_waker.store, &touched) {
                        let _ = pod_waker.wake.unbounded_send(reference);
                    }
                }
                futures::stream::iter(pods::concerned(&token_store, &touched))
            })
            .flatten();
        // A consumer wakes every StreamingToken it reads (its label's and its annotation's).
        let workloads = self
            .workload_stream
            .map(move |touched| {
                waker.offer_names(&touched.tokens);
                let namespace = touched.namespace;
                futures::stream::iter(
                    touched
                        .tokens
                        .into_iter()
                        .map(move |name| ObjectRef::new(&name).within(&namespace)),
                )
            })
            .flatten();
        Controller::for_stream(self.token_stream, self.tokens)
            .with_config(Shared::config())
            .watches_stream(self.secrets, |secret| {
                token_ref(secret.labels(), secret.namespace())
            })
            .reconcile_on(pods)
            .reconcile_on(workloads)
            .reconcile_all_on(shared.became_leader())
            .graceful_shutdown_on(shared.shutdown.clone())
            .run(reconcile_namespaced, error_policy_namespaced, context)
            .for_each(log_result)
            .await;
    }
}

/// The watches only ClusterStreamingTokens need: namespaces (what selectors match) and their
/// copies (metadata), to find those in namespaces no longer selected.
struct ClusterWatches {
    namespaces: Store<PartialObjectMeta<Namespace>>,
    namespace_stream: BoxStream<'static, Result<PartialObjectMeta<Namespace>, watcher::Error>>,
    copies: Store<PartialObjectMeta<Secret>>,
    copy_stream: BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>>,
}

impl ClusterWatches {
    fn start(client: &Client) -> Self {
        let (namespaces, namespace_stream) = reflect(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        );
        let (copies, copy_stream) = reflect(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            labelled(CLUSTER_TOKEN_LABEL),
        );
        Self {
            namespaces,
            namespace_stream: namespace_stream.boxed(),
            copies,
            copy_stream: copy_stream.boxed(),
        }
    }

    fn context(&self, home_namespace: &str) -> ClusterContext {
        ClusterContext {
            home_namespace: home_namespace.to_string(),
            namespaces: self.namespaces.clone(),
            copies: self.copies.clone(),
            in_sync: Mutex::default(),
        }
    }

    /// The ClusterStreamingToken controller: woken by what the other watches offer, by any
    /// namespace change (it may change what a selector matches) and by its copies.
    async fn run(
        self,
        shared: &Shared,
        waker: ClusterWaker,
        woken: futures::channel::mpsc::UnboundedReceiver<ObjectRef<ClusterStreamingToken>>,
        (cluster_tokens, cluster_stream): (
            Store<ClusterStreamingToken>,
            BoxStream<'static, Result<ClusterStreamingToken, watcher::Error>>,
        ),
        context: Arc<Context>,
    ) {
        let store = cluster_tokens.clone();
        let namespace_changes = self
            .namespace_stream
            .filter_map(move |result| {
                let every = result.ok().map(|_| {
                    let references: Vec<_> = store
                        .state()
                        .iter()
                        .map(|token| ObjectRef::from_obj(token.as_ref()))
                        .collect();
                    futures::stream::iter(references)
                });
                futures::future::ready(every)
            })
            .flatten();
        let copy_changes = self.copy_stream.filter_map(move |result| {
            if let Ok(secret) = &result {
                waker.offer(secret.labels());
            }
            futures::future::ready(None::<ObjectRef<ClusterStreamingToken>>)
        });
        let metrics = context.metrics.clone();
        let store = cluster_tokens.clone();
        let cluster_stream = cluster_stream.inspect(move |result| {
            if let Ok(token) = result
                && store.get(&ObjectRef::from_obj(token)).is_none()
            {
                metrics.forget("", &token.name_any());
            }
        });
        Controller::for_stream(cluster_stream, cluster_tokens)
            .with_config(Shared::config())
            .reconcile_on(woken)
            .reconcile_on(namespace_changes)
            .reconcile_on(copy_changes)
            .reconcile_all_on(shared.became_leader())
            .graceful_shutdown_on(shared.shutdown.clone())
            .run(reconcile_cluster, error_policy_cluster, context)
            .for_each(log_result)
            .await;
    }
}
