//! `cfs`: the kernel's default — worker threads stay in SCHED_OTHER (the
//! fair class, EEVDF on Linux ≥ 6.6); requests are only observed, so the
//! baseline is measured through the same monitor as every other policy.

use super::{Action, Completion, CpuTimes, SchedPolicy};
use crate::register::{Request, RequestId};

/// The policy that changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cfs;

impl SchedPolicy for Cfs {
    fn name(&self) -> &'static str {
        "cfs"
    }

    fn decides_per_event(&self) -> bool {
        false
    }

    fn on_arrival(&mut self, _r: &Request, _cpu: &dyn CpuTimes, _out: &mut Vec<Action>) {}

    fn on_completion(&mut self, _c: &Completion, _out: &mut Vec<Action>) {}

    fn on_vanished(&mut self, _tid: u32, _request: Option<RequestId>, _out: &mut Vec<Action>) {}
}
