//! `las`: slokit's own policy — least attained service (LAS, also "foreground-
//! background" scheduling; Rai, Urvoy-Keller and Biersack, SIGMETRICS 2003)
//! over real-time levels, with the workers parked at the top one.
//!
//! - **Parked workers.** Idle worker threads wait in SCHED_FIFO at the top
//!   priority, so the wake-up of a new request already preempts fair-class
//!   work: no agent decision sits on the arrival path (the seed's
//!   two-level learns of an arrival only after the worker woke in the fair
//!   class).
//! - **Levels by attained service.** A request drops one level (one
//!   SCHED_FIFO priority lower) each time its on-CPU time since arrival
//!   passes that level's threshold; past the last one it runs in
//!   SCHED_OTHER. A new request therefore always runs before requests that
//!   have already used more CPU, and within a level the kernel keeps FIFO
//!   order. When the reply is sent the thread is parked at the top again.
//! - **Thresholds are derived, not guessed.** From known service times
//!   (profiles: each function's p99 × margin, so a function finishes in the
//!   level its profile puts it in), else adaptively from the CPU times of
//!   recently completed requests (p50, p90, p99, … × margin), else fixed
//!   ones; thresholds closer than 2× merge, the first is at least
//!   `min_quantum_us` (a runtime's own work per request: parsing, system
//!   calls).
//! - **Deadline awareness.** A request in the fair class whose deadline is
//!   at most one last-level quantum away (and not passed) is promoted once,
//!   for one such quantum, to the lowest real-time level (two-level's
//!   Imminent rule).
//! - **Safety.** A parked thread that runs with no request (a runtime's
//!   helper, a GC) for longer than the first threshold is put in
//!   SCHED_OTHER, checked every `idle_check_us`; it is parked again after
//!   it next completes a request. A request handed off inside the runtime
//!   (another thread sends the reply) leaves the receiver parked and idle,
//!   never holding a real-time level for work it does not do. Restoring
//!   every thread on exit is the actuator's and the guardian's job, as for
//!   every policy.
//!
//! The policy is a pure state machine; the agent and the simulator drive it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{
    Action, Cause, Completion, CpuTimes, Level, PolicyReport, SchedPolicy, Snapshot, Thread,
};
use crate::clock::Clock;
use crate::register::{Request, RequestId};

/// Wake-ups are never scheduled closer than this to now (no busy loop).
const MIN_WAKEUP_NS: u64 = 10_000;

/// Completed requests needed before adaptive thresholds replace the
/// fallback ones.
const ADAPT_MIN_SAMPLES: usize = 50;

/// Fallback thresholds (µs) while nothing is known.
const FALLBACK_THRESHOLDS_US: [f64; 4] = [1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// Quantiles of completed CPU times the adaptive thresholds sit at.
const ADAPT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// The constants of `las` (also the `--las-*` flags of `slokit sched`
/// and the `[las]` table of an experiment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LasParams {
    /// las: SCHED_FIFO priority of parked workers and new requests (level
    /// 0); below the agent's own priority.
    #[arg(long = "las-top-priority", default_value_t = LasParams::default().top_priority)]
    pub top_priority: u8,
    /// las: real-time levels at most (level k runs at top priority − k).
    #[arg(long = "las-levels", default_value_t = LasParams::default().levels)]
    pub levels: u8,
    /// las: attained service (µs, cumulative, comma-separated) at which a
    /// request leaves each level [default: derived].
    #[arg(long = "las-thresholds-us", value_delimiter = ',', value_name = "US,…")]
    pub thresholds_us: Vec<f64>,
    /// las: the first threshold is never below this, µs.
    #[arg(long = "las-min-quantum-us", default_value_t = LasParams::default().min_quantum_us)]
    pub min_quantum_us: f64,
    /// las: a threshold is a service-time quantile (or a profile's p99) ×
    /// this.
    #[arg(long = "las-margin", default_value_t = LasParams::default().margin)]
    pub margin: f64,
    /// las: completed requests the adaptive thresholds are computed from.
    #[arg(long = "las-window", default_value_t = LasParams::default().window)]
    pub window: usize,
    /// las: promote a fair-class request once when its deadline is near.
    #[arg(long = "las-promote", default_value_t = LasParams::default().promote, action = clap::ArgAction::Set)]
    pub promote: bool,
    /// las: how often parked, idle threads are checked for running, µs.
    #[arg(long = "las-idle-check-us", default_value_t = LasParams::default().idle_check_us)]
    pub idle_check_us: f64,
}

impl Default for LasParams {
    fn default() -> Self {
        LasParams {
            top_priority: 40,
            levels: 3,
            thresholds_us: Vec::new(),
            min_quantum_us: 500.0,
            margin: 1.5,
            window: 1000,
            promote: true,
            idle_check_us: 10_000.0,
        }
    }
}

