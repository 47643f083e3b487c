//! What the eBPF monitor adds to one socket call, measured where the
//! end-to-end throughput A/B (scripts/monitor-overhead.sh) cannot resolve
//! it on a noisy VM. A worker thread on the last CPU ping-pongs one byte
//! over a loopback TCP connection (client send, server receive, server
//! send, client receive: four socket calls, the kernel's loopback delivery
//! included) and times batches in its own CPU time
//! (CLOCK_THREAD_CPUTIME_ID: the host's steal is not in it). The main
//! thread, on CPU 0, plays the agent: it owns the monitor and drains the
//! ring as `slokit sched` does for the policy (on every wake-up for
//! two-level, every 100 ms for the baselines), its drain timed apart.
//! Each round measures, in turn:
//!
//!  - `off`: no monitor loaded;
//!  - `filtered`: the monitor attached, this process not a target (what
//!    every other process on the node pays per socket call);
//!  - `counted`: this process a target, as the baselines run it (an event
//!    per call into the ring, no wake-up, no sched_switch program);
//!  - `two_level`: as two-level runs it without idle pollers
//!    (`--idle-poll off`: a wake-up per event the agent is waiting for,
//!    the sched_switch program);
//!  - `two_level_polled`: as two-level runs it by default: an idle poller
//!    on CPU 0 watches the ring and kicks the agent, and events skip the
//!    ring's wake-up while it runs.
//!
//! Rounds rotate the order so drift hits every variant alike; medians of
//! each variant and of its paired difference to the same round's `off`
//! are printed.
//!
//! Usage: monitor_cost [--rounds N] [--trips N] [--gap-us G]
//! With a gap the round trips are G µs apart, as at a request rate the
//! agent keeps up with (each trip timed alone: the two clock reads add the
//! same to every variant); without, back to back (the agent's worst case).
//! Prints one JSON line (progress on stderr). Needs root (BPF) and 2 CPUs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use slokit_sched::idle_poll::{IdlePollers, Watch};
use slokit_sched::monitor::ebpf::{with_ebpf_monitor, EbpfOptions};
use slokit_sched::monitor::Monitor;
use slokit_sched::register::SocketEvent;
use slokit_sys::clock::thread_cpu_ns;
use slokit_sys::cpu::pin_current_thread;
use slokit_sys::poll::EventFd;

/// Round trips per timed batch.
const BATCH: usize = 1_000;

type Pair = (TcpStream, TcpStream);

/// A connected loopback pair, Nagle off on both ends.
fn pair() -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// How the worker runs: `trips` round trips, back to back (timed in
/// batches) or `gap` apart (each timed alone, the gap spun outside).
#[derive(Clone, Copy)]
struct Pace {
    trips: usize,
    gap: Duration,
}

/// One request's four socket calls.
fn round_trip((client, server): &mut Pair) {
    let mut byte = [0u8; 1];
    client.write_all(b"q").unwrap();
    server.read_exact(&mut byte).unwrap();
    server.write_all(b"a").unwrap();
    client.read_exact(&mut byte).unwrap();
}

/// Starts the worker on `cpu`; it returns the pair and its CPU ns per
/// socket call.
fn start_worker(pace: Pace, mut pair: Pair, cpu: usize) -> JoinHandle<(Pair, f64)> {
    std::thread::spawn(move || {
        pin_current_thread(&[cpu]).expect("pin the worker");
        let mut busy = 0u64;
        let mut done = 0;
        while done < pace.trips {
            let n = if pace.gap.is_zero() {
                BATCH.min(pace.trips - done)
            } else {
                1
            };
            let t0 = thread_cpu_ns();
            for _ in 0..n {
                round_trip(&mut pair);
            }
            busy += thread_cpu_ns() - t0;
            done += n;
            let gap = std::time::Instant::now();
            while gap.elapsed() < pace.gap {
                std::hint::spin_loop();
            }
        }
        (pair, busy as f64 / (pace.trips * 4) as f64)
    })
}

