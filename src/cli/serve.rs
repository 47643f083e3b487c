//! `slokit serve`: runs the function host (`slokit_functions::host`) until
//! SIGINT or SIGTERM, then shuts it down gracefully and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use slokit_functions::contract::LISTENING_ON;
use slokit_functions::host::{self, Host, HostConfig, ShutdownSignals};
use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_sys::cpu::{format_cpu_list, parse_cpu_list};

/// Arguments of `slokit serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Functions to host, comma-separated (default: every built-in one).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub functions: Vec<String>,
    /// Address to listen on; port 0 picks a free port (the `listening on`
    /// line names it).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Worker threads (default: one per worker CPU, else 4).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// CPUs for the workers, like `1` or `1-3,5`; the acceptor and poller
    /// run on the other CPUs.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Unix datagram socket to send arrival/completion events to.
    #[arg(long, value_name = "PATH")]
    pub notify: Option<PathBuf>,
    /// HS256 secret for `auth`'s JWT tokens.
    #[arg(long, env = "SLOKIT_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
}

impl Args {
    /// Validates the options into the host's configuration and catalogue.
    fn into_config(self) -> anyhow::Result<(HostConfig, Catalogue)> {
        let mut catalogue_config = CatalogueConfig::default();
        if let Some(secret) = self.auth_secret {
            catalogue_config.auth_secret = secret.into_bytes();
        }
        let builtin = Catalogue::builtin(&catalogue_config);
        let catalogue = if self.functions.is_empty() {
            builtin
        } else {
            builtin.select(&self.functions).context("--functions")?
        };
        let worker_cpus = self
            .cpus
            .as_deref()
            .map(parse_cpu_list)
            .transpose()
            .context("--cpus")?;
        let workers = self
            .workers
            .unwrap_or_else(|| worker_cpus.as_ref().map_or(host::DEFAULT_WORKERS, Vec::len));
        let config = HostConfig {
            listen: self.listen,
            workers,
            worker_cpus,
            notify: self.notify,
            ..HostConfig::default()
        };
        Ok((config, catalogue))
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (config, catalogue) = args.into_config()?;
    // Before any host thread exists, so all of them inherit the mask.
    let signals = ShutdownSignals::block().context("blocking SIGINT/SIGTERM")?;
    let names = catalogue.names().join(",");
    let workers = config.workers;
    let pinned = config.worker_cpus.is_some();
    let running = Host::start(config, catalogue)?;
    if pinned && running.service_cpus().is_none() {
        eprintln!(
            "warning: --cpus covers every CPU, so the acceptor and poller share them with the \
             workers (a fifo policy may starve them); leave at least one CPU out"
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{LISTENING_ON} http://{}", running.local_addr())?;
    out.flush()?;
    drop(out);
    eprintln!(
        "serving {names} with {workers} workers (tids {:?}){}",
        running.worker_tids(),
        match running.service_cpus() {
            Some(cpus) => format!("; acceptor and poller on CPUs {}", format_cpu_list(cpus)),
            None => String::new(),
        }
    );
    let sig = signals.wait().context("waiting for SIGINT/SIGTERM")?;
    eprintln!("{}: shutting down", host::signal_name(sig));
    let stats = running.shutdown();
    eprintln!(
        "served {} requests on {} connections{}",
        stats.requests,
        stats.connections,
        if stats.notify_dropped > 0 {
            format!("; {} notify events dropped", stats.notify_dropped)
        } else {
            String::new()
        }
    );
    Ok(0)
}
