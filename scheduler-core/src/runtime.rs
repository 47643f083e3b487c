//! The two-level runtime: the pure state machine of the seed's Runtime and
//! SFS (SC'22). Each request goes
//!
//! ```text
//! Initiated ──slot free──► Embarked (SCHED_FIFO, credit S)
//!     │                        │ credit spent (on-CPU time)
//!     │ waited > overload×S    ▼
//!     └──────────────────► Demoted (SCHED_OTHER)
//!                              │ deadline within imminent×S, not passed, once
//!                              ▼
//!                          Imminent (SCHED_FIFO, fresh credit S) ──spent──► Demoted
//! ```
//!
//! and leaves from any state when its reply is sent. At most `c` requests
//! hold SCHED_FIFO (Embarked or Imminent); the rest wait in arrival order.
//! When a slot frees, an Imminent candidate (earliest deadline first) goes
//! before the waiting queue. Credit is on-CPU time, so a request that
//! sleeps (I/O) keeps what it has not used (SFS). S comes from the
//! [`SliceController`] at the moment a request embarks.
//!
//! The runtime does no I/O: events (arrival, completion, timer expiry) come
//! in with a [`Clock`] and a [`CpuTimes`] reading; [`Action`]s (set FIFO /
//! set OTHER) go out to the actuator; [`Runtime::next_wakeup`] tells the
//! agent when to call [`Runtime::on_timer`] next. It is the `two-level`
//! [`SchedPolicy`]: the agent and the simulator drive this one object.
//!
//! A FIFO stint's credit is metered from [`Runtime::start_credits`], which
//! the agent calls once the step's actions are applied: reading a thread's
//! CPU time is a system call (tens of µs in a VM), so it must not sit between
//! an arrival and its `sched_setattr`, and the stint really starts when the
//! thread is in SCHED_FIFO anyway.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::params::{SliceController, TwoLevelParams};
pub use crate::policy::CpuTimes;
use crate::policy::{Action, Cause, Completion, Level, PolicyReport, SchedPolicy, Snapshot};
use crate::register::{Request, RequestId};

/// Where a request is in the two-level policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Initiated,
    Embarked,
    Demoted,
    Imminent,
}

/// Counts of every transition, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionCounts {
    /// Arrivals (→ Initiated).
    pub arrived: u64,
    /// Initiated → Embarked.
    pub embarked: u64,
    /// Embarked → Demoted: credit spent.
    pub credit_demotions: u64,
    /// Initiated → Demoted: waited more than overload_factor × S.
    pub overload_demotions: u64,
    /// Demoted → Imminent.
    pub promotions: u64,
    /// Imminent → Demoted: the fresh credit spent too.
    pub imminent_demotions: u64,
    /// Requests that ended in each state.
    pub completed_initiated: u64,
    pub completed_embarked: u64,
    pub completed_demoted: u64,
    pub completed_imminent: u64,
}

impl TransitionCounts {
    /// Every move to SCHED_OTHER-level Demoted.
    pub fn demotions(&self) -> u64 {
        self.credit_demotions + self.overload_demotions + self.imminent_demotions
    }
}

#[derive(Debug, Clone)]
struct Req {
    tid: u32,
    tgid: u32,
    arrival_ns: u64,
    deadline_at: Option<u64>,
    state: State,
    /// Initiated: when it joined the queue.
    queued_since: u64,
    /// FIFO stint: credit granted and the thread's CPU time at its start
    /// (`None` until [`Runtime::start_credits`] read it: nothing used yet).
    credit_ns: u64,
    cpu_start_ns: Option<u64>,
    promoted: bool,
}

impl Req {
    /// On-CPU time the current FIFO stint has used (0 before its meter
    /// started).
    fn credit_used(&self, cpu: &dyn CpuTimes, now: u64) -> u64 {
        match self.cpu_start_ns {
            Some(start) => cpu
                .cpu_ns(self.tid, now)
                .map_or(0, |c| c.saturating_sub(start)),
            None => 0,
        }
    }
}

/// Wake-ups are never scheduled closer than this to now (no busy loop).
const MIN_WAKEUP_NS: u64 = 10_000;

