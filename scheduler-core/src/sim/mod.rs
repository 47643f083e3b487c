//! The simulator: the scheduling policies of slokit in a discrete-event
//! model of c CPUs, plus the SRPT oracle, so a 64-CPU node can be studied on
//! a 2-CPU machine and every real policy can be held against a lower bound
//! (DESIGN.md, "The scheduler", Simulator).
//!
//! Jobs are CPU-bound: an invocation needs its service time of CPU and
//! nothing else. Policies:
//!
//! - `two-level` and `las` — the agent's own policy objects
//!   ([`crate::runtime::Runtime`], [`crate::policy::las::Las`], built by
//!   [`crate::policy::build`]) driven over a model of the kernel's
//!   scheduling classes (SCHED_FIFO priorities, the fair class as processor
//!   sharing, RT throttling); see [`kernel`].
//! - `fifo` — c servers, run to completion in arrival order (M/G/c FCFS;
//!   the reference model of every worker in `SCHED_FIFO` at one priority).
//! - `ps` — processor sharing: each of n jobs gets min(1, c/n) of a CPU
//!   (the fluid model of CFS/EEVDF).
//! - `srpt` — preemptive shortest remaining processing time with known
//!   service times: the c jobs with least remaining work run. Optimal for
//!   mean response time on one CPU (Schrage 1968), the reference on c.
//!
//! Every engine is event-driven (binary heaps; PS advanced analytically in
//! virtual time), with no time step. Output is a [`RunRecord`] of kind
//! `simulated`, the same schema the load generator writes for measured
//! runs; with [`SimConfig::transport`] every response time also carries
//! one draw of the loopback HTTP round trip, as measured ones do.

mod fifo;
pub(crate) mod kernel;
pub mod mix;
mod ps;
pub mod service;
mod srpt;
pub mod theory;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slokit_model::record::{RunKind, TimelinePoint, RUN_SCHEMA};
use slokit_model::{Environment, FunctionRecorder, Outcome, RunRecord, Sample, Schedule, VERSION};

use crate::clock::MockClock;
use crate::policy::{self, LasParams, Policy, PolicyConfig, PolicyReport};
use crate::TwoLevelParams;

pub use mix::{Horizon, MixEntry, PoissonMix};
pub use service::{parse_duration_us, parse_label_durations, ServiceModel, ServiceSampler};

/// What can go wrong setting up a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid schedule: {0}")]
    Schedule(String),
    #[error("invalid two-level parameters: {0}")]
    Params(String),
    #[error("invalid las parameters: {0}")]
    Las(String),
    #[error("the simulation needs at least one CPU (--cpus 1 or more)")]
    NoCpus,
    #[error(
        "function `{label}` has no service time: the schedule carries none for it; \
         give it a sampler (for example --service {label}=exp:1ms)"
    )]
    NoServiceTime { label: String },
    #[error("arrival {arrival} has service time {value} µs; it must be finite and ≥ 0")]
    InvalidServiceTime { arrival: usize, value: f64 },
    #[error("invalid {what} `{input}`: {reason}")]
    Spec {
        what: &'static str,
        input: String,
        reason: String,
    },
}

/// The modelled policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum SimPolicy {
    Fifo,
    #[value(alias = "cfs")]
    Ps,
    #[value(alias = "twolevel", alias = "two_level")]
    TwoLevel,
    Las,
    Srpt,
}

impl SimPolicy {
    /// Every policy, in report order.
    pub const ALL: [SimPolicy; 5] = [
        SimPolicy::Fifo,
        SimPolicy::Ps,
        SimPolicy::TwoLevel,
        SimPolicy::Las,
        SimPolicy::Srpt,
    ];

    /// The name used on the command line and in run records.
    pub fn name(self) -> &'static str {
        match self {
            SimPolicy::Fifo => "fifo",
            SimPolicy::Ps => "ps",
            SimPolicy::TwoLevel => "two-level",
            SimPolicy::Las => "las",
            SimPolicy::Srpt => "srpt",
        }
    }

    /// The agent's policy object this one runs through the kernel model
    /// (`None`: a reference model of its own).
    pub fn agent_policy(self) -> Option<Policy> {
        match self {
            SimPolicy::TwoLevel => Some(Policy::TwoLevel),
            SimPolicy::Las => Some(Policy::Las),
            SimPolicy::Fifo | SimPolicy::Ps | SimPolicy::Srpt => None,
        }
    }

    /// Whether the run has a timeline (the policies of the kernel model).
    pub fn has_timeline(self) -> bool {
        self.agent_policy().is_some()
    }
}

