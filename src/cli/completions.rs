//! `completions SHELL`: a shell completion script.

use super::{Cli, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The shell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> Outcome {
    print!("{}", script(args.shell));
    Ok(())
}

/// The completion script for `shell`, named after the binary it runs as (copied to
/// `kubectl-streamingtoken`, it completes there too).
pub fn script(shell: clap_complete::Shell) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_command() {
        let bash = script(clap_complete::Shell::Bash);
        for command in ["rotate", "status", "run", "crd", "completions", "dotenv"] {
            assert!(bash.contains(command), "bash completion lacks {command}");
        }
        let zsh = script(clap_complete::Shell::Zsh);
        for flag in ["--namespace", "--kubeconfig", "--context", "--as"] {
            assert!(zsh.contains(flag), "zsh completion lacks {flag}");
        }
    }

    #[test]
    fn kubectl_words_are_accepted() {
        use clap::Parser;
        for words in [
            &["sto", "completion", "bash"][..],
            &[
                "sto",
                "--context",
                "staging",
                "status",
                "telemetry",
                "-n",
                "prod",
            ],
            &[
                "sto",
                "status",
                "telemetry",
                "--kubeconfig",
                "/tmp/k",
                "--as",
                "jane",
            ],
            &["sto", "status", "telemetry", "-o", "json"],
        ] {
            assert!(Cli::try_parse_from(words).is_ok(), "{words:?}");
        }
        assert!(Cli::try_parse_from(["sto", "status", "x", "-o", "xml"]).is_err());
    }
}
