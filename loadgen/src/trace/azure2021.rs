//! Replay of the Azure Functions 2021 per-invocation trace (Zhang et al.,
//! "Faster and Cheaper Serverless Computing on Harvested Resources",
//! SOSP'21): rows of `app,func,end_timestamp,duration` in seconds. An
//! invocation arrived at `end_timestamp − duration`; it is replayed at that
//! offset from the earliest arrival, as `spin` for `duration`. A duration or
//! an offset past [`MAX_TRACE_TIME_S`](crate::limits::MAX_TRACE_TIME_S), and
//! more rows than `max_invocations`, are refused naming the row.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use serde_json::json;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use super::{csv_error, error_at, open, At};
use crate::arrivals::rng;
use crate::limits::{
    time_in_bounds, DEFAULT_MAX_INVOCATIONS, MAX_TRACE_TIME_S, MAX_TRACE_TIME_TEXT,
};
use crate::LoadgenError;

/// What to replay from the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Azure2021Options {
    /// Keep each invocation with this probability (thinning keeps the
    /// process's shape and scales its rate).
    pub scale: f64,
    /// Replay only arrivals in `[from, to)` seconds after the first.
    pub window_s: Option<(f64, f64)>,
    /// Upper bound on one duration, ms.
    pub max_duration_ms: Option<f64>,
    /// Host function the invocations run (`spin`).
    pub function: String,
    pub seed: u64,
    /// Refuse a trace that keeps more invocations than this
    /// (`--max-invocations`).
    pub max_invocations: u64,
}

impl Default for Azure2021Options {
    fn default() -> Self {
        Azure2021Options {
            scale: 1.0,
            window_s: None,
            max_duration_ms: None,
            function: "spin".into(),
            seed: 0,
            max_invocations: DEFAULT_MAX_INVOCATIONS,
        }
    }
}

/// A row kept for its error message: where it is and when it arrived.
struct Extreme {
    arrival_s: f64,
    end_text: String,
    position: csv::Position,
}

