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
        };
        GateReport {
            slokit_version: "0.1.0".into(),
            environment: "2 × CPU".into(),
            threshold: 0.05,
            confidence: 0.95,
            results: vec![
                r("spin", 0.10, Verdict::Regression),
                r("aes", 0.002, Verdict::Unchanged),
            ],
            warnings: vec!["noisy".into()],
        }
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
}
