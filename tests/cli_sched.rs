//! `slokit sched` end to end: refusals, the fifo baseline and its cleanup on
//! SIGTERM and SIGKILL (the guardian), the two-level policy demoting long
//! requests, and the notify monitor. Targets are child processes of this
//! test binary (re-executed in "child server" mode) with `fn-worker-*`
//! threads; every process is killed by pid in Drop guards.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slokit_sys::clock::thread_cpu_time;

const CHILD_ENV: &str = "SLOKIT_CLI_SCHED_CHILD";

/// Runs only as a child: 2 idle `fn-worker-idle-*` threads and an HTTP
/// server with one `fn-worker-N` thread per connection; `GET /spin/MS`
/// burns MS ms of thread CPU time. Pinned to the last CPU.
#[test]
fn child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 {
        // this process's threads inherit the main thread's mask
        let _ = slokit_sys::cpu::pin_current_thread(&[n - 1]);
    }
    for i in 0..2 {
        std::thread::Builder::new()
            .name(format!("fn-worker-idle-{i}"))
            .spawn(|| loop {
                std::thread::park();
            })
            .unwrap();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("PORT={}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for (i, conn) in listener.incoming().enumerate() {
        let mut conn = conn.unwrap();
        std::thread::Builder::new()
            .name(format!("fn-worker-{i}"))
            .spawn(move || {
                let mut buf = [0u8; 2048];
                let mut have = Vec::new();
                loop {
                    let n = match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have.extend_from_slice(&buf[..n]);
                    while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&have[..end]).to_string();
                        have.drain(..end + 4);
                        let ms: u64 = head
                            .split_whitespace()
                            .nth(1)
                            .and_then(|p| p.strip_prefix("/spin/"))
                            .and_then(|m| m.parse().ok())
                            .unwrap_or(0);
                        spin_cpu(Duration::from_millis(ms));
                        let body = b"ok";
                        let reply =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if conn.write_all(reply.as_bytes()).is_err()
                            || conn.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                }
            })
            .unwrap();
    }
}

fn spin_cpu(d: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time() - start < d {
        std::hint::spin_loop();
    }
}

/// A child process killed and reaped by pid on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the child server; returns it and its port.
fn start_server() -> (Proc, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let p = Proc(child);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child server exited");
        if let Some(i) = line.find("PORT=") {
            return (p, line[i + 5..].trim().parse().unwrap());
        }
    }
}

fn slokit() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("slokit"))
}

/// Starts `slokit sched ARGS` and waits (≤ 30 s) for `agent ready`.
fn start_agent(args: &[String]) -> Proc {
    let mut child = slokit()
        .arg("sched")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let agent = Proc(child);
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
    agent
}

/// Field `n` (1-based, as in proc(5)) of every thread's stat of `pid`, by comm.
fn thread_stat_field(pid: u32, n: usize) -> Vec<(String, u32)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let value: u32 = slokit_sys::procfs::Stat::parse(&stat)
            .unwrap()
            .get(n)
            .unwrap();
        v.push((comm.trim().to_string(), value));
    }
    v
}

/// Scheduling policy of every thread of `pid` (stat field 41), by comm.
fn policies(pid: u32) -> Vec<(String, u32)> {
    thread_stat_field(pid, 41)
}

fn fifo_threads(pid: u32) -> usize {
    policies(pid)
        .iter()
        .filter(|(_, p)| *p == 1 || *p == 2)
        .count()
}

/// Tests that run an agent take turns: one test's SCHED_FIFO threads (and
/// the RT throttling they can trigger) must not delay another's agent.
static AGENT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `None` (skip) unless root; else this test's turn, held until it ends.
fn root_and_alone() -> Option<std::sync::MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run these tests as root"
        );
        eprintln!("skipping: not root (the agent needs CAP_SYS_NICE and BPF)");
        return None;
    }
    Some(AGENT_TESTS.lock().unwrap_or_else(|e| e.into_inner()))
}

