//! Synthetic arrival processes for one function: constant rate, Poisson
//! (exponential inter-arrival times) and bursty (a two-state Markov-modulated
//! Poisson process, MMPP-2, of which on/off is the special case with a silent
//! low state). Every generator draws from a ChaCha stream seeded by the
//! caller, so the same seed gives the same schedule bit for bit on every
//! machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use serde_json::Value;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use crate::LoadgenError;

/// The random stream every generator in this crate uses.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A bursty (MMPP-2) process: a high and a low state with exponential dwell
/// times, Poisson arrivals in each, mean rate as asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstySpec {
    /// Rate in the high state over rate in the low state; `f64::INFINITY`
    /// makes the low state silent (on/off).
    pub ratio: f64,
    /// Share of time spent in the high state, in (0, 1).
    pub high_share: f64,
    /// Mean length of one high + low cycle, seconds.
    pub period_s: f64,
}

impl Default for BurstySpec {
    fn default() -> Self {
        BurstySpec {
            ratio: 10.0,
            high_share: 0.2,
            period_s: 1.0,
        }
    }
}

/// Which process drives the arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Process {
    Constant,
    Poisson,
    Bursty(BurstySpec),
}

impl Process {
    fn describe(&self) -> String {
        match self {
            Process::Constant => "constant".into(),
            Process::Poisson => "poisson".into(),
            Process::Bursty(b) => format!(
                "bursty (ratio {}, high share {}, period {} s)",
                b.ratio, b.high_share, b.period_s
            ),
        }
    }
}

/// One function driven by one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    pub function: ScheduledFunction,
    pub process: Process,
    pub rate_per_s: f64,
    pub duration_s: f64,
    pub seed: u64,
}

fn check_rate(rate_per_s: f64, duration_s: f64) -> Result<(), LoadgenError> {
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return Err(LoadgenError::invalid(
            "--rate",
            format!("must be a positive number of requests per second, got {rate_per_s}"),
        ));
    }
    if !(duration_s.is_finite() && duration_s > 0.0) {
        return Err(LoadgenError::invalid(
            "--duration",
            format!("must be positive, got {duration_s} s"),
        ));
    }
    let expected = rate_per_s * duration_s;
    if expected > 1e9 {
        return Err(LoadgenError::invalid(
            "--rate/--duration",
            format!(
                "{expected:.0} arrivals is more than this generator holds (1e9); shorten the run"
            ),
        ));
    }
    Ok(())
}

fn ns(t_s: f64) -> u64 {
    (t_s * 1e9).round() as u64
}

/// Evenly spaced arrival times (ns) at `rate_per_s` over `[0, duration_s)`.
pub fn constant(rate_per_s: f64, duration_s: f64) -> Vec<u64> {
    let n = (rate_per_s * duration_s).ceil() as u64;
    (0..n)
        .map(|i| i as f64 / rate_per_s)
        .take_while(|t| *t < duration_s)
        .map(ns)
        .collect()
}

/// Poisson arrival times (ns): exponential gaps with mean `1/rate_per_s`.
pub fn poisson(rate_per_s: f64, duration_s: f64, rng: &mut impl Rng) -> Vec<u64> {
    let exp = Exp::new(rate_per_s).expect("rate is positive");
    let mut out = Vec::with_capacity((rate_per_s * duration_s * 1.05) as usize + 16);
    let mut t = exp.sample(rng);
    while t < duration_s {
        out.push(ns(t));
        t += exp.sample(rng);
    }
    out
}

/// MMPP-2 arrival times (ns) with mean rate `rate_per_s`. The process starts
/// in the high state with probability `high_share` (its stationary law).
/// Exponential gaps are memoryless, so a gap that crosses a state change is
/// cut there and redrawn at the new state's rate.
pub fn bursty(rate_per_s: f64, duration_s: f64, spec: &BurstySpec, rng: &mut impl Rng) -> Vec<u64> {
    let share = spec.high_share;
    let low = if spec.ratio.is_infinite() {
        0.0
    } else {
        rate_per_s / (share * spec.ratio + (1.0 - share))
    };
    let high = if spec.ratio.is_infinite() {
        rate_per_s / share
    } else {
        low * spec.ratio
    };
    let dwell_high = Exp::new(1.0 / (spec.period_s * share)).expect("positive");
    let dwell_low = Exp::new(1.0 / (spec.period_s * (1.0 - share))).expect("positive");
    let mut out = Vec::with_capacity((rate_per_s * duration_s * 1.1) as usize + 16);
    let mut in_high = rng.random::<f64>() < share;
    let mut t = 0.0;
    let mut state_end = if in_high {
        dwell_high.sample(rng)
    } else {
        dwell_low.sample(rng)
    };
    while t < duration_s {
        let rate = if in_high { high } else { low };
        let gap = if rate > 0.0 {
            Exp::new(rate).expect("positive").sample(rng)
        } else {
            f64::INFINITY
        };
        if t + gap < state_end {
            t += gap;
            if t < duration_s {
                out.push(ns(t));
            }
        } else {
            t = state_end;
            in_high = !in_high;
            state_end += if in_high {
                dwell_high.sample(rng)
            } else {
                dwell_low.sample(rng)
            };
        }
    }
    out
}

fn check_bursty(b: &BurstySpec) -> Result<(), LoadgenError> {
    if !(b.high_share > 0.0 && b.high_share < 1.0) {
        return Err(LoadgenError::invalid(
            "--burst-share",
            format!("must be strictly between 0 and 1, got {}", b.high_share),
        ));
    }
    if b.ratio.is_nan() || b.ratio < 1.0 {
        return Err(LoadgenError::invalid(
            "--burst-ratio",
            format!("must be ≥ 1 (or `inf` for on/off), got {}", b.ratio),
        ));
    }
    if !(b.period_s.is_finite() && b.period_s > 0.0) {
        return Err(LoadgenError::invalid(
            "--burst-period",
            format!("must be positive, got {} s", b.period_s),
        ));
    }
    Ok(())
}

