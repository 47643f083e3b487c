//! The plain trace format anyone can write by hand or export from another
//! tool: `time_ms,function[,params_json]`, one invocation per row, an
//! optional header row. Rows may come in any order; they are replayed sorted
//! by time (ties keep file order). Times past
//! [`MAX_TRACE_TIME_S`](crate::limits::MAX_TRACE_TIME_S) and more rows than
//! `max_invocations` are refused with the line that crossed the bound.

use std::path::Path;

use serde_json::Value;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use super::{csv_error, open, At};
use crate::limits::{time_in_bounds, MAX_TRACE_TIME_TEXT};
use crate::LoadgenError;

/// Builds the schedule of the CSV trace at `path` (`seed` is recorded only:
/// the trace fixes every arrival), refusing a trace of more than
/// `max_invocations` rows.
pub fn schedule(path: &Path, seed: u64, max_invocations: u64) -> Result<Schedule, LoadgenError> {
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
        if !time_in_bounds(time_ms / 1e3) {
            return Err(at.error(
                0,
                format!(
                    "field `time_ms` is `{}`, expected a time from 0 to {MAX_TRACE_TIME_TEXT}",
                    at.field(0, "time_ms")?
                ),
            ));
        }
        if arrivals.len() as u64 >= max_invocations {
            return Err(at.error(
                0,
                format!("the trace has more than {max_invocations} invocations (--max-invocations); replay a part of it or raise --max-invocations"),
            ));
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
        let s = schedule(&p, 7, 100).unwrap();
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
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(e.contains("trace.csv:3:1:") && e.contains("`soon`"), "{e}");
        let (_d, p) = write("0,auth\n1,spin,{not json}\n");
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(
            e.contains("trace.csv:2:3:") && e.contains("not JSON"),
            "{e}"
        );
        let (_d, p) = write("0,auth\n1\n");
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(
            e.contains("trace.csv:2:2:") && e.contains("`function`"),
            "{e}"
        );
    }

    #[test]
    fn crlf_endings_and_blank_lines_do_not_shift_the_line() {
        let (_d, p) = write("time_ms,function\r\n0,spin\r\n1,spin\r\nlater,spin\r\n");
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(e.contains("trace.csv:4:1:"), "{e}");
        let (_d, p) = write("0,spin\n\n\n1,spin\nlater,spin\n");
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(e.contains("trace.csv:5:1:"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_named_without_debug_output() {
        let (_d, p) = write("");
        std::fs::write(&p, b"time_ms,function\n0,spin\n1,sp\xffin\n").unwrap();
        let e = schedule(&p, 0, 100).unwrap_err().to_string();
        assert!(e.contains("trace.csv:3:2:") && e.contains("UTF-8"), "{e}");
        assert!(!e.contains("Utf8") && !e.contains('{'), "{e}");
    }

    #[test]
    fn times_out_of_bounds_and_too_many_rows_are_refused() {
        for bad in ["1e20", "inf", "NaN", "-1"] {
            let (_d, p) = write(&format!("0,spin\n{bad},spin\n"));
            let e = schedule(&p, 0, 100).unwrap_err().to_string();
            assert!(
                e.contains("trace.csv:2:1:")
                    && e.contains(&format!("`{bad}`"))
                    && e.contains("31 days"),
                "{e}"
            );
        }
        let (_d, p) = write("0,spin\n1,spin\n2,spin\n");
        assert_eq!(schedule(&p, 0, 3).unwrap().arrivals.len(), 3);
        let e = schedule(&p, 0, 2).unwrap_err().to_string();
        assert!(
            e.contains("trace.csv:3:1:") && e.contains("--max-invocations"),
            "{e}"
        );
    }
}
