//! Gates in the style of k6 thresholds: `auth.slo_attainment>=0.99` is a
//! threshold on one metric of one function, evaluated against the
//! aggregated report; `slokit compare` exits 99 when one fails.
//!
//! Grammar (whitespace is allowed around the operator):
//!
//! ```text
//! gate     := [scenario "/"] [function "."] metric ["@" policy] op number ["%"]
//! function := label | "*"                      "*" = every function
//! policy   := name | "sim:" name               default: two-level (measured)
//! metric   := slo_attainment | p50_ms | p99_ms | p999_ms | mean_slowdown
//!           | p99_slowdown | share_slowdown_le_2 | errors | goodput
//! op       := "<" | "<=" | ">" | ">=" | "=="
//! ```
//!
//! Without a scenario the gate applies to every scenario that has the
//! function (at least one must). Without a function only `goodput` is
//! allowed: the scenario's total goodput. Values are means over
//! repetitions; a trailing `%` divides the number by 100. A metric a run
//! does not have (attainment without a deadline) fails the gate.
//!
//! The default policy stays two-level even when the report's headline is
//! about las (a gate means the same whatever the comparison ran); gate las
//! with `@las`.

use std::fmt as sfmt;

use serde::{Deserialize, Serialize};
use slokit_model::record::RunKind;

use crate::aggregate::{PolicyFigures, Report, ScenarioReport, REFERENCE};
use crate::ReportError;

/// What a gate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    SloAttainment,
    P50Ms,
    P99Ms,
    P999Ms,
    MeanSlowdown,
    P99Slowdown,
    ShareSlowdownLe2,
    Errors,
    Goodput,
}

impl Metric {
    /// Every metric, as written in gates.
    pub const ALL: [(&'static str, Metric); 9] = [
        ("slo_attainment", Metric::SloAttainment),
        ("p50_ms", Metric::P50Ms),
        ("p99_ms", Metric::P99Ms),
        ("p999_ms", Metric::P999Ms),
        ("mean_slowdown", Metric::MeanSlowdown),
        ("p99_slowdown", Metric::P99Slowdown),
        ("share_slowdown_le_2", Metric::ShareSlowdownLe2),
        ("errors", Metric::Errors),
        ("goodput", Metric::Goodput),
    ];

    /// The name used in gates.
    pub fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .expect("ALL lists every metric")
    }

    fn of(self, p: &PolicyFigures) -> Option<f64> {
        match self {
            Metric::SloAttainment => p.slo_attainment.map(|s| s.mean),
            Metric::P50Ms => Some(p.p50_ms.mean),
            Metric::P99Ms => Some(p.p99_ms.mean),
            Metric::P999Ms => Some(p.p999_ms.mean),
            Metric::MeanSlowdown => p.mean_slowdown.map(|s| s.mean),
            Metric::P99Slowdown => p.p99_slowdown.map(|s| s.mean),
            Metric::ShareSlowdownLe2 => p.share_slowdown_le_2.map(|s| s.mean),
            Metric::Errors => Some(p.errors.mean),
            Metric::Goodput => p.goodput_per_s.map(|s| s.mean),
        }
        .filter(|v| v.is_finite())
    }
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }

    /// Whether `value op threshold` holds (`==` within 1e-9 relative).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Eq => (value - threshold).abs() <= 1e-9 * threshold.abs().max(1.0),
        }
    }
}

/// Which functions a gate looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One function label.
    Function(String),
    /// Every function of the scenario.
    Every,
    /// The scenario as a whole (only `goodput`).
    Scenario,
}

/// A parsed gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub scenario: Option<String>,
    pub target: Target,
    pub metric: Metric,
    pub policy: String,
    /// Whether `policy` names a simulated run (`sim:` prefix).
    pub simulated: bool,
    pub op: Op,
    pub threshold: f64,
}

