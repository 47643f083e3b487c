//! `slokit loadgen` end to end: seeded schedules are reproducible, bad
//! traces and dead targets give clear errors, a run writes a run record in
//! which every send is accounted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use assert_cmd::Command;
use predicates::prelude::*;

fn slokit() -> Command {
    Command::cargo_bin("slokit").unwrap()
}

/// A minimal keep-alive HTTP/1.1 server on loopback (std only): 200 "ok"
/// with `x-slokit-exec-us: 7` for every request. Stops on drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" && !first {
                break;
            }
            first = false;
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-slokit-exec-us: 7\r\n\r\nok";
        if writer.write_all(reply).is_err() {
            return;
        }
    }
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for s in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = s {
                    std::thread::spawn(move || serve(s));
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.take().unwrap().join();
    }
}

fn dump(dir: &std::path::Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    slokit()
        .arg("loadgen")
        .args(args)
        .arg("--dump-schedule")
        .arg(&path)
        .assert()
        .success();
    std::fs::read(path).unwrap()
}

#[test]
fn same_seed_gives_the_same_schedule_file() {
    let dir = tempfile::tempdir().unwrap();
    for process in ["poisson", "bursty", "constant"] {
        let args = [
            "--rate",
            "300",
            "--process",
            process,
            "--duration",
            "5s",
            "--seed",
            "7",
        ];
        let a = dump(dir.path(), "a.json", &args);
        let b = dump(dir.path(), "b.json", &args);
        assert_eq!(a, b, "{process}");
        let s: slokit_functions::Schedule = serde_json::from_slice(&a).unwrap();
        assert!(s.arrivals.len() > 500, "{process}: {}", s.arrivals.len());
    }
    let a = dump(dir.path(), "a.json", &["--rate", "300", "--seed", "1"]);
    let b = dump(dir.path(), "b.json", &["--rate", "300", "--seed", "2"]);
    assert_ne!(a, b);
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/azure2019-sample10");
    let args = [
        "--trace-azure2019",
        trace,
        "--minutes",
        "540-545",
        "--scale",
        "0.05",
        "--seed",
        "3",
    ];
    assert_eq!(
        dump(dir.path(), "a.json", &args),
        dump(dir.path(), "b.json", &args)
    );
}

#[test]
fn a_malformed_trace_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "time_ms,function\n0,spin\n12,spin\nlater,spin\n").unwrap();
    slokit()
        .args(["loadgen", "--trace-csv"])
        .arg(&p)
        .args(["--target", "http://127.0.0.1:1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.csv:4:1:").and(predicate::str::contains("`later`")));
}

#[test]
fn a_dead_target_fails_fast_with_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    slokit()
        .args(["loadgen", "--rate", "10", "--duration", "1s"])
        .args(["--target", &format!("http://127.0.0.1:{port}")])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("cannot connect")
                .and(predicate::str::contains("is the target running")),
        );
}

#[test]
fn usage_errors_are_explained() {
    slokit()
        .args([
            "loadgen",
            "--duration",
            "1s",
            "--target",
            "http://127.0.0.1:1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nothing to send"));
    slokit()
        .args([
            "loadgen",
            "--mix",
            "auth:0.9,video:0.1",
            "--rho",
            "0.8",
            "--service",
            "auth=1ms",
            "--dump-schedule",
            "/dev/null",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`video`"));
    slokit()
        .args(["loadgen", "--rate", "10"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--target"));
}

#[test]
fn a_run_writes_a_record_with_every_send_accounted() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    slokit()
        .args([
            "loadgen",
            "--rate",
            "200",
            "--process",
            "constant",
            "--duration",
            "1s",
        ])
        .args(["--function", "spin", "--params", r#"{"ms": 1}"#])
        .args(["--service", "spin=1ms", "--deadline", "spin=500ms"])
        .args(["--target", &format!("http://127.0.0.1:{}", server.port)])
        .arg("--out")
        .arg(&out)
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains("spin").and(predicate::str::contains("lateness")));
    let r =
        slokit_functions::RunRecord::from_json(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let f = &r.functions[0];
    assert_eq!(f.invocations, 200);
    assert_eq!(f.ok, 200);
    assert_eq!(f.exec_us.unwrap().p50, 7.0);
    assert_eq!(f.slo.unwrap().deadline_us, 500_000.0);
    assert!(f.slowdown.is_some());
    assert_eq!(r.seed, 1);
    assert!(r.send.unwrap().target_rate_per_s > 199.0);
}

/// A loopback server that misbehaves: every connection it accepts is
/// handed to `behave` on its own thread. Stops on drop.
struct BadServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BadServer {
    fn start(behave: fn(TcpStream)) -> BadServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for s in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = s {
                    std::thread::spawn(move || behave(s));
                }
            }
        });
        BadServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.take().unwrap().join();
    }
}

/// Accepts, then closes at once.
fn close_at_once(stream: TcpStream) {
    drop(stream);
}

/// Reads the request, answers bytes that are not HTTP, and closes.
fn answer_garbage(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf);
    let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n");
}

