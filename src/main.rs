//! The `streaming-token-operator` binary: `run` the operator, print the `crd`, `rotate` a
//! StreamingToken or show its `status`, print shell `completions` (also usable as the kubectl
//! plugin `kubectl-streamingtoken`). The commands live in [`streaming_token_operator::cli`].

use clap::Parser;
use std::process::ExitCode;
use streaming_token_operator::cli::{Cli, execute};

#[tokio::main]
async fn main() -> ExitCode {
    execute(Cli::parse()).await
}
