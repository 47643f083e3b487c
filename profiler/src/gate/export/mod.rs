//! Gate report exporters, one per format behind one trait (hyperfine's
//! `export/`): a terminal table, JSON, Markdown (for PR comments) and JUnit
//! XML (for CI test reports).

mod json;
mod junit;
mod markdown;
mod table;

pub use json::JsonExporter;
pub use junit::JunitExporter;
pub use markdown::MarkdownExporter;
pub use table::TableExporter;

use super::GateReport;
use crate::error::ProfileError;

/// Turns a [`GateReport`] into bytes of one format.
pub trait Exporter {
    /// The report in this exporter's format.
    fn serialize(&self, report: &GateReport) -> Result<Vec<u8>, ProfileError>;
}

/// The exporter for a format name (`table`, `json`, `markdown`, `junit`).
pub fn exporter_for(format: &str) -> Option<Box<dyn Exporter>> {
    Some(match format {
        "table" => Box::new(TableExporter),
        "json" => Box::new(JsonExporter),
        "markdown" | "md" => Box::new(MarkdownExporter),
        "junit" => Box::new(JunitExporter),
        _ => return None,
    })
}

/// `+12.3 %` style.
pub(crate) fn pct(x: f64) -> String {
    format!("{:+.1} %", x * 100.0)
}

/// Microseconds, readable at any scale (the workspace's one formatter).
pub(crate) use slokit_model::units::human_us as us;

/// An instruction count with thousands separators: `25,043,602`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The baseline, current and deadline cells of a result: median times, or
/// under the instruction metric the counts (no time was measured then).
pub(crate) fn value_cells(r: &GateReport, f: &super::FunctionResult) -> [String; 3] {
    match r.instructions.get(&f.function) {
        Some(c) => [
            format!("{} instructions", count(c.baseline)),
            format!("{} instructions", count(c.current)),
            format!("{} (not measured)", us(f.baseline_deadline_us)),
        ],
        None => [
            us(f.baseline_median_us),
            us(f.current_median_us),
            format!(
                "{} → {}",
                us(f.baseline_deadline_us),
                us(f.current_deadline_us)
            ),
        ],
    }
}

/// The column titles of the baseline and current values.
pub(crate) fn value_titles(r: &GateReport) -> [&'static str; 2] {
    match r.metric {
        crate::Metric::WallTime => ["baseline median", "current median"],
        crate::Metric::Instructions => ["baseline count", "current count"],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gate::{FunctionResult, Verdict};

    pub(crate) fn report() -> GateReport {
        let r = |name: &str, change: f64, verdict| FunctionResult {
            function: name.into(),
            baseline: format!("profiles/{name}.toml").into(),
            baseline_median_us: 1000.0,
            current_median_us: 1000.0 * (1.0 + change),
            change,
            change_ci: [change - 0.01, change + 0.01],
            significant: change.abs() > 0.01,
            baseline_deadline_us: 1600.0,
            current_deadline_us: 1600.0 * (1.0 + change),
            verdict,
            remeasured: verdict == Verdict::Regression,
            notes: vec!["a <note> & more".into()],
            paired: None,
        };
        GateReport {
            slokit_version: "0.1.0".into(),
            environment: "2 × CPU".into(),
            ..GateReport::new(
                String::new(),
                &crate::gate::GateSettings::default(),
                vec![
                    r("spin", 0.10, Verdict::Regression),
                    r("aes", 0.002, Verdict::Unchanged),
                ],
                vec!["noisy".into()],
            )
        }
    }

    /// The same results as a paired gate against `./old/slokit`.
    pub(crate) fn paired_report() -> GateReport {
        let mut r = report();
        r.mode = crate::gate::GateMode::Paired;
        r.against = Some("./old/slokit".into());
        for f in &mut r.results {
            f.paired = Some(crate::gate::against::PairedDetails {
                runner: crate::gate::against::PairedRunner::Worker,
                old: "./old/slokit".into(),
                new: "./target/release/slokit".into(),
                pairs: 60,
                runs_per_side: 1200,
                elapsed_s: 12.0,
            });
        }
        r
    }

    #[test]
    fn every_format_names_every_function_and_verdict() {
        for f in ["table", "json", "markdown", "junit"] {
            let out =
                String::from_utf8(exporter_for(f).unwrap().serialize(&report()).unwrap()).unwrap();
            assert!(out.contains("spin") && out.contains("aes"), "{f}: {out}");
            assert!(out.to_lowercase().contains("regression"), "{f}: {out}");
        }
        assert!(exporter_for("yaml").is_none());
    }

    /// The same functions gated on instruction counts.
    pub(crate) fn instructions_report() -> GateReport {
        use crate::gate::instructions::InstructionChange;
        use crate::instructions::{CountScope, CountSource};
        let mut r = report();
        r.metric = crate::Metric::Instructions;
        for f in &r.results {
            let current = (25_000_000.0 * (1.0 + f.change)) as u64;
            r.instructions.insert(
                f.function.clone(),
                InstructionChange {
                    baseline: 25_000_000,
                    current,
                    current_min: current,
                    current_max: current,
                    source: CountSource::Valgrind,
                    tool: "valgrind-3.19.0 callgrind".into(),
                    scope: CountScope::Invocation,
                },
            );
        }
        r
    }

    #[test]
    fn every_format_says_which_metric_decided() {
        assert_eq!(count(25_043_602), "25,043,602");
        assert_eq!(count(999), "999");
        for f in ["table", "json", "markdown", "junit"] {
            let e = exporter_for(f).unwrap();
            let wall = String::from_utf8(e.serialize(&report()).unwrap()).unwrap();
            assert!(wall.contains("decided by wall time"), "{f}: {wall}");
            let ins = String::from_utf8(e.serialize(&instructions_report()).unwrap()).unwrap();
            let current = if f == "json" {
                "27500000"
            } else {
                "27,500,000"
            };
            assert!(
                ins.contains("decided by instructions executed")
                    && ins.contains("callgrind")
                    && ins.contains(current),
                "{f}: {ins}"
            );
            assert!(!ins.contains("decided by wall time"), "{f}: {ins}");
        }
    }

    #[test]
    fn every_format_says_which_mode_ran() {
        for f in ["table", "json", "markdown", "junit"] {
            let e = exporter_for(f).unwrap();
            let committed = String::from_utf8(e.serialize(&report()).unwrap()).unwrap();
            assert!(committed.contains("committed-profile"), "{f}: {committed}");
            let paired = String::from_utf8(e.serialize(&paired_report()).unwrap()).unwrap();
            assert!(
                paired.contains("paired") && paired.contains("./old/slokit"),
                "{f}: {paired}"
            );
            assert!(!paired.contains("committed-profile"), "{f}: {paired}");
        }
    }
}
