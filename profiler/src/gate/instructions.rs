//! The gate on instruction counts (`slokit gate --metric instructions`):
//! count the current build's invocations and compare with the count in the
//! baseline profile. No time is measured, so the machine's load and drift
//! cannot move the result; a Valgrind count is exact, so the default
//! threshold is 1 % (`GateSettings::threshold` as the CLI resolves it).
//!
//! Rule: change = current / baseline − 1 of the per-invocation counts. It
//! is **significant** when the ranges of counts seen on the two sides do not
//! overlap (for exact counts: whenever they differ), and a **regression**
//! when it is significant and above the threshold. A suspected regression
//! is counted once more and reported only if the re-count agrees.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_functions::Catalogue;

use super::{FunctionResult, GateSettings, Verdict};
use crate::error::ProfileError;
use crate::instructions::{CountScope, CountSource, InstructionSection};
use crate::observer::Observer;
use crate::profile::Profile;
use crate::{count_instructions, Settings};

/// The counts behind an instruction-metric result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionChange {
    /// Instructions per invocation in the baseline profile.
    pub baseline: u64,
    /// Instructions per invocation now (the median of the counted ones).
    pub current: u64,
    /// Smallest and largest current count.
    pub current_min: u64,
    pub current_max: u64,
    /// How the current count was obtained.
    pub source: CountSource,
    pub tool: String,
    pub scope: CountScope,
}

/// The decision on two counts.
fn decide(
    base: &InstructionSection,
    cur: &InstructionSection,
    gs: &GateSettings,
) -> (f64, [f64; 2], bool, Verdict) {
    let b = base.per_invocation.max(1) as f64;
    let change = cur.per_invocation as f64 / b - 1.0;
    let ci = [cur.min as f64 / b - 1.0, cur.max as f64 / b - 1.0];
    let significant = cur.min > base.max || cur.max < base.min;
    let verdict = if significant && change > gs.threshold {
        Verdict::Regression
    } else if significant && change < -gs.threshold {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    };
    (change, ci, significant, verdict)
}

/// Gates one function on its instruction count.
#[allow(clippy::too_many_arguments)]
pub fn gate_one(
    name: &str,
    path: &Path,
    base: &Profile,
    params: &Value,
    mut notes: Vec<String>,
    catalogue: &Catalogue,
    settings: &Settings,
    gs: &GateSettings,
    observer: &mut dyn Observer,
) -> Result<(FunctionResult, InstructionChange), ProfileError> {
    let Some(base_count) = &base.instructions else {
        return Err(ProfileError::Baseline(format!(
            "`{}` has no instruction count (profile version {}); re-run `slokit profile {name} --metric instructions --out-dir {}`",
            path.display(),
            base.version,
            path.parent().map_or(".".into(), |d| d.display().to_string())
        )));
    };
    let count = |observer: &mut dyn Observer| {
        count_instructions(name, &base.target, params, catalogue, settings, observer)
    };
    let mut current = count(observer)?;
    if current.source != base_count.source || current.scope != base_count.scope {
        notes.push(format!(
            "the baseline was counted {} {}, this count {} {}: counts from different sources are not comparable",
            base_count.source, base_count.scope, current.source, current.scope
        ));
    } else if current.tool != base_count.tool {
        notes.push(format!(
            "counted with {}, the baseline with {}",
            current.tool, base_count.tool
        ));
    }
    if !current.identical() {
        notes.push(format!(
            "the current count varied {}–{} over {} invocations",
            current.min, current.max, current.invocations
        ));
    }
    let (mut change, mut ci, mut significant, mut verdict) = decide(base_count, &current, gs);
    let mut remeasured = false;
    if verdict == Verdict::Regression && gs.confirm {
        remeasured = true;
        let first = change;
        current = count(observer)?;
        let second = decide(base_count, &current, gs);
        (change, ci, significant) = (second.0, second.1, second.2);
        if second.3 == Verdict::Regression {
            verdict = Verdict::Regression;
        } else {
            notes.push(format!(
                "first count was {:+.2} % more instructions; the re-count was {:+.2} %: not counted",
                first * 100.0,
                second.0 * 100.0
            ));
            verdict = Verdict::Unconfirmed;
        }
    }
    let counts = InstructionChange {
        baseline: base_count.per_invocation,
        current: current.per_invocation,
        current_min: current.min,
        current_max: current.max,
        source: current.source,
        tool: current.tool.clone(),
        scope: current.scope,
    };
    let result = FunctionResult {
        function: name.to_string(),
        baseline: path.to_path_buf(),
        baseline_median_us: base.summary.p50_us,
        current_median_us: 0.0,
        change,
        change_ci: ci,
        significant,
        baseline_deadline_us: base.deadline_us(),
        current_deadline_us: 0.0,
        verdict,
        remeasured,
        notes,
        paired: None,
    };
    Ok((result, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(counts: &[u64]) -> InstructionSection {
        InstructionSection::from_counts(
            counts,
            1,
            CountSource::Valgrind,
            "valgrind-3.19.0 callgrind".into(),
            CountScope::Invocation,
        )
        .unwrap()
    }

    fn gs(threshold: f64) -> GateSettings {
        GateSettings {
            threshold,
            ..GateSettings::default()
        }
    }

    #[test]
    fn exact_counts_decide_on_the_threshold() {
        let base = section(&[1_000_000; 3]);
        let same = decide(&base, &section(&[1_000_000; 3]), &gs(0.01));
        assert_eq!((same.0, same.2, same.3), (0.0, false, Verdict::Unchanged));
        let slower = decide(&base, &section(&[1_100_000; 3]), &gs(0.01));
        assert!((slower.0 - 0.10).abs() < 1e-12);
        assert_eq!((slower.2, slower.3), (true, Verdict::Regression));
        // Half a percent more: significant (exact counts differ) but under 1 %.
        let tiny = decide(&base, &section(&[1_005_000; 3]), &gs(0.01));
        assert_eq!((tiny.2, tiny.3), (true, Verdict::Unchanged));
        let faster = decide(&base, &section(&[900_000; 3]), &gs(0.01));
        assert_eq!(faster.3, Verdict::Improvement);
    }

    #[test]
    fn overlapping_noisy_counts_are_not_significant() {
        let base = section(&[1_000_000, 1_030_000, 1_015_000]);
        let cur = section(&[1_020_000, 1_050_000, 1_040_000]);
        let d = decide(&base, &cur, &gs(0.01));
        assert!(d.0 > 0.01);
        assert_eq!((d.2, d.3), (false, Verdict::Unchanged));
    }
}
