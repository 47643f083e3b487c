//! Paired sampling and its decision, for `slokit gate --against OLD`: the old
//! and the new build run interleaved in short alternating batches on one
//! measurement CPU, and the gate decides on paired ratios, so the
//! machine's drift between minutes — which a baseline profiled earlier
//! cannot see — cancels. The idea is paired benchmarking as tango-bench does
//! it; the batch schedule and the decision rule below are slokit's own.
//!
//! **Schedule.** Both sides warm up (one run each, alternately), then pair k
//! runs one batch of `n` runs of each side back to back: old then new for
//! even k, new then old for odd k (A B | B A | A B …, an ABBA design); the
//! measurement ends after a B A pair. `n` makes one batch last about
//! `batch_target`; the rest after a pair keeps the measurement CPU's busy
//! share under `duty_cycle` (RT throttling, see the sampler).
//!
//! **Statistic.** Per pair the ratio of batch medians, new / old. Per ABBA
//! block (an A B pair and the B A pair after it) the geometric mean of its
//! two ratios: a drift that is linear over the block, and any advantage of
//! running first or second in a pair, enter the two ratios with opposite
//! signs and cancel exactly. The gate's effect size is the **median of the
//! block ratios**, with a percentile-bootstrap interval that resamples
//! whole blocks (so it reflects the block-to-block spread, drift included).
//!
//! **Rule.** A regression needs the point estimate above `1 + threshold`
//! (the change is as large as the noise threshold says matters) **and** the
//! interval's lower bound above `1 + threshold / 2` (even the pessimistic
//! end shows half the threshold). Pairing removes drift but not a bias of
//! the two *processes*: identical binaries differ by a percent or two from
//! memory layout alone (Mytkowicz et al., "Producing wrong data without
//! doing anything obviously wrong", ASPLOS 2009). That is why the lower
//! bound must clear half the threshold rather than merely 1, and why the
//! confirmation re-measures with fresh processes. An improvement is the
//! mirror image.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{GateSettings, Verdict};
use crate::error::ProfileError;
use crate::observer::{Observer, Phase, Progress};
use crate::sampler::{ns_histogram, Clock, Measurement, Timing};
use crate::stats::{bootstrap_percentile_ci, percentile_select, Interval, Sample};

/// Fewest ABBA blocks (two pairs each) the decision trusts; with fewer the
/// report warns.
pub const MIN_BLOCKS: usize = 5;
/// A batch this busy gets its rest right after it, not after the pair.
const LONG_BATCH: Duration = Duration::from_millis(200);

/// How long and in what pieces the paired measurement runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedPlan {
    /// Discarded runs per side before the first pair.
    pub warmup: u64,
    /// Total time of warm-up and pairs, both sides together.
    pub max_time: Duration,
    /// Cap on counted runs per side.
    pub max_runs: u64,
    /// Target busy time of one side's batch.
    pub batch_target: Duration,
    /// Largest share of wall time the measurement CPU is kept busy.
    pub duty_cycle: f64,
}

impl PairedPlan {
    fn validate(&self) -> Result<(), ProfileError> {
        if !(self.duty_cycle > 0.0 && self.duty_cycle <= 1.0) {
            return Err(ProfileError::Settings(format!(
                "duty cycle must be in (0, 1], got {}",
                self.duty_cycle
            )));
        }
        if self.max_time.is_zero() || self.batch_target.is_zero() {
            return Err(ProfileError::Settings(
                "--max-time and --batch-ms must be positive".into(),
            ));
        }
        if self.max_runs < 2 {
            return Err(ProfileError::Settings(format!(
                "--runs must be at least 2, got {}",
                self.max_runs
            )));
        }
        Ok(())
    }
}

/// One pair: a batch of each side, adjacent in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// Median wall time of the old side's batch, ns.
    pub old_median_ns: f64,
    /// Median wall time of the new side's batch, ns.
    pub new_median_ns: f64,
    /// Whether the new side ran first in this pair.
    pub new_first: bool,
    /// Runs per side in this pair.
    pub runs: usize,
}

