//! The scheduling agent: monitor → register → policy → actuator, in one
//! epoll loop on the agent CPUs (SFS's user-space scheduler, the seed's
//! Monitor/Register/Runtime/Controller). The policy is one
//! [`SchedPolicy`] object chosen at start (`cfs`, `fifo`, `two-level`,
//! `las`; see [`crate::policy`]); the loop only plumbs events to it and
//! applies the actions it returns. Its next wake-up is an absolute timerfd.
//!
//! Every policy runs the same monitor, so all are measured the same way.
//! Every touched thread is restored on every exit path (see [`Actuator`],
//! [`Guardian`]).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use slokit_model::record::TimelinePoint;

use crate::actuator::{Actuator, Applied};
use crate::clock::MonotonicClock;
use crate::error::SchedError;
use crate::guardian::Guardian;
use crate::idle_poll::{IdlePollers, Watch};
use crate::metrics::{AgentMetrics, LatencyStats, METRICS_SCHEMA};
use crate::monitor::ebpf::{with_ebpf_monitor, EbpfOptions};
use crate::monitor::notify::NotifyMonitor;
use crate::monitor::{Monitor, MonitorChoice};
use crate::params::TwoLevelParams;
pub use crate::policy::Policy;
use crate::policy::{
    self, Action, Cause, Completion, LasParams, Level, PolicyConfig, SchedPolicy, Thread,
};
use crate::register::{Change, Register, SocketEvent};
use crate::targets;
use slokit_sys::clock::monotonic_ns;
use slokit_sys::cpu::AffinityGuard;
use slokit_sys::poll::{Epoll, EventFd, TimerFd};
use slokit_sys::sched::{self, SchedAttr};

/// Called once when monitoring has started (the CLI prints `agent ready`).
pub struct ReadyHook(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for ReadyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadyHook")
    }
}

/// Everything the agent needs, validated by [`run_agent`].
#[derive(Debug)]
pub struct AgentConfig {
    pub policy: Policy,
    pub monitor: MonitorChoice,
    /// Unix datagram socket to bind for the notify monitor.
    pub notify_path: Option<PathBuf>,
    /// Target processes.
    pub pids: Vec<u32>,
    /// Cgroups whose processes are targets (rescanned every second).
    pub cgroups: Vec<PathBuf>,
    /// Relative deadline per target pid, ms (two-level's Imminent rule,
    /// las's promotion).
    pub deadlines_ms: BTreeMap<u32, f64>,
    /// Known service time per target pid, µs (a profile's p99): las
    /// derives its thresholds from them.
    pub services_us: BTreeMap<u32, f64>,
    /// The two-level constants (c = `params.cpus`); `fifo_priority` is the
    /// fifo baseline's too.
    pub params: TwoLevelParams,
    /// The las constants.
    pub las: LasParams,
    /// CPUs of the functions (default: all but CPU 0 when there are two or more).
    pub function_cpus: Option<Vec<usize>>,
    /// CPUs of the agent (default: all CPUs not in `function_cpus`).
    pub agent_cpus: Option<Vec<usize>>,
    /// SCHED_FIFO priority of the agent's event thread while it runs (0:
    /// stays SCHED_OTHER). Restored when the agent ends.
    pub agent_priority: u8,
    /// Keep the agent CPUs out of idle with `SCHED_IDLE` spinners
    /// ([`crate::idle_poll`]) so arrivals wake the agent fast.
    pub idle_poll: IdlePoll,
    /// two-level and las: the policy's timer is armed this much before the
    /// instant the policy asks for, and the agent spins the rest on its CPU (a
    /// timerfd fires late on a VM — docs/measurements.md — which would delay
    /// every demotion by that). Zero: no spin.
    pub timer_lead: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Timeline sampling period.
    pub timeline_interval: Duration,
    /// Period of the one-line summary on stderr (None: silent).
    pub summary_interval: Option<Duration>,
    /// Comm prefix of worker threads (parked by `las`, placed by `fifo`).
    pub worker_prefix: String,
    /// Where to write the metrics JSON at exit.
    pub metrics_out: Option<PathBuf>,
    /// Called when monitoring has started.
    pub on_ready: Option<ReadyHook>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            policy: Policy::TwoLevel,
            monitor: MonitorChoice::Auto,
            notify_path: None,
            pids: Vec::new(),
            cgroups: Vec::new(),
            deadlines_ms: BTreeMap::new(),
            services_us: BTreeMap::new(),
            params: TwoLevelParams::default(),
            las: LasParams::default(),
            function_cpus: None,
            agent_cpus: None,
            agent_priority: DEFAULT_AGENT_PRIORITY,
            idle_poll: IdlePoll::Auto,
            timer_lead: DEFAULT_TIMER_LEAD,
            duration: None,
            timeline_interval: Duration::from_millis(100),
            summary_interval: None,
            worker_prefix: targets::WORKER_PREFIX.to_string(),
            metrics_out: None,
            on_ready: None,
        }
    }
}

