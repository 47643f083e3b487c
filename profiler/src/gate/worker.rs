//! The two ways a paired gate runs a built-in function in a slokit binary,
//! the same way for the old and the new build so neither side has an
//! advantage:
//!
//! * **Persistent worker** (`slokit gate-worker`, a hidden subcommand): a
//!   child process that pins itself to the measurement CPU, enters
//!   `SCHED_FIFO` (with `SCHED_RESET_ON_FORK`) and answers `run N` lines on
//!   stdin with one JSON line of N wall and CPU times on stdout. Process
//!   start-up is paid once, and the times are taken inside the child around
//!   each invocation. The protocol is line-oriented JSON:
//!
//!   ```text
//!   → {"function":"aes","params":{},"cpu":1,"priority":50}
//!   ← {"reply":"hello","protocol":1,"slokit_version":"0.1.0","policy":"SCHED_FIFO","fifo_error":null}
//!   → run 20
//!   ← {"reply":"runs","wall_ns":[…],"cpu_ns":[…]}
//!   (stdin closed → the worker restores SCHED_OTHER and exits)
//!   ```
//!
//! * **One `invoke` per run** ([`InvokeJob`]), for an old slokit that has
//!   no `gate-worker`: `OLD invoke FUNCTION --param K=V…` started from the
//!   pinned measurement thread (so the child runs on the CPU, in
//!   `SCHED_OTHER`). The time is the one `invoke` prints on stderr
//!   (`aes: 2.345 ms`, measured inside the process, 1 µs resolution), or the
//!   process's whole wall time when that line is missing.
//!
//! Safety: a worker gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the
//! gate even on SIGKILL; it also exits when its stdin closes. A worker that
//! does not answer within `--timeout` is killed by its pid.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_functions::spin::monotonic_ns;
use slokit_functions::Catalogue;

use crate::error::ProfileError;
use crate::isolation::{set_affinity, FifoGuard, Policy};
use crate::sampler::{Measurement, Timing};
use crate::target::{BuiltinJob, Job};

/// The hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "gate-worker";
/// Version of the line protocol in the module docs.
pub const PROTOCOL: u32 = 1;
/// Most runs one `run` line may ask for.
const MAX_BATCH: usize = 100_000;
/// Bytes of a child's stderr kept for error messages.
const STDERR_KEEP: usize = 8192;

/// The first line a worker reads: what to run and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    pub function: String,
    /// Parameters as given (`{}` = the function's defaults).
    pub params: Value,
    pub cpu: usize,
    /// `SCHED_FIFO` priority (1..=99).
    pub priority: i32,
}

/// Every line a worker writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    /// Set-up done: the worker runs on `cpu` under `policy`.
    Hello {
        protocol: u32,
        slokit_version: String,
        policy: Policy,
        fifo_error: Option<String>,
    },
    /// The times of one `run N`.
    Runs { wall_ns: Vec<u64>, cpu_ns: Vec<u64> },
    /// The request or a run failed; the worker exits after this line.
    Error { message: String },
}