impl fmt::Display for SimPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimPolicy {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        <SimPolicy as clap::ValueEnum>::from_str(s.trim(), false).map_err(|_| SimError::Spec {
            what: "policy",
            input: s.trim().to_string(),
            reason: "choose fifo, ps, two-level, las or srpt".into(),
        })
    }
}

/// How to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of CPUs c in the model. Overrides `params.cpus`, so the
    /// controller computes S = mean IAT × this c.
    pub cpus: u32,
    pub policy: SimPolicy,
    /// Two-level constants (`fifo_priority` too; ignored by the others).
    pub params: TwoLevelParams,
    /// las constants (ignored by the other policies).
    pub las: LasParams,
    /// Known service time per function label, µs (e.g. a profile's p99),
    /// given to las for its thresholds as the agent gets them; labels the
    /// schedule does not have are ignored.
    pub services_us: HashMap<String, f64>,
    /// RT throttling of the kernel model: real-time threads may use
    /// `rt_runtime_us` of every `rt_period_us` (the sysctls
    /// `sched_rt_runtime_us`, `sched_rt_period_us`); `rt_runtime_us ≥
    /// rt_period_us` means no throttling.
    pub rt_runtime_us: u64,
    pub rt_period_us: u64,
    /// When set, every simulated response time gets one independent draw
    /// of it added (µs; seeded from `seed`): measured response times
    /// include the loopback HTTP round trip, so simulated ones must too.
    pub transport: Option<ServiceSampler>,
    /// Seed of the service-time (and transport) draws (service times given
    /// by the schedule are used as they are).
    pub seed: u64,
    /// Simulated time between timeline points (two-level, las), ms.
    pub timeline_interval_ms: f64,
}

/// `sched_rt_runtime_us` and `sched_rt_period_us` of a stock kernel.
pub const DEFAULT_RT_RUNTIME_US: u64 = 950_000;
pub const DEFAULT_RT_PERIOD_US: u64 = 1_000_000;

impl SimConfig {
    /// `policy` on `cpus` CPUs with default parameters, the kernel's
    /// default RT throttling, no transport time, seed 0 and a timeline
    /// point every 100 ms.
    pub fn new(cpus: u32, policy: SimPolicy) -> Self {
        SimConfig {
            cpus,
            policy,
            params: TwoLevelParams::default(),
            las: LasParams::default(),
            services_us: HashMap::new(),
            rt_runtime_us: DEFAULT_RT_RUNTIME_US,
            rt_period_us: DEFAULT_RT_PERIOD_US,
            transport: None,
            seed: 0,
            timeline_interval_ms: 100.0,
        }
    }

    /// Whether the kernel model throttles real-time threads.
    pub fn throttles(&self) -> bool {
        self.rt_runtime_us < self.rt_period_us
    }
}

/// Exact totals of a simulation, beside the histogram-based record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimTotals {
    pub arrivals: u64,
    pub completed: u64,
    /// Sum of the service times, µs.
    pub work_us: f64,
    /// CPU time the model handed out (∫ busy CPUs dt), µs; equals
    /// `work_us` in a work-conserving, loss-free run.
    pub busy_us: f64,
    /// Exact mean response time over all invocations, µs.
    pub mean_response_us: f64,
    /// Last completion, seconds after the start.
    pub makespan_s: f64,
}

/// The result of one simulation.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// Kind `simulated`, policy = [`SimPolicy::name`], monitor none.
    pub record: RunRecord,
    /// The policy's snapshot over simulated time (two-level: S, queue
    /// length, FIFO holders, demoted requests; las: first threshold,
    /// requests in real-time levels and in the fair class); empty for the
    /// reference policies.
    pub timeline: Vec<TimelinePoint>,
    pub totals: SimTotals,
    /// The policy object's report (two-level's transitions, las's levels);
    /// `None` for the reference policies.
    pub policy_report: Option<PolicyReport>,
}

