//! The regression gate: re-profile the current build the same way as the
//! committed baseline and decide, per function, whether it got slower.
//!
//! The test is a percentile-bootstrap confidence interval of the ratio of
//! medians, current / baseline ([`crate::stats::bootstrap_ratio_ci`]), in the
//! spirit of criterion's change analysis. A change counts only when it is
//! **significant** (the 95 % interval excludes 1) **and larger than the
//! noise threshold** (default 5 %): with thousands of runs any difference
//! is "significant", and on a shared machine a 1–3 % drift between two
//! sessions is the machine, not the code. A suspected regression is
//! re-measured once and reported only if the second measurement agrees.
//!
//! Why not Mann–Whitney U: it tests stochastic ordering, not "how much
//! slower", so it needs a separate effect size anyway, and its p-value is
//! miscalibrated on the tied, bucketed values that a histogram baseline
//! gives. The bootstrap ratio gives significance and effect size in one
//! unit-free number. Why the median and not p99: the median of a few
//! hundred runs is stable to well under 1 %, the p99 is not, so a gate on
//! the median can use a tight threshold without flapping; the deadline
//! change is reported beside it.
//!
//! The baseline side is drawn from the profile's HdrHistogram (3 significant
//! digits, ≤ 0.1 % quantisation); the current side uses the raw samples.
//!
//! With `--metric instructions` the gate compares instruction counts
//! instead of times ([`instructions`]): no timing runs, exact counts.
//!
//! With `--against OLD` the gate runs paired instead ([`against`],
//! [`paired`]): old and new interleaved on one CPU, decided on paired
//! ratios, so the machine's drift between sessions cancels.

pub mod against;
pub mod baseline;
pub mod export;
pub mod instructions;
pub mod paired;
pub mod worker;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_functions::Catalogue;

use crate::error::ProfileError;
use crate::observer::Observer;
use crate::profile::params_equal;
use crate::stats::{bootstrap_ratio_ci, Interval, Sample};
use crate::{profile_target, Settings};

/// Knobs of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSettings {
    /// Relative change below which nothing counts (0.05 = 5 %).
    pub threshold: f64,
    /// Confidence of the ratio interval.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Values per side fed to the bootstrap (evenly thinned above this).
    pub sample_cap: usize,
    pub seed: u64,
    /// Re-measure a suspected regression once before reporting it.
    pub confirm: bool,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            threshold: 0.05,
            confidence: 0.95,
            resamples: 1000,
            sample_cap: 10_000,
            seed: 0x6a7e,
            confirm: true,
        }
    }
}

impl GateSettings {
    /// Checks ranges; errors name the flag.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !(self.threshold >= 0.0 && self.threshold < 10.0) {
            return Err(ProfileError::Settings(format!(
                "--threshold must be a fraction ≥ 0 (0.05 = 5 %), got {}",
                self.threshold
            )));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(ProfileError::Settings(format!(
                "confidence must be in (0, 1), got {}",
                self.confidence
            )));
        }
        Ok(())
    }
}

/// What the gate concluded about one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No significant change beyond the threshold.
    Unchanged,
    /// Significantly slower by more than the threshold, confirmed by a re-measurement.
    Regression,
    /// Significantly faster by more than the threshold.
    Improvement,
    /// Slower in the first measurement, not in the re-measurement: not counted.
    Unconfirmed,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Unchanged => "unchanged",
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Unconfirmed => "unconfirmed",
        })
    }
}

/// The statistical decision on two samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Ratio of medians current / baseline, with its bootstrap CI.
    pub ratio: Interval,
    /// The interval excludes 1.
    pub significant: bool,
    pub verdict: Verdict,
}

/// Decides on two samples of execution times (same unit). Pure and
/// deterministic for a seed; see the module docs for the rule.
pub fn decide(
    baseline: &[f64],
    current: &[f64],
    gs: &GateSettings,
) -> Result<Decision, ProfileError> {
    gs.validate()?;
    let thin = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        crate::stats::thin_sorted(&v, gs.sample_cap)
    };
    let b = Sample::new(thin(baseline))?;
    let c = Sample::new(thin(current))?;
    let ratio = bootstrap_ratio_ci(&b, &c, 50.0, gs.resamples, gs.confidence, gs.seed)?;
    let significant = !ratio.contains(1.0);
    let change = ratio.point - 1.0;
    let verdict = if significant && change > gs.threshold {
        Verdict::Regression
    } else if significant && change < -gs.threshold {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    };
    Ok(Decision {
        ratio,
        significant,
        verdict,
    })
}