fn send(out: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

/// A JSON parse error; serde_json's message ends with its line and column.
fn json_error(what: &str, e: &serde_json::Error) -> String {
    format!("{what} is not valid JSON: {e}")
}

/// The worker's side of the protocol: reads the request from `input`, sets
/// up the calling thread (pinned, `SCHED_FIFO` when permitted) and answers
/// `run N` lines until `input` closes. Errors of the request or of a run
/// are sent as a [`Reply::Error`] line, and the function returns.
pub fn serve(
    catalogue: &Catalogue,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), ProfileError> {
    let io = |e: std::io::Error| ProfileError::System(format!("gate worker: {e}"));
    let mut lines = input.lines();
    let first = match lines.next() {
        Some(l) => l.map_err(io)?,
        None => return Ok(()),
    };
    let fail = |output: &mut dyn Write, message: String| {
        let mut w = output;
        send(&mut w, &Reply::Error { message }).map_err(io)
    };
    let request: WorkerRequest = match serde_json::from_str(&first) {
        Ok(r) => r,
        Err(e) => return fail(&mut output, json_error("the worker request", &e)),
    };
    let function = match catalogue.require(&request.function) {
        Ok(f) => f.clone(),
        Err(e) => return fail(&mut output, e.to_string()),
    };
    // One invocation before set-up: bad parameters fail with the function's own message.
    if let Err(e) = function.invoke(&request.params) {
        return fail(&mut output, format!("`{}`: {e}", request.function));
    }
    if let Err(e) = set_affinity(0, &[request.cpu]) {
        return fail(
            &mut output,
            format!("cannot pin the worker to CPU {}: {e}", request.cpu),
        );
    }
    let fifo = FifoGuard::enter(request.priority, true);
    let (policy, fifo_error) = match &fifo {
        Ok(_) => (Policy::Fifo, None),
        Err(e) => (
            Policy::Other,
            Some(format!(
                "cannot set SCHED_FIFO (priority {}) on the worker: {e}; measuring in SCHED_OTHER",
                request.priority
            )),
        ),
    };
    send(
        &mut output,
        &Reply::Hello {
            protocol: PROTOCOL,
            slokit_version: slokit_model::VERSION.into(),
            policy,
            fifo_error,
        },
    )
    .map_err(io)?;
    let mut job = BuiltinJob {
        function,
        params: request.params,
    };
    for line in lines {
        let line = line.map_err(io)?;
        let n = match line.trim().strip_prefix("run ").map(str::parse::<usize>) {
            Some(Ok(n)) if (1..=MAX_BATCH).contains(&n) => n,
            _ => {
                return fail(
                    &mut output,
                    format!("expected `run N` with N in 1..={MAX_BATCH}, got `{line}`"),
                )
            }
        };
        let mut wall_ns = Vec::with_capacity(n);
        let mut cpu_ns = Vec::with_capacity(n);
        for _ in 0..n {
            match job.run_once() {
                Ok(t) => {
                    wall_ns.push(t.wall_ns);
                    cpu_ns.push(t.cpu_ns);
                }
                Err(e) => return fail(&mut output, e),
            }
        }
        send(&mut output, &Reply::Runs { wall_ns, cpu_ns }).map_err(io)?;
    }
    drop(fifo);
    Ok(())
}

/// What came of starting a worker.
pub enum Spawned {
    Worker(WorkerSide),
    /// The binary has no `gate-worker` subcommand (an older slokit).
    Unsupported,
}

/// The gate's side of one worker process. Implements [`Measurement`].
pub struct WorkerSide {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: StderrTail,
    timeout: Duration,
    /// The worker's policy and any reason it is not `SCHED_FIFO`.
    pub policy: Policy,
    pub fifo_error: Option<String>,
}

/// The tail of a child's stderr, collected by a thread of its own.
struct StderrTail {
    text: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl StderrTail {
    /// The text so far, after waiting (≤ 1 s) for the child's last words
    /// once it has exited.
    fn settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.text.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last non-empty line, for error messages.
    fn last_line(&self) -> String {
        self.settled()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(nothing on stderr)")
            .trim()
            .to_string()
    }
}

fn drain_stderr(mut r: impl Read + Send + 'static) -> StderrTail {
    let buf = Arc::new(Mutex::new(String::new()));
    let keep = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let mut b = keep.lock().unwrap_or_else(|e| e.into_inner());
            b.push_str(&String::from_utf8_lossy(&chunk[..n]));
            if b.len() > STDERR_KEEP {
                let cut = b.len() - STDERR_KEEP;
                let cut = (cut..b.len()).find(|&i| b.is_char_boundary(i)).unwrap_or(0);
                b.drain(..cut);
            }
        }
    });
    StderrTail { text: buf, reader }
}

/// Makes a child die with SIGKILL when the thread that started it exits,
/// and ignore Ctrl-C: the gate handles it and then closes the worker's stdin.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl and signal are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
}

