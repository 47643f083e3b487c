//! The reporter seam: the measuring code tells an [`Observer`] what happens
//! (environment facts, warnings, progress, results) and never prints itself.
//! Progress bars and tables live in the binary, behind this trait, as
//! criterion's `Report` and hyperfine's output handlers keep presentation
//! apart from collection. Every hook has a no-op default so sinks compose.

use crate::isolation::SystemReport;
use crate::profile::Profile;

/// Which part of a profiling run is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Runs whose timings are discarded (caches, page faults, frequency ramp-up).
    Warmup,
    /// Runs that count.
    Measuring,
}

/// A progress snapshot, sent at most every ~50 ms of (fake or real) time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub phase: Phase,
    /// Counted runs so far (warm-up runs in the warm-up phase).
    pub runs: u64,
    /// Time since sampling began.
    pub elapsed_s: f64,
    /// The `--max-time` cap, for a time-based progress bar.
    pub max_time_s: f64,
    /// Relative half-width of the latest bootstrap CI of the deadline
    /// percentile, once one was computed.
    pub ci_half_width: Option<f64>,
}

/// Receives what the profiler does. All hooks default to doing nothing.
pub trait Observer {
    /// Profiling of `function` starts.
    fn start(&mut self, _function: &str) {}
    /// The environment check before the runs (pyperf `system show` style).
    fn system(&mut self, _report: &SystemReport) {}
    /// Something noisy or degraded that the user should know; never fatal.
    fn warning(&mut self, _message: &str) {}
    /// An informational step (e.g. "counting instructions under Valgrind").
    fn note(&mut self, _message: &str) {}
    /// Sampling progress.
    fn progress(&mut self, _progress: &Progress) {}
    /// The profile is complete.
    fn finish(&mut self, _profile: &Profile) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// An observer that keeps warnings (used by tests and by the gate to carry
/// warnings into its report).
#[derive(Debug, Default, Clone)]
pub struct CollectWarnings {
    pub warnings: Vec<String>,
}

impl Observer for CollectWarnings {
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
}

/// Forwards every hook to an inner observer and keeps a copy of warnings.
pub struct Tee<'a> {
    pub inner: &'a mut dyn Observer,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Tee<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl Observer for Tee<'_> {
    fn start(&mut self, function: &str) {
        self.inner.start(function)
    }
    fn system(&mut self, report: &SystemReport) {
        self.inner.system(report)
    }
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_string());
        self.inner.warning(message)
    }
    fn progress(&mut self, progress: &Progress) {
        self.inner.progress(progress)
    }
    fn finish(&mut self, profile: &Profile) {
        self.inner.finish(profile)
    }
}
