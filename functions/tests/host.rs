//! The function host over real HTTP on loopback (ephemeral ports): routes,
//! every bad-input case, keep-alive and pipelining, the idle-connection
//! pitfall (1,000 keep-alive connections on 4 workers), notify events,
//! pinning, and graceful shutdown.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use slokit_functions::catalogue::{Function, FunctionInfo, InvokeError};
use slokit_functions::host::{Host, HostConfig, HostError, RunningHost};
use slokit_functions::notify::{NotifyEvent, NotifyKind, NOTIFY_LEN};
use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_sys::cpu::{current_affinity, get_affinity};

// ---------------------------------------------------------------- client

/// A parsed reply.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn tid(&self) -> u32 {
        self.header("x-slokit-tid")
            .expect("x-slokit-tid header")
            .parse()
            .unwrap()
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A minimal blocking HTTP/1.1 client on one connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn send_request(&mut self, method: &str, path: &str, body: &[u8]) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.send(&req);
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.send_request(method, path, body);
        self.read_response()
    }

    fn invoke(&mut self, function: &str, params: &Value) -> Resp {
        self.request(
            "POST",
            &format!("/invoke/{function}"),
            params.to_string().as_bytes(),
        )
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).expect("reading the reply");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn read_response(&mut self) -> Resp {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = r.parse(&self.buf).expect("valid reply") {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = r.code.unwrap();
                if (100..200).contains(&status) {
                    self.buf.drain(..head_len);
                    return Resp {
                        status,
                        headers,
                        body: Vec::new(),
                    };
                }
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .expect("content-length on every reply")
                    .1
                    .parse()
                    .unwrap();
                if self.buf.len() >= head_len + len {
                    let body = self.buf[head_len..head_len + len].to_vec();
                    self.buf.drain(..head_len + len);
                    return Resp {
                        status,
                        headers,
                        body,
                    };
                }
            }
            assert!(self.fill() > 0, "connection closed before a full reply");
        }
    }

    /// True when the host closed the connection (EOF or reset, nothing
    /// more buffered).
    fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// The reply of `spin` echoes the requested `ms`: the marker that tells
/// replies apart. (serde_json's default float parsing may be off in the
/// last ulp, far below the markers' spacing.)
fn assert_ms(r: &Resp, ms: f64) {
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let got = r.json()["requested_ms"].as_f64().unwrap();
    assert!(
        (got - ms).abs() <= ms.abs() * 1e-12,
        "reply mixed up: asked {ms}, got {got}"
    );
}

// ---------------------------------------------------------------- fixtures

fn catalogue() -> Catalogue {
    let mut c = Catalogue::builtin(&CatalogueConfig::default());
    c.insert(Arc::new(Scripted));
    c
}

/// Behaves as its `do` parameter says: `ok`, `unauthorized`, `fail`, `panic`.
struct Scripted;

impl Function for Scripted {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "scripted",
            summary: "test function that succeeds, refuses, fails or panics on demand",
            params: vec![],
        }
    }

    fn invoke(&self, params: &Value) -> Result<Value, InvokeError> {
        match params["do"].as_str() {
            Some("unauthorized") => Err(InvokeError::Unauthorized("token expired".into())),
            Some("fail") => Err(InvokeError::Failed("disk on fire".into())),
            Some("panic") => panic!("scripted panic"),
            _ => Ok(json!({"done": true})),
        }
    }
}

fn start(config: HostConfig) -> RunningHost {
    Host::start(config, catalogue()).expect("host starts")
}

fn start_workers(workers: usize) -> RunningHost {
    start(HostConfig {
        workers,
        ..HostConfig::default()
    })
}

fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill and then pass back.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            lim.rlim_cur = lim.rlim_max.min(want.max(lim.rlim_cur));
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

// ---------------------------------------------------------------- routes

#[test]
fn healthz_and_function_listing() {
    let host = start_workers(2);
    let mut c = Client::connect(host.local_addr());
    let r = c.request("GET", "/healthz", b"");
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
    let r = c.request("GET", "/functions", b"");
    assert_eq!(r.status, 200);
    let list = r.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"spin") && names.contains(&"scripted"),
        "{names:?}"
    );
    let spin = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "spin")
        .unwrap();
    assert_eq!(spin["params"][0]["name"], "ms");
}

