//! The open-loop client: replays a precomputed [`Schedule`] against HTTP
//! endpoints and returns a [`RunRecord`].
//!
//! Measurement rules (DESIGN.md): sends follow the schedule whatever the
//! replies do, on as many keep-alive connections as needed (a new one is
//! opened when all are busy); response time is measured from the *intended*
//! send time, so a late send or a slow server cannot hide queueing
//! (coordinated omission, after wrk2), with the time from the actual send
//! reported beside it; failures and timeouts are SLO misses, counted by
//! kind and never dropped, but never a latency (response times are of
//! successful replies only; [`require_success`] refuses a run with none);
//! an optional `max_inflight` cap counts every send it
//! delayed or dropped. Send accuracy (lateness, achieved vs target rate) is
//! part of the record, with warnings when it is poor.
//!
//! It keeps hyper, not `reqwest`, for speed: the shards own their keep-alive
//! connections and send paths, so no higher-level client's pooling or
//! per-request overhead reaches the send-accuracy figures.
//!
//! Presentation stays outside: a [`Reporter`] with no-op default hooks
//! receives progress from the calling thread.

mod output;
mod shard;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::Uri;
use slokit_model::record::{Percentiles, RunKind, SendAccuracy, RUN_SCHEMA};
use slokit_model::{Environment, FunctionRecorder, FunctionStats, RunRecord, Schedule};

pub use shard::EXEC_HEADER;
use shard::{Counters, Endpoint, Plan, Route, ShardInput, ShardResult};

use crate::LoadgenError;

/// What to do with a send when `max_inflight` invocations are in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapMode {
    /// Hold it until one finishes (counted in `delayed_by_cap`; its
    /// lateness shows in the send accuracy and its response time).
    #[default]
    Delay,
    /// Do not send it: an SLO miss recorded as a connect error (counted in
    /// `dropped_by_cap`).
    Drop,
}

/// How to send a schedule.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL (`http://127.0.0.1:8080`) for functions without an entry in
    /// `urls`.
    pub target: Option<String>,
    /// Path under `target`; `{function}` and `{label}` are substituted.
    pub path_template: String,
    /// Full URL per schedule label (one host per function), overriding
    /// `target` + `path_template`.
    pub urls: HashMap<String, String>,
    /// An invocation without a full reply this long after its actual send
    /// is a timeout.
    pub timeout: Duration,
    /// Cap on invocations in flight (`None`: as many as the schedule needs).
    pub max_inflight: Option<usize>,
    pub cap_mode: CapMode,
    /// After a stop request, how long to wait for replies in flight.
    pub grace: Duration,
    /// Sending threads (each its own runtime, connections and recorders).
    pub threads: usize,
    /// Keep-alive connections each sending thread opens per target before
    /// time zero (more are opened whenever all are busy).
    pub connections: usize,
    /// Spin (yield-poll) instead of sleeping this close to a send.
    pub spin: Duration,
    /// Pin sending thread i to `cpus[i % len]` (empty: no pinning).
    pub cpus: Vec<usize>,
    /// Connect to every target before the run and fail fast if one is down.
    pub probe: bool,
    /// HdrHistogram interval log (one interval per second).
    pub hlog: Option<PathBuf>,
    /// One CSV row per invocation.
    pub csv: Option<PathBuf>,
    /// Raised (by Ctrl-C, see [`ctrl_c_flag`]) to stop sending early.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            target: None,
            path_template: "/invoke/{function}".into(),
            urls: HashMap::new(),
            timeout: Duration::from_secs(30),
            max_inflight: None,
            cap_mode: CapMode::Delay,
            grace: Duration::from_secs(5),
            threads: 1,
            connections: 4,
            spin: Duration::from_millis(2),
            cpus: Vec::new(),
            probe: true,
            hlog: None,
            csv: None,
            stop: None,
        }
    }
}

/// A snapshot of a run in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub elapsed_s: f64,
    /// Length of the schedule, seconds.
    pub duration_s: f64,
    pub total: u64,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Receives a run's progress; every hook defaults to doing nothing, so
