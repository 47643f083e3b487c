//! The sampling loop and its stopping rule, behind a measurement/clock seam
//! (hyperfine's `Executor`, criterion's `Measurement`) so they are tested
//! deterministically with a fake measurement and a fake clock.
//!
//! The loop: `warmup` discarded runs, then batches of counted runs until the
//! bootstrap CI of the deadline percentile is within ±`precision` (relative
//! half-width), or `max_runs`, or `max_time`. Between batches it rests so the
//! measured thread is busy at most `duty_cycle` of the wall time — a
//! `SCHED_FIFO` thread kept busy back-to-back would run into RT throttling
//! (`sched_rt_runtime_us` = 950000: 50 ms of every second taken away) and the
//! profile would measure the throttle, not the function (DESIGN.md,
//! "Pitfalls").
//!
//! All runs go into HdrHistograms (nanoseconds, 3 significant digits); a
//! bounded reservoir of raw wall times (Vitter's Algorithm R, seeded) feeds
//! the bootstrap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::ProfileError;
use crate::observer::{Observer, Phase, Progress};
use crate::stats::{bootstrap_percentile_ci, Interval, Sample, SplitMix64};
use hdrhistogram::Histogram;

/// The timings of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Wall-clock execution time (`CLOCK_MONOTONIC`), ns — what a user waits.
    pub wall_ns: u64,
    /// CPU time of the run (thread CPU time for in-process functions, the
    /// child's user + system time for commands), ns.
    pub cpu_ns: u64,
}

/// Something that can run the function `n` times and report each run's timing.
pub trait Measurement {
    /// Runs the function `n` (≥ 1) times back to back, appending one
    /// [`Timing`] per run to `out`.
    fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError>;
}

/// Time as the sampler sees it.
pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Rests for `d`.
    fn sleep(&mut self, d: Duration);
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// How many runs, how precise, how long.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    /// Discarded runs before counting.
    pub warmup: u64,
    /// Counted runs before the precision rule may stop.
    pub min_runs: u64,
    /// Hard cap on counted runs.
    pub max_runs: u64,
    /// Hard cap on total time (warm-up included).
    pub max_time: Duration,
    /// Time before the precision rule may stop (warm-up included): the
    /// sample spans at least this much of the machine's drift, so a lucky
    /// quiet stretch does not end a profile early.
    pub min_time: Duration,
    /// Target relative half-width of the CI of the deadline percentile (0.02 = ±2 %).
    pub precision: f64,
    /// The deadline percentile, e.g. 99.
    pub percentile: f64,
    /// Largest share of wall time the measured thread may be busy (0 < d ≤ 1).
    pub duty_cycle: f64,
    /// Target busy time of one batch; tiny functions run many times per batch.
    pub batch_target: Duration,
    /// Bootstrap resamples per stopping check.
    pub resamples: usize,
    /// Confidence of the stopping rule's interval.
    pub confidence: f64,
    /// Raw samples kept for the bootstrap (reservoir size).
    pub sample_cap: usize,
    /// Seed of the reservoir and bootstrap generators.
    pub seed: u64,
}

impl Default for SamplingPlan {
    fn default() -> Self {
        Self {
            warmup: 10,
            min_runs: 30,
            max_runs: 1_000_000,
            max_time: Duration::from_secs(12),
            min_time: Duration::ZERO,
            precision: 0.02,
            percentile: 99.0,
            duty_cycle: 0.5,
            batch_target: Duration::from_millis(50),
            resamples: 200,
            confidence: 0.95,
            sample_cap: 100_000,
            seed: 0x5e1f_0b5e,
        }
    }
}