/// The jobs of a run in struct-of-arrays form (ns, f64).
#[derive(Debug, Clone)]
pub(crate) struct Jobs {
    pub arrival_ns: Vec<f64>,
    pub arrival_raw_ns: Vec<u64>,
    pub service_ns: Vec<f64>,
    /// Absolute deadline, ns (∞ when the function has none).
    pub deadline_ns: Vec<f64>,
    /// The schedule's function of each job (tgid − 1 in the kernel model).
    pub function: Vec<u32>,
    /// Relative deadline of each function, ns.
    pub fn_deadline_ns: Vec<Option<u64>>,
    /// Label of each function.
    pub fn_labels: Vec<String>,
}

impl Jobs {
    pub fn len(&self) -> usize {
        self.arrival_ns.len()
    }

    fn new(schedule: &Schedule, services_us: &[f64]) -> Self {
        let n = schedule.arrivals.len();
        let mut jobs = Jobs {
            arrival_ns: Vec::with_capacity(n),
            arrival_raw_ns: Vec::with_capacity(n),
            service_ns: Vec::with_capacity(n),
            deadline_ns: Vec::with_capacity(n),
            function: Vec::with_capacity(n),
            fn_deadline_ns: schedule
                .functions
                .iter()
                .map(|f| f.deadline_us.map(|d| (d * 1e3).round() as u64))
                .collect(),
            fn_labels: schedule.functions.iter().map(|f| f.label.clone()).collect(),
        };
        for (a, s) in schedule.arrivals.iter().zip(services_us) {
            let at = a.at_ns as f64;
            jobs.arrival_ns.push(at);
            jobs.arrival_raw_ns.push(a.at_ns);
            jobs.service_ns.push(s * 1e3);
            jobs.function.push(a.function);
            let d = schedule.functions[a.function as usize].deadline_us;
            jobs.deadline_ns
                .push(d.map_or(f64::INFINITY, |d| at + d * 1e3));
        }
        jobs
    }
}

/// What an engine returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineRun {
    /// Completion time of each job, ns.
    pub completion_ns: Vec<f64>,
    /// ∫ busy CPUs dt, ns.
    pub busy_ns: f64,
    pub timeline: Vec<TimelinePoint>,
    /// Lines for the record's notes (the kernel model's and the policy's).
    pub notes: Vec<String>,
    /// The policy object's report (kernel-model policies only).
    pub report: Option<PolicyReport>,
}

/// ChaCha stream of the transport draws (service times use stream 1, the
/// built-in mix's arrivals stream 0).
const TRANSPORT_STREAM: u64 = 2;

/// A heap key ordered by time, then id (then a tag), with a total order on
/// f64 so it can live in a `BinaryHeap` / `BTreeSet`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub t: f64,
    pub id: u32,
    pub tag: u32,
}

impl Key {
    pub fn new(t: f64, id: u32) -> Self {
        Key { t, id, tag: 0 }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.t
            .total_cmp(&other.t)
            .then(self.id.cmp(&other.id))
            .then(self.tag.cmp(&other.tag))
    }
}

fn run_engine(jobs: &Jobs, cfg: &SimConfig, params: &TwoLevelParams) -> EngineRun {
    match cfg.policy.agent_policy() {
        Some(p) => run_kernel(jobs, cfg, params, p),
        None => match cfg.policy {
            SimPolicy::Fifo => fifo::run(jobs, cfg.cpus),
            SimPolicy::Ps => ps::run(jobs, cfg.cpus),
            SimPolicy::Srpt => srpt::run(jobs, cfg.cpus),
            SimPolicy::TwoLevel | SimPolicy::Las => unreachable!("agent policies"),
        },
    }
}

/// What the agent's policy object is built from: two-level's constants
/// with c = the model's CPUs, las's, and per process (tgid = function
/// index + 1) the schedule's deadlines and the known service times.
pub(crate) fn policy_config(jobs: &Jobs, cfg: &SimConfig, params: &TwoLevelParams) -> PolicyConfig {
    let tgid = |f: usize| f as u32 + 1;
    PolicyConfig {
        two_level: *params,
        las: cfg.las.clone(),
        deadlines_ns: jobs
            .fn_deadline_ns
            .iter()
            .enumerate()
            .filter_map(|(f, d)| d.map(|d| (tgid(f), d)))
            .collect(),
        services_us: jobs
            .fn_labels
            .iter()
            .enumerate()
            .filter_map(|(f, label)| cfg.services_us.get(label).map(|us| (tgid(f), *us)))
            .collect(),
    }
}

