//! Clocks behind a small trait (hyperfine's `Executor` seam), so the
//! runtime's transitions are tested deterministically on a mock clock.
//! Real time is `CLOCK_MONOTONIC` (`slokit_sys::clock::monotonic_ns`), the
//! clock `bpf_ktime_get_ns()` and the notify protocol's timestamps read.

use std::cell::Cell;
use std::rc::Rc;

/// A source of "now" in ns on the monotonic clock.
pub trait Clock {
    fn now_ns(&self) -> u64;
}

/// `CLOCK_MONOTONIC`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        slokit_sys::clock::monotonic_ns()
    }
}

/// A clock tests move by hand; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct MockClock(Rc<Cell<u64>>);

impl MockClock {
    pub fn new(start_ns: u64) -> Self {
        MockClock(Rc::new(Cell::new(start_ns)))
    }
    pub fn set(&self, ns: u64) {
        self.0.set(ns);
    }
    pub fn advance(&self, ns: u64) {
        self.0.set(self.0.get() + ns);
    }
}

impl Clock for MockClock {
    fn now_ns(&self) -> u64 {
        self.0.get()
    }
}
