//! `slokit __count-instructions` (hidden): the child that `--metric
//! instructions` runs under Valgrind. It invokes one built-in function
//! inside the counted region (`slokit_profiler::instructions::region`) and
//! prints nothing; the parent reads callgrind's dumps.

use anyhow::Context;
use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_profiler::instructions::region::run_counted;

/// Arguments of `slokit __count-instructions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The built-in function.
    pub function: String,
    /// Its parameters as one JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Invocations before the counted ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Counted invocations (one callgrind dump each).
    #[arg(long, default_value_t = 1)]
    pub invocations: u64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let params: serde_json::Value = serde_json::from_str(&args.params)
        .with_context(|| format!("--params `{}` is not JSON", args.params))?;
    let mut config = CatalogueConfig::default();
    if let Ok(secret) = std::env::var("SLOKIT_AUTH_SECRET") {
        config.auth_secret = secret.into_bytes();
    }
    let catalogue = Catalogue::builtin(&config);
    let function = catalogue.require(&args.function)?;
    run_counted(function.as_ref(), &params, args.warmup, args.invocations)
        .map_err(|e| anyhow::anyhow!("`{}` failed: {e}", args.function))?;
    Ok(0)
}
