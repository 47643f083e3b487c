//! Aggregation: run records of scenario × policy × repetition become one
//! [`Report`] — per function and policy the mean over repetitions with its
//! spread, SLO attainment against the profile's deadline, goodput, the
//! ratios to the simulated SRPT bound, a one-line verdict per function and a
//! headline with the short/long-function tail-latency ratios the two-level
//! scheduler is about (SFS, SC'22, reports the same split).
//!
//! The report is presentation data only: every exporter reads it, and its
//! JSON form (schema [`COMPARE_SCHEMA`]) is what CI and other tools read.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use slokit_functions::record::{decode_histogram, encode_histogram, RunKind, TimelinePoint};
use slokit_functions::{Environment, FunctionStats, RunRecord};

use crate::fmt;
use crate::gate::{Gate, GateResult};
use crate::input::Comparison;
use crate::stats::{geomean, ratio, Spread};
use crate::ReportError;

/// Schema id of the report's JSON form.
pub const COMPARE_SCHEMA: &str = "slokit.compare/1";
/// The policy the report is about; verdict ratios and the headline compare
/// it with the baselines.
pub const PROPOSED: &str = "two-level";
/// The exit code of `slokit compare` when a gate fails.
pub const GATE_FAILED_EXIT: i32 = 99;
/// The simulated lower bound (shortest remaining processing time).
pub const BOUND: &str = "srpt";
/// Display order of the measured policies; others follow in input order.
const MEASURED_ORDER: [&str; 3] = ["cfs", "fifo", PROPOSED];
/// Display order of the simulated policies; others follow in input order.
const SIMULATED_ORDER: [&str; 4] = [BOUND, "ps", "fifo", PROPOSED];
/// Attainments closer than this count as a tie (they print the same at
/// 0.1 % precision); the tie is broken by p99.
const ATTAINMENT_TIE: f64 = 0.0005;

/// How to build a report beyond what the comparison carries.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Gates to evaluate; their results are part of the report.
    pub gates: Vec<Gate>,
    /// Service time per function label (µs), overriding what the records
    /// say (e.g. the profile's median).
    pub service_us: BTreeMap<String, f64>,
    /// Functions with a service time at or below this are "short", the rest
    /// "long". Default: the largest ratio gap between consecutive service
    /// times of the scenario's functions (a natural break on a log scale).
    pub short_threshold_us: Option<f64>,
}

/// The aggregated comparison; what every exporter renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`COMPARE_SCHEMA`].
    pub schema: String,
    pub title: String,
    pub environment: Environment,
    /// Monitors that observed the measured runs (`ebpf`, `notify`).
    pub monitors: Vec<String>,
    pub seed: u64,
    pub created_unix_ms: u64,
    /// Echo of the experiment configuration.
    pub settings: serde_json::Value,
    pub scenarios: Vec<ScenarioReport>,
    /// Gate results, in the order the gates were given.
    pub gates: Vec<GateResult>,
}

/// One scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    /// Measured policies in display order.
    pub policies: Vec<String>,
    /// Simulated policies in display order.
    pub simulated_policies: Vec<String>,
    /// Largest number of repetitions of any measured policy.
    pub repetitions: usize,
    /// Run duration (s) over all measured runs.
    pub duration_s: Option<Spread>,
    pub functions: Vec<FunctionReport>,
    /// Successful invocations within their deadline per second, all
    /// functions together, per measured then simulated policy.
    pub goodput: Vec<Goodput>,
    pub headline: Headline,
    /// The two-level runs' agent timelines (S and queue length over time).
    pub timelines: Vec<RunTimeline>,
    /// Remarks from the records (deduplicated) and from the aggregation.
    pub notes: Vec<String>,
}

/// Short or long, by median service time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionClass {
    Short,
    Long,
}

/// Figures of one function in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionReport {
    pub label: String,
    /// Host function it ran (`auth`, `spin`, ...).
    pub function: String,
    /// Median service time, ms.
    pub service_ms: Option<f64>,
    /// Where `service_ms` came from.
    pub service_source: Option<String>,
    pub class: Option<FunctionClass>,
    /// The profile's deadline D, ms.
    pub deadline_ms: Option<f64>,
    /// Measured policies in display order.
    pub measured: Vec<PolicyFigures>,
    /// Simulated policies in display order.
    pub simulated: Vec<PolicyFigures>,
    pub verdict: Verdict,
}

