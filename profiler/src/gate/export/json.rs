//! JSON export: the [`GateReport`] as is, plus `regression` and
//! `decided_by` (the metric, in words) for scripts.

use super::Exporter;
use crate::error::ProfileError;
use crate::gate::GateReport;

/// Pretty JSON of the whole report.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn serialize(&self, report: &GateReport) -> Result<Vec<u8>, ProfileError> {
        let mut v = serde_json::to_value(report).map_err(|e| ProfileError::Export {
            format: "JSON",
            message: e.to_string(),
        })?;
        v["regression"] = serde_json::Value::Bool(report.has_regression());
        v["decided_by"] = serde_json::Value::String(report.decided_by());
        let mut out = serde_json::to_vec_pretty(&v).map_err(|e| ProfileError::Export {
            format: "JSON",
            message: e.to_string(),
        })?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_flags_the_regression() {
        let r = crate::gate::export::tests::report();
        let bytes = JsonExporter.serialize(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["regression"], true);
        let back: GateReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