/// sinks implement what they show. Called from the thread that called
/// [`run_blocking`], never from the sending threads.
pub trait Reporter {
    fn started(&self, _schedule: &Schedule, _cfg: &ClientConfig) {}
    /// About ten times a second.
    fn progress(&self, _progress: &Progress) {}
    /// A stop was requested; replies in flight get `grace`.
    fn stopping(&self, _grace: Duration) {}
    /// A warning about the measurement (also in `RunRecord.notes`).
    fn warning(&self, _message: &str) {}
    fn finished(&self, _record: &RunRecord) {}
}

/// A reporter that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}

/// A flag raised by the first Ctrl-C (SIGINT); a second Ctrl-C exits at once
/// with status 130. Pass it as [`ClientConfig::stop`].
pub fn ctrl_c_flag() -> Result<Arc<AtomicBool>, LoadgenError> {
    let flag = Arc::new(AtomicBool::new(false));
    let err = |e: std::io::Error| {
        LoadgenError::Runtime(format!("cannot install the Ctrl-C handler: {e}"))
    };
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        flag.clone(),
    )
    .map_err(err)?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).map_err(err)?;
    Ok(flag)
}

fn parse_url(url: &str) -> Result<(SocketAddr, HeaderValue, String), LoadgenError> {
    let bad = |m: String| LoadgenError::invalid("--target", m);
    let uri: Uri = url.parse().map_err(|e| {
        bad(format!(
            "`{url}` is not a URL ({e}); e.g. http://127.0.0.1:8080"
        ))
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(bad(format!(
                "`{url}`: scheme `{other}` is not supported (plain http only)"
            )))
        }
        None => return Err(bad(format!("`{url}` has no scheme; write http://{url}"))),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad(format!("`{url}` has no host")))?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve `{host}`: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("`{host}` resolves to no address")))?;
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|e| bad(format!("`{url}`: bad host ({e})")))?;
    let path = uri.path().trim_end_matches('/').to_string();
    Ok((addr, host_header, path))
}

/// Resolves every function of `schedule` to an endpoint and a path.
fn plan(schedule: &Schedule, cfg: &ClientConfig) -> Result<Plan, LoadgenError> {
    let base = cfg.target.as_deref().map(parse_url).transpose()?;
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut endpoint_of = |addr: SocketAddr, host: HeaderValue, url: &str| -> usize {
        if let Some(i) = endpoints.iter().position(|e| e.addr == addr) {
            return i;
        }
        endpoints.push(Endpoint {
            addr,
            host,
            url: url.to_string(),
        });
        endpoints.len() - 1
    };
    let mut routes = Vec::new();
    let mut bodies = Vec::new();
    for f in &schedule.functions {
        let (endpoint, path) = if let Some(url) = cfg.urls.get(&f.label) {
            let (addr, host, path) = parse_url(url)?;
            let uri: Uri = url.parse().expect("parsed above");
            let pq = uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string());
            let _ = path;
            (endpoint_of(addr, host, url), pq)
        } else if let Some((addr, host, prefix)) = &base {
            let path = format!(
                "{prefix}{}",
                cfg.path_template
                    .replace("{function}", &f.function)
                    .replace("{label}", &f.label)
            );
            (
                endpoint_of(
                    *addr,
                    host.clone(),
                    cfg.target.as_deref().unwrap_or_default(),
                ),
                path,
            )
        } else {
            return Err(LoadgenError::invalid(
                "--target",
                format!(
                    "no target URL for function `{}`: pass --target (or a URL for this label)",
                    f.label
                ),
            ));
        };
        let uri: Uri = path.parse().map_err(|e| {
            LoadgenError::invalid(
                "--path-template",
                format!("`{path}` is not a valid path ({e})"),
            )
        })?;
        routes.push(Route { endpoint, uri });
        bodies.push(Bytes::from(
            serde_json::to_vec(&f.params).expect("JSON values serialise"),
        ));
    }
    Ok(Plan {
        endpoints,
        routes,
        bodies,
        labels: schedule.functions.iter().map(|f| f.label.clone()).collect(),
        functions: schedule
            .functions
            .iter()
            .map(|f| f.function.clone())
            .collect(),
        deadlines: schedule.functions.iter().map(|f| f.deadline_us).collect(),
    })
}

