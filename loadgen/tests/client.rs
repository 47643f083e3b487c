//! The open-loop client against a loopback hyper server written here:
//! every send is accounted (ok + errors + timeouts = schedule length),
//! server-reported execution time is read, failures are counted not
//! dropped, caps and stops are reported.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use slokit_loadgen::{run_blocking, CapMode, ClientConfig, LoadgenError, NoReporter};
use slokit_model::{Arrival, RunRecord, Schedule, ScheduledFunction};

/// A loopback server: `/invoke/ok` → 200 with `x-slokit-exec-us: 123`,
/// `/invoke/fail` → 500, `/invoke/slow` → 200 after 1 s. Stops on drop.
struct TestServer {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let _ = req.into_body().collect().await;
    let r = Response::builder();
    Ok(match path.as_str() {
        "/invoke/ok" => r.header("x-slokit-exec-us", "123"),
        "/invoke/fail" => r.status(500),
        "/invoke/slow" => {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            r
        }
        _ => r.status(404),
    }
    .body(Full::new(Bytes::from_static(b"ok")))
    .unwrap())
}

impl TestServer {
    fn start() -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        a = listener.accept() => {
                            let (s, _) = a.unwrap();
                            tokio::spawn(async move {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(s), service_fn(handle))
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        TestServer {
            port,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn function(name: &str, deadline_us: Option<f64>) -> ScheduledFunction {
    ScheduledFunction {
        label: name.into(),
        function: name.into(),
        params: json!({"ms": 1}),
        service_us: Some(100.0),
        deadline_us,
    }
}

/// `n` arrivals every `gap_us`, cycling over the functions.
fn schedule(functions: Vec<ScheduledFunction>, n: usize, gap_us: u64) -> Schedule {
    let k = functions.len() as u32;
    Schedule {
        source: "test".into(),
        seed: 0,
        functions,
        arrivals: (0..n)
            .map(|i| Arrival::new(i as u64 * gap_us * 1000, i as u32 % k))
            .collect(),
        extras: Vec::new(),
    }
}

fn config(url: &str) -> ClientConfig {
    ClientConfig {
        target: Some(url.to_string()),
        ..ClientConfig::default()
    }
}

fn accounted(r: &RunRecord) -> u64 {
    r.functions
        .iter()
        .map(|f| {
            assert_eq!(f.invocations, f.ok + f.failures(), "{f:?}");
            f.invocations
        })
        .sum()
}

#[test]
fn every_send_is_accounted_and_exec_time_is_read() {
    let server = TestServer::start();
    let s = schedule(vec![function("ok", Some(1e6))], 400, 2500);
    let r = run_blocking(&s, &config(&server.url()), &NoReporter).unwrap();
    assert_eq!(accounted(&r), 400);
    let f = &r.functions[0];
    assert_eq!(f.ok, 400);
    assert_eq!(f.exec_us.unwrap().p50, 123.0);
    assert!(f.response_us.p50 > 0.0 && f.response_us.p50 < 1e6);
    assert!(f.response_us.p50 >= f.response_uncorrected_us.p50 - 1.0);
    assert_eq!(f.slo.unwrap().attainment, 1.0);
    assert!(f.slowdown.unwrap().mean >= 1.0);
    let send = r.send.as_ref().unwrap();
    assert!((send.target_rate_per_s - 400.0).abs() < 1.0, "{send:?}");
    assert!(send.achieved_rate_per_s > 300.0, "{send:?}");
    assert_eq!(send.lateness_us.count, 400);
    assert_eq!(r.schema, "slokit.run/1");
    assert!(r.policy.is_none() && r.monitor.is_none());
    assert!(r.environment.logical_cpus >= 1);
}

#[test]
fn errors_and_timeouts_are_counted_not_dropped() {
    let server = TestServer::start();
    let s = schedule(
        vec![
            function("ok", Some(1e6)),
            function("fail", Some(1e6)),
            function("slow", Some(1e6)),
        ],
        90,
        2000,
    );
    let cfg = ClientConfig {
        timeout: Duration::from_millis(400),
        ..config(&server.url())
    };
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    assert_eq!(accounted(&r), 90);
    let by = |l: &str| r.functions.iter().find(|f| f.label == l).unwrap();
    assert_eq!(by("ok").ok, 30, "{:?}", by("ok"));
    assert_eq!(by("fail").http_errors, 30);
    assert_eq!(by("fail").slo.unwrap().attainment, 0.0);
    assert_eq!(by("slow").timeouts, 30);
    // Failures are counted, never a latency: only `ok` has response times.
    assert_eq!(by("ok").response_us.count, 30);
    assert!(by("slow").response().is_none(), "{:?}", by("slow"));
    assert!(by("fail").response().is_none(), "{:?}", by("fail"));
    assert!(slokit_loadgen::require_success(&r).is_ok());
}

#[test]
fn a_dead_port_fails_fast_or_counts_connect_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let s = schedule(vec![function("ok", None)], 20, 1000);
    let e = run_blocking(&s, &config(&url), &NoReporter).unwrap_err();
    assert!(matches!(e, LoadgenError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    let cfg = ClientConfig {
        probe: false,
        ..config(&url)
    };
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    assert_eq!(accounted(&r), 20);
    assert_eq!(r.functions[0].connect_errors, 20);
    assert!(r.functions[0].response().is_none());
    assert!(
        r.notes.iter().any(|n| n.contains("none of its 20")),
        "{:?}",
        r.notes
    );
    let e = slokit_loadgen::require_success(&r).unwrap_err().to_string();
    assert!(
        e.contains("20 sent") && e.contains("20 connect errors"),
        "{e}"
    );
}

#[test]
fn the_inflight_cap_counts_what_it_delays_or_drops() {
    let server = TestServer::start();
    let s = schedule(vec![function("slow", None)], 20, 5000);
    let cfg = ClientConfig {
        max_inflight: Some(4),
        cap_mode: CapMode::Drop,
        ..config(&server.url())
    };
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    assert_eq!(accounted(&r), 20);
    let send = r.send.as_ref().unwrap();
    assert_eq!(send.dropped_by_cap, 16, "{send:?}");
    assert_eq!(r.functions[0].ok, 4);
    assert!(r.notes.iter().any(|n| n.contains("dropped")));
    let cfg = ClientConfig {
        max_inflight: Some(4),
        cap_mode: CapMode::Delay,
        ..config(&server.url())
    };
    let s = schedule(vec![function("slow", None)], 8, 5000);
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    assert_eq!(r.functions[0].ok, 8);
    assert_eq!(r.send.as_ref().unwrap().delayed_by_cap, 4);
    // The delayed ones waited ~1 s for a slot: visible from the intended
    // send time, not from the actual one.
    assert!(r.functions[0].response_us.max >= 1_900_000.0);
    assert!(r.functions[0].response_uncorrected_us.max < 1_900_000.0);
}

#[test]
fn a_stop_request_ends_sending_and_still_reports() {
    let server = TestServer::start();
    let s = schedule(vec![function("slow", None)], 1000, 10_000);
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = ClientConfig {
        stop: Some(stop.clone()),
        grace: Duration::from_millis(50),
        ..config(&server.url())
    };
    let raiser = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let t = std::time::Instant::now();
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    raiser.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "stopped promptly");
    let n = accounted(&r);
    assert!(n > 10 && n < 1000, "{n}");
    // Replies of 1 s cannot arrive within the 50 ms grace: those in
    // flight count as timeouts.
    assert!(r.functions[0].timeouts > 0);
    assert!(
        r.notes.iter().any(|x| x.contains("stopped early")),
        "{:?}",
        r.notes
    );
}

#[test]
fn per_label_urls_csv_and_interval_log() {
    let a = TestServer::start();
    let b = TestServer::start();
    let s = schedule(
        vec![function("ok", None), function("other", None)],
        300,
        5000,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = ClientConfig {
        target: None,
        urls: HashMap::from([
            ("ok".to_string(), format!("{}/invoke/ok", a.url())),
            ("other".to_string(), format!("{}/invoke/fail", b.url())),
        ]),
        csv: Some(dir.path().join("inv.csv")),
        hlog: Some(dir.path().join("run.hlog")),
        ..ClientConfig::default()
    };
    let r = run_blocking(&s, &cfg, &NoReporter).unwrap();
    assert_eq!(r.functions[0].ok, 150);
    assert_eq!(r.functions[1].http_errors, 150);
    let csv = std::fs::read_to_string(dir.path().join("inv.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301);
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let count = |label: &str, outcome: &str, status: &str| {
        rows.iter()
            .filter(|r| r[1] == label && r[7] == outcome && r[8] == status)
            .count()
    };
    assert_eq!(count("ok", "ok", ""), 150);
    assert_eq!(count("other", "http_error", "500"), 150);
    // A failure's row has its end time but no response time.
    assert!(rows
        .iter()
        .all(|r| (r[7] == "ok") == (!r[5].is_empty() && !r[6].is_empty())));
    let log = std::fs::read(dir.path().join("run.hlog")).unwrap();
    let mut count = 0;
    let mut tags = std::collections::HashSet::new();
    for item in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
        if let hdrhistogram::serialization::interval_log::LogEntry::Interval(h) = item.unwrap() {
            let hist: hdrhistogram::Histogram<u64> =
                hdrhistogram::serialization::Deserializer::new()
                    .deserialize(&mut base64_decode(h.encoded_histogram()).as_slice())
                    .unwrap();
            count += hist.len();
            tags.insert(h.tag().map(|t| t.as_str().to_string()));
        }
    }
    // Only the successes are latencies in the log.
    assert_eq!(count, 150);
    assert!(tags.contains(&Some("ok".to_string())));
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        buf = buf << 6 | T.iter().position(|x| *x == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_async_wrapper_runs_inside_a_runtime() {
    let server = TestServer::start();
    let s = std::sync::Arc::new(schedule(vec![function("ok", None)], 50, 2000));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(slokit_loadgen::run(
            s,
            config(&server.url()),
            std::sync::Arc::new(NoReporter),
        ))
        .unwrap();
    assert_eq!(r.functions[0].ok, 50);
}
