//! One sending shard: a thread with a single-threaded tokio runtime that
//! paces its share of the schedule, keeps a pool of keep-alive HTTP/1.1
//! connections (hyper) and records into thread-local recorders.
//!
//! Pacing: tokio's timer has a 1 ms granularity, too coarse for a 100 µs
//! send accuracy. The sender sleeps on the timer until `spin` before the
//! intended time and then spin-yields (`yield_now`): every yield lets the
//! runtime poll the socket driver without blocking, so replies keep being
//! read while the sender waits, and the send happens within microseconds of
//! its intended time. The cost is one busy CPU while arrivals are dense —
//! the load generator's CPU in slokit's placement.
//!
//! The hot path allocates only what hyper needs for a request; recording is
//! histogram increments into shard-local [`FunctionRecorder`]s, merged once
//! at the end.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use slokit_model::{FunctionRecorder, Outcome, Sample, Schedule};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::output::{Interval, Row};
use super::{CapMode, ClientConfig};

/// Header in which slokit's host reports the execution time of a request.
pub const EXEC_HEADER: &str = slokit_model::contract::EXEC_US_HEADER;

type Sender = SendRequest<Full<Bytes>>;

/// A host:port the shard connects to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub url: String,
}

/// Where one function's requests go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub endpoint: usize,
    pub uri: Uri,
}

/// Everything a shard needs that does not change during the run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub endpoints: Vec<Endpoint>,
    pub routes: Vec<Route>,
    /// Serialised default parameters per function.
    pub bodies: Vec<Bytes>,
    pub labels: Vec<String>,
    pub functions: Vec<String>,
    pub deadlines: Vec<Option<f64>>,
}

/// Progress counters the calling thread reads for the reporter.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

/// What a shard hands back when it is done.
#[derive(Debug)]
pub(crate) struct ShardResult {
    pub recorders: Vec<FunctionRecorder>,
    /// Actual − intended send time, ns.
    pub lateness_ns: Histogram<u64>,
    pub sent: u64,
    pub first_intended_ns: Option<u64>,
    pub last_intended_ns: Option<u64>,
    pub first_actual: Option<Instant>,
    pub last_actual: Option<Instant>,
    pub end: Instant,
    pub delayed_by_cap: u64,
    pub dropped_by_cap: u64,
    pub csv_dropped: u64,
    pub stopped: bool,
    pub aborted_in_flight: u64,
    pub unsent: u64,
}

struct Job {
    function: u32,
    intended: Instant,
    intended_ns: u64,
    seq: u64,
    body: Bytes,
    service_us: Option<f64>,
}

/// Why an exchange failed, in the terms of [`Outcome`].
enum Failure {
    Timeout,
    /// No connection: refused, unreachable or reset during connect.
    Connect,
    /// A connection, but no HTTP reply on it: closed or reset before a
    /// complete reply, or bytes that do not parse as HTTP.
    Protocol,
}

struct Shard {
    start: Instant,
    timeout: Duration,
    plan: Plan,
    pools: Vec<RefCell<Vec<Sender>>>,
    recorders: RefCell<Vec<FunctionRecorder>>,
    lateness: RefCell<Histogram<u64>>,
    interval: Option<RefCell<Vec<Histogram<u64>>>>,
    csv: Option<crossbeam_channel::Sender<Row>>,
    csv_dropped: Cell<u64>,
    inflight: Cell<usize>,
    /// Signalled whenever an invocation ends (cap waiters, draining).
    freed: Notify,
    abort: Notify,
    aborted: Cell<bool>,
    aborted_in_flight: Cell<u64>,
    first_actual: Cell<Option<Instant>>,
    last_actual: Cell<Option<Instant>>,
    counters: Arc<Counters>,
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Shard {
    fn record(
        &self,
        job: &Job,
        actual: Instant,
        end: Instant,
        outcome: Outcome,
        exec_us: Option<u64>,
    ) {
        let response_us = us(end.saturating_duration_since(job.intended));
        let sample = Sample {
            outcome,
            response_us,
            response_uncorrected_us: us(end.saturating_duration_since(actual)),
            exec_us,
            service_us: job.service_us,
        };
        self.recorders.borrow_mut()[job.function as usize].record(&sample);
        // Like the recorder's, the interval log's latencies are successes only.
        if let (Some(iv), Outcome::Ok) = (&self.interval, outcome) {
            iv.borrow_mut()[job.function as usize].saturating_record(response_us.max(1));
        }
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tx) = &self.csv {
            let row = Row {
                seq: job.seq,
                function: job.function,
                intended_ns: job.intended_ns,
                actual_ns: actual.saturating_duration_since(self.start).as_nanos() as u64,
                end_ns: end.saturating_duration_since(self.start).as_nanos() as u64,
                outcome,
                exec_us,
                service_us: job.service_us,
            };
            if tx.try_send(row).is_err() {
                self.csv_dropped.set(self.csv_dropped.get() + 1);
            }
        }
    }