/// The two-level state machine.
#[derive(Debug)]
pub struct Runtime<C: Clock> {
    params: TwoLevelParams,
    controller: SliceController,
    clock: C,
    reqs: FxHashMap<RequestId, Req>,
    queue: VecDeque<RequestId>,
    holders: Vec<RequestId>,
    demoted: Vec<RequestId>,
    deadlines: HashMap<u32, u64>,
    counts: TransitionCounts,
}

impl<C: Clock> Runtime<C> {
    /// A runtime with per-process relative deadlines (`tgid → ns`).
    pub fn new(params: TwoLevelParams, clock: C, deadlines: HashMap<u32, u64>) -> Self {
        Runtime {
            params,
            controller: SliceController::new(params),
            clock,
            reqs: FxHashMap::default(),
            queue: VecDeque::new(),
            holders: Vec::with_capacity(params.cpus as usize),
            demoted: Vec::new(),
            deadlines,
            counts: TransitionCounts::default(),
        }
    }

    /// The current slice S, ns.
    pub fn slice_ns(&self) -> u64 {
        self.controller.slice_ns()
    }

    pub fn counts(&self) -> TransitionCounts {
        self.counts
    }

    /// Requests waiting for a FIFO slot.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Requests holding SCHED_FIFO.
    pub fn fifo_holders(&self) -> usize {
        self.holders.len()
    }

    /// Requests demoted and not finished.
    pub fn demoted(&self) -> usize {
        self.demoted.len()
    }

    /// State of a live request.
    pub fn state(&self, id: RequestId) -> Option<State> {
        self.reqs.get(&id).map(|r| r.state)
    }

    /// A request arrived.
    pub fn on_arrival(&mut self, r: &Request, out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        self.controller.on_arrival(r.start_ns);
        self.counts.arrived += 1;
        let deadline_at = self.deadlines.get(&r.tgid).map(|d| r.start_ns + d);
        self.reqs.insert(
            r.id,
            Req {
                tid: r.tid,
                tgid: r.tgid,
                arrival_ns: r.start_ns,
                deadline_at,
                state: State::Initiated,
                queued_since: now,
                credit_ns: 0,
                cpu_start_ns: None,
                promoted: false,
            },
        );
        self.queue.push_back(r.id);
        self.fill_slots(now, out, Some(r.id));
    }

    /// A request ended (reply sent, abandoned, or its thread vanished).
    pub fn on_completion(&mut self, id: RequestId, out: &mut Vec<Action>) {
        let Some(r) = self.reqs.remove(&id) else {
            return;
        };
        match r.state {
            State::Initiated => {
                self.counts.completed_initiated += 1;
                self.queue.retain(|q| *q != id);
            }
            State::Embarked | State::Imminent => {
                if r.state == State::Embarked {
                    self.counts.completed_embarked += 1;
                } else {
                    self.counts.completed_imminent += 1;
                }
                self.holders.retain(|h| *h != id);
                out.push(Action {
                    tid: r.tid,
                    tgid: r.tgid,
                    level: Level::Other,
                    request: Some(id),
                    cause: Cause::Other,
                });
            }
            State::Demoted => {
                self.counts.completed_demoted += 1;
                self.demoted.retain(|d| *d != id);
            }
        }
        let now = self.clock.now_ns();
        self.fill_slots(now, out, None);
    }

    /// Timer expiry (or any time): demote holders whose credit is spent,
    /// demote overloaded waiters, fill free slots.
    pub fn on_timer(&mut self, cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        let now = self.clock.now_ns();
        let mut i = 0;
        while i < self.holders.len() {
            let id = self.holders[i];
            let r = self.reqs.get_mut(&id).expect("holder is live");
            let used = r.credit_used(cpu, now);
            if used < r.credit_ns {
                i += 1;
                continue;
            }
            // Ran out `used - credit` ns ago if it ran continuously since.
            let exhausted = now.saturating_sub(used - r.credit_ns);
            if r.state == State::Embarked {
                self.counts.credit_demotions += 1;
            } else {
                self.counts.imminent_demotions += 1;
            }
            r.state = State::Demoted;
            out.push(Action {
                tid: r.tid,
                tgid: r.tgid,
                level: Level::Other,
                request: Some(id),
                cause: Cause::Exhausted { at_ns: exhausted },
            });
            self.holders.swap_remove(i);
            self.demoted.push(id);
        }
        let limit = self.overload_wait_ns();
        while let Some(&id) = self.queue.front() {
            let r = self.reqs.get_mut(&id).expect("queued is live");
            if now.saturating_sub(r.queued_since) <= limit {
                break;
            }
            r.state = State::Demoted;
            self.counts.overload_demotions += 1;
            self.queue.pop_front();
            self.demoted.push(id);
        }
        self.fill_slots(now, out, None);
    }