/// Default of [`AgentConfig::agent_priority`].
pub const DEFAULT_AGENT_PRIORITY: u8 = 50;

/// Whether the agent keeps its CPUs out of idle with `SCHED_IDLE` spinners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdlePoll {
    /// On for two-level, whose arrival → SCHED_FIFO decision they speed
    /// up; off for las (parked workers: the kernel preempts on arrival, no
    /// decision waits for the agent) and for the baselines, which only
    /// count requests. On a VM a CPU that never halts is also one the host
    /// deschedules more: with pollers, las's load generator on the same CPU
    /// ran late (docs/measurements.md).
    #[default]
    Auto,
    On,
    Off,
}

impl IdlePoll {
    /// Whether pollers run under `policy`.
    pub fn enabled(self, policy: Policy) -> bool {
        match self {
            IdlePoll::On => true,
            IdlePoll::Off => false,
            IdlePoll::Auto => policy == Policy::TwoLevel,
        }
    }
}

/// Default function CPUs: all but CPU 0 when there are two or more.
pub fn default_function_cpus() -> Vec<usize> {
    let online = slokit_sys::cpu::online_cpus();
    if online.len() >= 2 {
        online.into_iter().filter(|c| *c != 0).collect()
    } else {
        online
    }
}

impl AgentConfig {
    /// Checks the policy parameters and the timer lead — what needs no
    /// process or CPU — so a caller can refuse a bad configuration before
    /// it checks the machine ([`run_agent`] calls it too).
    pub fn validate(&self) -> Result<(), SchedError> {
        self.params
            .validate()
            .map_err(|e| SchedError::Config(format!("invalid policy parameter: {e}")))?;
        self.las
            .validate()
            .map_err(|e| SchedError::Config(format!("invalid las parameter: {e}")))?;
        if self.timer_lead > MAX_TIMER_LEAD {
            return Err(SchedError::Config(format!(
                "--timer-lead-us must be at most {}, got {}",
                MAX_TIMER_LEAD.as_micros(),
                self.timer_lead.as_micros()
            )));
        }
        Ok(())
    }
}