impl LasParams {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=8).contains(&self.levels) {
            return Err(format!("levels must be in 1..=8, got {}", self.levels));
        }
        if !(2..=99).contains(&self.top_priority) || self.top_priority < self.levels {
            return Err(format!(
                "top_priority must be in {}..=99 (one priority per level), got {}",
                self.levels.max(2),
                self.top_priority
            ));
        }
        if self.thresholds_us.len() > self.levels as usize {
            return Err(format!(
                "thresholds_us has {} values but levels is {}",
                self.thresholds_us.len(),
                self.levels
            ));
        }
        if self.thresholds_us.windows(2).any(|w| w[0] >= w[1])
            || self
                .thresholds_us
                .iter()
                .any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(format!(
                "thresholds_us must be positive and increasing, got {:?}",
                self.thresholds_us
            ));
        }
        for (name, v) in [
            ("min_quantum_us", self.min_quantum_us),
            ("idle_check_us", self.idle_check_us),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        if !(self.margin.is_finite() && self.margin >= 1.0) {
            return Err(format!("margin must be ≥ 1, got {}", self.margin));
        }
        if self.window < 2 * ADAPT_MIN_SAMPLES {
            return Err(format!(
                "window must be at least {}, got {}",
                2 * ADAPT_MIN_SAMPLES,
                self.window
            ));
        }
        Ok(())
    }

    /// One line with every constant, printed when an agent starts.
    pub fn describe(&self) -> String {
        format!(
            "top_prio={} levels≤{} thresholds={} min_quantum={}µs margin={} window={} promote={} idle_check={}µs",
            self.top_priority,
            self.levels,
            if self.thresholds_us.is_empty() {
                "derived".to_string()
            } else {
                format!("{:?}µs", self.thresholds_us)
            },
            self.min_quantum_us,
            self.margin,
            self.window,
            self.promote,
            self.idle_check_us
        )
    }

    /// Thresholds (µs) from service-time points (a profile's p99 per
    /// function, or quantiles of completed requests): each × margin, the
    /// first at least `min_quantum_us`; points closer than 2× are one class
    /// (its largest point is the threshold, so all of it finishes in its
    /// level). The longest class gets no real-time level of its own: it
    /// runs in the fair class, sharing the CPU as the kernel's default
    /// does. In SCHED_FIFO its requests would run one after another, and
    /// the kernel puts a thread whose priority drops at the *head* of its
    /// new level, so the newest long request would run first and the
    /// oldest wait longest; it would also spend the RT budget that RT
    /// throttling (or the fair server) then takes back from the short
    /// levels. At most `levels` remain.
    pub fn thresholds_from(&self, points_us: &[f64]) -> Vec<f64> {
        let mut b: Vec<f64> = points_us
            .iter()
            .filter(|p| p.is_finite() && **p > 0.0)
            .map(|p| (p * self.margin).max(self.min_quantum_us))
            .collect();
        b.sort_by(f64::total_cmp);
        let mut out: Vec<f64> = Vec::new();
        let mut class_start = 0.0;
        for t in b {
            match out.last_mut() {
                Some(last) if t < 2.0 * class_start => *last = t,
                _ => {
                    class_start = t;
                    out.push(t);
                }
            }
        }
        if out.len() >= 2 {
            out.pop();
        }
        out.truncate(self.levels as usize);
        out
    }
}

/// Where the thresholds in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    /// `thresholds_us` given.
    Configured,
    /// Known service times (profiles).
    Profiles,
    /// Quantiles of recently completed requests.
    Adaptive,
    /// Nothing known yet.
    Fallback,
}

/// What `las` reports in the agent's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LasMetrics {
    /// Thresholds in force at the end, µs (cumulative attained service).
    pub thresholds_us: Vec<f64>,
    /// Quanta of the levels, µs (differences of the thresholds).
    pub quanta_us: Vec<f64>,
    /// Where they came from.
    pub threshold_source: Option<ThresholdSource>,
    /// Times the adaptive thresholds were recomputed.
    pub threshold_updates: u64,
    /// SCHED_FIFO priority of each real-time level (then SCHED_OTHER).
    pub priorities: Vec<u8>,
    /// Requests that reached each level in force, then SCHED_OTHER.
    pub reached: Vec<u64>,
    /// Time requests spent at each level, ms of wall time (same order).
    pub time_ms: Vec<f64>,
    /// Requests promoted once near their deadline.
    pub promotions: u64,
    /// Arrivals whose thread was not parked at the top when they came
    /// (re-park not yet applied, a helper demoted, or a thread not seen
    /// before).
    pub arrivals_not_parked: u64,
    /// Parked threads put in SCHED_OTHER for running with no request.
    pub idle_demotions: u64,
    /// Requests whose reply came from another thread than the receiver.
    pub handoffs: u64,
    /// Worker threads parked (found at start or seen receiving).
    pub threads_parked: u64,
    /// On-CPU time its requests used, per target process (pid): what the
    /// machine really spent per request during the run, against which a
    /// model's service times can be checked. Metered from the arrival's
    /// step, so the few µs before the agent saw it are missing.
    #[serde(default)]
    pub service_cpu_us: BTreeMap<u32, CpuService>,
}

