//! `fifo`: every worker thread of the targets in SCHED_FIFO at one
//! priority for the agent's lifetime — run to completion in arrival order
//! (the seed's FIFO baseline). Workers are the threads the host names
//! `fn-worker-*` (found at start and on rescans) and, for runtimes with
//! other names, every thread seen receiving a request.

use rustc_hash::FxHashSet;

use super::{Action, Cause, Completion, CpuTimes, Level, SchedPolicy, Snapshot, Thread};
use crate::register::{Request, RequestId};

/// The static SCHED_FIFO baseline.
#[derive(Debug, Clone)]
pub struct Fifo {
    priority: u8,
    /// Threads put in SCHED_FIFO.
    placed: FxHashSet<u32>,
    active: u32,
}

impl Fifo {
    pub fn new(priority: u8) -> Self {
        Fifo {
            priority,
            placed: FxHashSet::default(),
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

    fn on_completion(&mut self, _c: &Completion, _out: &mut Vec<Action>) {
        self.active = self.active.saturating_sub(1);
    }

    fn on_vanished(&mut self, tid: u32, _request: Option<RequestId>, _out: &mut Vec<Action>) {
        self.placed.remove(&tid);
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
}
