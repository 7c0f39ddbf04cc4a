//! The `streaming-token-operator` binary: `run` the operator, print the `crd`, `rotate` a
//! StreamingToken or show its `status`, print shell `completions` (also usable as the kubectl
//! plugin `kubectl-streamingtoken`).

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use streaming_token_operator::{cli, server};

#[derive(Parser)]
#[command(
    name = "streaming-token-operator",
    version,
    about = "Mirrors and safely rotates streaming token pairs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout, for
    /// example `streaming-token-operator completions bash > /etc/bash_completion.d/sto`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the token a local environment should use (Token 2, which the next rotation keeps)
    /// as a dotenv line, if RBAC lets you read the mirror Secret; records an Event naming you.
    Dotenv {
        /// Name of the StreamingToken.
        name: String,
        /// Namespace of the StreamingToken (default: the kubeconfig's namespace).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Variable to print (default: the StreamingToken's spec.consumers.envVar).
        #[arg(long)]
        variable: Option<String>,
    },
    /// Show a StreamingToken: its pair, its rotation, and where every consumer stands.
    Status {
        /// Name of the StreamingToken.
        name: String,
        /// Namespace of the StreamingToken (default: the kubeconfig's namespace).
        #[arg(short, long)]
        namespace: Option<String>,
        /// NAME is a ClusterStreamingToken.
        #[arg(long)]
        cluster: bool,
        /// Output format: `table` or `json`.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Run the operator.
    Run {
        /// Serve only these namespaces (repeatable). Default: all namespaces.
        #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Which kinds to serve: `StreamingToken`, `ClusterStreamingToken` (only when every
        /// namespace is served), or both (the default).
        #[arg(long, env = "SERVE_KINDS", value_delimiter = ',', default_values_t = ["StreamingToken".to_string(), "ClusterStreamingToken".to_string()], value_parser = ["StreamingToken", "ClusterStreamingToken"])]
        kinds: Vec<String>,
        /// Serve only the ClusterStreamingTokens matching this label selector (to split them
        /// between operator instances).
        #[arg(long, env = "CLUSTER_TOKEN_SELECTOR")]
        cluster_token_selector: Option<String>,
        /// Elect a leader among replicas through a coordination.k8s.io Lease; only the leader writes.
        #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
        leader_elect: bool,
        /// Name of the leader-election Lease.
        #[arg(long, env = "LEASE_NAME", default_value = "streaming-token-operator")]
        lease_name: String,
        /// Namespace of the leader-election Lease (defaults to the pod's namespace).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Seconds a leader's lease stays valid without renewal (failover happens after it lapses).
        #[arg(long, default_value_t = 15)]
        lease_duration_seconds: u64,
        /// Identity of this replica (defaults to the pod name, or the host name and process id).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Address of the /metrics, /healthz and /readyz server.
        #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "127.0.0.1:8080")]
        metrics_bind_address: std::net::SocketAddr,
        /// Log format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the CustomResourceDefinitions (YAML; both, or the one named).
    Crd {
        /// `streamingtokens` or `clusterstreamingtokens` (default: both, as two documents).
        #[arg(value_parser = ["streamingtokens", "clusterstreamingtokens"])]
        plural: Option<String>,
    },
    /// Ask for one rotation of a StreamingToken now (sets its `streamingtoken.io/rotate`
    /// annotation; the spec, which a GitOps tool may own, is left alone).
    Rotate {
        /// Name of the StreamingToken.
        name: String,
        /// Namespace of the StreamingToken (default: the kubeconfig's namespace).
        #[arg(short, long)]
        namespace: Option<String>,
        /// NAME is a ClusterStreamingToken.
        #[arg(long)]
        cluster: bool,
        /// Request value to set (default: `manual-<current time>`); each new value asks for one
        /// rotation.
        #[arg(long, alias = "trigger")]
        request: Option<String>,
        /// Follow the rotation to its end, printing its phases.
        #[arg(long)]
        wait: bool,
        /// Print what the rotation would do to each consumer, and change nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Give up waiting after this long (for example 30m).
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
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

/// The completion script for `shell`, named after the binary it runs as (copied to
/// `kubectl-streamingtoken`, it completes there too).
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let name = std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().to_string())
        })
        .unwrap_or_else(|| "streaming-token-operator".into());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    String::from_utf8_lossy(&script).to_string()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { plural } => {
            match plural.as_deref() {
                Some("streamingtokens") => print!("{}", streaming_token_operator::crd_yaml()),
                Some(_) => print!("{}", streaming_token_operator::cluster_crd_yaml()),
                None => print!(
                    "{}---\n{}",
                    streaming_token_operator::crd_yaml(),
                    streaming_token_operator::cluster_crd_yaml()
                ),
            }
            Ok(())
        }
        Command::Run {
            namespaces,
            kinds,
            cluster_token_selector,
            leader_elect,
            lease_name,
            lease_namespace,
            lease_duration_seconds,
            identity,
            metrics_bind_address,
            log_format,
        } => {
            init_logging(log_format);
            server::run(server::Options {
                namespaces,
                serve_namespaced: kinds.iter().any(|kind| kind == "StreamingToken"),
                serve_cluster: kinds.iter().any(|kind| kind == "ClusterStreamingToken"),
                cluster_token_selector,
                leader_elect,
                lease_name,
                lease_namespace,
                lease_duration_seconds,
                identity,
                metrics_bind_address,
            })
            .await
        }
        Command::Rotate {
            name,
            namespace,
            cluster,
            dry_run: true,
            ..
        } => cli::rotate_dry_run(&name, namespace.as_deref(), cluster).await,
        Command::Dotenv {
            name,
            namespace,
            variable,
        } => cli::dotenv(&name, namespace.as_deref(), variable).await,
        Command::Rotate {
            name,
            namespace,
            cluster,
            request,
            wait,
            timeout,
            ..
        } => {
            cli::rotate(
                &name,
                namespace.as_deref(),
                cluster,
                request,
                wait,
                &timeout,
            )
            .await
        }
        Command::Status {
            name,
            namespace,
            cluster,
            output,
        } => cli::status(&name, namespace.as_deref(), cluster, output == "json").await,
        Command::Completions { shell } => {
            print!("{}", completions(shell));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_command() {
        let bash = completions(clap_complete::Shell::Bash);
        for command in ["rotate", "status", "run", "crd", "completions", "dotenv"] {
            assert!(bash.contains(command), "bash completion lacks {command}");
        }
        assert!(completions(clap_complete::Shell::Zsh).contains("--namespace"));
    }
}
