//! `slokit serve` as a user runs it: start on a free port, read the
//! `listening on` line, call it, SIGTERM it, expect exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
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
            "spin",
        ])
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
    assert!(stderr.contains("served 2 requests"), "{stderr}");
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