fn probe(endpoints: &[Endpoint]) -> Result<(), LoadgenError> {
    for e in endpoints {
        TcpStream::connect_timeout(&e.addr, Duration::from_secs(2)).map_err(|error| {
            LoadgenError::Unreachable {
                url: e.url.clone(),
                error,
            }
        })?;
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one: an open-loop client
/// against a slow server needs one socket per invocation in flight.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn validate(schedule: &Schedule, cfg: &ClientConfig) -> Result<(), LoadgenError> {
    schedule.validate().map_err(LoadgenError::Schedule)?;
    if cfg.threads == 0 || cfg.threads > 64 {
        return Err(LoadgenError::invalid(
            "--threads",
            format!("must be 1…64, got {}", cfg.threads),
        ));
    }
    if cfg.timeout.is_zero() {
        return Err(LoadgenError::invalid("--timeout", "must be positive"));
    }
    if cfg.max_inflight == Some(0) {
        return Err(LoadgenError::invalid("--max-inflight", "must be ≥ 1"));
    }
    Ok(())
}

/// Replays `schedule` open-loop and returns the run record (kind
/// `Measured`; `policy` and `monitor` are left `None` for the caller).
/// Blocks the calling thread, which reports progress to `reporter`; the
/// sending runs on `cfg.threads` threads of its own.
pub fn run_blocking(
    schedule: &Schedule,
    cfg: &ClientConfig,
    reporter: &dyn Reporter,
) -> Result<RunRecord, LoadgenError> {
    validate(schedule, cfg)?;
    let plan = plan(schedule, cfg)?;
    if cfg.probe {
        probe(&plan.endpoints)?;
    }
    raise_nofile_limit();
    let environment = Environment::probe();
    let shards = cfg.threads.min(schedule.arrivals.len().max(1));
    let stop = cfg
        .stop
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    let counters = Arc::new(Counters::default());
    let (csv_tx, csv_thread) = match &cfg.csv {
        Some(p) => {
            let (tx, h) = output::spawn_csv_writer(p, plan.labels.clone())?;
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let started_wall = SystemTime::now();
    let mut hlog = match &cfg.hlog {
        Some(p) => Some(output::HlogWriter::create(
            p,
            plan.labels.clone(),
            shards,
            started_wall,
        )?),
        None => None,
    };
    let (iv_tx, iv_rx) = crossbeam_channel::unbounded();
    reporter.started(schedule, cfg);
    // Time zero is set by the shards once all have their connections.
    let start_cell = Arc::new(OnceLock::new());
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let spawned = Instant::now();
    let total = schedule.arrivals.len() as u64;
    let results: Vec<Result<ShardResult, String>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for id in 0..shards {
            let input = ShardInput {
                id,
                shards,
                schedule,
                plan: plan.clone(),
                cfg,
                start: start_cell.clone(),
                ready: ready.clone(),
                stop: stop.clone(),
                counters: counters.clone(),
                csv: csv_tx.clone(),
                intervals: hlog.as_ref().map(|_| iv_tx.clone()),
            };
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[id % cfg.cpus.len()]);
            let h = std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn_scoped(scope, move || {
                    if let Some(cpu) = cpu {
                        // Best effort: an unavailable CPU leaves the thread unpinned.
                        let _ = slokit_sys::cpu::pin_current_thread(&[cpu]);
                    }
                    shard::run_shard(input)
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    handles.clear();
                    return vec![Err(format!("cannot start a sending thread: {e}"))];
                }
            }
        }
        let mut told_stop = false;
        let mut hlog_error = None;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            if !told_stop && stop.load(Ordering::Relaxed) {
                told_stop = true;
                reporter.stopping(cfg.grace);
            }
            reporter.progress(&Progress {
                elapsed_s: start_cell.get().map_or(0.0, |s| {
                    Instant::now().saturating_duration_since(*s).as_secs_f64()
                }),
                duration_s: schedule.duration_s(),
                total,
                sent: counters.sent.load(Ordering::Relaxed),
                completed: counters.completed.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
            });
            if let Some(w) = hlog.as_mut() {
                for iv in iv_rx.try_iter() {
                    if let Err(e) = w.add(iv) {
                        hlog_error.get_or_insert(e);
                    }
                }
            }
        }
        let out: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a sending thread panicked".into()))
            })
            .collect();
        if let Some(w) = hlog.as_mut() {
            for iv in iv_rx.try_iter() {
                if let Err(e) = w.add(iv) {
                    hlog_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = hlog_error {
            return vec![Err(e.to_string())];
        }
        out
    });
    drop(csv_tx);
    let mut shard_results = Vec::new();
    for r in results {
        shard_results.push(r.map_err(LoadgenError::Runtime)?);
    }
    if let Some(w) = hlog {
        w.finish()?;
    }
    let mut notes = Vec::new();
    if let Some(h) = csv_thread {
        h.join()
            .map_err(|_| LoadgenError::Runtime("the CSV writer thread panicked".into()))??;
    }
    let start = start_cell.get().copied().unwrap_or(spawned);
    let record = assemble(
        schedule,
        &plan,
        shard_results,
        start,
        started_wall,
        environment,
        &mut notes,
    );
    for n in &record.notes {
        reporter.warning(n);
    }
    reporter.finished(&record);
    Ok(record)
}

