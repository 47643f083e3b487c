//! `slokit serve` as a user runs it: start on a free port, read the
//! `listening on` line, call it, SIGTERM it, expect exit 0 — also with
//! stalled clients and a request that outlives the drain timeout; and, as
//! root, the scheduler agent's eBPF monitor seeing every request of a real
//! host on its workers (requests the poller looked at without reading).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Kills the server if the test fails before it exits by itself.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn slokit() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("slokit"))
}

/// One request on a fresh connection, read to the end (`connection: close`).
fn call(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn serve_announces_its_port_answers_and_exits_0_on_sigterm() {
    let child = slokit()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--functions",
            "spin,auth",
        ])
        .env("SLOKIT_AUTH_SECRET", "from-the-environment")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(!addr.ends_with(":0"), "{addr}");

    let reply = call(&addr, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok"),
        "{reply}"
    );
    let reply = call(
        &addr,
        "POST /invoke/spin HTTP/1.1\r\nConnection: close\r\nContent-Length: 9\r\n\r\n{\"ms\": 1}",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-slokit-exec-us: "), "{reply}");
    assert!(reply.contains("\"requested_ms\":1.0"), "{reply}");

    // `auth` got the secret from SLOKIT_AUTH_SECRET.
    let token = slokit_functions::auth::mint_token(b"from-the-environment", "dave", 4_000_000_000);
    let body = format!("{{\"token\": \"{token}\"}}");
    let reply = call(
        &addr,
        &format!(
            "POST /invoke/auth HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("\"dave\""),
        "{reply}"
    );

    // SAFETY: signals our own child by its pid.
    let rc = unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM: shutting down"), "{stderr}");
    assert!(stderr.contains("served 3 requests"), "{stderr}");
}

#[test]
fn serve_refuses_unknown_functions_and_bad_cpu_lists() {
    let out = slokit()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--functions",
            "spin,nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown function `nope`"), "{err}");

    let out = slokit()
        .args(["serve", "--listen", "127.0.0.1:0", "--cpus", "3-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpus") && err.contains("1-3,5"), "{err}");
}

/// Starts `slokit serve --listen 127.0.0.1:0 ARGS`; returns it and its
/// address from the `listening on` line.
fn start_serve(args: &[&str]) -> (Server, String) {
    let child = slokit()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (server, addr)
}

/// Sends SIGTERM and waits up to `within` for the exit; returns the exit
/// code, stderr and how long the exit took.
fn terminate(server: &mut Server, within: Duration) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    // SAFETY: signals our own child by its pid.
    assert_eq!(
        unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < within,
            "serve did not exit within {within:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t.elapsed();
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr, took)
}

/// A connection that sends `request` one byte every `gap` until stopped.
fn trickle(addr: &str, request: &'static [u8], gap: Duration) -> (TcpStream, Arc<AtomicBool>) {
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for b in request {
            if flag.load(Ordering::Relaxed) || writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    });
    (stream, stop)
}