/// One function under one policy, over its repetitions. Every [`Spread`] is
/// the mean over repetitions with min, max and sample stddev.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyFigures {
    pub policy: String,
    pub kind: RunKind,
    pub repetitions: usize,
    pub invocations: Spread,
    /// HTTP errors + timeouts + connection errors.
    pub errors: Spread,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub p999_ms: Spread,
    /// p99 measured from the actual (not intended) send time.
    pub p99_uncorrected_ms: Spread,
    pub mean_slowdown: Option<Spread>,
    pub p99_slowdown: Option<Spread>,
    pub share_slowdown_le_2: Option<Spread>,
    pub slo_attainment: Option<Spread>,
    /// This function's invocations within the deadline per second.
    pub goodput_per_s: Option<Spread>,
    /// Median server-reported execution time, ms.
    pub exec_p50_ms: Option<Spread>,
    /// Mean p99 and mean slowdown divided by SRPT's, when simulated.
    pub vs_bound: Option<BoundRatio>,
    /// Response-time histogram (µs) of all repetitions merged, in the run
    /// record's encoding (HdrHistogram V2 + deflate, base64).
    pub response_histogram: String,
}

/// Ratios of a policy's figures to the SRPT bound's (1.0 = optimal).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundRatio {
    pub p99: Option<f64>,
    pub mean_slowdown: Option<f64>,
}

/// Which measured policy serves a function best, and the sentence saying so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub winner: Option<String>,
    pub text: String,
}

/// Goodput of one policy in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    pub policy: String,
    pub kind: RunKind,
    pub per_s: Spread,
}

/// The headline ratios of a scenario: two-level's p99 over the baselines'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// Service-time threshold (ms) between short and long functions.
    pub short_threshold_ms: Option<f64>,
    pub short: Vec<String>,
    pub long: Vec<String>,
    /// Geometric mean over short functions of p99(two-level)/p99(cfs).
    pub short_p99_vs_cfs: Option<f64>,
    /// Geometric mean over short functions of p99(two-level)/p99(fifo).
    pub short_p99_vs_fifo: Option<f64>,
    /// Geometric mean over long functions of p99(two-level)/p99(cfs).
    pub long_p99_vs_cfs: Option<f64>,
    /// The per-function ratios behind the means.
    pub per_function: Vec<HeadlineRatio>,
    /// The headline as sentences.
    pub lines: Vec<String>,
}

/// p99 of two-level over cfs and fifo for one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineRatio {
    pub label: String,
    pub class: FunctionClass,
    pub p99_vs_cfs: Option<f64>,
    pub p99_vs_fifo: Option<f64>,
}

/// One run's agent timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTimeline {
    pub policy: String,
    pub repetition: u32,
    pub points: Vec<TimelinePoint>,
}

impl Report {
    /// Aggregates `comparison`, then evaluates `options.gates` against the
    /// result. Fails on inconsistent input (see [`Comparison::validate`]) or
    /// an undecodable histogram.
    pub fn build(comparison: &Comparison, options: &ReportOptions) -> Result<Report, ReportError> {
        comparison.validate()?;
        let mut monitors: Vec<String> = Vec::new();
        for r in comparison.scenarios.iter().flat_map(|s| &s.runs) {
            if let Some(m) = &r.record.monitor {
                if !monitors.contains(m) {
                    monitors.push(m.clone());
                }
            }
        }
        let scenarios = comparison
            .scenarios
            .iter()
            .map(|s| build_scenario(s, options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut report = Report {
            schema: COMPARE_SCHEMA.to_string(),
            title: comparison.title.clone(),
            environment: comparison.environment.clone(),
            monitors,
            seed: comparison.seed,
            created_unix_ms: comparison.created_unix_ms,
            settings: comparison.settings.clone(),
            scenarios,
            gates: Vec::new(),
        };
        report.gates = options.gates.iter().map(|g| g.evaluate(&report)).collect();
        Ok(report)
    }

    /// Whether every gate passed (true without gates). The CLI exits
    /// [`GATE_FAILED_EXIT`] when this is false.
    pub fn gates_passed(&self) -> bool {
        self.gates.iter().all(|g| g.passed)
    }

    /// Reads a report's JSON, refusing other schema versions.
    pub fn from_json(text: &str) -> Result<Report, ReportError> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(COMPARE_SCHEMA) => Ok(serde_json::from_value(v)?),
            other => Err(ReportError::Schema {
                found: other.unwrap_or("(none)").to_string(),
            }),
        }
    }

    /// The scenario called `name`.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

impl ScenarioReport {
    /// The function labelled `label`.
    pub fn function(&self, label: &str) -> Option<&FunctionReport> {
        self.functions.iter().find(|f| f.label == label)
    }

    /// Goodput of `policy` among the runs of `kind`.
    pub fn goodput_of(&self, policy: &str, kind: RunKind) -> Option<&Goodput> {
        self.goodput
            .iter()
            .find(|g| g.policy == policy && g.kind == kind)
    }
}

impl FunctionReport {
    /// Figures of the measured `policy`.
    pub fn measured(&self, policy: &str) -> Option<&PolicyFigures> {
        self.measured.iter().find(|p| p.policy == policy)
    }