    /// Starts the credit meter of every stint begun since the last call:
    /// each holder's CPU time now. Call it after applying the actions that
    /// put them in SCHED_FIFO.
    pub fn start_credits(&mut self, cpu: &dyn CpuTimes) {
        let now = self.clock.now_ns();
        for id in &self.holders {
            let r = self.reqs.get_mut(id).expect("holder is live");
            if r.cpu_start_ns.is_none() {
                r.cpu_start_ns = Some(cpu.cpu_ns(r.tid, now).unwrap_or(0));
            }
        }
    }

    /// When [`Runtime::on_timer`] must run next (absolute ns), if ever.
    pub fn next_wakeup(&self, cpu: &dyn CpuTimes) -> Option<u64> {
        let now = self.clock.now_ns();
        let s = self.slice_ns();
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| {
            let t = t.max(now + MIN_WAKEUP_NS);
            next = Some(next.map_or(t, |n: u64| n.min(t)));
        };
        for id in &self.holders {
            let r = &self.reqs[id];
            let used = r.credit_used(cpu, now);
            consider(now + r.credit_ns.saturating_sub(used));
        }
        if let Some(id) = self.queue.front() {
            consider(self.reqs[id].queued_since + self.overload_wait_ns() + 1);
        }
        if self.holders.len() < self.params.cpus as usize {
            let window = (self.params.imminent_factor * s as f64) as u64;
            for id in &self.demoted {
                let r = &self.reqs[id];
                if let (false, Some(d)) = (r.promoted, r.deadline_at) {
                    let eligible = d.saturating_sub(window);
                    if eligible > now && d > now {
                        consider(eligible);
                    }
                }
            }
        }
        next
    }

    fn overload_wait_ns(&self) -> u64 {
        (self.params.overload_factor * self.slice_ns() as f64) as u64
    }

    /// Gives free FIFO slots to Imminent candidates (earliest deadline
    /// first), then to waiting requests in arrival order.
    fn fill_slots(&mut self, now: u64, out: &mut Vec<Action>, arriving: Option<RequestId>) {
        let s = self.slice_ns();
        let window = (self.params.imminent_factor * s as f64) as u64;
        while self.holders.len() < self.params.cpus as usize {
            let candidate = self
                .demoted
                .iter()
                .enumerate()
                .filter_map(|(i, id)| {
                    let r = &self.reqs[id];
                    let d = r.deadline_at?;
                    (!r.promoted && d > now && d - now <= window).then_some((d, i))
                })
                .min();
            let (id, state) = if let Some((_, i)) = candidate {
                self.counts.promotions += 1;
                (self.demoted.swap_remove(i), State::Imminent)
            } else if let Some(id) = self.queue.pop_front() {
                self.counts.embarked += 1;
                (id, State::Embarked)
            } else {
                break;
            };
            let r = self.reqs.get_mut(&id).expect("live request");
            r.state = state;
            r.promoted |= state == State::Imminent;
            r.credit_ns = s;
            r.cpu_start_ns = None;
            self.holders.push(id);
            out.push(Action {
                tid: r.tid,
                tgid: r.tgid,
                level: Level::Fifo(self.params.fifo_priority),
                request: Some(id),
                cause: if arriving == Some(id) {
                    Cause::Arrival {
                        arrival_ns: r.arrival_ns,
                    }
                } else {
                    Cause::Other
                },
            });
        }
    }
}

