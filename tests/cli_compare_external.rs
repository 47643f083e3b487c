//! `slokit compare` on external function hosts: a small Python runtime
//! (`http.server`'s `ThreadingHTTPServer`, two pre-forked processes, one
//! thread per connection, none of them named `fn-worker-`) started from the
//! experiment's `host` table, and the example's gunicorn runtime. The agent
//! must see every request sent to them under every policy; a SIGKILL of
//! `compare` mid-run must leave no process of the host's tree (a grandchild
//! in a session of its own included) and no real-time thread behind, and so
//! must Ctrl-C; a host is profiled through its URL once; a host that cannot
//! start is a clear error. Needs root (the agent) and python3; skips, or
//! fails under CI, without them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The runtime: POST `{"ms": N}` burns N ms of thread CPU time; `argv[2]`
/// processes share the listening socket (pre-forked, as gunicorn's workers).
/// With a third argument it first starts a grandchild in a new session
/// (outside the process group: only the cgroup holds it) and writes its pid
/// there.
const HOST: &str = r#"
import http.server, json, os, subprocess, sys, time
port = int(sys.argv[1])
processes = int(sys.argv[2])
if len(sys.argv) > 3:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
    with open(sys.argv[3], "w") as f:
        f.write(str(p.pid))
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        params = json.loads(self.rfile.read(n) or b"{}")
        start = time.perf_counter()
        end = time.thread_time() + params.get("ms", 1) / 1000
        while time.thread_time() < end:
            pass
        exec_us = (time.perf_counter() - start) * 1e6
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-slokit-exec-us", "%.1f" % exec_us)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
for _ in range(processes - 1):
    if os.fork() == 0:
        break
server.serve_forever()
"#;

/// Tests that run agents take turns (their SCHED_FIFO threads would
/// disturb each other's runs).
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ready() -> Option<std::sync::MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run these tests as root"
        );
        eprintln!("skipping: not root (the agent needs CAP_SYS_NICE and BPF)");
        return None;
    }
    let python = Command::new("python3").args(["-c", "pass"]).status();
    if !python.is_ok_and(|s| s.success()) {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3");
        eprintln!("skipping: no python3");
        return None;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipping: compare needs 2 CPUs");
        return None;
    }
    Some(TURN.lock().unwrap_or_else(|e| e.into_inner()))
}

/// An experiment with one scenario of the Python host alone (two
/// processes; given deadline and service time: no profiling), in `dir`.
fn experiment(dir: &Path, policies: &str, duration_s: f64, grandchild: Option<&Path>) -> PathBuf {
    std::fs::write(dir.join("host.py"), HOST).unwrap();
    let extra = grandchild.map_or(String::new(), |p| format!(", \"{}\"", p.display()));
    let text = format!(
        r#"
seed = 7
repetitions = 1
policies = [{policies}]
cooldown_s = 0.2
profiles_dir = "profiles"
out_dir = "results"
trace_deadline_slack = 1.5

[placement]
workers_per_host = 4

[[scenarios]]
name = "external"
duration_s = {duration_s}
kind = "mix"
rho = 0.3

[[scenarios.functions]]
label = "pyspin"
weight = 1.0
params = {{ ms = 2 }}
[scenarios.functions.host]
command = ["python3", "host.py", "{{port}}", "2"{extra}]
url = "http://127.0.0.1:{{port}}/"
deadline_ms = 20
service_ms = 2
"#
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn slokit() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("slokit"))
}

/// Scheduling policy (stat field 41) of every thread of `pid`.
fn thread_policies(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            use slokit_sys::procfs::{field, Stat};
            Stat::parse(&stat)?.get(field::POLICY)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    slokit_sched::targets::alive(pid)
}

