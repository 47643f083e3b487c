//! `kernel`: a discrete-event model of the Linux kernel's scheduling
//! classes on c CPUs, driving a policy object ([`SchedPolicy`]) the way the
//! agent does — the same `two-level` ([`crate::runtime::Runtime`]) and
//! `las` ([`crate::policy::las`]) objects, built by
//! [`crate::policy::build`], decide here and on real hosts.
//!
//! **Threads.** Every job (arrival) gets its own thread, tid = job index +
//! 1, tgid = its function's index + 1. The thread is born runnable in the
//! fair class with its service time of CPU work, and exits once that work
//! is done. It never sleeps (jobs are CPU-bound).
//!
//! **Real-time class (SCHED_FIFO).** A higher priority always preempts a
//! lower one and the fair class; within a priority the order is FIFO. As
//! Linux does (sched(7); `__sched_setscheduler`'s `ENQUEUE_HEAD`): a thread
//! that becomes runnable, enters the class or is *raised* to a priority
//! joins the tail of that priority's queue; a thread whose priority is
//! *lowered* goes to the head of its new priority's queue; a thread
//! preempted by a higher priority keeps its place (at the head), so it
//! resumes before the others of its priority. The c CPUs are one pool: at
//! every instant the first c runnable real-time threads in (priority,
//! queue position) order run, each at full speed — global fixed-priority
//! scheduling, which Linux approximates with its push/pull balancing.
//!
//! **Fair class (SCHED_OTHER).** Processor sharing among the fair-class
//! threads on the CPUs the real-time threads leave free: each of n gets
//! min(1, free/n) of a CPU (the fluid model of CFS/EEVDF), advanced in
//! virtual time like [`super::ps`].
//!
//! **RT throttling.** Real-time threads together may use at most
//! `rt_runtime/rt_period` of each CPU's time per period (default 950 ms per
//! 1000 ms: `/proc/sys/kernel/sched_rt_runtime_us`, `sched_rt_period_us`).
//! The model keeps one *aggregate* budget of c × runtime per period (periods
//! start at t = 0), spent at one ns per ns by every running real-time
//! thread; when it is exhausted, every real-time thread stops until the
//! period ends and the fair class gets all c CPUs (a CPU with no fair work
//! idles). This approximates Linux's per-CPU budgets: with the aggregate, a
//! real-time hog on one CPU of several is never throttled while others are
//! idle (as with the old `RT_RUNTIME_SHARE` borrowing), where per-CPU
//! accounting would throttle it. Kernels ≥ 6.12 replace throttling with the
//! fair deadline server, which runs starved fair tasks for 50 ms per second
//! but lets real-time threads continue when no fair task is runnable; the
//! model idles those CPUs instead.
//!
//! **The policy.** On an arrival the model calls
//! [`SchedPolicy::on_threads`] (a new worker appears), applies its actions,
//! then [`SchedPolicy::on_arrival`], applies them (instantly: the agent's
//! reaction latency is zero here), then [`SchedPolicy::after_apply`]. When a
//! job's work is done: [`SchedPolicy::on_completion`] (reply sent by the
//! thread itself), apply, `after_apply`; then the thread exits and the
//! model tells the policy with [`SchedPolicy::on_vanished`] (as the agent
//! does when it finds a thread gone), so the policy drops it; actions on an
//! exited thread are ignored. At [`SchedPolicy::next_wakeup`] it calls
//! [`SchedPolicy::on_timer`]. The clock is a [`MockClock`] set to the event
//! time (rounded to the ns) before every call; [`CpuTimes`] is the model's
//! exact on-CPU time of each thread.
//!
//! Event-driven, no time step: between events every rate is constant, so
//! the next event is the earliest of the next arrival, the first real-time
//! or fair-class completion, the policy's wake-up, budget exhaustion, the
//! period's end and the next timeline sample. O(threads in the system) per
//! event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use slokit_model::record::TimelinePoint;

use super::{EngineRun, Jobs, Key};
use crate::clock::MockClock;
use crate::policy::{Action, Completion, CpuTimes, Level, SchedPolicy, Thread};
use crate::register::Request;

