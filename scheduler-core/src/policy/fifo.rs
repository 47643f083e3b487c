//! `fifo`: every worker thread of the targets in SCHED_FIFO at one
//! priority for the agent's lifetime — run to completion in arrival order
//! (the seed's FIFO baseline). Workers are the threads the host names
//! `fn-worker-*` (or the runtime's `--worker-prefix`; found at start and on
//! rescans) and, for runtimes with other names, every thread seen receiving
//! a request — and, in a runtime that hands requests off (one thread
//! receives, another replies), every thread seen replying: that one ran the
//! function.

use rustc_hash::FxHashSet;

use super::{
    Action, Cause, Completion, CpuTimes, Level, PolicyReport, SchedPolicy, Snapshot, Thread,
};
use crate::register::{Request, RequestId};

/// The static SCHED_FIFO baseline.
#[derive(Debug, Clone)]
pub struct Fifo {
    priority: u8,
    /// Threads asked to be put in SCHED_FIFO.
    placed: FxHashSet<u32>,
    /// Of those, how many the caller applied.
    applied: u64,
    active: u32,
}

impl Fifo {
    pub fn new(priority: u8) -> Self {
        Fifo {
            priority,
            placed: FxHashSet::default(),
            applied: 0,
            active: 0,
        }
    }

    fn place(
        &mut self,
        t: Thread,
        request: Option<RequestId>,
        cause: Cause,
        out: &mut Vec<Action>,
    ) {
        if self.placed.insert(t.tid) {
            out.push(Action {
                tid: t.tid,
                tgid: t.tgid,
                level: Level::Fifo(self.priority),
                request,
                cause,
            });
        }
    }
}

impl SchedPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn decides_per_event(&self) -> bool {
        false
    }

    fn on_threads(&mut self, threads: &[Thread], out: &mut Vec<Action>) {
        for &t in threads {
            self.place(t, None, Cause::Other, out);
        }
    }

    fn on_arrival(&mut self, r: &Request, _cpu: &dyn CpuTimes, out: &mut Vec<Action>) {
        self.active += 1;
        let t = Thread {
            tgid: r.tgid,
            tid: r.tid,
        };
        let cause = Cause::Arrival {
            arrival_ns: r.start_ns,
        };
        self.place(t, Some(r.id), cause, out);
    }

    fn on_completion(&mut self, c: &Completion, out: &mut Vec<Action>) {
        self.active = self.active.saturating_sub(1);
        if c.replied && c.sender_tid != c.request.tid {
            let sender = Thread {
                tgid: c.request.tgid,
                tid: c.sender_tid,
            };
            self.place(sender, None, Cause::Other, out);
        }
    }

    fn on_vanished(&mut self, tid: u32, _request: Option<RequestId>, _out: &mut Vec<Action>) {
        self.placed.remove(&tid);
    }

    fn on_applied(&mut self, action: &Action) {
        if matches!(action.level, Level::Fifo(_)) {
            self.applied += 1;
        }
    }

    fn report(&self) -> PolicyReport {
        PolicyReport {
            fifo_threads: self.applied,
            ..PolicyReport::default()
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            fifo_holders: self.active,
            ..Snapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::MockCpu;

    #[test]
    fn workers_and_threads_seen_receiving_are_placed_once() {
        let mut p = Fifo::new(10);
        let mut out = Vec::new();
        p.on_threads(
            &[Thread { tgid: 7, tid: 11 }, Thread { tgid: 7, tid: 12 }],
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|a| a.level == Level::Fifo(10)));
        out.clear();
        p.on_threads(&[Thread { tgid: 7, tid: 11 }], &mut out);
        assert!(out.is_empty(), "already placed");
        let r = Request {
            id: 1,
            tid: 13,
            tgid: 7,
            sock: 1,
            start_ns: 5,
        };
        p.on_arrival(&r, &MockCpu::default(), &mut out);
        assert!(matches!(
            out[..],
            [Action {
                tid: 13,
                level: Level::Fifo(10),
                cause: Cause::Arrival { arrival_ns: 5 },
                ..
            }]
        ));
    }

    #[test]
    fn the_report_counts_placements_applied_not_asked_for() {
        let mut p = Fifo::new(10);
        let mut out = Vec::new();
        let threads = [Thread { tgid: 7, tid: 11 }, Thread { tgid: 7, tid: 12 }];
        p.on_threads(&threads, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(p.report().fifo_threads, 0, "asked for, not yet applied");
        // the caller applied the first; the second's thread was gone
        p.on_applied(&out[0]);
        p.on_vanished(12, None, &mut Vec::new());
        assert_eq!(p.report().fifo_threads, 1);
    }

    #[test]
    fn a_thread_that_replies_for_another_is_placed_once() {
        let mut p = Fifo::new(10);
        let mut out = Vec::new();
        let r = Request {
            id: 1,
            tid: 20,
            tgid: 7,
            sock: 1,
            start_ns: 5,
        };
        p.on_arrival(&r, &MockCpu::default(), &mut out);
        out.clear();
        let done = |sender_tid, replied| Completion {
            request: r,
            sender_tid,
            end_ns: 9,
            replied,
        };
        // replied by the receiver itself: nothing new
        p.on_completion(&done(20, true), &mut out);
        assert!(out.is_empty());
        // abandoned: the "sender" is not a worker
        p.on_completion(&done(21, false), &mut out);
        assert!(out.is_empty());
        // handed off: the replying thread ran the function
        p.on_completion(&done(21, true), &mut out);
        assert_eq!(levels(&out), [(21, Level::Fifo(10))]);
        out.clear();
        p.on_completion(&done(21, true), &mut out);
        assert!(out.is_empty(), "placed once");
        assert_eq!(p.snapshot().fifo_holders, 0);
    }

    fn levels(a: &[Action]) -> Vec<(u32, Level)> {
        a.iter().map(|a| (a.tid, a.level)).collect()
    }
}
