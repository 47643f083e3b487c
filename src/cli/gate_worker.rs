//! `slokit gate-worker` (hidden): the child process of `gate --against`
//! that runs a built-in function on request and prints its times. The
//! protocol and the measuring live in `slokit_profiler::gate::worker`.

use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_profiler::gate::worker::serve;

/// Arguments of `slokit gate-worker`: none but the `auth` secret; the
/// request arrives on stdin.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HS256 secret for `auth`'s JWT tokens.
    #[arg(long, env = "SLOKIT_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut config = CatalogueConfig::default();
    if let Some(s) = args.auth_secret {
        config.auth_secret = s.into_bytes();
    }
    let catalogue = Catalogue::builtin(&config);
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    serve(&catalogue, stdin, stdout)?;
    Ok(0)
}
