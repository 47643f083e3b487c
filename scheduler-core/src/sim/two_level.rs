//! `two-level`: slokit's FIFO→CFS policy (the seed's runtime, SFS's
//! two-level scheduler) in the model, with the agent's states and its
//! [`TwoLevelParams`]/[`SliceController`]:
//!
//! - **Initiated** — on arrival the controller records the arrival (S =
//!   mean IAT over the window × c, clamped) and the request joins the FIFO
//!   queue, in arrival order. It gets no CPU while queued.
//! - **Embarked** — at most c requests hold a FIFO slot; each runs on its
//!   own CPU at full speed with credit S (the S current when it embarks).
//!   FIFO holders preempt the fair class.
//! - **Demoted** — a holder that spends its credit before finishing, or a
//!   queued request that waited more than `overload_factor` × S for a slot
//!   (SFS's overload rule, with the current S), moves to the fair class.
//!   Demoted requests share the CPUs FIFO holders leave free as processor
//!   sharing: each of m gets min(1, (c − holders)/m).
//! - **Imminent** — a demoted request whose deadline is at most
//!   `imminent_factor` × S away and not yet passed becomes a candidate for
//!   one more FIFO slice with fresh credit S, once per request. Candidates
//!   take free slots before queued Initiated requests, earliest deadline
//!   first; until a slot frees up they keep running in the fair class, and
//!   a candidate whose deadline passes is dropped.
//!
//! Requests are CPU-bound (no sleeping), so the unused-credit rule of SFS
//! does not arise. Event-driven: holders end at fixed times (they are never
//! preempted), the fair class is PS in virtual time, and the overload and
//! Imminent timers are the head of a queue/heap compared against the
//! current S (which only changes at arrivals).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use slokit_functions::record::TimelinePoint;

use super::ps::share;
use super::{EngineRun, Jobs, Key};
use crate::{SliceController, TwoLevelParams};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotArrived,
    Initiated,
    Embarked,
    Demoted,
    Done,
}

struct Model<'a> {
    jobs: &'a Jobs,
    c: u32,
    params: TwoLevelParams,
    controller: SliceController,
    /// Current S, ns.
    slice_ns: f64,
    t: f64,
    state: Vec<State>,
    /// Work left after the current FIFO slice (for holders) or at the last
    /// demotion (for demoted requests), ns.
    remaining: Vec<f64>,
    /// Virtual finishing tag in the fair class.
    tag: Vec<f64>,
    /// Times demoted; stamps fair-class heap entries so stale ones are skipped.
    epoch: Vec<u32>,
    promoted: Vec<bool>,
    queue: VecDeque<u32>,
    holders: BinaryHeap<Reverse<Key>>,
    fair: BinaryHeap<Reverse<Key>>,
    fair_n: usize,
    /// Fair-class virtual time: ∫ share dt.
    vtime: f64,
    /// Demoted, never-promoted requests with a deadline, by deadline.
    watch: BinaryHeap<Reverse<Key>>,
    /// Imminent candidates waiting for a slot, by deadline.
    lane: BinaryHeap<Reverse<Key>>,
    completion_ns: Vec<f64>,
    busy_ns: f64,
    done: usize,
}

impl Model<'_> {
    fn fair_rate(&self) -> f64 {
        share((self.c - self.holders.len() as u32) as f64, self.fair_n)
    }

    fn advance(&mut self, now: f64) {
        let dt = now - self.t;
        if dt > 0.0 {
            let rate = self.fair_rate();
            self.vtime += dt * rate;
            self.busy_ns += dt * (self.holders.len() as f64 + rate * self.fair_n as f64);
            self.t = now;
        }
    }

    fn embark(&mut self, j: u32) {
        let i = j as usize;
        let run = self.remaining[i].min(self.slice_ns);
        self.remaining[i] -= run;
        if self.remaining[i] <= 0.0 {
            self.remaining[i] = 0.0;
        }
        self.state[i] = State::Embarked;
        self.holders.push(Reverse(Key::new(self.t + run, j)));
    }

    fn demote(&mut self, j: u32) {
        let i = j as usize;
        self.state[i] = State::Demoted;
        self.epoch[i] += 1;
        self.tag[i] = self.vtime + self.remaining[i];
        self.fair.push(Reverse(Key {
            t: self.tag[i],
            id: j,
            tag: self.epoch[i],
        }));
        self.fair_n += 1;
        if !self.promoted[i]
            && self.jobs.deadline_ns[i].is_finite()
            && self.params.imminent_factor > 0.0
        {
            self.watch
                .push(Reverse(Key::new(self.jobs.deadline_ns[i], j)));
        }
    }

    fn complete(&mut self, j: u32) {
        self.state[j as usize] = State::Done;
        self.completion_ns[j as usize] = self.t;
        self.done += 1;
    }

    /// Fills free FIFO slots: Imminent candidates first (earliest deadline),
    /// then the Initiated queue in arrival order.
    fn dispatch(&mut self) {
        while self.holders.len() < self.c as usize {
            if let Some(j) = self.pop_candidate() {
                let i = j as usize;
                self.remaining[i] = (self.tag[i] - self.vtime).max(0.0);
                self.fair_n -= 1;
                self.promoted[i] = true;
                self.embark(j);
            } else if let Some(j) = self.queue.pop_front() {
                self.embark(j);
            } else {
                break;
            }
        }
    }

    fn pop_candidate(&mut self) -> Option<u32> {
        while let Some(Reverse(k)) = self.lane.pop() {
            if self.state[k.id as usize] == State::Demoted && k.t > self.t {
                return Some(k.id);
            }
        }
        None
    }

    fn fair_top(&mut self) -> Option<Key> {
        while let Some(Reverse(k)) = self.fair.peek() {
            let i = k.id as usize;
            if self.state[i] == State::Demoted && self.epoch[i] == k.tag {
                return Some(*k);
            }
            self.fair.pop();
        }
        None
    }

    fn watch_top(&mut self) -> Option<Key> {
        while let Some(Reverse(k)) = self.watch.peek() {
            if self.state[k.id as usize] == State::Demoted && !self.promoted[k.id as usize] {
                return Some(*k);
            }
            self.watch.pop();
        }
        None
    }

    fn point(&self) -> TimelinePoint {
        TimelinePoint {
            t_s: self.t / 1e9,
            slice_ms: self.slice_ns / 1e6,
            queue_len: self.queue.len() as u32,
            fifo_holders: self.holders.len() as u32,
            demoted: self.fair_n as u32,
        }
    }
}

