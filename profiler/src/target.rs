//! What gets measured (a built-in function in-process, a command, a URL) and
//! the isolated runner: a dedicated thread pinned to the measurement CPU,
//! in `SCHED_FIFO` when permitted, that executes runs on request and reports
//! their timings. The sampler (on another CPU) drives it through a channel,
//! so the bootstrap, progress bars and sleeping never touch the measured CPU.
//!
//! The runner thread's `SCHED_FIFO` is held by a [`FifoGuard`] dropped
//! before the thread returns, on every path (including panics). Commands
//! are started with `SCHED_RESET_ON_FORK`: they run pinned to the CPU but in
//! `SCHED_OTHER`, so nothing a command spawns can stay real-time.
//!
//! With `--time-from stdout` a command's run takes its time from the last
//! number the command printed (the seed's snippets print their own
//! `time.time()` difference), so the deadline is the function's and not
//! the interpreter's start-up; see [`time_from_stdout`]. With `--time-from
//! header` a URL run takes its time from the runtime's own report of the
//! execution, the [`EXEC_US_HEADER`] response header (slokit's host sends
//! it; an external runtime may), so the deadline is the function's and not
//! the HTTP round trip's; see [`time_from_header`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_functions::spin::{monotonic_ns, thread_cpu_ns};
use slokit_functions::Function;
pub use slokit_model::contract::EXEC_US_HEADER;

use crate::error::ProfileError;
use crate::isolation::{set_affinity, FifoGuard, Policy};
use crate::sampler::{Measurement, Timing};

/// What a profile measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A catalogue function, invoked in-process on the measurement thread.
    Builtin,
    /// One process execution per run (`--command`).
    Command { command: String },
    /// One HTTP/1.1 request per run (`--url`).
    Url { url: String },
}

/// Where each run's time comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeFrom {
    /// slokit's monotonic clock around the run.
    #[default]
    Clock,
    /// The last number the command printed on stdout (`--time-from stdout`).
    Stdout,
    /// The [`EXEC_US_HEADER`] of each reply of a URL (`--time-from header`).
    Header,
}

impl std::fmt::Display for TimeFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeFrom::Clock => "slokit's clock around each run",
            TimeFrom::Stdout => "the last number each run printed on stdout",
            TimeFrom::Header => "the runtime's x-slokit-exec-us response header",
        })
    }
}

/// Seconds per unit of a time suffix, or `None` for no known unit.
fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1e-3,
        "us" | "µs" | "μs" | "usec" | "usecs" | "microsecond" | "microseconds" => 1e-6,
        "ns" | "nsec" | "nsecs" | "nanosecond" | "nanoseconds" => 1e-9,
        _ => return None,
    })
}

/// Splits `12.5ms` into (12.5, Some("ms")), `3e-06` into (3e-6, None).
fn number_and_suffix(token: &str) -> Option<(f64, &str)> {
    let end = token
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || ((c == '-' || c == '+') && (i == 0 || token[..i].ends_with(['e', 'E'])))
                || ((c == 'e' || c == 'E')
                    && i > 0
                    && token[i + c.len_utf8()..]
                        .starts_with(|d: char| d.is_ascii_digit() || d == '-' || d == '+')))
        })
        .map_or(token.len(), |(i, _)| i);
    let v: f64 = token[..end].parse().ok()?;
    Some((v, &token[end..]))
}

/// The time a run printed: the last number on `stdout`, in seconds unless a
/// unit follows it, attached or as the next word (`s`, `ms`, `us`/`µs`,
/// `ns`). Returns nanoseconds, or a message saying what was wrong.
pub fn time_from_stdout(stdout: &str) -> Result<u64, String> {
    // Words are runs of letters, digits and `.-+%`: `result=(0.5s)` holds
    // the words `result` and `0.5s`.
    let words: Vec<&str> = stdout
        .split(|c: char| !(c.is_alphanumeric() || ".-+%".contains(c)))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate().rev() {
        let Some((value, suffix)) = number_and_suffix(w) else {
            continue;
        };
        let scale = if suffix.is_empty() {
            words
                .get(i + 1)
                .and_then(|u| unit_seconds(u))
                .unwrap_or(1.0)
        } else {
            match unit_seconds(suffix) {
                Some(s) => s,
                None => continue, // `100%`, `3x`, `v2`: not a time
            }
        };
        if !value.is_finite() || value < 0.0 {
            return Err(format!("the last number printed, `{w}`, is not a duration"));
        }
        let ns = value * scale * 1e9;
        if ns > crate::sampler::MAX_TRACKABLE_NS as f64 {
            return Err(format!(
                "the last number printed, `{w}`, is longer than an hour"
            ));
        }
        return Ok(ns.round() as u64);
    }
    Err("the command printed no number on stdout".into())
}