    /// Figures of the simulated `policy`.
    pub fn simulated(&self, policy: &str) -> Option<&PolicyFigures> {
        self.simulated.iter().find(|p| p.policy == policy)
    }
}

/// Policies in display order: the known ones first, then the rest as met.
fn ordered<'a>(known: &[&str], seen: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut rest: Vec<String> = Vec::new();
    let mut present: Vec<&str> = Vec::new();
    for p in seen {
        if known.contains(&p) {
            present.push(p);
        } else if !rest.iter().any(|r| r == p) {
            rest.push(p.to_string());
        }
    }
    known
        .iter()
        .filter(|k| present.contains(k))
        .map(|k| k.to_string())
        .chain(rest)
        .collect()
}

/// One repetition's stats of a function, with the run's duration.
struct RepStats<'a> {
    stats: &'a FunctionStats,
    duration_s: f64,
}

fn build_scenario(
    s: &crate::input::ScenarioRuns,
    options: &ReportOptions,
) -> Result<ScenarioReport, ReportError> {
    let policies = ordered(&MEASURED_ORDER, s.runs.iter().map(|r| r.policy.as_str()));
    let simulated_policies = ordered(
        &SIMULATED_ORDER,
        s.bounds.iter().filter_map(|b| b.policy.as_deref()),
    );
    let measured_runs = |p: &str| runs_of(s, p, RunKind::Measured);
    let simulated_runs = |p: &str| runs_of(s, p, RunKind::Simulated);

    // Function labels in order of first appearance.
    let mut labels: Vec<(String, String)> = Vec::new();
    for rec in s.runs.iter().map(|r| &r.record).chain(&s.bounds) {
        for f in &rec.functions {
            if !labels.iter().any(|(l, _)| *l == f.label) {
                labels.push((f.label.clone(), f.function.clone()));
            }
        }
    }

    let mut notes: Vec<String> = Vec::new();
    for rec in s.runs.iter().map(|r| &r.record).chain(&s.bounds) {
        for n in &rec.notes {
            let n = format!("{}: {n}", rec.policy.as_deref().unwrap_or("run"));
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }

    let mut functions = Vec::new();
    for (label, function) in &labels {
        let mut figures = |policy: &str, kind: RunKind, runs: &[&RunRecord]| {
            let reps: Vec<RepStats> = runs
                .iter()
                .filter_map(|r| {
                    r.functions
                        .iter()
                        .find(|f| f.label == *label)
                        .map(|stats| RepStats {
                            stats,
                            duration_s: r.duration_s,
                        })
                })
                .collect();
            if reps.is_empty() {
                return Ok(None);
            }
            if reps.len() < runs.len() {
                notes.push(format!(
                    "{label}: present in {} of {} {policy} runs",
                    reps.len(),
                    runs.len()
                ));
            }
            policy_figures(policy, kind, &reps).map(Some)
        };
        let mut measured = Vec::new();
        for p in &policies {
            if let Some(f) = figures(p, RunKind::Measured, &measured_runs(p))? {
                measured.push(f);
            }
        }
        let mut simulated = Vec::new();
        for p in &simulated_policies {
            if let Some(f) = figures(p, RunKind::Simulated, &simulated_runs(p))? {
                simulated.push(f);
            }
        }
        attach_bound_ratios(&mut measured, &mut simulated);
        let deadline_ms = deadline_of(s, label);
        let (service_ms, service_source) = service_time(label, &measured, &simulated, options);
        functions.push(FunctionReport {
            label: label.clone(),
            function: function.clone(),
            service_ms,
            service_source,
            class: None,
            deadline_ms,
            measured,
            simulated,
            verdict: Verdict {
                winner: None,
                text: String::new(),
            },
        });
    }

    let short_threshold_ms = classify(&mut functions, options.short_threshold_us);
    for f in &mut functions {
        f.verdict = verdict(f);
    }
    let headline = headline(&functions, short_threshold_ms);

    let mut goodput = Vec::new();
    for (kind, list) in [
        (RunKind::Measured, &policies),
        (RunKind::Simulated, &simulated_policies),
    ] {
        for p in list {
            let per_rep = runs_of(s, p, kind).into_iter().filter_map(|r| {
                let met: u64 = r
                    .functions
                    .iter()
                    .filter_map(|f| f.slo.map(|s| s.met))
                    .sum();
                ratio(met as f64, r.duration_s)
            });
            if let Some(per_s) = Spread::of(per_rep) {
                goodput.push(Goodput {
                    policy: p.clone(),
                    kind,
                    per_s,
                });
            }
        }
    }
    let no_deadline: Vec<&str> = functions
        .iter()
        .filter(|f| f.deadline_ms.is_none())
        .map(|f| f.label.as_str())
        .collect();
    if !no_deadline.is_empty() {
        notes.push(format!(
            "no deadline for {}: no SLO attainment, and goodput leaves them out",
            no_deadline.join(", ")
        ));
    }

    let mut timelines: Vec<RunTimeline> = s
        .runs
        .iter()
        .filter(|r| r.policy == PROPOSED && !r.timeline.is_empty())
        .map(|r| RunTimeline {
            policy: r.policy.clone(),
            repetition: r.repetition,
            points: r.timeline.clone(),
        })
        .collect();
    timelines.sort_by_key(|t| t.repetition);

    Ok(ScenarioReport {
        name: s.name.clone(),
        description: s.description.clone(),
        repetitions: policies
            .iter()
            .map(|p| measured_runs(p).len())
            .max()
            .unwrap_or(0),
        duration_s: Spread::of(s.runs.iter().map(|r| r.record.duration_s)),
        policies,
        simulated_policies,
        functions,
        goodput,
        headline,
        timelines,
        notes,
    })
}

/// The records of `policy` of one kind, measured ones by repetition.
fn runs_of<'a>(
    s: &'a crate::input::ScenarioRuns,
    policy: &str,
    kind: RunKind,
) -> Vec<&'a RunRecord> {
    match kind {
        RunKind::Measured => {
            let mut runs: Vec<_> = s.runs.iter().filter(|r| r.policy == policy).collect();
            runs.sort_by_key(|r| r.repetition);
            runs.into_iter().map(|r| &r.record).collect()
        }
        RunKind::Simulated => s
            .bounds
            .iter()
            .filter(|b| b.policy.as_deref() == Some(policy))
            .collect(),
    }
}