/// Fails when no invocation of the run got a successful reply: such a run
/// measured nothing but failures (it has no response time at all), and a
/// caller should not carry on as if it had measured something.
pub fn require_success(record: &RunRecord) -> Result<(), LoadgenError> {
    if record.functions.iter().any(|f| f.ok > 0) {
        return Ok(());
    }
    let mut all = FunctionRecorder::new("", "", None).stats();
    for f in &record.functions {
        all.invocations += f.invocations;
        all.http_errors += f.http_errors;
        all.timeouts += f.timeouts;
        all.connect_errors += f.connect_errors;
        all.protocol_errors += f.protocol_errors;
    }
    Err(LoadgenError::NoSuccess {
        sent: all.invocations,
        failures: if all.invocations == 0 {
            "none was sent (stopped before the first send)".into()
        } else {
            format!("all failed ({})", all.failure_kinds())
        },
    })
}

/// Async wrapper of [`run_blocking`] for callers already inside a tokio
/// runtime: the blocking replay runs on `spawn_blocking`.
pub async fn run(
    schedule: Arc<Schedule>,
    cfg: ClientConfig,
    reporter: Arc<dyn Reporter + Send + Sync>,
) -> Result<RunRecord, LoadgenError> {
    tokio::task::spawn_blocking(move || run_blocking(&schedule, &cfg, reporter.as_ref()))
        .await
        .map_err(|e| LoadgenError::Runtime(format!("the replay task failed: {e}")))?
}

/// Lateness p99 above which the record carries a warning, µs.
pub const LATENESS_WARN_US: f64 = 1000.0;
/// Relative achieved-vs-target rate error above which it warns.
pub const RATE_WARN: f64 = 0.01;

