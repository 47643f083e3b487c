//! External function hosts: the user's own runtime (a Python WSGI server,
//! Node, a FaaS watchdog), started from the experiment's `host` table for
//! each run. `compare` picks a free port, starts the command contained on
//! the function CPUs (its own process group and cgroup, a parent-death
//! signal, `SCHED_OTHER`; see `children.rs`), waits until an invocation
//! through the URL answers, lists every process of the tree for the agent,
//! and stops the tree afterwards (SIGTERM to the group, then SIGKILL and
//! `cgroup.kill` after a grace period) — on every exit path, its `Drop`
//! included.

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use slokit_profiler::target::{HttpUrl, Job, UrlJob};
use slokit_sys::procfs::{field, read_process, Stat};

use super::cgroup::{CgroupTree, HostCgroup};
use super::children::{contain, Containment};
use crate::experiment::HostSpec;

/// Bytes of the host's log shown when it fails to start.
const LOG_TAIL: u64 = 2048;

/// A running external host.
#[derive(Debug)]
pub struct ExternalHost {
    label: String,
    leader: Option<Child>,
    cgroup: Option<HostCgroup>,
    /// The URL invocations go to (port filled in).
    pub url: String,
    /// The command as started (port filled in).
    pub argv: Vec<String>,
    log: PathBuf,
}

/// A TCP port nothing listens on now (the kernel's pick for port 0). The
/// host binds it a moment later; another process could take it in between,
/// which the readiness check then reports.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free TCP port")?;
    Ok(l.local_addr()?.port())
}