/// The deadline of `label` as the records state it (measured runs first).
fn deadline_of(s: &crate::input::ScenarioRuns, label: &str) -> Option<f64> {
    s.runs
        .iter()
        .map(|r| &r.record)
        .chain(&s.bounds)
        .flat_map(|r| &r.functions)
        .filter(|f| f.label == label)
        .find_map(|f| f.slo.map(|slo| slo.deadline_us / 1000.0))
}

fn policy_figures(
    policy: &str,
    kind: RunKind,
    reps: &[RepStats],
) -> Result<PolicyFigures, ReportError> {
    let spread = |f: &dyn Fn(&RepStats) -> f64| {
        Spread::of(reps.iter().map(f)).unwrap_or(Spread {
            mean: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            stddev: f64::NAN,
            n: 0,
        })
    };
    let opt_spread = |f: &dyn Fn(&RepStats) -> Option<f64>| Spread::of(reps.iter().filter_map(f));
    let mut merged: Option<Histogram<u64>> = None;
    for r in reps {
        let h = decode_histogram(&r.stats.response_histogram).map_err(|message| {
            ReportError::Histogram {
                what: format!("{} under {policy}", r.stats.label),
                message,
            }
        })?;
        match &mut merged {
            None => merged = Some(h),
            Some(m) => m.add(&h).map_err(|e| ReportError::Histogram {
                what: format!("{} under {policy}", r.stats.label),
                message: format!("repetitions do not merge: {e:?}"),
            })?,
        }
    }
    let merged = merged.expect("reps is not empty");
    Ok(PolicyFigures {
        policy: policy.to_string(),
        kind,
        repetitions: reps.len(),
        invocations: spread(&|r| r.stats.invocations as f64),
        errors: spread(&|r| {
            (r.stats.http_errors + r.stats.timeouts + r.stats.connect_errors) as f64
        }),
        p50_ms: spread(&|r| r.stats.response_us.p50 / 1000.0),
        p99_ms: spread(&|r| r.stats.response_us.p99 / 1000.0),
        p999_ms: spread(&|r| r.stats.response_us.p999 / 1000.0),
        p99_uncorrected_ms: spread(&|r| r.stats.response_uncorrected_us.p99 / 1000.0),
        mean_slowdown: opt_spread(&|r| r.stats.slowdown.map(|s| s.mean)),
        p99_slowdown: opt_spread(&|r| r.stats.slowdown.map(|s| s.p99)),
        share_slowdown_le_2: opt_spread(&|r| r.stats.slowdown.map(|s| s.share_le_2)),
        slo_attainment: opt_spread(&|r| r.stats.slo.map(|s| s.attainment)),
        goodput_per_s: opt_spread(&|r| r.stats.slo.and_then(|s| ratio(s.met as f64, r.duration_s))),
        exec_p50_ms: opt_spread(&|r| r.stats.exec_us.map(|e| e.p50 / 1000.0)),
        vs_bound: None,
        response_histogram: encode_histogram(&merged),
    })
}