/// Every descendant of `pid` now (children, their children, …).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// A child killed and reaped by pid on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A comparison caught mid-run: compare itself, every process it had
/// started (its descendants then), the runtime's grandchild in a session of
/// its own, and the comparison's cgroup.
struct MidRun {
    compare: Proc,
    tree: Vec<u32>,
    grandchild: u32,
    cgroup: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a long fifo comparison of the Python host and returns once the
/// agent has put a thread of the runtime in SCHED_FIFO.
fn mid_run() -> MidRun {
    let dir = tempfile::tempdir().unwrap();
    let grandchild_file = dir.path().join("grandchild.pid");
    let exp = experiment(dir.path(), "\"fifo\"", 60.0, Some(&grandchild_file));
    let out = dir.path().join("out");
    let mut child = slokit()
        .current_dir(dir.path())
        // --force: a functional test, not a measurement; the CPU check may
        // fail while other tests and builds load the machine.
        .args(["compare", "--force", "--experiment"])
        .arg(&exp)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let compare = Proc(child);
    let pid = compare.0.id();
    // The run has started when compare says so; then wait until the agent
    // has put a thread of the runtime in SCHED_FIFO (threads seen receiving).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("compare: {line}");
            if line.starts_with("[1/1]") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("compare started its run within 60 s");
    let host_pid = |tree: &[u32]| {
        tree.iter().copied().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("host.py"))
        })
    };
    let t0 = Instant::now();
    let tree = loop {
        let tree = descendants(pid);
        if let Some(h) = host_pid(&tree) {
            if thread_policies(h).iter().any(|p| *p == 1 || *p == 2) {
                break tree;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no thread of the runtime went real-time: tree {tree:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&grandchild_file);
    let grandchild: u32 = text
        .as_ref()
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("the runtime wrote its grandchild's pid: {text:?}"));
    assert!(alive(grandchild), "the grandchild runs");
    let cgroup = slokit_sched::targets::cgroup2_root().join(format!("slokit-compare-{pid}"));
    assert!(
        cgroup.exists(),
        "compare made its cgroup {}",
        cgroup.display()
    );
    MidRun {
        compare,
        tree,
        grandchild,
        cgroup,
        _dir: dir,
    }
}

impl MidRun {
    /// Asserts that nothing compare started is left, nor real-time.
    fn assert_nothing_left(&self) {
        let mut everyone = self.tree.clone();
        everyone.push(self.grandchild);
        let left: Vec<u32> = everyone.iter().copied().filter(|p| alive(*p)).collect();
        let real_time: Vec<(u32, Vec<u32>)> = everyone
            .iter()
            .map(|p| (*p, thread_policies(*p)))
            .filter(|(_, pols)| pols.iter().any(|p| *p == 1 || *p == 2))
            .collect();
        assert!(
            left.is_empty(),
            "processes of compare's tree left: {left:?}"
        );
        assert!(
            real_time.is_empty(),
            "real-time threads left: {real_time:?}"
        );
        assert!(!self.cgroup.exists(), "{} removed", self.cgroup.display());
    }
}

#[test]
fn sigkill_of_compare_leaves_no_process_of_the_tree_and_no_real_time_thread() {
    let Some(_turn) = ready() else {
        return;
    };
    let mut run = mid_run();
    // SAFETY: SIGKILL to the compare process this test started.
    unsafe { libc::kill(run.compare.0.id() as i32, libc::SIGKILL) };
    run.compare.0.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    run.assert_nothing_left();
}

#[test]
fn ctrl_c_of_compare_stops_the_tree_and_reports_what_ran() {
    let Some(_turn) = ready() else {
        return;
    };
    let mut run = mid_run();
    // SAFETY: SIGINT to the compare process this test started (what Ctrl-C
    // sends; the hosts lead process groups of their own, so only compare
    // gets it and stops them in order).
    unsafe { libc::kill(run.compare.0.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = run.compare.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "compare ended within 30 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    run.assert_nothing_left();
}

#[test]
fn the_agent_sees_every_request_sent_to_an_external_runtime_under_every_policy() {
    let Some(_turn) = ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(
        dir.path(),
        "\"cfs\", \"fifo\", \"two-level\", \"las\"",
        3.0,
        None,
    );
    let out = dir.path().join("out");
    let output = slokit()
        .current_dir(dir.path())
        .args(["compare", "--force", "--format", "json", "--experiment"])
        .arg(&exp)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let policies = &report["scenarios"][0]["policies"];
    assert_eq!(
        policies,
        &serde_json::json!(["cfs", "fifo", "two-level", "las"]),
        "{stderr}"
    );
    let hosts = &report["environment"]["function_hosts"];
    assert_eq!(hosts[0]["label"], "pyspin", "{hosts}");
    assert!(
        hosts[0]["runtime"]
            .as_str()
            .unwrap_or("")
            .starts_with("Python 3"),
        "the runtime's version is in the environment box: {hosts}"
    );
    let sources = &report["settings"]["deadline_sources"]["pyspin"];
    assert!(
        sources.as_str().unwrap_or("").contains("deadline_ms = 20"),
        "{sources}"
    );
    for policy in ["cfs", "fifo", "two-level", "las"] {
        let tag = format!("external-{policy}-0");
        let run: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("run-{tag}.json"))).unwrap(),
        )
        .unwrap();
        let sent = run["functions"][0]["invocations"].as_u64().unwrap();
        let ok = run["functions"][0]["ok"].as_u64().unwrap();
        let agent: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("agent-{tag}.json"))).unwrap(),
        )
        .unwrap();
        assert!(sent > 10, "{policy}: {sent} sent");
        assert_eq!(ok, sent, "{policy}: every invocation answered");
        assert_eq!(
            agent["requests_seen"].as_u64().unwrap(),
            sent,
            "{policy}: the agent saw every request sent (targets {})",
            agent["targets"]
        );
        assert_eq!(
            agent["requests_completed"].as_u64().unwrap(),
            sent,
            "{policy}"
        );
        if policy == "fifo" {
            assert!(
                agent["fifo_threads"].as_u64().unwrap() >= 1,
                "fifo placed the threads seen receiving: {agent}"
            );
        }
    }
    // nothing of the comparison is left in the cgroup hierarchy
    let root = slokit_sched::targets::cgroup2_root();
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("slokit-compare-")
        })
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_host_that_cannot_start_is_a_clear_error_naming_the_label_and_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "\"cfs\"", 1.0, None);
    // break the runtime: a syntax error
    std::fs::write(dir.path().join("host.py"), "def broken(:\n").unwrap();
    let output = slokit()
        .current_dir(dir.path())
        .args(["compare", "--force", "--experiment"])
        .arg(&exp)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("host `pyspin`") && stderr.contains("SyntaxError"),
        "{stderr}"
    );
}