/// On-CPU time per completed request of one process, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuService {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone)]
struct Req {
    tid: u32,
    tgid: u32,
    deadline_at: Option<u64>,
    /// 0..levels(): real time; `Las::other`: SCHED_OTHER.
    level: usize,
    /// Attained service at which the current level ends (u64::MAX: never).
    limit_ns: u64,
    /// The thread's CPU time at arrival (read after the step's actions).
    cpu_start: Option<u64>,
    promoted: bool,
    level_since: u64,
}

impl Req {
    fn attained(&self, cpu: &dyn CpuTimes, now: u64) -> u64 {
        match self.cpu_start {
            Some(s) => cpu.cpu_ns(self.tid, now).map_or(0, |c| c.saturating_sub(s)),
            None => 0,
        }
    }
}

#[derive(Debug, Clone)]
struct ThreadState {
    tgid: u32,
    /// The level last commanded.
    level: Level,
    request: Option<RequestId>,
    /// Parked and idle: its CPU time when parked (None until read).
    idle_cpu_start: Option<u64>,
    /// When it was last parked after a reply.
    reparked_at: u64,
}

/// The `las` policy object.
#[derive(Debug)]
pub struct Las<C: Clock> {
    params: LasParams,
    clock: C,
    deadlines: HashMap<u32, u64>,
    thresholds_ns: Vec<u64>,
    /// Index of the fair class in the per-level figures (`params.levels`);
    /// real-time levels are `0..levels()`.
    other: usize,
    source: ThresholdSource,
    threads: FxHashMap<u32, ThreadState>,
    reqs: FxHashMap<RequestId, Req>,
    /// Completed requests (tid, tgid, CPU at arrival) whose attained CPU
    /// is read after the step.
    finished: Vec<(u32, u32, u64)>,
    /// Attained CPU of completed requests per process, µs.
    service_by_tgid: FxHashMap<u32, Histogram<u64>>,
    recent_us: VecDeque<f64>,
    since_update: usize,
    last_idle_check: u64,
    metrics: LasMetrics,
}

impl<C: Clock> Las<C> {
    /// A `las` policy; `services_us` are known service times per process
    /// (profiles), used for the thresholds unless `params` fixes them.
    pub fn new(
        params: LasParams,
        clock: C,
        deadlines: HashMap<u32, u64>,
        services_us: &HashMap<u32, f64>,
    ) -> Self {
        let (thresholds, source) = if !params.thresholds_us.is_empty() {
            (params.thresholds_us.clone(), ThresholdSource::Configured)
        } else if !services_us.is_empty() {
            let points: Vec<f64> = services_us.values().copied().collect();
            (params.thresholds_from(&points), ThresholdSource::Profiles)
        } else {
            let mut t = params.thresholds_from(&FALLBACK_THRESHOLDS_US);
            t.truncate(params.levels as usize);
            (t, ThresholdSource::Fallback)
        };
        let other = params.levels as usize;
        let now = clock.now_ns();
        let mut las = Las {
            metrics: LasMetrics {
                reached: vec![0; other + 1],
                time_ms: vec![0.0; other + 1],
                threshold_source: Some(source),
                ..LasMetrics::default()
            },
            params,
            clock,
            deadlines,
            thresholds_ns: Vec::new(),
            other,
            source,
            threads: FxHashMap::default(),
            reqs: FxHashMap::default(),
            finished: Vec::new(),
            service_by_tgid: FxHashMap::default(),
            recent_us: VecDeque::new(),
            since_update: 0,
            last_idle_check: now,
        };
        las.set_thresholds(&thresholds);
        las
    }

    fn set_thresholds(&mut self, us: &[f64]) {
        self.thresholds_ns = us.iter().map(|t| (t * 1e3) as u64).collect();
        self.metrics.priorities = (0..us.len() as u8)
            .map(|k| self.params.top_priority - k)
            .collect();
        self.metrics.thresholds_us = us.to_vec();
        self.metrics.quanta_us = us
            .iter()
            .scan(0.0, |prev, t| {
                let q = t - *prev;
                *prev = *t;
                Some(q)
            })
            .collect();
    }

    /// Real-time levels in force.
    pub fn levels(&self) -> usize {
        self.thresholds_ns.len()
    }