/// The execution time a reply reports in its [`EXEC_US_HEADER`] (µs, a
/// number), in nanoseconds; `head` is the reply's status line and headers.
/// Returns a message naming the header and showing the status line when
/// the header is missing or not a duration.
pub fn time_from_header(head: &str) -> Result<u64, String> {
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("").trim();
    let value = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(EXEC_US_HEADER))
        .map(|(_, v)| v.trim());
    let why = match value {
        None => format!("the reply has no `{EXEC_US_HEADER}` header"),
        Some(v) => match v.parse::<f64>() {
            Ok(us) if us.is_finite() && us >= 0.0 => {
                let ns = us * 1e3;
                if ns <= crate::sampler::MAX_TRACKABLE_NS as f64 {
                    return Ok(ns.round() as u64);
                }
                format!("its `{EXEC_US_HEADER}: {v}` is longer than an hour")
            }
            _ => format!("its `{EXEC_US_HEADER}: {v}` is not a number of microseconds"),
        },
    };
    Err(format!(
        "{why} (timed by the header, each run's time is the runtime's own report of the \
         execution, in µs); the reply began `{status_line}`"
    ))
}

/// The last `lines` non-empty lines of `text`, indented, for error messages.
fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return "  (nothing)".into();
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One run of the target, on the measurement thread.
pub trait Job: Send {
    /// Runs once and returns the run's timing.
    fn run_once(&mut self) -> Result<Timing, String>;
}

/// A catalogue function called in-process with fixed parameters.
pub struct BuiltinJob {
    pub function: Arc<dyn Function>,
    pub params: Value,
}

impl Job for BuiltinJob {
    fn run_once(&mut self) -> Result<Timing, String> {
        let c0 = thread_cpu_ns();
        let w0 = monotonic_ns();
        let r = self.function.invoke(&self.params);
        let w1 = monotonic_ns();
        let c1 = thread_cpu_ns();
        std::hint::black_box(&r);
        r.map_err(|e| e.to_string())?;
        Ok(Timing {
            wall_ns: w1 - w0,
            cpu_ns: c1 - c0,
        })
    }
}

/// Splits a command line: plain words are exec'd directly; anything with
/// shell syntax (quotes, pipes, redirections, `$`, globs...) goes through
/// `sh -c`.
pub fn command_argv(command: &str) -> Result<Vec<String>, ProfileError> {
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return Err(ProfileError::Settings("--command is empty".into()));
    }
    let shell_syntax = command
        .chars()
        .any(|c| "'\"`$|&;<>()*?[]{}~\\#".contains(c));
    Ok(if shell_syntax {
        vec!["sh".into(), "-c".into(), command.to_string()]
    } else {
        words
    })
}

fn children_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One process execution per run. The child's CPU time comes from
/// `getrusage(RUSAGE_CHILDREN)` deltas (only this thread spawns children
/// while profiling).
pub struct CommandJob {
    pub argv: Vec<String>,
    /// Where the run's time comes from: slokit's clock, or (`--time-from
    /// stdout`) [`time_from_stdout`] of what the run printed; the CPU time
    /// is the child's rusage either way.
    pub time_from: TimeFrom,
    /// The running child's pid (0 when none), so the sampler's side can
    /// kill *this* child by pid on a timeout.
    pub current_child: Arc<AtomicI32>,
}