impl WorkerSide {
    /// Starts `program gate-worker`, sends `request` and waits for the hello.
    /// `env` is added to the child's environment (the `auth` secret).
    pub fn spawn(
        label: &str,
        program: &Path,
        request: &WorkerRequest,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Spawned, ProfileError> {
        let mut cmd = Command::new(program);
        cmd.arg(WORKER_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(env.iter().map(|(k, v)| (k, v)));
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            ProfileError::Settings(format!(
                "--against: cannot start `{}`: {e}",
                program.display()
            ))
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut side = WorkerSide {
            label: label.to_string(),
            child,
            stdin,
            lines,
            stderr,
            timeout,
            policy: Policy::Other,
            fifo_error: None,
        };
        let line = serde_json::to_string(request).expect("a request serialises");
        // A binary without the subcommand may already have exited: ignore EPIPE here.
        if let Some(w) = side.stdin.as_mut() {
            let _ = writeln!(w, "{line}").and_then(|()| w.flush());
        }
        match side.next_reply() {
            Ok(Reply::Hello {
                protocol,
                policy,
                fifo_error,
                ..
            }) if protocol == PROTOCOL => {
                side.policy = policy;
                side.fifo_error = fifo_error;
                Ok(Spawned::Worker(side))
            }
            Ok(Reply::Hello { protocol, .. }) => Err(ProfileError::Settings(format!(
                "{label}: `{}` speaks gate-worker protocol {protocol}, this slokit speaks {PROTOCOL}",
                program.display()
            ))),
            Ok(other) => Err(side.unexpected(other)),
            Err(e) => {
                let _ = side.child.wait();
                if side.stderr.settled().contains("unrecognized subcommand") {
                    Ok(Spawned::Unsupported)
                } else {
                    Err(ProfileError::Settings(format!(
                        "`{}` did not start a gate worker (is it a slokit binary?): {e}",
                        program.display()
                    )))
                }
            }
        }
    }

    fn unexpected(&self, reply: Reply) -> ProfileError {
        let message = match reply {
            Reply::Error { message } => message,
            other => format!("unexpected reply {other:?}"),
        };
        ProfileError::Invoke {
            function: self.label.clone(),
            message,
        }
    }

    fn next_reply(&mut self) -> Result<Reply, ProfileError> {
        let label = self.label.clone();
        let err = |message: String| ProfileError::Invoke {
            function: label.clone(),
            message,
        };
        match self.lines.recv_timeout(self.timeout) {
            Ok(Ok(line)) => {
                serde_json::from_str(&line).map_err(|e| err(json_error("the worker's reply", &e)))
            }
            Ok(Err(e)) => Err(err(format!("cannot read the worker's reply: {e}"))),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(err(format!(
                    "no reply within {:?} (--timeout); the worker was killed",
                    self.timeout
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                Err(err(format!(
                    "the worker exited ({}) without answering: {}",
                    status.map_or("status unknown".into(), |s| s.to_string()),
                    self.stderr.last_line()
                )))
            }
        }
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Measurement for WorkerSide {
    fn run_batch(&mut self, n: usize, out: &mut Vec<Timing>) -> Result<(), ProfileError> {
        let n = n.clamp(1, MAX_BATCH);
        let sent = self
            .stdin
            .as_mut()
            .is_some_and(|w| writeln!(w, "run {n}").and_then(|()| w.flush()).is_ok());
        if !sent {
            // The worker is gone; its reply channel says why.
            return match self.next_reply() {
                Ok(r) => Err(self.unexpected(r)),
                Err(e) => Err(e),
            };
        }
        match self.next_reply()? {
            Reply::Runs { wall_ns, cpu_ns } if wall_ns.len() == n && cpu_ns.len() == n => {
                out.extend(
                    wall_ns
                        .into_iter()
                        .zip(cpu_ns)
                        .map(|(wall_ns, cpu_ns)| Timing { wall_ns, cpu_ns }),
                );
                Ok(())
            }
            Reply::Runs { wall_ns, .. } => Err(ProfileError::Invoke {
                function: self.label.clone(),
                message: format!("asked for {n} runs, the worker sent {}", wall_ns.len()),
            }),
            other => Err(self.unexpected(other)),
        }
    }
}

impl Drop for WorkerSide {
    fn drop(&mut self) {
        // Closing stdin ends the worker's loop; it restores SCHED_OTHER and exits.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        self.kill();
    }
}

fn children_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Parses the time `slokit invoke` prints on stderr (`aes: 2.345 ms`), ns.
pub fn invoke_reported_ns(stderr: &str, function: &str) -> Option<u64> {
    let prefix = format!("{function}: ");
    stderr.lines().rev().find_map(|l| {
        let ms: f64 = l
            .strip_prefix(&prefix)?
            .strip_suffix(" ms")?
            .trim()
            .parse()
            .ok()?;
        (ms.is_finite() && ms >= 0.0).then(|| (ms * 1e6).round() as u64)
    })
}

/// One `PROGRAM invoke FUNCTION --param K=V…` process per run, run on the
/// measurement thread (see the module docs).
pub struct InvokeJob {
    pub program: PathBuf,
    pub function: String,
    /// `K=V` arguments; each value is JSON, which `invoke` parses back exactly.
    pub params: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The running child's pid (0 when none), so a timeout can kill it.
    pub current_child: Arc<AtomicI32>,
    /// Runs whose time came from the process's wall time (no `invoke` line).
    pub unreported_runs: Arc<AtomicI32>,
}

impl InvokeJob {
    /// The `--param` arguments for a JSON object of parameters.
    pub fn param_args(params: &Value) -> Vec<String> {
        params
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default()
    }
}

impl Job for InvokeJob {
    fn run_once(&mut self) -> Result<Timing, String> {
        let cpu0 = children_cpu_ns();
        let w0 = monotonic_ns();
        let mut cmd = Command::new(&self.program);
        cmd.arg("invoke").arg(&self.function);
        for p in &self.params {
            cmd.arg("--param").arg(p);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.program.display()))?;
        self.current_child
            .store(child.id() as i32, Ordering::SeqCst);
        let output = child.wait_with_output();
        self.current_child.store(0, Ordering::SeqCst);
        let w1 = monotonic_ns();
        let output = output.map_err(|e| format!("cannot wait for `invoke`: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let why = stderr.lines().last().unwrap_or_default().trim().to_string();
            return Err(format!(
                "`{} invoke {}` exited with {}: {why}",
                self.program.display(),
                self.function,
                output.status
            ));
        }
        let wall_ns = invoke_reported_ns(&stderr, &self.function).unwrap_or_else(|| {
            self.unreported_runs.fetch_add(1, Ordering::Relaxed);
            w1 - w0
        });
        Ok(Timing {
            wall_ns,
            cpu_ns: children_cpu_ns().saturating_sub(cpu0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slokit_functions::CatalogueConfig;

    fn catalogue() -> Catalogue {
        Catalogue::builtin(&CatalogueConfig::default())
    }

    fn request(function: &str, params: Value) -> String {
        serde_json::to_string(&WorkerRequest {
            function: function.into(),
            params,
            cpu: 0,
            priority: 10,
        })
        .unwrap()
    }

    fn replies(out: &[u8]) -> Vec<Reply> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_worker_answers_runs_and_returns_when_input_closes() {
        let input = format!(
            "{}\nrun 3\nrun 1\n",
            request("spin", serde_json::json!({"ms": 1}))
        );
        let mut out = Vec::new();
        // serve() pins the calling thread: run it on a thread of its own.
        std::thread::scope(|s| {
            s.spawn(|| serve(&catalogue(), input.as_bytes(), &mut out).unwrap());
        });
        let r = replies(&out);
        assert!(
            matches!(
                r[0],
                Reply::Hello {
                    protocol: PROTOCOL,
                    ..
                }
            ),
            "{r:?}"
        );
        match &r[1] {
            Reply::Runs { wall_ns, cpu_ns } => {
                assert_eq!(wall_ns.len(), 3);
                assert!(cpu_ns.iter().all(|&c| c >= 1_000_000), "{cpu_ns:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&r[2], Reply::Runs { wall_ns, .. } if wall_ns.len() == 1));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn bad_requests_get_an_error_line_naming_the_problem() {
        let serve_str = |input: String| {
            let mut out = Vec::new();
            std::thread::scope(|s| {
                s.spawn(|| serve(&catalogue(), input.as_bytes(), &mut out).unwrap());
            });
            match replies(&out).pop() {
                Some(Reply::Error { message }) => message,
                other => panic!("{other:?}"),
            }
        };
        let m = serve_str("{\"function\": \"spin\", oops}\n".into());
        assert!(m.contains("line 1 column 22"), "{m}");
        let m = serve_str(format!("{}\n", request("nope", Value::Null)));
        assert!(m.contains("nope"), "{m}");
        let m = serve_str(format!(
            "{}\n",
            request("spin", serde_json::json!({"ms": -1}))
        ));
        assert!(m.contains("`ms`"), "{m}");
        let m = serve_str(format!(
            "{}\nrun lots\n",
            request("spin", serde_json::json!({"ms": 0}))
        ));
        assert!(m.contains("run N"), "{m}");
    }

    #[test]
    fn the_time_invoke_prints_is_parsed() {
        let stderr = "warning: x\naes: 2.345 ms\n";
        assert_eq!(invoke_reported_ns(stderr, "aes"), Some(2_345_000));
        assert_eq!(invoke_reported_ns(stderr, "spin"), None);
        assert_eq!(invoke_reported_ns("aes: fast ms", "aes"), None);
    }

    #[test]
    fn params_become_json_valued_arguments() {
        let args =
            InvokeJob::param_args(&serde_json::json!({"iterations": 440, "plaintext": "a b"}));
        assert_eq!(args, vec!["iterations=440", "plaintext=\"a b\""]);
        assert!(InvokeJob::param_args(&Value::Null).is_empty());
    }
}