/// Runs the agent's `policy` object over the kernel model.
fn run_kernel(jobs: &Jobs, cfg: &SimConfig, params: &TwoLevelParams, policy: Policy) -> EngineRun {
    let pc = policy_config(jobs, cfg, params);
    let clock = MockClock::new(0);
    let mut object = policy::build(policy, &pc, clock.clone());
    let kc = kernel::KernelConfig::new(
        cfg.cpus,
        cfg.rt_runtime_us,
        cfg.rt_period_us,
        cfg.timeline_interval_ms * 1e6,
    );
    let out = kernel::run(jobs, &kc, object.as_mut(), &clock);
    let mut run = out.run;
    let st = out.stats;
    run.notes.push(format!(
        "kernel model: the {} policy object over SCHED_FIFO priorities (a higher one preempts, \
         FIFO order within one) and the fair class as processor sharing on the CPUs real-time \
         threads leave free; one thread per invocation; policy actions applied instantly",
        object.name()
    ));
    run.notes.push(if kc.throttle.is_some() {
        format!(
            "RT throttling: real-time threads share a budget of {} CPUs × {} µs per {} µs \
             (aggregate over the CPUs); throttled in {} periods, {:.1} ms in all",
            cfg.cpus,
            cfg.rt_runtime_us,
            cfg.rt_period_us,
            st.throttled_periods,
            st.throttled_ns / 1e6
        )
    } else {
        "RT throttling: off (rt_runtime ≥ rt_period)".to_string()
    });
    let report = object.report();
    if policy == Policy::TwoLevel {
        let c = report.transitions;
        run.notes.push(format!(
            "two-level transitions: embarked {}, credit demotions {}, overload demotions {}, \
             promotions {}, imminent demotions {}",
            c.embarked,
            c.credit_demotions,
            c.overload_demotions,
            c.promotions,
            c.imminent_demotions
        ));
    }
    if let Some(m) = &report.las {
        run.notes.push(format!(
            "las levels (priorities {:?}, then SCHED_OTHER): reached {:?}; promotions {}",
            m.priorities, m.reached, m.promotions
        ));
    }
    run.notes.extend(report.notes.iter().cloned());
    run.report = Some(report);
    run
}

/// Simulates `schedule` under `cfg.policy` on `cfg.cpus` CPUs. Service times
/// come from the schedule or from `services` (see [`ServiceModel::draw`]);
/// deadlines from the schedule's functions. Deterministic for a seed.
pub fn simulate(
    schedule: &Schedule,
    services: &ServiceModel,
    cfg: &SimConfig,
) -> Result<SimOutput, SimError> {
    schedule.validate().map_err(SimError::Schedule)?;
    if cfg.cpus == 0 {
        return Err(SimError::NoCpus);
    }
    let params = TwoLevelParams {
        cpus: cfg.cpus,
        ..cfg.params
    };
    params.validate().map_err(SimError::Params)?;
    if cfg.policy == SimPolicy::Las {
        cfg.las.validate().map_err(SimError::Las)?;
    }
    if cfg.rt_period_us == 0 {
        return Err(SimError::Spec {
            what: "RT period",
            input: "0".into(),
            reason: "must be at least 1 µs".into(),
        });
    }
    if let Some((label, us)) = cfg
        .services_us
        .iter()
        .find(|(_, us)| !(us.is_finite() && **us > 0.0))
    {
        return Err(SimError::Spec {
            what: "known service time",
            input: format!("{label}={us}"),
            reason: "must be a positive number of µs".into(),
        });
    }
    if !(cfg.timeline_interval_ms.is_finite() && cfg.timeline_interval_ms > 0.0) {
        return Err(SimError::Spec {
            what: "timeline interval",
            input: cfg.timeline_interval_ms.to_string(),
            reason: "must be a positive number of milliseconds".into(),
        });
    }
    let services_us = services.draw(schedule, cfg.seed)?;
    let jobs = Jobs::new(schedule, &services_us);
    let run = run_engine(&jobs, cfg, &params);
    Ok(assemble(schedule, &jobs, &services_us, cfg, &params, run))
}

