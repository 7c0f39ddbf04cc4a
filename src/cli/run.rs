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
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter(
        std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV)
            .ok()
            .as_deref(),
    ));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `RUST_LOG` (default `info`), except where a library could print a Secret's body: the HTTP and
/// client layers stay at info whatever it says (at debug and trace they may log request and
/// response bodies), and kube's client module at error (it logs a whole response it cannot
/// decode at warn).
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let mut filter = rust_log
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    for directive in [
        "kube_client=info",
        "kube_client::client=error",
        "hyper=info",
        "hyper_util=info",
        "tower=info",
        "rustls=info",
        "reqwest=info",
    ] {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use std::sync::{Arc, Mutex};

    /// What a subscriber with the operator's filter prints.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// kube's client logs a whole response it cannot decode (a Secret's, tokens included) at
    /// warn: silenced at every RUST_LOG, while other warnings still print.
    #[test]
    fn no_library_prints_a_secret_body_at_any_level() {
        let sentinel = "SENTINEL-token-c2VjcmV0";
        for rust_log in [
            None,
            Some("trace"),
            Some("kube_client=trace,trace"),
            Some("warn"),
        ] {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(log_filter(rust_log))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::warn!(target: "kube_client::client", "{{\"data\":{{\"token1\":\"{sentinel}\"}}}}, Error(\"invalid\")");
                tracing::trace!(target: "hyper::proto", "body {sentinel}");
                tracing::warn!(target: "streaming_token_operator::controller", "a warning that prints");
            });
            let output = String::from_utf8_lossy(
                &captured
                    .0
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            )
            .to_string();
            assert!(
                !output.contains(sentinel),
                "RUST_LOG={rust_log:?}: {output}"
            );
            assert!(
                output.contains("a warning that prints"),
                "RUST_LOG={rust_log:?}: the filter silences too much: {output}"
            );
        }
    }
}