#[test]
fn invoke_replies_carry_exec_time_and_a_worker_tid_of_this_process() {
    let host = start_workers(2);
    let mut c = Client::connect(host.local_addr());
    let r = c.invoke("spin", &json!({"ms": 2.0}));
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["requested_ms"], json!(2.0));
    let exec_us: u64 = r
        .header("x-slokit-exec-us")
        .expect("exec header")
        .parse()
        .unwrap();
    assert!(exec_us >= 2_000, "spin of 2 ms CPU took {exec_us} µs wall");
    let tid = r.tid();
    assert!(
        host.worker_tids().contains(&tid),
        "{tid} not in {:?}",
        host.worker_tids()
    );
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
    assert!(comm.starts_with("fn-worker-"), "{comm}");
    for (tid, name) in [
        (host.acceptor_tid(), "host-acceptor"),
        (host.poller_tid(), "host-poller"),
    ] {
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
        assert_eq!(comm.trim(), name);
    }
}

#[test]
fn empty_body_means_default_parameters() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    let r = c.request("POST", "/invoke/spin", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["requested_ms"], json!(10.0));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection_in_order() {
    let host = start_workers(3);
    let mut c = Client::connect(host.local_addr());
    for i in 0..30 {
        let ms = i as f64 * 0.01;
        let r = c.invoke("spin", &json!({ "ms": ms }));
        assert_eq!(r.status, 200);
        assert!(!r.closes());
        assert_ms(&r, ms);
    }
    // Pipelined: three requests in one write, three replies in order.
    let mut burst = Vec::new();
    for ms in [0.3, 0.1, 0.2] {
        let body = json!({ "ms": ms }).to_string();
        burst.extend_from_slice(
            format!(
                "POST /invoke/spin HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    c.send(&burst);
    for ms in [0.3, 0.1, 0.2] {
        let r = c.read_response();
        assert_ms(&r, ms);
    }
    assert_eq!(host.shutdown().connections, 1);
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.closes());
    assert!(c.is_closed());

    let mut c = Client::connect(host.local_addr());
    for _ in 0..2 {
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn connection_close_is_honoured() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    c.send(
        b"POST /invoke/spin HTTP/1.1\r\nConnection: close\r\nContent-Length: 8\r\n\r\n{\"ms\":0}",
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.closes());
    assert!(c.is_closed());
}

// ---------------------------------------------------------------- bad input

fn assert_error(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[test]
fn malformed_http_gets_400_and_the_connection_closed() {
    let host = start_workers(1);
    for raw in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"POST /invoke/spin HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"POST /invoke/spin HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let mut c = Client::connect(host.local_addr());
        c.send(raw);
        let r = c.read_response();
        assert_error(&r, 400, "malformed request");
        assert!(r.closes());
        assert!(c.is_closed(), "{:?}", String::from_utf8_lossy(raw));
    }
    let mut c = Client::connect(host.local_addr());
    assert_eq!(
        c.request("GET", "/healthz", b"").status,
        200,
        "host still serves"
    );
}

#[test]
fn malformed_json_and_bad_params_get_400_and_keep_the_connection() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    let r = c.request("POST", "/invoke/spin", b"{\"ms\": ");
    assert_error(&r, 400, "malformed JSON");
    assert!(!r.closes());
    for bad in [
        json!({"ms": -1}),
        json!({"ms": "ten"}),
        json!({"nope": 1}),
        json!([1, 2]),
    ] {
        let r = c.invoke("spin", &bad);
        assert_error(&r, 400, "invalid parameters");
        assert!(r.header("x-slokit-exec-us").is_some());
    }
    assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
}

#[test]
fn function_errors_map_to_401_and_500_and_panics_do_not_lose_the_worker() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    assert_error(
        &c.invoke("scripted", &json!({"do": "unauthorized"})),
        401,
        "unauthorized",
    );
    assert_error(
        &c.invoke("scripted", &json!({"do": "fail"})),
        500,
        "function failed",
    );
    for _ in 0..3 {
        let r = c.invoke("scripted", &json!({"do": "panic"}));
        assert_error(&r, 500, "function panicked");
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("scripted panic"));
    }
    // The single worker survived every panic.
    let r = c.invoke("scripted", &json!({"do": "ok"}));
    assert_eq!((r.status, r.json()), (200, json!({"done": true})));
}