fn attach_bound_ratios(measured: &mut [PolicyFigures], simulated: &mut [PolicyFigures]) {
    let Some(bound) = simulated.iter().find(|p| p.policy == BOUND).cloned() else {
        return;
    };
    for p in measured.iter_mut().chain(simulated.iter_mut()) {
        p.vs_bound = Some(BoundRatio {
            p99: ratio(p.p99_ms.mean, bound.p99_ms.mean),
            mean_slowdown: match (&p.mean_slowdown, &bound.mean_slowdown) {
                (Some(a), Some(b)) => ratio(a.mean, b.mean),
                _ => None,
            },
        });
    }
}

/// The function's median service time: the caller's figure, else the
/// simulator's execution time (the simulator runs each invocation for its
/// known service time), else the smallest measured median execution time
/// over policies (the least contended one: execution time as the host
/// measures it includes time preempted).
fn service_time(
    label: &str,
    measured: &[PolicyFigures],
    simulated: &[PolicyFigures],
    options: &ReportOptions,
) -> (Option<f64>, Option<String>) {
    if let Some(us) = options.service_us.get(label) {
        return (Some(us / 1000.0), Some("given".into()));
    }
    let exec = |list: &[PolicyFigures]| {
        list.iter()
            .filter_map(|p| p.exec_p50_ms.map(|s| s.mean))
            .filter(|v| *v > 0.0)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
    };
    if let Some(v) = exec(simulated) {
        return (Some(v), Some("simulated execution time p50".into()));
    }
    if let Some(v) = exec(measured) {
        return (
            Some(v),
            Some("measured execution time p50 (least contended policy)".into()),
        );
    }
    (None, None)
}

/// Splits functions into short and long; returns the threshold (ms).
fn classify(functions: &mut [FunctionReport], threshold_us: Option<f64>) -> Option<f64> {
    let threshold_ms = match threshold_us {
        Some(us) => Some(us / 1000.0),
        None => {
            let mut times: Vec<f64> = functions.iter().filter_map(|f| f.service_ms).collect();
            times.sort_by(f64::total_cmp);
            times
                .windows(2)
                .filter(|w| w[0] > 0.0 && w[1] > w[0])
                .max_by(|a, b| (a[1] / a[0]).total_cmp(&(b[1] / b[0])))
                .map(|w| w[0])
        }
    };
    for f in functions.iter_mut() {
        f.class = match (f.service_ms, threshold_ms) {
            (Some(s), Some(t)) if s <= t => Some(FunctionClass::Short),
            (Some(_), Some(_)) => Some(FunctionClass::Long),
            _ => None,
        };
    }
    threshold_ms
}

/// Winner on SLO attainment (ties within 0.05 points broken by lower p99),
/// or on p99 when there is no deadline.
fn verdict(f: &FunctionReport) -> Verdict {
    let att = |p: &PolicyFigures| p.slo_attainment.map(|s| s.mean);
    let better = |a: &&PolicyFigures, b: &&PolicyFigures| match (att(a), att(b)) {
        (Some(x), Some(y)) if (x - y).abs() >= ATTAINMENT_TIE => y.total_cmp(&x),
        _ => a.p99_ms.mean.total_cmp(&b.p99_ms.mean),
    };
    let Some(winner) = f.measured.iter().min_by(better) else {
        return Verdict {
            winner: None,
            text: format!("{}: no measured runs", f.label),
        };
    };
    let others: Vec<&PolicyFigures> = f
        .measured
        .iter()
        .filter(|p| p.policy != winner.policy)
        .collect();
    let mut text = format!("{}: {}", f.label, winner.policy);
    if let Some(a) = att(winner) {
        text.push_str(&format!(" meets the SLO for {}", fmt::pct(a)));
        let list: Vec<String> = others
            .iter()
            .filter_map(|p| att(p).map(|a| format!("{} {}", p.policy, fmt::pct(a))))
            .collect();
        if !list.is_empty() {
            text.push_str(&format!(" ({})", list.join(", ")));
        }
        text.push_str("; p99");
    } else {
        text.push_str(&format!(
            " has the lowest p99 ({} ms; no deadline); that is",
            fmt::num(winner.p99_ms.mean)
        ));
    }
    let ratios: Vec<String> = others
        .iter()
        .filter_map(|p| {
            ratio(winner.p99_ms.mean, p.p99_ms.mean)
                .map(|r| format!("{} {}", fmt::times(r), p.policy))
        })
        .collect();
    if ratios.is_empty() {
        text.push_str(&format!(" {} ms", fmt::num(winner.p99_ms.mean)));
    } else {
        text.push(' ');
        text.push_str(&ratios.join(", "));
    }
    if let Some(bound) = f.simulated.iter().find(|p| p.policy == BOUND) {
        let mut parts = Vec::new();
        if let Some(a) = att(bound) {
            parts.push(format!("meets {}", fmt::pct(a)));
        }
        if let Some(r) = winner.vs_bound.and_then(|b| b.p99) {
            parts.push(format!("{} p99 is {} SRPT's", winner.policy, fmt::times(r)));
        }
        if !parts.is_empty() {
            text.push_str(&format!("; the SRPT bound {}", parts.join(", ")));
        }
    }
    Verdict {
        winner: Some(winner.policy.clone()),
        text,
    }
}

