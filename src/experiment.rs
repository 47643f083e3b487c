//! Experiment files: what `slokit compare` runs — scenarios (a mix at ρ or a
//! trace replay), policies, repetitions, placement and the two-level and
//! las constants. The default experiment is `profiles/default-experiment.toml`,
//! embedded in the binary so `slokit compare` works from any directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_sched::{LasParams, TwoLevelParams};

/// The text of `profiles/default-experiment.toml`.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../profiles/default-experiment.toml");

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub seed: u64,
    pub repetitions: u32,
    pub policies: Vec<Policy>,
    pub cooldown_s: f64,
    pub profiles_dir: PathBuf,
    pub out_dir: PathBuf,
    pub trace_deadline_slack: f64,
    pub placement: Placement,
    #[serde(default)]
    pub two_level: TwoLevelParams,
    #[serde(default)]
    pub las: LasParams,
    pub scenarios: Vec<Scenario>,
}

pub use slokit_sched::Policy;

/// Which CPUs do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// CPUs for function workers; empty = every CPU but CPU 0.
    #[serde(default)]
    pub function_cpus: Vec<usize>,
    pub workers_per_host: usize,
}

impl Placement {
    /// (function CPUs, loadgen/agent CPUs) on a machine with `ncpus` CPUs.
    pub fn resolve(&self, ncpus: usize) -> Result<(Vec<usize>, Vec<usize>), String> {
        if ncpus < 2 {
            return Err("slokit compare needs at least 2 CPUs: one for the functions, one for the load generator and agent".into());
        }
        let functions = if self.function_cpus.is_empty() {
            (1..ncpus).collect::<Vec<_>>()
        } else {
            self.function_cpus.clone()
        };
        if let Some(bad) = functions.iter().find(|c| **c >= ncpus) {
            return Err(format!(
                "placement.function_cpus names CPU {bad}, but this machine has CPUs 0..{}",
                ncpus - 1
            ));
        }
        let others: Vec<usize> = (0..ncpus).filter(|c| !functions.contains(c)).collect();
        if others.is_empty() {
            return Err("placement.function_cpus takes every CPU; leave at least one for the load generator and agent".into());
        }
        Ok((functions, others))
    }
}

/// One scenario: a workload replayed for `duration_s` under every policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub duration_s: f64,
    #[serde(flatten)]
    pub workload: Workload,
}

/// Where a scenario's arrivals come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Workload {
    /// A weighted Poisson mix of functions at utilisation `rho` of the
    /// function CPUs (service times from the profiles).
    Mix {
        rho: f64,
        functions: Vec<MixFunction>,
    },
    /// The Azure Functions 2019 format, through `spin`, rate scaled to `rho`.
    #[serde(rename = "azure2019")]
    Azure2019 {
        trace_dir: PathBuf,
        minutes: String,
        rho: f64,
        #[serde(default)]
        max_duration_ms: Option<f64>,
    },
}

/// One function of a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixFunction {
    pub label: String,
    pub function: String,
    pub weight: f64,
    /// Parameters sent with every invocation (defaults when absent).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

/// A problem with an experiment file, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ExperimentError {
    pub origin: String,
    pub message: String,
}

impl Experiment {
    /// The embedded default experiment.
    pub fn default_experiment() -> Self {
        Self::parse(DEFAULT_EXPERIMENT, "embedded default experiment")
            .expect("the default experiment is valid")
    }

    /// Reads and validates an experiment file.
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates experiment TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ExperimentError> {
        let err = |message: String| ExperimentError {
            origin: origin.to_string(),
            message,
        };
        let exp: Experiment = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        exp.validate().map_err(err)?;
        Ok(exp)
    }