fn assemble(
    schedule: &Schedule,
    plan: &Plan,
    shards: Vec<ShardResult>,
    start: Instant,
    started_wall: SystemTime,
    environment: Environment,
    notes: &mut Vec<String>,
) -> RunRecord {
    let mut recorders: Vec<FunctionRecorder> = (0..schedule.functions.len())
        .map(|i| FunctionRecorder::new(&plan.labels[i], &plan.functions[i], plan.deadlines[i]))
        .collect();
    let mut lateness = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("bounds");
    let (mut sent, mut delayed, mut dropped, mut csv_dropped, mut aborted, mut unsent) =
        (0, 0, 0, 0, 0, 0);
    let mut stopped = false;
    let mut first_i: Option<u64> = None;
    let mut last_i: Option<u64> = None;
    let mut first_a: Option<Instant> = None;
    let mut last_a: Option<Instant> = None;
    let mut end = start;
    for s in &shards {
        for (r, o) in recorders.iter_mut().zip(&s.recorders) {
            r.merge(o);
        }
        lateness.add(&s.lateness_ns).expect("same bounds");
        sent += s.sent;
        delayed += s.delayed_by_cap;
        dropped += s.dropped_by_cap;
        csv_dropped += s.csv_dropped;
        aborted += s.aborted_in_flight;
        unsent += s.unsent;
        stopped |= s.stopped;
        first_i = first_i
            .min(s.first_intended_ns)
            .or(first_i)
            .or(s.first_intended_ns);
        last_i = last_i.max(s.last_intended_ns);
        first_a = match (first_a, s.first_actual) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_a = last_a.max(s.last_actual);
        end = end.max(s.end);
    }
    let really_sent = sent - dropped;
    let (target_rate, achieved_rate) = match (first_i, last_i, first_a, last_a) {
        (Some(fi), Some(li), Some(fa), Some(la)) if really_sent >= 2 && li > fi => {
            let intended_span = (li - fi) as f64 / 1e9;
            let actual_span = la.saturating_duration_since(fa).as_secs_f64();
            let n = (really_sent - 1) as f64;
            (
                n / intended_span,
                if actual_span > 0.0 {
                    n / actual_span
                } else {
                    0.0
                },
            )
        }
        _ => (0.0, 0.0),
    };
    let lateness_us = Percentiles::of(&lateness, 1000.0);
    if lateness_us.count > 0 && lateness_us.p99 > LATENESS_WARN_US {
        notes.push(format!(
            "send lateness p99 is {:.0} µs (> {LATENESS_WARN_US:.0} µs): the load generator could not keep the schedule; response times from the intended send time still include the delay",
            lateness_us.p99
        ));
    }
    if target_rate > 0.0 && ((achieved_rate / target_rate) - 1.0).abs() > RATE_WARN {
        notes.push(format!(
            "achieved send rate {achieved_rate:.1}/s is {:+.1} % off the target {target_rate:.1}/s",
            (achieved_rate / target_rate - 1.0) * 100.0
        ));
    }
    if delayed > 0 {
        notes.push(format!(
            "{delayed} sends were delayed by the --max-inflight cap"
        ));
    }
    if dropped > 0 {
        notes.push(format!(
            "{dropped} sends were dropped by the --max-inflight cap (counted as misses)"
        ));
    }
    if stopped {
        notes.push(format!(
            "stopped early: {unsent} of {} scheduled invocations were not sent; {aborted} still in flight after the grace period counted as timeouts",
            schedule.arrivals.len()
        ));
    }
    let functions: Vec<FunctionStats> = recorders.iter().map(|r| r.stats()).collect();
    for f in functions.iter().filter(|f| f.invocations > 0 && f.ok == 0) {
        notes.push(format!(
            "`{}`: none of its {} invocations succeeded ({}), so it has no response times",
            f.label,
            f.invocations,
            f.failure_kinds()
        ));
    }
    if csv_dropped > 0 {
        notes.push(format!(
            "{csv_dropped} rows were left out of the CSV file (writer too slow); the record and histograms are complete"
        ));
    }
    RunRecord {
        schema: RUN_SCHEMA.to_string(),
        slokit_version: slokit_model::VERSION.to_string(),
        kind: RunKind::Measured,
        policy: None,
        monitor: None,
        source: schedule.source.clone(),
        seed: schedule.seed,
        environment,
        started_unix_ms: started_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        duration_s: end.saturating_duration_since(start).as_secs_f64(),
        functions,
        send: Some(SendAccuracy {
            target_rate_per_s: target_rate,
            achieved_rate_per_s: achieved_rate,
            lateness_us,
            delayed_by_cap: delayed,
            dropped_by_cap: dropped,
        }),
        notes: std::mem::take(notes),
    }
}
