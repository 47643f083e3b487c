//! `slokit sched`: the scheduling agent (cfs, fifo, two-level, las) over target
//! processes. Parses flags into an `AgentConfig`, wires SIGINT/SIGTERM to
//! the stop flag, prints `agent ready` once monitoring runs, and leaves the
//! rest to `slokit_sched::run_agent`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slokit_sched::agent::{
    print_ready, run_agent, AgentConfig, IdlePoll, Policy, ReadyHook, DEFAULT_AGENT_PRIORITY,
    DEFAULT_TIMER_LEAD,
};
use slokit_sched::monitor::MonitorChoice;
use slokit_sched::targets::WORKER_PREFIX;
use slokit_sched::{LasParams, PolicyParams, TwoLevelParams};
use slokit_sys::cpu::parse_cpu_list;

/// Arguments of `slokit sched`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scheduling policy: cfs, fifo, two-level or las.
    #[arg(long, value_enum, default_value_t = Policy::TwoLevel)]
    policy: Policy,
    /// Target process (repeatable). Only its threads are ever touched.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Every process of this cgroup (v2) is a target (repeatable; relative
    /// paths are under /sys/fs/cgroup).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<PathBuf>,
    /// Deadline of the requests of a target process, ms (repeatable), for
    /// two-level's Imminent rule and las's promotion.
    #[arg(long = "deadline", value_name = "PID=MS", value_parser = parse_deadline)]
    deadlines: Vec<(u32, f64)>,
    /// Known service time of a target process's requests, µs (repeatable;
    /// e.g. a profile's p99): las derives its level thresholds from them.
    #[arg(long = "service", value_name = "PID=US", value_parser = parse_service)]
    services: Vec<(u32, f64)>,
    /// Request monitor: auto (eBPF, else notify when --notify is given), ebpf, notify.
    #[arg(long, value_enum, default_value_t = MonitorChoice::Auto)]
    monitor: MonitorChoice,
    /// Unix datagram socket the notify monitor binds (hosts started with
    /// `slokit serve --notify PATH` send to it).
    #[arg(long, value_name = "PATH")]
    notify: Option<PathBuf>,
    /// c: requests allowed in SCHED_FIFO at once [default: number of function CPUs].
    #[arg(long)]
    cpus: Option<u32>,
    /// CPUs the functions run on, e.g. `1` or `1-3` [default: all but CPU 0].
    #[arg(long, value_name = "LIST")]
    function_cpus: Option<String>,
    /// CPUs the agent runs on [default: all CPUs not in --function-cpus].
    #[arg(long, value_name = "LIST")]
    agent_cpus: Option<String>,
    /// SCHED_FIFO priority of the agent's own event thread while it runs
    /// (0: stays SCHED_OTHER). Restored at exit.
    #[arg(long, default_value_t = DEFAULT_AGENT_PRIORITY)]
    agent_priority: u8,
    /// Keep the agent CPUs out of idle with SCHED_IDLE spinners, so an
    /// arrival wakes the agent with a preemption instead of waking a halted
    /// CPU (slow on a VM); they also watch the eBPF ring and wake the
    /// agent from its own CPU. auto: on for two-level (a decision waits on
    /// every arrival); off for las (none does) and the baselines.
    #[arg(long, value_enum, default_value_t = IdlePoll::Auto)]
    idle_poll: IdlePoll,
    /// two-level: arm the credit timer this many µs early and spin the
    /// rest on the agent CPU (a timerfd fires late on a VM; 0 where timers
    /// are punctual; las does not spin). At most 1000.
    #[arg(long, value_name = "US", default_value_t = DEFAULT_TIMER_LEAD.as_micros() as u64)]
    timer_lead_us: u64,
    #[command(flatten)]
    two_level: Box<TwoLevelParams>,
    #[command(flatten)]
    las: Box<LasParams>,
    /// Policy constants from a TOML file: the `[two_level]` and `[las]`
    /// tables of an experiment (`slokit compare` writes one); replaces the
    /// two-level and --las-* flags.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write the metrics JSON (schema slokit.sched-metrics/1) here at exit.
    #[arg(long, value_name = "FILE")]
    metrics_out: Option<PathBuf>,
    /// Timeline sampling period, ms.
    #[arg(long, default_value_t = 100)]
    timeline_interval_ms: u64,
    /// Seconds between one-line summaries on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    summary_every: f64,
    /// Comm prefixes of worker threads, comma-separated (e.g.
    /// `fn-worker-,gunicorn`): fifo places and las parks them before their
    /// first request. Threads seen receiving requests are workers whatever
    /// their name.
    #[arg(long, value_name = "PREFIXES", default_value = WORKER_PREFIX)]
    worker_prefix: String,
    /// Start even when the CPU check fails (a SCHED_FIFO canary that does
    /// not run on a CPU the targets may use, or one busy in the kernel
    /// while idle); a warning says so.
    #[arg(long)]
    force: bool,
}