/// Runs the agent until `stop` is set, `cfg.duration` passes, or every
/// target exits; restores every thread it touched and returns (and writes,
/// with `metrics_out`) its metrics.
pub fn run_agent(mut cfg: AgentConfig, stop: Arc<AtomicBool>) -> Result<AgentMetrics, SchedError> {
    cfg.validate()?;
    let self_pid = std::process::id();
    let mut pids: Vec<u32> = Vec::new();
    for &pid in &cfg.pids {
        targets::validate_pid(pid, self_pid)?;
        pids.push(pid);
    }
    let mut notes = Vec::new();
    for cg in &cfg.cgroups {
        for pid in targets::cgroup_procs(cg)? {
            match targets::validate_pid(pid, self_pid) {
                Ok(()) => pids.push(pid),
                Err(e) => notes.push(format!("cgroup {}: skipped: {e}", cg.display())),
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty() {
        return Err(SchedError::Config(
            "no target processes: name them with --pid PID or --cgroup PATH".into(),
        ));
    }
    for (pid, ms) in &cfg.deadlines_ms {
        if !pids.contains(pid) {
            return Err(SchedError::Config(format!(
                "--deadline {pid}={ms}: pid {pid} is not a target (add --pid {pid})"
            )));
        }
        if !(ms.is_finite() && *ms > 0.0) {
            return Err(SchedError::Config(format!(
                "--deadline {pid}={ms}: the deadline must be a positive number of ms"
            )));
        }
    }
    for (pid, us) in &cfg.services_us {
        if !pids.contains(pid) {
            return Err(SchedError::Config(format!(
                "--service {pid}={us}: pid {pid} is not a target (add --pid {pid})"
            )));
        }
        if !(us.is_finite() && *us > 0.0) {
            return Err(SchedError::Config(format!(
                "--service {pid}={us}: the service time must be a positive number of µs"
            )));
        }
    }
    if cfg.policy == Policy::Las
        && cfg.las.top_priority >= cfg.agent_priority
        && cfg.agent_priority > 0
    {
        return Err(SchedError::Config(format!(
            "--las-top-priority {} must be below --agent-priority {}: the agent must preempt the functions it demotes",
            cfg.las.top_priority, cfg.agent_priority
        )));
    }
    let online = slokit_sys::cpu::online_cpus();
    let function_cpus = cfg
        .function_cpus
        .clone()
        .unwrap_or_else(default_function_cpus);
    let agent_cpus = cfg.agent_cpus.clone().unwrap_or_else(|| {
        let rest: Vec<usize> = online
            .iter()
            .copied()
            .filter(|c| !function_cpus.contains(c))
            .collect();
        if rest.is_empty() {
            online.clone()
        } else {
            rest
        }
    });
    if cfg.monitor == MonitorChoice::Notify && cfg.notify_path.is_none() {
        return Err(SchedError::Config(
            "--monitor notify needs --notify PATH (and the host started with `slokit serve --notify PATH`)"
                .into(),
        ));
    }
    if cfg.agent_priority > 99 {
        return Err(SchedError::Config(format!(
            "--agent-priority must be 0..=99, got {}",
            cfg.agent_priority
        )));
    }

    let idle_poll = cfg.idle_poll.enabled(cfg.policy);
    eprintln!(
        "slokit sched: policy {} on pids {:?}; function CPUs {:?}, agent CPUs {:?}; params: {}; idle poll {}, timer lead {}µs",
        cfg.policy,
        pids,
        function_cpus,
        agent_cpus,
        match cfg.policy {
            Policy::Las => cfg.las.describe(),
            _ => cfg.params.describe(),
        },
        if idle_poll { "on" } else { "off" },
        cfg.timer_lead.as_micros()
    );

    // The agent thread runs on the agent CPUs (the guardian inherits that).
    let _affinity = ThreadPlacement::apply(&agent_cpus, cfg.agent_priority)?;
    let guardian = if cfg.policy == Policy::Cfs {
        None
    } else {
        Some(Guardian::spawn()?)
    };
    let mut actuator = Actuator::new(guardian);

    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut state = LoopState::new(
        &cfg,
        &pids,
        function_cpus,
        agent_cpus,
        notes,
        started,
        started_unix_ms,
    );

    // What the policy derived at start (las's thresholds and their source).
    for note in state.policy.report().notes {
        eprintln!("slokit sched: {note}");
    }
    let mut on_ready = cfg.on_ready.take();
    let choice = cfg.monitor;
    let notify_path = cfg.notify_path.clone();
    let mut monitor_note = None;
    // Only two-level and las decide per event and meter on-CPU time; the
    // baselines only count requests, so they drain the ring on the tick and
    // skip the sched_switch accounting (the monitor's largest cost).
    let per_event = state.policy.decides_per_event();
    let ebpf_opts = EbpfOptions {
        wakeup: per_event,
        track_cpu: per_event,
        // The idle pollers watch the ring and kick the agent, so events
        // skip the ring's own wake-up while a watcher (a poller, or this
        // thread, which loads the monitor and drains it) is on its CPU.
        agent_tgid: if per_event && idle_poll {
            std::process::id()
        } else {
            0
        },
        ..EbpfOptions::default()
    };
    let outcome = {
        let mut run = |m: &mut dyn Monitor| -> Result<(), SchedError> {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                state.run(&cfg, &stop, m, &mut actuator, &mut on_ready)
            }));
            state.event_drops = m.drops();
            state.untracked_threads = m.untracked_threads();
            state.ring_nudges = m.ring_nudges();
            state.monitor = m.name().to_string();
            match r {
                Ok(r) => r,
                Err(panic) => {
                    actuator.shutdown();
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    state.exit_reason = format!("panic: {msg}");
                    let metrics = state.metrics(&cfg, &actuator);
                    if let Some(p) = &cfg.metrics_out {
                        let _ = metrics.write(p);
                    }
                    std::panic::resume_unwind(panic)
                }
            }
        };
        match (choice, notify_path) {
            (MonitorChoice::Notify, Some(path)) => {
                NotifyMonitor::bind(&path).and_then(|mut m| run(&mut m))
            }
            (MonitorChoice::Ebpf, _) => with_ebpf_monitor(ebpf_opts, &mut run)?,
            (MonitorChoice::Auto, notify) => match with_ebpf_monitor(ebpf_opts, &mut run) {
                Ok(r) => r,
                Err(SchedError::Bpf(reason)) => match notify {
                    Some(path) => {
                        eprintln!(
                                "slokit sched: eBPF monitor unavailable ({reason}); using the notify monitor at {}",
                                path.display()
                            );
                        monitor_note = Some(format!("eBPF unavailable: {reason}"));
                        NotifyMonitor::bind(&path).and_then(|mut m| run(&mut m))
                    }
                    None => {
                        return Err(SchedError::Bpf(format!(
                        "{reason}. Without eBPF, start the host with `slokit serve --notify PATH` \
                                 and the agent with `--monitor notify --notify PATH`"
                    )))
                    }
                },
                Err(e) => return Err(e),
            },
            (MonitorChoice::Notify, None) => unreachable!("checked above"),
        }
    };
    actuator.shutdown();
    state.monitor_note = monitor_note;
    if let Err(e) = &outcome {
        state.exit_reason = format!("error: {e}");
    }
    let metrics = state.metrics(&cfg, &actuator);
    if let Some(p) = &cfg.metrics_out {
        metrics.write(p)?;
    }
    outcome.map(|()| metrics)
}