/// Runs `argv` once to completion; returns its timing (slokit's clock) and,
/// when `capture` is set, what it printed on stdout.
fn run_command(
    argv: &[String],
    current_child: &AtomicI32,
    capture: bool,
) -> Result<(Timing, Vec<u8>), String> {
    let cpu0 = children_cpu_ns();
    let w0 = monotonic_ns();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", argv[0]))?;
    current_child.store(child.id() as i32, Ordering::SeqCst);
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        // Read to the end before waiting, so a chatty command cannot block
        // on a full pipe.
        let _ = out.read_to_end(&mut stdout);
    }
    let status = child.wait();
    current_child.store(0, Ordering::SeqCst);
    let w1 = monotonic_ns();
    let status = status.map_err(|e| format!("cannot wait for the command: {e}"))?;
    if !status.success() {
        return Err(format!("command exited with {status}"));
    }
    let timing = Timing {
        wall_ns: w1 - w0,
        cpu_ns: children_cpu_ns().saturating_sub(cpu0),
    };
    Ok((timing, stdout))
}

impl Job for CommandJob {
    fn run_once(&mut self) -> Result<Timing, String> {
        let from_stdout = self.time_from == TimeFrom::Stdout;
        let (timing, stdout) = run_command(&self.argv, &self.current_child, from_stdout)?;
        if !from_stdout {
            return Ok(timing);
        }
        let text = String::from_utf8_lossy(&stdout);
        let wall_ns = time_from_stdout(&text).map_err(|why| {
            format!(
                "{why} (--time-from stdout takes each run's time from the last number it prints, \
                 in seconds or with a unit: s, ms, us, ns); the end of its output:\n{}",
                last_lines(&text, 5)
            )
        })?;
        Ok(Timing {
            wall_ns,
            cpu_ns: timing.cpu_ns,
        })
    }
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpUrl {
    /// Parses plain-HTTP URLs (no TLS: the function host speaks HTTP/1.1 on loopback).
    pub fn parse(url: &str) -> Result<Self, ProfileError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            ProfileError::Settings(format!(
                "--url `{url}` must start with http:// (HTTPS is not supported)"
            ))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse().map_err(|_| {
                    ProfileError::Settings(format!("--url `{url}`: port `{p}` is not a number"))
                })?,
            ),
            _ => (authority.to_string(), 80),
        };
        if host.is_empty() {
            return Err(ProfileError::Settings(format!("--url `{url}` has no host")));
        }
        Ok(HttpUrl {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// One HTTP/1.1 request per run on a fresh connection (`Connection: close`),
/// `POST` with the parameters as a JSON body when there are any, else `GET`.
/// The time is connect → last byte of the reply; a non-2xx status fails.
/// [`HeaderTimedUrlJob`] takes the time from the reply's header instead.
///
/// Plain std sockets rather than `reqwest`: its blocking client does the
/// I/O on a runtime thread of its own, off the pinned measurement thread,
/// which would leave `cpu_ns` (this thread's CPU time) near zero and add two
/// thread hand-offs to every timed run.
pub struct UrlJob {
    pub url: HttpUrl,
    pub body: Option<String>,
    pub timeout: Duration,
}

impl UrlJob {
    fn request(&self) -> Vec<u8> {
        let host = &self.url.host;
        match &self.body {
            Some(b) => format!(
                "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                self.url.path,
                b.len()
            ),
            None => format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                self.url.path
            ),
        }
        .into_bytes()
    }
}

impl Job for UrlJob {
    fn run_once(&mut self) -> Result<Timing, String> {
        self.exchange().map(|(timing, _)| timing)
    }
}

impl UrlJob {
    /// One request: the round trip's timing and the reply's status line
    /// and headers.
    fn exchange(&self) -> Result<(Timing, String), String> {
        let req = self.request();
        let c0 = thread_cpu_ns();
        let w0 = monotonic_ns();
        let addr = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.url.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.url.host))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.set_read_timeout(Some(self.timeout)).ok();
        s.set_nodelay(true).ok();
        s.write_all(&req).map_err(|e| format!("cannot send: {e}"))?;
        let mut reply = Vec::with_capacity(512);
        s.read_to_end(&mut reply)
            .map_err(|e| format!("cannot read the reply: {e}"))?;
        let w1 = monotonic_ns();
        let c1 = thread_cpu_ns();
        let status = std::str::from_utf8(&reply[..reply.len().min(32)])
            .ok()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| "the reply is not HTTP/1.x".to_string())?;
        if !(200..300).contains(&status) {
            return Err(format!("HTTP status {status}"));
        }
        let head_end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(reply.len());
        let head = String::from_utf8_lossy(&reply[..head_end]).into_owned();
        let timing = Timing {
            wall_ns: w1 - w0,
            cpu_ns: c1 - c0,
        };
        Ok((timing, head))
    }
}

