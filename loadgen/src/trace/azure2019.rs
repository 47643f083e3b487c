//! Replay of the Azure Functions 2019 trace (Shahrad et al., "Serverless in
//! the Wild", ATC'20): `invocations.csv` counts invocations of each function
//! in each minute of a day, `durations.csv` gives percentiles of their
//! execution times. The counts say nothing about arrival times inside a
//! minute, so, as vHive's invitro does, each minute's n arrivals are drawn
//! from n+1 exponential (or uniform) gaps scaled to the minute and rotated by
//! a random offset so minutes do not all start with a burst. Each invocation
//! gets its own duration, drawn as a uniform quantile interpolated between
//! the percentile columns (0, 1, 25, 50, 75, 99, 100), and is sent to `spin`
//! as `{"ms": d}` with `service_us = d·1000`.
//!
//! `invocations.csv` is read twice: first to check every count and to bound
//! the schedule's size (Σ ⌈count × scale⌉ over the window, which stochastic
//! rounding never exceeds) against `max_invocations`, then to draw the
//! arrivals. So a count of 10¹² or a `--scale` of 10⁵ is refused, naming
//! the cell that crossed the limit, before anything is allocated.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rand::Rng;
use rand_distr::{Distribution, Exp1};
use serde_json::json;
use slokit_model::{Arrival, Schedule, ScheduledFunction};

use super::{csv_error, open, round_stochastic, At};
use crate::arrivals::rng;
use crate::limits::{count_text, time_in_bounds, DEFAULT_MAX_INVOCATIONS, MAX_TRACE_TIME_TEXT};
use crate::LoadgenError;

/// Quantiles of the `percentile_Average_*` columns, in order.
const QUANTILES: [f64; 7] = [0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0];
const PERCENTILE_COLUMNS: [&str; 7] = [
    "percentile_Average_0",
    "percentile_Average_1",
    "percentile_Average_25",
    "percentile_Average_50",
    "percentile_Average_75",
    "percentile_Average_99",
    "percentile_Average_100",
];

/// How arrival times are drawn inside a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iat {
    /// Exponential gaps (a Poisson process conditioned on the minute's count).
    Exponential,
    /// Uniform gaps (smoother than Poisson).
    Uniform,
}

/// What to replay from the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Azure2019Options {
    /// Minute window `[start, end)` in the trace's 1-based minute columns
    /// (`540..570` is the 30 minutes 540…569).
    pub minutes: (u32, u32),
    /// Factor on every per-minute count (`0.1` keeps a tenth, stochastically
    /// rounded so expectations are kept).
    pub scale: f64,
    pub iat: Iat,
    /// Upper bound on one drawn duration, ms.
    pub max_duration_ms: Option<f64>,
    /// Host function the invocations run (`spin`).
    pub function: String,
    pub seed: u64,
    /// Refuse a window that would hold more invocations than this
    /// (`--max-invocations`).
    pub max_invocations: u64,
}

impl Default for Azure2019Options {
    fn default() -> Self {
        Azure2019Options {
            minutes: (1, 31),
            scale: 1.0,
            iat: Iat::Exponential,
            max_duration_ms: None,
            function: "spin".into(),
            seed: 0,
            max_invocations: DEFAULT_MAX_INVOCATIONS,
        }
    }
}

/// Execution-time percentiles of one function, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationPercentiles(pub [f64; 7]);

impl DurationPercentiles {
    /// The duration at quantile `u` ∈ [0, 1], linear between neighbouring
    /// percentile columns.
    pub fn at(&self, u: f64) -> f64 {
        let p = &self.0;
        for i in 1..QUANTILES.len() {
            if u <= QUANTILES[i] {
                let (q0, q1) = (QUANTILES[i - 1], QUANTILES[i]);
                let w = (u - q0) / (q1 - q0);
                return p[i - 1] + w * (p[i] - p[i - 1]);
            }
        }
        p[6]
    }
}

fn key(at: &At<'_>, cols: &[usize; 3]) -> Result<String, LoadgenError> {
    Ok(format!(
        "{}/{}/{}",
        at.field(cols[0], "HashOwner")?,
        at.field(cols[1], "HashApp")?,
        at.field(cols[2], "HashFunction")?
    ))
}

fn column(path: &Path, headers: &csv::StringRecord, name: &str) -> Result<usize, LoadgenError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| LoadgenError::Trace {
            path: path.to_path_buf(),
            line: 1,
            column: 0,
            message: format!(
                "header has no column `{name}` (is this an Azure Functions 2019 trace file?)"
            ),
        })
}