#[test]
fn sigterm_with_stalled_clients_exits_within_the_drain_timeout() {
    let (mut server, addr) = start_serve(&[
        "--workers",
        "2",
        "--functions",
        "spin",
        "--drain-timeout",
        "1s",
    ]);
    // More slow clients than workers, each trickling a request in…
    let lorises: Vec<_> = (0..3)
        .map(|_| {
            trickle(
                &addr,
                b"POST /invoke/spin HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"ms\": 0}",
                Duration::from_millis(200),
            )
        })
        .collect();
    // …and one request that runs far past the drain timeout.
    let mut long = TcpStream::connect(&addr).unwrap();
    long.write_all(b"POST /invoke/spin HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"ms\": 20000}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (code, stderr, took) = terminate(&mut server, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}: {stderr}"
    );
    assert!(
        stderr.contains("1 cut off at the drain timeout"),
        "{stderr}"
    );
    for (_, stop) in &lorises {
        stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn bad_timeouts_and_sizes_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--request-timeout", "0s"),
        ("--drain-timeout", "soon"),
        ("--max-inflight-bytes", "5 parsecs"),
    ] {
        let out = slokit()
            .args(["serve", "--listen", "127.0.0.1:0", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{err}");
    }
}

// ------------------------------------------------------------- the monitor

/// Scheduling policy (proc(5) stat field 41) of every thread of `pid`, by comm.
fn policies(pid: u32) -> Vec<(String, u32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        use slokit_sys::procfs::{field, Stat};
        let policy: u32 = Stat::parse(&stat).unwrap().get(field::POLICY).unwrap();
        v.push((comm.trim().to_string(), policy));
    }
    v
}

/// A connection and the reply bytes read from it but not yet used (two
/// pipelined replies can arrive in one read).
struct Conn {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Conn {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            stream,
            got: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply (by `content-length`; interim 1xx skipped); returns
    /// its status.
    fn reply(&mut self) -> u16 {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = self.got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.got[..end]).to_ascii_lowercase();
                let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if code == 100 {
                    self.got.drain(..end + 4);
                    continue;
                }
                if self.got.len() >= end + 4 + len {
                    self.got.drain(..end + 4 + len);
                    return code;
                }
            }
            let k = self.stream.read(&mut buf).unwrap();
            assert!(k > 0, "closed before a full reply");
            self.got.extend_from_slice(&buf[..k]);
        }
    }
}

#[test]
fn the_ebpf_monitor_sees_every_request_on_the_workers() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root"
        );
        eprintln!("skipping: not root (the agent needs CAP_SYS_NICE and BPF)");
        return;
    }
    let (server, addr) = start_serve(&["--workers", "2", "--functions", "spin"]);
    let pid = server.0.id();
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    let mut agent = Server(
        slokit()
            .args(["sched", "--policy", "fifo", "--monitor", "ebpf", "--pid"])
            .arg(pid.to_string())
            .arg("--metrics-out")
            .arg(&metrics)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let out = agent.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "agent ready" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("agent printed `agent ready` within 30 s");

    let spin = |ms: u32| {
        let body = format!("{{\"ms\": {ms}}}");
        format!(
            "POST /invoke/spin HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut requests = 0;
    // Whole requests on one keep-alive connection, two of them pipelined.
    let mut c = Conn::connect(&addr);
    for ms in [1, 2] {
        c.send(spin(ms).as_bytes());
        assert_eq!(c.reply(), 200);
        requests += 1;
    }
    c.send(format!("{}{}", spin(1), spin(1)).as_bytes());
    assert_eq!((c.reply(), c.reply()), (200, 200));
    requests += 2;
    // A request in pieces: the poller peeks at each and waits.
    let whole = spin(1);
    for part in [&whole[..10], &whole[10..40], &whole[40..]] {
        c.send(part.as_bytes());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.reply(), 200);
    requests += 1;
    // Expect: 100-continue (answered by the poller) and a large body.
    c.send(b"POST /invoke/spin HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"{\"ms\": 1}");
    assert_eq!(c.reply(), 200);
    requests += 1;
    let mut big = b"{\"ms\": 1}".to_vec();
    big.resize(600 * 1024, b' ');
    c.send(
        format!(
            "POST /invoke/spin HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    c.send(&big);
    assert_eq!(c.reply(), 200);
    requests += 1;

    let fifo: Vec<String> = policies(pid)
        .into_iter()
        .filter(|(_, p)| *p == 1)
        .map(|(comm, _)| comm)
        .collect();
    assert!(
        fifo.iter().all(|comm| comm.starts_with("fn-worker-")),
        "only workers were seen receiving: {fifo:?}"
    );
    // SAFETY: signals our own child by its pid.
    unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    let t = Instant::now();
    while agent.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "agent did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["monitor"], "ebpf", "{m}");
    assert_eq!(m["requests_seen"], requests, "{m}");
    assert_eq!(m["requests_completed"], requests, "{m}");
}
