//! Replay of the Azure Functions 2021 per-invocation trace (Zhang et al.,
//! "Faster and Cheaper Serverless Computing on Harvested Resources",
//! SOSP'21): rows of `app,func,end_timestamp,duration` in seconds. An
//! invocation arrived at `end_timestamp − duration`; it is replayed at that
//! offset from the earliest arrival, as `spin` for `duration`.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use serde_json::json;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use super::{csv_error, open, At};
use crate::arrivals::rng;
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
}

impl Default for Azure2021Options {
    fn default() -> Self {
        Azure2021Options {
            scale: 1.0,
            window_s: None,
            max_duration_ms: None,
            function: "spin".into(),
            seed: 0,
        }
    }
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
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let at = At {
            path,
            record: &record,
        };
        let end: f64 = at.parse(c_end, "end_timestamp", "seconds")?;
        let dur: f64 = at.parse(c_dur, "duration", "seconds")?;
        if !(dur.is_finite() && dur >= 0.0) {
            return Err(at.error(c_dur, format!("duration `{dur}` must be ≥ 0")));
        }
        if !end.is_finite() {
            return Err(at.error(c_end, "end_timestamp must be finite"));
        }
        if opts.scale < 1.0 && rng.random::<f64>() >= opts.scale {
            continue;
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
        rows.push((end - dur, f, (dur * 1e3).min(cap)));
    }
    let first = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
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
}
