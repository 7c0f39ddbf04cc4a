//! The command line: one file per command, over shared argument groups (how to reach the
//! cluster, which object, how to print). `run` runs the operator; the others are for people and
//! act with the caller's own credentials, so the API server's RBAC decides what each may do.
//! The binary also works as the kubectl plugin `kubectl streamingtoken`: installed (or copied)
//! as `kubectl-streamingtoken` on the PATH, its help and usage say `kubectl streamingtoken`.

mod check;
mod completions;
mod crd;
mod dotenv;
mod dry_run;
mod operator;
mod rotate;
mod run;
mod status;
mod version;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kube::Client;
use std::ffi::OsString;
use std::process::ExitCode;

/// The file name kubectl finds a plugin by (`kubectl streamingtoken` runs it).
pub const PLUGIN_BINARY: &str = "kubectl-streamingtoken";
/// How kubectl users type the plugin, as help and usage show it.
pub const PLUGIN_COMMAND: &str = "kubectl streamingtoken";

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
    /// Ask for one rotation of StreamingTokens now: by name, `-l SELECTOR`, `--all`, `-A`
    /// (sets each one's `streamingtoken.io/rotate` annotation; the spec, which a GitOps tool
    /// may own, is left alone).
    Rotate(rotate::Args),
    /// Print this CLI's version and the running operator's (its leader's, from its Lease).
    Version(version::Args),
    /// Check that the CRDs are the ones this CLI expects, the operator leads and is Ready, and
    /// you may rotate; fails if any check fails.
    Check(check::Args),
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
    /// One YAML document, for scripts and people.
    Yaml,
}

impl Output {
    /// Prints `value` as one JSON or YAML document (a table is each command's own).
    pub fn print(self, value: &impl serde::Serialize) -> Outcome {
        match self {
            Output::Yaml => print!("{}", serde_norway::to_string(value)?),
            Output::Json | Output::Table => println!("{}", serde_json::to_string_pretty(value)?),
        }
        Ok(())
    }
}

/// The command line of this process. Run as the kubectl plugin (`kubectl-streamingtoken`),
/// help and usage say `kubectl streamingtoken`.
pub fn parse() -> Cli {
    parse_from(std::env::args_os())
}