/// The gate's result for one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionResult {
    pub function: String,
    pub baseline: PathBuf,
    pub baseline_median_us: f64,
    pub current_median_us: f64,
    /// current / baseline − 1 of the medians (0.10 = 10 % slower).
    pub change: f64,
    /// 95 % CI of `change`.
    pub change_ci: [f64; 2],
    pub significant: bool,
    pub baseline_deadline_us: f64,
    pub current_deadline_us: f64,
    pub verdict: Verdict,
    /// Whether the function was measured a second time to confirm.
    pub remeasured: bool,
    /// Remarks (different parameters, environment, unconfirmed first result).
    pub notes: Vec<String>,
    /// What the paired gate ran (`--against`); absent for the committed-profile gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<against::PairedDetails>,
}

/// Which gate ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateMode {
    /// The current build re-profiled and compared with committed profiles.
    #[default]
    CommittedProfile,
    /// Old and new build run interleaved (`--against OLD`), decided on paired ratios.
    Paired,
}

impl GateMode {
    /// How the mode decides, for report headers.
    pub fn describe(self, against: Option<&str>) -> String {
        match self {
            GateMode::CommittedProfile => {
                "committed-profile gate: bootstrap CI of the median ratio, current / baseline profile"
                    .into()
            }
            GateMode::Paired => format!(
                "paired gate against `{}`: bootstrap CI of the median ABBA-block ratio, new / old",
                against.unwrap_or("?")
            ),
        }
    }
}

/// Everything the gate found; exporters serialise this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// Which gate ran (reports before the field existed: committed-profile).
    #[serde(default)]
    pub mode: GateMode,
    /// OLD of `--against`, in paired mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    pub slokit_version: String,
    pub environment: String,
    pub threshold: f64,
    pub confidence: f64,
    pub results: Vec<FunctionResult>,
    pub warnings: Vec<String>,
    /// The metric that decided (reports before the field existed: wall time).
    #[serde(default)]
    pub metric: crate::Metric,
    /// The instruction counts behind each result, by function
    /// (`--metric instructions` only).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub instructions: std::collections::BTreeMap<String, instructions::InstructionChange>,
}

impl GateReport {
    /// A committed-profile report of `results` (paired mode sets `mode`
    /// and `against` on top).
    pub fn new(
        environment: String,
        gs: &GateSettings,
        results: Vec<FunctionResult>,
        warnings: Vec<String>,
    ) -> Self {
        GateReport {
            mode: GateMode::CommittedProfile,
            against: None,
            slokit_version: slokit_model::VERSION.into(),
            environment,
            threshold: gs.threshold,
            confidence: gs.confidence,
            results,
            warnings,
            metric: crate::Metric::WallTime,
            instructions: Default::default(),
        }
    }

    /// Which gate ran and how it decides, for report headers.
    pub fn method(&self) -> String {
        match self.metric {
            crate::Metric::Instructions => {
                "committed-profile gate: instruction counts, current / baseline profile".into()
            }
            crate::Metric::WallTime => self.mode.describe(self.against.as_deref()),
        }
    }

    /// What decided, for report headers: the metric and how it was compared.
    pub fn decided_by(&self) -> String {
        match self.metric {
            crate::Metric::WallTime => "decided by wall time".into(),
            crate::Metric::Instructions => {
                let how: std::collections::BTreeSet<String> = self
                    .instructions
                    .values()
                    .map(|c| format!("{}, {}, {}", c.source, c.tool, c.scope))
                    .collect();
                format!(
                    "decided by instructions executed ({})",
                    how.into_iter().collect::<Vec<_>>().join("; ")
                )
            }
        }
    }

    /// Whether any function regressed (→ exit code 1).
    pub fn has_regression(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.verdict == Verdict::Regression)
    }
}