pub(crate) fn run(
    jobs: &Jobs,
    cpus: u32,
    params: TwoLevelParams,
    sample_every_ns: f64,
) -> EngineRun {
    let n = jobs.len();
    let controller = SliceController::new(params);
    let mut m = Model {
        jobs,
        c: cpus,
        params,
        slice_ns: controller.slice_ns() as f64,
        controller,
        t: 0.0,
        state: vec![State::NotArrived; n],
        remaining: jobs.service_ns.clone(),
        tag: vec![0.0; n],
        epoch: vec![0; n],
        promoted: vec![false; n],
        queue: VecDeque::new(),
        holders: BinaryHeap::with_capacity(cpus as usize),
        fair: BinaryHeap::new(),
        fair_n: 0,
        vtime: 0.0,
        watch: BinaryHeap::new(),
        lane: BinaryHeap::new(),
        completion_ns: vec![f64::NAN; n],
        busy_ns: 0.0,
        done: 0,
    };
    let mut timeline = Vec::new();
    let mut next_sample = 0.0f64;
    let mut next = 0usize;
    let overload = params.overload_factor;
    let imminent = params.imminent_factor;
    while m.done < n {
        let ta = if next < n {
            jobs.arrival_ns[next]
        } else {
            f64::INFINITY
        };
        let th = m.holders.peek().map_or(f64::INFINITY, |k| k.0.t);
        let tf = match m.fair_top() {
            Some(k) => {
                let rate = m.fair_rate();
                if rate > 0.0 {
                    m.t + (k.t - m.vtime).max(0.0) / rate
                } else {
                    f64::INFINITY
                }
            }
            None => f64::INFINITY,
        };
        let to = m.queue.front().map_or(f64::INFINITY, |&j| {
            jobs.arrival_ns[j as usize] + overload * m.slice_ns
        });
        let ti = if imminent > 0.0 {
            m.watch_top()
                .map_or(f64::INFINITY, |k| k.t - imminent * m.slice_ns)
        } else {
            f64::INFINITY
        };
        let now = ta.min(th).min(tf).min(to).min(ti).min(next_sample).max(m.t);
        debug_assert!(now.is_finite(), "jobs left but no event");
        m.advance(now);
        if th <= now {
            let Reverse(k) = m.holders.pop().expect("peeked");
            if m.remaining[k.id as usize] == 0.0 {
                m.complete(k.id);
            } else {
                m.demote(k.id);
            }
            m.dispatch();
        } else if tf <= now {
            let k = m.fair_top().expect("peeked");
            m.fair.pop();
            m.vtime = m.vtime.max(k.t);
            m.fair_n -= 1;
            m.complete(k.id);
        } else if to <= now {
            while let Some(&j) = m.queue.front() {
                if jobs.arrival_ns[j as usize] + overload * m.slice_ns > now {
                    break;
                }
                m.queue.pop_front();
                m.demote(j);
            }
        } else if ti <= now {
            while let Some(k) = m.watch_top() {
                if k.t - imminent * m.slice_ns > now {
                    break;
                }
                m.watch.pop();
                if k.t > now {
                    m.lane.push(Reverse(k));
                }
            }
            m.dispatch();
        } else if ta <= now {
            let j = next as u32;
            next += 1;
            m.controller.on_arrival(jobs.arrival_raw_ns[j as usize]);
            m.slice_ns = m.controller.slice_ns() as f64;
            m.state[j as usize] = State::Initiated;
            m.queue.push_back(j);
            m.dispatch();
        } else {
            timeline.push(m.point());
            next_sample += sample_every_ns;
        }
    }
    if n > 0 {
        timeline.push(m.point());
    }
    EngineRun {
        completion_ns: m.completion_ns,
        busy_ns: m.busy_ns,
        timeline,
    }
}