#[test]
fn unknown_functions_and_paths_get_404_and_wrong_methods_405() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    let r = c.invoke("nope", &json!({}));
    assert_error(&r, 404, "unknown function");
    assert!(r.json()["detail"].as_str().unwrap().contains("spin"));
    assert_error(&c.request("GET", "/nowhere", b""), 404, "not found");
    let r = c.request("GET", "/invoke/spin", b"");
    assert_error(&r, 405, "method not allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.request("POST", "/healthz", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = c.request("DELETE", "/functions", b"");
    assert_eq!(r.status, 405);
    assert_eq!(
        c.request("GET", "/healthz", b"").status,
        200,
        "connection kept"
    );
}

#[test]
fn oversized_bodies_get_413_and_the_connection_closed() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    // Head plus the first 64 KiB of a 2 MiB body: the reply must survive
    // the unread bytes (no reset before the client reads it).
    let mut req = b"POST /invoke/spin HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b' ', 64 * 1024));
    c.send(&req);
    let r = c.read_response();
    assert_error(&r, 413, "body too large");
    assert!(r.closes());
    // Exactly at the limit is fine (whitespace is an empty body).
    let mut c = Client::connect(host.local_addr());
    let r = c.request("POST", "/invoke/spin", &vec![b' '; 1024 * 1024]);
    assert_eq!(r.status, 200);
}

#[test]
fn chunked_bodies_get_411_and_the_connection_closed() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    c.send(b"POST /invoke/spin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_error(&r, 411, "length required");
    assert!(c.is_closed());
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    c.send(b"POST /invoke/spin HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    c.send(b"{\"ms\":0}");
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn a_stalled_client_gets_408_and_frees_its_worker() {
    let host = start(HostConfig {
        workers: 1,
        request_timeout: Duration::from_millis(300),
        ..HostConfig::default()
    });
    let mut stalled = Client::connect(host.local_addr());
    stalled.send(b"POST /invoke/spin HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"ms\"");
    let mut other = Client::connect(host.local_addr());
    // Served once the single worker gives up on the stalled client.
    assert_eq!(other.invoke("spin", &json!({"ms": 0})).status, 200);
    let r = stalled.read_response();
    assert_error(&r, 408, "request timeout");
    assert!(stalled.is_closed());
}

#[test]
fn idle_connections_do_not_pin_workers() {
    // More idle keep-alive connections (some used once, some never) than
    // workers; a new client must still be served. The 20 s client read
    // timeout is far below the host's default 10 s-per-request stall
    // budget times the idle connections, so pinning would fail this.
    let host = start_workers(2);
    let mut idle: Vec<Client> = (0..8).map(|_| Client::connect(host.local_addr())).collect();
    for c in idle.iter_mut().take(4) {
        assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
    }
    let mut fresh = Client::connect(host.local_addr());
    fresh
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(fresh.invoke("spin", &json!({"ms": 0})).status, 200);
    for c in idle.iter_mut() {
        assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
    }
}

#[test]
fn thousand_concurrent_keep_alive_connections_on_four_workers() {
    raise_fd_limit(4096);
    const THREADS: usize = 4;
    const PER_THREAD: usize = 250;
    const ROUNDS: usize = 2;
    let host = start_workers(4);
    let addr = host.local_addr();
    let workers: Vec<u32> = host.worker_tids().to_vec();
    // Open every connection before any request, so all 1,000 are live and
    // idle at once.
    let groups: Vec<Vec<Client>> = (0..THREADS)
        .map(|_| (0..PER_THREAD).map(|_| Client::connect(addr)).collect())
        .collect();
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(t, mut clients)| {
            let workers = workers.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let marker =
                        |i: usize| ((t * PER_THREAD + i) * ROUNDS + round + 1) as f64 * 1e-6;
                    for (i, c) in clients.iter_mut().enumerate() {
                        let body = json!({ "ms": marker(i) }).to_string();
                        c.send_request("POST", "/invoke/spin", body.as_bytes());
                    }
                    for (i, c) in clients.iter_mut().enumerate() {
                        let r = c.read_response();
                        assert_eq!(r.status, 200);
                        assert_ms(&r, marker(i));
                        assert!(workers.contains(&r.tid()));
                    }
                }
                clients.len()
            })
        })
        .collect();
    let served: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(served, THREADS * PER_THREAD);
    let stats = host.shutdown();
    assert_eq!(stats.connections, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.requests, (THREADS * PER_THREAD * ROUNDS) as u64);
}

