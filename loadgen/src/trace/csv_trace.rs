//! The plain trace format anyone can write by hand or export from another
//! tool: `time_ms,function[,params_json]`, one invocation per row, an
//! optional header row. Rows may come in any order; they are replayed sorted
//! by time (ties keep file order).

use std::path::Path;

use serde_json::Value;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use super::{csv_error, open, At};
use crate::LoadgenError;

/// Builds the schedule of the CSV trace at `path` (`seed` is recorded only:
/// the trace fixes every arrival).
pub fn schedule(path: &Path, seed: u64) -> Result<Schedule, LoadgenError> {
    let mut reader = open(path, false)?;
    let mut functions: Vec<ScheduledFunction> = Vec::new();
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut extras = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let at = At {
            path,
            record: &record,
        };
        if i == 0 && record.get(0) == Some("time_ms") {
            continue;
        }
        let time_ms: f64 = at.parse(0, "time_ms", "a time in milliseconds")?;
        if !(time_ms.is_finite() && time_ms >= 0.0) {
            return Err(at.error(0, format!("time_ms `{time_ms}` must be ≥ 0")));
        }
        let name = at.field(1, "function")?;
        if name.is_empty() {
            return Err(at.error(1, "function name is empty"));
        }
        let params = match record.get(2).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(serde_json::from_str::<Value>(p).map_err(|e| {
                at.error(2, format!("params_json is not JSON ({e}); quote the field, e.g. \"{{\"\"ms\"\": 5}}\""))
            })?),
        };
        if record.len() > 3 {
            return Err(at.error(
                3,
                "too many fields (expected time_ms,function[,params_json]; quote JSON with commas)",
            ));
        }
        let function = match functions.iter().position(|f| f.label == name) {
            Some(i) => i as u32,
            None => {
                functions.push(ScheduledFunction {
                    label: name.to_string(),
                    function: name.to_string(),
                    params: Value::Object(Default::default()),
                    service_us: None,
                    deadline_us: None,
                });
                functions.len() as u32 - 1
            }
        };
        arrivals.push(Arrival::with_extra(
            (time_ms * 1e6).round() as u64,
            function,
            &mut extras,
            params,
            None,
        ));
    }
    arrivals.sort_by_key(|a| a.at_ns);
    let schedule = Schedule {
        source: format!("csv {}", path.display()),
        seed,
        functions,
        arrivals,
        extras,
    };
    schedule.validate().map_err(LoadgenError::Schedule)?;
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trace.csv");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn reads_rows_with_and_without_params() {
        let (_d, p) =
            write("time_ms,function,params_json\n5,auth,\n1.5,spin,\"{\"\"ms\"\": 3}\"\n2,auth\n");
        let s = schedule(&p, 7).unwrap();
        assert_eq!(s.functions.len(), 2);
        assert_eq!(s.arrivals.len(), 3);
        assert_eq!(s.arrivals[0].at_ns, 1_500_000);
        assert_eq!(s.own_params(&s.arrivals[0]), Some(&json!({"ms": 3})));
        assert_eq!(s.functions[s.arrivals[2].function as usize].label, "auth");
        assert_eq!(s.seed, 7);
    }

    #[test]
    fn malformed_rows_name_file_line_and_column() {
        let (_d, p) = write("0,auth\n1,auth\nsoon,auth\n");
        let e = schedule(&p, 0).unwrap_err().to_string();
        assert!(e.contains("trace.csv:3:1:") && e.contains("`soon`"), "{e}");
        let (_d, p) = write("0,auth\n1,spin,{not json}\n");
        let e = schedule(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("trace.csv:2:3:") && e.contains("not JSON"),
            "{e}"
        );
        let (_d, p) = write("0,auth\n1\n");
        let e = schedule(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("trace.csv:2:2:") && e.contains("`function`"),
            "{e}"
        );
    }
}
