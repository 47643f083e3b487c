//! One measured run: start a function host per scheduled function on the
//! function CPUs, attach the scheduling agent with one policy, replay the
//! schedule open-loop, then stop agent and hosts (by pid) and collect the
//! run record and the agent's metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slokit_functions::contract::{AGENT_READY, LISTENING_ON};
use slokit_functions::record::TimelinePoint;
use slokit_functions::{RunRecord, Schedule};
use slokit_loadgen::{ClientConfig, Reporter};
use slokit_sched::metrics::AgentMetrics;
use slokit_sched::policy::CpuService;
use slokit_sched::sim::ServiceSampler;
use slokit_sched::{LasParams, Policy, PolicyParams, TwoLevelParams};
use slokit_sys::cpu::format_cpu_list as cpu_list;

use super::children::{with_affinity, ChildGuard};

/// How runs are placed and sized.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The `slokit` binary that serves functions and runs the agent.
    pub slokit: PathBuf,
    pub function_cpus: Vec<usize>,
    pub agent_cpus: Vec<usize>,
    pub workers_per_host: usize,
    pub two_level: TwoLevelParams,
    pub las: LasParams,
    /// Scratch folder for agent metrics.
    pub work_dir: PathBuf,
    /// Folder the hosts' and agents' stderr is appended to.
    pub log_dir: PathBuf,
}

impl RunSettings {
    fn all_cpus(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self
            .function_cpus
            .iter()
            .chain(&self.agent_cpus)
            .copied()
            .collect();
        all.sort_unstable();
        all
    }
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub record: RunRecord,
    pub timeline: Vec<TimelinePoint>,
    pub agent: Option<AgentMetrics>,
    /// On-CPU time per request by function label, as the agent measured
    /// it (las runs).
    pub cpu_service: HashMap<String, CpuService>,
}

/// A running host per schedule function, keyed by label.
struct Hosts {
    guards: Vec<ChildGuard>,
    urls: HashMap<String, String>,
    deadlines: Vec<(u32, f64)>,
    /// Host pid and label, for per-function facts.
    labels: Vec<(u32, String)>,
}

