//! The `streaming-token-operator` binary: `run` the operator, print the `crd`, `rotate`
//! StreamingTokens, show their `status`, `check` an installation, print the `version`s and
//! shell `completions` (also the kubectl plugin `kubectl-streamingtoken`). The commands live in
//! [`streaming_token_operator::cli`].

use std::process::ExitCode;
use streaming_token_operator::cli::{execute, parse};

#[tokio::main]
async fn main() -> ExitCode {
    execute(parse()).await
}