    /// Thresholds in force, µs.
    pub fn thresholds_us(&self) -> &[f64] {
        &self.metrics.thresholds_us
    }

    fn top(&self) -> Level {
        Level::Fifo(self.params.top_priority)
    }

    fn level_of(&self, k: usize) -> Level {
        if k < self.levels() {
            Level::Fifo(self.params.top_priority - k as u8)
        } else {
            Level::Other
        }
    }

    /// The quantum of the last real-time level, ns (promotions get one).
    fn last_quantum_ns(&self) -> u64 {
        match self.thresholds_ns.as_slice() {
            [] => 0,
            [t] => *t,
            [.., a, b] => b - a,
        }
    }

    fn command(
        &mut self,
        tid: u32,
        tgid: u32,
        level: Level,
        request: Option<RequestId>,
        cause: Cause,
        out: &mut Vec<Action>,
    ) {
        let t = self.threads.entry(tid).or_insert(ThreadState {
            tgid,
            level: Level::Other,
            request: None,
            idle_cpu_start: None,
            reparked_at: 0,
        });
        if t.level != level {
            t.level = level;
            out.push(Action {
                tid,
                tgid,
                level,
                request,
                cause,
            });
        }
    }

    fn park(&mut self, tid: u32, tgid: u32, cause: Cause, out: &mut Vec<Action>) {
        if !self.threads.contains_key(&tid) {
            self.metrics.threads_parked += 1;
        }
        let top = self.top();
        self.command(tid, tgid, top, None, cause, out);
        let t = self.threads.get_mut(&tid).expect("just commanded");
        t.request = None;
        t.idle_cpu_start = None;
    }

    /// Moves request `id` to level `k` with a new limit.
    fn move_to(
        &mut self,
        id: RequestId,
        k: usize,
        limit_ns: u64,
        cause: Cause,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let r = self.reqs.get_mut(&id).expect("live request");
        self.metrics.time_ms[r.level] += now.saturating_sub(r.level_since) as f64 / 1e6;
        r.level = k;
        r.limit_ns = limit_ns;
        r.level_since = now;
        let (tid, tgid) = (r.tid, r.tgid);
        self.metrics.reached[k] += 1;
        let level = self.level_of(k);
        self.command(tid, tgid, level, Some(id), cause, out);
    }

    fn end_request(&mut self, id: RequestId, now: u64) -> Option<Req> {
        let r = self.reqs.remove(&id)?;
        self.metrics.time_ms[r.level] += now.saturating_sub(r.level_since) as f64 / 1e6;
        if let Some(start) = r.cpu_start {
            self.finished.push((r.tid, r.tgid, start));
        }
        Some(r)
    }

    fn record_finished(&mut self, cpu: &dyn CpuTimes, now: u64) {
        for (tid, tgid, start) in std::mem::take(&mut self.finished) {
            let Some(c) = cpu.cpu_ns(tid, now) else {
                continue;
            };
            let used_us = c.saturating_sub(start) as f64 / 1e3;
            self.service_by_tgid
                .entry(tgid)
                .or_insert_with(|| {
                    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds")
                })
                .saturating_record(used_us.round().max(1.0) as u64);
            self.recent_us.push_back(used_us);
            if self.recent_us.len() > self.params.window {
                self.recent_us.pop_front();
            }
            self.since_update += 1;
        }
        let adaptive = matches!(
            self.source,
            ThresholdSource::Adaptive | ThresholdSource::Fallback
        );
        if adaptive
            && self.recent_us.len() >= ADAPT_MIN_SAMPLES
            && (self.source == ThresholdSource::Fallback
                || self.since_update >= self.params.window / 4)
        {
            let mut v: Vec<f64> = self.recent_us.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            // nearest rank: the smallest value with at least q of the window at or below it
            let points: Vec<f64> = ADAPT_QUANTILES
                .iter()
                .take(self.params.levels as usize)
                .map(|q| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
                .collect();
            let t = self.params.thresholds_from(&points);
            self.source = ThresholdSource::Adaptive;
            self.metrics.threshold_source = Some(ThresholdSource::Adaptive);
            self.metrics.threshold_updates += 1;
            self.since_update = 0;
            self.set_thresholds(&t);
        }
    }

    fn idle_parked(&self) -> impl Iterator<Item = (&u32, &ThreadState)> {
        let top = self.top();
        self.threads
            .iter()
            .filter(move |(_, t)| t.request.is_none() && t.level == top)
    }
}

impl<C: Clock> SchedPolicy for Las<C> {
    fn name(&self) -> &'static str {
        "las"
    }

    fn decides_per_event(&self) -> bool {
        true
    }

    fn on_threads(&mut self, threads: &[Thread], out: &mut Vec<Action>) {
        for t in threads {
            if !self.threads.contains_key(&t.tid) {
                self.park(t.tid, t.tgid, Cause::Other, out);
            }
        }
    }

