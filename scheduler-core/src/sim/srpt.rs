//! `srpt`: preemptive shortest remaining processing time with known service
//! times on c CPUs — at every instant the (at most) c jobs with the least
//! remaining work run. On one CPU it minimises mean response time over all
//! policies (Schrage 1968; Schrage & Miller 1966), so it is the oracle lower
//! bound; on c CPUs it is the standard reference (Grosof, Scully &
//! Harchol-Balter 2018).
//!
//! Running jobs all progress at rate 1, so their order by remaining work is
//! their order by finishing time and stays fixed: they live in an ordered
//! set keyed by finishing time (the smallest finishes next, the largest is
//! the one an arrival preempts). Waiting jobs keep their remaining work in
//! a min-heap. Invariant: every running job has no more remaining work than
//! any waiting one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use super::{EngineRun, Jobs, Key};

pub(crate) fn run(jobs: &Jobs, cpus: u32) -> EngineRun {
    let n = jobs.len();
    let c = cpus as usize;
    let mut completion_ns = vec![f64::NAN; n];
    let mut running: BTreeSet<Key> = BTreeSet::new();
    let mut waiting: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
    let (mut t, mut busy_ns) = (0.0f64, 0.0f64);
    let mut next = 0usize;
    loop {
        let ta = if next < n {
            jobs.arrival_ns[next]
        } else {
            f64::INFINITY
        };
        let tc = running.first().map_or(f64::INFINITY, |k| k.t);
        if ta == f64::INFINITY && tc == f64::INFINITY {
            break;
        }
        let now = ta.min(tc).max(t);
        busy_ns += (now - t) * running.len() as f64;
        t = now;
        if tc <= ta {
            let k = running.pop_first().expect("non-empty");
            completion_ns[k.id as usize] = t;
            if let Some(Reverse(w)) = waiting.pop() {
                running.insert(Key::new(t + w.t, w.id));
            }
        } else {
            let id = next as u32;
            let s = jobs.service_ns[next];
            next += 1;
            if running.len() < c {
                running.insert(Key::new(t + s, id));
                continue;
            }
            let longest = *running.last().expect("c ≥ 1 running");
            let left = longest.t - t;
            if s < left {
                running.pop_last();
                waiting.push(Reverse(Key::new(left, longest.id)));
                running.insert(Key::new(t + s, id));
            } else {
                waiting.push(Reverse(Key::new(s, id)));
            }
        }
    }
    EngineRun {
        completion_ns,
        busy_ns,
        timeline: Vec::new(),
        ..EngineRun::default()
    }
}