    /// Checks every range and cross-field rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.repetitions == 0 {
            return Err("repetitions must be at least 1".into());
        }
        if self.policies.is_empty() {
            return Err("policies must name at least one of cfs, fifo, two-level, las".into());
        }
        if !(self.cooldown_s.is_finite() && self.cooldown_s >= 0.0) {
            return Err(format!("cooldown_s must be ≥ 0, got {}", self.cooldown_s));
        }
        if !(self.trace_deadline_slack.is_finite() && self.trace_deadline_slack >= 1.0) {
            return Err(format!(
                "trace_deadline_slack must be ≥ 1, got {}",
                self.trace_deadline_slack
            ));
        }
        if self.placement.workers_per_host == 0 {
            return Err("placement.workers_per_host must be at least 1".into());
        }
        self.two_level
            .validate()
            .map_err(|e| format!("two_level: {e}"))?;
        self.las.validate().map_err(|e| format!("las: {e}"))?;
        if self.scenarios.is_empty() {
            return Err("scenarios: at least one scenario is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.scenarios {
            let at = format!("scenario `{}`", s.name);
            if !names.insert(&s.name) {
                return Err(format!("{at} appears twice"));
            }
            if !(s.duration_s.is_finite() && s.duration_s > 0.0) {
                return Err(format!(
                    "{at}: duration_s must be > 0, got {}",
                    s.duration_s
                ));
            }
            let rho = match &s.workload {
                Workload::Mix { rho, functions } => {
                    if functions.is_empty() {
                        return Err(format!("{at}: functions must not be empty"));
                    }
                    let mut labels = std::collections::HashSet::new();
                    for f in functions {
                        if !labels.insert(&f.label) {
                            return Err(format!(
                                "{at}: function label `{}` appears twice",
                                f.label
                            ));
                        }
                        if !(f.weight.is_finite() && f.weight > 0.0) {
                            return Err(format!(
                                "{at}: function `{}` weight must be > 0, got {}",
                                f.label, f.weight
                            ));
                        }
                    }
                    *rho
                }
                Workload::Azure2019 {
                    rho,
                    max_duration_ms,
                    ..
                } => {
                    if let Some(m) = max_duration_ms {
                        if !(m.is_finite() && *m > 0.0) {
                            return Err(format!("{at}: max_duration_ms must be > 0, got {m}"));
                        }
                    }
                    *rho
                }
            };
            if !(rho.is_finite() && rho > 0.0 && rho < 1.5) {
                return Err(format!("{at}: rho must be in (0, 1.5), got {rho}"));
            }
        }
        Ok(())
    }

    /// Keeps only the named scenarios, or says which name is unknown.
    pub fn select_scenarios(&mut self, names: &[String]) -> Result<(), String> {
        if names.is_empty() {
            return Ok(());
        }
        for n in names {
            if !self.scenarios.iter().any(|s| &s.name == n) {
                let known: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "unknown scenario `{n}` (known: {})",
                    known.join(", ")
                ));
            }
        }
        self.scenarios.retain(|s| names.contains(&s.name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_experiment_parses_and_has_both_scenarios() {
        let e = Experiment::default_experiment();
        assert_eq!(
            e.policies,
            vec![Policy::Cfs, Policy::Fifo, Policy::TwoLevel, Policy::Las]
        );
        let names: Vec<&str> = e.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["colocated", "azure"]);
        assert!(matches!(e.scenarios[0].workload, Workload::Mix { rho, .. } if rho == 0.8));
        assert!(matches!(
            e.scenarios[1].workload,
            Workload::Azure2019 { .. }
        ));
    }

    #[test]
    fn default_experiment_round_trips_through_toml() {
        let e = Experiment::default_experiment();
        let text = toml::to_string(&e).unwrap();
        assert_eq!(Experiment::parse(&text, "round trip").unwrap(), e);
    }

    #[test]
    fn errors_name_the_origin_and_the_field() {
        let bad = DEFAULT_EXPERIMENT.replace("repetitions = 3", "repetitions = \"three\"");
        let e = Experiment::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:") && e.contains("repetitions"), "{e}");
        let bad = DEFAULT_EXPERIMENT.replace(
            "rho = 0.8\n\n[[scenarios.functions]]",
            "rho = 7.0\n\n[[scenarios.functions]]",
        );
        let e = Experiment::parse(&bad, "y.toml").unwrap_err().to_string();
        assert!(e.contains("colocated") && e.contains("rho"), "{e}");
        let bad = DEFAULT_EXPERIMENT.replace("\"las\"]", "\"round-robin\"]");
        assert!(Experiment::parse(&bad, "z.toml")
            .unwrap_err()
            .to_string()
            .contains("round-robin"));
    }

    #[test]
    fn placement_defaults_to_all_but_cpu0() {
        let p = Placement {
            function_cpus: vec![],
            workers_per_host: 4,
        };
        assert_eq!(p.resolve(2).unwrap(), (vec![1], vec![0]));
        assert_eq!(p.resolve(4).unwrap(), (vec![1, 2, 3], vec![0]));
        assert!(p.resolve(1).is_err());
        let all = Placement {
            function_cpus: vec![0, 1],
            workers_per_host: 4,
        };
        assert!(all.resolve(2).unwrap_err().contains("leave at least one"));
    }

    #[test]
    fn select_scenarios_names_the_unknown_one() {
        let mut e = Experiment::default_experiment();
        assert!(e
            .select_scenarios(&["nope".into()])
            .unwrap_err()
            .contains("colocated"));
        e.select_scenarios(&["azure".into()]).unwrap();
        assert_eq!(e.scenarios.len(), 1);
    }
}