fn record(path: &std::path::Path) -> slokit_functions::RunRecord {
    slokit_functions::RunRecord::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `slokit loadgen` sending 40 constant-rate `spin` invocations to `url`.
fn send_40(url: &str, out: &std::path::Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    slokit()
        .args(["loadgen", "--rate", "40", "--process", "constant"])
        .args(["--duration", "1s", "--timeout", "5s", "--target", url])
        .args(extra)
        .arg("--out")
        .arg(out)
        .timeout(std::time::Duration::from_secs(30))
        .assert()
}

#[test]
fn a_run_where_every_send_fails_exits_non_zero_and_reports_no_latency() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    let url = format!("http://127.0.0.1:{port}");
    send_40(&url, &out, &["--no-probe"])
        .code(2)
        .stderr(
            predicate::str::contains("no invocation succeeded")
                .and(predicate::str::contains("40 sent"))
                .and(predicate::str::contains("40 connect errors")),
        )
        .stdout(predicate::str::contains("failed: spin: 40 connect errors"));
    // The record is still written, with the failures and no latency.
    let f = &record(&out).functions[0];
    assert_eq!((f.invocations, f.ok, f.connect_errors), (40, 0, 40));
    assert!(f.response().is_none(), "{:?}", f.response_us);
    assert_eq!(f.response_us.count, 0);
    assert_eq!(f.response_us.p50, 0.0);
    assert_eq!(f.response_uncorrected_us.count, 0);
    assert!(f.exec_us.is_none());
}

#[test]
fn closed_connections_and_garbage_replies_are_protocol_errors() {
    for behave in [close_at_once as fn(TcpStream), answer_garbage] {
        let server = BadServer::start(behave);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.json");
        // The probe connects fine; the exchanges fail.
        send_40(&server.url(), &out, &[])
            .code(2)
            .stderr(predicate::str::contains("40 protocol errors"));
        let f = &record(&out).functions[0];
        assert_eq!(
            (f.invocations, f.ok, f.protocol_errors, f.connect_errors),
            (40, 0, 40, 0),
            "{f:?}"
        );
        assert!(f.response().is_none(), "{:?}", f.response_us);
    }
}

#[test]
fn failures_beside_successes_leave_the_latencies_to_the_successes() {
    let good = Server::start();
    let bad = BadServer::start(close_at_once);
    let dir = tempfile::tempdir().unwrap();
    let (trace, out) = (dir.path().join("t.csv"), dir.path().join("run.json"));
    let rows: String = (0..40)
        .map(|i| format!("{},{}\n", i * 10, if i % 2 == 0 { "good" } else { "bad" }))
        .collect();
    std::fs::write(&trace, rows).unwrap();
    slokit()
        .args(["loadgen", "--trace-csv"])
        .arg(&trace)
        .args(["--url", &format!("good={}/invoke/spin", good.url())])
        .args(["--url", &format!("bad={}/invoke/spin", bad.url())])
        .arg("--out")
        .arg(&out)
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains("failed: bad: 20 protocol errors"));
    let r = record(&out);
    let by = |l: &str| r.functions.iter().find(|f| f.label == l).unwrap();
    assert_eq!((by("good").ok, by("good").response_us.count), (20, 20));
    assert_eq!(
        (by("bad").protocol_errors, by("bad").response_us.count),
        (20, 0)
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("`bad`") && n.contains("none of its 20")));
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// An Azure 2019 trace directory: one invocations row per `rows` entry
/// (its first minute counts; the rest 0), lines ending in `sep`.
fn azure2019(dir: &std::path::Path, rows: &[&[&str]], sep: &str) {
    let minutes: Vec<String> = (1..=1440).map(|m| m.to_string()).collect();
    let mut inv = vec![format!(
        "HashOwner,HashApp,HashFunction,Trigger,{}",
        minutes.join(",")
    )];
    let mut dur = vec!["HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100".to_string()];
    for (i, counts) in rows.iter().enumerate() {
        let mut all = vec!["0"; 1440];
        all[..counts.len()].copy_from_slice(counts);
        inv.push(format!("o,a,f{i},http,{}", all.join(",")));
        dur.push(format!("o,a,f{i},1,1,1,1,1,1,1,1,1,1,1"));
    }
    std::fs::write(dir.join("invocations.csv"), inv.join(sep) + sep).unwrap();
    std::fs::write(dir.join("durations.csv"), dur.join("\n") + "\n").unwrap();
}

