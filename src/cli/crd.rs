//! `crd [PLURAL]`: the CustomResourceDefinitions as YAML.

use super::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// `streamingtokens` or `clusterstreamingtokens` (default: both, as two documents).
    #[arg(value_parser = ["streamingtokens", "clusterstreamingtokens"])]
    pub plural: Option<String>,
}

pub fn run(args: &Args) -> Outcome {
    match args.plural.as_deref() {
        Some("streamingtokens") => print!("{}", crate::crd_yaml()),
        Some(_) => print!("{}", crate::cluster_crd_yaml()),
        None => print!("{}---\n{}", crate::crd_yaml(), crate::cluster_crd_yaml()),
    }
    Ok(())
}
