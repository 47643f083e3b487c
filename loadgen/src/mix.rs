//! A weighted mix of functions under Poisson arrivals, at an absolute total
//! rate or at a target CPU utilisation ρ of the function CPUs. For ρ the
//! total rate follows from the utilisation law: with c CPUs and a mean
//! service time E[s] = Σ wᵢ·sᵢ (weights normalised), λ = ρ·c / E[s]. This is
//! how `slokit compare` loads a node "to 80 %" from profiled service times.
//! The arrivals come from the shared generator, [`slokit_model::mix`].

use std::collections::HashMap;

use serde_json::Value;
pub use slokit_model::mix::MixEntry;
use slokit_model::mix::{parse_weights, poisson_schedule, Horizon, WeightSyntax};
use slokit_model::Schedule;

use crate::LoadgenError;

/// How hard to drive the mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Target utilisation `rho` of `cpus` function CPUs.
    Rho { rho: f64, cpus: f64 },
    /// Total arrivals per second over all functions.
    Rate(f64),
}

/// A weighted mix and its load.
#[derive(Debug, Clone, PartialEq)]
pub struct MixSpec {
    pub functions: Vec<MixEntry>,
    pub load: Load,
    pub duration_s: f64,
    pub seed: u64,
}

impl MixSpec {
    /// The total arrival rate (per second) this spec asks for.
    pub fn total_rate(&self) -> Result<f64, LoadgenError> {
        if self.functions.is_empty() {
            return Err(LoadgenError::invalid("--mix", "the mix names no function"));
        }
        let total_weight: f64 = self.functions.iter().map(|f| f.weight).sum();
        for f in &self.functions {
            if !(f.weight.is_finite() && f.weight >= 0.0) {
                return Err(LoadgenError::invalid(
                    "--mix",
                    format!("weight of `{}` must be ≥ 0, got {}", f.label, f.weight),
                ));
            }
        }
        if total_weight <= 0.0 {
            return Err(LoadgenError::invalid("--mix", "weights sum to zero"));
        }
        match self.load {
            Load::Rate(r) if r.is_finite() && r > 0.0 => Ok(r),
            Load::Rate(r) => Err(LoadgenError::invalid(
                "--rate",
                format!("must be positive, got {r}"),
            )),
            Load::Rho { rho, cpus } => {
                if !(rho.is_finite() && rho > 0.0) {
                    return Err(LoadgenError::invalid(
                        "--rho",
                        format!("must be positive, got {rho}"),
                    ));
                }
                if !(cpus.is_finite() && cpus > 0.0) {
                    return Err(LoadgenError::invalid(
                        "--cpus",
                        format!("must be positive, got {cpus}"),
                    ));
                }
                let mut mean_service_s = 0.0;
                for f in &self.functions {
                    let s = f.service_us.filter(|s| *s > 0.0).ok_or_else(|| {
                        LoadgenError::invalid(
                            "--service",
                            format!(
                                "no service time for `{}`: a target utilisation needs one per function (e.g. --service {}=2ms)",
                                f.label, f.label
                            ),
                        )
                    })?;
                    mean_service_s += f.weight / total_weight * s * 1e-6;
                }
                Ok(rho * cpus / mean_service_s)
            }
        }
    }
}

/// The Poisson schedule of a weighted mix: arrivals at the total rate of
/// `spec.load`, each function drawn by weight.
pub fn mix_schedule(spec: &MixSpec) -> Result<Schedule, LoadgenError> {
    let rate = spec.total_rate()?;
    if !(spec.duration_s.is_finite() && spec.duration_s > 0.0) {
        return Err(LoadgenError::invalid(
            "--duration",
            format!("must be positive, got {} s", spec.duration_s),
        ));
    }
    if rate * spec.duration_s > 1e9 {
        return Err(LoadgenError::invalid(
            "--duration",
            format!(
                "{rate:.0}/s over {} s is more than 1e9 arrivals",
                spec.duration_s
            ),
        ));
    }
    let mut schedule = poisson_schedule(
        &spec.functions,
        rate,
        Horizon::Seconds(spec.duration_s),
        spec.seed,
    )
    .map_err(|reason| LoadgenError::invalid("--mix", reason))?;
    let load = match spec.load {
        Load::Rho { rho, cpus } => format!("ρ {rho} on {cpus} CPUs = {rate:.1}/s"),
        Load::Rate(r) => format!("{r}/s"),
    };
    let mix = spec
        .functions
        .iter()
        .map(|f| format!("{}:{}", f.label, f.weight))
        .collect::<Vec<_>>()
        .join(",");
    schedule.source = format!("poisson mix {mix} at {load} for {} s", spec.duration_s);
    schedule.validate().map_err(LoadgenError::Schedule)?;
    Ok(schedule)
}