/// Pins the calling thread to the agent CPUs and optionally makes it
/// SCHED_FIFO; restores both on drop.
struct ThreadPlacement {
    tid: u32,
    attr: Option<SchedAttr>,
    /// Dropped after `Drop::drop` has put the policy back.
    _affinity: AffinityGuard,
}

impl ThreadPlacement {
    fn apply(cpus: &[usize], priority: u8) -> Result<Self, SchedError> {
        let tid = sched::gettid();
        let affinity = AffinityGuard::pin_current(cpus).map_err(|e| {
            SchedError::sys(
                format!("cannot pin the agent to CPUs {cpus:?} (check --agent-cpus)"),
                e,
            )
        })?;
        let mut placement = ThreadPlacement {
            tid,
            attr: None,
            _affinity: affinity,
        };
        if priority > 0 {
            let original =
                sched::get_attr(tid).map_err(|e| SchedError::sys("sched_getattr(agent)", e))?;
            sched::set_attr(tid, &SchedAttr::fifo(priority)).map_err(|e| {
                SchedError::Permission {
                    tid,
                    policy: "SCHED_FIFO (the agent's own thread, --agent-priority)",
                    source: e,
                }
            })?;
            placement.attr = Some(original);
        }
        Ok(placement)
    }
}

impl Drop for ThreadPlacement {
    fn drop(&mut self) {
        if let Some(a) = self.attr.take() {
            let _ = sched::set_attr(self.tid, &a);
        }
        // the affinity guard restores the mask as the fields drop
    }
}

/// Names the failed system call in a [`SchedError::Sys`].
fn sys_err(what: &'static str) -> impl FnOnce(std::io::Error) -> SchedError {
    move |e| SchedError::sys(what, e)
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds")
}

const MONITOR: u64 = 1;
const CREDIT: u64 = 2;
const TICK: u64 = 3;
const KICK: u64 = 4;