fn signal(p: &Proc, sig: i32) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(p.0.id() as i32, sig) };
}

fn wait_exit(p: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "agent did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(port: u16, path: &str) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
}

fn read_metrics(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("metrics file written");
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["schema"], "slokit.sched-metrics/1");
    // the library type reads it back
    slokit_sched::AgentMetrics::from_json(&text).unwrap();
    m
}

#[test]
fn refuses_pid_1_and_missing_targets() {
    let out = slokit().args(["sched", "--pid", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to schedule pid 1"), "{err}");
    let out = slokit().args(["sched"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pid"));
    let out = slokit()
        .args([
            "sched",
            "--pid",
            &std::process::id().to_string(),
            "--deadline",
            "7=5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a target"));
    let out = slokit()
        .args(["sched", "--pid", "1", "--timer-lead-us", "5000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--timer-lead-us must be at most 1000, got 5000"),
        "{err}"
    );
    // Policy constants are validated once, by the library, whichever way
    // they came: flags or a --params file.
    let out = slokit()
        .args([
            "sched",
            "--pid",
            "1",
            "--min-slice-ms",
            "5",
            "--max-slice-ms",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid policy parameter: min_slice_ms"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("params.toml");
    std::fs::write(&params, "[las]\ntop_priority = 1\n").unwrap();
    let out = slokit()
        .args(["sched", "--pid", "1", "--params"])
        .arg(&params)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid las parameter: top_priority"), "{err}");
    std::fs::write(&params, "[las]\ntop_prio = 30\n").unwrap();
    let out = slokit()
        .args(["sched", "--pid", "1", "--params"])
        .arg(&params)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("params.toml") && err.contains("top_prio"),
        "{err}"
    );
}

#[test]
fn fifo_workers_are_restored_within_1s_after_sigkill() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let (server, _port) = start_server();
    let pid = server.0.id();
    let mut agent = start_agent(&[
        "--policy".into(),
        "fifo".into(),
        "--pid".into(),
        pid.to_string(),
        "--summary-every".into(),
        "0".into(),
    ]);
    let p = policies(pid);
    let workers: Vec<_> = p
        .iter()
        .filter(|(c, _)| c.starts_with("fn-worker-"))
        .collect();
    assert_eq!(workers.len(), 2, "{p:?}");
    assert!(
        workers.iter().all(|(_, pol)| *pol == 1),
        "workers in SCHED_FIFO: {p:?}"
    );
    assert!(
        p.iter()
            .filter(|(c, _)| !c.starts_with("fn-worker-"))
            .all(|(_, pol)| *pol == 0),
        "only workers are touched: {p:?}"
    );
    signal(&agent, libc::SIGKILL);
    wait_exit(&mut agent, Duration::from_secs(5));
    let killed = Instant::now();
    while fifo_threads(pid) > 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "threads still SCHED_FIFO 1 s after SIGKILL: {:?}",
            policies(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigterm_restores_and_writes_metrics() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    let (server, port) = start_server();
    let pid = server.0.id();
    let mut agent = start_agent(&[
        "--policy".into(),
        "fifo".into(),
        "--pid".into(),
        pid.to_string(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    for _ in 0..5 {
        get(port, "/spin/1");
    }
    assert_eq!(fifo_threads(pid), 2);
    signal(&agent, libc::SIGTERM);
    let status = wait_exit(&mut agent, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(fifo_threads(pid), 0, "{:?}", policies(pid));
    let m = read_metrics(&metrics);
    assert_eq!(m["policy"], "fifo");
    assert_eq!(m["monitor"], "ebpf");
    assert_eq!(m["exit_reason"], "signal");
    assert_eq!(m["agent_idle_poll"], false, "auto: off for the baselines");
    assert_eq!(m["fifo_threads"], 2);
    assert_eq!(m["requests_seen"], 5);
    assert_eq!(m["requests_completed"], 5);
}

#[test]
fn two_level_demotes_requests_that_outrun_their_credit() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    let (server, port) = start_server();
    let pid = server.0.id();
    // S fixed at 5 ms; 15 ms requests must be demoted, 1 ms ones must not.
    let mut agent = start_agent(&[
        "--policy".into(),
        "two-level".into(),
        "--pid".into(),
        pid.to_string(),
        "--initial-slice-ms".into(),
        "5".into(),
        "--min-slice-ms".into(),
        "5".into(),
        "--max-slice-ms".into(),
        "5".into(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    for _ in 0..10 {
        get(port, "/spin/15");
        get(port, "/spin/1");
    }
    signal(&agent, libc::SIGTERM);
    assert!(wait_exit(&mut agent, Duration::from_secs(10)).success());
    assert_eq!(fifo_threads(pid), 0, "{:?}", policies(pid));
    let m = read_metrics(&metrics);
    assert_eq!(m["policy"], "two-level");
    assert_eq!(m["agent_idle_poll"], true, "auto: on for two-level");
    assert_eq!(m["agent_timer_lead_us"], 60, "the default lead");
    assert_eq!(m["untracked_threads"], 0, "every worker's CPU time tracked");
    assert!(m["ring_nudges"].is_u64(), "nudges reported");
    assert_eq!(
        m["arrival_to_agent_us"]["summary"]["count"], 20,
        "the wake-up share is measured for every request"
    );
    assert_eq!(m["requests_seen"], 20);
    assert_eq!(m["requests_completed"], 20);
    let t = &m["transitions"];
    assert_eq!(t["embarked"], 20, "{t}");
    assert_eq!(t["credit_demotions"], 10, "exactly the 15 ms requests: {t}");
    assert_eq!(t["completed_embarked"], 10, "{t}");
    assert_eq!(t["completed_demoted"], 10, "{t}");
    // Every arrival reached SCHED_FIFO, except where the request's thread
    // (one per connection here) had already replied and exited when the
    // agent acted on it — possible for a 1 ms request on a loaded machine.
    // (vanished threads also count demotions of threads already gone).
    let vanished = m["vanished_threads"].as_u64().unwrap();
    let reached = m["arrival_to_fifo_us"]["summary"]["count"]
        .as_u64()
        .unwrap();
    assert!(
        (15..=20).contains(&reached) && reached + vanished >= 20,
        "{reached} arrivals reached FIFO, {vanished} threads gone before the agent acted"
    );
    assert_eq!(m["exhausted_to_demoted_us"]["summary"]["count"], 10);
    assert!(m["timeline"].as_array().unwrap().len() >= 2);
    assert_eq!(m["timeline"][0]["slice_ms"], 5.0);
}

#[test]
fn notify_monitor_counts_the_hosts_datagrams() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    use slokit_functions::notify::{NotifyEvent, NotifyKind};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let metrics = dir.path().join("m.json");
    let (server, _port) = start_server();
    let pid = server.0.id();
    let mut agent = start_agent(&[
        "--policy".into(),
        "cfs".into(),
        "--monitor".into(),
        "notify".into(),
        "--notify".into(),
        sock.display().to_string(),
        "--pid".into(),
        pid.to_string(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    for conn in 0..7u64 {
        for kind in [NotifyKind::Arrival, NotifyKind::Completion] {
            let e = NotifyEvent {
                kind,
                tid: pid,
                tgid: pid,
                conn_id: conn,
                ts_ns: 1,
            };
            tx.send_to(&e.encode(), &sock).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&agent, libc::SIGTERM);
    assert!(wait_exit(&mut agent, Duration::from_secs(10)).success());
    let m = read_metrics(&metrics);
    assert_eq!(m["monitor"], "notify");
    assert_eq!(m["policy"], "cfs");
    assert_eq!(m["requests_seen"], 7);
    assert_eq!(m["requests_completed"], 7);
}

/// A cgroup v2 directory made for one test; on drop its remaining members
/// go back to the root cgroup and the directory is removed.
struct TestCgroup {
    dir: std::path::PathBuf,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let dir = slokit_sched::targets::cgroup2_root().join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup { dir }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let root = self.dir.parent().unwrap().join("cgroup.procs");
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(&root, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn cgroup_members_are_targets_including_ones_that_join_later() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    // Declared first, dropped last: the servers are gone before rmdir.
    let name = format!("slokit-test-{}", std::process::id());
    let cgroup = TestCgroup::new(&name);
    let (first, _) = start_server();
    let (second, _) = start_server();
    let outsider = start_server();
    cgroup.add(first.0.id());
    // A relative path is resolved under the cgroup v2 mount.
    let mut agent = start_agent(&[
        "--policy".into(),
        "fifo".into(),
        "--cgroup".into(),
        name.clone(),
        "--summary-every".into(),
        "0".into(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    assert_eq!(
        fifo_threads(first.0.id()),
        2,
        "{:?}",
        policies(first.0.id())
    );
    // The agent rescans its cgroups once a second.
    cgroup.add(second.0.id());
    let joined = Instant::now();
    while fifo_threads(second.0.id()) < 2 {
        assert!(
            joined.elapsed() < Duration::from_secs(5),
            "a process that joined the cgroup was not scheduled: {:?}",
            policies(second.0.id())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        fifo_threads(outsider.0 .0.id()),
        0,
        "only members are touched"
    );
    signal(&agent, libc::SIGTERM);
    let status = wait_exit(&mut agent, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(
        fifo_threads(first.0.id()),
        0,
        "{:?}",
        policies(first.0.id())
    );
    assert_eq!(
        fifo_threads(second.0.id()),
        0,
        "{:?}",
        policies(second.0.id())
    );
    let m = read_metrics(&metrics);
    assert_eq!(m["fifo_threads"], 4);
    let targets: Vec<u64> = m["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(
        targets.contains(&(first.0.id() as u64)) && targets.contains(&(second.0.id() as u64)),
        "{targets:?}"
    );
    drop((first, second, outsider));
    drop(cgroup);
}

/// SCHED_FIFO/RR priority of every thread of `pid` (stat field 40), by comm.
fn rt_priorities(pid: u32) -> Vec<(String, u32)> {
    thread_stat_field(pid, 40)
}

#[test]
fn las_parks_workers_drops_long_requests_and_restores_every_thread() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    let (server, port) = start_server();
    let pid = server.0.id();
    // Thresholds 2 ms and 8 ms: 1 ms requests end at the top level, 15 ms
    // ones pass both and end in SCHED_OTHER.
    let mut agent = start_agent(&[
        "--policy".into(),
        "las".into(),
        "--pid".into(),
        pid.to_string(),
        "--las-thresholds-us".into(),
        "2000,8000".into(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    let idle: Vec<(String, u32)> = rt_priorities(pid)
        .into_iter()
        .filter(|(c, _)| c.starts_with("fn-worker-idle"))
        .collect();
    assert_eq!(idle.len(), 2, "{idle:?}");
    assert!(
        idle.iter().all(|(_, p)| *p == 40),
        "idle workers parked at the top priority: {idle:?}"
    );
    for _ in 0..10 {
        get(port, "/spin/15");
        get(port, "/spin/1");
    }
    signal(&agent, libc::SIGTERM);
    assert!(wait_exit(&mut agent, Duration::from_secs(10)).success());
    assert_eq!(fifo_threads(pid), 0, "{:?}", policies(pid));
    let m = read_metrics(&metrics);
    assert_eq!(m["policy"], "las");
    assert_eq!(
        m["agent_idle_poll"], false,
        "auto: off for las, which has no decision on the arrival path"
    );
    assert_eq!(m["requests_completed"], 20);
    let las = &m["las"];
    assert_eq!(las["thresholds_us"], serde_json::json!([2000.0, 8000.0]));
    assert_eq!(las["priorities"], serde_json::json!([40, 39]));
    assert_eq!(
        las["reached"],
        serde_json::json!([20, 10, 10]),
        "every request starts at the top; the 15 ms ones pass both: {las}"
    );
    // each 15 ms request's thread was parked again after its reply, unless
    // it had already exited (this server's threads end with their
    // connection; the policy learns it from the ESRCH of its next action)
    let reparked = m["repark_us"]["summary"]["count"].as_u64().unwrap();
    assert!((5..=10).contains(&reparked), "{}", m["repark_us"]);
    assert_eq!(m["exhausted_to_demoted_us"]["summary"]["count"], 20);
    assert_eq!(
        las["threads_parked"], 22,
        "2 idle workers + 20 connection threads"
    );
    assert_eq!(m["las_params"]["top_priority"], 40);
}

/// A Python runtime that hands requests off: the main thread receives,
/// queues the connection for a worker thread that replies, and then burns
/// `MS` ms of CPU itself (as an event loop or a GC would).
const HANDOFF_SERVER: &str = r#"
import queue, socket, threading, time
q = queue.Queue()
def worker():
    while True:
        c = q.get()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        c.close()
threading.Thread(target=worker, daemon=True).start()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("PORT=%d" % s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(4096)
    ms = int(data.split()[1].split(b"/")[-1])
    q.put(c)
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
"#;

#[test]
fn las_leaves_no_thread_real_time_in_a_runtime_that_hands_requests_off() {
    let Some(_turn) = root_and_alone() else {
        return;
    };
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        eprintln!("skipping: needs a function CPU apart from the agent's");
        return;
    }
    let python = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .arg("-c")
            .arg("pass")
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3 (the hand-off runtime of this test)"
        );
        eprintln!("skipping: no python3");
        return;
    };
    let mut child = Command::new("taskset")
        .args(["-c", &(n - 1).to_string(), python, "-c", HANDOFF_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("taskset and python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let server = Proc(child);
    let pid = server.0.id();
    let mut line = String::new();
    let port: u16 = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "python server exited"
        );
        if let Some(p) = line.trim().strip_prefix("PORT=") {
            break p.parse().unwrap();
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.json");
    let mut agent = start_agent(&[
        "--policy".into(),
        "las".into(),
        "--pid".into(),
        pid.to_string(),
        "--las-thresholds-us".into(),
        "1000,3000".into(),
        "--las-idle-check-us".into(),
        "5000".into(),
        "--function-cpus".into(),
        (n - 1).to_string(),
        "--metrics-out".into(),
        metrics.display().to_string(),
    ]);
    // Short requests first: the receiver is seen, raised and parked.
    for _ in 0..5 {
        get(port, "/spin/0");
    }
    // Then one whose receiver burns 400 ms after the hand-off: the reply
    // comes from the worker, the receiver is parked again while it still
    // spins, and must be put back in SCHED_OTHER long before it is done.
    let t0 = Instant::now();
    get(port, "/spin/400");
    std::thread::sleep(Duration::from_millis(150).saturating_sub(t0.elapsed()));
    let mut rt_seen = Vec::new();
    while t0.elapsed() < Duration::from_millis(300) {
        let rt = fifo_threads(pid);
        rt_seen.push(rt);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        rt_seen.iter().all(|&n| n == 0),
        "a thread of the hand-off runtime stayed real-time while it spun with no request: {rt_seen:?} {:?}",
        policies(pid)
    );
    signal(&agent, libc::SIGTERM);
    assert!(wait_exit(&mut agent, Duration::from_secs(10)).success());
    assert_eq!(fifo_threads(pid), 0, "{:?}", policies(pid));
    let m = read_metrics(&metrics);
    let las = &m["las"];
    assert_eq!(m["requests_completed"], 6, "{m}");
    assert_eq!(
        las["handoffs"], 6,
        "every reply came from the worker: {las}"
    );
    assert!(
        las["idle_demotions"].as_u64().unwrap() >= 1,
        "the spinning receiver was demoted as an idle parked thread: {las}"
    );
}