// ---------------------------------------------------------------- notify, pinning

fn notify_socket() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (dir, path, sock)
}

fn recv_event(sock: &UnixDatagram) -> NotifyEvent {
    let mut b = [0u8; 64];
    let n = sock.recv(&mut b).expect("a notify event");
    assert_eq!(n, NOTIFY_LEN);
    NotifyEvent::decode(&b[..n]).expect("valid event")
}

#[test]
fn notify_reports_arrival_and_completion_on_the_serving_worker() {
    let (_dir, path, sock) = notify_socket();
    let host = start(HostConfig {
        workers: 2,
        notify: Some(path),
        ..HostConfig::default()
    });
    let mut c = Client::connect(host.local_addr());
    let mut conn_ids = Vec::new();
    for _ in 0..2 {
        let r = c.invoke("spin", &json!({"ms": 1.0}));
        let arrival = recv_event(&sock);
        let completion = recv_event(&sock);
        assert_eq!(arrival.kind, NotifyKind::Arrival);
        assert_eq!(completion.kind, NotifyKind::Completion);
        for e in [arrival, completion] {
            assert_eq!(e.tid, r.tid());
            assert_eq!(e.tgid, std::process::id());
        }
        assert_eq!(arrival.conn_id, completion.conn_id);
        assert!(
            completion.ts_ns - arrival.ts_ns >= 1_000_000,
            "spin of 1 ms in between"
        );
        conn_ids.push(arrival.conn_id);
    }
    assert_eq!(conn_ids[0], conn_ids[1], "same connection, same id");
    let mut c2 = Client::connect(host.local_addr());
    c2.invoke("spin", &json!({"ms": 0}));
    assert_ne!(recv_event(&sock).conn_id, conn_ids[0]);
    assert_eq!(host.stats().notify_dropped, 0);
}

#[test]
fn workers_sit_on_the_worker_cpus_and_host_threads_off_them() {
    let allowed = current_affinity().unwrap();
    if allowed.len() < 2 {
        let why =
            format!("needs 2 usable CPUs to split workers from host threads, have {allowed:?}");
        assert!(std::env::var("CI").is_err(), "{why}");
        eprintln!("skipping: {why}");
        return;
    }
    let worker_cpu = *allowed.last().unwrap();
    let host = start(HostConfig {
        workers: 2,
        worker_cpus: Some(vec![worker_cpu]),
        ..HostConfig::default()
    });
    for &tid in host.worker_tids() {
        assert_eq!(get_affinity(tid as libc::pid_t).unwrap(), vec![worker_cpu]);
    }
    for tid in [host.acceptor_tid(), host.poller_tid()] {
        let cpus = get_affinity(tid as libc::pid_t).unwrap();
        assert!(!cpus.contains(&worker_cpu) && !cpus.is_empty(), "{cpus:?}");
    }
    assert_eq!(host.service_cpus().unwrap(), &allowed[..allowed.len() - 1]);
    let mut c = Client::connect(host.local_addr());
    assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
}