impl SamplingPlan {
    /// Checks ranges; errors name the flag to fix.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |m: String| Err(ProfileError::Settings(m));
        if !(self.percentile > 0.0 && self.percentile < 100.0) {
            return bad(format!(
                "--percentile must be in (0, 100), got {}",
                self.percentile
            ));
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return bad(format!(
                "--precision must be in (0, 1) (0.02 = ±2 %), got {}",
                self.precision
            ));
        }
        if !(self.duty_cycle > 0.0 && self.duty_cycle <= 1.0) {
            return bad(format!(
                "duty cycle must be in (0, 1], got {}",
                self.duty_cycle
            ));
        }
        if self.max_runs < 2 {
            return bad(format!("--runs must be at least 2, got {}", self.max_runs));
        }
        if self.max_time.is_zero() {
            return bad("--max-time must be positive".into());
        }
        if self.sample_cap < 2 {
            return bad("the raw-sample cap must be at least 2".into());
        }
        Ok(())
    }

    /// Counted runs before the CI of the percentile is trusted: at least 10
    /// observations beyond the percentile, and `min_runs`.
    pub fn runs_before_precision_check(&self) -> u64 {
        let tail = (10.0 / (1.0 - self.percentile / 100.0)).ceil() as u64;
        tail.max(self.min_runs)
    }
}

/// Why sampling stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The CI of the deadline percentile reached the target precision.
    Precision,
    /// `--runs` reached.
    MaxRuns,
    /// `--max-time` reached.
    MaxTime,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Precision => "precision",
            StopReason::MaxRuns => "max-runs",
            StopReason::MaxTime => "max-time",
        })
    }
}

/// What a sampling loop collected.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// Wall execution time of every counted run, ns.
    pub wall_ns: Histogram<u64>,
    /// CPU time of every counted run, ns.
    pub cpu_ns: Histogram<u64>,
    /// A uniform reservoir of at most `sample_cap` raw wall times, ns.
    pub raw_wall_ns: Vec<f64>,
    pub warmup_runs: u64,
    pub runs: u64,
    pub elapsed: Duration,
    pub stop_reason: StopReason,
    /// The last CI of the deadline percentile (wall, ns), if one was computed.
    pub percentile_ci: Option<Interval>,
    /// Median wall time (ns) of each ~1 s window of counted runs, in order:
    /// how far the machine's speed drifted while sampling.
    pub window_medians_ns: Vec<f64>,
    /// The wall times (ns, sorted) of each ~0.5 s window of counted runs,
    /// in time order (at most the first `DRIFT_WINDOW_MAX_RUNS` of a
    /// window): the input of the median-of-blocks deadline estimator.
    pub windows_wall_ns: Vec<Vec<f64>>,
}

/// Length of the drift windows.
const DRIFT_WINDOW: Duration = Duration::from_secs(1);
/// Length of the windows the deadline's blocks are cut from: short, so a
/// profile has many blocks and the median over them moves little when the
/// machine has a slow stretch (measured: docs/profiler.md, *Deadline
/// reproducibility*).
const BLOCK_WINDOW: Duration = Duration::from_millis(500);
/// Fewest runs for a window's median to count.
const DRIFT_WINDOW_MIN_RUNS: usize = 5;
/// Most runs a window keeps: a µs function runs ~10⁶ times a second, and
/// the window's first 20 000 runs give its median well enough.
const DRIFT_WINDOW_MAX_RUNS: usize = 20_000;

/// Consecutive windows of runs of one length: their medians (the drift
/// check's input) and, when `keep_runs`, their runs (the blocks' input).
struct Windows {
    length: Duration,
    keep_runs: bool,
    start: Duration,
    current: Vec<f64>,
    medians: Vec<f64>,
    closed: Vec<Vec<f64>>,
}

impl Windows {
    fn new(length: Duration, keep_runs: bool, start: Duration) -> Self {
        Self {
            length,
            keep_runs,
            start,
            current: Vec::new(),
            medians: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn push(&mut self, now: Duration, wall_ns: impl Iterator<Item = f64>) {
        let room = DRIFT_WINDOW_MAX_RUNS - self.current.len();
        self.current.extend(wall_ns.take(room));
        if now - self.start >= self.length {
            self.close();
            self.start = now;
        }
    }

    fn close(&mut self) {
        if self.current.len() >= DRIFT_WINDOW_MIN_RUNS {
            self.current.sort_by(f64::total_cmp);
            self.medians
                .push(crate::stats::percentile_sorted(&self.current, 50.0));
            if self.keep_runs {
                self.closed.push(std::mem::take(&mut self.current));
            }
        }
        self.current.clear();
    }
}

/// Relative spread of the window medians, (max − min) / median of them;
/// `None` with fewer than 3 windows.
pub fn drift(window_medians_ns: &[f64]) -> Option<f64> {
    if window_medians_ns.len() < 3 {
        return None;
    }
    let mut sorted = window_medians_ns.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = crate::stats::percentile_sorted(&sorted, 50.0);
    (mid > 0.0).then(|| (sorted[sorted.len() - 1] - sorted[0]) / mid)
}

/// Highest trackable time: one hour in ns.
pub const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;

/// A fresh histogram of nanoseconds (1 ns .. 1 h, 3 significant digits).
pub fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).expect("static bounds are valid")
}

