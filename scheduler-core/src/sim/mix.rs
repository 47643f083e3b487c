//! A small Poisson mix generator: arrivals at rate λ (exponential
//! inter-arrival times), each one a function drawn by weight. It is the
//! M in the M/G/c models the simulator is validated against, and the
//! built-in workload of `slokit simulate --mix`. The output is an ordinary
//! [`Schedule`], so the same arrivals can be replayed on real hosts.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slokit_functions::{Arrival, Schedule, ScheduledFunction};

use super::{ServiceModel, SimError};

/// One function of a mix.
#[derive(Debug, Clone, PartialEq)]
pub struct MixEntry {
    /// Label in the schedule; also the host function it names.
    pub label: String,
    /// Relative share of arrivals (normalised over the mix).
    pub weight: f64,
    /// Deadline in µs, when the function has an SLO.
    pub deadline_us: Option<f64>,
}

/// When the generator stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Horizon {
    /// Arrivals up to this many seconds.
    Seconds(f64),
    /// Exactly this many arrivals.
    Arrivals(usize),
}

/// A Poisson arrival process over a weighted set of functions.
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonMix {
    pub entries: Vec<MixEntry>,
    /// Total arrival rate λ, per second.
    pub rate_per_s: f64,
    pub horizon: Horizon,
    /// Seed of the arrival stream (ChaCha8, stream 0).
    pub seed: u64,
}