fn assemble(
    schedule: &Schedule,
    jobs: &Jobs,
    services_us: &[f64],
    cfg: &SimConfig,
    params: &TwoLevelParams,
    run: EngineRun,
) -> SimOutput {
    let mut recorders: Vec<FunctionRecorder> = schedule
        .functions
        .iter()
        .map(|f| FunctionRecorder::new(&f.label, &f.function, f.deadline_us))
        .collect();
    let mut sum_response_ns = 0.0;
    let mut makespan_ns = 0.0f64;
    let mut completed = 0u64;
    let mut transport = cfg.transport.as_ref().map(|s| {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(TRANSPORT_STREAM);
        (s, rng)
    });
    for (i, a) in schedule.arrivals.iter().enumerate() {
        let done = run.completion_ns[i];
        if done.is_finite() {
            completed += 1;
        }
        makespan_ns = makespan_ns.max(done);
        let extra_ns = transport
            .as_mut()
            .map_or(0.0, |(s, rng)| s.sample(rng).max(0.0) * 1e3);
        let response_ns = done - jobs.arrival_ns[i] + extra_ns;
        sum_response_ns += response_ns;
        let response_us = (response_ns / 1e3).round() as u64;
        recorders[a.function as usize].record(&Sample {
            outcome: Outcome::Ok,
            response_us,
            response_uncorrected_us: response_us,
            exec_us: Some(services_us[i].round() as u64),
            service_us: Some(services_us[i]),
        });
    }
    let n = schedule.arrivals.len();
    let work_us: f64 = services_us.iter().sum();
    let mut notes = vec![format!(
        "simulated on a model of {} CPUs; service times: seed {} (schedule values used where given)",
        cfg.cpus, cfg.seed
    )];
    notes.push(match &cfg.transport {
        Some(s) => format!(
            "transport: one draw of {s} added to every response time (seed {}): \
             the loopback HTTP round trip measured responses include",
            cfg.seed
        ),
        None => "transport: none added (response = completion − arrival)".into(),
    });
    notes.extend(run.notes.iter().cloned());
    match cfg.policy {
        SimPolicy::TwoLevel => notes.push(format!("two-level parameters: {}", params.describe())),
        SimPolicy::Las => notes.push(format!("las parameters: {}", cfg.las.describe())),
        SimPolicy::Srpt => notes.push(
            "srpt knows every service time in advance: an oracle, the lower bound on mean \
             response time for c = 1 and the reference for c > 1"
                .into(),
        ),
        SimPolicy::Ps => notes.push("ps: each of n jobs gets min(1, c/n) of a CPU".into()),
        SimPolicy::Fifo => notes.push("fifo: run to completion in arrival order".into()),
    }
    let record = RunRecord {
        schema: RUN_SCHEMA.to_string(),
        slokit_version: VERSION.to_string(),
        kind: RunKind::Simulated,
        policy: Some(cfg.policy.name().to_string()),
        monitor: None,
        source: schedule.source.clone(),
        seed: schedule.seed,
        environment: Environment {
            slokit_version: VERSION.to_string(),
            cpu_model: Some(format!("simulated: {} CPUs", cfg.cpus)),
            logical_cpus: cfg.cpus as usize,
            ..Environment::default()
        },
        started_unix_ms: 0,
        duration_s: makespan_ns / 1e9,
        functions: recorders.iter().map(FunctionRecorder::stats).collect(),
        send: None,
        notes,
    };
    SimOutput {
        record,
        timeline: run.timeline,
        policy_report: run.report,
        totals: SimTotals {
            arrivals: n as u64,
            completed,
            work_us,
            busy_us: run.busy_ns / 1e3,
            mean_response_us: if n == 0 {
                0.0
            } else {
                sum_response_ns / n as f64 / 1e3
            },
            makespan_s: makespan_ns / 1e9,
        },
    }
}

#[cfg(test)]
mod tests;