/// How the model runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KernelConfig {
    pub cpus: u32,
    /// RT throttling `(runtime, period)` in ns; `None`: real-time threads
    /// may use every CPU all the time.
    pub throttle: Option<(u64, u64)>,
    /// Simulated time between timeline points, ns.
    pub sample_every_ns: f64,
}

impl KernelConfig {
    /// Throttling from the sysctls' µs values (`runtime ≥ period`: none).
    pub fn new(cpus: u32, rt_runtime_us: u64, rt_period_us: u64, sample_every_ns: f64) -> Self {
        KernelConfig {
            cpus,
            throttle: (rt_runtime_us < rt_period_us).then(|| {
                (
                    rt_runtime_us.saturating_mul(1_000),
                    rt_period_us.saturating_mul(1_000),
                )
            }),
            sample_every_ns,
        }
    }
}

/// What the model adds to an engine run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct KernelStats {
    /// Periods in which the real-time budget ran out.
    pub throttled_periods: u64,
    /// Time real-time threads spent throttled, ns.
    pub throttled_ns: f64,
    /// Policy actions applied (exited threads' not counted).
    pub actions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Unborn,
    Fair,
    Rt(u8),
    Exited,
}

#[derive(Debug, Clone)]
struct Th {
    place: Place,
    /// A real-time thread on a CPU.
    running: bool,
    /// On-CPU time at the start of the current stretch, ns.
    cpu0: f64,
    /// Start of the current stretch: wall ns (running real-time thread) or
    /// fair virtual time (fair class).
    mark: f64,
    /// Fair-class entries of an older stay are stale.
    epoch: u32,
    /// Reschedule generation that picked it.
    sel: u32,
}

struct Kernel<'a> {
    jobs: &'a Jobs,
    clock: MockClock,
    c: usize,
    t: f64,
    th: Vec<Th>,
    /// Real-time run queues by priority (index = priority, 1..=99).
    queues: Vec<VecDeque<u32>>,
    /// Bit p set: `queues[p]` is not empty.
    nonempty: u128,
    /// Real-time threads on a CPU.
    running: Vec<u32>,
    want: Vec<u32>,
    gen: u32,
    /// Fair-class finishing tags (virtual time), with stale entries.
    fair: BinaryHeap<Reverse<Key>>,
    fair_n: usize,
    fair_rate: f64,
    vtime: f64,
    /// Aggregate real-time budget per period, ns (0 period: no throttling).
    budget_ns: f64,
    period_ns: u64,
    period_end: f64,
    used_ns: f64,
    throttled: bool,
    busy_ns: f64,
    completion_ns: Vec<f64>,
    done: usize,
    out: Vec<Action>,
    stats: KernelStats,
}

impl CpuTimes for Kernel<'_> {
    fn cpu_ns(&self, tid: u32, now_ns: u64) -> Option<u64> {
        let j = (tid as usize).checked_sub(1)?;
        let th = self.th.get(j)?;
        if th.place == Place::Unborn {
            return None;
        }
        // Evaluated at the policy's `now` (the event time rounded to the
        // ns) with the current rates, so readings at two instants differ by
        // exactly the time between them for a thread on a CPU throughout.
        Some(self.cpu_at(j, now_ns as f64).round().max(0.0) as u64)
    }
}