#[test]
fn bad_configurations_are_refused_with_the_fix_in_the_message() {
    let e = Host::start(
        HostConfig {
            workers: 0,
            ..HostConfig::default()
        },
        catalogue(),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Config(_)), "{e}");
    let e = Host::start(
        HostConfig {
            worker_cpus: Some(vec![1000]),
            ..HostConfig::default()
        },
        catalogue(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("CPU 1000 is not available"), "{e}");
    let e = Host::start(
        HostConfig {
            notify: Some("/nonexistent/notify.sock".into()),
            ..HostConfig::default()
        },
        catalogue(),
    )
    .unwrap_err();
    assert!(matches!(e, HostError::Notify { .. }), "{e}");
    let first = start_workers(1);
    let e = Host::start(
        HostConfig {
            listen: first.local_addr(),
            ..HostConfig::default()
        },
        catalogue(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("port 0"), "{e}");
}

// ---------------------------------------------------------------- shutdown

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let (_dir, path, sock) = notify_socket();
    let host = start(HostConfig {
        workers: 2,
        notify: Some(path),
        ..HostConfig::default()
    });
    let addr = host.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.request("GET", "/healthz", b"").status, 200);
    let _ = recv_event(&sock);
    let _ = recv_event(&sock);

    let busy = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.invoke("spin", &json!({"ms": 300.0}))
    });
    // The worker has read the request: it is in flight.
    assert_eq!(recv_event(&sock).kind, NotifyKind::Arrival);
    let stats = host.shutdown();

    let r = busy.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request finished");
    assert_eq!(r.json()["requested_ms"], json!(300.0));
    assert!(r.closes(), "reply during shutdown says connection: close");
    assert_eq!(stats.requests, 2);
    assert!(idle.is_closed(), "idle keep-alive connection closed");
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn notify_drops_and_counts_events_the_agent_cannot_take() {
    let (dir, path, sock) = notify_socket();
    let host = start(HostConfig {
        workers: 1,
        notify: Some(path),
        ..HostConfig::default()
    });
    let mut c = Client::connect(host.local_addr());
    // Nobody reads: the datagram queue fills (net.unix.max_dgram_qlen),
    // then the agent goes away entirely; requests are served regardless.
    for _ in 0..100 {
        assert_eq!(c.request("GET", "/healthz", b"").status, 200);
    }
    let full = host.stats().notify_dropped;
    assert!(full > 0 && full < 200, "{full}");
    drop(sock);
    drop(dir);
    for _ in 0..5 {
        assert_eq!(c.request("GET", "/healthz", b"").status, 200);
    }
    // All 10 events after the agent left are dropped; the last completion
    // of the first phase may have been counted after `full` was read (it
    // is sent after the reply the client waited for).
    let gone = host.shutdown().notify_dropped - full;
    assert!(gone == 10 || gone == 11, "{gone}");
}

#[test]
fn auth_through_the_host_verifies_tokens_and_refuses_with_401() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    let secret = slokit_functions::catalogue::DEFAULT_AUTH_SECRET.as_bytes();
    let token = slokit_functions::auth::mint_token(secret, "alice", 4_000_000_000);
    let r = c.invoke("auth", &json!({ "token": token }));
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["principalId"], "alice");
    let forged = slokit_functions::auth::mint_token(b"not the secret", "mallory", 4_000_000_000);
    assert_error(
        &c.invoke("auth", &json!({ "token": forged })),
        401,
        "unauthorized",
    );
    assert_error(
        &c.invoke("auth", &json!({ "token": "unauthorized" })),
        401,
        "unauthorized",
    );
    assert_error(
        &c.invoke("auth", &json!({ "token": 7 })),
        400,
        "invalid parameters",
    );
}

// ---------------------------------------------------------------- hostile clients

/// A client that sends `request` one byte every `gap` from another thread
/// until it is done, the host closes, or the returned flag is set.
fn trickle(
    addr: SocketAddr,
    request: &'static [u8],
    gap: Duration,
) -> (Client, Arc<std::sync::atomic::AtomicBool>) {
    let client = Client::connect(addr);
    let mut writer = client.stream.try_clone().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for b in request {
            if flag.load(std::sync::atomic::Ordering::Relaxed) || writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    });
    (client, stop)
}

const SLOW_REQUEST: &[u8] =
    b"POST /invoke/spin HTTP/1.1\r\nHost: loris\r\nContent-Length: 9\r\n\r\n{\"ms\": 0}";

/// CPU time of thread `tid` of this process so far (schedstat, ns).
fn thread_cpu(tid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(text.split(' ').next().unwrap().parse().unwrap())
}