/// The command line `args` (the first one the program's path), as [`parse`] reads it; exits
/// with clap's message and code on a wrong one, or after printing help.
pub fn parse_from(args: impl IntoIterator<Item = impl Into<OsString>>) -> Cli {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = command_for(args.first()).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// The clap command, named as the program was invoked.
fn command_for(program: Option<&OsString>) -> clap::Command {
    let command = Cli::command();
    let as_plugin = program
        .and_then(|program| std::path::Path::new(program).file_stem())
        .is_some_and(|stem| stem == PLUGIN_BINARY);
    if as_plugin {
        command
            .bin_name(PLUGIN_COMMAND)
            .display_name(PLUGIN_COMMAND)
    } else {
        command
    }
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
        Command::Rotate(args) => rotate::run(&args, &connect).await,
        Command::Version(args) => version::run(&args, &connect).await,
        Command::Check(args) => check::run(&args, &connect).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the API server said, for people: its message (kube's own text repeats the whole
/// status), else the error.
pub fn api_said(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        _ => error.to_string(),
    }
}

/// The consumers of `writer` in `namespace` (labelled, or named by `streamingtoken.io/tokens`),
/// as the operator observes them.
async fn consumers_in(
    client: &Client,
    namespace: &str,
    writer: &crate::model::consumer::Writer,
    env_var: &str,
    secret: &str,
) -> Result<Vec<crate::model::consumer::ConsumerObservation>, Box<dyn std::error::Error>> {
    // Every consumer: the annotation naming more tokens cannot be selected by the API server.
    let cached = crate::workload::list_every(client, namespace, crate::api::TOKEN_LABEL).await?;
    let mut consumers: Vec<_> = cached
        .iter()
        .filter(|workload| workload.reads(&writer.name))
        .map(|workload| workload.observe(env_var, secret, writer))
        .collect();
    consumers.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(consumers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sto").chain(words.iter().copied()))
    }

    fn rotate(words: &[&str]) -> rotate::Args {
        match parses(words).map(|cli| cli.command) {
            Ok(Command::Rotate(args)) => args,
            Ok(_) => panic!("{words:?} is not rotate"),
            Err(error) => panic!("{words:?}: {error}"),
        }
    }

    #[test]
    fn rotate_selects_as_kubectl_does() {
        let named = rotate(&["rotate", "a", "b", "-n", "prod", "--wait"]);
        assert_eq!(named.names, ["a", "b"]);
        assert_eq!(named.namespace.as_deref(), Some("prod"));
        let labelled = rotate(&["rotate", "-l", "env=prod", "-A", "--wait"]);
        assert_eq!(labelled.selector.as_deref(), Some("env=prod"));
        assert!(labelled.all_namespaces && labelled.names.is_empty());
        let every = rotate(&["rotate", "--all", "--all-namespaces", "--dry-run"]);
        assert!(every.all && every.all_namespaces && every.dry_run);
        let cluster = rotate(&["rotate", "--cluster", "--selector", "tier=gold"]);
        assert!(cluster.cluster && cluster.selector.is_some());
        assert!(rotate(&["rotate", "--cluster", "--all"]).all);
        let long = rotate(&["rotate", "x", "--timeout", "90s", "--request", "leak-42"]);
        assert_eq!(long.timeout, std::time::Duration::from_secs(90));
        assert_eq!(long.request.as_deref(), Some("leak-42"));
    }

    #[test]
    fn rotate_refuses_a_selection_that_is_missing_or_ambiguous() {
        for words in [
            &["rotate"][..],
            &["rotate", "-A"],
            &["rotate", "-n", "prod"],
            &["rotate", "a", "-l", "env=prod"],
            &["rotate", "a", "--all"],
            &["rotate", "--all", "-l", "env=prod"],
            &["rotate", "a", "-A"],
            &["rotate", "--all", "-A", "-n", "prod"],
            &["rotate", "--all", "-A", "--cluster"],
            &["rotate", "a", "--wait", "--dry-run"],
            &["rotate", "a", "--timeout", "soon"],
        ] {
            assert!(parses(words).is_err(), "{words:?} was accepted");
        }
    }

    #[test]
    fn every_printing_command_takes_yaml() {
        for words in [
            &["status", "st", "-o", "yaml"][..],
            &["status", "fleet", "--cluster", "-o", "yaml"],
            &["version", "-o", "yaml"],
            &["version", "--client", "-o", "json"],
            &["check", "-o", "yaml", "--operator-namespace", "ops"],
            &["check", "-A", "--lease-name", "sto", "-o", "json"],
            &["check", "--cluster"],
        ] {
            assert!(parses(words).is_ok(), "{words:?}");
        }
        assert!(parses(&["check", "-A", "-n", "prod"]).is_err());
        assert!(parses(&["version", "-o", "xml"]).is_err());
    }

    #[test]
    fn as_a_kubectl_plugin_help_and_usage_say_kubectl_streamingtoken() {
        for program in [
            "/home/me/.krew/bin/kubectl-streamingtoken",
            "kubectl-streamingtoken",
            "C:\\krew\\bin\\kubectl-streamingtoken.exe",
        ] {
            let program = OsString::from(program.replace('\\', "/"));
            let mut command = command_for(Some(&program));
            command.build();
            assert!(
                command
                    .render_usage()
                    .to_string()
                    .contains("kubectl streamingtoken [OPTIONS] <COMMAND>"),
                "{program:?}: {}",
                command.render_usage()
            );
            let rotate = command
                .find_subcommand_mut("rotate")
                .expect("rotate")
                .render_usage()
                .to_string();
            assert!(rotate.contains("kubectl streamingtoken rotate"), "{rotate}");
        }
        let mut command = command_for(Some(&OsString::from("/usr/bin/streaming-token-operator")));
        command.build();
        assert!(
            command
                .render_usage()
                .to_string()
                .contains("streaming-token-operator [OPTIONS]")
        );
        let cli = parse_from(["kubectl-streamingtoken", "status", "st", "-n", "prod"]);
        assert!(matches!(cli.command, Command::Status(_)));
    }

    #[test]
    fn yaml_and_json_print_the_same_document() {
        let value = serde_json::json!({"clientVersion": "1.2.3", "checks": [{"name": "a"}]});
        let yaml = serde_norway::to_string(&value).expect("YAML");
        let back: serde_json::Value = serde_norway::from_str(&yaml).expect("parses");
        assert_eq!(back, value);
    }
}
