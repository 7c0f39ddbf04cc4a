//! The command line: one file per command, over shared argument groups (how to reach the
//! cluster, which object, how to print). `run` runs the operator; the others are for people and
//! act with the caller's own credentials, so the API server's RBAC decides what each may do.
//! The binary also works as the kubectl plugin `kubectl-streamingtoken`.

mod completions;
mod crd;
mod dotenv;
mod dry_run;
mod rotate;
mod run;
mod status;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::Client;
use std::process::ExitCode;

/// What a command returns: an error is printed as one line, and the exit code is 1.
pub type Outcome = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "streaming-token-operator",
    version,
    about = "Mirrors and safely rotates streaming token pairs"
)]
pub struct Cli {
    #[command(flatten)]
    pub connect: Connect,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout, for
    /// example `streaming-token-operator completions bash > /etc/bash_completion.d/sto`.
    #[command(alias = "completion")]
    Completions(completions::Args),
    /// Print the token a local environment should use (Token 2, which the next rotation keeps)
    /// as a dotenv line, if RBAC lets you read the mirror Secret; records an Event naming you.
    Dotenv(dotenv::Args),
    /// Show a StreamingToken: its pair, its rotation, and where every consumer stands.
    Status(status::Args),
    /// Run the operator.
    Run(Box<run::Args>),
    /// Print the CustomResourceDefinitions (YAML; both, or the one named).
    Crd(crd::Args),
    /// Ask for one rotation of a StreamingToken now (sets its `streamingtoken.io/rotate`
    /// annotation; the spec, which a GitOps tool may own, is left alone).
    Rotate(rotate::Args),
}

/// How to reach the cluster, as kubectl says it (every command but `run`, which uses its
/// ServiceAccount or the environment's kubeconfig).
#[derive(Args, Clone, Debug, Default)]
pub struct Connect {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Act as this user (impersonation; needs `impersonate` rights).
    #[arg(long = "as", global = true)]
    pub impersonate: Option<String>,
}

impl Connect {
    /// A client as these options say; the in-cluster configuration when there is no
    /// kubeconfig.
    pub async fn client(&self) -> Result<Client, Box<dyn std::error::Error>> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|error| format!("reading {}: {error}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        if let Some(user) = &self.impersonate {
            config.auth_info.impersonate = Some(user.clone());
        }
        Ok(Client::try_from(config)?)
    }
}

/// Which object a command is about.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Name of the StreamingToken (or, with --cluster, of the ClusterStreamingToken).
    pub name: String,
    /// Namespace of the StreamingToken (default: the kubeconfig's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// NAME is a ClusterStreamingToken.
    #[arg(long)]
    pub cluster: bool,
}

impl Target {
    /// The namespace of a StreamingToken: the one given, else the client's default.
    pub fn namespace_or_default(&self, client: &Client) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    }
}

/// How a command prints what it shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    #[default]
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// Runs the command line.
pub async fn execute(cli: Cli) -> ExitCode {
    let connect = cli.connect;
    let result = match cli.command {
        Command::Completions(args) => completions::run(&args),
        Command::Crd(args) => crd::run(&args),
        Command::Run(args) => run::run(*args).await,
        Command::Dotenv(args) => dotenv::run(&args, &connect).await,
        Command::Status(args) => status::run(&args, &connect).await,
        Command::Rotate(args) if args.dry_run => dry_run::run(&args.target, &connect).await,
        Command::Rotate(args) => rotate::run(&args, &connect).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The labelled consumers of `token_name` in `namespace`, as the operator observes them.
async fn consumers_in(
    client: &Client,
    namespace: &str,
    token_name: &str,
    env_var: &str,
    secret: &str,
) -> Result<Vec<crate::model::consumer::ConsumerObservation>, Box<dyn std::error::Error>> {
    let selector = format!("{}={token_name}", crate::api::TOKEN_LABEL);
    let cached = crate::workload::list_every(client, namespace, &selector).await?;
    let mut consumers: Vec<_> = cached
        .iter()
        .map(|workload| workload.observe(env_var, secret))
        .collect();
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(consumers)
}
