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