impl ExternalHost {
    /// Starts `spec` for `label` on `cpus`, its tree in a cgroup of
    /// `cgroups` when given (else only in its own process group), stdout and
    /// stderr appended to `log`; returns once an invocation with `params`
    /// answers 2xx through the URL.
    pub fn start(
        label: &str,
        spec: &HostSpec,
        params: &Value,
        cpus: &[usize],
        cgroups: Option<&CgroupTree>,
        log: &Path,
    ) -> anyhow::Result<ExternalHost> {
        let port = free_port()?;
        let argv = spec.argv(port);
        let url = spec.url_for(port);
        let parsed = HttpUrl::parse(&url).map_err(|e| anyhow::anyhow!("host `{label}`: {e}"))?;
        let cgroup = cgroups
            .map(|t| t.host(label))
            .transpose()
            .with_context(|| format!("host `{label}`"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let log_start = file.metadata().map_or(0, |m| m.len());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        for (k, v) in &spec.env {
            cmd.env(
                k,
                v.replace(crate::experiment::PORT_PLACEHOLDER, &port.to_string()),
            );
        }
        contain(&mut cmd, Containment::host(cpus.to_vec(), cgroup.as_ref()));
        let where_ = spec
            .cwd
            .as_ref()
            .map_or(String::new(), |c| format!(" in {}", c.display()));
        let leader = cmd.spawn().with_context(|| {
            format!(
                "host `{label}`: cannot start `{}`{where_} (is the program installed? a path with a `/` is relative to cwd)",
                argv.join(" ")
            )
        })?;
        let mut host = ExternalHost {
            label: label.to_string(),
            leader: Some(leader),
            cgroup,
            url,
            argv,
            log: log.to_path_buf(),
        };
        let timeout = Duration::from_secs_f64(spec.ready_timeout_s);
        if let Err(why) = host.wait_ready(parsed, params, timeout) {
            let status = host.stop(Duration::from_millis(500));
            bail!(
                "host `{label}` (`{}`) did not answer an invocation at {} within {:.0} s: {why}; it {status}. \
                 Its output ({}):\n{}",
                host.argv.join(" "),
                host.url,
                timeout.as_secs_f64(),
                host.log.display(),
                log_tail(&host.log, log_start)
            );
        }
        Ok(host)
    }

    /// Polls with one real invocation until it answers 2xx, the leader
    /// exits, or `timeout` passes.
    fn wait_ready(
        &mut self,
        url: HttpUrl,
        params: &Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let body = match params {
            Value::Null => Some("{}".to_string()),
            p => Some(p.to_string()),
        };
        let mut job = UrlJob {
            url,
            body,
            timeout: Duration::from_secs(5),
        };
        let end = Instant::now() + timeout;
        let mut last = String::from("no attempt");
        while Instant::now() < end {
            if let Some(Ok(Some(status))) = self.leader.as_mut().map(Child::try_wait) {
                return Err(format!("the command exited with {status}"));
            }
            match job.run_once() {
                Ok(_) => return Ok(()),
                Err(e) if e.starts_with("cannot connect") => last = e,
                // It answered, but with an error: waiting will not help
                // unless it is still starting (some servers answer 503).
                Err(e) if e.contains("503") => last = e,
                Err(e) => return Err(format!("it answered: {e}")),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(last)
    }

    /// The leader's pid (the process group's id).
    pub fn pid(&self) -> u32 {
        self.leader.as_ref().map_or(0, Child::id)
    }

    /// Every process of the tree now: the cgroup's members, or without a
    /// cgroup the members of the leader's process group.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = match &self.cgroup {
            Some(cg) => cg.procs(),
            None => process_group_members(self.pid()),
        };
        pids.sort_unstable();
        pids
    }

    /// CPU time the tree has used so far, µs, and where the figure came
    /// from: the cgroup's `cpu.stat` (every process that ever ran in it), or
    /// without a cgroup the user + system time of the processes alive now
    /// and their reaped children (`/proc/PID/stat`).
    pub fn cpu_time_us(&self) -> Option<(u64, &'static str)> {
        if let Some(dir) = self.cgroup_dir() {
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            return cgroup_usage_usec(&stat).map(|us| (us, "cgroup cpu.stat usage_usec"));
        }
        // SAFETY: sysconf has no preconditions.
        let tick_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks: u64 = self
            .processes()
            .iter()
            .filter_map(|pid| read_process(*pid).ok())
            .filter_map(|text| Stat::parse(&text)?.cpu_ticks_with_children())
            .sum();
        Some((
            ticks * 1_000_000 / tick_hz,
            "/proc/PID/stat utime+stime (live processes)",
        ))
    }

    /// The cgroup the tree lives in, when there is one.
    pub fn cgroup_dir(&self) -> Option<&Path> {
        self.cgroup.as_ref().map(HostCgroup::dir)
    }

    /// The label it serves.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Stops the tree: SIGTERM to the process group, up to `grace` for the
    /// whole tree to exit, then SIGKILL to the group and `cgroup.kill`;
    /// reaps the leader and removes the cgroup. Returns how the leader
    /// ended, as text.
    pub fn stop(&mut self, grace: Duration) -> String {
        let Some(mut leader) = self.leader.take() else {
            return "already stopped".into();
        };
        let pgid = leader.id() as libc::pid_t;
        // SAFETY: the process group our child leads (contain() made it);
        // its members are processes we started.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let end = Instant::now() + grace;
        let mut status = None;
        loop {
            if status.is_none() {
                status = leader.try_wait().ok().flatten();
            }
            let tree_gone = match &self.cgroup {
                Some(cg) => cg.is_empty(),
                None => process_group_members(pgid as u32).is_empty(),
            };
            if status.is_some() && tree_gone {
                break;
            }
            if Instant::now() >= end {
                eprintln!(
                    "warning: host `{}` (pid {pgid}) did not stop within {:.1} s of SIGTERM; killing its tree",
                    self.label,
                    grace.as_secs_f64()
                );
                // SAFETY: as above.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                if let Some(cg) = &self.cgroup {
                    cg.kill();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let how = match status {
            Some(s) => format!("ended with {s}"),
            None => leader.wait().map_or_else(
                |e| format!("wait failed: {e}"),
                |s| format!("ended with {s} (killed)"),
            ),
        };
        if let Some(cg) = self.cgroup.take() {
            cg.kill();
            cg.wait_empty(Duration::from_secs(2));
        }
        how
    }
}

impl Drop for ExternalHost {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The runtime's version as it reports it: `<program> --version` and, when
/// the program is a script, its interpreter's `--version` (a gunicorn
/// script → `gunicorn (version 23.0.0); Python 3.11.7`). Each is given 5 s;
/// `None` when neither answers.
pub fn runtime_version(spec: &HostSpec) -> Option<String> {
    let program = spec.command.first()?;
    let resolved = resolve_program(program, spec.cwd.as_deref());
    let mut parts = Vec::new();
    if let Some(v) = version_of(&resolved, spec.cwd.as_deref()) {
        parts.push(v);
    }
    if let Some(interpreter) = resolved.as_deref().and_then(shebang_interpreter) {
        if let Some(v) = version_of(&Some(interpreter), spec.cwd.as_deref()) {
            if !parts.contains(&v) {
                parts.push(v);
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `program` as a path: as given when it has a `/`, else found in `PATH`.
fn resolve_program(program: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return Some(match cwd {
            Some(c) if p.is_relative() => c.join(p),
            _ => p,
        });
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The interpreter of a `#!` script (`#!/usr/bin/env python3` → `python3`).
fn shebang_interpreter(path: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let mut words = line.strip_prefix("#!")?.split_whitespace();
    let first = words.next()?;
    let interpreter = if first.ends_with("/env") {
        words.next()?
    } else {
        first
    };
    resolve_program(interpreter, None)
}

/// First non-empty line of `<program> --version` (stdout or stderr), when
/// it exits 0.
fn version_of(program: &Option<PathBuf>, cwd: Option<&Path>) -> Option<String> {
    let program = program.as_ref()?;
    let mut cmd = Command::new(program);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    let mut child = cmd.spawn().ok()?;
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(120).collect())
}

/// `usage_usec` of a cgroup v2 `cpu.stat`.
fn cgroup_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Pids whose process group is `pgid` (from /proc/<pid>/stat), zombies
/// excluded.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(text) = read_process(*pid) else {
                return false;
            };
            Stat::parse(&text).is_some_and(|s| s.state() != "Z" && s.get(field::PGRP) == Some(pgid))
        })
        .collect()
}

/// The text `log` gained since byte `from`, its last [`LOG_TAIL`] bytes.
fn log_tail(log: &Path, from: u64) -> String {
    let Ok(mut f) = std::fs::File::open(log) else {
        return "(no output)".into();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = from.max(len.saturating_sub(LOG_TAIL));
    let mut text = String::new();
    let _ = f.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    if text.trim().is_empty() {
        "(no output)".into()
    } else {
        text.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_figures_parse_from_cpu_stat_and_proc_stat() {
        let cpu_stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(cgroup_usage_usec(cpu_stat), Some(123_456));
        assert_eq!(cgroup_usage_usec("user_usec 5\n"), None);
    }

    #[test]
    fn a_started_host_reports_the_cpu_it_burns() {
        // A shell that burns ~0.3 s of CPU then waits: its tree's CPU time grows.
        let dir = tempfile::tempdir().unwrap();
        const SERVER: &str = r#"import http.server as h, sys
class H(h.BaseHTTPRequestHandler):
    def do_POST(s):
        s.rfile.read(int(s.headers.get("Content-Length", 0)))
        s.send_response(200); s.send_header("Content-Length", "2"); s.end_headers()
        s.wfile.write(b"ok")
    def log_message(s, *a): pass
h.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()"#;
        let burn = format!(
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec python3 -c '{SERVER}' {{port}}"
        );
        let mut burner = spec(&["sh", "-c", &burn]);
        burner.ready_timeout_s = 30.0;
        let mut host = ExternalHost::start(
            "burner",
            &burner,
            &Value::Null,
            &[0],
            None,
            &dir.path().join("log"),
        )
        .unwrap();
        let (us, source) = host.cpu_time_us().unwrap();
        host.stop(std::time::Duration::from_secs(5));
        assert!(source.contains("/proc"), "{source}");
        assert!(us >= 50_000, "{us} µs of CPU");
    }

    fn spec(command: &[&str]) -> HostSpec {
        HostSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            url: "http://127.0.0.1:{port}/".into(),
            deadline_ms: None,
            service_ms: None,
            worker_prefix: None,
            service_header: false,
            env: Default::default(),
            ready_timeout_s: 2.0,
        }
    }

    #[test]
    fn a_host_that_exits_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        let s = spec(&["sh", "-c", "echo 'no module named app' >&2; exit 3"]);
        let e = ExternalHost::start("bad", &s, &Value::Null, &[0], None, &log)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host `bad`") && e.contains("exited"), "{e}");
        assert!(
            e.contains("no module named app"),
            "the stderr tail is shown: {e}"
        );
    }

    #[test]
    fn a_host_that_never_listens_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        // the leader forks a grandchild into its process group
        let s = spec(&["sh", "-c", "sleep 60 & sleep 60"]);
        let t0 = Instant::now();
        let e = ExternalHost::start("mute", &s, &Value::Null, &[0], None, &log)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("within 2 s") && e.contains("cannot connect"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_runtime_version_comes_from_the_program_and_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("runtime");
        std::fs::write(&script, "#!/bin/sh\necho 'myruntime 1.2'\n").unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let mut s = spec(&["./runtime", "{port}"]);
        s.cwd = Some(dir.path().to_path_buf());
        let v = runtime_version(&s).unwrap();
        assert!(v.starts_with("myruntime 1.2"), "{v}");
        assert_eq!(shebang_interpreter(&script), Some(PathBuf::from("/bin/sh")));
        let none = spec(&["./does-not-exist"]);
        assert_eq!(runtime_version(&none), None);
    }

    #[test]
    fn a_missing_program_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        let s = spec(&["./no-such-runtime", "{port}"]);
        let e = ExternalHost::start("none", &s, &Value::Null, &[0], None, &log)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot start `./no-such-runtime "), "{e}");
    }
}