/// A [`UrlJob`] whose run time is the runtime's own report of the execution
/// ([`time_from_header`]); the CPU time stays the client thread's.
pub struct HeaderTimedUrlJob(pub UrlJob);

impl Job for HeaderTimedUrlJob {
    fn run_once(&mut self) -> Result<Timing, String> {
        let (timing, head) = self.0.exchange()?;
        Ok(Timing {
            wall_ns: time_from_header(&head)?,
            cpu_ns: timing.cpu_ns,
        })
    }
}

enum Cmd {
    Run(usize),
}

/// What the runner thread managed to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSetup {
    pub cpu: usize,
    pub policy: Policy,
    pub priority: i32,
    /// Why `SCHED_FIFO` was not used, when it was not.
    pub fifo_error: Option<String>,
}

/// The measurement thread: pinned, real-time when permitted, running jobs on
/// request. Implements [`Measurement`] for the sampler.
pub struct IsolatedRunner {
    name: String,
    tx: Option<Sender<Cmd>>,
    rx: Receiver<Result<Vec<Timing>, String>>,
    handle: Option<JoinHandle<()>>,
    /// Pid of a running child command (0 when none).
    child: Arc<AtomicI32>,
    timeout: Duration,
    pub setup: RunnerSetup,
}

impl std::fmt::Debug for IsolatedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolatedRunner")
            .field("name", &self.name)
            .field("setup", &self.setup)
            .finish()
    }
}

impl IsolatedRunner {
    /// Starts the thread `slokit-measure` on `cpu`. `job` is built on that
    /// thread. `timeout` bounds one batch; on expiry a running child command
    /// is killed (by its pid) and the profile fails.
    pub fn start(
        name: &str,
        cpu: usize,
        priority: i32,
        reset_on_fork: bool,
        child: Arc<AtomicI32>,
        timeout: Duration,
        job: Box<dyn Job>,
    ) -> Result<Self, ProfileError> {
        let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
        let (res_tx, res_rx) = mpsc::channel::<Result<Vec<Timing>, String>>();
        let (setup_tx, setup_rx) = mpsc::channel::<Result<RunnerSetup, String>>();
        let handle = std::thread::Builder::new()
            .name("slokit-measure".into())
            .spawn(move || {
                runner_thread(cpu, priority, reset_on_fork, job, cmd_rx, res_tx, setup_tx)
            })
            .map_err(|e| {
                ProfileError::System(format!("cannot start the measurement thread: {e}"))
            })?;
        let setup = match setup_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(ProfileError::System(e));
            }
            Err(_) => {
                let _ = handle.join();
                return Err(ProfileError::System(
                    "the measurement thread died during set-up".into(),
                ));
            }
        };
        Ok(Self {
            name: name.to_string(),
            tx: Some(cmd_tx),
            rx: res_rx,
            handle: Some(handle),
            child,
            timeout,
            setup,
        })
    }
}