/// Waits until one of `fds` is readable, up to `timeout_ms`.
fn wait_readable(fds: &[RawFd], timeout_ms: i32) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` holds p.len() valid pollfds.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
}

/// The agent's side while the worker runs: drains `m` on each wake-up
/// (`per_event`, of the ring or of the poller's `kick`) or every 100 ms;
/// adds the drain's CPU ns and event count.
fn drain_until_done(
    m: &mut dyn Monitor,
    per_event: bool,
    kick: Option<&EventFd>,
    worker: &JoinHandle<(Pair, f64)>,
    drain: &mut (u64, u64),
) {
    let mut events: Vec<SocketEvent> = Vec::new();
    loop {
        let finished = worker.is_finished();
        if per_event {
            match kick {
                Some(k) => {
                    wait_readable(&[m.fd(), k.fd()], 10);
                    k.drain();
                }
                None => wait_readable(&[m.fd()], 10),
            }
        } else if !finished {
            std::thread::sleep(Duration::from_millis(100));
        }
        let t = thread_cpu_ns();
        m.drain(&mut events).expect("drain the ring");
        drain.0 += thread_cpu_ns() - t;
        drain.1 += events.len() as u64;
        events.clear();
        if finished {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Off,
    Filtered,
    Counted,
    TwoLevel,
    TwoLevelPolled,
}

const VARIANTS: [Variant; 5] = [
    Variant::Off,
    Variant::Filtered,
    Variant::Counted,
    Variant::TwoLevel,
    Variant::TwoLevelPolled,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::Filtered => "filtered",
            Variant::Counted => "counted",
            Variant::TwoLevel => "two_level",
            Variant::TwoLevelPolled => "two_level_polled",
        }
    }
}

fn run(
    v: Variant,
    pace: Pace,
    socks: Pair,
    worker_cpu: usize,
    drain: &mut (u64, u64),
) -> (Pair, f64) {
    let two_level = matches!(v, Variant::TwoLevel | Variant::TwoLevelPolled);
    let polled = v == Variant::TwoLevelPolled;
    let opts = EbpfOptions {
        wakeup: two_level,
        track_cpu: two_level,
        agent_tgid: if polled { std::process::id() } else { 0 },
        ..EbpfOptions::default()
    };
    if v == Variant::Off {
        return start_worker(pace, socks, worker_cpu)
            .join()
            .expect("worker");
    }
    with_ebpf_monitor(opts, |m| {
        if v != Variant::Filtered {
            m.add_target(std::process::id()).expect("add target");
        }
        let kick = Arc::new(EventFd::new().expect("eventfd"));
        let _pollers = polled.then(|| {
            let watch = Watch {
                positions: m.ring_positions().expect("map the ring").expect("a ring"),
                kick: kick.clone(),
            };
            IdlePollers::start(&[0], Some(watch)).expect("start the idle poller")
        });
        let worker = start_worker(pace, socks, worker_cpu);
        drain_until_done(m, two_level, polled.then_some(&*kick), &worker, drain);
        worker.join().expect("worker")
    })
    .unwrap_or_else(|e| {
        eprintln!("monitor_cost: {e}");
        std::process::exit(1)
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut rounds = 9usize;
    let mut trips = 50_000usize;
    let mut gap_us = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--rounds" => rounds = value(),
            "--trips" => trips = value(),
            "--gap-us" => gap_us = value(),
            _ => panic!("usage: monitor_cost [--rounds N] [--trips N] [--gap-us G]"),
        }
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worker_cpu = ncpu - 1;
    pin_current_thread(&[0]).expect("pin to CPU 0");
    let mut drain = (0u64, 0u64);
    let gap = Duration::from_micros(gap_us as u64);
    let pace = Pace { trips, gap };
    let warm_up = Pace {
        trips: trips / 5,
        gap,
    };
    let (mut socks, _) = run(Variant::Off, warm_up, pair(), worker_cpu, &mut drain);
    let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for r in 0..rounds {
        for k in 0..VARIANTS.len() {
            let i = (r + k) % VARIANTS.len();
            let (back, ns) = run(VARIANTS[i], pace, socks, worker_cpu, &mut drain);
            socks = back;
            per_call[i].push(ns);
        }
        eprintln!(
            "round {}: {}",
            r + 1,
            VARIANTS
                .iter()
                .zip(&per_call)
                .map(|(v, ns)| format!("{} {:.0} ns", v.name(), ns[r]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let medians: Vec<f64> = per_call.iter_mut().map(|v| median(v)).collect();
    // Paired per round: each variant against the same round's `off`.
    let added: Vec<f64> = (1..VARIANTS.len())
        .map(|i| {
            let mut d: Vec<f64> = (0..rounds)
                .map(|r| per_call[i][r] - per_call[0][r])
                .collect();
            median(&mut d)
        })
        .collect();
    let fields: Vec<String> = VARIANTS
        .iter()
        .zip(&medians)
        .map(|(v, m)| format!("\"{}_ns_per_call\":{m:.1}", v.name()))
        .chain(
            VARIANTS[1..]
                .iter()
                .zip(&added)
                .map(|(v, d)| format!("\"{}_added_ns\":{d:.1}", v.name())),
        )
        .collect();
    println!(
        "{{\"rounds\":{rounds},\"gap_us\":{gap_us},\"calls_per_variant_round\":{},{},\"drain_ns_per_event\":{:.1}}}",
        trips * 4,
        fields.join(","),
        drain.0 as f64 / drain.1.max(1) as f64
    );
}