impl<'a> Kernel<'a> {
    fn new(jobs: &'a Jobs, cfg: &KernelConfig, clock: MockClock) -> Self {
        let n = jobs.len();
        let c = cfg.cpus as usize;
        let (budget_ns, period_ns) = match cfg.throttle {
            Some((runtime, period)) if period > 0 => ((runtime as f64) * c as f64, period),
            _ => (0.0, 0),
        };
        Kernel {
            jobs,
            clock,
            c,
            t: 0.0,
            th: vec![
                Th {
                    place: Place::Unborn,
                    running: false,
                    cpu0: 0.0,
                    mark: 0.0,
                    epoch: 0,
                    sel: 0,
                };
                n
            ],
            queues: vec![VecDeque::new(); 100],
            nonempty: 0,
            running: Vec::with_capacity(c),
            want: Vec::with_capacity(c),
            gen: 0,
            fair: BinaryHeap::new(),
            fair_n: 0,
            fair_rate: 0.0,
            vtime: 0.0,
            budget_ns,
            period_ns,
            period_end: period_ns as f64,
            used_ns: 0.0,
            throttled: false,
            busy_ns: 0.0,
            completion_ns: vec![f64::NAN; n],
            done: 0,
            out: Vec::new(),
            stats: KernelStats::default(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.t.round() as u64
    }

    fn service(&self, j: usize) -> f64 {
        self.jobs.service_ns[j]
    }

    /// On-CPU time of job `j`'s thread at `tau` (near `self.t`), ns.
    fn cpu_at(&self, j: usize, tau: f64) -> f64 {
        let th = &self.th[j];
        match th.place {
            Place::Rt(_) if th.running => th.cpu0 + (tau - th.mark),
            Place::Fair => th.cpu0 + (self.vtime + self.fair_rate * (tau - self.t) - th.mark),
            _ => th.cpu0,
        }
    }

    /// Moves time to `now`: fair virtual time, budget, busy CPU time.
    fn advance(&mut self, now: f64) {
        let dt = now - self.t;
        if dt > 0.0 {
            let rt = self.running.len() as f64;
            self.vtime += self.fair_rate * dt;
            self.busy_ns += (rt + self.fair_rate * self.fair_n as f64) * dt;
            if self.throttled {
                self.stats.throttled_ns += dt;
            } else if self.period_ns > 0 {
                self.used_ns += rt * dt;
            }
            self.t = now;
        }
    }

    /// Ends the current stretch of a real-time thread on a CPU.
    fn stop(&mut self, j: usize) {
        let t = self.t;
        let th = &mut self.th[j];
        if th.running {
            th.cpu0 += t - th.mark;
            th.running = false;
        }
    }

    fn leave_rt(&mut self, j: usize, p: u8) {
        self.stop(j);
        let q = &mut self.queues[p as usize];
        if let Some(i) = q.iter().position(|&x| x as usize == j) {
            q.remove(i);
        }
        if q.is_empty() {
            self.nonempty &= !(1u128 << p);
        }
    }

    fn enqueue(&mut self, j: usize, p: u8, head: bool) {
        let q = &mut self.queues[p as usize];
        if head {
            q.push_front(j as u32);
        } else {
            q.push_back(j as u32);
        }
        self.nonempty |= 1u128 << p;
        self.th[j].place = Place::Rt(p);
    }

    fn leave_fair(&mut self, j: usize) {
        let v = self.vtime;
        let th = &mut self.th[j];
        th.cpu0 += v - th.mark;
        th.epoch += 1;
        self.fair_n -= 1;
    }

    fn join_fair(&mut self, j: usize) {
        let v = self.vtime;
        let left = self.service(j) - self.th[j].cpu0;
        let th = &mut self.th[j];
        th.place = Place::Fair;
        th.mark = v;
        th.epoch += 1;
        self.fair.push(Reverse(Key {
            t: v + left,
            id: j as u32,
            tag: th.epoch,
        }));
        self.fair_n += 1;
    }

    /// Applies the policy's actions in order (sched_setattr, instantly) and
    /// tells the policy of each that found its thread alive.
    fn apply(&mut self, actions: &[Action], policy: &mut dyn SchedPolicy) {
        for a in actions {
            let Some(j) = (a.tid as usize)
                .checked_sub(1)
                .filter(|&j| j < self.th.len())
            else {
                continue;
            };
            let to = match a.level {
                Level::Other => Place::Fair,
                Level::Fifo(p) => Place::Rt(p.clamp(1, 99)),
            };
            let from = self.th[j].place;
            if matches!(from, Place::Unborn | Place::Exited) {
                continue;
            }
            policy.on_applied(a);
            if from == to {
                continue;
            }
            self.stats.actions += 1;
            match (from, to) {
                (Place::Fair, Place::Rt(q)) => {
                    self.leave_fair(j);
                    self.enqueue(j, q, false);
                }
                (Place::Rt(p), Place::Rt(q)) => {
                    self.leave_rt(j, p);
                    // Lowered: head of the new priority; raised: tail.
                    self.enqueue(j, q, q < p);
                }
                (Place::Rt(p), Place::Fair) => {
                    self.leave_rt(j, p);
                    self.join_fair(j);
                }
                _ => unreachable!("handled above"),
            }
        }
    }

    /// Puts the first c runnable real-time threads (by priority, then queue
    /// order) on CPUs, unless throttled, and sets the fair share.
    fn reschedule(&mut self) {
        let mut want = std::mem::take(&mut self.want);
        want.clear();
        if !self.throttled {
            let mut m = self.nonempty;
            while m != 0 && want.len() < self.c {
                let p = 127 - m.leading_zeros() as usize;
                m &= !(1u128 << p);
                for &j in &self.queues[p] {
                    if want.len() == self.c {
                        break;
                    }
                    want.push(j);
                }
            }
        }
        self.gen = self.gen.wrapping_add(1);
        for &j in &want {
            self.th[j as usize].sel = self.gen;
        }
        for i in 0..self.running.len() {
            let j = self.running[i] as usize;
            if self.th[j].sel != self.gen {
                self.stop(j);
            }
        }
        let t = self.t;
        for &j in &want {
            let th = &mut self.th[j as usize];
            if !th.running {
                th.running = true;
                th.mark = t;
            }
        }
        self.want = std::mem::replace(&mut self.running, want);
        let free = (self.c - self.running.len()) as f64;
        self.fair_rate = if self.fair_n == 0 {
            0.0
        } else {
            (free / self.fair_n as f64).min(1.0)
        };
    }

    /// The first real-time thread to finish its work, and when.
    fn next_rt_completion(&self) -> (f64, usize) {
        let mut best = (f64::INFINITY, usize::MAX);
        for &j in &self.running {
            let th = &self.th[j as usize];
            let at = th.mark + (self.service(j as usize) - th.cpu0);
            if at < best.0 {
                best = (at, j as usize);
            }
        }
        best
    }

    /// The first fair-class thread to finish, dropping stale entries.
    fn fair_top(&mut self) -> Option<Key> {
        while let Some(Reverse(k)) = self.fair.peek() {
            let th = &self.th[k.id as usize];
            if th.place == Place::Fair && th.epoch == k.tag {
                return Some(*k);
            }
            self.fair.pop();
        }
        None
    }

    fn next_fair_completion(&mut self) -> f64 {
        match self.fair_top() {
            Some(k) if self.fair_rate > 0.0 => {
                self.t + (k.t - self.vtime).max(0.0) / self.fair_rate
            }
            _ => f64::INFINITY,
        }
    }

    /// (end of the period when it matters, budget exhaustion).
    fn throttle_events(&self) -> (f64, f64) {
        if self.period_ns == 0 {
            return (f64::INFINITY, f64::INFINITY);
        }
        let rt = self.running.len();
        let end = if self.throttled || self.used_ns > 0.0 || rt > 0 {
            self.period_end
        } else {
            f64::INFINITY
        };
        let exhausted = if !self.throttled && rt > 0 {
            self.t + (self.budget_ns - self.used_ns).max(0.0) / rt as f64
        } else {
            f64::INFINITY
        };
        (end, exhausted)
    }

    /// A new period: fresh budget, real-time threads run again.
    fn roll_period(&mut self) {
        let p = self.period_ns;
        let mut k = (self.t / p as f64).floor() as u64;
        while ((k + 1) * p) as f64 <= self.t {
            k += 1;
        }
        self.period_end = ((k + 1) * p) as f64;
        self.used_ns = 0.0;
        self.throttled = false;
        self.reschedule();
    }

    fn exhaust_budget(&mut self) {
        self.used_ns = self.budget_ns;
        self.throttled = true;
        self.stats.throttled_periods += 1;
        self.reschedule();
    }

    /// Job `j`'s work is done: its thread leaves the run queues for good.
    fn finish(&mut self, j: usize) {
        match self.th[j].place {
            Place::Rt(p) => self.leave_rt(j, p),
            Place::Fair => self.leave_fair(j),
            Place::Unborn | Place::Exited => unreachable!("only live threads finish"),
        }
        self.th[j].place = Place::Exited;
        self.th[j].cpu0 = self.service(j);
        self.completion_ns[j] = self.t;
        self.done += 1;
    }

    fn thread(&self, j: usize) -> Thread {
        Thread {
            tgid: self.jobs.function[j] + 1,
            tid: j as u32 + 1,
        }
    }

    fn request(&self, j: usize) -> Request {
        let id = j as u64 + 1;
        let t = self.thread(j);
        Request {
            id,
            tid: t.tid,
            tgid: t.tgid,
            sock: id,
            start_ns: self.jobs.arrival_raw_ns[j],
        }
    }

    /// Runs `f` on the policy at the current time, applies its actions,
    /// reschedules and calls `after_apply`.
    fn step(
        &mut self,
        policy: &mut dyn SchedPolicy,
        f: impl FnOnce(&mut dyn SchedPolicy, &dyn CpuTimes, &mut Vec<Action>),
    ) {
        self.clock.set(self.now_ns());
        let mut out = std::mem::take(&mut self.out);
        f(policy, self, &mut out);
        self.apply(&out, policy);
        out.clear();
        self.out = out;
        self.reschedule();
        policy.after_apply(self);
    }

    /// Job `j` arrives: a new worker thread with its request.
    fn arrive(&mut self, j: usize, policy: &mut dyn SchedPolicy) {
        self.th[j].cpu0 = 0.0;
        self.join_fair(j);
        let thread = self.thread(j);
        self.clock.set(self.now_ns());
        let mut out = std::mem::take(&mut self.out);
        policy.on_threads(&[thread], &mut out);
        self.apply(&out, policy);
        out.clear();
        self.out = out;
        let req = self.request(j);
        self.step(policy, |p, cpu, out| p.on_arrival(&req, cpu, out));
    }

    /// Job `j`'s work is done: reply, then the thread exits.
    fn complete(&mut self, j: usize, policy: &mut dyn SchedPolicy) {
        self.finish(j);
        let c = Completion {
            request: self.request(j),
            sender_tid: j as u32 + 1,
            end_ns: self.now_ns(),
            replied: true,
        };
        self.step(policy, |p, _, out| p.on_completion(&c, out));
        let mut out = std::mem::take(&mut self.out);
        policy.on_vanished(j as u32 + 1, None, &mut out);
        if !out.is_empty() {
            self.apply(&out, policy);
            out.clear();
            self.reschedule();
            policy.after_apply(self);
        }
        self.out = out;
    }
}

/// What [`run`] returns beside the engine run.
pub(crate) struct KernelRun {
    pub run: EngineRun,
    pub stats: KernelStats,
}

/// Simulates `jobs` on the kernel model under `policy`, whose clock is
/// `clock` (the model sets it).
pub(crate) fn run(
    jobs: &Jobs,
    cfg: &KernelConfig,
    policy: &mut dyn SchedPolicy,
    clock: &MockClock,
) -> KernelRun {
    let n = jobs.len();
    let mut k = Kernel::new(jobs, cfg, clock.clone());
    k.clock.set(0);
    let mut timeline = Vec::new();
    let mut next = 0usize;
    let mut next_sample = 0.0f64;
    let mut wake = policy.next_wakeup(&k);
    let mut timer_fired_at = f64::NEG_INFINITY;
    while k.done < n {
        let ta = if next < n {
            jobs.arrival_ns[next]
        } else {
            f64::INFINITY
        };
        let (trt, jrt) = k.next_rt_completion();
        let tf = k.next_fair_completion();
        let (tp, tx) = k.throttle_events();
        // A wake-up already served at this instant is not served again.
        let tw = wake.map_or(f64::INFINITY, |w| {
            let w = w as f64;
            if w <= timer_fired_at {
                timer_fired_at + 1.0
            } else {
                w
            }
        });
        let now = ta
            .min(trt)
            .min(tf)
            .min(tp)
            .min(tx)
            .min(tw)
            .min(next_sample)
            .max(k.t);
        if !now.is_finite() {
            debug_assert!(false, "jobs left but no event");
            break;
        }
        k.advance(now);
        if trt <= now {
            k.complete(jrt, policy);
        } else if tf <= now {
            let top = k.fair_top().expect("a fair completion is due");
            k.fair.pop();
            k.vtime = k.vtime.max(top.t);
            k.complete(top.id as usize, policy);
        } else if tp <= now {
            k.roll_period();
        } else if tx <= now {
            k.exhaust_budget();
        } else if tw <= now {
            timer_fired_at = now;
            k.step(policy, |p, cpu, out| p.on_timer(cpu, out));
        } else if ta <= now {
            let j = next;
            next += 1;
            k.arrive(j, policy);
        } else {
            timeline.push(point(k.t, policy));
            next_sample += cfg.sample_every_ns;
        }
        k.clock.set(k.now_ns());
        wake = policy.next_wakeup(&k);
    }
    if n > 0 {
        timeline.push(point(k.t, policy));
    }
    KernelRun {
        run: EngineRun {
            completion_ns: k.completion_ns,
            busy_ns: k.busy_ns,
            timeline,
            ..EngineRun::default()
        },
        stats: k.stats,
    }
}

fn point(t: f64, policy: &dyn SchedPolicy) -> TimelinePoint {
    let s = policy.snapshot();
    TimelinePoint {
        t_s: t / 1e9,
        slice_ms: s.slice_ms,
        queue_len: s.queue_len,
        fifo_holders: s.fifo_holders,
        demoted: s.demoted,
    }
}

#[cfg(test)]
mod tests {
    //! Hand-computed schedules of the model itself, driven by a policy
    //! that puts each function's threads at a fixed level.
    use super::*;
    use crate::clock::Clock;
    use crate::policy::{Cause, Completion};
    use crate::register::RequestId;

    const MS: f64 = 1e6;

    /// Every thread of function `f` (tgid f + 1) at `levels[f]`, from the
    /// moment it appears.
    struct Static(Vec<Level>);

    impl SchedPolicy for Static {
        fn name(&self) -> &'static str {
            "static"
        }
        fn decides_per_event(&self) -> bool {
            false
        }
        fn on_threads(&mut self, threads: &[Thread], out: &mut Vec<Action>) {
            for t in threads {
                out.push(Action {
                    tid: t.tid,
                    tgid: t.tgid,
                    level: self.0[t.tgid as usize - 1],
                    request: None,
                    cause: Cause::Other,
                });
            }
        }
        fn on_arrival(&mut self, _r: &Request, _cpu: &dyn CpuTimes, _out: &mut Vec<Action>) {}
        fn on_completion(&mut self, _c: &Completion, _out: &mut Vec<Action>) {}
        fn on_vanished(&mut self, _tid: u32, _r: Option<RequestId>, _out: &mut Vec<Action>) {}
    }

    /// Jobs from (arrival ms, function, service ms).
    fn jobs(arrivals: &[(f64, u32, f64)]) -> Jobs {
        let functions = arrivals.iter().map(|a| a.1).max().map_or(0, |m| m + 1);
        Jobs {
            arrival_ns: arrivals.iter().map(|a| (a.0 * MS).round()).collect(),
            arrival_raw_ns: arrivals.iter().map(|a| (a.0 * MS).round() as u64).collect(),
            service_ns: arrivals.iter().map(|a| a.2 * MS).collect(),
            deadline_ns: vec![f64::INFINITY; arrivals.len()],
            function: arrivals.iter().map(|a| a.1).collect(),
            fn_deadline_ns: vec![None; functions as usize],
            fn_labels: (0..functions).map(|f| format!("f{f}")).collect(),
        }
    }

    /// Per-job response times, ms, with throttling `(runtime, period)` ms.
    fn simulate(
        cpus: u32,
        throttle_ms: Option<(u64, u64)>,
        policy: &mut dyn SchedPolicy,
        arrivals: &[(f64, u32, f64)],
    ) -> (Vec<f64>, KernelRun) {
        simulate_on(&MockClock::new(0), cpus, throttle_ms, policy, arrivals)
    }

    /// [`simulate`] for a policy that reads `clock`.
    fn simulate_on(
        clock: &MockClock,
        cpus: u32,
        throttle_ms: Option<(u64, u64)>,
        policy: &mut dyn SchedPolicy,
        arrivals: &[(f64, u32, f64)],
    ) -> (Vec<f64>, KernelRun) {
        let j = jobs(arrivals);
        let cfg = KernelConfig {
            cpus,
            throttle: throttle_ms.map(|(r, p)| (r * 1_000_000, p * 1_000_000)),
            sample_every_ns: 1e12,
        };
        let out = run(&j, &cfg, policy, clock);
        let r = out
            .run
            .completion_ns
            .iter()
            .zip(&j.arrival_ns)
            .map(|(c, a)| (c - a) / MS)
            .collect();
        (r, out)
    }

    fn assert_ms(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn a_higher_fifo_priority_preempts_a_lower_one_and_the_fair_class() {
        // One CPU. L (prio 10, 10 ms) at 0; H (prio 20, 2 ms) at 3 preempts
        // it: H ends at 5, L at 12. F (fair, 1 ms) at 1 waits for both: 13.
        let mut p = Static(vec![Level::Fifo(10), Level::Fifo(20), Level::Other]);
        let (r, _) = simulate(
            1,
            None,
            &mut p,
            &[(0.0, 0, 10.0), (1.0, 2, 1.0), (3.0, 1, 2.0)],
        );
        assert_ms(&r, &[12.0, 12.0, 2.0]);
    }

    #[test]
    fn fifo_order_within_a_priority_and_a_preempted_thread_keeps_its_place() {
        // One CPU, prio 10: A (10 ms) at 0, B (1 ms) at 1, C (1 ms) at 2 run
        // in arrival order: A 0..10, B ..11, C ..12.
        let mut p = Static(vec![Level::Fifo(10), Level::Fifo(20)]);
        let (r, _) = simulate(
            1,
            None,
            &mut p,
            &[(0.0, 0, 10.0), (1.0, 0, 1.0), (2.0, 0, 1.0)],
        );
        assert_ms(&r, &[10.0, 10.0, 10.0]);
        // H (prio 20, 2 ms) at 3 preempts A, which resumes at the head of
        // prio 10, before B: H 3..5, A ..12, B ..13, C ..14.
        let (r, _) = simulate(
            1,
            None,
            &mut p,
            &[(0.0, 0, 10.0), (1.0, 0, 1.0), (2.0, 0, 1.0), (3.0, 1, 2.0)],
        );
        assert_ms(&r, &[12.0, 12.0, 12.0, 2.0]);
        // On two CPUs A and B run at once; C waits for B (ends at 2): 3.
        let (r, _) = simulate(
            2,
            None,
            &mut p,
            &[(0.0, 0, 10.0), (1.0, 0, 1.0), (1.5, 0, 1.0)],
        );
        assert_ms(&r, &[10.0, 1.0, 1.5]);
    }

    #[test]
    fn a_lowered_thread_goes_to_the_head_of_its_new_priority() {
        // One CPU, both at prio 20, dropped to 10 after 1 ms of CPU. A (5 ms)
        // at 0 runs alone; B (5 ms) at 0.2 waits behind it (same priority).
        // At 1 A drops to 10; B runs from 1 and drops at 2 — to the *head*
        // of prio 10 (sched(7): a lowered thread goes to the front), so it
        // keeps the CPU and ends at 6; A resumes and ends at 10.
        let clock = MockClock::new(0);
        let mut p = LevelTimer {
            clock: clock.clone(),
            live: Vec::new(),
        };
        let arrivals = [(0.0, 0, 5.0), (0.2, 0, 5.0)];
        let (r, _) = simulate_on(&clock, 1, None, &mut p, &arrivals);
        assert_ms(&r, &[10.0, 5.8]);
    }

    /// Prio 20 for new threads, prio 10 after 1 ms of CPU, with exact
    /// wake-ups (what las does with two levels).
    struct LevelTimer {
        clock: MockClock,
        live: Vec<(u32, bool)>,
    }

    const DROP_NS: u64 = 1_000_000;

    impl SchedPolicy for LevelTimer {
        fn name(&self) -> &'static str {
            "level-timer"
        }
        fn decides_per_event(&self) -> bool {
            true
        }
        fn on_threads(&mut self, threads: &[Thread], out: &mut Vec<Action>) {
            for t in threads {
                self.live.push((t.tid, false));
                out.push(Action {
                    tid: t.tid,
                    tgid: t.tgid,
                    level: Level::Fifo(20),
                    request: None,
                    cause: Cause::Other,
                });
            }
        }
        fn on_arrival(&mut self, _r: &Request, _cpu: &dyn CpuTimes, _out: &mut Vec<Action>) {}
        fn on_completion(&mut self, c: &Completion, _out: &mut Vec<Action>) {
            self.live.retain(|(t, _)| *t != c.request.tid);
        }
        fn on_vanished(&mut self, _tid: u32, _r: Option<RequestId>, _out: &mut Vec<Action>) {}
        fn on_timer(&mut self, cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
            let now = self.clock.now_ns();
            for (tid, dropped) in &mut self.live {
                if !*dropped && cpu.cpu_ns(*tid, now).unwrap() >= DROP_NS {
                    *dropped = true;
                    out.push(Action {
                        tid: *tid,
                        tgid: 1,
                        level: Level::Fifo(10),
                        request: None,
                        cause: Cause::Other,
                    });
                }
            }
        }
        fn next_wakeup(&self, cpu: &dyn CpuTimes) -> Option<u64> {
            let now = self.clock.now_ns();
            self.live
                .iter()
                .filter(|(_, d)| !d)
                .map(|(tid, _)| {
                    let used = cpu.cpu_ns(*tid, now).unwrap();
                    now + DROP_NS.saturating_sub(used).max(1)
                })
                .min()
        }
    }

    #[test]
    fn fair_threads_share_the_cpus_real_time_threads_leave() {
        // Two CPUs. R (fifo, 3 ms) holds one; X, Y, Z (fair, 2 ms) at 0
        // share the other: 1/3 each until 3 (1 ms done), then both CPUs:
        // 2/3 each, 1 ms left → done at 4.5.
        let mut p = Static(vec![Level::Fifo(10), Level::Other]);
        let (r, out) = simulate(
            2,
            None,
            &mut p,
            &[(0.0, 0, 3.0), (0.0, 1, 2.0), (0.0, 1, 2.0), (0.0, 1, 2.0)],
        );
        assert_ms(&r, &[3.0, 4.5, 4.5, 4.5]);
        assert!((out.run.busy_ns - 9.0 * MS).abs() < 1e-3);
        // One fair thread never gets more than one CPU.
        let (r, _) = simulate(4, None, &mut p, &[(0.0, 1, 2.0)]);
        assert_ms(&r, &[2.0]);
    }

    #[test]
    fn rt_throttling_pauses_fifo_threads_and_the_fair_class_runs_in_the_gaps() {
        // One CPU, 950 ms per 1000 ms. R (fifo, 2 s) runs 0..0.95 s and
        // 1..1.95 s, throttled 50 ms in each period, and ends at 2.1 s.
        let mut p = Static(vec![Level::Fifo(10), Level::Other]);
        let (r, out) = simulate(1, Some((950, 1000)), &mut p, &[(0.0, 0, 2000.0)]);
        assert_ms(&r, &[2100.0]);
        assert_eq!(out.stats.throttled_periods, 2);
        assert!((out.stats.throttled_ns - 100.0 * MS).abs() < 1e-3);
        // F (fair, 60 ms) at 0 runs only in the gaps: 50 ms in 0.95..1 s,
        // the last 10 ms in 1.95..1.96 s; the CPU then idles until 2 s.
        let (r, out) = simulate(
            1,
            Some((950, 1000)),
            &mut p,
            &[(0.0, 0, 2000.0), (0.0, 1, 60.0)],
        );
        assert_ms(&r, &[2100.0, 1960.0]);
        assert!((out.run.busy_ns - 2060.0 * MS).abs() < 1e-3);
        // Without throttling R runs straight through and F waits.
        let (r, _) = simulate(1, None, &mut p, &[(0.0, 0, 2000.0), (0.0, 1, 60.0)]);
        assert_ms(&r, &[2000.0, 2060.0]);
    }

    #[test]
    fn the_rt_budget_is_shared_by_all_cpus() {
        // The model's approximation: c × runtime for all real-time threads
        // together. One fifo thread on two CPUs uses at most half of it and
        // is never throttled; two use 2 s per period, more than 1.9 s.
        let mut p = Static(vec![Level::Fifo(10)]);
        let (r, out) = simulate(2, Some((950, 1000)), &mut p, &[(0.0, 0, 2000.0)]);
        assert_ms(&r, &[2000.0]);
        assert_eq!(out.stats.throttled_periods, 0);
        let (r, out) = simulate(
            2,
            Some((950, 1000)),
            &mut p,
            &[(0.0, 0, 2000.0), (0.0, 0, 2000.0)],
        );
        assert_ms(&r, &[2100.0, 2100.0]);
        assert_eq!(out.stats.throttled_periods, 2);
    }
}
