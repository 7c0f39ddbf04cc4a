//! `version`: this CLI's version and the running operator's, as its leader publishes it on its
//! leader-election Lease (see [`crate::leadership`]). No leader: `unknown (no leader: ...)`,
//! exit 0; a Lease the caller may not read: the reason, exit 1.

use super::operator::{self, Locate};
use super::{Connect, Outcome, Output};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Print this CLI's version only (no cluster needed).
    #[arg(long)]
    pub client: bool,
    #[command(flatten)]
    pub locate: Locate,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(args: &Args, connect: &Connect) -> Outcome {
    let client_version = crate::leadership::VERSION;
    if args.client {
        return match args.output {
            Output::Table => {
                println!("Client    {client_version}");
                Ok(())
            }
            _ => args.output.print(&json!({"clientVersion": client_version})),
        };
    }
    let found = match connect.client().await {
        Ok(client) => operator::find(&client, &args.locate).await,
        Err(error) => Err(error.to_string()),
    };
    let operators = found.as_deref().unwrap_or_default();
    if args.output != Output::Table {
        args.output.print(&json!({
            "clientVersion": client_version,
            "operators": operators,
        }))?;
        return found.map(|_| ()).map_err(Into::into);
    }
    println!("Client    {client_version}");
    match &found {
        Ok(operators) if operators.is_empty() => {
            println!("Operator  unknown ({})", operator::none_found(&args.locate));
        }
        Ok(operators) => {
            for operator in operators {
                println!("Operator  {}", operator.version_line());
            }
        }
        Err(error) => println!("Operator  unknown ({error})"),
    }
    found.map(|_| ()).map_err(Into::into)
}