/// `slokit loadgen ARGS --dump-schedule` in a shell whose address space is
/// capped at 2 GiB, so a big allocation aborts instead of passing.
fn build_capped(args: &[&str]) -> assert_cmd::assert::Assert {
    let bin = assert_cmd::cargo::cargo_bin("slokit");
    Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2097152 && exec \"$@\" --dump-schedule /dev/null")
        .arg("sh")
        .arg(bin)
        .arg("loadgen")
        .args(args)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
}

#[test]
fn a_huge_count_or_scale_is_refused_quickly_naming_file_line_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    azure2019(dir.path(), &[&["3", "4"], &["5", "1e12"]], "\n");
    let d = dir.path().to_str().unwrap();
    build_capped(&["--trace-azure2019", d, "--minutes", "1-3"])
        .code(2)
        .stderr(
            predicate::str::contains("invocations.csv:3:6:")
                .and(predicate::str::contains("1000000000000"))
                .and(predicate::str::contains("--max-invocations 10000000")),
        );
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/azure2019-sample10");
    build_capped(&["--trace-azure2019", sample, "--minutes", "540-570"]).success();
    build_capped(&[
        "--trace-azure2019",
        sample,
        "--minutes",
        "540-570",
        "--scale",
        "100000",
    ])
    .code(2)
    .stderr(
        predicate::str::contains("invocations.csv:")
            .and(predicate::str::contains("--scale 100000"))
            .and(predicate::str::contains("raise --max-invocations")),
    );
    // The limit can be raised (and lowered).
    build_capped(&[
        "--trace-azure2019",
        d,
        "--minutes",
        "1-2",
        "--max-invocations",
        "8",
    ])
    .success();
    build_capped(&[
        "--trace-azure2019",
        d,
        "--minutes",
        "1-2",
        "--max-invocations",
        "7",
    ])
    .code(2)
    .stderr(predicate::str::contains("--max-invocations 7"));
    // Synthetic schedules answer to the same limit.
    build_capped(&["--rate", "1e9", "--duration", "1h"])
        .code(2)
        .stderr(
            predicate::str::contains("--max-invocations").and(predicate::str::contains(
                "--rate 1000000000 × --duration 1h",
            )),
        );
}

#[test]
fn trace_times_beyond_any_replay_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, "time_ms,function\n0,spin\n1e20,spin\n").unwrap();
    build_capped(&["--trace-csv", p.to_str().unwrap()])
        .code(2)
        .stderr(
            predicate::str::contains("t.csv:3:1:")
                .and(predicate::str::contains("`time_ms`"))
                .and(predicate::str::contains("`1e20`")),
        );
    let p = dir.path().join("t21.csv");
    std::fs::write(
        &p,
        "app,func,end_timestamp,duration\na,f,1.0,0.5\na,f,1e20,0.5\n",
    )
    .unwrap();
    build_capped(&["--trace-azure2021", p.to_str().unwrap()])
        .code(2)
        .stderr(
            predicate::str::contains("t21.csv:3:3:")
                .and(predicate::str::contains("`end_timestamp`")),
        );
}

#[test]
fn a_bad_count_is_reported_on_its_own_line_whatever_the_line_ends() {
    for sep in ["\n", "\r\n"] {
        let dir = tempfile::tempdir().unwrap();
        azure2019(dir.path(), &[&["1", "2"], &["3", "4"], &["12x", "1"]], sep);
        slokit()
            .args(["loadgen", "--minutes", "1-3", "--trace-azure2019"])
            .arg(dir.path())
            .args(["--dump-schedule", "/dev/null"])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("invocations.csv:4:5:")
                    .and(predicate::str::contains("`12x`")),
            );
    }
}

#[test]
fn invalid_utf8_names_file_and_line_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.csv");
    std::fs::write(&p, b"time_ms,function\n0,spin\n5,caf\xe9\n").unwrap();
    slokit()
        .args(["loadgen", "--trace-csv"])
        .arg(&p)
        .args(["--dump-schedule", "/dev/null"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("latin1.csv:3:2:")
                .and(predicate::str::contains("not valid UTF-8"))
                .and(predicate::str::contains("Utf8").not())
                .and(predicate::str::contains("Position").not()),
        );
}

#[test]
fn a_missing_file_says_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for source in [
        "--trace-csv",
        "--trace-azure2019",
        "--trace-azure2021",
        "--schedule",
    ] {
        let out = slokit()
            .args(["loadgen", source])
            .arg(&missing)
            .args(["--dump-schedule", "/dev/null"])
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8(out).unwrap();
        assert!(err.contains("nothing-here"), "{source}: {err}");
        assert_eq!(err.matches("(os error 2)").count(), 1, "{source}: {err}");
    }
    // The connection error of an unreachable target, likewise.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = slokit()
        .args(["loadgen", "--rate", "10", "--duration", "1s"])
        .args(["--target", &format!("http://127.0.0.1:{port}")])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert_eq!(err.matches("(os error 111)").count(), 1, "{err}");
}
