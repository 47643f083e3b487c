//! The platform's floor under the agent's arrival → SCHED_FIFO latency: how
//! long a wake-up from the function CPU takes to reach a SCHED_FIFO thread
//! on the agent CPU, with nothing else in the chain (no BPF, no agent
//! logic, no sched_setattr). A "worker" thread on the last CPU writes an
//! eventfd every GAP ms (so the agent CPU goes idle in between, as at FaaS
//! rates); a "waiter" thread on CPU 0 in SCHED_FIFO 50 blocks in read() and
//! records now − write time. Run once without and once with the agent's
//! idle poller on CPU 0 (`slokit_sched::idle_poll`). With `--kick` the
//! worker writes no eventfd: it only advances a shared position, as the
//! BPF ring buffer's producer does, and the idle poller (which `--kick`
//! implies) notices and kicks the waiter from CPU 0 — the agent's path.
//!
//! Usage: wakeup_floor [--samples N] [--gap-ms G] [--idle-poll] [--kick]
//! Prints one JSON line: samples, p50/p90/p99/max in µs. Needs root
//! (SCHED_FIFO); the FIFO thread is this example's own and ends with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use slokit_sched::idle_poll::{IdlePollers, Watch};
use slokit_sys::clock::monotonic_ns;
use slokit_sys::cpu::{online_cpus, pin_current_thread};
use slokit_sys::poll::EventFd;
use slokit_sys::sched::{self, SchedAttr};

fn main() {
    let mut samples = 2000usize;
    let mut gap_ms = 5u64;
    let mut idle_poll = false;
    let mut kick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--samples" => {
                samples = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--samples N")
            }
            "--gap-ms" => {
                gap_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--gap-ms G")
            }
            "--idle-poll" => idle_poll = true,
            "--kick" => kick = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let cpus = online_cpus();
    let (agent_cpu, worker_cpu) = (cpus[0], *cpus.last().expect("a CPU"));
    idle_poll |= kick;
    let position = Arc::new(AtomicU64::new(0));
    let kick_fd = Arc::new(EventFd::new().expect("eventfd"));
    let watch = kick.then(|| {
        let position = position.clone();
        Watch {
            // (producer, consumer): the waiter consumes as it wakes
            positions: Box::new(move || {
                let p = position.load(Ordering::Acquire);
                (p, p)
            }),
            kick: kick_fd.clone(),
        }
    });
    let _pollers = idle_poll.then(|| IdlePollers::start(&[agent_cpu], watch).expect("idle poller"));

    let efd = Arc::new(EventFd::blocking().expect("eventfd"));
    let sent_at = Arc::new(AtomicU64::new(0));
    let waiter = {
        let (efd, sent_at, kick_fd) = (efd.clone(), sent_at.clone(), kick_fd.clone());
        std::thread::spawn(move || {
            pin_current_thread(&[agent_cpu]).expect("pin the waiter");
            sched::set_attr(sched::gettid(), &SchedAttr::fifo(50)).expect("SCHED_FIFO (root?)");
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
            for _ in 0..samples {
                if kick {
                    // the kick eventfd is non-blocking: wait for it
                    let mut pfd = libc::pollfd {
                        fd: kick_fd.fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, as the call is told.
                    unsafe { libc::poll(&mut pfd, 1, -1) };
                    kick_fd.drain();
                } else {
                    efd.drain(); // blocks until the worker writes
                }
                let lat = monotonic_ns().saturating_sub(sent_at.load(Ordering::Acquire));
                h.saturating_record(lat.max(1));
            }
            h
        })
    };
    pin_current_thread(&[worker_cpu]).expect("pin the worker");
    for _ in 0..samples {
        std::thread::sleep(Duration::from_millis(gap_ms));
        sent_at.store(monotonic_ns(), Ordering::Release);
        if kick {
            position.fetch_add(1, Ordering::Release);
            continue;
        }
        efd.signal();
    }
    let h = waiter.join().expect("waiter");
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{{\"samples\":{},\"idle_poll\":{idle_poll},\"kick\":{kick},\"gap_ms\":{gap_ms},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        h.len(),
        us(0.5),
        us(0.9),
        us(0.99),
        h.max() as f64 / 1e3
    );
}
