//! The policy seam: every scheduling policy is one object behind
//! [`SchedPolicy`] — events in (arrivals, completions, timer expiries,
//! worker threads found), [`Action`]s out (put this thread at this
//! [`Level`]), with time from a [`Clock`] and on-CPU time from
//! [`CpuTimes`]. The agent (`crate::agent`) only plumbs monitor events in
//! and applies actions with the actuator; the simulator (`crate::sim`)
//! drives the very same objects over a model of the kernel's classes, so a
//! policy's measured and simulated runs come from one implementation
//! (hyperfine's "choose the executor once", scx's one `Scheduler` per
//! policy).
//!
//! - [`cfs`]: nothing moves; requests are only observed.
//! - [`fifo`]: every worker thread at one SCHED_FIFO priority.
//! - `two-level`: [`crate::runtime::Runtime`], the seed's and SFS's design.
//! - [`las`]: slokit's own — least attained service over parked
//!   real-time workers.

pub mod cfs;
pub mod fifo;
pub mod las;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::params::TwoLevelParams;
use crate::register::{Request, RequestId};
use crate::runtime::{Runtime, TransitionCounts};

pub use las::{CpuService, LasMetrics, LasParams};

/// On-CPU time of threads: what credit and attained service are metered in.
pub trait CpuTimes {
    /// Cumulative on-CPU ns of thread `tid` at `now_ns`, if known.
    fn cpu_ns(&self, tid: u32, now_ns: u64) -> Option<u64>;
}

/// A kernel scheduling level a policy puts a thread at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Level {
    /// The thread's normal (fair-class) policy, as it was before the agent
    /// touched it.
    Other,
    /// SCHED_FIFO at this priority (1..=99).
    Fifo(u8),
}

/// Why an action was taken; the agent measures its decision latencies from
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Decided in the step that saw the request's arrival (no queueing):
    /// arrival → applied latency.
    Arrival { arrival_ns: u64 },
    /// A credit or quantum ran out at `at_ns`: exhausted → applied latency.
    Exhausted { at_ns: u64 },
    /// Parked again after the reply sent at `reply_ns`: re-park latency.
    Repark { reply_ns: u64 },
    /// Anything else: a slot freed, a promotion, start-up placement, the
    /// end of a request.
    Other,
}

/// One thing the actuator must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub tid: u32,
    pub tgid: u32,
    pub level: Level,
    /// The request this move is for; when the thread turns out to be gone,
    /// the agent tells the policy with [`SchedPolicy::on_vanished`].
    pub request: Option<RequestId>,
    pub cause: Cause,
}

/// A request ended: its reply was sent (`sender_tid` made the send — not
/// always the thread that received, in runtimes that hand requests off),
/// or it was abandoned (`replied` false: the connection died, the thread
/// started another request, or the process exited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub request: Request,
    pub sender_tid: u32,
    pub end_ns: u64,
    pub replied: bool,
}

/// A worker thread of a target process (`tgid`, `tid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thread {
    pub tgid: u32,
    pub tid: u32,
}

/// What a policy holds at one instant, for the timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// The policy's current time slice or top quantum, ms (0: none).
    pub slice_ms: f64,
    /// Requests waiting for a real-time slot.
    pub queue_len: u32,
    /// Requests running in a real-time class.
    pub fifo_holders: u32,
    /// Requests moved to the fair class.
    pub demoted: u32,
}

/// What a policy reports at the end, for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyReport {
    /// two-level's transitions (zero for the other policies).
    pub transitions: TransitionCounts,
    /// las's levels, quanta and re-park figures.
    pub las: Option<LasMetrics>,
    /// Threads `fifo` had put in SCHED_FIFO (applied, not only asked for;
    /// zero for the other policies).
    pub fifo_threads: u64,
    /// Lines worth reading beside the figures.
    pub notes: Vec<String>,
}

/// A scheduling policy: a pure state machine, no I/O. The caller applies
/// the actions pushed to `out` (in order) and then calls
/// [`SchedPolicy::after_apply`]; it calls [`SchedPolicy::on_timer`] when
/// [`SchedPolicy::next_wakeup`] says.
pub trait SchedPolicy {
    /// The name on the command line and in records.
    fn name(&self) -> &'static str;