/// `PID=VALUE` with a positive value in `unit` (`what` names it in errors,
/// `placeholder` is the flag's value name after `PID=`).
fn parse_pid_value(
    s: &str,
    what: &str,
    unit: &str,
    placeholder: &str,
) -> Result<(u32, f64), String> {
    let (pid, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PID={placeholder}, got `{s}`"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("bad pid in `{s}`"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("bad {unit} in `{s}`"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!(
            "{what} must be a positive number of {unit}, got `{s}`"
        ));
    }
    Ok((pid, value))
}

fn parse_service(s: &str) -> Result<(u32, f64), String> {
    parse_pid_value(s, "service time", "µs", "US")
}

fn read_params(path: &std::path::Path) -> anyhow::Result<PolicyParams> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --params {}", path.display()))?;
    PolicyParams::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_deadline(s: &str) -> Result<(u32, f64), String> {
    parse_pid_value(s, "deadline", "ms", "MS")
}

impl Args {
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        let function_cpus = self
            .function_cpus
            .as_deref()
            .map(parse_cpu_list)
            .transpose()
            .context("--function-cpus")?;
        let agent_cpus = self
            .agent_cpus
            .as_deref()
            .map(parse_cpu_list)
            .transpose()
            .context("--agent-cpus")?;
        let c = self.cpus.unwrap_or_else(|| {
            function_cpus
                .clone()
                .unwrap_or_else(slokit_sched::agent::default_function_cpus)
                .len() as u32
        });
        // Validated by AgentConfig::validate (before the CPU check).
        let PolicyParams { two_level, las } = match &self.params {
            Some(path) => read_params(path)?,
            None => PolicyParams {
                two_level: *self.two_level,
                las: *self.las,
            },
        };
        let params = TwoLevelParams {
            cpus: c,
            ..two_level
        };
        let duration = match self.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                anyhow::bail!("--duration must be a positive number of seconds, got {d}")
            }
            d => d.map(Duration::from_secs_f64),
        };
        let deadlines_ms: BTreeMap<u32, f64> = self.deadlines.into_iter().collect();
        Ok(AgentConfig {
            policy: self.policy,
            monitor: self.monitor,
            notify_path: self.notify,
            pids: self.pids,
            cgroups: self.cgroups,
            deadlines_ms,
            services_us: self.services.into_iter().collect(),
            params,
            las,
            function_cpus,
            agent_cpus,
            agent_priority: self.agent_priority,
            idle_poll: self.idle_poll,
            timer_lead: Duration::from_micros(self.timer_lead_us),
            duration,
            timeline_interval: Duration::from_millis(self.timeline_interval_ms.max(1)),
            summary_interval: (self.summary_every > 0.0)
                .then(|| Duration::from_secs_f64(self.summary_every)),
            worker_prefix: self.worker_prefix,
            metrics_out: self.metrics_out,
            on_ready: Some(ReadyHook(Box::new(print_ready))),
        })
    }
}

/// The CPUs the agent will use: every CPU a target's thread may run on
/// (its affinity mask) and the agent CPUs when named.
fn cpus_in_use(cfg: &AgentConfig) -> Vec<usize> {
    let mut pids = cfg.pids.clone();
    for cg in &cfg.cgroups {
        pids.extend(slokit_sched::targets::cgroup_procs(cg).unwrap_or_default());
    }
    let mut cpus: std::collections::BTreeSet<usize> =
        cfg.agent_cpus.iter().flatten().copied().collect();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tasks
            .flatten()
            .filter_map(|t| t.file_name().to_str()?.parse().ok())
        {
            cpus.extend(slokit_sys::cpu::get_affinity(tid).unwrap_or_default());
        }
    }
    cpus.into_iter().collect()
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let force = args.force;
    let cfg = args.into_config()?;
    // A bad configuration is refused before the machine is checked.
    cfg.validate()?;
    for note in slokit_sys::canary::preflight(&cpus_in_use(&cfg), force)? {
        eprintln!("slokit sched: warning: {note}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("cannot install the handler for signal {sig}"))?;
    }
    let metrics = run_agent(cfg, stop)?;
    eprintln!("{}", metrics.summary_line());
    Ok(0)
}
