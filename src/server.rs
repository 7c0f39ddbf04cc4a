//! The `run` command: health and metrics server, leader election, and the controllers.

use crate::controller::{self, Scope};
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::Client;
use kube::runtime::events::Reporter;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// What `run` needs.
pub struct Options {
    pub namespaces: Vec<String>,
    /// Serve StreamingTokens.
    pub serve_namespaced: bool,
    /// Serve ClusterStreamingTokens (only when every namespace is served).
    pub serve_cluster: bool,
    /// Serve only the ClusterStreamingTokens with these labels.
    pub cluster_token_selector: Option<String>,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration_seconds: u64,
    pub identity: Option<String>,
    pub metrics_bind_address: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up leader election: {0}")]
    LeaderElection(#[source] kube_lease_manager::LeaseManagerError),
}

#[derive(Clone)]
struct Health {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
}

async fn metrics_handler(State(health): State<Health>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "encoding metrics failed".to_string(),
        ),
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if *health.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "operator".into());
    format!("{host}-{}", std::process::id())
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let identity = options.identity.clone().unwrap_or_else(default_identity);
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (ready_sender, ready) = watch::channel(false);
    serve_health(&options, registry, ready).await?;
    let leadership = Leadership::start(&client, &options, &identity).await?;
    let leadership_logger = log_leadership(&metrics, &leadership.leader);
    let reporter = Reporter {
        controller: "streaming-token-operator".into(),
        instance: Some(identity.clone()),
    };
    let (stop_sender, stop) = watch::channel(false);
    let mut controllers = Vec::new();
    let mut ready_flags = Vec::new();
    for scope in scopes(&options) {
        info!(?scope, "starting controller");
        let (sender, receiver) = watch::channel(false);
        ready_flags.push(receiver);
        let mut stop = stop.clone();
        let serve = controller::Serve {
            namespaced: options.serve_namespaced,
            cluster: options.serve_cluster && matches!(scope, Scope::All),
            cluster_token_selector: options.cluster_token_selector.clone(),
            home_namespace: options.lease_namespace.clone(),
        };
        controllers.push(tokio::spawn(controller::run(
            client.clone(),
            scope,
            serve,
            reporter.clone(),
            metrics.clone(),
            leadership.leader.clone(),
            sender,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        )));
    }
    // Ready once every controller's caches have synced.
    tokio::spawn(async move {
        for mut flag in ready_flags {
            let _ = flag.wait_for(|ready| *ready).await;
        }
        let _ = ready_sender.send(true);
    });
    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_sender.send(true);
    for controller in controllers {
        let _ = controller.await;
    }
    leadership_logger.abort();
    let _ = leadership_logger.await;
    leadership.release().await;
    Ok(())
}

/// Serves /metrics, /healthz and /readyz in the background.
async fn serve_health(
    options: &Options,
    registry: Registry,
    ready: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let health = Health {
        registry: Arc::new(registry),
        ready,
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(options.metrics_bind_address)
        .await
        .map_err(|source| RunError::Listen {
            address: options.metrics_bind_address,
            source,
        })?;
    info!(address = %options.metrics_bind_address, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            error!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

/// One controller per served namespace, or one for every namespace.
fn scopes(options: &Options) -> Vec<Scope> {
    if options.namespaces.is_empty() {
        vec![Scope::All]
    } else {
        options
            .namespaces
            .iter()
            .cloned()
            .map(Scope::Namespace)
            .collect()
    }
}

/// The lease manager's task: it hands the manager back when it ends.
type LeaseTask = tokio::task::JoinHandle<
    Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
>;

/// Leadership: a channel that is true while this replica may write.
struct Leadership {
    /// What the controllers follow.
    leader: watch::Receiver<bool>,
    /// Without leader election this replica always leads: the sender lives as long as `run`.
    _always: Option<watch::Sender<bool>>,
    /// The lease manager's own receiver (dropping the last one releases the lease) and task.
    lease: Option<(watch::Receiver<bool>, LeaseTask)>,
}

impl Leadership {
    async fn start(client: &Client, options: &Options, identity: &str) -> Result<Self, RunError> {
        if !options.leader_elect {
            let (always, leader) = watch::channel(true);
            return Ok(Self {
                leader,
                _always: Some(always),
                lease: None,
            });
        }
        let grace = options.lease_duration_seconds.div_ceil(3).max(2);
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
                .with_namespace(&options.lease_namespace)
                .with_identity(identity)
                .with_duration(options.lease_duration_seconds)
                .with_grace(grace)
                .with_field_manager("streamingtoken.io/leader-election")
                .build()
                .await
                .map_err(RunError::LeaderElection)?;
        let (receiver, task) = manager.watch().await;
        info!(lease = %options.lease_name, namespace = %options.lease_namespace, %identity, "leader election enabled; waiting for the lease");
        // The controller follows a guarded receiver: it steps down before the lease can lapse.
        let leader = crate::leadership::guard(
            client.clone(),
            options.lease_name.clone(),
            options.lease_namespace.clone(),
            identity.to_string(),
            std::time::Duration::from_secs(options.lease_duration_seconds),
            std::time::Duration::from_secs(grace),
            receiver.clone(),
        );
        Ok(Self {
            leader,
            _always: None,
            lease: Some((receiver, task)),
        })
    }

    /// Releases the lease, if one was held: dropping the last receiver makes the lease manager
    /// release it.
    async fn release(self) {
        let Some((manager_receiver, task)) = self.lease else {
            return;
        };
        drop(self.leader);
        drop(manager_receiver);
        match task.await {
            Ok(Ok(_)) => info!("leader lease released"),
            Ok(Err(error)) => warn!(%error, "releasing the leader lease failed"),
            Err(error) => warn!(%error, "lease task failed"),
        }
    }
}

/// Logs leadership changes and keeps the leader metric; a replica that stops leading forgets
/// its per-object metrics (the new leader reports them).
fn log_leadership(
    metrics: &Arc<Metrics>,
    leader: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let metrics = metrics.clone();
    let mut changes = leader.clone();
    tokio::spawn(async move {
        loop {
            let is_leader = *changes.borrow_and_update();
            metrics.set_leader(is_leader);
            if !is_leader {
                metrics.forget_all();
            }
            info!(leader = is_leader, "leadership");
            if changes.changed().await.is_err() {
                break;
            }
        }
    })
}