struct Reservoir {
    cap: usize,
    seen: u64,
    values: Vec<f64>,
    rng: SplitMix64,
}

impl Reservoir {
    fn push(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
        } else {
            let j = self.rng.below(self.seen);
            if (j as usize) < self.cap {
                self.values[j as usize] = v;
            }
        }
    }
}

/// Runs the loop described in the module docs.
///
/// `stop` is polled between batches (the Ctrl-C flag): when set, sampling
/// ends with [`ProfileError::Interrupted`].
pub fn sample(
    m: &mut dyn Measurement,
    clock: &mut dyn Clock,
    plan: &SamplingPlan,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Sampling, ProfileError> {
    plan.validate()?;
    let start = clock.now();
    let mut batch = Vec::new();
    let mut rest_debt = Duration::ZERO;
    let rest_ratio = (1.0 - plan.duty_cycle) / plan.duty_cycle;
    let mut last_progress: Option<Duration> = None;
    let max_time_s = plan.max_time.as_secs_f64();

    // Rests after a batch so busy time stays ≤ duty_cycle of the wall time.
    let rest = |clock: &mut dyn Clock, busy_ns: u64, debt: &mut Duration| {
        *debt += Duration::from_secs_f64(busy_ns as f64 * 1e-9 * rest_ratio);
        if *debt >= Duration::from_millis(1) {
            clock.sleep(*debt);
            *debt = Duration::ZERO;
        }
    };
    let mut report = |observer: &mut dyn Observer, clock: &dyn Clock, p: Progress, force: bool| {
        let now = clock.now();
        if force || last_progress.is_none_or(|t| now >= t + Duration::from_millis(50)) {
            last_progress = Some(now);
            observer.progress(&p);
        }
    };

    // Warm-up: one run at a time, discarded. Batch sizes and rests use the
    // time a batch really took on the clock, not the runs' reported times:
    // with `--time-from stdout` those are what the command printed (µs of
    // a function inside a 100-ms interpreter start-up).
    let mut mean_elapsed_ns = 0.0f64;
    let mut warmed = 0;
    while warmed < plan.warmup {
        if stop.load(Ordering::Relaxed) {
            return Err(ProfileError::Interrupted);
        }
        if clock.now() - start >= plan.max_time {
            break;
        }
        batch.clear();
        let t0 = clock.now();
        m.run_batch(1, &mut batch)?;
        let elapsed_ns = (clock.now() - t0).as_nanos() as u64;
        warmed += 1;
        mean_elapsed_ns = elapsed_ns as f64;
        rest(clock, elapsed_ns, &mut rest_debt);
        let elapsed_s = (clock.now() - start).as_secs_f64();
        report(
            observer,
            clock,
            Progress {
                phase: Phase::Warmup,
                runs: warmed,
                elapsed_s,
                max_time_s,
                ci_half_width: None,
            },
            false,
        );
    }

    let mut wall = ns_histogram();
    let mut cpu = ns_histogram();
    let mut reservoir = Reservoir {
        cap: plan.sample_cap,
        seen: 0,
        values: Vec::new(),
        rng: SplitMix64::new(plan.seed),
    };
    let mut runs = 0u64;
    let mut elapsed_sum = 0.0f64;
    let first_check = plan.runs_before_precision_check();
    let mut next_check = first_check;
    let mut checks = 0u64;
    let mut ci: Option<Interval> = None;
    let mut windows = Windows::new(DRIFT_WINDOW, false, clock.now());
    let mut blocks = Windows::new(BLOCK_WINDOW, true, clock.now());
    let stop_reason = loop {
        if stop.load(Ordering::Relaxed) {
            return Err(ProfileError::Interrupted);
        }
        if runs >= plan.max_runs {
            break StopReason::MaxRuns;
        }
        if clock.now() - start >= plan.max_time && runs >= 2 {
            break StopReason::MaxTime;
        }
        let target_ns = plan.batch_target.as_nanos() as f64;
        let per_run = if mean_elapsed_ns > 0.0 {
            mean_elapsed_ns
        } else {
            target_ns
        };
        let n = ((target_ns / per_run) as u64).clamp(1, 10_000);
        let n = n.min(plan.max_runs - runs).max(1) as usize;
        batch.clear();
        let t0 = clock.now();
        m.run_batch(n, &mut batch)?;
        let busy = (clock.now() - t0).as_nanos() as u64;
        for t in &batch {
            wall.saturating_record(t.wall_ns.max(1));
            cpu.saturating_record(t.cpu_ns.max(1));
            reservoir.push(t.wall_ns as f64);
        }
        runs += batch.len() as u64;
        elapsed_sum += busy as f64;
        mean_elapsed_ns = elapsed_sum / runs.max(1) as f64;
        windows.push(clock.now(), batch.iter().map(|t| t.wall_ns as f64));
        blocks.push(clock.now(), batch.iter().map(|t| t.wall_ns as f64));
        rest(clock, busy, &mut rest_debt);

        if runs >= next_check && reservoir.values.len() >= 2 {
            let sample = Sample::new(reservoir.values.clone())?;
            checks += 1;
            let interval = bootstrap_percentile_ci(
                &sample,
                plan.percentile,
                plan.resamples,
                plan.confidence,
                plan.seed.wrapping_add(checks),
            )?;
            ci = Some(interval);
            // Geometric spacing keeps the bootstrap cost a small share.
            next_check = (runs as f64 * 1.25).ceil() as u64;
            let long_enough = clock.now() - start >= plan.min_time;
            if long_enough && interval.relative_half_width() <= plan.precision {
                break StopReason::Precision;
            }
        }
        let elapsed_s = (clock.now() - start).as_secs_f64();
        report(
            observer,
            clock,
            Progress {
                phase: Phase::Measuring,
                runs,
                elapsed_s,
                max_time_s,
                ci_half_width: ci.map(|c| c.relative_half_width()),
            },
            false,
        );
    };
    let elapsed = clock.now() - start;
    windows.close();
    blocks.close();
    report(
        observer,
        clock,
        Progress {
            phase: Phase::Measuring,
            runs,
            elapsed_s: elapsed.as_secs_f64(),
            max_time_s,
            ci_half_width: ci.map(|c| c.relative_half_width()),
        },
        true,
    );
    Ok(Sampling {
        wall_ns: wall,
        cpu_ns: cpu,
        raw_wall_ns: reservoir.values,
        warmup_runs: warmed,
        runs,
        elapsed,
        stop_reason,
        percentile_ci: ci,
        window_medians_ns: windows.medians,
        windows_wall_ns: blocks.closed,
    })
}

/// Test doubles: a fake clock and a fake measurement that advances it.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A clock that only moves when told to.
    #[derive(Debug, Clone, Default)]
    pub struct FakeClock(pub Rc<Cell<Duration>>);

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&mut self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    /// Replays a deterministic sequence of run times and advances the clock by each.
    pub struct FakeMeasurement {
        pub clock: FakeClock,
        pub next: Box<dyn FnMut() -> u64>,
        pub calls: u64,
    }

    impl Measurement for FakeMeasurement {
        fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
            for _ in 0..n {
                let ns = (self.next)();
                self.calls += 1;
                self.clock.sleep(Duration::from_nanos(ns));
                out.push(Timing {
                    wall_ns: ns,
                    cpu_ns: ns,
                });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;
    use crate::observer::NoopObserver;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn noisy(seed: u64, base_ns: f64, spread: f64) -> Box<dyn FnMut() -> u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Box::new(move || {
            let jitter = if spread > 0.0 {
                rng.random_range(0.0..spread)
            } else {
                0.0
            };
            (base_ns * (1.0 + jitter)) as u64
        })
    }

    fn run(plan: &SamplingPlan, next: Box<dyn FnMut() -> u64>) -> (Sampling, FakeClock, u64) {
        let clock = FakeClock::default();
        let mut m = FakeMeasurement {
            clock: clock.clone(),
            next,
            calls: 0,
        };
        let mut c = clock.clone();
        let s = sample(
            &mut m,
            &mut c,
            plan,
            &AtomicBool::new(false),
            &mut NoopObserver,
        )
        .unwrap();
        (s, clock, m.calls)
    }

    #[test]
    fn a_steady_function_stops_on_precision_after_enough_tail_runs() {
        let plan = SamplingPlan::default();
        let (s, _, calls) = run(&plan, noisy(1, 1e6, 0.01));
        assert_eq!(s.stop_reason, StopReason::Precision);
        assert!(s.runs >= plan.runs_before_precision_check(), "{}", s.runs);
        assert_eq!(s.warmup_runs, 10);
        assert_eq!(calls, s.runs + 10);
        assert!(s.percentile_ci.unwrap().relative_half_width() <= 0.02);
    }

    #[test]
    fn a_wild_function_stops_at_max_time() {
        // Heavy tail: 5 % of runs are 1–20× longer. p99 never settles to ±0.1 %.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let next = Box::new(move || {
            let base = 1e6;
            if rng.random_range(0.0..1.0) < 0.05 {
                (base * rng.random_range(1.0..20.0)) as u64
            } else {
                base as u64
            }
        });
        let plan = SamplingPlan {
            precision: 0.001,
            max_time: Duration::from_secs(5),
            ..SamplingPlan::default()
        };
        let (s, clock, _) = run(&plan, next);
        assert_eq!(s.stop_reason, StopReason::MaxTime);
        // It stops within one batch (+ rest) of the cap.
        assert!(clock.now() < Duration::from_secs(6), "{:?}", clock.now());
    }

    #[test]
    fn min_time_holds_the_precision_rule_back() {
        let quick = SamplingPlan::default();
        let (s, clock, _) = run(&quick, noisy(1, 1e6, 0.01));
        assert_eq!(s.stop_reason, StopReason::Precision);
        assert!(clock.now() < Duration::from_secs(4), "{:?}", clock.now());
        let plan = SamplingPlan {
            min_time: Duration::from_secs(6),
            ..SamplingPlan::default()
        };
        let (s, clock, _) = run(&plan, noisy(1, 1e6, 0.01));
        assert_eq!(s.stop_reason, StopReason::Precision);
        assert!(clock.now() >= Duration::from_secs(6), "{:?}", clock.now());
    }

    #[test]
    fn drift_is_the_spread_of_window_medians() {
        // 1 ms runs that become 1.5 ms halfway through a 6 s profile.
        let mut k = 0u64;
        let next = Box::new(move || {
            k += 1;
            if k < 2_000 {
                1_000_000
            } else {
                1_500_000
            }
        });
        let plan = SamplingPlan {
            max_time: Duration::from_secs(6),
            min_time: Duration::from_secs(6),
            ..SamplingPlan::default()
        };
        let (s, _, _) = run(&plan, next);
        assert!(
            s.window_medians_ns.len() >= 5,
            "{:?} {} {:?}",
            s.window_medians_ns,
            s.runs,
            s.stop_reason
        );
        let d = drift(&s.window_medians_ns).unwrap();
        // (1.5 − 1.0) / median of the windows (1.0 or 1.5 ms)
        assert!((0.33..=0.5).contains(&d), "drift {d}");
        // A steady function does not drift.
        let (s, _, _) = run(&plan, noisy(7, 1e6, 0.01));
        assert!(drift(&s.window_medians_ns).unwrap() < 0.01);
        assert_eq!(drift(&[1.0, 2.0]), None, "too few windows");
    }

    #[test]
    fn max_runs_caps_counted_runs_exactly() {
        let plan = SamplingPlan {
            max_runs: 57,
            ..SamplingPlan::default()
        };
        let (s, _, _) = run(&plan, noisy(3, 1e3, 1.0));
        assert_eq!(s.stop_reason, StopReason::MaxRuns);
        assert_eq!(s.runs, 57);
        assert_eq!(s.wall_ns.len(), 57);
    }

    #[test]
    fn the_duty_cycle_rule_keeps_busy_time_at_most_half_the_wall_time() {
        let plan = SamplingPlan {
            max_runs: 500,
            warmup: 0,
            ..SamplingPlan::default()
        };
        let (s, clock, _) = run(&plan, noisy(4, 5e6, 0.0));
        let busy = s.runs as f64 * 5e-3;
        let wall = clock.now().as_secs_f64();
        assert!(busy / wall <= 0.5 + 1e-9, "busy {busy} s of {wall} s");
        assert!(busy / wall > 0.45, "rests far too long: {busy} / {wall}");
    }

    #[test]
    fn tiny_functions_run_in_batches() {
        let plan = SamplingPlan {
            max_runs: 10_000,
            precision: 1e-9,
            ..SamplingPlan::default()
        };
        let (s, _, calls) = run(&plan, noisy(5, 2_000.0, 0.1));
        assert_eq!(s.runs, 10_000);
        assert_eq!(calls, 10_010);
        assert!(s.raw_wall_ns.len() <= plan.sample_cap);
    }

    /// Runs that report 5 µs but take 20 ms on the clock, like a command
    /// timed by what it prints (`--time-from stdout`).
    struct PrintsLessThanItTakes {
        clock: FakeClock,
        calls: u64,
        largest_batch: usize,
    }

    impl Measurement for PrintsLessThanItTakes {
        fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
            self.largest_batch = self.largest_batch.max(n);
            for _ in 0..n {
                self.calls += 1;
                self.clock.sleep(Duration::from_millis(20));
                out.push(Timing {
                    wall_ns: 5_000,
                    cpu_ns: 20_000_000,
                });
            }
            Ok(())
        }
    }

    #[test]
    fn batches_and_rests_follow_the_clock_not_the_reported_times() {
        let clock = FakeClock::default();
        let mut m = PrintsLessThanItTakes {
            clock: clock.clone(),
            calls: 0,
            largest_batch: 0,
        };
        let plan = SamplingPlan {
            max_time: Duration::from_secs(4),
            ..SamplingPlan::default()
        };
        let s = sample(
            &mut m,
            &mut clock.clone(),
            &plan,
            &AtomicBool::new(false),
            &mut NoopObserver,
        )
        .unwrap();
        // 50-ms batches of 20-ms runs: at most 2–3 runs a batch, never the
        // 10 000 that 5-µs runs would get; and the duty cycle holds.
        assert!(m.largest_batch <= 3, "batch of {}", m.largest_batch);
        let busy = m.calls as f64 * 0.02;
        assert!(busy / clock.now().as_secs_f64() <= 0.5 + 1e-9);
        assert!(
            s.raw_wall_ns.iter().all(|&v| v == 5_000.0),
            "the reported times are kept"
        );
    }

    #[test]
    fn the_reservoir_is_bounded() {
        let plan = SamplingPlan {
            max_runs: 5_000,
            sample_cap: 100,
            precision: 1e-9,
            ..SamplingPlan::default()
        };
        let (s, _, _) = run(&plan, noisy(6, 1_000.0, 1.0));
        assert_eq!(s.raw_wall_ns.len(), 100);
        assert_eq!(s.wall_ns.len(), 5_000);
    }

    #[test]
    fn the_stop_flag_interrupts() {
        let clock = FakeClock::default();
        let mut m = FakeMeasurement {
            clock: clock.clone(),
            next: noisy(7, 1e3, 0.0),
            calls: 0,
        };
        let e = sample(
            &mut m,
            &mut clock.clone(),
            &SamplingPlan::default(),
            &AtomicBool::new(true),
            &mut NoopObserver,
        )
        .unwrap_err();
        assert!(matches!(e, ProfileError::Interrupted));
    }

    #[test]
    fn the_same_seed_gives_the_same_result() {
        let plan = SamplingPlan::default();
        let (a, _, _) = run(&plan, noisy(8, 1e5, 0.2));
        let (b, _, _) = run(&plan, noisy(8, 1e5, 0.2));
        assert_eq!(a.runs, b.runs);
        assert_eq!(a.percentile_ci, b.percentile_ci);
    }

    #[test]
    fn invalid_plans_name_the_flag() {
        let e = SamplingPlan {
            precision: 0.0,
            ..SamplingPlan::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("--precision"), "{e}");
    }
}