    fn request(&self, job: &Job) -> Request<Full<Bytes>> {
        let route = &self.plan.routes[job.function as usize];
        Request::builder()
            .method(Method::POST)
            .uri(route.uri.clone())
            .header(HOST, self.plan.endpoints[route.endpoint].host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(job.body.clone()))
            .expect("request parts were validated when the plan was built")
    }

    fn take_connection(&self, endpoint: usize) -> Option<Sender> {
        let mut pool = self.pools[endpoint].borrow_mut();
        while let Some(s) = pool.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    // The handshake only sets up hyper's state on a connected socket; it
    // fails only if that socket is already unusable.
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole reply.
async fn exchange(
    sh: &Shard,
    job: &Job,
    conn: Option<Sender>,
) -> Result<(u16, Option<u64>, Sender), Failure> {
    let endpoint = sh.plan.routes[job.function as usize].endpoint;
    let addr = sh.plan.endpoints[endpoint].addr;
    let reused = conn.is_some();
    let mut sender = match conn {
        Some(c) => c,
        None => connect(addr).await?,
    };
    let reply = match sender.send_request(sh.request(job)).await {
        Ok(r) => r,
        // A kept-alive connection the server closed while idle: the request
        // was never written, so sending it on a fresh connection is safe.
        Err(e) if reused && (e.is_canceled() || e.is_closed()) => {
            sender = connect(addr).await?;
            sender
                .send_request(sh.request(job))
                .await
                .map_err(|_| Failure::Protocol)?
        }
        // Connected, but the server closed, reset or answered garbage.
        Err(_) => return Err(Failure::Protocol),
    };
    let status = reply.status().as_u16();
    let exec_us = reply
        .headers()
        .get(HeaderName::from_static(EXEC_HEADER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64);
    let mut body = reply.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| Failure::Protocol)?;
    }
    Ok((status, exec_us, sender))
}

async fn invoke(sh: Rc<Shard>, job: Job, conn: Option<Sender>) {
    let actual = Instant::now();
    if sh.first_actual.get().is_none() {
        sh.first_actual.set(Some(actual));
    }
    sh.last_actual.set(Some(actual));
    sh.lateness.borrow_mut().saturating_record(
        (actual.saturating_duration_since(job.intended).as_nanos() as u64).max(1),
    );
    let result = if sh.aborted.get() {
        Err(Failure::Timeout)
    } else {
        let abort = sh.abort.notified();
        tokio::select! {
            r = exchange(&sh, &job, conn) => r,
            _ = tokio::time::sleep_until((actual + sh.timeout).into()) => Err(Failure::Timeout),
            _ = abort => {
                sh.aborted_in_flight.set(sh.aborted_in_flight.get() + 1);
                Err(Failure::Timeout)
            }
        }
    };
    let end = Instant::now();
    let (outcome, exec_us, back) = match result {
        Ok((status, exec, sender)) if (200..300).contains(&status) => {
            (Outcome::Ok, exec, Some(sender))
        }
        Ok((status, exec, sender)) => (Outcome::HttpError(status), exec, Some(sender)),
        Err(Failure::Timeout) => (Outcome::Timeout, None, None),
        Err(Failure::Connect) => (Outcome::ConnectError, None, None),
        Err(Failure::Protocol) => (Outcome::ProtocolError, None, None),
    };
    sh.record(&job, actual, end, outcome, exec_us);
    sh.inflight.set(sh.inflight.get() - 1);
    sh.freed.notify_one();
    if let Some(mut sender) = back {
        if sender.ready().await.is_ok() {
            let endpoint = sh.plan.routes[job.function as usize].endpoint;
            sh.pools[endpoint].borrow_mut().push(sender);
        }
    }
}

/// Sleeps until `due`: on the timer while more than `spin` away, then
/// spin-yielding. Returns false if `stop` was raised meanwhile.
async fn wait_until(due: Instant, spin: Duration, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        let left = due - now;
        if left > spin {
            // Wake at least every 50 ms to notice a stop request.
            let wake = (due - spin).min(now + Duration::from_millis(50));
            tokio::time::sleep_until(wake.into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Everything a shard thread gets from the caller.
pub(crate) struct ShardInput<'a> {
    pub id: usize,
    pub shards: usize,
    pub schedule: &'a Schedule,
    pub plan: Plan,
    pub cfg: &'a ClientConfig,
    /// The run's time zero, set by the first shard ready to send.
    pub start: Arc<OnceLock<Instant>>,
    /// Shards that have opened their connections; each waits for all.
    pub ready: Arc<std::sync::atomic::AtomicUsize>,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    pub csv: Option<crossbeam_channel::Sender<Row>>,
    pub intervals: Option<crossbeam_channel::Sender<Interval>>,
}

/// Runs one shard to the end of its share of the schedule (or a stop), on
/// the calling thread.
pub(crate) fn run_shard(input: ShardInput<'_>) -> Result<ShardResult, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, shard_main(input));
    // Dropping the runtime cancels connection drivers and any task still
    // waiting for a connection to become idle.
    drop(local);
    drop(rt);
    Ok(result)
}

async fn shard_main(input: ShardInput<'_>) -> ShardResult {
    let ShardInput {
        id,
        shards,
        schedule,
        plan,
        cfg,
        start,
        ready,
        stop,
        counters,
        csv,
        intervals,
    } = input;
    // Open the initial connections before time zero, so the first sends do
    // not all race to connect (a connect storm at the start).
    let mut warm: Vec<Vec<Sender>> = Vec::new();
    for e in &plan.endpoints {
        let mut conns = Vec::new();
        for _ in 0..cfg.connections {
            if let Ok(mut c) = connect(e.addr).await {
                if c.ready().await.is_ok() {
                    conns.push(c);
                }
            }
        }
        warm.push(conns);
    }
    ready.fetch_add(1, Ordering::SeqCst);
    while ready.load(Ordering::SeqCst) < shards && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(100));
    }
    let start = *start.get_or_init(|| Instant::now() + Duration::from_millis(2));
    let n_functions = schedule.functions.len();
    let interval_max = us(cfg.timeout).saturating_mul(2).max(1_000);
    let new_interval = move || {
        (0..n_functions)
            .map(|_| Histogram::new_with_bounds(1, interval_max, 3).expect("bounds"))
            .collect::<Vec<_>>()
    };
    let sh = Rc::new(Shard {
        start,
        timeout: cfg.timeout,
        pools: warm.into_iter().map(RefCell::new).collect(),
        recorders: RefCell::new(
            (0..n_functions)
                .map(|i| {
                    FunctionRecorder::new(&plan.labels[i], &plan.functions[i], plan.deadlines[i])
                })
                .collect(),
        ),
        plan,
        lateness: RefCell::new(
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static bounds"),
        ),
        interval: intervals.as_ref().map(|_| RefCell::new(new_interval())),
        csv,
        csv_dropped: Cell::new(0),
        inflight: Cell::new(0),
        freed: Notify::new(),
        abort: Notify::new(),
        aborted: Cell::new(false),
        aborted_in_flight: Cell::new(0),
        first_actual: Cell::new(None),
        last_actual: Cell::new(None),
        counters: counters.clone(),
    });

    // Interval histograms for the HdrHistogram log, one per second.
    let next_interval = Rc::new(Cell::new(0u64));
    let ticker = intervals.clone().map(|tx| {
        let sh = sh.clone();
        let next_interval = next_interval.clone();
        tokio::task::spawn_local(async move {
            loop {
                let index = next_interval.get();
                let next = start + Duration::from_secs(index + 1);
                tokio::time::sleep_until(next.into()).await;
                let hists = std::mem::replace(
                    &mut *sh.interval.as_ref().expect("interval on").borrow_mut(),
                    new_interval(),
                );
                let _ = tx.send(Interval { index, hists });
                next_interval.set(index + 1);
            }
        })
    });

    let mut sent = 0u64;
    let mut delayed_by_cap = 0u64;
    let mut dropped_by_cap = 0u64;
    let mut first_intended_ns = None;
    let mut last_intended_ns = None;
    let mut stopped = false;
    let mut unsent = 0u64;
    let mut burst = 0u32;
    let mut cap_released: Option<Instant> = None;
    let total_mine = (schedule.arrivals.len() + shards - 1 - id) / shards;
    for (k, (seq, arrival)) in schedule
        .arrivals
        .iter()
        .enumerate()
        .skip(id)
        .step_by(shards)
        .enumerate()
    {
        let intended = start + Duration::from_nanos(arrival.at_ns);
        if Instant::now() < intended {
            burst = 0;
            if !wait_until(intended, cfg.spin, &stop).await {
                stopped = true;
            }
        } else if stop.load(Ordering::Relaxed) {
            stopped = true;
        } else {
            // Behind schedule: let replies be read now and then.
            burst += 1;
            if burst % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        if stopped {
            unsent = (total_mine - k) as u64;
            break;
        }
        let function = arrival.function;
        let service_us = schedule.service_us(arrival);
        let body = match schedule.own_params(arrival) {
            None => sh.plan.bodies[function as usize].clone(),
            Some(p) => Bytes::from(serde_json::to_vec(p).expect("JSON values serialise")),
        };
        let job = Job {
            function,
            intended,
            intended_ns: arrival.at_ns,
            seq: seq as u64,
            body,
            service_us,
        };
        if let Some(cap) = cfg.max_inflight {
            // Queued behind a send the cap held back: delayed by it too.
            let queued = cap_released.is_some_and(|t| intended < t);
            if queued && !(sh.inflight.get() >= cap && cfg.cap_mode == CapMode::Drop) {
                delayed_by_cap += 1;
            }
            if sh.inflight.get() >= cap {
                match cfg.cap_mode {
                    CapMode::Drop => {
                        dropped_by_cap += 1;
                        let now = Instant::now();
                        // Never sent: an SLO miss, counted as a connect
                        // error (no response time).
                        sh.record(&job, now, now, Outcome::ConnectError, None);
                        sent += 1;
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    CapMode::Delay => {
                        if !queued {
                            delayed_by_cap += 1;
                        }
                        while sh.inflight.get() >= cap {
                            tokio::select! {
                                _ = sh.freed.notified() => {}
                                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        cap_released = Some(Instant::now());
                        if stop.load(Ordering::Relaxed) {
                            stopped = true;
                            unsent = (total_mine - k) as u64;
                            break;
                        }
                    }
                }
            }
        }
        let endpoint = sh.plan.routes[function as usize].endpoint;
        let conn = sh.take_connection(endpoint);
        first_intended_ns.get_or_insert(arrival.at_ns);
        last_intended_ns = Some(arrival.at_ns);
        sent += 1;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        sh.inflight.set(sh.inflight.get() + 1);
        tokio::task::spawn_local(invoke(sh.clone(), job, conn));
    }

    // Drain: every invocation ends by its own timeout; a stop request
    // bounds the wait by the grace period, after which the rest count as
    // timeouts.
    let mut grace_end = stopped.then(|| Instant::now() + cfg.grace);
    while sh.inflight.get() > 0 {
        if grace_end.is_none() && stop.load(Ordering::Relaxed) {
            stopped = true;
            grace_end = Some(Instant::now() + cfg.grace);
        }
        if grace_end.is_some_and(|g| Instant::now() >= g) {
            sh.aborted.set(true);
            sh.abort.notify_waiters();
            while sh.inflight.get() > 0 {
                tokio::task::yield_now().await;
            }
            break;
        }
        tokio::select! {
            _ = sh.freed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let end = Instant::now();
    if let Some(t) = ticker {
        t.abort();
    }
    if let (Some(tx), Some(iv)) = (&intervals, &sh.interval) {
        let index = next_interval.get();
        let hists = std::mem::replace(&mut *iv.borrow_mut(), new_interval());
        let _ = tx.send(Interval { index, hists });
    }
    let recorders = sh.recorders.borrow().clone();
    let lateness_ns = sh.lateness.borrow().clone();
    ShardResult {
        recorders,
        lateness_ns,
        sent,
        first_intended_ns,
        last_intended_ns,
        first_actual: sh.first_actual.get(),
        last_actual: sh.last_actual.get(),
        end,
        delayed_by_cap,
        dropped_by_cap,
        csv_dropped: sh.csv_dropped.get(),
        stopped,
        aborted_in_flight: sh.aborted_in_flight.get(),
        unsent,
    }
}
