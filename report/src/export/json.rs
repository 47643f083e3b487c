//! The JSON exporter: the report as schema `slokit.compare/1` (documented in
//! docs/report.md), which CI and other tools read back with
//! [`Report::from_json`].

use crate::export::Exporter;
use crate::{Report, ReportError};

/// Writes `slokit.compare/1` JSON.
#[derive(Debug, Clone, Copy)]
pub struct JsonExporter {
    /// Indented (default) or compact.
    pub pretty: bool,
}

impl Default for JsonExporter {
    fn default() -> Self {
        JsonExporter { pretty: true }
    }
}

impl Exporter for JsonExporter {
    fn extension(&self) -> &'static str {
        "json"
    }

    fn export(&self, report: &Report) -> Result<Vec<u8>, ReportError> {
        let mut out = if self.pretty {
            serde_json::to_vec_pretty(report)?
        } else {
            serde_json::to_vec(report)?
        };
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn round_trips_and_is_versioned() {
        let report = testdata::report();
        for pretty in [true, false] {
            let bytes = JsonExporter { pretty }.export(&report).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains("\"schema\""));
            let back = Report::from_json(&text).unwrap();
            assert_eq!(back, report);
        }
    }

    #[test]
    fn reads_reports_written_before_las_and_model_agreement() {
        let report = testdata::report();
        assert!(!report.scenarios[0].model_agreement.is_empty());
        assert_eq!(report.scenarios[0].headline.policy, "las");
        let mut v = serde_json::to_value(&report).unwrap();
        for s in v["scenarios"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("model_agreement");
            let h = s["headline"].as_object_mut().unwrap();
            for field in ["policy", "reference_short_p99_vs_cfs", "goodput_vs_cfs"] {
                assert!(h.remove(field).is_some(), "{field}");
            }
            for r in h["per_function"].as_array_mut().unwrap() {
                assert!(r
                    .as_object_mut()
                    .unwrap()
                    .remove("reference_p99_vs_cfs")
                    .is_some());
            }
        }
        let old = Report::from_json(&v.to_string()).unwrap();
        for s in &old.scenarios {
            assert!(s.model_agreement.is_empty());
            assert_eq!(
                s.headline.policy, "two-level",
                "older reports were about two-level"
            );
            assert_eq!(s.headline.goodput_vs_cfs, None);
            assert_eq!(s.headline.reference_short_p99_vs_cfs, None);
            assert!(s
                .headline
                .per_function
                .iter()
                .all(|r| r.reference_p99_vs_cfs.is_none()));
        }
        // Without the section, exporters render the report as before.
        let md = String::from_utf8(crate::MarkdownExporter.export(&old).unwrap()).unwrap();
        assert!(!md.contains("Simulated vs measured"));
    }

    #[test]
    fn refuses_other_schema_versions() {
        let mut v = serde_json::to_value(testdata::report()).unwrap();
        v["schema"] = "slokit.compare/2".into();
        let e = Report::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(
            e.contains("slokit.compare/2") && e.contains("slokit.compare/1"),
            "{e}"
        );
    }
}