    fn on_arrival(&mut self, r: &Request, _cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        let top = self.top();
        let parked = self
            .threads
            .get(&r.tid)
            .is_some_and(|t| t.level == top && t.reparked_at <= r.start_ns);
        if !parked {
            self.metrics.arrivals_not_parked += 1;
        }
        if let Some(old) = self.threads.get(&r.tid).and_then(|t| t.request) {
            // The register abandons a thread's old request before it starts
            // a new one; this only guards against a monitor that does not.
            self.end_request(old, now);
        }
        if !self.threads.contains_key(&r.tid) {
            self.metrics.threads_parked += 1;
        }
        let limit = self.thresholds_ns.first().copied().unwrap_or(u64::MAX);
        self.reqs.insert(
            r.id,
            Req {
                tid: r.tid,
                tgid: r.tgid,
                deadline_at: self.deadlines.get(&r.tgid).map(|d| r.start_ns + d),
                level: 0,
                limit_ns: limit,
                cpu_start: None,
                promoted: false,
                level_since: r.start_ns.min(now),
            },
        );
        self.metrics.reached[0] += 1;
        let level = self.level_of(0);
        let cause = Cause::Arrival {
            arrival_ns: r.start_ns,
        };
        self.command(r.tid, r.tgid, level, Some(r.id), cause, out);
        let t = self.threads.get_mut(&r.tid).expect("just commanded");
        t.request = Some(r.id);
        t.idle_cpu_start = None;
    }

    fn on_completion(&mut self, c: &Completion, out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        let r = &c.request;
        if self.end_request(r.id, now).is_none() {
            return;
        }
        if c.replied && c.sender_tid != r.tid {
            self.metrics.handoffs += 1;
        }
        let owns = self
            .threads
            .get(&r.tid)
            .is_some_and(|t| t.request == Some(r.id));
        if owns {
            let cause = if c.replied {
                Cause::Repark { reply_ns: c.end_ns }
            } else {
                Cause::Other
            };
            self.park(r.tid, r.tgid, cause, out);
            self.threads.get_mut(&r.tid).expect("parked").reparked_at = now;
        }
    }

    fn on_vanished(&mut self, tid: u32, request: Option<RequestId>, _out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        if let Some(t) = self.threads.remove(&tid) {
            if let Some(id) = t.request {
                self.end_request(id, now);
            }
        }
        if let Some(id) = request {
            self.end_request(id, now);
        }
        self.finished.retain(|(t, _, _)| *t != tid);
    }

    fn on_timer(&mut self, cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        let levels = self.levels();
        let last_q = self.last_quantum_ns();
        let mut moves: Vec<(RequestId, usize, u64, Cause)> = Vec::new();
        for (&id, r) in &self.reqs {
            let attained = r.attained(cpu, now);
            if r.limit_ns != u64::MAX && attained >= r.limit_ns {
                let at_ns = now.saturating_sub(attained - r.limit_ns);
                // Drop past every threshold the attained service passed (a
                // late timer may have missed more than one).
                let mut k = r.level + 1;
                while !r.promoted && k < levels && attained >= self.thresholds_ns[k] {
                    k += 1;
                }
                let (k, limit) = if r.promoted || k >= levels {
                    (self.other, u64::MAX)
                } else {
                    (k, self.thresholds_ns[k])
                };
                moves.push((id, k, limit, Cause::Exhausted { at_ns }));
            } else if self.params.promote && levels > 0 && r.level == self.other && !r.promoted {
                if let Some(d) = r.deadline_at {
                    if d > now && d - now <= last_q {
                        moves.push((id, levels - 1, attained + last_q, Cause::Other));
                    }
                }
            }
        }
        for (id, k, limit, cause) in moves {
            if k < levels && self.reqs[&id].level == self.other {
                self.metrics.promotions += 1;
                self.reqs.get_mut(&id).expect("live").promoted = true;
            }
            self.move_to(id, k, limit, cause, now, out);
        }
        let check_ns = (self.params.idle_check_us * 1e3) as u64;
        if now >= self.last_idle_check + check_ns {
            self.last_idle_check = now;
            let first = self.thresholds_ns.first().copied().unwrap_or(u64::MAX);
            let busy: Vec<(u32, u32)> = self
                .idle_parked()
                .filter_map(|(&tid, t)| {
                    let start = t.idle_cpu_start?;
                    let used = cpu.cpu_ns(tid, now)?.saturating_sub(start);
                    (used > first).then_some((tid, t.tgid))
                })
                .collect();
            for (tid, tgid) in busy {
                self.metrics.idle_demotions += 1;
                self.command(tid, tgid, Level::Other, None, Cause::Other, out);
            }
        }
    }