    /// Whether the policy decides per event and meters on-CPU time (the
    /// monitor then tracks CPU time and wakes the agent on every event).
    fn decides_per_event(&self) -> bool;

    /// Worker threads found (at start, and later as they appear).
    fn on_threads(&mut self, _threads: &[Thread], _out: &mut Vec<Action>) {}

    /// A request arrived on `r.tid`.
    fn on_arrival(&mut self, r: &Request, cpu: &dyn CpuTimes, out: &mut Vec<Action>);

    /// A request ended.
    fn on_completion(&mut self, c: &Completion, out: &mut Vec<Action>);

    /// An action on `tid` found the thread gone; `request` is the action's.
    fn on_vanished(&mut self, tid: u32, request: Option<RequestId>, out: &mut Vec<Action>);

    /// `action` took effect (the caller applied it and the thread was
    /// there): what a policy counts as done, where `out` only says what it
    /// asked for — actions pushed as the agent stops are never applied.
    fn on_applied(&mut self, _action: &Action) {}

    /// The time [`SchedPolicy::next_wakeup`] asked for has come (or any
    /// time: calling it early is harmless).
    fn on_timer(&mut self, _cpu: &dyn CpuTimes, _out: &mut Vec<Action>) {}

    /// The actions of the last step are applied: start meters (reading CPU
    /// time is a system call in the agent, so it stays off the path from
    /// an event to its `sched_setattr`).
    fn after_apply(&mut self, _cpu: &dyn CpuTimes) {}

    /// When `on_timer` must run next (absolute ns on the policy's clock).
    fn next_wakeup(&self, _cpu: &dyn CpuTimes) -> Option<u64> {
        None
    }

    /// Whether its wake-ups must be kept to the µs, so that the agent arms
    /// its timer early and spins the rest (`--timer-lead-us`): two-level's
    /// credit is a budget the seed defines exactly; las's thresholds only
    /// decide when a request drops a level, where tens of µs late cost
    /// nothing worth a busy-wait beside the load generator.
    fn punctual_timers(&self) -> bool {
        false
    }

    /// What the policy holds now.
    fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }

    /// Counters and figures for the metrics.
    fn report(&self) -> PolicyReport {
        PolicyReport::default()
    }
}

/// The policies of the agent and the simulator. Their names (`cfs`,
/// `fifo`, `two-level`, `las`) are the same on the command line (clap),
/// in files (serde) and in records ([`Policy::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// SCHED_OTHER for everyone: the kernel's default.
    Cfs,
    /// Every worker SCHED_FIFO at one priority.
    Fifo,
    /// The seed's and SFS's FIFO→CFS scheduler.
    TwoLevel,
    /// slokit's least attained service over parked real-time workers.
    Las,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 4] = [Policy::Cfs, Policy::Fifo, Policy::TwoLevel, Policy::Las];

    /// The name on the command line, in files and in records.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Cfs => "cfs",
            Policy::Fifo => "fifo",
            Policy::TwoLevel => "two-level",
            Policy::Las => "las",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a policy object is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyConfig {
    /// two-level's constants; `fifo_priority` is also the fifo baseline's.
    pub two_level: TwoLevelParams,
    pub las: LasParams,
    /// Relative deadline per target process (`tgid → ns`).
    pub deadlines_ns: HashMap<u32, u64>,
    /// Known service time per target process (`tgid → µs`, e.g. a
    /// profile's p99), for las's quanta.
    pub services_us: HashMap<u32, f64>,
}