/// Parses `--mix auth:0.9,video:0.1` into entries (label = function name,
/// empty parameters), taking service times and deadlines from the maps.
pub fn parse_mix(
    text: &str,
    service_us: &HashMap<String, f64>,
    deadline_us: &HashMap<String, f64>,
) -> Result<Vec<MixEntry>, LoadgenError> {
    let syntax = WeightSyntax {
        bare_label_weight: Some(1.0),
        zero_weight: true,
    };
    let weights = parse_weights(text, syntax).map_err(|e| LoadgenError::invalid("--mix", e))?;
    Ok(weights
        .into_iter()
        .map(|(name, weight)| MixEntry {
            service_us: service_us.get(&name).copied(),
            deadline_us: deadline_us.get(&name).copied(),
            ..MixEntry::named(name, weight, Value::Object(Default::default()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<MixEntry> {
        let service: HashMap<String, f64> =
            [("auth".to_string(), 50.0), ("video".to_string(), 120_000.0)].into();
        parse_mix("auth:0.9,video:0.1", &service, &HashMap::new()).unwrap()
    }

    #[test]
    fn rho_rate_follows_the_utilisation_law() {
        let spec = MixSpec {
            functions: entries(),
            load: Load::Rho {
                rho: 0.8,
                cpus: 1.0,
            },
            duration_s: 10.0,
            seed: 1,
        };
        // E[s] = 0.9·50 µs + 0.1·120 ms = 12.045 ms → λ = 0.8 / 0.012045 s.
        let expected = 0.8 / (0.9 * 50e-6 + 0.1 * 0.12);
        assert!((spec.total_rate().unwrap() - expected).abs() < 1e-9);
        let two = MixSpec {
            load: Load::Rho {
                rho: 0.8,
                cpus: 2.0,
            },
            ..spec.clone()
        };
        assert!((two.total_rate().unwrap() - 2.0 * expected).abs() < 1e-9);
    }

    #[test]
    fn rho_without_service_time_names_the_function() {
        let mut f = entries();
        f[1].service_us = None;
        let spec = MixSpec {
            functions: f,
            load: Load::Rho {
                rho: 0.5,
                cpus: 1.0,
            },
            duration_s: 1.0,
            seed: 1,
        };
        let e = spec.total_rate().unwrap_err().to_string();
        assert!(e.contains("`video`") && e.contains("--service"), "{e}");
    }

    #[test]
    fn mix_draws_functions_by_weight_at_the_total_rate() {
        let spec = MixSpec {
            functions: entries(),
            load: Load::Rate(1000.0),
            duration_s: 100.0,
            seed: 9,
        };
        let s = mix_schedule(&spec).unwrap();
        let n = s.arrivals.len() as f64;
        assert!((n - 100_000.0).abs() < 1500.0, "{n}");
        let video = s.arrivals.iter().filter(|a| a.function == 1).count() as f64;
        assert!((video / n - 0.1).abs() < 0.005, "{}", video / n);
        assert_eq!(s.functions[1].service_us, Some(120_000.0));
        assert_eq!(mix_schedule(&spec).unwrap(), s, "seeded");
    }

    #[test]
    fn bad_mix_is_explained() {
        let e = parse_mix("auth:x", &HashMap::new(), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight `x`"), "{e}");
        let e = parse_mix("a:1,a:2", &HashMap::new(), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
