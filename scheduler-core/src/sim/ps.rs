//! `ps`: processor sharing on c CPUs — each of the n jobs present gets
//! min(1, c/n) of a CPU, the fluid model of CFS/EEVDF (Kleinrock's PS;
//! Harchol-Balter ch. 22). Advanced analytically in virtual time: every job
//! receives service at the same rate r(n), so a job finishes when the
//! virtual clock V (∫ r dt) reaches V at its arrival plus its service time.
//! One heap of finishing tags; O(log n) per event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{EngineRun, Jobs, Key};

/// Share of one CPU each of `n` jobs gets on `cpus` CPUs.
pub(crate) fn share(cpus: f64, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        (cpus / n as f64).min(1.0)
    }
}

pub(crate) fn run(jobs: &Jobs, cpus: u32) -> EngineRun {
    let n = jobs.len();
    let c = cpus as f64;
    let mut completion_ns = vec![f64::NAN; n];
    let mut tags: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
    let (mut t, mut v, mut busy_ns) = (0.0f64, 0.0f64, 0.0f64);
    let mut next = 0usize;
    loop {
        let ta = if next < n {
            jobs.arrival_ns[next]
        } else {
            f64::INFINITY
        };
        let rate = share(c, tags.len());
        let tc = tags
            .peek()
            .map_or(f64::INFINITY, |k| t + (k.0.t - v).max(0.0) / rate);
        if ta == f64::INFINITY && tc == f64::INFINITY {
            break;
        }
        let now = ta.min(tc).max(t);
        busy_ns += (now - t) * rate * tags.len() as f64;
        v += (now - t) * rate;
        t = now;
        if tc <= ta {
            let Reverse(k) = tags.pop().expect("peeked");
            v = v.max(k.t);
            completion_ns[k.id as usize] = t;
        } else {
            tags.push(Reverse(Key::new(v + jobs.service_ns[next], next as u32)));
            next += 1;
        }
    }
    EngineRun {
        completion_ns,
        busy_ns,
        timeline: Vec::new(),
        ..EngineRun::default()
    }
}
