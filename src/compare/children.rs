//! Child processes `compare` starts — function hosts and scheduling agents —
//! each held by a guard that ends it by pid (SIGTERM, then SIGKILL after a
//! grace period) and reaps it, on every exit path including panics.
//!
//! Every child is *contained* ([`contain`]) so that none outlives `compare`,
//! even when `compare` gets SIGKILL and no destructor runs: it leads a
//! process group of its own (signals reach its whole group; Ctrl-C at the
//! terminal reaches only `compare`, which then stops its children in
//! order), it gets a parent-death signal (`PR_SET_PDEATHSIG`: SIGKILL for
//! hosts, SIGTERM for the agent so it restores every thread it touched), it
//! starts in plain `SCHED_OTHER` with the given CPU affinity, and, when
//! cgroups are available, it joins a cgroup of its own (`cgroup.rs`), whose
//! watchdog kills grandchildren too. A parent-death signal follows the
//! *thread* that forked the child: `compare` starts every child from its
//! main thread, which lives as long as the process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::cgroup::{CgroupJoin, HostCgroup};

/// A child process that is ended and reaped when the guard drops.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    /// The child's cgroup, emptied and removed after the child is reaped.
    cgroup: Option<HostCgroup>,
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
            cgroup: None,
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

    /// Hands the guard the cgroup the child joined ([`contain`]): it is
    /// killed and removed when the child is stopped.
    pub fn adopt_cgroup(&mut self, cgroup: HostCgroup) {
        self.cgroup = Some(cgroup);
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs; returns how it
    /// ended, as text. A contained child's whole process group is
    /// signalled, and whatever is left in its cgroup is killed.
    pub fn stop(&mut self, grace: Duration) -> String {
        let how = self.stop_child(grace);
        if let Some(cg) = self.cgroup.take() {
            // The group's stragglers (a process that left the group but not
            // the cgroup) go with it; dropping removes the directory.
            cg.kill();
            cg.wait_empty(Duration::from_secs(2));
        }
        how
    }

    fn stop_child(&mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        let pid = child.id() as libc::pid_t;
        // A contained child leads its own group: signal all of it.
        // SAFETY: getpgid(2) on our own unreaped child.
        let group = unsafe { libc::getpgid(pid) } == pid;
        let target = if group { -pid } else { pid };
        if let Ok(Some(status)) = child.try_wait() {
            if group {
                // SAFETY: the group our child led; its members are ours.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            return format!("exited early with {status}");
        }
        // SAFETY: kill(2) on our own child's pid (or the process group it
        // leads), which we have not reaped yet.
        unsafe { libc::kill(target, libc::SIGTERM) };
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
        // SAFETY: as above; SIGKILL to the same target.
        unsafe { libc::kill(target, libc::SIGKILL) };
        let _ = child.kill();
        child
            .wait()
            .map_or_else(|e| format!("wait failed: {e}"), |s| format!("{s} (killed)"))
    }
}

/// How a child is contained (see the module docs).
#[derive(Debug, Clone)]
pub struct Containment {
    /// Its CPU affinity (inherited by everything it starts).
    pub cpus: Vec<usize>,
    /// The signal it gets when `compare` dies.
    pub death_signal: i32,
    /// The cgroup it joins before it runs its program.
    pub cgroup: Option<CgroupJoin>,
}

impl Containment {
    /// A function host: SIGKILL when `compare` dies.
    pub fn host(cpus: Vec<usize>, cgroup: Option<&HostCgroup>) -> Self {
        Containment {
            cpus,
            death_signal: libc::SIGKILL,
            cgroup: cgroup.map(HostCgroup::joiner),
        }
    }

    /// The scheduling agent: SIGTERM when `compare` dies, so it restores
    /// every thread it touched (its guardian covers a SIGKILL).
    pub fn agent(cpus: Vec<usize>) -> Self {
        Containment {
            cpus,
            death_signal: libc::SIGTERM,
            cgroup: None,
        }
    }
}

/// Makes `cmd` start contained: its own process group, the parent-death
/// signal, `SCHED_OTHER` at nice 0, CPU affinity `c.cpus` instead of the
/// caller's (`compare` pins itself to the load generator's CPUs), and the
/// cgroup when given.
pub fn contain(cmd: &mut Command, c: Containment) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe system calls (setpgid, prctl, getppid, raise,
    // sched_setattr, sched_setaffinity, open/write/close) on data prepared
    // before the fork; it allocates nothing (the CPU set is built on its
    // stack from the captured Vec).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                c.death_signal as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody
            // would ever send the signal.
            if libc::getppid() != parent {
                libc::raise(c.death_signal);
            }
            // Plain SCHED_OTHER even if compare was started real-time (an
            // unprivileged caller may not lower its nice: not fatal).
            let _ = slokit_sys::sched::set_attr(0, &slokit_sys::sched::SchedAttr::other(0));
            slokit_sys::cpu::set_affinity(0, &c.cpus)?;
            if let Some(join) = &c.cgroup {
                join.join()?;
            }
            Ok(())
        });
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(5));
        }
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
