//! `run`: the operator itself.

use super::Outcome;
use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Serve only these namespaces (repeatable). Default: all namespaces.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Which kinds to serve: `StreamingToken`, `ClusterStreamingToken` (only when every
    /// namespace is served), or both (the default).
    #[arg(long, env = "SERVE_KINDS", value_delimiter = ',', default_values_t = ["StreamingToken".to_string(), "ClusterStreamingToken".to_string()], value_parser = ["StreamingToken", "ClusterStreamingToken"])]
    pub kinds: Vec<String>,
    /// Serve only the ClusterStreamingTokens matching this label selector (to split them
    /// between operator instances).
    #[arg(long, env = "CLUSTER_TOKEN_SELECTOR")]
    pub cluster_token_selector: Option<String>,
    /// Elect a leader among replicas through a coordination.k8s.io Lease; only the leader writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "streaming-token-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a leader's lease stays valid without renewal (failover happens after it lapses).
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Identity of this replica (defaults to the pod name, or the host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "127.0.0.1:8080")]
    pub metrics_bind_address: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub async fn run(args: Args) -> Outcome {
    init_logging(args.log_format);
    crate::server::run(crate::server::Options {
        serve_namespaced: args.kinds.iter().any(|kind| kind == "StreamingToken"),
        serve_cluster: args
            .kinds
            .iter()
            .any(|kind| kind == "ClusterStreamingToken"),
        namespaces: args.namespaces,
        cluster_token_selector: args.cluster_token_selector,
        leader_elect: args.leader_elect,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_duration_seconds: args.lease_duration_seconds,
        identity: args.identity,
        metrics_bind_address: args.metrics_bind_address,
    })
    .await
}

fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Whatever RUST_LOG says, the HTTP and client layers stay at info: at debug and trace they
    // may log request and response bodies, and a Secret's body holds the tokens.
    for directive in [
        "kube_client=info",
        "hyper=info",
        "hyper_util=info",
        "tower=info",
        "rustls=info",
    ] {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