/// Reads `<out>/agent-<tag>.json` and `<out>/run-<tag>.json`: (sent,
/// answered, seen by the agent, completed by the agent).
fn seen_and_sent(out: &Path, tag: &str) -> (u64, u64, u64, u64) {
    let read = |name: String| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let run = read(format!("run-{tag}.json"));
    let agent = read(format!("agent-{tag}.json"));
    let fs = run["functions"].as_array().unwrap();
    let sum = |k: &str| fs.iter().map(|f| f[k].as_u64().unwrap()).sum::<u64>();
    (
        sum("invocations"),
        sum("ok"),
        agent["requests_seen"].as_u64().unwrap(),
        agent["requests_completed"].as_u64().unwrap(),
    )
}

#[test]
fn a_host_without_figures_is_profiled_through_its_url_once() {
    let Some(_turn) = ready() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "\"cfs\"", 1.0, None);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("deadline_ms = 20\nservice_ms = 2\n", "");
    std::fs::write(&exp, text).unwrap();
    let run = |out: &str| {
        let output = slokit()
            .current_dir(dir.path())
            .args(["compare", "--force", "--format", "json", "--experiment"])
            .arg(&exp)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["settings"]["deadline_sources"]["pyspin"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = run("out1");
    assert!(first.contains("profiled now through the URL"), "{first}");
    let saved = dir.path().join("profiles/local/hosts/pyspin.toml");
    let profile = std::fs::read_to_string(&saved).unwrap();
    assert!(
        profile.contains("(host: python3 host.py {port} 2)"),
        "the profile names the host, not one run's port:\n{profile}"
    );
    let second = run("out2");
    assert!(
        second.contains(&saved.display().to_string()) && !second.contains("profiled now"),
        "the second comparison reuses the profile: {second}"
    );
    assert!(second.contains("from the HTTP round trip"), "{second}");
    // The host reports its execution time: timed by the header, the
    // profile is made again and the report says where the deadline is from.
    let text = std::fs::read_to_string(&exp).unwrap().replace(
        "url = \"http://127.0.0.1:{port}/\"\n",
        "url = \"http://127.0.0.1:{port}/\"\nservice_header = true\n",
    );
    std::fs::write(&exp, text).unwrap();
    let third = run("out3");
    assert!(
        third.contains("profiled now through the URL")
            && third.contains("from the runtime's x-slokit-exec-us header"),
        "{third}"
    );
    let profile = slokit_profiler::Profile::load(&saved).unwrap();
    assert_eq!(profile.deadline.timing, slokit_profiler::TimeFrom::Header);
    // 2 ms of CPU time in the handler: the runtime's own report, without
    // the HTTP exchange around it.
    assert!(
        (1900.0..20_000.0).contains(&profile.summary.p50_us),
        "{:?}",
        profile.summary
    );
}

#[test]
fn the_python_example_runtime_is_seen_whole_under_every_policy() {
    let Some(_turn) = ready() else {
        return;
    };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python");
    if !example.join(".venv/bin/gunicorn").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs `cargo xtask setup`, which creates examples/python/.venv"
        );
        eprintln!("skipping: no examples/python/.venv (run `cargo xtask setup`)");
        return;
    }
    // The example's Python functions alone (the agent counts all its
    // targets together), with given figures so nothing is profiled: the
    // gunicorn arbiter and its 1 + 2 worker processes.
    let text = std::fs::read_to_string(example.join("experiment.toml")).unwrap();
    let video = "[[scenarios.functions]]\nlabel = \"video\"\nfunction = \"video\"\nweight = 0.1\n";
    assert!(text.contains(video));
    let text = text
        .replace(video, "")
        .replace("cwd = \".\"", &format!("cwd = \"{}\"", example.display()))
        .replace(
            "url = \"http://127.0.0.1:{port}/\"\n",
            "url = \"http://127.0.0.1:{port}/\"\ndeadline_ms = 50\nservice_ms = 5\n",
        );
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("python-only.toml");
    std::fs::write(&exp, text).unwrap();
    let out = dir.path().join("out");
    let output = slokit()
        .current_dir(dir.path())
        .args([
            "compare",
            "--force",
            "--duration",
            "2",
            "--format",
            "json",
            "--experiment",
        ])
        .arg(&exp)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let hosts = report["environment"]["function_hosts"].to_string();
    assert!(
        hosts.contains("gunicorn (version") && hosts.contains("Python 3"),
        "{hosts}"
    );
    for policy in ["cfs", "fifo", "two-level", "las"] {
        let (sent, ok, seen, completed) = seen_and_sent(&out, &format!("python-{policy}-0"));
        assert!(sent > 20, "{policy}: {sent}");
        assert_eq!(
            (ok, seen, completed),
            (sent, sent, sent),
            "{policy}: {stderr}"
        );
    }
}