impl PoissonMix {
    /// Parses `auth:0.9,video:0.1` into entries without deadlines.
    pub fn parse_weights(text: &str) -> Result<Vec<MixEntry>, SimError> {
        let bad = |reason: String| SimError::Spec {
            what: "mix",
            input: text.to_string(),
            reason,
        };
        let mut out: Vec<MixEntry> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (label, w) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("`{part}` is not LABEL:WEIGHT (e.g. auth:0.9)")))?;
            let weight: f64 = w
                .trim()
                .parse()
                .map_err(|_| bad(format!("weight `{w}` of `{label}` is not a number")))?;
            if !(weight.is_finite() && weight > 0.0) {
                return Err(bad(format!(
                    "weight of `{label}` must be positive, got {weight}"
                )));
            }
            if out.iter().any(|e| e.label == label) {
                return Err(bad(format!("`{label}` appears twice")));
            }
            out.push(MixEntry {
                label: label.trim().to_string(),
                weight,
                deadline_us: None,
            });
        }
        if out.is_empty() {
            return Err(bad(
                "name at least one function, e.g. auth:0.9,video:0.1".into()
            ));
        }
        Ok(out)
    }

    /// The arrival rate (per second) that loads `cpus` CPUs to utilisation
    /// `rho`: λ = ρ·c / E[S], with E[S] the weighted mean service time of
    /// the mix under `model`.
    pub fn rate_for_load(
        entries: &[MixEntry],
        model: &ServiceModel,
        cpus: u32,
        rho: f64,
    ) -> Result<f64, SimError> {
        if !(rho.is_finite() && rho > 0.0) {
            return Err(SimError::Spec {
                what: "load",
                input: rho.to_string(),
                reason: "ρ must be a positive number (e.g. 0.8)".into(),
            });
        }
        let total: f64 = entries.iter().map(|e| e.weight).sum();
        let mut mean_us = 0.0;
        for e in entries {
            let f = ScheduledFunction {
                label: e.label.clone(),
                function: e.label.clone(),
                params: serde_json::Value::Null,
                service_us: None,
                deadline_us: None,
            };
            let m = model.mean_us(&f).ok_or_else(|| SimError::NoServiceTime {
                label: e.label.clone(),
            })?;
            mean_us += e.weight / total * m;
        }
        if mean_us <= 0.0 {
            return Err(SimError::Spec {
                what: "load",
                input: rho.to_string(),
                reason: "the mix has zero mean service time; give a rate instead".into(),
            });
        }
        Ok(rho * cpus as f64 / (mean_us / 1e6))
    }

    /// Generates the schedule (deterministic for the seed).
    pub fn schedule(&self) -> Result<Schedule, SimError> {
        let bad = |reason: String| SimError::Spec {
            what: "mix",
            input: format!(
                "{:?}",
                self.entries.iter().map(|e| &e.label).collect::<Vec<_>>()
            ),
            reason,
        };
        if self.entries.is_empty() {
            return Err(bad("the mix names no function".into()));
        }
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return Err(bad(format!(
                "the rate must be positive, got {}",
                self.rate_per_s
            )));
        }
        let total: f64 = self.entries.iter().map(|e| e.weight).sum();
        let mut cumulative = Vec::with_capacity(self.entries.len());
        let mut acc = 0.0;
        for e in &self.entries {
            acc += e.weight / total;
            cumulative.push(acc);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mean_iat_ns = 1e9 / self.rate_per_s;
        let (limit_ns, limit_n) = match self.horizon {
            Horizon::Seconds(s) => (s * 1e9, usize::MAX),
            Horizon::Arrivals(n) => (f64::INFINITY, n),
        };
        let expected = match self.horizon {
            Horizon::Seconds(s) => (s * self.rate_per_s * 1.01) as usize + 16,
            Horizon::Arrivals(n) => n,
        };
        let mut arrivals = Vec::with_capacity(expected.min(50_000_000));
        let mut t = 0.0f64;
        while arrivals.len() < limit_n {
            let e: f64 = rand_distr::Distribution::sample(&rand_distr::Exp1, &mut rng);
            t += e * mean_iat_ns;
            if t > limit_ns {
                break;
            }
            let u: f64 = rng.random();
            let function = cumulative
                .iter()
                .position(|&c| u < c)
                .unwrap_or(self.entries.len() - 1) as u32;
            arrivals.push(Arrival::new(t.round() as u64, function));
        }
        let mix: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}:{}", e.label, e.weight))
            .collect();
        Ok(Schedule {
            source: format!("poisson {:.1}/s mix {}", self.rate_per_s, mix.join(",")),
            seed: self.seed,
            functions: self
                .entries
                .iter()
                .map(|e| ScheduledFunction {
                    label: e.label.clone(),
                    function: e.label.clone(),
                    params: serde_json::Value::Null,
                    service_us: None,
                    deadline_us: e.deadline_us,
                })
                .collect(),
            arrivals,
            extras: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(horizon: Horizon, seed: u64) -> PoissonMix {
        PoissonMix {
            entries: PoissonMix::parse_weights("a:3,b:1").unwrap(),
            rate_per_s: 1000.0,
            horizon,
            seed,
        }
    }

    #[test]
    fn rate_and_weights_are_honoured() {
        let s = mix(Horizon::Seconds(100.0), 3).schedule().unwrap();
        s.validate().unwrap();
        let n = s.arrivals.len() as f64;
        assert!((n / 100_000.0 - 1.0).abs() < 0.01, "{n} arrivals");
        let a = s.arrivals.iter().filter(|x| x.function == 0).count() as f64;
        assert!((a / n - 0.75).abs() < 0.005, "share of a {}", a / n);
        assert!(s.duration_s() <= 100.0);
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = mix(Horizon::Arrivals(1000), 9).schedule().unwrap();
        assert_eq!(a.arrivals.len(), 1000);
        assert_eq!(a, mix(Horizon::Arrivals(1000), 9).schedule().unwrap());
        assert_ne!(a, mix(Horizon::Arrivals(1000), 10).schedule().unwrap());
    }

    #[test]
    fn rate_for_load_uses_the_weighted_mean() {
        let entries = PoissonMix::parse_weights("auth:0.9,video:0.1").unwrap();
        let model = ServiceModel::new()
            .with("auth", "det:1ms".parse().unwrap())
            .with("video", "det:11ms".parse().unwrap());
        // E[S] = 0.9·1 + 0.1·11 = 2 ms; ρ = 0.8 on 4 CPUs → λ = 1600/s.
        let r = PoissonMix::rate_for_load(&entries, &model, 4, 0.8).unwrap();
        assert!((r - 1600.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn bad_weights_are_named() {
        for (text, needle) in [
            ("auth", "LABEL:WEIGHT"),
            ("a:x", "`x`"),
            ("a:1,a:2", "twice"),
            ("a:-1", "positive"),
        ] {
            let e = PoissonMix::parse_weights(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