impl Pair {
    /// new / old of the batch medians.
    pub fn ratio(&self) -> f64 {
        self.new_median_ns / self.old_median_ns
    }
}

/// What a paired measurement collected.
#[derive(Debug, Clone)]
pub struct PairedSampling {
    pub pairs: Vec<Pair>,
    /// Every counted run of the old side (wall, ns).
    pub old_ns: Histogram<u64>,
    /// Every counted run of the new side (wall, ns).
    pub new_ns: Histogram<u64>,
    pub warmup_runs: u64,
    pub elapsed: Duration,
}

impl PairedSampling {
    /// The ABBA block ratios new / old, in order: the geometric mean of
    /// each A B pair's ratio and the following B A pair's.
    pub fn ratios(&self) -> Vec<f64> {
        self.pairs
            .chunks_exact(2)
            .map(|b| (b[0].ratio() * b[1].ratio()).sqrt())
            .collect()
    }
}

/// The two sides being compared.
pub struct Sides<'a> {
    pub old: &'a mut dyn Measurement,
    pub new: &'a mut dyn Measurement,
}

fn batch_median(batch: &[Timing], buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend(batch.iter().map(|t| t.wall_ns as f64));
    percentile_select(buf, 50.0)
}

/// Runs the schedule of the module docs. `stop` (the Ctrl-C flag) is polled
/// between batches.
pub fn sample_pairs(
    sides: Sides<'_>,
    clock: &mut dyn Clock,
    plan: &PairedPlan,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<PairedSampling, ProfileError> {
    plan.validate()?;
    let Sides { old, new } = sides;
    let start = clock.now();
    let rest_ratio = (1.0 - plan.duty_cycle) / plan.duty_cycle;
    let max_time_s = plan.max_time.as_secs_f64();
    let mut debt = Duration::ZERO;
    let owed = |busy_ns: u64| Duration::from_secs_f64(busy_ns as f64 * 1e-9 * rest_ratio);
    let rest = |clock: &mut dyn Clock, debt: &mut Duration| {
        if *debt >= Duration::from_millis(1) {
            clock.sleep(*debt);
            *debt = Duration::ZERO;
        }
    };
    let interrupted = || stop.load(Ordering::Relaxed);
    // A run that fails because Ctrl-C reached a child too is an interruption.
    let run = |side: &mut dyn Measurement, n, out: &mut Vec<Timing>| {
        side.run_batch(n, out).map_err(|e| {
            if stop.load(Ordering::Relaxed) {
                ProfileError::Interrupted
            } else {
                e
            }
        })
    };
    let mut last_progress: Option<Duration> = None;
    let mut report = |observer: &mut dyn Observer, clock: &dyn Clock, phase, runs| {
        let now = clock.now();
        if last_progress.is_none_or(|t| now >= t + Duration::from_millis(50)) {
            last_progress = Some(now);
            observer.progress(&Progress {
                phase,
                runs,
                elapsed_s: (now - start).as_secs_f64(),
                max_time_s,
                ci_half_width: None,
            });
        }
    };

    // Warm-up, alternating single runs; the last times seed the batch size.
    let mut batch = Vec::new();
    let mut per_run_ns = [0.0f64; 2];
    let mut warmed = 0;
    while warmed < plan.warmup && clock.now() - start < plan.max_time {
        if interrupted() {
            return Err(ProfileError::Interrupted);
        }
        for (i, side) in [&mut *old, &mut *new].into_iter().enumerate() {
            batch.clear();
            let t0 = clock.now();
            run(side, 1, &mut batch)?;
            let spent = (clock.now() - t0).as_nanos() as u64;
            per_run_ns[i] = spent as f64;
            debt += owed(spent);
        }
        rest(clock, &mut debt);
        warmed += 1;
        report(observer, clock, Phase::Warmup, warmed);
    }

    let mut old_h = ns_histogram();
    let mut new_h = ns_histogram();
    let mut pairs = Vec::new();
    let mut runs = 0u64;
    let mut buf = Vec::new();
    let mut sums = [0.0f64; 2];
    loop {
        if interrupted() {
            return Err(ProfileError::Interrupted);
        }
        // Stop only after a B A pair (whole blocks), and with two blocks at
        // least (a bootstrap needs two values).
        let whole = pairs.len() % 2 == 0 && pairs.len() >= 4;
        if whole && (runs >= plan.max_runs || clock.now() - start >= plan.max_time) {
            break;
        }
        let slowest = per_run_ns[0].max(per_run_ns[1]);
        let target = plan.batch_target.as_nanos() as f64;
        let n = if slowest > 0.0 {
            (target / slowest) as u64
        } else {
            1
        };
        let n = n
            .clamp(1, 10_000)
            .min(plan.max_runs.saturating_sub(runs))
            .max(1) as usize;
        let new_first = pairs.len() % 2 == 1;
        let mut medians = [0.0f64; 2];
        for step in 0..2 {
            let i = if new_first { 1 - step } else { step };
            let side: &mut dyn Measurement = if i == 0 { &mut *old } else { &mut *new };
            batch.clear();
            let t0 = clock.now();
            run(side, n, &mut batch)?;
            // Sizing and rests use the time the batch took, which for a
            // side that starts a process per run is more than the run times.
            let spent = (clock.now() - t0).as_nanos() as u64;
            if batch.is_empty() {
                return Err(ProfileError::InvalidSample(
                    "a side returned an empty batch".into(),
                ));
            }
            let h = if i == 0 { &mut old_h } else { &mut new_h };
            for t in &batch {
                h.saturating_record(t.wall_ns.max(1));
            }
            sums[i] += spent as f64;
            medians[i] = batch_median(&batch, &mut buf);
            debt += owed(spent);
            if Duration::from_nanos(spent) >= LONG_BATCH {
                rest(clock, &mut debt);
            }
        }
        rest(clock, &mut debt);
        runs += n as u64;
        for (i, sum) in sums.iter().enumerate() {
            per_run_ns[i] = sum / runs as f64;
        }
        pairs.push(Pair {
            old_median_ns: medians[0],
            new_median_ns: medians[1],
            new_first,
            runs: n,
        });
        report(observer, clock, Phase::Measuring, pairs.len() as u64);
    }
    Ok(PairedSampling {
        pairs,
        old_ns: old_h,
        new_ns: new_h,
        warmup_runs: warmed,
        elapsed: clock.now() - start,
    })
}

/// The decision on a set of block ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDecision {
    /// Median block ratio new / old, with its bootstrap interval.
    pub ratio: Interval,
    /// The interval excludes 1.
    pub significant: bool,
    pub verdict: Verdict,
}

