//! Child processes `compare` starts — function hosts and scheduling agents —
//! each held by a guard that ends it by pid (SIGTERM, then SIGKILL after a
//! grace period) and reaps it, on every exit path including panics.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

/// A child process that is ended and reaped when the guard drops.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `cmd` (stdout piped; stderr appended to `log` when given) and
    /// waits up to `timeout` for a stdout line starting with `ready_prefix`;
    /// returns the guard and that line.
    pub fn spawn_until_ready(
        name: &str,
        mut cmd: Command,
        ready_prefix: &str,
        timeout: Duration,
        log: Option<&Path>,
    ) -> anyhow::Result<(ChildGuard, String)> {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let where_stderr = match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening log {}", path.display()))?;
                cmd.stderr(file);
                format!("its log {} says why", path.display())
            }
            None => "its stderr above says why".to_string(),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut guard = ChildGuard {
            name: name.to_string(),
            child: Some(child),
        };
        let line = wait_for_line(stdout, ready_prefix, timeout);
        match line {
            Some(line) => Ok((guard, line)),
            None => {
                let status = guard.stop(Duration::from_millis(200));
                bail!(
                    "{name} did not print `{ready_prefix}…` within {:.0} s ({status}); {where_stderr}",
                    timeout.as_secs_f64()
                )
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs; returns how it
    /// ended, as text.
    pub fn stop(&mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        let pid = child.id() as libc::pid_t;
        if let Ok(Some(status)) = child.try_wait() {
            return format!("exited early with {status}");
        }
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return format!("{status}"),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        eprintln!(
            "warning: {} (pid {pid}) ignored SIGTERM for {:.1} s; killing it",
            self.name,
            grace.as_secs_f64()
        );
        let _ = child.kill();
        child
            .wait()
            .map_or_else(|e| format!("wait failed: {e}"), |s| format!("{s} (killed)"))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Makes `cmd` start with CPU affinity `cpus` instead of inheriting the
/// caller's (`compare` pins itself to the load generator's CPUs; hosts and
/// agents place their own threads).
pub fn with_affinity(cmd: &mut Command, cpus: Vec<usize>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls `slokit_sys::cpu::set_affinity`, which calls nothing but
    // sched_setaffinity(2) (async-signal-safe) and allocates nothing (the
    // set is built on its stack from the captured Vec).
    unsafe {
        cmd.pre_exec(move || slokit_sys::cpu::set_affinity(0, &cpus));
    }
}

/// Reads `stdout` on a helper thread until a line starts with `prefix`;
/// the thread then keeps draining (so the child never blocks on a full pipe).
fn wait_for_line(stdout: ChildStdout, prefix: &str, timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(&prefix) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_returned_and_child_is_ended_by_pid() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo starting; echo 'listening on http://x'; exec sleep 30",
        ]);
        let (mut g, line) =
            ChildGuard::spawn_until_ready("sh", cmd, "listening on", Duration::from_secs(5), None)
                .unwrap();
        assert_eq!(line, "listening on http://x");
        let pid = g.pid();
        let how = g.stop(Duration::from_secs(2));
        assert!(how.contains("signal") || how.contains("15"), "{how}");
        // Reaped, so not even a zombie remains.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_child_that_never_gets_ready_is_an_error_and_is_reaped() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec sleep 30"]);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleeper.log");
        let e = ChildGuard::spawn_until_ready(
            "sleeper",
            cmd,
            "ready",
            Duration::from_millis(300),
            Some(&log),
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("sleeper did not print") && e.contains("sleeper.log"),
            "{e}"
        );
    }
}