impl<C: Clock> SchedPolicy for Runtime<C> {
    fn name(&self) -> &'static str {
        "two-level"
    }

    fn decides_per_event(&self) -> bool {
        true
    }

    fn on_arrival(&mut self, r: &Request, _cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        Runtime::on_arrival(self, r, out);
    }

    fn on_completion(&mut self, c: &Completion, out: &mut Vec<Action>) {
        Runtime::on_completion(self, c.request.id, out);
    }

    fn on_vanished(&mut self, _tid: u32, request: Option<RequestId>, out: &mut Vec<Action>) {
        if let Some(id) = request {
            Runtime::on_completion(self, id, out);
        }
    }

    fn on_timer(&mut self, cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        Runtime::on_timer(self, cpu, out);
    }

    fn after_apply(&mut self, cpu: &dyn CpuTimes) {
        self.start_credits(cpu);
    }

    fn punctual_timers(&self) -> bool {
        true
    }

    fn next_wakeup(&self, cpu: &dyn CpuTimes) -> Option<u64> {
        Runtime::next_wakeup(self, cpu)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            slice_ms: self.slice_ns() as f64 / 1e6,
            queue_len: self.queue_len() as u32,
            fifo_holders: self.fifo_holders() as u32,
            demoted: self.demoted() as u32,
        }
    }

    fn report(&self) -> PolicyReport {
        PolicyReport {
            transitions: self.counts,
            ..PolicyReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;
    use crate::policy::testing::MockCpu;

    const MS: u64 = 1_000_000;

    struct Fixture {
        clock: MockClock,
        cpu: MockCpu,
        rt: Runtime<MockClock>,
        out: Vec<Action>,
    }

    fn fixture(cpus: u32, deadlines: &[(u32, u64)]) -> Fixture {
        let clock = MockClock::new(1_000 * MS);
        let params = TwoLevelParams {
            cpus,
            ..Default::default()
        };
        Fixture {
            rt: Runtime::new(params, clock.clone(), deadlines.iter().copied().collect()),
            clock,
            cpu: MockCpu::default(),
            out: Vec::new(),
        }
    }

    impl Fixture {
        fn arrive(&mut self, id: RequestId, tid: u32) {
            let r = Request {
                id,
                tid,
                tgid: 7,
                sock: id,
                start_ns: self.clock.now_ns(),
            };
            self.rt.on_arrival(&r, &mut self.out);
            self.rt.start_credits(&self.cpu);
        }
        fn complete(&mut self, id: RequestId) {
            self.rt.on_completion(id, &mut self.out);
            self.rt.start_credits(&self.cpu);
        }
        /// A timer expiry, its actions applied (as the agent does).
        fn timer(&mut self) {
            self.rt.on_timer(&self.cpu, &mut self.out);
            self.rt.start_credits(&self.cpu);
        }
        fn take(&mut self) -> Vec<Action> {
            std::mem::take(&mut self.out)
        }
        /// Runs thread `tid` for `ns` of wall = CPU time.
        fn run(&mut self, tid: u32, ns: u64) {
            self.clock.advance(ns);
            self.cpu.add(tid, ns);
        }
    }

    fn fifo_ids(actions: &[Action]) -> Vec<RequestId> {
        actions
            .iter()
            .filter(|a| matches!(a.level, Level::Fifo(_)))
            .filter_map(|a| a.request)
            .collect()
    }

    fn other_ids(actions: &[Action]) -> Vec<RequestId> {
        actions
            .iter()
            .filter(|a| a.level == Level::Other)
            .filter_map(|a| a.request)
            .collect()
    }

    #[test]
    fn arrival_with_a_free_slot_embarks_at_once() {
        let mut f = fixture(1, &[]);
        f.arrive(1, 11);
        let a = f.take();
        assert!(matches!(
            a[..],
            [Action {
                request: Some(1),
                tid: 11,
                level: Level::Fifo(_),
                cause: Cause::Arrival { .. },
                ..
            }]
        ));
        assert_eq!(f.rt.state(1), Some(State::Embarked));
        f.complete(1);
        assert_eq!(other_ids(&f.take()), [1], "thread goes back to OTHER");
        assert_eq!(f.rt.counts().completed_embarked, 1);
    }

    #[test]
    fn credit_is_metered_from_start_credits_not_from_the_decision() {
        let mut f = fixture(1, &[]);
        let r = Request {
            id: 1,
            tid: 11,
            tgid: 7,
            sock: 1,
            start_ns: f.clock.now_ns(),
        };
        f.rt.on_arrival(&r, &mut f.out);
        assert_eq!(fifo_ids(&f.take()), [1]);
        // CPU the thread burns before its SCHED_FIFO is set is not charged:
        // the meter has not started, so the whole credit remains.
        f.run(11, 3 * MS);
        let s = f.rt.slice_ns();
        assert_eq!(f.rt.next_wakeup(&f.cpu), Some(f.clock.now_ns() + s));
        f.rt.start_credits(&f.cpu);
        f.run(11, s - MS);
        f.timer();
        assert!(f.take().is_empty(), "1 ms of credit left, not -2 ms");
        f.run(11, MS);
        f.timer();
        assert_eq!(other_ids(&f.take()), [1]);
    }

    #[test]
    fn credit_exhaustion_demotes_with_the_exhaustion_time() {
        let mut f = fixture(1, &[]);
        f.arrive(1, 11);
        f.take();
        let s = f.rt.slice_ns();
        assert_eq!(s, 20 * MS, "initial slice");
        assert_eq!(f.rt.next_wakeup(&f.cpu), Some(f.clock.now_ns() + s));
        f.run(11, s - MS);
        f.timer();
        assert!(f.take().is_empty(), "1 ms of credit left");
        assert_eq!(f.rt.next_wakeup(&f.cpu), Some(f.clock.now_ns() + MS));
        f.run(11, MS + 50_000); // timer fires 50 µs late
        f.timer();
        let a = f.take();
        let exhausted_at = f.clock.now_ns() - 50_000;
        assert!(
            matches!(a[..], [Action { request: Some(1), level: Level::Other, cause: Cause::Exhausted { at_ns: t }, .. }] if t == exhausted_at),
            "{a:?}"
        );
        assert_eq!(f.rt.state(1), Some(State::Demoted));
        assert_eq!(f.rt.counts().credit_demotions, 1);
    }

    #[test]
    fn a_sleeping_request_keeps_its_credit() {
        let mut f = fixture(1, &[]);
        f.arrive(1, 11);
        f.take();
        f.run(11, 5 * MS);
        f.clock.advance(100 * MS); // sleeps 100 ms: no CPU time
        f.timer();
        assert!(f.take().is_empty());
        assert_eq!(f.rt.state(1), Some(State::Embarked));
        assert_eq!(
            f.rt.next_wakeup(&f.cpu),
            Some(f.clock.now_ns() + 15 * MS),
            "15 ms of credit remain after sleeping"
        );
        f.run(11, 15 * MS);
        f.timer();
        assert_eq!(other_ids(&f.take()), [1]);
    }

    #[test]
    fn at_most_c_holders_and_the_rest_wait_in_arrival_order() {
        let mut f = fixture(2, &[]);
        for (id, tid) in [(1, 11), (2, 12), (3, 13), (4, 14)] {
            f.arrive(id, tid);
        }
        assert_eq!(fifo_ids(&f.take()), [1, 2]);
        assert_eq!((f.rt.fifo_holders(), f.rt.queue_len()), (2, 2));
        f.complete(2);
        let a = f.take();
        assert_eq!(other_ids(&a), [2]);
        assert_eq!(fifo_ids(&a), [3], "oldest waiter first");
        assert!(matches!(
            a[1],
            Action {
                level: Level::Fifo(_),
                cause: Cause::Other,
                ..
            }
        ));
        f.complete(1);
        assert_eq!(fifo_ids(&f.take()), [4]);
        assert_eq!(f.rt.fifo_holders(), 2);
    }

    #[test]
    fn waiting_longer_than_overload_times_s_demotes_without_fifo() {
        let mut f = fixture(1, &[]);
        f.arrive(1, 11);
        f.arrive(2, 12);
        assert_eq!(fifo_ids(&f.take()), [1]);
        // S is now the mean IAT (0 → clamped to 1 ms): make S known instead
        let s = f.rt.slice_ns();
        assert_eq!(s, MS, "two arrivals at the same instant clamp S to 1 ms");
        let wake = f.rt.next_wakeup(&f.cpu).unwrap();
        assert!(wake <= f.clock.now_ns() + 3 * s + 1, "{wake}");
        // request 1 sleeps (keeps the slot, spends no credit); 2 waits 3 S
        f.clock.advance(3 * s);
        f.timer();
        assert_eq!(
            f.rt.state(2),
            Some(State::Initiated),
            "exactly 3 S is not more"
        );
        f.clock.advance(1);
        f.timer();
        assert!(f.take().is_empty(), "already SCHED_OTHER: no action");
        assert_eq!(f.rt.state(2), Some(State::Demoted));
        assert_eq!(f.rt.counts().overload_demotions, 1);
        assert_eq!(f.rt.queue_len(), 0);
    }

    #[test]
    fn imminent_promotion_happens_once_with_a_fresh_credit() {
        // deadline 100 ms for tgid 7; S stays 20 ms (one arrival)
        let mut f = fixture(1, &[(7, 100 * MS)]);
        f.arrive(1, 11);
        f.take();
        f.run(11, 20 * MS);
        f.timer();
        assert_eq!(other_ids(&f.take()), [1]);
        assert_eq!(f.rt.state(1), Some(State::Demoted));
        // eligible at deadline − 1×S = 80 ms after arrival
        let arrival = f.clock.now_ns() - 20 * MS;
        assert_eq!(f.rt.next_wakeup(&f.cpu), Some(arrival + 80 * MS));
        f.run(11, 59 * MS); // t = 79 ms
        f.timer();
        assert!(f.take().is_empty(), "not yet within S of the deadline");
        f.run(11, MS); // t = 80 ms
        f.timer();
        assert_eq!(fifo_ids(&f.take()), [1]);
        assert_eq!(f.rt.state(1), Some(State::Imminent));
        f.run(11, 20 * MS);
        f.timer();
        assert_eq!(other_ids(&f.take()), [1], "fresh credit of S spent");
        assert_eq!(f.rt.state(1), Some(State::Demoted));
        assert_eq!(f.rt.next_wakeup(&f.cpu), None, "never promoted twice");
        f.timer();
        assert!(f.take().is_empty());
        let c = f.rt.counts();
        assert_eq!((c.promotions, c.imminent_demotions), (1, 1));
    }

    #[test]
    fn a_passed_deadline_is_not_imminent() {
        let mut f = fixture(1, &[(7, 10 * MS)]);
        f.arrive(1, 11);
        f.take();
        f.run(11, 20 * MS); // credit spent after the 10 ms deadline
        f.timer();
        assert_eq!(other_ids(&f.take()), [1]);
        assert_eq!(f.rt.state(1), Some(State::Demoted));
        assert_eq!(f.rt.counts().promotions, 0);
    }

    #[test]
    fn imminent_goes_before_the_waiting_queue() {
        let mut f = fixture(1, &[(7, 30 * MS)]);
        f.arrive(1, 11);
        f.take();
        f.run(11, 20 * MS);
        f.arrive(2, 12); // IAT 20 ms → S = 20 ms; 1 is still embarked
        f.timer(); // 1 demoted; deadline in 10 ms ≤ S: promoted before 2
        let a = f.take();
        assert_eq!(other_ids(&a), [1]);
        assert_eq!(fifo_ids(&a), [1]);
        assert_eq!(f.rt.state(1), Some(State::Imminent));
        assert_eq!(f.rt.state(2), Some(State::Initiated));
        f.complete(1);
        assert_eq!(fifo_ids(&f.take()), [2]);
    }

    #[test]
    fn controller_sets_the_credit_of_later_requests() {
        let mut f = fixture(2, &[]);
        for id in 1..=11u64 {
            f.arrive(id, id as u32);
            f.complete(id);
            f.clock.advance(5 * MS);
        }
        assert_eq!(f.rt.slice_ns(), 10 * MS, "IAT 5 ms × c 2");
        f.take();
        f.arrive(100, 100);
        f.take();
        assert_eq!(f.rt.next_wakeup(&f.cpu), Some(f.clock.now_ns() + 10 * MS));
    }

    #[test]
    fn completion_of_a_waiting_or_demoted_request_frees_no_slot() {
        let mut f = fixture(1, &[]);
        f.arrive(1, 11);
        f.arrive(2, 12);
        f.take();
        f.complete(2);
        assert!(f.take().is_empty());
        assert_eq!(f.rt.queue_len(), 0);
        assert_eq!(f.rt.counts().completed_initiated, 1);
    }
}