/// Builds the schedule of the trace file `path`.
pub fn schedule(path: &Path, opts: &Azure2021Options) -> Result<Schedule, LoadgenError> {
    if !(opts.scale > 0.0 && opts.scale <= 1.0) {
        return Err(LoadgenError::invalid(
            "--scale",
            format!(
                "for a per-invocation trace must be in (0, 1] (thinning), got {}",
                opts.scale
            ),
        ));
    }
    let mut reader = open(path, true)?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let col = |name: &str| -> Result<usize, LoadgenError> {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| LoadgenError::Trace {
                path: path.to_path_buf(),
                line: 1,
                column: 0,
                message: format!(
                    "header has no column `{name}` (expected app,func,end_timestamp,duration)"
                ),
            })
    };
    let (c_app, c_func, c_end, c_dur) = (
        col("app")?,
        col("func")?,
        col("end_timestamp")?,
        col("duration")?,
    );
    let cap = opts.max_duration_ms.unwrap_or(f64::INFINITY);
    // (arrival s, function index, duration ms)
    let mut rows: Vec<(f64, u32, f64)> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut functions: Vec<ScheduledFunction> = Vec::new();
    let mut rng = rng(opts.seed);
    let (mut earliest, mut latest): (Option<Extreme>, Option<Extreme>) = (None, None);
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let at = At {
            path,
            record: &record,
        };
        let end: f64 = at.parse(c_end, "end_timestamp", "seconds")?;
        let dur: f64 = at.parse(c_dur, "duration", "seconds")?;
        if !time_in_bounds(dur) {
            return Err(at.error(
                c_dur,
                format!(
                    "field `duration` is `{}`, expected seconds from 0 to {MAX_TRACE_TIME_TEXT}",
                    at.field(c_dur, "duration")?
                ),
            ));
        }
        if !end.is_finite() {
            return Err(at.error(c_end, "end_timestamp must be finite"));
        }
        if opts.scale < 1.0 && rng.random::<f64>() >= opts.scale {
            continue;
        }
        if rows.len() as u64 >= opts.max_invocations {
            return Err(at.error(
                c_end,
                format!(
                    "the trace keeps more than {} invocations (--max-invocations) at --scale {}; lower --scale or raise --max-invocations",
                    opts.max_invocations, opts.scale
                ),
            ));
        }
        let arrival_s = end - dur;
        let extreme = || {
            Ok::<_, LoadgenError>(Extreme {
                arrival_s,
                end_text: at.field(c_end, "end_timestamp")?.to_string(),
                position: record
                    .position()
                    .cloned()
                    .unwrap_or_else(csv::Position::new),
            })
        };
        if earliest.as_ref().is_none_or(|e| arrival_s < e.arrival_s) {
            earliest = Some(extreme()?);
        }
        if latest.as_ref().is_none_or(|e| arrival_s > e.arrival_s) {
            latest = Some(extreme()?);
        }
        let app = at.field(c_app, "app")?;
        let func = at.field(c_func, "func")?;
        let key = format!("{app}/{func}");
        let next = index.len() as u32;
        let f = *index.entry(key).or_insert_with(|| {
            let short: String = func.chars().take(8).collect();
            let mut label = format!("azure21-{short}");
            if functions
                .iter()
                .any(|f: &ScheduledFunction| f.label == label)
            {
                label = format!("azure21-{short}-{next}");
            }
            functions.push(ScheduledFunction {
                label,
                function: opts.function.clone(),
                params: json!({}),
                service_us: None,
                deadline_us: None,
            });
            next
        });
        rows.push((arrival_s, f, (dur * 1e3).min(cap)));
    }
    let first = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(earliest), Some(latest)) = (earliest, latest) {
        if latest.arrival_s - earliest.arrival_s > MAX_TRACE_TIME_S {
            // The culprit is the end farther from the bulk of the trace (the
            // lower median: of two rows, the later is the suspect).
            let median = rows[(rows.len() - 1) / 2].0;
            let (row, side) = if latest.arrival_s - median >= median - earliest.arrival_s {
                (latest, "after")
            } else {
                (earliest, "before")
            };
            return Err(error_at(
                path,
                &row.position,
                c_end,
                format!(
                    "field `end_timestamp` is `{}`: the invocation arrives more than {MAX_TRACE_TIME_TEXT} {side} the rest of the trace, which no replay can wait for",
                    row.end_text
                ),
            ));
        }
    }
    let mut extras = Vec::new();
    let arrivals = rows
        .into_iter()
        .map(|(t, function, ms)| (t - first, function, ms))
        .filter(|(t, ..)| opts.window_s.is_none_or(|(from, to)| *t >= from && *t < to))
        .map(|(t, function, ms)| {
            let from = opts.window_s.map_or(0.0, |w| w.0);
            Arrival::with_extra(
                ((t - from) * 1e9).round() as u64,
                function,
                &mut extras,
                Some(json!({ "ms": ms })),
                Some(ms * 1e3),
            )
        })
        .collect();
    let schedule = Schedule {
        source: format!("azure2021 {} ×{}", path.display(), opts.scale),
        seed: opts.seed,
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

    #[test]
    fn arrival_is_end_minus_duration() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "app,func,end_timestamp,duration\n\
             a1,f1,10.5,0.5\n\
             a1,f2,10.2,1.0\n\
             a2,f1,12.0,0.25\n",
        )
        .unwrap();
        let s = schedule(&p, &Azure2021Options::default()).unwrap();
        assert_eq!(s.functions.len(), 3);
        let t: Vec<u64> = s.arrivals.iter().map(|a| a.at_ns).collect();
        assert_eq!(t, vec![0, 800_000_000, 2_550_000_000]);
        assert_eq!(s.own_service_us(&s.arrivals[0]), Some(1e6));
        assert_eq!(s.own_params(&s.arrivals[0]).unwrap()["ms"], 1000.0);
        assert!(s.functions[0].label.starts_with("azure21-f1"));
    }

    #[test]
    fn malformed_row_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "app,func,end_timestamp,duration\na,f,1.0,0.1\na,f,2.0,fast\n",
        )
        .unwrap();
        let e = schedule(&p, &Azure2021Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:3:4:") && e.contains("`fast`"), "{e}");
    }

    fn trace(rows: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, format!("app,func,end_timestamp,duration\n{rows}")).unwrap();
        (dir, p)
    }

    #[test]
    fn times_beyond_the_bound_are_refused_naming_the_row() {
        let (_d, p) = trace("a,f,1.0,0.1\na,f,1e20,0.1\na,f,3.0,0.1\n");
        let e = schedule(&p, &Azure2021Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv:3:3:") && e.contains("`1e20`") && e.contains("31 days"),
            "{e}"
        );
        let (_d, p) = trace("a,f,1.0,0.1\na,f,2.0,0.1\na,f,-1e20,0.1\n");
        let e = schedule(&p, &Azure2021Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:4:3:") && e.contains("before"), "{e}");
        let (_d, p) = trace("a,f,1.0,0.1\na,f,2.0,1e20\n");
        let e = schedule(&p, &Azure2021Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:3:4:") && e.contains("`1e20`"), "{e}");
        // Two weeks (the length of the real trace) is fine.
        let (_d, p) = trace("a,f,0.0,0.0\na,f,1209600.0,0.5\n");
        assert!(schedule(&p, &Azure2021Options::default()).is_ok());
    }

    #[test]
    fn more_rows_than_the_limit_are_refused() {
        let (_d, p) = trace("a,f,1.0,0.1\na,f,2.0,0.1\na,f,3.0,0.1\n");
        let o = |max_invocations| Azure2021Options {
            max_invocations,
            ..Default::default()
        };
        assert_eq!(schedule(&p, &o(3)).unwrap().arrivals.len(), 3);
        let e = schedule(&p, &o(2)).unwrap_err().to_string();
        assert!(
            e.contains("t.csv:4:") && e.contains("--max-invocations"),
            "{e}"
        );
    }
}