fn start_hosts(schedule: &Schedule, s: &RunSettings) -> anyhow::Result<Hosts> {
    let mut hosts = Hosts {
        guards: Vec::new(),
        urls: HashMap::new(),
        deadlines: Vec::new(),
        labels: Vec::new(),
    };
    for f in &schedule.functions {
        let mut cmd = Command::new(&s.slokit);
        cmd.args([
            "serve",
            "--functions",
            &f.function,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--workers", &s.workers_per_host.to_string()])
        .args(["--cpus", &cpu_list(&s.function_cpus)]);
        with_affinity(&mut cmd, s.all_cpus());
        let log = s.log_dir.join(format!("host-{}.log", f.label));
        let (guard, line) = ChildGuard::spawn_until_ready(
            &format!("host for {}", f.label),
            cmd,
            LISTENING_ON,
            Duration::from_secs(20),
            Some(&log),
        )?;
        let base = line
            .trim_start_matches(LISTENING_ON)
            .trim()
            .trim_end_matches('/')
            .to_string();
        hosts
            .urls
            .insert(f.label.clone(), format!("{base}/invoke/{}", f.function));
        if let Some(d) = f.deadline_us {
            hosts.deadlines.push((guard.pid(), d / 1e3));
        }
        hosts.labels.push((guard.pid(), f.label.clone()));
        hosts.guards.push(guard);
    }
    Ok(hosts)
}

fn start_agent(
    policy: Policy,
    hosts: &Hosts,
    services_us: &HashMap<String, f64>,
    s: &RunSettings,
    metrics: &Path,
) -> anyhow::Result<ChildGuard> {
    let mut cmd = Command::new(&s.slokit);
    // The policy constants travel as one file of the library's own type.
    let params = s.work_dir.join("agent-params.toml");
    let text = PolicyParams {
        two_level: s.two_level,
        las: s.las.clone(),
    }
    .to_toml();
    std::fs::write(&params, text).with_context(|| format!("writing {}", params.display()))?;
    cmd.args(["sched", "--policy", policy.name()])
        .args(["--function-cpus", &cpu_list(&s.function_cpus)])
        .args(["--agent-cpus", &cpu_list(&s.agent_cpus)])
        .args(["--cpus", &s.two_level.cpus.to_string()])
        .args(["--metrics-out", &metrics.display().to_string()])
        .args(["--params", &params.display().to_string()]);
    with_affinity(&mut cmd, s.all_cpus());
    for g in &hosts.guards {
        cmd.args(["--pid", &g.pid().to_string()]);
    }
    for (pid, ms) in &hosts.deadlines {
        cmd.args(["--deadline", &format!("{pid}={ms}")]);
    }
    if policy == Policy::Las {
        for (pid, label) in &hosts.labels {
            if let Some(us) = services_us.get(label) {
                cmd.args(["--service", &format!("{pid}={us}")]);
            }
        }
    }
    let log = s.log_dir.join(format!("agent-{}.log", policy.name()));
    let (guard, _) = ChildGuard::spawn_until_ready(
        &format!("scheduling agent ({})", policy.name()),
        cmd,
        AGENT_READY,
        Duration::from_secs(30),
        Some(&log),
    )?;
    Ok(guard)
}

/// Replays `schedule` once under `policy`; `services_us` are the known
/// service times (p99) per function label, for las.
pub fn run_once(
    schedule: &Schedule,
    services_us: &HashMap<String, f64>,
    policy: Policy,
    tag: &str,
    s: &RunSettings,
    stop: &Arc<AtomicBool>,
    reporter: &dyn Reporter,
) -> anyhow::Result<RunOutput> {
    let mut hosts = start_hosts(schedule, s)?;
    let metrics_path = s.work_dir.join(format!("agent-{tag}.json"));
    let mut agent = start_agent(policy, &hosts, services_us, s, &metrics_path)?;
    let cfg = ClientConfig {
        urls: hosts.urls.clone(),
        cpus: s.agent_cpus.clone(),
        stop: Some(stop.clone()),
        timeout: Duration::from_secs(30),
        grace: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let measured = slokit_loadgen::run_blocking(schedule, &cfg, reporter);
    let agent_exit = agent.stop(Duration::from_secs(10));
    for h in &mut hosts.guards {
        h.stop(Duration::from_secs(10));
    }
    let mut record = measured.context("the load generator failed")?;
    let agent_metrics = std::fs::read_to_string(&metrics_path)
        .map_err(|e| e.to_string())
        .and_then(|t| AgentMetrics::from_json(&t).map_err(|e| e.to_string()));
    record.policy = Some(policy.name().to_string());
    match agent_metrics {
        Ok(m) => {
            let cpu_service = match &m.las {
                Some(las) => hosts
                    .labels
                    .iter()
                    .filter_map(|(pid, label)| Some((label.clone(), *las.service_cpu_us.get(pid)?)))
                    .collect(),
                None => HashMap::new(),
            };
            record.monitor = Some(m.monitor.clone());
            record
                .notes
                .extend(m.notes.iter().map(|n| format!("agent: {n}")));
            if m.event_drops > 0 {
                record
                    .notes
                    .push(format!("agent: {} monitor events dropped", m.event_drops));
            }
            Ok(RunOutput {
                record,
                timeline: m.timeline.clone(),
                agent: Some(m),
                cpu_service,
            })
        }
        Err(e) => {
            record.notes.push(format!(
                "agent metrics unavailable ({e}); agent ended with {agent_exit}"
            ));
            Ok(RunOutput {
                record,
                timeline: Vec::new(),
                agent: None,
                cpu_service: HashMap::new(),
            })
        }
    }
}

/// The transport of an invocation on the idle node, measured.
#[derive(Debug, Clone)]
pub struct Transport {
    /// p99 response time of an empty invocation, µs.
    pub p99_us: f64,
    /// The whole distribution, for the simulator to add to its responses.
    pub sampler: ServiceSampler,
}

/// Measures the transport overhead of an invocation on the idle node: the
/// response time of `spin` with `ms = 0` (loopback TCP, HTTP parsing, the
/// host's hand-off), over `samples` requests sent one at a time. A
/// profile's deadline bounds *execution* time; adding the p99 turns it into
/// a bound on *response* time, which is what the load generator measures —
/// without it a 1 µs function's deadline would be unreachable over HTTP.
/// The simulator adds draws from the distribution to its response times.
pub fn transport_overhead(s: &RunSettings, samples: usize) -> anyhow::Result<Transport> {
    use slokit_functions::{Arrival, ScheduledFunction};
    let schedule = Schedule {
        source: "transport calibration".into(),
        seed: 0,
        functions: vec![ScheduledFunction {
            label: "calibration".into(),
            function: "spin".into(),
            params: serde_json::json!({ "ms": 0 }),
            service_us: None,
            deadline_us: None,
        }],
        arrivals: (0..samples as u64)
            .map(|i| Arrival::new(i * 4_000_000, 0))
            .collect(),
        extras: Vec::new(),
    };
    let mut hosts = start_hosts(&schedule, s)?;
    let cfg = ClientConfig {
        urls: hosts.urls.clone(),
        cpus: s.agent_cpus.clone(),
        ..ClientConfig::default()
    };
    let record = slokit_loadgen::run_blocking(&schedule, &cfg, &slokit_loadgen::NoReporter);
    for h in &mut hosts.guards {
        h.stop(Duration::from_secs(5));
    }
    let record = record.context("calibrating the transport overhead")?;
    let f = &record.functions[0];
    anyhow::ensure!(
        f.ok == f.invocations,
        "calibration requests failed: {} of {}",
        f.invocations - f.ok,
        f.invocations
    );
    Ok(Transport {
        p99_us: f.response_us.p99,
        sampler: ServiceSampler::from_encoded_histogram(&f.response_histogram)
            .context("reading the calibration histogram")?,
    })
}