/// Reads `durations.csv`: percentiles per `owner/app/function` key.
pub fn read_durations(path: &Path) -> Result<HashMap<String, DurationPercentiles>, LoadgenError> {
    let mut reader = open(path, true)?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let ids = [
        column(path, &headers, "HashOwner")?,
        column(path, &headers, "HashApp")?,
        column(path, &headers, "HashFunction")?,
    ];
    let mut pcols = [0usize; 7];
    for (i, name) in PERCENTILE_COLUMNS.iter().enumerate() {
        pcols[i] = column(path, &headers, name)?;
    }
    let mut out = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let at = At {
            path,
            record: &record,
        };
        let mut p = [0.0; 7];
        for (i, c) in pcols.iter().enumerate() {
            p[i] = at.parse::<f64>(*c, PERCENTILE_COLUMNS[i], "a duration in ms")?;
            if !time_in_bounds(p[i] / 1e3) {
                return Err(at.error(
                    *c,
                    format!(
                        "field `{}` is `{}`, expected a duration in ms from 0 to {MAX_TRACE_TIME_TEXT}",
                        PERCENTILE_COLUMNS[i],
                        at.field(*c, PERCENTILE_COLUMNS[i])?
                    ),
                ));
            }
        }
        // Percentiles of 30 s averages are monotone in the published data;
        // enforce it so a slightly inconsistent row cannot yield negatives.
        for i in 1..7 {
            p[i] = p[i].max(p[i - 1]);
        }
        out.insert(key(&at, &ids)?, DurationPercentiles(p));
    }
    Ok(out)
}

/// Draws `n` arrival offsets (ns) inside one minute.
fn minute_times(n: u64, iat: Iat, rng: &mut impl Rng, out: &mut Vec<u64>) {
    if n == 0 {
        return;
    }
    const MINUTE_NS: f64 = 60e9;
    let mut cumulative = Vec::with_capacity(n as usize + 1);
    let mut sum = 0.0;
    for _ in 0..=n {
        sum += match iat {
            Iat::Exponential => Exp1.sample(rng),
            Iat::Uniform => rng.random::<f64>(),
        };
        cumulative.push(sum);
    }
    let offset = rng.random::<f64>() * MINUTE_NS;
    for c in &cumulative[..n as usize] {
        let t = (c / sum * MINUTE_NS + offset) % MINUTE_NS;
        out.push(t as u64);
    }
}

/// The columns of `invocations.csv` a window reads.
struct Window<'a> {
    path: &'a Path,
    /// HashOwner, HashApp, HashFunction.
    ids: [usize; 3],
    minute_cols: &'a [usize],
    first_minute: u32,
}

impl Window<'_> {
    /// Reads every row, calling `visit` with its position, its
    /// `owner/app/function` key, its HashFunction and the counts of the
    /// window's minutes (each checked: finite and ≥ 0).
    fn for_each_row(
        &self,
        mut visit: impl FnMut(&At<'_>, &str, &str, &[f64]) -> Result<(), LoadgenError>,
    ) -> Result<(), LoadgenError> {
        let path = self.path;
        let mut reader = open(path, true)?;
        let mut counts = Vec::with_capacity(self.minute_cols.len());
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let at = At {
                path,
                record: &record,
            };
            let id = key(&at, &self.ids)?;
            let hash = at.field(self.ids[2], "HashFunction")?;
            counts.clear();
            for (k, col) in self.minute_cols.iter().enumerate() {
                let minute = (self.first_minute as usize + k).to_string();
                let raw: f64 = at.parse(*col, &minute, "an invocation count")?;
                if !(raw.is_finite() && raw >= 0.0) {
                    return Err(at.error(*col, format!("invocation count `{raw}` must be ≥ 0")));
                }
                counts.push(raw);
            }
            visit(&at, &id, hash, &counts)?;
        }
        Ok(())
    }
}