/// Default of [`AgentConfig::timer_lead`].
pub const DEFAULT_TIMER_LEAD: Duration = Duration::from_micros(60);

/// The longest [`AgentConfig::timer_lead`] accepted: the spin is a FIFO
/// busy-wait on the agent CPU.
pub const MAX_TIMER_LEAD: Duration = Duration::from_millis(1);

/// The loop's state; becomes the metrics.
struct LoopState {
    kind: Policy,
    policy: Box<dyn SchedPolicy>,
    monitor: String,
    monitor_note: Option<String>,
    pids: Vec<u32>,
    live: HashSet<u32>,
    function_cpus: Vec<usize>,
    agent_cpus: Vec<usize>,
    started: Instant,
    started_unix_ms: u64,
    exit_reason: String,
    register: Register,
    requests_seen: u64,
    requests_completed: u64,
    requests_abandoned: u64,
    events: u64,
    event_drops: u64,
    untracked_threads: u64,
    ring_nudges: u64,
    arrival_to_fifo: Histogram<u64>,
    arrival_to_agent: Histogram<u64>,
    exhausted_to_demoted: Histogram<u64>,
    /// las: reply sent → thread parked at the top again.
    repark: Histogram<u64>,
    timeline: Vec<TimelinePoint>,
    notes: Vec<String>,
}

impl LoopState {
    fn new(
        cfg: &AgentConfig,
        pids: &[u32],
        function_cpus: Vec<usize>,
        agent_cpus: Vec<usize>,
        notes: Vec<String>,
        started: Instant,
        started_unix_ms: u64,
    ) -> Self {
        let policy_cfg = PolicyConfig {
            two_level: cfg.params,
            las: cfg.las.clone(),
            deadlines_ns: cfg
                .deadlines_ms
                .iter()
                .map(|(pid, ms)| (*pid, (ms * 1e6) as u64))
                .collect(),
            services_us: cfg.services_us.iter().map(|(p, us)| (*p, *us)).collect(),
        };
        LoopState {
            kind: cfg.policy,
            policy: policy::build(cfg.policy, &policy_cfg, MonotonicClock),
            monitor: String::new(),
            monitor_note: None,
            pids: pids.to_vec(),
            live: pids.iter().copied().collect(),
            function_cpus,
            agent_cpus,
            started,
            started_unix_ms,
            exit_reason: "signal".into(),
            register: Register::new(),
            requests_seen: 0,
            requests_completed: 0,
            requests_abandoned: 0,
            events: 0,
            event_drops: 0,
            untracked_threads: 0,
            ring_nudges: 0,
            arrival_to_fifo: latency_histogram(),
            arrival_to_agent: latency_histogram(),
            exhausted_to_demoted: latency_histogram(),
            repark: latency_histogram(),
            timeline: Vec::new(),
            notes,
        }
    }

