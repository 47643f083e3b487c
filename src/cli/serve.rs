//! `slokit serve`: runs the function host (`slokit_functions::host`) until
//! SIGINT or SIGTERM, then shuts it down gracefully and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use slokit_functions::contract::LISTENING_ON;
use slokit_functions::host::{self, Host, HostConfig, ShutdownSignals};
use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_loadgen::units::parse_duration;
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
    /// Time a request may take to arrive completely, from its first byte
    /// (408 after), like `10s` or `500ms`.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration)]
    pub request_timeout: Duration,
    /// Time SIGINT/SIGTERM waits for requests in flight before closing the
    /// rest, like `5s`.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Limit on request bytes (head and body) handed to workers and not yet
    /// answered, plus the memory their functions estimate they will allocate
    /// (`aes`: 4 × message length); past it, 503 with `Retry-After` (413 if
    /// one invocation's estimate alone passes it). Like `256MiB`, `64k`, `1048576`.
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_inflight_bytes: usize,
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
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            max_inflight_bytes: self.max_inflight_bytes,
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
    let mut notes = Vec::new();
    for (n, what) in [
        (stats.timed_out, "timed out (408)"),
        (stats.shed, "refused over the bytes-in-flight limit (503)"),
        (stats.cancelled, "cancelled by their client"),
        (stats.abandoned, "cut off at the drain timeout"),
        (stats.notify_dropped, "notify events dropped"),
    ] {
        if n > 0 {
            notes.push(format!("{n} {what}"));
        }
    }
    eprintln!(
        "served {} requests on {} connections{}",
        stats.requests,
        stats.connections,
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join(", "))
        }
    );
    Ok(0)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("must be above 0, like `10s`".into());
    }
    Ok(d)
}

/// A byte count: digits with an optional unit (`k`/`KiB`, `m`/`MiB`,
/// `g`/`GiB`, powers of 1024; `B` or none for bytes); above 0.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use a byte count like 1048576, 64KiB, 256MiB or 1GiB"
            ))
        }
    };
    let n: usize = digits.parse().map_err(|_| {
        format!("`{text}` is not a size; use a byte count like 1048576, 64KiB or 256MiB")
    })?;
    let bytes = n
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes == 0 {
        return Err("must be above 0, like `256MiB`".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert!(parse_size("0").unwrap_err().contains("above 0"));
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(
            positive_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(positive_duration("0s").is_err());
    }
}
