//! One measured run: start a function host per scheduled function on the
//! function CPUs (`slokit serve` for a built-in, the experiment's command
//! for an external host), attach the scheduling agent with one policy to
//! every process of them, replay the schedule open-loop, then stop agent
//! and hosts (by pid, process group and cgroup) and collect the run record
//! and the agent's metrics.

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

use super::cgroup::CgroupTree;
use super::children::{contain, ChildGuard, Containment};
use super::external::ExternalHost;
use crate::experiment::HostSpec;

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
    /// Start the agents with `--force` (compare itself was forced past a
    /// failed CPU check).
    pub force_cpu_check: bool,
    /// External function hosts by label (the experiment's `host` tables).
    pub external: HashMap<String, HostSpec>,
    /// The comparison's cgroup, holding every host's tree (None where
    /// cgroups are unavailable: process groups only).
    pub cgroups: Option<Arc<CgroupTree>>,
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

/// What the agent targets for one function label.
#[derive(Debug, Clone)]
struct HostTargets {
    label: String,
    /// Every process of the host's tree when it became ready.
    pids: Vec<u32>,
    /// Its cgroup, rescanned by the agent (processes a runtime forks later).
    cgroup: Option<PathBuf>,
    deadline_ms: Option<f64>,
}

/// A running host per schedule function, keyed by label.
struct Hosts {
    serve: Vec<ChildGuard>,
    external: Vec<ExternalHost>,
    urls: HashMap<String, String>,
    targets: Vec<HostTargets>,
}

impl Hosts {
    /// Stops every host (after the agent).
    fn stop(&mut self, grace: Duration) {
        for h in &mut self.serve {
            h.stop(grace);
        }
        for h in &mut self.external {
            h.stop(grace);
        }
    }

    /// The label a target pid belongs to.
    fn label_of(&self, pid: u32) -> Option<&str> {
        self.targets
            .iter()
            .find(|t| t.pids.contains(&pid))
            .map(|t| t.label.as_str())
    }
}

fn start_hosts(schedule: &Schedule, s: &RunSettings) -> anyhow::Result<Hosts> {
    let mut hosts = Hosts {
        serve: Vec::new(),
        external: Vec::new(),
        urls: HashMap::new(),
        targets: Vec::new(),
    };
    for f in &schedule.functions {
        let deadline_ms = f.deadline_us.map(|d| d / 1e3);
        let log = s.log_dir.join(format!("host-{}.log", f.label));
        if let Some(spec) = s.external.get(&f.label) {
            // The runtime's whole tree stays on the function CPUs; it has
            // no threads of its own that must stay off them.
            let host = ExternalHost::start(
                &f.label,
                spec,
                &f.params,
                &s.function_cpus,
                s.cgroups.as_deref(),
                &log,
            )?;
            hosts.urls.insert(f.label.clone(), host.url.clone());
            hosts.targets.push(HostTargets {
                label: f.label.clone(),
                pids: host.processes(),
                cgroup: host.cgroup_dir().map(Path::to_path_buf),
                deadline_ms,
            });
            hosts.external.push(host);
            continue;
        }
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
        let cgroup = s.cgroups.as_deref().map(|t| t.host(&f.label)).transpose()?;
        contain(&mut cmd, Containment::host(s.all_cpus(), cgroup.as_ref()));
        let (mut guard, line) = ChildGuard::spawn_until_ready(
            &format!("host for {}", f.label),
            cmd,
            LISTENING_ON,
            Duration::from_secs(20),
            Some(&log),
        )?;
        if let Some(cg) = cgroup {
            guard.adopt_cgroup(cg);
        }
        let base = line
            .trim_start_matches(LISTENING_ON)
            .trim()
            .trim_end_matches('/')
            .to_string();
        hosts
            .urls
            .insert(f.label.clone(), format!("{base}/invoke/{}", f.function));
        hosts.targets.push(HostTargets {
            label: f.label.clone(),
            pids: vec![guard.pid()],
            cgroup: None,
            deadline_ms,
        });
        hosts.serve.push(guard);
    }
    Ok(hosts)
}

/// The comm prefixes of worker threads: the host's `fn-worker-` and every
/// external host's `worker_prefix`, comma-separated for `--worker-prefix`.
fn worker_prefixes(schedule: &Schedule, s: &RunSettings) -> String {
    let mut prefixes = vec![slokit_sched::targets::WORKER_PREFIX.to_string()];
    for f in &schedule.functions {
        if let Some(p) = s
            .external
            .get(&f.label)
            .and_then(|h| h.worker_prefix.clone())
        {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    }
    prefixes.join(",")
}

fn start_agent(
    policy: Policy,
    hosts: &Hosts,
    worker_prefixes: &str,
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
        .args(["--params", &params.display().to_string()])
        .args(["--worker-prefix", worker_prefixes]);
    if s.force_cpu_check {
        cmd.arg("--force");
    }
    contain(&mut cmd, Containment::agent(s.all_cpus()));
    for t in &hosts.targets {
        for pid in &t.pids {
            cmd.args(["--pid", &pid.to_string()]);
            if let Some(ms) = t.deadline_ms {
                cmd.args(["--deadline", &format!("{pid}={ms}")]);
            }
            if policy == Policy::Las {
                if let Some(us) = services_us.get(&t.label) {
                    cmd.args(["--service", &format!("{pid}={us}")]);
                }
            }
        }
        if let Some(cg) = &t.cgroup {
            cmd.arg("--cgroup").arg(cg);
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

/// Merges per-process on-CPU service figures into one per label (counts
/// add; means and percentiles are weighted by count — the percentiles so
/// only approximately).
fn per_label(
    hosts: &Hosts,
    by_pid: &std::collections::BTreeMap<u32, CpuService>,
) -> HashMap<String, CpuService> {
    let mut out: HashMap<String, CpuService> = HashMap::new();
    for (pid, c) in by_pid {
        let Some(label) = hosts.label_of(*pid) else {
            continue;
        };
        let e = out.entry(label.to_string()).or_insert(CpuService {
            count: 0,
            mean_us: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
        });
        let n = (e.count + c.count).max(1) as f64;
        let w = |a: f64, b: f64| (a * e.count as f64 + b * c.count as f64) / n;
        *e = CpuService {
            mean_us: w(e.mean_us, c.mean_us),
            p50_us: w(e.p50_us, c.p50_us),
            p99_us: e.p99_us.max(c.p99_us),
            count: e.count + c.count,
        };
    }
    out
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
    let prefixes = worker_prefixes(schedule, s);
    let mut agent = start_agent(policy, &hosts, &prefixes, services_us, s, &metrics_path)?;
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
    hosts.stop(Duration::from_secs(10));
    let mut record = measured.context("the load generator failed")?;
    let agent_metrics = std::fs::read_to_string(&metrics_path)
        .map_err(|e| e.to_string())
        .and_then(|t| AgentMetrics::from_json(&t).map_err(|e| e.to_string()));
    record.policy = Some(policy.name().to_string());
    match agent_metrics {
        Ok(m) => {
            let cpu_service = match &m.las {
                Some(las) => per_label(&hosts, &las.service_cpu_us),
                None => HashMap::new(),
            };
            record.monitor = Some(m.monitor.clone());
            if !s.external.is_empty() {
                let sent: u64 = record.functions.iter().map(|f| f.invocations).sum();
                record.notes.push(format!(
                    "agent: saw {} of the {sent} requests sent{}",
                    m.requests_seen,
                    if m.requests_seen == sent {
                        ""
                    } else {
                        " (see docs/external-runtimes.md)"
                    }
                ));
            }
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
    hosts.stop(Duration::from_secs(5));
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