#[test]
fn slow_loris_clients_do_not_stop_a_normal_request() {
    // One more byte-a-200-ms client than workers: each would hold a worker
    // for the whole request (~15 s) if workers read partial requests.
    let host = start_workers(2);
    let lorises: Vec<_> = (0..3)
        .map(|_| trickle(host.local_addr(), SLOW_REQUEST, Duration::from_millis(200)))
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    let mut c = Client::connect(host.local_addr());
    let t = std::time::Instant::now();
    assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "a normal request waited {waited:?} behind slow clients"
    );
    for (_, stop) in &lorises {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_request_trickling_in_past_its_deadline_gets_408() {
    let host = start(HostConfig {
        workers: 1,
        request_timeout: Duration::from_millis(500),
        ..HostConfig::default()
    });
    // A byte every 100 ms never stalls a single read for long, but the
    // whole request would take ~7 s.
    let (mut loris, _stop) = trickle(host.local_addr(), SLOW_REQUEST, Duration::from_millis(100));
    loris
        .stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let t = std::time::Instant::now();
    let r = loris.read_response();
    assert_error(&r, 408, "request timeout");
    assert!(r.closes());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(loris.is_closed());
    assert_eq!(host.stats().timed_out, 1);
    // The single worker was never taken.
    let mut c = Client::connect(host.local_addr());
    assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
}

#[test]
fn a_signed_content_length_gets_400() {
    let host = start_workers(1);
    for value in ["+2", "-2", " 2 2"] {
        let mut c = Client::connect(host.local_addr());
        c.send(
            format!("POST /invoke/spin HTTP/1.1\r\nContent-Length: {value}\r\n\r\n{{}}").as_bytes(),
        );
        let r = c.read_response();
        assert_error(&r, 400, "malformed request");
        assert!(
            r.json()["detail"].as_str().unwrap().contains("digits only"),
            "{:?}",
            r.json()
        );
        assert!(c.is_closed());
    }
}

#[test]
fn head_gets_405_without_a_body() {
    let host = start_workers(1);
    let mut c = Client::connect(host.local_addr());
    for (path, allow) in [("/healthz", "GET"), ("/invoke/spin", "POST")] {
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some(allow));
        assert_eq!(r.header("content-length"), Some("0"));
        assert!(r.body.is_empty());
    }
    // Any body bytes after the HEAD replies would be read as the next reply.
    let r = c.request("GET", "/healthz", b"");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
}

/// A `spin` request of `ms` padded with whitespace to `len` body bytes.
fn padded_spin(ms: f64, len: usize) -> Vec<u8> {
    let mut body = json!({ "ms": ms }).to_string().into_bytes();
    body.resize(len, b' ');
    body
}

#[test]
fn requests_past_the_bytes_in_flight_limit_get_503_with_retry_after() {
    let host = start(HostConfig {
        workers: 2,
        max_inflight_bytes: 8 * 1024,
        ..HostConfig::default()
    });
    let addr = host.local_addr();
    let first = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.request("POST", "/invoke/spin", &padded_spin(600.0, 5 * 1024))
    });
    std::thread::sleep(Duration::from_millis(200));
    // A free worker, but 5 KiB + 5 KiB would pass the 8 KiB limit.
    let mut c = Client::connect(addr);
    let r = c.request("POST", "/invoke/spin", &padded_spin(0.0, 5 * 1024));
    assert_error(&r, 503, "busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.closes());
    assert!(c.is_closed());
    // A small one still fits beside the first.
    let mut c = Client::connect(addr);
    assert_eq!(
        c.request("POST", "/invoke/spin", &padded_spin(0.0, 512))
            .status,
        200
    );
    assert_eq!(first.join().unwrap().status, 200);
    // Its bytes came back: the large one fits now.
    let mut c = Client::connect(addr);
    assert_eq!(
        c.request("POST", "/invoke/spin", &padded_spin(0.0, 5 * 1024))
            .status,
        200
    );
    assert_eq!(host.stats().shed, 1);
}

