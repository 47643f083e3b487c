//! Keeps the agent's CPUs out of idle while the agent sleeps, so that waking
//! the agent for an arrival costs a preemption instead of waking a halted
//! CPU — slokit's own remedy for the decision-latency tail (the figures
//! with and without it are in docs/measurements.md, decision latencies).
//!
//! One thread per agent CPU, pinned there, in `SCHED_IDLE`: it spins on
//! `spin_loop` hints and yields to every other task, so it takes only the
//! CPU's idle time (and energy). It lives in the agent process, so it ends
//! with it on every exit path, SIGKILL included; [`IdlePollers`] stops and
//! joins the threads when dropped.
//!
//! While it spins it can also [`Watch`] the monitor's ring buffer (its
//! producer and consumer positions, mapped read-only): when an event is
//! written it wakes the agent through an eventfd on its own CPU — a
//! same-CPU wake-up instead of the ring buffer's own (an irq_work interrupt
//! on the function CPU, then an IPI to the agent's), which is what a VM
//! makes expensive. While a poller (or the agent's event thread) is on its
//! CPU the BPF program skips the ring's wake-up altogether
//! (`EbpfOptions::agent_tgid`), so the poller must not miss an event: it
//! kicks when the producer moves, and again every [`REKICK`] while events
//! stay unconsumed (an event reserved but not yet committed when the agent
//! drained).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::SchedError;
use crate::monitor::RingPositions;
use slokit_sys::poll::EventFd;
use slokit_sys::sched::{self, SchedAttr};

/// A poller kicks the agent again after this long while the ring holds
/// events the agent has not consumed.
pub const REKICK: Duration = Duration::from_micros(20);

/// What the pollers watch: the monitor ring's positions, and the eventfd
/// that wakes the agent.
pub struct Watch {
    pub positions: RingPositions,
    pub kick: Arc<EventFd>,
}

/// One poller's memory of its last kick.
struct Kicker {
    producer: u64,
    at: Instant,
}

impl Kicker {
    fn new(w: &Watch) -> Kicker {
        Kicker {
            producer: (w.positions)().0,
            at: Instant::now(),
        }
    }

    /// Kicks when the producer moved since the last kick, or when events
    /// stayed unconsumed for [`REKICK`].
    fn check(&mut self, w: &Watch) {
        let (producer, consumer) = (w.positions)();
        if producer != self.producer || (producer != consumer && self.at.elapsed() >= REKICK) {
            self.producer = producer;
            self.at = Instant::now();
            w.kick.signal();
        }
    }
}

/// The running pollers; dropping stops and joins them.
pub struct IdlePollers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl IdlePollers {
    /// Starts one `SCHED_IDLE` spinning thread pinned to each of `cpus`,
    /// each kicking `watch` when its position moves. Returns once every
    /// thread is pinned and in `SCHED_IDLE` (or the error of the first that
    /// could not be).
    pub fn start(cpus: &[usize], watch: Option<Watch>) -> Result<IdlePollers, SchedError> {
        let watch = watch.map(Arc::new);
        let stop = Arc::new(AtomicBool::new(false));
        let mut pollers = IdlePollers {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for &cpu in cpus {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = stop.clone();
            let watch = watch.clone();
            let handle = std::thread::Builder::new()
                .name(format!("slokit-idle-{cpu}"))
                .spawn(move || {
                    let setup = slokit_sys::cpu::pin_current_thread(&[cpu])
                        .and_then(|()| sched::set_attr(sched::gettid(), &SchedAttr::idle()));
                    let ok = setup.is_ok();
                    let _ = ready_tx.send(setup);
                    if !ok {
                        return;
                    }
                    let mut kicker = watch.as_deref().map(Kicker::new);
                    while !stop.load(Ordering::Relaxed) {
                        if let (Some(w), Some(k)) = (watch.as_deref(), kicker.as_mut()) {
                            k.check(w);
                        }
                        for _ in 0..64 {
                            std::hint::spin_loop();
                        }
                    }
                })
                .map_err(|e| SchedError::sys("cannot start the idle poller", e))?;
            pollers.threads.push(handle);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(SchedError::sys(
                        format!("cannot pin the idle poller to CPU {cpu} in SCHED_IDLE"),
                        e,
                    ))
                }
                Err(_) => {
                    return Err(SchedError::Config(format!(
                        "the idle poller of CPU {cpu} ended before starting"
                    )))
                }
            }
        }
        Ok(pollers)
    }

    /// How many pollers run.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether no poller runs.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }
}