/// The baseline profiles in `dir`: every `*.toml` whose `schema` is
/// `slokit.profile` (experiment configs and `profile.toml` are skipped), by
/// function name.
pub fn list_baselines(dir: &Path) -> Result<Vec<String>, ProfileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ProfileError::Io {
        action: "list the baseline directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        // Not TOML at all is an error (with line and column), never a skip:
        // a gate that passes over a file it cannot read passes wrongly.
        if baseline::is_profile_file(&path)? {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(ProfileError::Baseline(format!(
            "no profiles in `{}` (run `slokit profile FUNCTION` first, or pass --baseline DIR)",
            dir.display()
        )));
    }
    Ok(names)
}

/// Re-profiles each function (all baselines in `baseline_dir` when
/// `functions` is empty) with the baseline's target, parameters (overridden
/// by `param_overrides`) and deadline rule, and decides per function.
pub fn run_gate(
    baseline_dir: &Path,
    functions: &[String],
    param_overrides: &Value,
    catalogue: &Catalogue,
    settings: &Settings,
    gs: &GateSettings,
    observer: &mut dyn Observer,
) -> Result<GateReport, ProfileError> {
    gs.validate()?;
    settings.validate()?;
    let names = if functions.is_empty() {
        list_baselines(baseline_dir)?
    } else {
        functions.to_vec()
    };
    // Load every baseline first: a malformed one fails before any measuring.
    let mut baselines = Vec::new();
    for name in &names {
        let path = baseline_dir.join(format!("{name}.toml"));
        if !path.exists() {
            return Err(ProfileError::Baseline(format!(
                "no baseline for `{name}`: `{}` does not exist (run `slokit profile {name} --out-dir {}`)",
                path.display(),
                baseline_dir.display()
            )));
        }
        baselines.push((name.clone(), path.clone(), baseline::load(&path)?));
    }
    let mut warnings = Vec::new();
    let mut results = Vec::new();
    let mut env_line = String::new();
    let mut instruction_counts = std::collections::BTreeMap::new();
    for (name, path, base) in baselines {
        let mut params = Value::Object(base.params.clone());
        if let (Value::Object(p), Value::Object(o)) = (&mut params, param_overrides) {
            for (k, v) in o {
                p.insert(k.clone(), v.clone());
            }
        }
        let mut notes = Vec::new();
        if !params_equal(&params, &Value::Object(base.params.clone())) {
            notes.push(format!(
                "parameters differ from the baseline: {} → {}",
                Value::Object(base.params.clone()),
                params
            ));
        }
        let mut s = settings.clone();
        s.rule.percentile = base.deadline.percentile;
        s.rule.slack = base.deadline.slack;
        s.rule.slo_target_percent = base.deadline.slo_target_percent;
        s.time_from = base.deadline.timing;
        if settings.metric == crate::Metric::Instructions {
            let (result, counts) = instructions::gate_one(
                &name, &path, &base, &params, notes, catalogue, &s, gs, observer,
            )?;
            instruction_counts.insert(name.clone(), counts);
            results.push(result);
            continue;
        }
        let base_ns = base.samples_ns(gs.sample_cap);

        let measure = |observer: &mut dyn Observer| {
            profile_target(&name, &base.target, &params, catalogue, &s, observer)
        };
        let mut current = measure(observer)?;
        let diffs = base.environment.differences(&current.environment);
        if !diffs.is_empty() {
            warnings.push(format!(
                "`{name}`: the environment differs from the baseline's ({}); comparisons across machines are unreliable",
                diffs.join("; ")
            ));
        }
        env_line = current.environment.one_line();
        let mut decision = decide(&base_ns, &current.samples_ns(gs.sample_cap), gs)?;
        let mut remeasured = false;
        if decision.verdict == Verdict::Regression && gs.confirm {
            remeasured = true;
            let first = decision;
            current = measure(observer)?;
            let second = decide(
                &base_ns,
                &current.samples_ns(gs.sample_cap),
                &GateSettings {
                    seed: gs.seed ^ 0x5eed,
                    ..gs.clone()
                },
            )?;
            if second.verdict == Verdict::Regression {
                decision = second;
            } else {
                notes.push(format!(
                    "first measurement was {:+.1} % slower; the re-measurement was {:+.1} %: not counted",
                    (first.ratio.point - 1.0) * 100.0,
                    (second.ratio.point - 1.0) * 100.0
                ));
                decision = Decision {
                    verdict: Verdict::Unconfirmed,
                    ..second
                };
            }
        }
        results.push(FunctionResult {
            function: name.clone(),
            baseline: path,
            baseline_median_us: base.summary.p50_us,
            current_median_us: current.summary.p50_us,
            change: decision.ratio.point - 1.0,
            change_ci: [decision.ratio.lo - 1.0, decision.ratio.hi - 1.0],
            significant: decision.significant,
            baseline_deadline_us: base.deadline_us(),
            current_deadline_us: current.deadline_us(),
            verdict: decision.verdict,
            remeasured,
            notes,
            paired: None,
        });
    }
    if settings.metric == crate::Metric::Instructions {
        return Ok(GateReport {
            metric: crate::Metric::Instructions,
            instructions: instruction_counts,
            ..GateReport::new(
                slokit_model::Environment::probe().one_line(),
                gs,
                results,
                warnings,
            )
        });
    }
    Ok(GateReport::new(env_line, gs, results, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gs() -> GateSettings {
        GateSettings {
            resamples: 400,
            ..GateSettings::default()
        }
    }

    /// A right-skewed execution-time distribution like a real function's:
    /// 1 ms base, uniform jitter, and a 3 % tail of preempted runs.
    fn synthetic(seed: u64, n: usize, scale: f64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let base = 1e6 * (1.0 + rng.random_range(0.0..0.04));
                let v = if rng.random_range(0.0..1.0) < 0.03 {
                    base * rng.random_range(1.5..4.0)
                } else {
                    base
                };
                v * scale
            })
            .collect()
    }

    #[test]
    fn identical_distributions_are_unchanged() {
        for seed in 0..5 {
            let d = decide(
                &synthetic(seed, 600, 1.0),
                &synthetic(seed + 100, 600, 1.0),
                &gs(),
            )
            .unwrap();
            assert_eq!(d.verdict, Verdict::Unchanged, "seed {seed}: {d:?}");
        }
    }

    #[test]
    fn ten_percent_slower_is_a_regression() {
        for seed in 0..5 {
            let d = decide(
                &synthetic(seed, 600, 1.0),
                &synthetic(seed + 100, 600, 1.10),
                &gs(),
            )
            .unwrap();
            assert_eq!(d.verdict, Verdict::Regression, "seed {seed}: {d:?}");
            assert!(d.ratio.contains(1.10), "{d:?}");
        }
    }

    #[test]
    fn three_percent_slower_is_significant_but_below_the_threshold() {
        let d = decide(&synthetic(1, 5000, 1.0), &synthetic(2, 5000, 1.03), &gs()).unwrap();
        assert!(d.significant, "{d:?}");
        assert_eq!(d.verdict, Verdict::Unchanged, "{d:?}");
    }

    #[test]
    fn ten_percent_faster_is_an_improvement() {
        let d = decide(&synthetic(3, 600, 1.0), &synthetic(4, 600, 0.90), &gs()).unwrap();
        assert_eq!(d.verdict, Verdict::Improvement, "{d:?}");
    }

    #[test]
    fn a_histogram_baseline_decides_like_raw_samples() {
        let mut h = crate::sampler::ns_histogram();
        for v in synthetic(5, 2000, 1.0) {
            h.record(v as u64).unwrap();
        }
        let base = crate::profile::expand_histogram(&h, 10_000);
        let same = decide(&base, &synthetic(6, 2000, 1.0), &gs()).unwrap();
        assert_eq!(same.verdict, Verdict::Unchanged, "{same:?}");
        let slow = decide(&base, &synthetic(6, 2000, 1.1), &gs()).unwrap();
        assert_eq!(slow.verdict, Verdict::Regression, "{slow:?}");
    }

    #[test]
    fn a_directory_without_profiles_is_a_baseline_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default-experiment.toml"), "x = 1\n").unwrap();
        let e = list_baselines(dir.path()).unwrap_err();
        assert!(matches!(e, ProfileError::Baseline(_)), "{e}");
        crate::profile::tests::synthetic("spin", 1e6)
            .save(dir.path().join("spin.toml"))
            .unwrap();
        assert_eq!(list_baselines(dir.path()).unwrap(), vec!["spin"]);
    }
}