/// One evaluated (scenario, function) of a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    pub scenario: String,
    /// `None` for scenario-wide goodput.
    pub function: Option<String>,
    /// The mean over repetitions; `None` when the run lacks the metric.
    pub value: Option<f64>,
    pub passed: bool,
}

/// A gate's outcome: every check must pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The gate in canonical form.
    pub gate: String,
    pub passed: bool,
    pub checks: Vec<GateCheck>,
    /// Why the gate failed without checks (unknown scenario or function).
    pub problem: Option<String>,
}

impl GateResult {
    /// One line: `PASS colocated/auth.p99_ms@two-level < 50: 12.3`.
    pub fn line(&self) -> String {
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        if let Some(p) = &self.problem {
            return format!("{verdict} {}: {p}", self.gate);
        }
        let values: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                let v = c
                    .value
                    .map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
                let mark = if c.passed { "" } else { " ✗" };
                match &c.function {
                    Some(f) => format!("{}/{f} {v}{mark}", c.scenario),
                    None => format!("{} {v}{mark}", c.scenario),
                }
            })
            .collect();
        format!("{verdict} {}: {}", self.gate, values.join(", "))
    }
}

impl sfmt::Display for Gate {
    fn fmt(&self, f: &mut sfmt::Formatter<'_>) -> sfmt::Result {
        if let Some(s) = &self.scenario {
            write!(f, "{s}/")?;
        }
        match &self.target {
            Target::Function(l) => write!(f, "{l}.")?,
            Target::Every => write!(f, "*.")?,
            Target::Scenario => {}
        }
        let sim = if self.simulated { "sim:" } else { "" };
        write!(
            f,
            "{}@{sim}{} {} {}",
            self.metric.name(),
            self.policy,
            self.op.symbol(),
            self.threshold
        )
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}

/// Parses one gate; errors name the 1-based column and what was expected.
pub fn parse_gate(text: &str) -> Result<Gate, ReportError> {
    let err = |byte: usize, message: String| ReportError::GateSyntax {
        gate: text.to_string(),
        column: text[..byte.min(text.len())].chars().count() + 1,
        message,
    };
    let check_name = |s: &str, start: usize, what: &str| -> Result<(), ReportError> {
        if s.is_empty() {
            return Err(err(start, format!("expected a {what} name")));
        }
        match s.char_indices().find(|(_, c)| !is_name_char(*c)) {
            Some((i, c)) => Err(err(
                start + i,
                format!("`{c}` cannot appear in a {what} name (letters, digits, `_`, `-`)"),
            )),
            None => Ok(()),
        }
    };

    let Some(op_at) = text.find(['<', '>', '=', '!']) else {
        return Err(err(
            text.len(),
            "expected a comparison (`<`, `<=`, `>`, `>=`, `==`), e.g. `auth.slo_attainment>=0.99`"
                .into(),
        ));
    };
    let rest = &text[op_at..];
    let (op, op_len) = if rest.starts_with("<=") {
        (Op::Le, 2)
    } else if rest.starts_with(">=") {
        (Op::Ge, 2)
    } else if rest.starts_with("==") {
        (Op::Eq, 2)
    } else if rest.starts_with('<') {
        (Op::Lt, 1)
    } else if rest.starts_with('>') {
        (Op::Gt, 1)
    } else {
        return Err(err(
            op_at,
            "unknown operator; use `<`, `<=`, `>`, `>=` or `==`".into(),
        ));
    };

    // Right-hand side: a number, optionally with `%`.
    let rhs_start = op_at + op_len;
    let rhs = &text[rhs_start..];
    let lead = rhs.len() - rhs.trim_start().len();
    let num_start = rhs_start + lead;
    let mut num_text = rhs.trim();
    let percent = num_text.ends_with('%');
    if percent {
        num_text = num_text[..num_text.len() - 1].trim_end();
    }
    if num_text.is_empty() {
        return Err(err(
            num_start,
            format!("expected a number after `{}`", op.symbol()),
        ));
    }
    let mut threshold: f64 = num_text.parse().map_err(|_| {
        err(
            num_start,
            format!("`{num_text}` is not a number (write e.g. `0.99`, `50` or `99%`)"),
        )
    })?;
    if !threshold.is_finite() {
        return Err(err(num_start, "the threshold must be finite".into()));
    }
    if percent {
        threshold /= 100.0;
    }

    // Left-hand side.
    let lhs_full = &text[..op_at];
    let lhs_start = lhs_full.len() - lhs_full.trim_start().len();
    let lhs = lhs_full.trim();
    if lhs.is_empty() {
        return Err(err(
            lhs_start,
            "expected `[scenario/][function.]metric[@policy]` before the operator".into(),
        ));
    }
    let (scenario, path, path_start) = match lhs.split_once('/') {
        Some((s, p)) => {
            check_name(s, lhs_start, "scenario")?;
            (Some(s.to_string()), p, lhs_start + s.len() + 1)
        }
        None => (None, lhs, lhs_start),
    };
    let (path, policy_part) = match path.rsplit_once('@') {
        Some((p, pol)) => (p, Some((pol, path_start + p.len() + 1))),
        None => (path, None),
    };
    let (target, metric_text, metric_start) = match path.rsplit_once('.') {
        Some(("*", m)) => (Target::Every, m, path_start + 2),
        Some((f, m)) => {
            check_name(f, path_start, "function")?;
            (Target::Function(f.to_string()), m, path_start + f.len() + 1)
        }
        None => (Target::Scenario, path, path_start),
    };
    let Some(metric) = Metric::ALL
        .iter()
        .find(|(n, _)| *n == metric_text)
        .map(|(_, m)| *m)
    else {
        let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
        return Err(err(
            metric_start,
            format!(
                "unknown metric `{metric_text}`; metrics: {}",
                names.join(", ")
            ),
        ));
    };
    if target == Target::Scenario && metric != Metric::Goodput {
        return Err(err(
            metric_start,
            format!(
                "`{}` needs a function: write `auth.{0}` (one function) or `*.{0}` (every function)",
                metric.name()
            ),
        ));
    }
    let (policy, simulated) = match policy_part {
        None => (REFERENCE.to_string(), false),
        Some((p, start)) => {
            let (name, simulated, start) = match p.strip_prefix("sim:") {
                Some(n) => (n, true, start + 4),
                None => (p, false, start),
            };
            check_name(name, start, "policy")?;
            (name.to_string(), simulated)
        }
    };
    Ok(Gate {
        scenario,
        target,
        metric,
        policy,
        simulated,
        op,
        threshold,
    })
}

/// Parses several gates, stopping at the first error.
pub fn parse_gates<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Gate>, ReportError> {
    texts.iter().map(|t| parse_gate(t.as_ref())).collect()
}

impl Gate {
    /// Evaluates the gate against `report`.
    pub fn evaluate(&self, report: &Report) -> GateResult {
        let fail = |problem: String| GateResult {
            gate: self.to_string(),
            passed: false,
            checks: Vec::new(),
            problem: Some(problem),
        };
        let scenarios: Vec<&ScenarioReport> = match &self.scenario {
            Some(name) => match report.scenario(name) {
                Some(s) => vec![s],
                None => {
                    let names: Vec<&str> =
                        report.scenarios.iter().map(|s| s.name.as_str()).collect();
                    return fail(format!(
                        "no scenario `{name}` (scenarios: {})",
                        names.join(", ")
                    ));
                }
            },
            None => report.scenarios.iter().collect(),
        };
        let kind = if self.simulated {
            RunKind::Simulated
        } else {
            RunKind::Measured
        };
        let mut checks = Vec::new();
        for s in scenarios {
            let value_of = |label: &str| {
                let f = s.function(label)?;
                let figures = if self.simulated {
                    f.simulated(&self.policy)
                } else {
                    f.measured(&self.policy)
                };
                figures.and_then(|p| self.metric.of(p))
            };
            let mut check = |function: Option<String>, value: Option<f64>| {
                let passed = value.is_some_and(|v| self.op.holds(v, self.threshold));
                checks.push(GateCheck {
                    scenario: s.name.clone(),
                    function,
                    value,
                    passed,
                });
            };
            match &self.target {
                Target::Scenario => {
                    check(None, s.goodput_of(&self.policy, kind).map(|g| g.per_s.mean));
                }
                Target::Every => {
                    for f in &s.functions {
                        check(Some(f.label.clone()), value_of(&f.label));
                    }
                }
                Target::Function(label) => {
                    if s.function(label).is_some() || self.scenario.is_some() {
                        check(Some(label.clone()), value_of(label));
                    }
                }
            }
        }
        if checks.is_empty() {
            return fail(match &self.target {
                Target::Function(l) => format!("no scenario has a function `{l}`"),
                _ => "the report has no scenarios".to_string(),
            });
        }
        GateResult {
            gate: self.to_string(),
            passed: checks.iter().all(|c| c.passed),
            checks,
            problem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_form() {
        let g = parse_gate("colocated/auth.p99_ms@fifo < 50").unwrap();
        assert_eq!(g.scenario.as_deref(), Some("colocated"));
        assert_eq!(g.target, Target::Function("auth".into()));
        assert_eq!(g.metric, Metric::P99Ms);
        assert_eq!((g.policy.as_str(), g.simulated), ("fifo", false));
        assert_eq!((g.op, g.threshold), (Op::Lt, 50.0));
        assert_eq!(g.to_string(), "colocated/auth.p99_ms@fifo < 50");
    }

    #[test]
    fn defaults_percent_every_and_simulated() {
        let g = parse_gate("auth.slo_attainment>=99%").unwrap();
        assert_eq!(g.scenario, None);
        assert_eq!(g.policy, REFERENCE);
        assert!((g.threshold - 0.99).abs() < 1e-12);
        let g = parse_gate("*.errors==0").unwrap();
        assert_eq!((g.target, g.op), (Target::Every, Op::Eq));
        let g = parse_gate("goodput@sim:srpt>10").unwrap();
        assert_eq!(g.target, Target::Scenario);
        assert!(g.simulated);
        assert_eq!(g.policy, "srpt");
    }

    fn error(text: &str) -> (usize, String) {
        match parse_gate(text).unwrap_err() {
            ReportError::GateSyntax {
                column, message, ..
            } => (column, message),
            e => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(error("auth.slo_attainment>=x").0, 22);
        assert_eq!(error("auth.slo_attainment>=").0, 22);
        let (col, msg) = error("auth.p98_ms<5");
        assert_eq!(col, 6);
        assert!(msg.contains("p98_ms") && msg.contains("p99_ms"), "{msg}");
        let (col, msg) = error("auth.p99_ms");
        assert_eq!(col, 12);
        assert!(msg.contains("comparison"), "{msg}");
        assert_eq!(error("auth.p99_ms!=3").0, 12);
        let (col, msg) = error("p99_ms<3");
        assert_eq!(col, 1);
        assert!(msg.contains("needs a function"), "{msg}");
        assert_eq!(error("col ocated/auth.p99_ms<3").0, 4);
        assert_eq!(error("auth.p99_ms@fi fo<3").0, 15);
        let shown = parse_gate("auth.p99_ms<>").unwrap_err().to_string();
        assert!(shown.contains("column 13"), "{shown}");
    }

    #[test]
    fn error_display_points_at_the_column() {
        let shown = parse_gate("auth.slo_attainment>=x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            "gate `auth.slo_attainment>=x`: `x` is not a number (write e.g. `0.99`, `50` or `99%`) (at column 22)\n  auth.slo_attainment>=x\n                       ^"
        );
    }

    #[test]
    fn operators_hold_as_written() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0) && !Op::Gt.holds(2.0, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0) && !Op::Eq.holds(0.1, 0.0));
    }
}