/// Builds the schedule of the minute window `opts.minutes` of the trace in
/// `dir` (`invocations.csv` + `durations.csv`).
pub fn schedule(dir: &Path, opts: &Azure2019Options) -> Result<Schedule, LoadgenError> {
    let (start, end) = opts.minutes;
    if start < 1 || end <= start || end > 1441 {
        return Err(LoadgenError::invalid(
            "--minutes",
            format!("`{start}-{end}` must be A-B with 1 ≤ A < B ≤ 1441 (minute columns A…B−1 of the day)"),
        ));
    }
    if !(opts.scale.is_finite() && opts.scale > 0.0) {
        return Err(LoadgenError::invalid(
            "--scale",
            format!("must be positive, got {}", opts.scale),
        ));
    }
    if let Some(cap) = opts.max_duration_ms {
        if !(cap.is_finite() && cap >= 0.0) {
            return Err(LoadgenError::invalid(
                "--max-duration-ms",
                format!("must be ≥ 0, got {cap}"),
            ));
        }
    }
    let durations = read_durations(&dir.join("durations.csv"))?;
    let path = dir.join("invocations.csv");
    let path = path.as_path();
    let headers = open(path, true)?
        .headers()
        .map_err(|e| csv_error(path, e))?
        .clone();
    let ids = [
        column(path, &headers, "HashOwner")?,
        column(path, &headers, "HashApp")?,
        column(path, &headers, "HashFunction")?,
    ];
    let minute_cols: Vec<usize> = (start..end)
        .map(|m| column(path, &headers, &m.to_string()))
        .collect::<Result<_, _>>()?;
    let window = Window {
        path,
        ids,
        minute_cols: &minute_cols,
        first_minute: start,
    };

    // Pass 1: every field checked, the size bounded.
    let max = opts.max_invocations;
    let mut bound = 0.0;
    window.for_each_row(|at, id, hash, counts| {
        if !durations.contains_key(id) {
            return Err(at.error(
                ids[2],
                format!("function {hash} has invocations but no row in durations.csv"),
            ));
        }
        for (k, raw) in counts.iter().enumerate() {
            let n = (raw * opts.scale).ceil();
            bound += n;
            if bound > max as f64 {
                let minute = start as usize + k;
                let asked = if n > max as f64 {
                    format!(
                        "minute {minute} alone asks for {} invocations (count {raw} × --scale {})",
                        count_text(n),
                        opts.scale
                    )
                } else {
                    format!(
                        "up to minute {minute} of this row, --minutes {start}-{end} at --scale {} asks for {} invocations",
                        opts.scale,
                        count_text(bound)
                    )
                };
                return Err(at.error(
                    minute_cols[k],
                    format!("{asked}, more than --max-invocations {max}; lower --scale, take fewer --minutes or raise --max-invocations"),
                ));
            }
        }
        Ok(())
    })?;

    // Pass 2: the arrivals.
    let mut rng = rng(opts.seed);
    let cap = opts.max_duration_ms.unwrap_or(f64::INFINITY);
    let mut functions: Vec<ScheduledFunction> = Vec::new();
    let mut labels = HashSet::new();
    let mut arrivals: Vec<Arrival> = Vec::with_capacity(bound as usize);
    let mut extras = Vec::new();
    let mut times = Vec::new();
    window.for_each_row(|_, id, hash, counts| {
        let pct = durations[id];
        let index = functions.len() as u32;
        let mut count = 0usize;
        for (k, raw) in counts.iter().enumerate() {
            let n = round_stochastic(raw * opts.scale, &mut rng);
            times.clear();
            minute_times(n, opts.iat, &mut rng, &mut times);
            let minute_ns = k as u64 * 60_000_000_000;
            for t in &times {
                let ms = pct.at(rng.random::<f64>()).min(cap);
                arrivals.push(Arrival::with_extra(
                    minute_ns + t,
                    index,
                    &mut extras,
                    Some(json!({ "ms": ms })),
                    Some(ms * 1e3),
                ));
            }
            count += times.len();
        }
        if count == 0 {
            return Ok(());
        }
        let mut len = 8.min(hash.len());
        let label = loop {
            let l = format!("azure-{}", &hash[..len]);
            if labels.insert(l.clone()) || len == hash.len() {
                break l;
            }
            len += 4.min(hash.len() - len);
        };
        let median = pct.0[3].min(cap);
        functions.push(ScheduledFunction {
            label,
            function: opts.function.clone(),
            params: json!({ "ms": median }),
            service_us: Some(median * 1e3),
            deadline_us: None,
        });
        Ok(())
    })?;
    arrivals.sort_by_key(|a| a.at_ns);
    let schedule = Schedule {
        source: format!(
            "azure2019 {} minutes {start}-{end} ×{} ({} IAT)",
            dir.display(),
            opts.scale,
            match opts.iat {
                Iat::Exponential => "exponential",
                Iat::Uniform => "uniform",
            }
        ),
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
    use std::path::PathBuf;

    fn sample() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../traces/azure2019-sample10")
    }

    /// Sum of the minute columns [start, end) of the sample, read
    /// independently of the reader under test.
    fn expected_total(start: usize, end: usize) -> f64 {
        let text = std::fs::read_to_string(sample().join("invocations.csv")).unwrap();
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (start..end)
                    .map(|m| f[3 + m].parse::<f64>().unwrap())
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn counts_match_the_trace_window_times_scale() {
        let total = expected_total(540, 570);
        let full = schedule(
            &sample(),
            &Azure2019Options {
                minutes: (540, 570),
                scale: 1.0,
                seed: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            full.arrivals.len() as f64,
            total,
            "scale 1 keeps every count"
        );
        let tenth = schedule(
            &sample(),
            &Azure2019Options {
                minutes: (540, 570),
                scale: 0.1,
                seed: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let n = tenth.arrivals.len() as f64;
        // Stochastic rounding of 300 function-minutes: sd ≤ √(300)/2 ≈ 9.
        assert!((n - total * 0.1).abs() < 60.0, "{n} vs {}", total * 0.1);
        assert!(tenth.duration_s() <= 30.0 * 60.0 && tenth.duration_s() > 29.0 * 60.0);
        assert!(tenth.validate().is_ok());
        // Labels as documented, one per function with arrivals.
        assert!(tenth
            .functions
            .iter()
            .all(|f| f.label.len() == "azure-".len() + 8
                && f.label.starts_with("azure-")
                && f.function == "spin"));
        assert!(tenth.functions.iter().any(|f| f.label == "azure-308ecb6c"));
        // The function with no invocations in the window is left out.
        assert!(tenth.functions.iter().all(|f| f.label != "azure-8203ff88"));
    }

    #[test]
    fn durations_are_drawn_within_the_percentiles() {
        let s = schedule(
            &sample(),
            &Azure2019Options {
                minutes: (600, 610),
                scale: 0.2,
                seed: 3,
                ..Default::default()
            },
        )
        .unwrap();
        let busy = s
            .functions
            .iter()
            .position(|f| f.label == "azure-308ecb6c")
            .unwrap() as u32;
        let mut d: Vec<f64> = s
            .arrivals
            .iter()
            .filter(|a| a.function == busy)
            .map(|a| s.own_service_us(a).unwrap() / 1e3)
            .collect();
        assert!(d.len() > 100);
        d.sort_by(f64::total_cmp);
        // percentiles 0/1/25/50/75/99/100: 0,6,11,14,17,24,669
        assert!(d.iter().all(|x| (0.0..=669.0).contains(x)));
        let q = |p: f64| d[(p * d.len() as f64) as usize];
        assert!((11.0..=17.0).contains(&q(0.5)), "median {}", q(0.5));
        assert!((6.0..=14.0).contains(&q(0.25)), "p25 {}", q(0.25));
        assert!((14.0..=24.0).contains(&q(0.75)), "p75 {}", q(0.75));
        // Every arrival carries its spin parameters.
        let a = s.arrivals.iter().find(|a| a.function == busy).unwrap();
        assert_eq!(
            s.own_params(a).unwrap()["ms"].as_f64().unwrap() * 1e3,
            s.own_service_us(a).unwrap()
        );
    }

    #[test]
    fn cap_and_quantile_interpolation() {
        let p = DurationPercentiles([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 1000.0]);
        assert_eq!(p.at(0.0), 0.0);
        assert_eq!(p.at(0.5), 30.0);
        assert!((p.at(0.375) - 25.0).abs() < 1e-9);
        assert_eq!(p.at(1.0), 1000.0);
        let s = schedule(
            &sample(),
            &Azure2019Options {
                minutes: (540, 545),
                scale: 0.05,
                max_duration_ms: Some(100.0),
                seed: 4,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s
            .arrivals
            .iter()
            .all(|a| s.own_service_us(a).unwrap() <= 100_000.0));
    }

    #[test]
    fn seeded_and_minutes_spread() {
        let o = Azure2019Options {
            minutes: (540, 542),
            scale: 0.5,
            seed: 11,
            ..Default::default()
        };
        let a = schedule(&sample(), &o).unwrap();
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&schedule(&sample(), &o).unwrap()).unwrap()
        );
        // Arrivals of the second minute fall in [60 s, 120 s).
        assert!(a.arrivals.iter().any(|x| x.at_ns >= 60_000_000_000));
        assert!(a.arrivals.iter().all(|x| x.at_ns < 120_000_000_000));
    }

    #[test]
    fn malformed_trace_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            sample().join("durations.csv"),
            dir.path().join("durations.csv"),
        )
        .unwrap();
        let text = std::fs::read_to_string(sample().join("invocations.csv")).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut fields: Vec<String> = lines[3].split(',').map(String::from).collect();
        fields[4 + 540] = "12x".into(); // minute 541 of the third data row
        lines[3] = fields.join(",");
        std::fs::write(dir.path().join("invocations.csv"), lines.join("\n")).unwrap();
        let e = schedule(
            dir.path(),
            &Azure2019Options {
                minutes: (540, 545),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invocations.csv:4:545:"), "{e}");
        assert!(e.contains("`12x`"), "{e}");
        let e = schedule(
            dir.path(),
            &Azure2019Options {
                minutes: (540, 1500),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--minutes"), "{e}");
    }

    /// A trace directory with `invocations` (rows of the 1440 minute
    /// counts, `sep`-separated lines) and one durations row per function.
    fn small_trace(rows: &[Vec<&str>], sep: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let minutes: Vec<String> = (1..=1440).map(|m| m.to_string()).collect();
        let mut lines = vec![format!(
            "HashOwner,HashApp,HashFunction,Trigger,{}",
            minutes.join(",")
        )];
        let mut durations = vec![format!(
            "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,{}",
            PERCENTILE_COLUMNS.join(",")
        )];
        for (i, counts) in rows.iter().enumerate() {
            let mut all = vec!["0"; 1440];
            all[..counts.len()].copy_from_slice(counts);
            lines.push(format!("o,a,f{i},http,{}", all.join(",")));
            durations.push(format!("o,a,f{i},1,1,1,1,1,2,3,4,5,6,7"));
        }
        std::fs::write(dir.path().join("invocations.csv"), lines.join(sep) + sep).unwrap();
        std::fs::write(dir.path().join("durations.csv"), durations.join("\n")).unwrap();
        dir
    }

    fn window(minutes: (u32, u32), scale: f64) -> Azure2019Options {
        Azure2019Options {
            minutes,
            scale,
            ..Default::default()
        }
    }

    #[test]
    fn the_line_is_right_with_crlf_endings() {
        let rows = [vec!["1", "2"], vec!["3", "4"], vec!["5", "12x"]];
        for sep in ["\n", "\r\n"] {
            let dir = small_trace(&rows, sep);
            let e = schedule(dir.path(), &window((1, 3), 1.0))
                .unwrap_err()
                .to_string();
            // Line 4 (the third data row), field 6 (minute 2).
            assert!(
                e.contains("invocations.csv:4:6:") && e.contains("`12x`"),
                "{sep:?}: {e}"
            );
        }
    }

    #[test]
    fn a_huge_count_or_scale_is_refused_before_building() {
        let dir = small_trace(&[vec!["1", "2"], vec!["3", "1e12"]], "\n");
        let e = schedule(dir.path(), &window((1, 3), 1.0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invocations.csv:3:6:")
                && e.contains("minute 2 alone asks for 1000000000000")
                && e.contains("--max-invocations 10000000"),
            "{e}"
        );
        // Each cell small, the window too big: named where it crossed.
        let dir = small_trace(&[vec!["100", "100"], vec!["100", "100"]], "\n");
        let e = schedule(dir.path(), &window((1, 3), 30_000.0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invocations.csv:3:6:")
                && e.contains("--scale 30000")
                && e.contains("12000000"),
            "{e}"
        );
        // At the limit exactly, it builds.
        let ok = schedule(
            dir.path(),
            &Azure2019Options {
                max_invocations: 400,
                ..window((1, 3), 1.0)
            },
        )
        .unwrap();
        assert_eq!(ok.arrivals.len(), 400);
        let e = schedule(
            dir.path(),
            &Azure2019Options {
                max_invocations: 399,
                ..window((1, 3), 1.0)
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--max-invocations 399"), "{e}");
    }

    #[test]
    fn durations_beyond_the_bound_are_refused() {
        let dir = small_trace(&[vec!["1"]], "\n");
        std::fs::write(
            dir.path().join("durations.csv"),
            format!(
                "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,{}\no,a,f0,1,1,1,1,1,2,3,4,5,6,1e20\n",
                PERCENTILE_COLUMNS.join(",")
            ),
        )
        .unwrap();
        let e = schedule(dir.path(), &window((1, 2), 1.0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("durations.csv:2:14:")
                && e.contains("percentile_Average_100")
                && e.contains("`1e20`"),
            "{e}"
        );
    }
}