impl Drop for IdlePollers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tests that start pollers take turns (these count this process's
    /// pollers; the eBPF monitor's tests start some too, and make socket
    /// traffic their monitors see).
    pub(crate) static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Policy (stat field 41) and last CPU (field 39) of every thread of
    /// this process named `slokit-idle-*`.
    fn pollers() -> Vec<(u32, usize)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("slokit-idle-") {
                continue;
            }
            use slokit_sys::procfs::{field, Stat};
            let text = std::fs::read_to_string(e.path().join("stat")).unwrap();
            let stat = Stat::parse(&text).unwrap();
            v.push((
                stat.get(field::POLICY).unwrap(),
                stat.get(field::PROCESSOR).unwrap(),
            ));
        }
        v
    }

    #[test]
    fn pollers_run_in_sched_idle_on_their_cpu_and_stop_on_drop() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let cpu = *slokit_sys::cpu::online_cpus().first().unwrap();
        let p = IdlePollers::start(&[cpu], None).unwrap();
        assert_eq!(p.len(), 1);
        let seen = pollers();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, sched::SCHED_IDLE, "SCHED_IDLE");
        assert_eq!(seen[0].1, cpu, "pinned");
        drop(p);
        assert!(pollers().is_empty(), "joined on drop");
    }

    #[test]
    fn a_moving_position_kicks_the_eventfd() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        use std::sync::atomic::AtomicU64;
        let cpu = *slokit_sys::cpu::online_cpus().first().unwrap();
        let position = Arc::new(AtomicU64::new(0));
        let kick = Arc::new(EventFd::new().unwrap());
        let p = {
            let position = position.clone();
            let watch = Watch {
                positions: Box::new(move || {
                    let p = position.load(Ordering::Acquire);
                    (p, p)
                }),
                kick: kick.clone(),
            };
            IdlePollers::start(&[cpu], Some(watch)).unwrap()
        };
        let kicked_within = |limit: std::time::Duration| {
            let start = std::time::Instant::now();
            while start.elapsed() < limit {
                if kick.drain() > 0 {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        };
        assert!(
            !kicked_within(std::time::Duration::from_millis(50)),
            "still: no kick"
        );
        position.store(40, Ordering::Release);
        assert!(
            kicked_within(std::time::Duration::from_secs(5)),
            "moved: kicked"
        );
        drop(p);
    }

    /// An event reserved but not yet committed when the agent drained
    /// leaves the consumer behind a producer that no longer moves: the
    /// poller kicks again (every REKICK) until the agent catches up.
    #[test]
    fn unconsumed_events_kick_again_until_consumed() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        use std::sync::atomic::AtomicU64;
        let cpu = *slokit_sys::cpu::online_cpus().first().unwrap();
        let consumer = Arc::new(AtomicU64::new(0));
        let kick = Arc::new(EventFd::new().unwrap());
        let p = {
            let consumer = consumer.clone();
            let watch = Watch {
                positions: Box::new(move || (64, consumer.load(Ordering::Acquire))),
                kick: kick.clone(),
            };
            IdlePollers::start(&[cpu], Some(watch)).unwrap()
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(kick.drain() > 1, "kicked again and again while behind");
        consumer.store(64, Ordering::Release);
        std::thread::sleep(Duration::from_millis(5));
        kick.drain();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(kick.drain(), 0, "caught up: no more kicks");
        drop(p);
    }
}