fn headline(functions: &[FunctionReport], short_threshold_ms: Option<f64>) -> Headline {
    let p99 = |f: &FunctionReport, p: &str| f.measured(p).map(|x| x.p99_ms.mean);
    let per_function: Vec<HeadlineRatio> = functions
        .iter()
        .filter_map(|f| {
            let class = f.class?;
            let two = p99(f, PROPOSED)?;
            Some(HeadlineRatio {
                label: f.label.clone(),
                class,
                p99_vs_cfs: p99(f, "cfs").and_then(|c| ratio(two, c)),
                p99_vs_fifo: p99(f, "fifo").and_then(|c| ratio(two, c)),
            })
        })
        .collect();
    let of_class = |c: FunctionClass| -> Vec<String> {
        functions
            .iter()
            .filter(|f| f.class == Some(c))
            .map(|f| f.label.clone())
            .collect()
    };
    let mean = |c: FunctionClass, pick: fn(&HeadlineRatio) -> Option<f64>| {
        geomean(
            per_function
                .iter()
                .filter(|h| h.class == c)
                .filter_map(pick),
        )
    };
    let short = of_class(FunctionClass::Short);
    let long = of_class(FunctionClass::Long);
    let short_p99_vs_cfs = mean(FunctionClass::Short, |h| h.p99_vs_cfs);
    let short_p99_vs_fifo = mean(FunctionClass::Short, |h| h.p99_vs_fifo);
    let long_p99_vs_cfs = mean(FunctionClass::Long, |h| h.p99_vs_cfs);

    let mut lines = Vec::new();
    let ratio_text = |r: Option<f64>, base: &str| {
        r.map_or_else(
            || format!("no {base} run to compare with"),
            |r| format!("{} {base}'s", fmt::times(r)),
        )
    };
    if let Some(t) = short_threshold_ms {
        if !short.is_empty() {
            lines.push(format!(
                "Short functions ({}; service ≤ {} ms): two-level's p99 is {} and {}.",
                short.join(", "),
                fmt::num(t),
                ratio_text(short_p99_vs_cfs, "cfs"),
                ratio_text(short_p99_vs_fifo, "fifo")
            ));
        }
        if !long.is_empty() {
            lines.push(format!(
                "Long functions ({}): two-level's p99 is {}.",
                long.join(", "),
                ratio_text(long_p99_vs_cfs, "cfs")
            ));
        }
        if short.len() + long.len() > 1 {
            if let Some(last) = lines.last_mut() {
                last.push_str(" (Geometric means over functions.)");
            }
        }
    } else {
        lines.push(
            "No short/long split: it needs service times of at least two functions (from the records or the caller).".into(),
        );
    }
    Headline {
        short_threshold_ms,
        short,
        long,
        short_p99_vs_cfs,
        short_p99_vs_fifo,
        long_p99_vs_cfs,
        per_function,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{self, exact_record, run, single};
    use slokit_functions::Outcome;

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn figures_are_means_over_repetitions_with_their_range() {
        let c = testdata::comparison();
        let r = Report::build(&c, &ReportOptions::default()).unwrap();
        let s = &c.scenarios[0];
        let reps: Vec<&FunctionStats> = s
            .runs
            .iter()
            .filter(|r| r.policy == "cfs")
            .map(|r| {
                r.record
                    .functions
                    .iter()
                    .find(|f| f.label == "auth")
                    .unwrap()
            })
            .collect();
        assert_eq!(reps.len(), 3);
        let p99: Vec<f64> = reps.iter().map(|f| f.response_us.p99 / 1000.0).collect();
        let fig = r.scenarios[0]
            .function("auth")
            .unwrap()
            .measured("cfs")
            .unwrap();
        assert_eq!(fig.repetitions, 3);
        assert!(approx(fig.p99_ms.mean, p99.iter().sum::<f64>() / 3.0));
        assert_eq!(
            fig.p99_ms.min,
            p99.iter().copied().fold(f64::INFINITY, f64::min)
        );
        assert_eq!(fig.p99_ms.max, p99.iter().copied().fold(0.0, f64::max));
        let errors: f64 = reps
            .iter()
            .map(|f| (f.http_errors + f.timeouts + f.connect_errors) as f64)
            .sum::<f64>()
            / 3.0;
        assert!(approx(fig.errors.mean, errors));
        let att: f64 = reps.iter().map(|f| f.slo.unwrap().attainment).sum::<f64>() / 3.0;
        assert!(approx(fig.slo_attainment.unwrap().mean, att));
        // The merged histogram holds every invocation of every repetition.
        let merged = decode_histogram(&fig.response_histogram).unwrap();
        assert_eq!(
            merged.len(),
            reps.iter().map(|f| f.invocations).sum::<u64>()
        );
    }

    #[test]
    fn verdicts_headline_and_bound_follow_the_figures() {
        let r = testdata::report();
        let s = r.scenario("colocated").unwrap();
        assert_eq!(s.policies, ["cfs", "fifo", "two-level"]);
        assert_eq!(s.simulated_policies, ["srpt", "ps", "fifo", "two-level"]);
        for f in &s.functions {
            let best = f
                .measured
                .iter()
                .map(|p| p.slo_attainment.unwrap().mean)
                .fold(0.0, f64::max);
            let winner = f.measured(f.verdict.winner.as_deref().unwrap()).unwrap();
            assert_eq!(
                winner.slo_attainment.unwrap().mean,
                best,
                "{}",
                f.verdict.text
            );
            assert!(f
                .verdict
                .text
                .starts_with(&format!("{}: {} meets the SLO for", f.label, winner.policy)));
            let srpt = f.simulated("srpt").unwrap();
            assert_eq!(srpt.vs_bound.unwrap().p99, Some(1.0));
            assert!(approx(
                winner.vs_bound.unwrap().p99.unwrap(),
                winner.p99_ms.mean / srpt.p99_ms.mean
            ));
        }
        assert_eq!(
            s.function("auth").unwrap().verdict.winner.as_deref(),
            Some("two-level")
        );
        assert_eq!(
            s.function("video").unwrap().verdict.winner.as_deref(),
            Some("fifo")
        );

        let h = &s.headline;
        assert_eq!(
            (h.short.clone(), h.long.clone()),
            (
                vec!["auth".to_string(), "aes".to_string()],
                vec!["video".to_string()]
            )
        );
        let ratio_of = |l: &str, base: &str| {
            let f = s.function(l).unwrap();
            f.measured("two-level").unwrap().p99_ms.mean / f.measured(base).unwrap().p99_ms.mean
        };
        let expect = (ratio_of("auth", "cfs") * ratio_of("aes", "cfs")).sqrt();
        assert!(approx(h.short_p99_vs_cfs.unwrap(), expect));
        assert!(approx(h.long_p99_vs_cfs.unwrap(), ratio_of("video", "cfs")));
        assert!(h.lines[0].contains("auth, aes"), "{:?}", h.lines);
        assert_eq!(
            s.function("auth").unwrap().service_source.as_deref(),
            Some("simulated execution time p50")
        );
        assert_eq!(s.timelines.len(), 3);
    }

    fn ok(response_us: u64, service: f64) -> (u64, f64, Outcome) {
        (response_us, service, Outcome::Ok)
    }

    #[test]
    fn equal_attainment_is_decided_by_p99_and_goodput_counts_met_per_second() {
        let fast = exact_record(
            "fifo",
            RunKind::Measured,
            2.0,
            &[("f", Some(10_000.0), vec![ok(1000, 500.0), ok(2000, 500.0)])],
        );
        let slow = exact_record(
            "cfs",
            RunKind::Measured,
            2.0,
            &[("f", Some(10_000.0), vec![ok(1000, 500.0), ok(9000, 500.0)])],
        );
        let c = single(vec![run("fifo", 0, fast), run("cfs", 0, slow)], Vec::new());
        let r = Report::build(&c, &ReportOptions::default()).unwrap();
        let s = &r.scenarios[0];
        assert_eq!(s.policies, ["cfs", "fifo"]);
        let f = s.function("f").unwrap();
        assert_eq!(
            f.verdict.winner.as_deref(),
            Some("fifo"),
            "{}",
            f.verdict.text
        );
        assert!(
            f.verdict.text.contains("100.0 % (cfs 100.0 %)"),
            "{}",
            f.verdict.text
        );
        let g = s.goodput_of("fifo", RunKind::Measured).unwrap();
        assert_eq!(g.per_s.mean, 1.0);
        // One function: no short/long split.
        assert!(s.headline.short_threshold_ms.is_none());
    }

    #[test]
    fn failures_are_misses_and_given_service_times_classify() {
        let rec = |policy: &str| {
            exact_record(
                policy,
                RunKind::Measured,
                1.0,
                &[
                    (
                        "a",
                        Some(5_000.0),
                        vec![ok(1000, 1000.0), (100, 1000.0, Outcome::Timeout)],
                    ),
                    ("b", None, vec![ok(50_000, 40_000.0)]),
                ],
            )
        };
        let c = single(
            vec![
                run("cfs", 0, rec("cfs")),
                run("two-level", 0, rec("two-level")),
            ],
            Vec::new(),
        );
        let options = ReportOptions {
            service_us: [("a".to_string(), 800.0)].into(),
            short_threshold_us: Some(10_000.0),
            ..ReportOptions::default()
        };
        let r = Report::build(&c, &options).unwrap();
        let s = &r.scenarios[0];
        let a = s.function("a").unwrap();
        assert_eq!(a.measured("cfs").unwrap().slo_attainment.unwrap().mean, 0.5);
        assert_eq!(a.measured("cfs").unwrap().errors.mean, 1.0);
        assert_eq!(
            (a.service_ms, a.service_source.as_deref()),
            (Some(0.8), Some("given"))
        );
        assert_eq!(a.class, Some(FunctionClass::Short));
        let b = s.function("b").unwrap();
        assert_eq!(b.class, Some(FunctionClass::Long));
        assert!(
            b.deadline_ms.is_none() && b.verdict.text.contains("no deadline"),
            "{}",
            b.verdict.text
        );
        assert!(s.notes.iter().any(|n| n.contains("no deadline for b")));
        assert_eq!(s.headline.short_p99_vs_cfs, Some(1.0));
    }

    #[test]
    fn inconsistent_input_is_refused_with_the_offending_run() {
        let rec =
            |policy: &str, kind| exact_record(policy, kind, 1.0, &[("f", None, vec![ok(1, 1.0)])]);
        let err = |c: Comparison| {
            Report::build(&c, &ReportOptions::default())
                .unwrap_err()
                .to_string()
        };
        let e = err(single(
            vec![
                run("cfs", 0, rec("cfs", RunKind::Measured)),
                run("cfs", 0, rec("cfs", RunKind::Measured)),
            ],
            vec![],
        ));
        assert!(e.contains("`cfs` #0 appears twice"), "{e}");
        let e = err(single(
            vec![run("cfs", 0, rec("fifo", RunKind::Measured))],
            vec![],
        ));
        assert!(e.contains("record of policy `fifo`"), "{e}");
        let e = err(single(
            vec![run("cfs", 0, rec("cfs", RunKind::Simulated))],
            vec![],
        ));
        assert!(e.contains("into `bounds`"), "{e}");
        let e = err(single(
            vec![run("cfs", 0, rec("cfs", RunKind::Measured))],
            vec![rec("srpt", RunKind::Measured)],
        ));
        assert!(e.contains("simulated record"), "{e}");
        let e = err(single(vec![], vec![]));
        assert!(e.contains("no measured runs"), "{e}");
    }

    #[test]
    fn gates_are_evaluated_into_the_report() {
        let r = testdata::report();
        assert_eq!(r.gates.len(), 2);
        assert!(r.gates[0].passed, "{}", r.gates[0].line());
        assert_eq!(r.gates[0].checks.len(), 1, "only colocated has auth");
        assert!(!r.gates[1].passed);
        assert!(!r.gates_passed());
        let eval = |g: &str| crate::parse_gate(g).unwrap().evaluate(&r);
        assert!(eval("goodput@sim:srpt>0").passed);
        assert_eq!(eval("goodput@sim:srpt>0").checks.len(), 2);
        let every = eval("*.p99_ms<1000000");
        assert!(every.passed);
        assert_eq!(every.checks.len(), 7);
        assert!(!eval("*.errors==0").passed, "measured runs have errors");
        assert!(eval("*.errors@sim:srpt==0").passed);
        let missing = eval("nowhere/auth.p99_ms<1");
        assert!(!missing.passed && missing.problem.unwrap().contains("no scenario `nowhere`"));
        let missing = eval("ghost.p99_ms<1");
        assert!(missing.problem.unwrap().contains("`ghost`"));
        let no_policy = eval("auth.p99_ms@rr<1000");
        assert!(!no_policy.passed && no_policy.checks[0].value.is_none());
        let wins = eval("colocated/auth.slo_attainment>=99%");
        assert!(wins.passed, "{}", wins.line());
    }
}
