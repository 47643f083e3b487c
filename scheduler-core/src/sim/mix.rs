//! A small Poisson mix generator: arrivals at rate λ (exponential
//! inter-arrival times), each one a function drawn by weight. It is the
//! M in the M/G/c models the simulator is validated against, and the
//! built-in workload of `slokit simulate --mix`. The output is an ordinary
//! [`Schedule`], so the same arrivals can be replayed on real hosts. The
//! generator itself is [`slokit_model::mix`], shared with the load
//! generator; choosing λ for a utilisation under a [`ServiceModel`] is the
//! simulator's.

use slokit_model::mix::{self, WeightSyntax};
pub use slokit_model::mix::{Horizon, MixEntry};
use slokit_model::{Schedule, ScheduledFunction};

use super::{ServiceModel, SimError};

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
        let syntax = WeightSyntax {
            bare_label_weight: None,
            zero_weight: false,
        };
        let weights = mix::parse_weights(text, syntax).map_err(|reason| SimError::Spec {
            what: "mix",
            input: text.to_string(),
            reason,
        })?;
        Ok(weights
            .into_iter()
            .map(|(label, weight)| MixEntry::named(label, weight, serde_json::Value::Null))
            .collect())
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
        mix::poisson_schedule(&self.entries, self.rate_per_s, self.horizon, self.seed).map_err(
            |reason| SimError::Spec {
                what: "mix",
                input: format!(
                    "{:?}",
                    self.entries.iter().map(|e| &e.label).collect::<Vec<_>>()
                ),
                reason,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator itself is tested in `slokit_model::mix`; these test
    /// what the wrapper adds: the seed and horizon reach it, λ for a load,
    /// and errors as `SimError`s.
    #[test]
    fn the_wrapper_passes_seed_and_horizon_through() {
        let mix = |seed| PoissonMix {
            entries: PoissonMix::parse_weights("a:3,b:1").unwrap(),
            rate_per_s: 1000.0,
            horizon: Horizon::Arrivals(1000),
            seed,
        };
        let a = mix(9).schedule().unwrap();
        assert_eq!(a.arrivals.len(), 1000);
        assert_eq!(a, mix(9).schedule().unwrap());
        assert_ne!(a, mix(10).schedule().unwrap());
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
    fn bad_weights_are_sim_errors_that_name_the_input() {
        let e = PoissonMix::parse_weights("a:1,a:2").unwrap_err();
        assert!(matches!(e, SimError::Spec { what: "mix", .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("a:1,a:2") && text.contains("twice"), "{text}");
    }
}
