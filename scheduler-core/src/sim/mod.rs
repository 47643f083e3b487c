//! The simulator: the scheduling policies of slokit in a discrete-event
//! model of c CPUs, plus the SRPT oracle, so a 64-CPU node can be studied on
//! a 2-CPU machine and every real policy can be held against a lower bound
//! (DESIGN.md, "The scheduler", Simulator).
//!
//! Jobs are CPU-bound: an invocation needs its service time of CPU and
//! nothing else. Policies:
//!
//! - `fifo` — c servers, run to completion in arrival order (M/G/c FCFS;
//!   the model of every worker in `SCHED_FIFO` at one priority).
//! - `ps` — processor sharing: each of n jobs gets min(1, c/n) of a CPU
//!   (the fluid model of CFS/EEVDF).
//! - `two-level` — slokit's FIFO→CFS policy with the agent's own states and
//!   parameters ([`TwoLevelParams`], S from [`crate::SliceController`]); see
//!   [`two_level`].
//! - `srpt` — preemptive shortest remaining processing time with known
//!   service times: the c jobs with least remaining work run. Optimal for
//!   mean response time on one CPU (Schrage 1968), the reference on c.
//!
//! Every engine is event-driven (binary heaps; PS advanced analytically in
//! virtual time), with no time step, so 10^6 invocations take about a
//! second. Output is a [`RunRecord`] of kind `simulated`, the same schema
//! the load generator writes for measured runs.

mod fifo;
pub mod mix;
mod ps;
pub mod service;
mod srpt;
pub mod theory;
pub mod two_level;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use slokit_functions::record::{RunKind, TimelinePoint, RUN_SCHEMA};
use slokit_functions::{
    Environment, FunctionRecorder, Outcome, RunRecord, Sample, Schedule, VERSION,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimPolicy {
    Fifo,
    Ps,
    TwoLevel,
    Srpt,
}

impl SimPolicy {
    /// Every policy, in report order.
    pub const ALL: [SimPolicy; 4] = [
        SimPolicy::Fifo,
        SimPolicy::Ps,
        SimPolicy::TwoLevel,
        SimPolicy::Srpt,
    ];

    /// The name used on the command line and in run records.
    pub fn name(self) -> &'static str {
        match self {
            SimPolicy::Fifo => "fifo",
            SimPolicy::Ps => "ps",
            SimPolicy::TwoLevel => "two-level",
            SimPolicy::Srpt => "srpt",
        }
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
        match s.trim() {
            "fifo" => Ok(SimPolicy::Fifo),
            "ps" | "cfs" => Ok(SimPolicy::Ps),
            "two-level" | "twolevel" | "two_level" => Ok(SimPolicy::TwoLevel),
            "srpt" => Ok(SimPolicy::Srpt),
            other => Err(SimError::Spec {
                what: "policy",
                input: other.to_string(),
                reason: "choose fifo, ps, two-level or srpt".into(),
            }),
        }
    }
}

/// How to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of CPUs c in the model. Overrides `params.cpus`, so the
    /// controller computes S = mean IAT × this c.
    pub cpus: u32,
    pub policy: SimPolicy,
    /// Two-level constants (ignored by the other policies).
    pub params: TwoLevelParams,
    /// Seed of the service-time draws (service times given by the
    /// schedule are used as they are).
    pub seed: u64,
    /// Simulated time between two-level timeline points, ms.
    pub timeline_interval_ms: f64,
}

impl SimConfig {
    /// `policy` on `cpus` CPUs with default parameters, seed 0 and a
    /// timeline point every 100 ms.
    pub fn new(cpus: u32, policy: SimPolicy) -> Self {
        SimConfig {
            cpus,
            policy,
            params: TwoLevelParams::default(),
            seed: 0,
            timeline_interval_ms: 100.0,
        }
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
    /// S, queue length, FIFO holders and demoted requests over simulated
    /// time (two-level only; empty for the other policies).
    pub timeline: Vec<TimelinePoint>,
    pub totals: SimTotals,
}

/// The jobs of a run in struct-of-arrays form (ns, f64).
#[derive(Debug, Clone)]
pub(crate) struct Jobs {
    pub arrival_ns: Vec<f64>,
    pub arrival_raw_ns: Vec<u64>,
    pub service_ns: Vec<f64>,
    /// Absolute deadline, ns (∞ when the function has none).
    pub deadline_ns: Vec<f64>,
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
        };
        for (a, s) in schedule.arrivals.iter().zip(services_us) {
            let at = a.at_ns as f64;
            jobs.arrival_ns.push(at);
            jobs.arrival_raw_ns.push(a.at_ns);
            jobs.service_ns.push(s * 1e3);
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
}

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
    match cfg.policy {
        SimPolicy::Fifo => fifo::run(jobs, cfg.cpus),
        SimPolicy::Ps => ps::run(jobs, cfg.cpus),
        SimPolicy::Srpt => srpt::run(jobs, cfg.cpus),
        SimPolicy::TwoLevel => {
            two_level::run(jobs, cfg.cpus, *params, cfg.timeline_interval_ms * 1e6)
        }
    }
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
    for (i, a) in schedule.arrivals.iter().enumerate() {
        let done = run.completion_ns[i];
        if done.is_finite() {
            completed += 1;
        }
        makespan_ns = makespan_ns.max(done);
        let response_ns = done - jobs.arrival_ns[i];
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
    match cfg.policy {
        SimPolicy::TwoLevel => notes.push(format!("two-level parameters: {}", params.describe())),
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