    fn run(
        &mut self,
        cfg: &AgentConfig,
        stop: &AtomicBool,
        m: &mut dyn Monitor,
        act: &mut Actuator,
        on_ready: &mut Option<ReadyHook>,
    ) -> Result<(), SchedError> {
        for &pid in &self.pids {
            m.add_target(pid)?;
        }
        let epoll = Epoll::new().map_err(sys_err("epoll_create1"))?;
        let credit = TimerFd::new().map_err(sys_err("timerfd_create"))?;
        let tick = TimerFd::new().map_err(sys_err("timerfd_create"))?;
        for (fd, token) in [(m.fd(), MONITOR), (credit.fd(), CREDIT), (tick.fd(), TICK)] {
            epoll.add(fd, token).map_err(sys_err("epoll_ctl(ADD)"))?;
        }
        tick.set_periodic(cfg.timeline_interval.as_nanos().max(1_000_000) as u64)
            .map_err(sys_err("timerfd_settime"))?;
        // The idle pollers also watch the monitor's ring and kick the agent
        // on its own CPU when an event lands (see idle_poll.rs).
        let kick = if cfg.idle_poll.enabled(cfg.policy) {
            let kick = Arc::new(EventFd::new().map_err(sys_err("eventfd"))?);
            epoll
                .add(kick.fd(), KICK)
                .map_err(sys_err("epoll_ctl(ADD)"))?;
            Some(kick)
        } else {
            None
        };
        // Stopped and joined when this function returns.
        let _idle_pollers = match &kick {
            Some(kick) => {
                let watch = m.ring_positions()?.map(|positions| Watch {
                    positions,
                    kick: kick.clone(),
                });
                Some(IdlePollers::start(&self.agent_cpus, watch)?)
            }
            None => None,
        };
        // Only a policy whose wake-ups are deadlines to the µs (two-level's
        // credit) is worth a busy-wait at the agent's priority on its CPU,
        // where the load generator runs too.
        let lead_ns = if self.policy.punctual_timers() {
            cfg.timer_lead.as_nanos() as u64
        } else {
            0
        };
        let per_event = self.policy.decides_per_event();
        let mut actions: Vec<Action> = Vec::new();
        self.find_workers(cfg, &mut actions);
        self.apply(&mut actions, act)?;
        self.policy.after_apply(m);
        if let Some(hook) = on_ready.take() {
            (hook.0)();
        }
        let mut tokens = Vec::new();
        let mut events: Vec<SocketEvent> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut last_scan = Instant::now();
        let mut last_summary = Instant::now();
        // When the policy wants on_timer next (0: never).
        let mut armed_at = 0u64;
        loop {
            epoll.wait(&mut tokens, -1).map_err(sys_err("epoll_wait"))?;
            for &t in &tokens {
                match t {
                    MONITOR => self.drain(m, &mut events, &mut changes, &mut actions)?,
                    KICK => {
                        if let Some(kick) = &kick {
                            kick.drain();
                        }
                        self.drain(m, &mut events, &mut changes, &mut actions)?;
                    }
                    CREDIT => {
                        credit.drain();
                        if per_event {
                            // Armed the timer lead early: wait out the rest
                            // on the CPU, then act on time.
                            // (Bounded: never more than the lead.)
                            let spin_from = monotonic_ns();
                            if armed_at.saturating_sub(spin_from) <= lead_ns {
                                while armed_at > monotonic_ns() {
                                    std::hint::spin_loop();
                                }
                            }
                            self.policy.on_timer(m, &mut actions);
                        }
                    }
                    TICK => {
                        tick.drain();
                        self.drain(m, &mut events, &mut changes, &mut actions)?;
                        self.sample();
                        if last_scan.elapsed() >= Duration::from_secs(1) {
                            last_scan = Instant::now();
                            self.rescan(cfg, m, &mut actions)?;
                        }
                        if let Some(every) = cfg.summary_interval {
                            if last_summary.elapsed() >= every {
                                last_summary = Instant::now();
                                self.event_drops = m.drops();
                                eprintln!("{}", self.progress_line(act));
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.apply(&mut actions, act)?;
            if per_event {
                // After the actions: CPU-time reads are system calls.
                self.policy.after_apply(m);
                armed_at = self.policy.next_wakeup(m).unwrap_or(0);
                match armed_at {
                    0 => credit.disarm(),
                    at => credit.set_at(at.saturating_sub(lead_ns)),
                }
                .map_err(sys_err("timerfd_settime"))?;
            }
            if stop.load(Ordering::Relaxed) {
                self.exit_reason = "signal".into();
                break;
            }
            if cfg.duration.is_some_and(|d| self.started.elapsed() >= d) {
                self.exit_reason = "duration".into();
                break;
            }
            if self.live.is_empty() {
                self.exit_reason = "targets exited".into();
                break;
            }
        }
        self.drain(m, &mut events, &mut changes, &mut actions)?;
        self.sample();
        Ok(())
    }

    /// Moves the monitor's waiting events through the register and the
    /// policy.
    fn drain(
        &mut self,
        m: &mut dyn Monitor,
        events: &mut Vec<SocketEvent>,
        changes: &mut Vec<Change>,
        actions: &mut Vec<Action>,
    ) -> Result<(), SchedError> {
        m.drain(events)?;
        if events.is_empty() {
            return Ok(());
        }
        // One clock read per batch: every event in it is handled now.
        let now = monotonic_ns();
        self.events += events.len() as u64;
        for e in events.drain(..) {
            self.register.on_event(&e, changes);
        }
        for c in changes.drain(..) {
            self.on_change(c, now, m, actions);
        }
        Ok(())
    }

    fn on_change(&mut self, c: Change, now: u64, m: &dyn Monitor, actions: &mut Vec<Action>) {
        match c {
            Change::Started(r) => {
                self.requests_seen += 1;
                let seen_after = now.saturating_sub(r.start_ns);
                self.arrival_to_agent.saturating_record(seen_after.max(1));
                self.policy.on_arrival(&r, m, actions);
            }
            Change::Ended {
                request,
                end_ns,
                sender_tid,
            } => {
                self.requests_completed += 1;
                let c = Completion {
                    request,
                    sender_tid,
                    end_ns,
                    replied: true,
                };
                self.policy.on_completion(&c, actions);
            }
            Change::Abandoned(r) => {
                self.requests_abandoned += 1;
                self.abandon(r, now, actions);
            }
        }
    }

    fn abandon(&mut self, r: crate::register::Request, now: u64, actions: &mut Vec<Action>) {
        let c = Completion {
            request: r,
            sender_tid: r.tid,
            end_ns: now,
            replied: false,
        };
        self.policy.on_completion(&c, actions);
    }

    /// Applies the policy's actions; a vanished thread is reported back to
    /// the policy (which may free a slot and yield more actions).
    fn apply(&mut self, actions: &mut Vec<Action>, act: &mut Actuator) -> Result<(), SchedError> {
        while !actions.is_empty() {
            let batch: Vec<Action> = std::mem::take(actions);
            for a in batch {
                let applied = match a.level {
                    Level::Fifo(priority) => act.set_fifo(a.tgid, a.tid, priority)?,
                    Level::Other => act.set_normal(a.tid)?,
                };
                if applied == Applied::Vanished {
                    self.policy.on_vanished(a.tid, a.request, actions);
                    continue;
                }
                self.policy.on_applied(&a);
                let (histogram, since) = match (a.cause, a.level) {
                    (Cause::Arrival { arrival_ns }, Level::Fifo(_)) => {
                        (&mut self.arrival_to_fifo, arrival_ns)
                    }
                    (Cause::Exhausted { at_ns }, _) => (&mut self.exhausted_to_demoted, at_ns),
                    (Cause::Repark { reply_ns }, _) => (&mut self.repark, reply_ns),
                    _ => continue,
                };
                let lat = monotonic_ns().saturating_sub(since);
                histogram.saturating_record(lat.max(1));
            }
        }
        Ok(())
    }

    /// Worker threads (by the host's naming contract) of every live target,
    /// handed to the policy (`fifo` places them, `las` parks them).
    fn find_workers(&mut self, cfg: &AgentConfig, actions: &mut Vec<Action>) {
        let threads: Vec<Thread> = self
            .live
            .iter()
            .flat_map(|&pid| {
                targets::threads_named(pid, &cfg.worker_prefix)
                    .into_iter()
                    .map(move |tid| Thread { tgid: pid, tid })
            })
            .collect();
        if !threads.is_empty() {
            self.policy.on_threads(&threads, actions);
        }
    }

    /// Once a second: targets that exited, new cgroup members, new workers.
    fn rescan(
        &mut self,
        cfg: &AgentConfig,
        m: &mut dyn Monitor,
        actions: &mut Vec<Action>,
    ) -> Result<(), SchedError> {
        let gone: Vec<u32> = self
            .live
            .iter()
            .copied()
            .filter(|p| !targets::alive(*p))
            .collect();
        for pid in gone {
            self.live.remove(&pid);
            self.notes.push(format!(
                "target {pid} exited after {:.1}s",
                self.started.elapsed().as_secs_f64()
            ));
            let now = monotonic_ns();
            for r in self.register.forget_process(pid) {
                self.requests_abandoned += 1;
                self.abandon(r, now, actions);
            }
        }
        let self_pid = std::process::id();
        for cg in &cfg.cgroups {
            let Ok(procs) = targets::cgroup_procs(cg) else {
                continue;
            };
            for pid in procs {
                if !self.pids.contains(&pid) && targets::validate_pid(pid, self_pid).is_ok() {
                    m.add_target(pid)?;
                    self.pids.push(pid);
                    self.live.insert(pid);
                }
            }
        }
        self.find_workers(cfg, actions);
        Ok(())
    }

    fn sample(&mut self) {
        let p = self.policy.snapshot();
        self.timeline.push(TimelinePoint {
            t_s: self.started.elapsed().as_secs_f64(),
            slice_ms: p.slice_ms,
            queue_len: p.queue_len,
            fifo_holders: p.fifo_holders,
            demoted: p.demoted,
        });
    }

    fn progress_line(&self, act: &Actuator) -> String {
        let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        let snap = self.policy.snapshot();
        format!(
            "slokit sched: t={:.0}s {} requests={} active={} fifo={} queue={} demoted={} S={:.2}ms \
             drops={} vanished={} arrival→fifo p99={:.0}µs exhausted→demoted p99={:.0}µs",
            self.started.elapsed().as_secs_f64(),
            self.kind,
            self.requests_seen,
            self.register.active(),
            act.fifo_threads(),
            snap.queue_len,
            snap.demoted,
            snap.slice_ms,
            self.event_drops,
            act.stats().vanished_threads,
            q(&self.arrival_to_fifo, 0.99),
            q(&self.exhausted_to_demoted, 0.99),
        )
    }

    fn metrics(&self, cfg: &AgentConfig, act: &Actuator) -> AgentMetrics {
        let report = self.policy.report();
        let t = report.transitions;
        let mut notes = self.notes.clone();
        notes.extend(report.notes);
        if self.untracked_threads > 0 {
            notes.push(format!(
                "{} target threads found the CPU-time map full: their credit was not metered",
                self.untracked_threads
            ));
        }
        if self.policy.decides_per_event() && self.monitor == "notify" {
            notes.push(
                "notify monitor: credit read from /proc schedstat (precise to one scheduler tick)"
                    .into(),
            );
        }
        AgentMetrics {
            schema: METRICS_SCHEMA.into(),
            slokit_version: env!("CARGO_PKG_VERSION").into(),
            policy: self.kind.name().into(),
            monitor: self.monitor.clone(),
            monitor_note: self.monitor_note.clone(),
            params: cfg.params,
            targets: self.pids.clone(),
            deadlines_ms: cfg.deadlines_ms.clone(),
            function_cpus: self.function_cpus.clone(),
            agent_cpus: self.agent_cpus.clone(),
            agent_priority: cfg.agent_priority,
            agent_idle_poll: cfg.idle_poll.enabled(cfg.policy),
            agent_timer_lead_us: cfg.timer_lead.as_micros() as u64,
            started_unix_ms: self.started_unix_ms,
            duration_s: self.started.elapsed().as_secs_f64(),
            exit_reason: self.exit_reason.clone(),
            requests_seen: self.requests_seen,
            requests_completed: self.requests_completed,
            requests_abandoned: self.requests_abandoned,
            requests_active_at_exit: self.register.active() as u64,
            events: self.events,
            event_drops: self.event_drops,
            untracked_threads: self.untracked_threads,
            ring_nudges: self.ring_nudges,
            transitions: t,
            demotions: t.demotions(),
            promotions: t.promotions,
            overload_demotions: t.overload_demotions,
            fifo_threads: report.fifo_threads,
            setattr_calls: act.stats().setattr_calls,
            vanished_threads: act.stats().vanished_threads,
            arrival_to_fifo_us: LatencyStats::of(&self.arrival_to_fifo),
            arrival_to_agent_us: LatencyStats::of(&self.arrival_to_agent),
            exhausted_to_demoted_us: LatencyStats::of(&self.exhausted_to_demoted),
            las: report.las,
            las_params: (self.kind == Policy::Las).then(|| cfg.las.clone()),
            repark_us: LatencyStats::of(&self.repark),
            timeline: self.timeline.clone(),
            notes,
        }
    }
}

/// Prints `agent ready` on stdout, flushed (the compare command waits for it).
pub fn print_ready() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", slokit_model::contract::AGENT_READY);
    let _ = out.flush();
}