fn runner_thread(
    cpu: usize,
    priority: i32,
    reset_on_fork: bool,
    mut job: Box<dyn Job>,
    cmds: Receiver<Cmd>,
    results: Sender<Result<Vec<Timing>, String>>,
    setup: Sender<Result<RunnerSetup, String>>,
) {
    if let Err(e) = set_affinity(0, &[cpu]) {
        let _ = setup.send(Err(format!(
            "cannot pin the measurement thread to CPU {cpu}: {e}"
        )));
        return;
    }
    // The guard lives until this function returns: SCHED_OTHER again before exit.
    let fifo = FifoGuard::enter(priority, reset_on_fork);
    let (policy, fifo_error) = match &fifo {
        Ok(_) => (Policy::Fifo, None),
        Err(e) => (
            Policy::Other,
            Some(format!(
                "cannot set SCHED_FIFO (priority {priority}) on the measurement thread: {e} (run as root or grant CAP_SYS_NICE); measuring in SCHED_OTHER"
            )),
        ),
    };
    let _ = setup.send(Ok(RunnerSetup {
        cpu,
        policy,
        priority: if policy == Policy::Fifo { priority } else { 0 },
        fifo_error,
    }));
    while let Ok(Cmd::Run(n)) = cmds.recv() {
        let mut out = Vec::with_capacity(n);
        let mut res = Ok(());
        for _ in 0..n {
            match job.run_once() {
                Ok(t) => out.push(t),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if results.send(res.map(|()| out)).is_err() {
            break;
        }
    }
    drop(fifo);
}

impl Measurement for IsolatedRunner {
    fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
        let invoke_err = |message: String| ProfileError::Invoke {
            function: self.name.clone(),
            message,
        };
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(Cmd::Run(n)).ok())
            .ok_or_else(|| invoke_err("the measurement thread is gone".into()))?;
        match self.rx.recv_timeout(self.timeout) {
            Ok(Ok(t)) => {
                out.extend(t);
                Ok(())
            }
            Ok(Err(e)) => Err(invoke_err(e)),
            Err(RecvTimeoutError::Timeout) => {
                let pid = self.child.load(Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: kill(2) on the pid of the child we spawned.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                Err(invoke_err(format!(
                    "no result within {:?} (--timeout); the run was abandoned",
                    self.timeout
                )))
            }
            Err(RecvTimeoutError::Disconnected) => Err(invoke_err(
                "the measurement thread stopped (panicked?)".into(),
            )),
        }
    }
}

impl Drop for IsolatedRunner {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop.
        self.tx.take();
        let pid = self.child.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) on the pid of the child we spawned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slokit_functions::spin::Spin;

    #[test]
    fn urls_parse() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/invoke/spin").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/invoke/spin")
        );
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(HttpUrl::parse("https://x").is_err());
        assert!(HttpUrl::parse("http://h:port/").is_err());
    }

    #[test]
    fn commands_with_shell_syntax_go_through_sh() {
        assert_eq!(
            command_argv("python3 test1.py").unwrap(),
            vec!["python3", "test1.py"]
        );
        assert_eq!(command_argv("echo a | wc").unwrap()[0], "sh");
        assert!(command_argv("  ").is_err());
    }

    #[test]
    fn the_runner_measures_spin_and_leaves_sched_other() {
        let mut r = IsolatedRunner::start(
            "spin",
            0,
            10,
            false,
            Arc::new(AtomicI32::new(0)),
            Duration::from_secs(10),
            Box::new(BuiltinJob {
                function: Arc::new(Spin),
                params: serde_json::json!({"ms": 2.0}),
            }),
        )
        .unwrap();
        let mut out = Vec::new();
        r.run_batch(3, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        for t in &out {
            assert!(t.cpu_ns >= 2_000_000 && t.cpu_ns < 2_500_000, "{t:?}");
            assert!(t.wall_ns >= t.cpu_ns - 50_000, "{t:?}");
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            assert_eq!(r.setup.policy, Policy::Fifo, "{:?}", r.setup.fifo_error);
        }
    }

    #[test]
    fn a_failing_command_fails_the_batch_with_its_status() {
        let mut r = IsolatedRunner::start(
            "false",
            0,
            10,
            true,
            Arc::new(AtomicI32::new(0)),
            Duration::from_secs(10),
            Box::new(CommandJob {
                argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
                time_from: TimeFrom::Clock,
                current_child: Arc::new(AtomicI32::new(0)),
            }),
        )
        .unwrap();
        let e = r.run_batch(1, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
    }

    #[test]
    fn a_command_is_timed() {
        let mut r = IsolatedRunner::start(
            "true",
            0,
            10,
            true,
            Arc::new(AtomicI32::new(0)),
            Duration::from_secs(10),
            Box::new(CommandJob {
                argv: vec!["true".into()],
                time_from: TimeFrom::Clock,
                current_child: Arc::new(AtomicI32::new(0)),
            }),
        )
        .unwrap();
        let mut out = Vec::new();
        r.run_batch(2, &mut out).unwrap();
        assert!(out.iter().all(|t| t.wall_ns > 10_000), "{out:?}");
    }

    #[test]
    fn printed_times_parse_with_and_without_units() {
        let ns = |s: &str| time_from_stdout(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        // The seed's test_auth.py prints `time.time()` differences in seconds.
        assert_eq!(ns("3.0994415283203125e-06\n"), 3_099);
        assert_eq!(ns("0.00021338462829589844"), 213_385);
        assert_eq!(ns("took 12.5ms"), 12_500_000);
        assert_eq!(ns("took 12.5 ms\n"), 12_500_000);
        assert_eq!(ns("elapsed: 250us"), 250_000);
        assert_eq!(ns("elapsed: 250 µs."), 250_000);
        assert_eq!(ns("elapsed: 250μs"), 250_000);
        assert_eq!(ns("900ns"), 900);
        assert_eq!(ns("2 s"), 2_000_000_000);
        assert_eq!(ns("1.5E-3"), 1_500_000);
        // The last number wins; words and percentages around it do not count.
        assert_eq!(ns("warm-up 5.0\nrun 3 of 10: 0.002 (100%)"), 2_000_000);
        assert_eq!(ns("result=(0.5s)"), 500_000_000);
    }

    #[test]
    fn no_printed_number_is_a_clear_error() {
        let e = time_from_stdout("done\n").unwrap_err();
        assert!(e.contains("no number"), "{e}");
        assert!(time_from_stdout("").is_err());
        assert!(time_from_stdout("-0.5")
            .unwrap_err()
            .contains("not a duration"));
        assert!(time_from_stdout("100000 s").unwrap_err().contains("hour"));
    }

    #[test]
    fn a_reply_header_gives_the_run_time_or_a_clear_error() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slokit-Exec-Us: 1234\r\n";
        assert_eq!(time_from_header(head), Ok(1_234_000));
        assert_eq!(
            time_from_header("HTTP/1.1 200 OK\r\nx-slokit-exec-us:  2.5 \r\n"),
            Ok(2_500)
        );
        let e = time_from_header("HTTP/1.1 200 OK\r\nServer: x\r\n").unwrap_err();
        assert!(
            e.contains("no `x-slokit-exec-us` header") && e.contains("`HTTP/1.1 200 OK`"),
            "{e}"
        );
        let e = time_from_header("HTTP/1.0 200 OK\r\nx-slokit-exec-us: soon\r\n").unwrap_err();
        assert!(
            e.contains("`x-slokit-exec-us: soon` is not a number"),
            "{e}"
        );
        assert!(time_from_header("HTTP/1.1 200 OK\r\nx-slokit-exec-us: -3\r\n").is_err());
        assert!(
            time_from_header("HTTP/1.1 200 OK\r\nx-slokit-exec-us: 1e10\r\n")
                .unwrap_err()
                .contains("hour")
        );
    }

    #[test]
    fn a_command_run_takes_its_time_from_what_it_printed() {
        let mut job = CommandJob {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo warming; echo 'took 7.5 ms'".into(),
            ],
            time_from: TimeFrom::Stdout,
            current_child: Arc::new(AtomicI32::new(0)),
        };
        assert_eq!(job.run_once().unwrap().wall_ns, 7_500_000);
        job.argv = vec!["sh".into(), "-c".into(), "echo hello; echo world".into()];
        let e = job.run_once().unwrap_err();
        assert!(e.contains("no number") && e.contains("| world"), "{e}");
    }

    #[test]
    fn a_url_is_timed_against_a_loopback_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
            }
        });
        let mut job = UrlJob {
            url: HttpUrl::parse(&format!("http://127.0.0.1:{port}/x")).unwrap(),
            body: Some("{}".into()),
            timeout: Duration::from_secs(5),
        };
        assert!(job.run_once().unwrap().wall_ns > 0);
        assert!(job.run_once().is_ok());
        server.join().unwrap();
    }
}