    fn after_apply(&mut self, cpu: &dyn CpuTimes) {
        let now = self.clock.now_ns();
        for r in self.reqs.values_mut() {
            if r.cpu_start.is_none() {
                r.cpu_start = Some(cpu.cpu_ns(r.tid, now).unwrap_or(0));
            }
        }
        let top = self.top();
        for (&tid, t) in self.threads.iter_mut() {
            if t.request.is_none() && t.level == top && t.idle_cpu_start.is_none() {
                t.idle_cpu_start = Some(cpu.cpu_ns(tid, now).unwrap_or(0));
            }
        }
        if !self.finished.is_empty() {
            self.record_finished(cpu, now);
        }
    }

    fn next_wakeup(&self, cpu: &dyn CpuTimes) -> Option<u64> {
        let now = self.clock.now_ns();
        let last_q = self.last_quantum_ns();
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| {
            let t = t.max(now + MIN_WAKEUP_NS);
            next = Some(next.map_or(t, |n: u64| n.min(t)));
        };
        for r in self.reqs.values() {
            if r.limit_ns != u64::MAX {
                consider(now + r.limit_ns.saturating_sub(r.attained(cpu, now)));
            } else if self.params.promote && !self.thresholds_ns.is_empty() && !r.promoted {
                if let Some(d) = r.deadline_at {
                    let eligible = d.saturating_sub(last_q);
                    if d > now {
                        consider(eligible);
                    }
                }
            }
        }
        if self.idle_parked().next().is_some() {
            consider(self.last_idle_check + (self.params.idle_check_us * 1e3) as u64);
        }
        next
    }

    fn snapshot(&self) -> Snapshot {
        let rt = self.reqs.values().filter(|r| r.level != self.other).count();
        Snapshot {
            slice_ms: self.thresholds_ns.first().map_or(0.0, |t| *t as f64 / 1e6),
            queue_len: 0,
            fifo_holders: rt as u32,
            demoted: (self.reqs.len() - rt) as u32,
        }
    }