#[test]
fn a_client_that_hangs_up_stops_its_spin() {
    let host = start_workers(1);
    let worker = host.worker_tids()[0];
    let before = thread_cpu(worker);
    let mut gone = Client::connect(host.local_addr());
    gone.send_request(
        "POST",
        "/invoke/spin",
        json!({"ms": 4000}).to_string().as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(gone);
    // The only worker is free again long before the 4 s spin would end.
    let mut c = Client::connect(host.local_addr());
    let t = std::time::Instant::now();
    assert_eq!(c.invoke("spin", &json!({"ms": 0})).status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let burned = thread_cpu(worker) - before;
    assert!(burned < Duration::from_secs(1), "worker burned {burned:?}");
    assert_eq!(host.stats().cancelled, 1);
}

#[test]
fn shutdown_with_stalled_clients_ends_within_the_drain_bound() {
    let host = start(HostConfig {
        workers: 2,
        drain_timeout: Duration::from_millis(300),
        ..HostConfig::default()
    });
    let addr = host.local_addr();
    let lorises: Vec<_> = (0..3)
        .map(|_| trickle(addr, SLOW_REQUEST, Duration::from_millis(200)))
        .collect();
    // One request that runs past the drain bound.
    let long = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send_request(
            "POST",
            "/invoke/spin",
            json!({"ms": 10000}).to_string().as_bytes(),
        );
        let mut b = [0u8; 256];
        c.stream.read(&mut b).map(|n| n == 0)
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let stats = host.shutdown();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(stats.abandoned, 1, "{stats:?}");
    let closed = long.join().unwrap();
    assert!(
        matches!(closed, Ok(true)) || closed.is_err(),
        "cut-off request closed unanswered: {closed:?}"
    );
    for (mut c, stop) in lorises {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(c.is_closed(), "a stalled connection was closed");
    }
}

const MIB: usize = 1024 * 1024;

/// Iterations of a 1.5 MiB `aes` request that run for over a second (test
/// builds optimise `aes`, `ctr` and the functions; see Cargo.toml).
const LONG_AES_ITERATIONS: u32 = 200;

#[test]
fn an_invocation_whose_memory_estimate_passes_the_limit_gets_413() {
    let host = start(HostConfig {
        workers: 1,
        max_inflight_bytes: 8 * MIB,
        ..HostConfig::default()
    });
    let mut c = Client::connect(host.local_addr());
    // A 70-byte body, but 4 buffers of 3 MiB (12 MiB) > 8 MiB.
    let r = c.invoke("aes", &json!({ "length": 3 * MIB, "iterations": 1 }));
    assert_error(&r, 413, "too much memory");
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains(&(12 * MIB).to_string()) && detail.contains(&(8 * MIB).to_string()),
        "names the estimate and the limit: {detail}"
    );
    assert!(!r.closes(), "the request was read whole: keep-alive");
    // 4 × 1.5 MiB = 6 MiB fits alone, on the same connection.
    let r = c.invoke("aes", &json!({ "length": 3 * MIB / 2, "iterations": 1 }));
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["roundtrip_ok"], true);
    let stats = host.stats();
    assert_eq!((stats.rejected, stats.shed), (1, 0));
}

#[test]
fn concurrent_invocations_past_the_limit_by_memory_get_503_with_retry_after() {
    let host = start(HostConfig {
        workers: 2,
        max_inflight_bytes: 8 * MIB,
        ..HostConfig::default()
    });
    let addr = host.local_addr();
    let long = json!({ "length": 3 * MIB / 2, "iterations": LONG_AES_ITERATIONS });
    let first = std::thread::spawn(move || Client::connect(addr).invoke("aes", &long));
    std::thread::sleep(Duration::from_millis(300));
    // A free worker and a tiny body, but 6 MiB + 6 MiB would pass 8 MiB.
    let mut c = Client::connect(addr);
    let short = json!({ "length": 3 * MIB / 2, "iterations": 1 });
    let r = c.invoke("aes", &short);
    assert_error(&r, 503, "busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    let first = first.join().unwrap();
    assert_eq!(first.status, 200);
    let exec_us: u64 = first.header("x-slokit-exec-us").unwrap().parse().unwrap();
    assert!(
        exec_us > 300_000,
        "the first ran while the second came ({exec_us} µs)"
    );
    // The first's memory came back: the second fits now.
    assert_eq!(c.invoke("aes", &short).status, 200);
    assert_eq!(host.stats().shed, 1);
}