/// Builds the object of `policy` on `clock`.
pub fn build<C: Clock + 'static>(
    policy: Policy,
    cfg: &PolicyConfig,
    clock: C,
) -> Box<dyn SchedPolicy> {
    match policy {
        Policy::Cfs => Box::new(cfs::Cfs),
        Policy::Fifo => Box::new(fifo::Fifo::new(cfg.two_level.fifo_priority)),
        Policy::TwoLevel => Box::new(Runtime::new(cfg.two_level, clock, cfg.deadlines_ns.clone())),
        Policy::Las => Box::new(las::Las::new(
            cfg.las.clone(),
            clock,
            cfg.deadlines_ns.clone(),
            &cfg.services_us,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Policy;
    use clap::ValueEnum;

    #[test]
    fn one_name_per_policy_on_the_command_line_in_files_and_in_records() {
        for p in Policy::ALL {
            let clap_name = p.to_possible_value().unwrap().get_name().to_string();
            let serde_name = serde_json::to_value(p).unwrap();
            assert_eq!(clap_name, p.name());
            assert_eq!(serde_name, p.name());
            assert_eq!(Policy::from_str(p.name(), false), Ok(p));
        }
    }

    /// Runtimes slokit did not write: two worker processes (7 and 8, as
    /// gunicorn's), and in process 8 a hand-off (thread 81 receives, thread
    /// 82 replies). Applies every action and returns each thread's last
    /// level.
    fn external_runtime(policy: Policy) -> std::collections::BTreeMap<u32, super::Level> {
        use super::{build, Completion, PolicyConfig};
        use crate::clock::{Clock, MockClock};
        use crate::register::Request;
        let clock = MockClock::new(1_000_000);
        let cfg = PolicyConfig {
            deadlines_ns: [(7, 50_000_000), (8, 50_000_000)].into(),
            ..PolicyConfig::default()
        };
        let mut p = build(policy, &cfg, clock.clone());
        let cpu = super::testing::MockCpu::default();
        let mut levels = std::collections::BTreeMap::new();
        let mut apply = |out: &mut Vec<super::Action>| {
            for a in out.drain(..) {
                levels.insert(a.tid, a.level);
            }
        };
        let mut out = Vec::new();
        let req = |id, tid, tgid| Request {
            id,
            tid,
            tgid,
            sock: id,
            start_ns: Clock::now_ns(&clock),
        };
        for (id, tid, tgid, sender) in [
            (1, 71, 7, 71),
            (2, 81, 8, 82),
            (3, 71, 7, 71),
            (4, 81, 8, 82),
        ] {
            let r = req(id, tid, tgid);
            p.on_arrival(&r, &cpu, &mut out);
            apply(&mut out);
            p.after_apply(&cpu);
            clock.advance(2_000_000);
            cpu.add(sender, 2_000_000);
            p.on_timer(&cpu, &mut out);
            apply(&mut out);
            let c = Completion {
                request: r,
                sender_tid: sender,
                end_ns: Clock::now_ns(&clock),
                replied: true,
            };
            p.on_completion(&c, &mut out);
            apply(&mut out);
            p.after_apply(&cpu);
        }
        levels
    }

    #[test]
    fn every_policy_handles_several_processes_and_hand_offs() {
        use super::Level;
        // cfs never moves a thread.
        assert!(external_runtime(Policy::Cfs).is_empty());
        // fifo: every worker of both processes, the replying thread of the
        // hand-off included, in SCHED_FIFO for the run (its baseline).
        let fifo = external_runtime(Policy::Fifo);
        assert_eq!(
            fifo.into_iter().collect::<Vec<_>>(),
            [
                (71, Level::Fifo(10)),
                (81, Level::Fifo(10)),
                (82, Level::Fifo(10))
            ]
        );
        // two-level: every request's thread back in the fair class once its
        // reply is sent, whichever thread sent it; the replying thread is
        // never raised for a request it did not receive.
        let two = external_runtime(Policy::TwoLevel);
        assert!(two.values().all(|l| *l == Level::Other), "{two:?}");
        assert!(!two.contains_key(&82), "{two:?}");
        // las: both processes' receivers parked at the top again, the
        // replying thread untouched.
        let las = external_runtime(Policy::Las);
        assert_eq!(las.get(&71), Some(&Level::Fifo(40)), "{las:?}");
        assert_eq!(las.get(&81), Some(&Level::Fifo(40)), "{las:?}");
        assert!(!las.contains_key(&82), "{las:?}");
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-set CPU times for the policies' unit tests.
    use super::CpuTimes;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Thread CPU times the test sets by hand.
    #[derive(Default)]
    pub struct MockCpu(RefCell<HashMap<u32, u64>>);

    impl MockCpu {
        pub fn add(&self, tid: u32, ns: u64) {
            *self.0.borrow_mut().entry(tid).or_default() += ns;
        }
    }

    impl CpuTimes for MockCpu {
        fn cpu_ns(&self, tid: u32, _now: u64) -> Option<u64> {
            Some(self.0.borrow().get(&tid).copied().unwrap_or(0))
        }
    }
}
