//! What a comparison hands to the report: the run records of every scenario
//! × policy × repetition, the agent's timelines, and the simulator's bound
//! records for the same schedule. Plain serde data, so `slokit compare` can
//! also save it and re-render a report later.

use serde::{Deserialize, Serialize};
use slokit_model::record::{RunKind, RunRecord, TimelinePoint};
use slokit_model::Environment;

use crate::ReportError;

/// Everything one `slokit compare` produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub title: String,
    /// The machine the measured runs ran on.
    pub environment: Environment,
    /// Seed of the arrival schedules.
    pub seed: u64,
    /// When the comparison was made; the only time-dependent input.
    pub created_unix_ms: u64,
    /// Echo of the experiment configuration, shown verbatim in the report.
    #[serde(default)]
    pub settings: serde_json::Value,
    pub scenarios: Vec<ScenarioRuns>,
}

/// One scenario (a set of functions and an arrival schedule), run under
/// every policy, plus its simulated bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRuns {
    /// Short name used in tables and gates, e.g. `colocated`.
    pub name: String,
    /// One sentence for readers, e.g. "auth + aes + video at ρ = 0.8".
    #[serde(default)]
    pub description: String,
    /// Measured runs (kind `measured`).
    pub runs: Vec<PolicyRun>,
    /// Simulated runs of the same schedule (kind `simulated`): `srpt` (the
    /// lower bound), `ps` (the model of cfs), `fifo`, `two-level`, `las`.
    /// Several records of one policy are treated as repetitions.
    #[serde(default)]
    pub bounds: Vec<RunRecord>,
    /// Per function: the service time the model was fed against the
    /// on-CPU time its requests used on the machine during the runs (when
    /// an agent measured it).
    #[serde(default)]
    pub service_check: Vec<ServiceCheck>,
}

/// A function's service time as the simulator was fed it, against the
/// on-CPU time its requests used during the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceCheck {
    pub label: String,
    /// Mean service time the model drew from (the profile's), ms.
    pub model_mean_ms: f64,
    /// Mean on-CPU time per request during the runs, ms.
    pub measured_mean_ms: f64,
    /// Who measured it, e.g. "las agent, eBPF CPU time".
    pub measured_by: String,
}

/// One measured run: the schedule replayed once under one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// `cfs`, `fifo`, `two-level`, `las`, ...
    pub policy: String,
    /// 0-based repetition index.
    pub repetition: u32,
    pub record: RunRecord,
    /// The scheduling agent's S / queue-length timeline (may be empty).
    #[serde(default)]
    pub timeline: Vec<TimelinePoint>,
}

impl Comparison {
    /// Checks the contract the aggregation relies on, naming the offending
    /// run: scenario names unique and non-empty, every scenario has measured
    /// runs, run policies agree with their records, no (policy, repetition)
    /// twice, bound records are simulated and name their policy.
    pub fn validate(&self) -> Result<(), ReportError> {
        let invalid = |scenario: &str, message: String| ReportError::InvalidInput {
            scenario: scenario.to_string(),
            message,
        };
        for (i, s) in self.scenarios.iter().enumerate() {
            if s.name.is_empty() || s.name.contains(['/', '.', '@']) {
                return Err(invalid(
                    &s.name,
                    "scenario names must be non-empty and free of `/`, `.` and `@` (gates use them as separators)".into(),
                ));
            }
            if self.scenarios[..i].iter().any(|o| o.name == s.name) {
                return Err(invalid(&s.name, "two scenarios share this name".into()));
            }
            if s.runs.is_empty() {
                return Err(invalid(
                    &s.name,
                    "no measured runs; run at least one policy".into(),
                ));
            }
            for (j, r) in s.runs.iter().enumerate() {
                if r.record.kind != RunKind::Measured {
                    return Err(invalid(
                        &s.name,
                        format!(
                            "run `{}` #{} is a simulated record; put simulated records into `bounds`",
                            r.policy, r.repetition
                        ),
                    ));
                }
                if let Some(p) = r.record.policy.as_deref().filter(|p| *p != r.policy) {
                    return Err(invalid(
                        &s.name,
                        format!(
                            "run `{}` #{} carries a record of policy `{p}`",
                            r.policy, r.repetition
                        ),
                    ));
                }
                if s.runs[..j]
                    .iter()
                    .any(|o| o.policy == r.policy && o.repetition == r.repetition)
                {
                    return Err(invalid(
                        &s.name,
                        format!("run `{}` #{} appears twice", r.policy, r.repetition),
                    ));
                }
            }
            for b in &s.bounds {
                if b.kind != RunKind::Simulated || b.policy.is_none() {
                    return Err(invalid(
                        &s.name,
                        "every bound must be a simulated record naming its policy".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