/// The schedule of one function driven by one process.
pub fn process_schedule(spec: &ProcessSpec) -> Result<Schedule, LoadgenError> {
    check_rate(spec.rate_per_s, spec.duration_s)?;
    let mut rng = rng(spec.seed);
    let times = match &spec.process {
        Process::Constant => constant(spec.rate_per_s, spec.duration_s),
        Process::Poisson => poisson(spec.rate_per_s, spec.duration_s, &mut rng),
        Process::Bursty(b) => {
            check_bursty(b)?;
            bursty(spec.rate_per_s, spec.duration_s, b, &mut rng)
        }
    };
    let schedule = Schedule {
        source: format!(
            "{} {}/s for {} s ({})",
            spec.process.describe(),
            spec.rate_per_s,
            spec.duration_s,
            spec.function.label
        ),
        seed: spec.seed,
        functions: vec![spec.function.clone()],
        arrivals: times
            .into_iter()
            .map(|at_ns| Arrival::new(at_ns, 0))
            .collect(),
        extras: Vec::new(),
    };
    Ok(schedule)
}

/// A schedule entry for `function` with parameters `params`, labelled by the
/// function name.
pub fn function(name: &str, params: Value) -> ScheduledFunction {
    ScheduledFunction {
        label: name.to_string(),
        function: name.to_string(),
        params,
        service_us: None,
        deadline_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(process: Process, seed: u64) -> ProcessSpec {
        ProcessSpec {
            function: function("spin", json!({"ms": 1})),
            process,
            rate_per_s: 500.0,
            duration_s: 200.0,
            seed,
        }
    }

    fn mean_rate(s: &Schedule, duration_s: f64) -> f64 {
        s.arrivals.len() as f64 / duration_s
    }

    #[test]
    fn constant_rate_is_exact() {
        let s = process_schedule(&spec(Process::Constant, 1)).unwrap();
        assert_eq!(s.arrivals.len(), 100_000);
        assert_eq!(s.arrivals[1].at_ns - s.arrivals[0].at_ns, 2_000_000);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn poisson_mean_rate_and_exponential_gaps() {
        let s = process_schedule(&spec(Process::Poisson, 7)).unwrap();
        let r = mean_rate(&s, 200.0);
        // 100 000 expected arrivals: sd ≈ 316, i.e. 0.3 %; allow 1.5 %.
        assert!((r - 500.0).abs() < 7.5, "rate {r}");
        // Exponential gaps: coefficient of variation ≈ 1.
        let gaps: Vec<f64> = s
            .arrivals
            .windows(2)
            .map(|w| (w[1].at_ns - w[0].at_ns) as f64)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.03, "cv {cv}");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bursty_mean_rate_and_burstiness() {
        let b = BurstySpec::default();
        let s = process_schedule(&spec(Process::Bursty(b), 3)).unwrap();
        let r = mean_rate(&s, 200.0);
        // ~200 cycles of random length: allow 10 %.
        assert!((r - 500.0).abs() < 50.0, "rate {r}");
        // Counts per 100 ms window are overdispersed (variance ≫ mean).
        let mut counts = vec![0f64; 2000];
        for a in &s.arrivals {
            counts[(a.at_ns / 100_000_000) as usize] += 1.0;
        }
        let m = counts.iter().sum::<f64>() / counts.len() as f64;
        let v = counts.iter().map(|c| (c - m).powi(2)).sum::<f64>() / counts.len() as f64;
        assert!(v > 5.0 * m, "index of dispersion {} should be ≫ 1", v / m);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn on_off_is_silent_off() {
        let b = BurstySpec {
            ratio: f64::INFINITY,
            ..BurstySpec::default()
        };
        let s = process_schedule(&spec(Process::Bursty(b), 5)).unwrap();
        let r = mean_rate(&s, 200.0);
        assert!((r - 500.0).abs() < 60.0, "rate {r}");
        let empty = {
            let mut seen = vec![false; 2000];
            for a in &s.arrivals {
                seen[(a.at_ns / 100_000_000) as usize] = true;
            }
            seen.iter().filter(|x| !**x).count()
        };
        assert!(empty > 500, "off periods leave windows empty ({empty})");
    }

    #[test]
    fn same_seed_same_schedule_bit_for_bit() {
        for p in [
            Process::Poisson,
            Process::Bursty(BurstySpec::default()),
            Process::Constant,
        ] {
            let a = serde_json::to_vec(&process_schedule(&spec(p, 42)).unwrap()).unwrap();
            let b = serde_json::to_vec(&process_schedule(&spec(p, 42)).unwrap()).unwrap();
            assert_eq!(a, b);
        }
        let a = process_schedule(&spec(Process::Poisson, 1)).unwrap();
        let b = process_schedule(&spec(Process::Poisson, 2)).unwrap();
        assert_ne!(a.arrivals, b.arrivals);
    }

    #[test]
    fn bad_options_are_named() {
        let mut s = spec(Process::Poisson, 1);
        s.rate_per_s = 0.0;
        assert!(process_schedule(&s)
            .unwrap_err()
            .to_string()
            .contains("--rate"));
        let s = spec(
            Process::Bursty(BurstySpec {
                high_share: 1.5,
                ..BurstySpec::default()
            }),
            1,
        );
        assert!(process_schedule(&s)
            .unwrap_err()
            .to_string()
            .contains("--burst-share"));
    }
}