/// Decides on block ratios with the rule of the module docs. Pure and
/// deterministic for a seed.
pub fn decide_paired(ratios: &[f64], gs: &GateSettings) -> Result<PairedDecision, ProfileError> {
    gs.validate()?;
    let sample = Sample::new(ratios.to_vec())?;
    let ratio = bootstrap_percentile_ci(&sample, 50.0, gs.resamples, gs.confidence, gs.seed)?;
    let t = gs.threshold;
    let verdict = if ratio.point > 1.0 + t && ratio.lo > 1.0 + t / 2.0 {
        Verdict::Regression
    } else if ratio.point < 1.0 - t && ratio.hi < 1.0 - t / 2.0 {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    };
    Ok(PairedDecision {
        ratio,
        significant: !ratio.contains(1.0),
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::NoopObserver;
    use crate::sampler::fake::FakeClock;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::f64::consts::PI;

    /// A simulated build on a drifting machine: each run takes
    /// `base × scale × drift(now)` with 4 % uniform jitter and a 3 % tail of
    /// preempted runs, and advances the shared clock by that much.
    struct DriftingSide {
        clock: FakeClock,
        scale: f64,
        drift: fn(f64) -> f64,
        rng: ChaCha8Rng,
    }

    impl Measurement for DriftingSide {
        fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
            for _ in 0..n {
                let t = self.clock.0.get().as_secs_f64();
                let mut ns = 2.5e6 * self.scale * (self.drift)(t);
                ns *= 1.0 + self.rng.random_range(0.0..0.04);
                if self.rng.random_range(0.0..1.0) < 0.03 {
                    ns *= self.rng.random_range(1.5..3.0);
                }
                let ns = ns as u64;
                self.clock.sleep(Duration::from_nanos(ns));
                out.push(Timing {
                    wall_ns: ns,
                    cpu_ns: ns,
                });
            }
            Ok(())
        }
    }

    const RUN_S: f64 = 12.0;

    /// One slow sine over the whole run, ±15 %: the machine is slower in the
    /// first half and faster in the second.
    fn slow_sine(t: f64) -> f64 {
        1.0 + 0.15 * (2.0 * PI * t / RUN_S).sin()
    }

    fn plan() -> PairedPlan {
        PairedPlan {
            warmup: 5,
            max_time: Duration::from_secs_f64(RUN_S),
            max_runs: 1_000_000,
            batch_target: Duration::from_millis(50),
            duty_cycle: 0.5,
        }
    }

    fn measure(seed: u64, new_scale: f64, drift: fn(f64) -> f64) -> PairedSampling {
        let clock = FakeClock::default();
        let side = |scale, s| DriftingSide {
            clock: clock.clone(),
            scale,
            drift,
            rng: ChaCha8Rng::seed_from_u64(s),
        };
        let mut old = side(1.0, seed);
        let mut new = side(new_scale, seed + 1000);
        sample_pairs(
            Sides {
                old: &mut old,
                new: &mut new,
            },
            &mut clock.clone(),
            &plan(),
            &AtomicBool::new(false),
            &mut NoopObserver,
        )
        .unwrap()
    }

    fn gs(seed: u64) -> GateSettings {
        GateSettings {
            seed,
            ..GateSettings::default()
        }
    }

    #[test]
    fn the_drift_is_strong_enough_to_fool_an_unpaired_comparison() {
        // Control for the tests below: the same machine, measured the
        // committed-profile way (old in the first half, new in the second).
        let s = measure(1, 1.10, slow_sine);
        let mut runs: Vec<(f64, bool)> = Vec::new();
        let half = s.pairs.len() / 2;
        for (k, p) in s.pairs.iter().enumerate() {
            runs.push((
                if k < half {
                    p.old_median_ns
                } else {
                    p.new_median_ns
                },
                k < half,
            ));
        }
        let first: Vec<f64> = runs.iter().filter(|r| r.1).map(|r| r.0).collect();
        let second: Vec<f64> = runs.iter().filter(|r| !r.1).map(|r| r.0).collect();
        let d = super::super::decide(&first, &second, &gs(1)).unwrap();
        assert_ne!(d.verdict, Verdict::Regression, "{d:?}");
    }

    #[test]
    fn an_unchanged_build_on_a_drifting_machine_is_not_flagged() {
        for seed in 0..8 {
            let s = measure(seed, 1.0, slow_sine);
            assert!(s.pairs.len() >= 40, "{} pairs", s.pairs.len());
            let d = decide_paired(&s.ratios(), &gs(seed)).unwrap();
            assert_eq!(d.verdict, Verdict::Unchanged, "seed {seed}: {d:?}");
            assert!((d.ratio.point - 1.0).abs() < 0.02, "seed {seed}: {d:?}");
        }
    }

    #[test]
    fn a_ten_percent_slower_build_on_a_drifting_machine_is_flagged() {
        for seed in 0..8 {
            let s = measure(seed, 1.10, slow_sine);
            let d = decide_paired(&s.ratios(), &gs(seed)).unwrap();
            assert_eq!(d.verdict, Verdict::Regression, "seed {seed}: {d:?}");
            assert!(d.ratio.contains(1.10), "seed {seed}: {d:?}");
        }
    }

    #[test]
    fn a_ten_percent_faster_build_is_an_improvement() {
        let s = measure(3, 0.90, slow_sine);
        let d = decide_paired(&s.ratios(), &gs(3)).unwrap();
        assert_eq!(d.verdict, Verdict::Improvement, "{d:?}");
    }

    fn steep_ramp(t: f64) -> f64 {
        // +60 % over the run: the second batch of a pair is ~0.5 % slower.
        1.0 + 0.6 * t / RUN_S
    }

    #[test]
    fn alternating_the_order_cancels_a_linear_drift() {
        let clock = FakeClock::default();
        struct Exact(FakeClock);
        impl Measurement for Exact {
            fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
                for _ in 0..n {
                    let ns = (2.5e6 * steep_ramp(self.0 .0.get().as_secs_f64())) as u64;
                    self.0.sleep(Duration::from_nanos(ns));
                    out.push(Timing {
                        wall_ns: ns,
                        cpu_ns: ns,
                    });
                }
                Ok(())
            }
        }
        let s = sample_pairs(
            Sides {
                old: &mut Exact(clock.clone()),
                new: &mut Exact(clock.clone()),
            },
            &mut clock.clone(),
            &plan(),
            &AtomicBool::new(false),
            &mut NoopObserver,
        )
        .unwrap();
        // Whichever side runs second looks slower by the drift...
        for p in &s.pairs {
            assert_eq!(p.ratio() < 1.0, p.new_first, "{p:?}");
        }
        // ...and because the order alternates, each A B | B A block cancels it.
        assert_eq!(s.ratios().len() * 2, s.pairs.len());
        for r in s.ratios() {
            assert!((r - 1.0).abs() < 2e-4, "block ratio {r}");
        }
        let d = decide_paired(&s.ratios(), &gs(0)).unwrap();
        assert!((d.ratio.point - 1.0).abs() < 2e-4, "{d:?}");
    }

    #[test]
    fn the_schedule_keeps_the_duty_cycle_and_the_time_budget() {
        let s = measure(4, 1.0, |_| 1.0);
        let busy_s = (s.old_ns.len() + s.new_ns.len()) as f64 * 2.5e-3 * 1.05;
        let wall_s = s.elapsed.as_secs_f64();
        assert!(busy_s / wall_s <= 0.55, "busy {busy_s} of {wall_s}");
        assert!(wall_s < RUN_S + 0.5, "{wall_s}");
        assert_eq!(s.old_ns.len(), s.new_ns.len());
        assert_eq!(s.pairs.len() % 2, 0, "as many A B as B A pairs");
    }

    #[test]
    fn the_stop_flag_interrupts() {
        let clock = FakeClock::default();
        let side = || DriftingSide {
            clock: clock.clone(),
            scale: 1.0,
            drift: |_| 1.0,
            rng: ChaCha8Rng::seed_from_u64(0),
        };
        let e = sample_pairs(
            Sides {
                old: &mut side(),
                new: &mut side(),
            },
            &mut clock.clone(),
            &plan(),
            &AtomicBool::new(true),
            &mut NoopObserver,
        )
        .unwrap_err();
        assert!(matches!(e, ProfileError::Interrupted), "{e}");
    }

    #[test]
    fn a_change_below_the_threshold_is_not_counted() {
        // Every pair 3 % slower, tightly: significant, but under 5 %.
        let ratios: Vec<f64> = (0..60).map(|i| 1.03 + (i % 5) as f64 * 1e-3).collect();
        let d = decide_paired(&ratios, &gs(0)).unwrap();
        assert!(d.significant, "{d:?}");
        assert_eq!(d.verdict, Verdict::Unchanged, "{d:?}");
        // A 6 % point estimate whose interval reaches below +2.5 % is not enough.
        let wide: Vec<f64> = (0..12)
            .map(|i| if i % 2 == 0 { 1.01 } else { 1.11 })
            .collect();
        let d = decide_paired(&wide, &gs(0)).unwrap();
        assert_eq!(d.verdict, Verdict::Unchanged, "{d:?}");
    }
}
