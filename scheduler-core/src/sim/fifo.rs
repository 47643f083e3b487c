//! `fifo`: c servers, each job runs to completion in arrival order on the
//! first CPU to become free (M/G/c FCFS) — the model of every worker thread
//! in `SCHED_FIFO` at one priority.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{EngineRun, Jobs, Key};

pub(crate) fn run(jobs: &Jobs, cpus: u32) -> EngineRun {
    let n = jobs.len();
    let mut free: BinaryHeap<Reverse<Key>> = (0..cpus).map(|c| Reverse(Key::new(0.0, c))).collect();
    let mut completion_ns = Vec::with_capacity(n);
    let mut busy_ns = 0.0;
    for i in 0..n {
        let mut cpu = free.peek_mut().expect("at least one CPU");
        let start = cpu.0.t.max(jobs.arrival_ns[i]);
        let end = start + jobs.service_ns[i];
        busy_ns += end - start;
        completion_ns.push(end);
        cpu.0.t = end;
    }
    EngineRun {
        completion_ns,
        busy_ns,
        timeline: Vec::new(),
        ..EngineRun::default()
    }
}