    fn report(&self) -> PolicyReport {
        let mut notes = Vec::new();
        notes.push(format!(
            "las thresholds {:?} µs ({:?})",
            self.metrics
                .thresholds_us
                .iter()
                .map(|t| (t * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            self.source
        ));
        // Levels in force, then the fair class.
        let mut m = self.metrics.clone();
        let n = self.levels();
        let other = m.time_ms[self.other];
        m.time_ms.truncate(n);
        m.time_ms.push(other);
        let other = m.reached[self.other];
        m.reached.truncate(n);
        m.reached.push(other);
        m.service_cpu_us = self
            .service_by_tgid
            .iter()
            .map(|(&tgid, h)| {
                let service = CpuService {
                    count: h.len(),
                    mean_us: h.mean(),
                    p50_us: h.value_at_quantile(0.5) as f64,
                    p99_us: h.value_at_quantile(0.99) as f64,
                };
                (tgid, service)
            })
            .collect();
        PolicyReport {
            las: Some(m),
            notes,
            ..PolicyReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;
    use crate::policy::testing::MockCpu;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    struct Fixture {
        clock: MockClock,
        cpu: MockCpu,
        las: Las<MockClock>,
        out: Vec<Action>,
        next_id: RequestId,
    }

    fn fixture(thresholds_us: &[f64], deadlines: &[(u32, u64)]) -> Fixture {
        let clock = MockClock::new(1_000 * MS);
        let params = LasParams {
            thresholds_us: thresholds_us.to_vec(),
            ..LasParams::default()
        };
        Fixture {
            las: Las::new(
                params,
                clock.clone(),
                deadlines.iter().copied().collect(),
                &HashMap::new(),
            ),
            clock,
            cpu: MockCpu::default(),
            out: Vec::new(),
            next_id: 0,
        }
    }

    impl Fixture {
        fn step(&mut self) -> Vec<Action> {
            self.las.after_apply(&self.cpu);
            std::mem::take(&mut self.out)
        }
        fn threads(&mut self, tids: &[u32]) -> Vec<Action> {
            let t: Vec<Thread> = tids.iter().map(|&tid| Thread { tgid: 7, tid }).collect();
            self.las.on_threads(&t, &mut self.out);
            self.step()
        }
        fn arrive(&mut self, tid: u32) -> (RequestId, Vec<Action>) {
            self.next_id += 1;
            let r = Request {
                id: self.next_id,
                tid,
                tgid: 7,
                sock: self.next_id,
                start_ns: self.clock.now_ns(),
            };
            self.las.on_arrival(&r, &self.cpu, &mut self.out);
            (self.next_id, self.step())
        }
        fn complete(&mut self, id: RequestId, tid: u32, sender: u32) -> Vec<Action> {
            let c = Completion {
                request: Request {
                    id,
                    tid,
                    tgid: 7,
                    sock: id,
                    start_ns: 0,
                },
                sender_tid: sender,
                end_ns: self.clock.now_ns(),
                replied: true,
            };
            self.las.on_completion(&c, &mut self.out);
            self.step()
        }
        fn timer(&mut self) -> Vec<Action> {
            self.las.on_timer(&self.cpu, &mut self.out);
            self.step()
        }
        fn run(&mut self, tid: u32, ns: u64) {
            self.clock.advance(ns);
            self.cpu.add(tid, ns);
        }
    }

    fn levels(a: &[Action]) -> Vec<(u32, Level)> {
        a.iter().map(|a| (a.tid, a.level)).collect()
    }

    #[test]
    fn workers_are_parked_at_the_top_and_an_arrival_needs_no_action() {
        let mut f = fixture(&[1000.0, 10_000.0], &[]);
        assert_eq!(
            levels(&f.threads(&[11, 12])),
            [(11, Level::Fifo(40)), (12, Level::Fifo(40))]
        );
        let (_, a) = f.arrive(11);
        assert!(a.is_empty(), "already at the top: {a:?}");
        assert_eq!(f.las.report().las.unwrap().arrivals_not_parked, 0);
    }

    #[test]
    fn a_request_drops_a_level_per_threshold_then_runs_in_the_fair_class() {
        let mut f = fixture(&[1000.0, 10_000.0], &[]);
        f.threads(&[11]);
        let (id, _) = f.arrive(11);
        assert_eq!(f.las.next_wakeup(&f.cpu), Some(f.clock.now_ns() + MS));
        f.run(11, MS - US);
        assert!(f.timer().is_empty(), "1 µs of the first quantum left");
        f.run(11, US + 20 * US); // the timer fires 20 µs late
        let a = f.timer();
        assert_eq!(levels(&a), [(11, Level::Fifo(39))]);
        let exhausted_at = f.clock.now_ns() - 20 * US;
        assert_eq!(
            a[0].cause,
            Cause::Exhausted {
                at_ns: exhausted_at
            }
        );
        assert_eq!(a[0].request, Some(id));
        // sleeping costs nothing: the next threshold is in on-CPU time
        f.clock.advance(50 * MS);
        assert!(f.timer().is_empty());
        f.run(11, 9 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
        assert_eq!(
            f.las.next_wakeup(&f.cpu),
            None,
            "no deadline, no idle thread"
        );
        let a = f.complete(id, 11, 11);
        assert_eq!(levels(&a), [(11, Level::Fifo(40))], "re-parked");
        assert!(matches!(a[0].cause, Cause::Repark { .. }));
        let m = f.las.report().las.unwrap();
        assert_eq!(m.reached, [1, 1, 1]);
    }

    #[test]
    fn a_late_timer_drops_past_every_threshold_it_missed() {
        let mut f = fixture(&[1000.0, 2000.0, 4000.0], &[]);
        f.threads(&[11]);
        f.arrive(11);
        f.run(11, 5 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
    }

    #[test]
    fn an_arrival_on_a_thread_not_yet_reparked_is_counted_and_raised() {
        let mut f = fixture(&[1000.0], &[]);
        f.threads(&[11]);
        let (id, _) = f.arrive(11);
        f.run(11, 2 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
        // the next request arrived before the agent saw the reply
        let arrival = f.clock.now_ns();
        f.clock.advance(100 * US);
        let a = f.complete(id, 11, 11);
        assert_eq!(levels(&a), [(11, Level::Fifo(40))]);
        f.next_id += 1;
        let r = Request {
            id: f.next_id,
            tid: 11,
            tgid: 7,
            sock: 99,
            start_ns: arrival,
        };
        f.las.on_arrival(&r, &f.cpu, &mut f.out);
        assert!(f.step().is_empty(), "already re-parked in this step");
        assert_eq!(f.las.report().las.unwrap().arrivals_not_parked, 1);
        // an unknown thread (a runtime with other names) is raised on arrival
        let (_, a) = f.arrive(20);
        assert_eq!(levels(&a), [(20, Level::Fifo(40))]);
        assert!(matches!(a[0].cause, Cause::Arrival { .. }));
    }

    #[test]
    fn a_fair_class_request_near_its_deadline_is_promoted_once() {
        // thresholds 1 ms, 3 ms: the last quantum is 2 ms; deadline 20 ms
        let mut f = fixture(&[1000.0, 3000.0], &[(7, 20 * MS)]);
        f.threads(&[11]);
        f.arrive(11);
        f.run(11, MS);
        f.timer();
        f.run(11, 2 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
        let arrival = f.clock.now_ns() - 3 * MS;
        assert_eq!(f.las.next_wakeup(&f.cpu), Some(arrival + 18 * MS));
        f.run(11, 14 * MS); // t = 17 ms
        assert!(f.timer().is_empty());
        f.run(11, MS); // t = 18 ms: 2 ms to the deadline
        assert_eq!(levels(&f.timer()), [(11, Level::Fifo(39))]);
        f.run(11, 2 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)], "one quantum only");
        assert_eq!(f.las.next_wakeup(&f.cpu), None, "never promoted twice");
        assert_eq!(f.las.report().las.unwrap().promotions, 1);
    }

    #[test]
    fn a_parked_thread_that_runs_without_a_request_is_demoted() {
        let mut f = fixture(&[1000.0], &[]);
        f.threads(&[11]);
        let check = f.las.next_wakeup(&f.cpu).expect("idle check");
        assert_eq!(check, f.clock.now_ns() + 10 * MS);
        f.run(11, 10 * MS); // a helper or GC spins on the parked thread
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
        assert_eq!(f.las.report().las.unwrap().idle_demotions, 1);
        // raised again by its next request, parked after it
        let (id, a) = f.arrive(11);
        assert_eq!(levels(&a), [(11, Level::Fifo(40))]);
        assert_eq!(levels(&f.complete(id, 11, 11)), []);
    }

    #[test]
    fn a_hand_off_leaves_the_receiver_parked_and_the_worker_untouched() {
        let mut f = fixture(&[1000.0], &[]);
        f.threads(&[11]);
        let (id, _) = f.arrive(11);
        // thread 12 does the work (never seen receiving): not touched
        f.run(12, 50 * MS);
        assert!(f.timer().iter().all(|a| a.tid != 12));
        let a = f.complete(id, 11, 12);
        assert!(a.is_empty(), "receiver still parked: {a:?}");
        let m = f.las.report().las.unwrap();
        assert_eq!(m.handoffs, 1);
        // the receiver spinning after the hand-off is demoted like a helper
        f.run(11, 2 * MS);
        f.clock.advance(10 * MS);
        assert_eq!(levels(&f.timer()), [(11, Level::Other)]);
    }

    #[test]
    fn thresholds_come_from_known_service_times() {
        let clock = MockClock::new(0);
        let services: HashMap<u32, f64> = [(1, 0.5), (2, 4172.0), (3, 158_504.0), (4, 5000.0)]
            .into_iter()
            .collect();
        let las = Las::new(LasParams::default(), clock, HashMap::new(), &services);
        // 0.5 µs → the 500 µs floor; 4172 and 5000 are one class (closer
        // than 2×: its largest point); video, the longest, runs in the fair
        // class
        assert_eq!(las.thresholds_us(), [500.0, 7500.0]);
        assert_eq!(las.report().las.unwrap().quanta_us, [500.0, 7000.0]);
        let one = HashMap::from([(1, 2000.0)]);
        let las = Las::new(
            LasParams::default(),
            MockClock::new(0),
            HashMap::new(),
            &one,
        );
        assert_eq!(
            las.thresholds_us(),
            [3000.0],
            "a single class keeps its level"
        );
    }

    #[test]
    fn thresholds_adapt_to_completed_requests() {
        let mut f = fixture(&[], &[]);
        assert_eq!(f.las.thresholds_us(), [1500.0, 15_000.0, 150_000.0]);
        f.threads(&[11]);
        // 60 % at 2 ms, 30 % at 20 ms, 10 % at 400 ms of CPU
        for i in 0..100u64 {
            let ns = match i % 10 {
                0..=5 => 2 * MS,
                6..=8 => 20 * MS,
                _ => 400 * MS,
            };
            let (id, _) = f.arrive(11);
            f.cpu.add(11, ns);
            f.complete(id, 11, 11);
        }
        assert_eq!(
            f.las.thresholds_us(),
            [3000.0, 30_000.0],
            "p99's class shares the fair class"
        );
        let used = f.las.report().las.unwrap().service_cpu_us[&7];
        assert_eq!(used.count, 100);
        assert!((used.mean_us - 47_200.0).abs() < 500.0, "{used:?}");
        assert!((used.p50_us - 2000.0).abs() < 30.0, "{used:?}");
        assert_eq!(
            f.las.report().las.unwrap().threshold_source,
            Some(ThresholdSource::Adaptive)
        );
    }

    #[test]
    fn validate_names_the_field() {
        let bad = LasParams {
            thresholds_us: vec![5.0, 1.0],
            ..LasParams::default()
        };
        assert!(bad.validate().unwrap_err().contains("thresholds_us"));
        let bad = LasParams {
            top_priority: 2,
            levels: 3,
            ..LasParams::default()
        };
        assert!(bad.validate().unwrap_err().contains("top_priority"));
        assert!(LasParams::default().validate().is_ok());
    }
}
