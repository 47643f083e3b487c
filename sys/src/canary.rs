//! The CPU health check run before measuring: a short-lived `SCHED_FIFO`
//! "canary" thread per CPU that must run within a few milliseconds, and
//! the CPU's system + irq + softirq share of `/proc/stat` over a short
//! window, which counts against the CPU when no task of another process
//! is running there and no user time was spent there to account for it. On the 2-vCPU VMs slokit was built
//! on a CPU was once left with a broken real-time class (100 % system time,
//! no runnable task visible, every `SCHED_FIFO` thread placed there runnable
//! but never running); figures measured on such a CPU are garbage, so
//! `compare`, `profile`, `gate` and `sched` check first ([`preflight`]).
//! slokit's own idea, written by hand on the wrappers of this crate.
//!
//! The canary never outlives the check in real time: it puts itself back
//! in `SCHED_OTHER` the moment it runs, and a canary that did not run
//! within its bound (it cannot run to restore itself if the real-time
//! class is broken) is set back to `SCHED_OTHER` by the checking thread
//! (`sched_setattr(2)` on its tid, while the canary is known to be alive),
//! allowed on the other CPUs again, released and joined. If even then it
//! does not exit within [`CheckSettings::exit_wait`], it is left as a
//! `SCHED_OTHER` thread that exits as soon as it runs, and the result says
//! so.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::clock::monotonic_ns;
use crate::cpu::{current_affinity, set_affinity};
use crate::sched::{gettid, set_attr, SchedAttr, SCHED_FIFO, SCHED_IDLE, SCHED_OTHER, SCHED_RR};

/// How the CPUs are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    /// `SCHED_FIFO` priority of the canary. The lowest (1) runs ahead of
    /// every fair-class task, so on a healthy CPU it waits only for
    /// real-time work — and real-time work busy on a CPU we are about to
    /// measure on is itself a finding (slokit's own FIFO threads are not
    /// running when the commands check).
    pub priority: u8,
    /// How soon after its wake-up the canary must run.
    pub bound: Duration,
    /// Attempts before the CPU is reported: one vCPU stall (the host
    /// preempting the VM) or one RT-throttled period must not fail a CPU.
    pub tries: u32,
    /// Pause between attempts.
    pub pause: Duration,
    /// How long a canary demoted to `SCHED_OTHER` is waited for to exit.
    pub exit_wait: Duration,
    /// Window over which the kernel's share of each CPU is measured.
    pub window: Duration,
    /// System + irq + softirq share (%) above which an idle CPU counts as
    /// busy in the kernel.
    pub kernel_limit_percent: f64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            priority: 1,
            bound: Duration::from_millis(20),
            tries: 3,
            pause: Duration::from_millis(20),
            exit_wait: Duration::from_secs(1),
            window: Duration::from_millis(200),
            kernel_limit_percent: 50.0,
        }
    }
}

/// A runnable task seen on a CPU that failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub tid: u32,
    pub comm: String,
    /// `OTHER`, `FIFO`, `RR`, `BATCH`, `IDLE` or `DEADLINE`.
    pub policy: &'static str,
    /// Real-time priority (0 outside FIFO and RR).
    pub priority: u32,
}

impl Task {
    /// Whether it is in a real-time class (FIFO or RR).
    pub fn realtime(&self) -> bool {
        matches!(self.policy, "FIFO" | "RR")
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.realtime() {
            write!(
                f,
                "tid {} ({}, {} {})",
                self.tid, self.comm, self.policy, self.priority
            )
        } else {
            write!(f, "tid {} ({}, {})", self.tid, self.comm, self.policy)
        }
    }
}

/// At most five tasks, for a message.
fn task_list(tasks: &[Task]) -> String {
    let shown: Vec<String> = tasks.iter().take(5).map(Task::to_string).collect();
    format!(
        "{}{}",
        shown.join(", "),
        if tasks.len() > 5 { ", …" } else { "" }
    )
}

/// What the canary of one CPU did.
#[derive(Debug, Clone, PartialEq)]
pub enum Canary {
    /// It ran `after` its wake-up, on attempt `attempt` (1-based).
    Ran { after: Duration, attempt: u32 },
    /// It did not run within the bound on any attempt.
    Missed {
        tries: u32,
        /// Runnable real-time tasks on the CPU when the last attempt failed.
        rt_tasks: Vec<Task>,
        /// Tids of canaries that had not exited after `exit_wait` (each in
        /// `SCHED_OTHER`, exiting when it next runs).
        left_behind: Vec<u32>,
    },
    /// The check could not be made (no permission for `SCHED_FIFO`, CPU
    /// not available to this process, ...).
    NotChecked(String),
}

/// One CPU's health.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuHealth {
    pub cpu: usize,
    pub canary: Canary,
    /// System + irq + softirq share of the window, %, if `/proc/stat` had it.
    pub kernel_percent: Option<f64>,
    /// User + nice share of the same window, %.
    pub user_percent: Option<f64>,
    /// When that share was above the limit: the runnable tasks of other
    /// processes seen on the CPU just after (the kernel time is theirs, so
    /// the CPU is busy rather than broken).
    pub busy_with: Vec<Task>,
}

/// User time above this share of the check's window means user code ran on
/// the CPU, so its kernel time is that work's — a server that sleeps
/// between requests is rarely caught runnable, but it leaves user ticks —
/// and not a wedged CPU's, which shows none (one tick of a 200-ms window
/// is 5 %).
pub const USER_WORK_PERCENT: f64 = 5.0;

impl CpuHealth {
    /// Whether other work explains the CPU's kernel time: tasks of other
    /// processes seen running there, or user time in the window.
    pub fn ran_other_work(&self) -> bool {
        !self.busy_with.is_empty() || self.user_percent.is_some_and(|u| u >= USER_WORK_PERCENT)
    }
}

/// Something that makes a CPU unfit to measure on.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The real-time class did not run a canary.
    RtStalled {
        cpu: usize,
        priority: u8,
        bound: Duration,
        tries: u32,
        rt_tasks: Vec<Task>,
        left_behind: Vec<u32>,
    },
    /// The CPU spent this share in the kernel while it should be idle.
    KernelBusy {
        cpu: usize,
        percent: f64,
        window: Duration,
    },
}

impl Finding {
    /// The CPU it is about.
    pub fn cpu(&self) -> usize {
        match self {
            Finding::RtStalled { cpu, .. } | Finding::KernelBusy { cpu, .. } => *cpu,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::RtStalled {
                cpu,
                priority,
                bound,
                tries,
                rt_tasks,
                left_behind,
            } => {
                write!(
                    f,
                    "CPU {cpu}: a SCHED_FIFO canary (priority {priority}) did not run within {} ms ({tries} {})",
                    bound.as_millis(),
                    if *tries == 1 { "try" } else { "tries" }
                )?;
                if rt_tasks.is_empty() {
                    f.write_str(
                        "; no runnable real-time task is visible there, so its real-time class looks wedged",
                    )?;
                } else {
                    write!(f, "; runnable real-time tasks there: {}", task_list(rt_tasks))?;
                }
                if !left_behind.is_empty() {
                    let tids: Vec<String> = left_behind.iter().map(u32::to_string).collect();
                    write!(
                        f,
                        "; canary thread(s) {} did not exit (set back to SCHED_OTHER; they exit when they run)",
                        tids.join(", ")
                    )?;
                }
                Ok(())
            }
            Finding::KernelBusy {
                cpu,
                percent,
                window,
            } => write!(
                f,
                "CPU {cpu}: {percent:.0} % system time while idle (system + irq + softirq over {} ms, no task runnable there)",
                window.as_millis()
            ),
        }
    }
}

/// The health of every CPU checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub cpus: Vec<CpuHealth>,
    pub settings: CheckSettings,
}

impl HealthReport {
    /// What makes a CPU unfit, in CPU order.
    pub fn findings(&self) -> Vec<Finding> {
        let s = &self.settings;
        let mut out = Vec::new();
        for h in &self.cpus {
            if let Canary::Missed {
                tries,
                rt_tasks,
                left_behind,
            } = &h.canary
            {
                out.push(Finding::RtStalled {
                    cpu: h.cpu,
                    priority: s.priority,
                    bound: s.bound,
                    tries: *tries,
                    rt_tasks: rt_tasks.clone(),
                    left_behind: left_behind.clone(),
                });
            }
            let over = h.kernel_percent.filter(|p| *p > s.kernel_limit_percent);
            if let Some(p) = over.filter(|_| !h.ran_other_work()) {
                out.push(Finding::KernelBusy {
                    cpu: h.cpu,
                    percent: p,
                    window: s.window,
                });
            }
        }
        out
    }

    /// Checks that could not be made, and CPUs busy in the kernel for
    /// other tasks: one line each, worth a warning but not a refusal.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.settings;
        let mut out = Vec::new();
        for h in &self.cpus {
            if let Canary::NotChecked(why) = &h.canary {
                out.push(format!(
                    "CPU {}: the SCHED_FIFO canary was not run: {why}",
                    h.cpu
                ));
            }
            if let (Some(p), true) = (h.kernel_percent, h.ran_other_work()) {
                if p > s.kernel_limit_percent {
                    let work = if h.busy_with.is_empty() {
                        format!("{:.0} % user time there", h.user_percent.unwrap_or(0.0))
                    } else {
                        task_list(&h.busy_with)
                    };
                    out.push(format!(
                        "CPU {}: {p:.0} % system time, for other work running there ({work}); expect noise",
                        h.cpu
                    ));
                }
            }
        }
        out
    }
}

/// Checks `cpus` (sorted and deduplicated first): the kernel's share of
/// each over `settings.window`, and one canary per CPU inside that window.
pub fn check_cpus(cpus: &[usize], settings: &CheckSettings) -> HealthReport {
    let mut cpus = cpus.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    let start = monotonic_ns();
    let before = std::fs::read_to_string("/proc/stat").ok();
    let canaries: Vec<Canary> = cpus.iter().map(|&c| run_canary(c, settings)).collect();
    let elapsed = Duration::from_nanos(monotonic_ns() - start);
    if let Some(rest) = settings.window.checked_sub(elapsed) {
        std::thread::sleep(rest);
    }
    let after = std::fs::read_to_string("/proc/stat").ok();
    let shares = |cpu| match (&before, &after) {
        (Some(b), Some(a)) => (kernel_share(b, a, cpu), user_share(b, a, cpu)),
        _ => (None, None),
    };
    let me = std::process::id();
    let health = cpus
        .iter()
        .zip(canaries)
        .map(|(&cpu, canary)| {
            let (kernel_percent, user_percent) = shares(cpu);
            let busy_with = if kernel_percent.is_some_and(|p| p > settings.kernel_limit_percent) {
                tasks_seen_running(cpu, me)
            } else {
                Vec::new()
            };
            CpuHealth {
                cpu,
                canary,
                kernel_percent,
                user_percent,
                busy_with,
            }
        })
        .collect();
    HealthReport {
        cpus: health,
        settings: settings.clone(),
    }
}

/// Runnable tasks of processes other than `me` on `cpu`, over five looks
/// 10 ms apart.
fn tasks_seen_running(cpu: usize, me: u32) -> Vec<Task> {
    let mut seen: Vec<Task> = Vec::new();
    for look in 0..5 {
        if look > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (tgid, task) in runnable_tasks(cpu) {
            if tgid != me && !seen.iter().any(|t| t.tid == task.tid) {
                seen.push(task);
            }
        }
    }
    seen
}

/// The CPU check of a command that is about to measure on `cpus`. A CPU
/// with a [`Finding`] refuses the command ([`CpuCheckFailed`]) unless
/// `force`; returns the lines to show as warnings and to record in what
/// the command writes (empty when every CPU is healthy).
pub fn preflight(cpus: &[usize], force: bool) -> Result<Vec<String>, CpuCheckFailed> {
    let report = check_cpus(cpus, &CheckSettings::default());
    let findings = report.findings();
    let mut notes = report.warnings();
    if !findings.is_empty() {
        if !force {
            return Err(CpuCheckFailed { findings });
        }
        let what: Vec<String> = findings.iter().map(Finding::to_string).collect();
        notes.insert(
            0,
            format!(
                "measured with --force although the CPU check failed; figures from these CPUs may be garbage: {}",
                what.join("; ")
            ),
        );
    }
    Ok(notes)
}

/// A command refused to measure on unhealthy CPUs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CpuCheckFailed {
    pub findings: Vec<Finding>,
}

impl std::fmt::Display for CpuCheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what: Vec<String> = self.findings.iter().map(Finding::to_string).collect();
        let mut fixes: Vec<&str> = Vec::new();
        for finding in &self.findings {
            let fix = match finding {
                Finding::RtStalled { rt_tasks, .. } if rt_tasks.is_empty() => {
                    "reboot the machine (a wedged real-time class does not recover)"
                }
                Finding::RtStalled { .. } => "stop the real-time tasks that hold the CPU",
                Finding::KernelBusy { .. } => {
                    "find what keeps the kernel busy there (interrupts, a stuck kernel thread)"
                }
            };
            if !fixes.contains(&fix) {
                fixes.push(fix);
            }
        }
        write!(
            f,
            "CPU check failed: {}. Measuring there gives garbage: {}, measure on other CPUs, \
             or pass --force to measure anyway",
            what.join("; "),
            fixes.join("; ")
        )
    }
}

/// State shared by one canary thread and the thread checking on it.
#[derive(Default)]
struct Shared {
    /// Set by the checker once the canary is pinned and real-time.
    go: AtomicBool,
    /// Set by the checker when the canary may exit.
    release: AtomicBool,
    /// `CLOCK_MONOTONIC` when the canary first ran after `go` (0: not yet).
    ran_at_ns: AtomicU64,
    /// Whether the canary was in `SCHED_FIFO` when it ran (stored before
    /// `ran_at_ns`).
    ran_in_fifo: AtomicBool,
}

/// What one attempt of a canary did.
struct Attempt {
    /// Wake-up to first run, if it ran at all before it was demoted.
    after: Option<Duration>,
    rt_tasks: Vec<Task>,
    /// The canary's tid, if it had not exited after `exit_wait`.
    left_behind: Option<u32>,
}

/// Runs the canary on `cpu`: up to `settings.tries` attempts, each a fresh
/// thread that must run within `settings.bound` of its wake-up. A canary
/// that missed is let run on this thread's other CPUs.
pub fn run_canary(cpu: usize, settings: &CheckSettings) -> Canary {
    let release_to: Vec<usize> = current_affinity()
        .map(|all| {
            let others: Vec<usize> = all.iter().copied().filter(|&c| c != cpu).collect();
            if others.is_empty() {
                all
            } else {
                others
            }
        })
        .unwrap_or_default();
    canary_releasing_to(cpu, settings, &release_to)
}

/// [`run_canary`], with the CPUs a missed canary is let run on.
fn canary_releasing_to(cpu: usize, settings: &CheckSettings, release_to: &[usize]) -> Canary {
    let tries = settings.tries.max(1);
    let mut left_behind = Vec::new();
    let mut rt_tasks = Vec::new();
    for attempt in 1..=tries {
        if attempt > 1 {
            std::thread::sleep(settings.pause);
        }
        match one_attempt(cpu, settings, release_to) {
            Ok(a) => {
                left_behind.extend(a.left_behind);
                match a.after {
                    Some(after) if after <= settings.bound => {
                        return Canary::Ran { after, attempt };
                    }
                    _ => rt_tasks = a.rt_tasks,
                }
            }
            Err(why) => return Canary::NotChecked(why),
        }
    }
    Canary::Missed {
        tries,
        rt_tasks,
        left_behind,
    }
}

/// Sends on drop, so the checker learns when the canary's body has ended,
/// however it ended.
struct ExitSignal(mpsc::Sender<()>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn one_attempt(
    cpu: usize,
    settings: &CheckSettings,
    release_to: &[usize],
) -> Result<Attempt, String> {
    let shared = Arc::new(Shared::default());
    let (tid_tx, tid_rx) = mpsc::channel::<u32>();
    let (ran_tx, ran_rx) = mpsc::channel::<()>();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let body = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("slokit-canary-{cpu}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let _exit = ExitSignal(exit_tx);
            let tid = gettid();
            if tid_tx.send(tid).is_err() {
                return;
            }
            while !body.go.load(Ordering::Acquire) && !body.release.load(Ordering::Acquire) {
                std::thread::park();
            }
            if body.go.load(Ordering::Acquire) {
                let ran_at = monotonic_ns();
                let fifo = crate::sched::get_attr(tid).is_ok_and(|a| a.sched_policy == SCHED_FIFO);
                body.ran_in_fifo.store(fifo, Ordering::Relaxed);
                body.ran_at_ns.store(ran_at, Ordering::Release);
                // Out of the real-time class before anything else.
                let _ = set_attr(tid, &SchedAttr::other(0));
                let _ = ran_tx.send(());
            }
            while !body.release.load(Ordering::Acquire) {
                std::thread::park();
            }
        })
        .map_err(|e| format!("cannot start the canary thread: {e}"))?;
    // The canary is alive until `release`: its tid cannot be reused meanwhile.
    let tid = match tid_rx.recv() {
        Ok(t) => t,
        Err(_) => {
            let _ = handle.join();
            return Err("the canary thread died at start".into());
        }
    };
    let thread = handle.thread().clone();
    let release = |shared: &Shared| {
        shared.release.store(true, Ordering::Release);
        thread.unpark();
    };
    if let Err(e) = set_affinity(tid as libc::pid_t, &[cpu]) {
        release(&shared);
        let _ = handle.join();
        return Err(format!("cannot pin it to CPU {cpu}: {e}"));
    }
    if let Err(e) = set_attr(tid, &SchedAttr::fifo(settings.priority)) {
        release(&shared);
        let _ = handle.join();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (run as root or grant CAP_SYS_NICE)"
        } else {
            ""
        };
        return Err(format!(
            "cannot set SCHED_FIFO (priority {}): {e}{hint}",
            settings.priority
        ));
    }
    let woken_at = monotonic_ns();
    shared.go.store(true, Ordering::Release);
    thread.unpark();
    let _ = ran_rx.recv_timeout(settings.bound);
    let ran_at = shared.ran_at_ns.load(Ordering::Acquire);
    // Checked, not assumed: a canary outside the real-time class proves nothing.
    let ran_outside_fifo = ran_at != 0 && !shared.ran_in_fifo.load(Ordering::Relaxed);
    let mut rt_tasks = Vec::new();
    if ran_at == 0 {
        rt_tasks = runnable_tasks(cpu)
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.realtime() && t.tid != tid)
            .collect();
        rt_tasks.sort_by(|a: &Task, b: &Task| b.priority.cmp(&a.priority).then(a.tid.cmp(&b.tid)));
        // It cannot run to restore itself: out of the real-time class from
        // here, and free to run on another CPU. It is alive (not released).
        let _ = set_attr(tid, &SchedAttr::other(0));
        if !release_to.is_empty() {
            let _ = set_affinity(tid as libc::pid_t, release_to);
        }
    }
    release(&shared);
    let left_behind = match exit_rx.recv_timeout(settings.exit_wait) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = handle.join();
            None
        }
        // Detached: a SCHED_OTHER thread that ends when it next runs.
        Err(mpsc::RecvTimeoutError::Timeout) => Some(tid),
    };
    if ran_outside_fifo {
        return Err(format!(
            "the canary ran outside SCHED_FIFO (tid {tid}); the real-time class was not tested"
        ));
    }
    // Read after the exit wait: a canary that ran late has stored its time.
    let ran_at = shared.ran_at_ns.load(Ordering::Acquire);
    Ok(Attempt {
        after: (ran_at != 0).then(|| Duration::from_nanos(ran_at.saturating_sub(woken_at))),
        rt_tasks,
        left_behind,
    })
}

/// Runnable (`R`) tasks whose CPU is `cpu`, with their process id, from
/// `/proc/<pid>/task/<tid>/stat`.
fn runnable_tasks(cpu: usize) -> Vec<(u32, Task)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            if let Some(task) = parse_runnable_task(&stat, cpu) {
                out.push((pid, task));
            }
        }
    }
    out
}

/// The task of a `/proc/.../stat` line if it is runnable on `cpu`.
fn parse_runnable_task(stat: &str, cpu: usize) -> Option<Task> {
    use crate::procfs::{field, Stat};
    let s = Stat::parse(stat)?;
    let (tid, comm, state) = (s.pid, s.comm.to_string(), s.state());
    let (on, priority, policy) = (
        s.get::<usize>(field::PROCESSOR)?,
        s.get::<u32>(field::RT_PRIORITY)?,
        s.get::<u32>(field::POLICY)?,
    );
    let policy = match policy {
        SCHED_OTHER => "OTHER",
        SCHED_FIFO => "FIFO",
        SCHED_RR => "RR",
        3 => "BATCH",
        SCHED_IDLE => "IDLE",
        6 => "DEADLINE",
        _ => "?",
    };
    (state == "R" && on == cpu).then_some(Task {
        tid,
        comm,
        policy,
        priority,
    })
}

/// The first eight counters of `cpu`'s line in a `/proc/stat` text, in
/// ticks: user, nice, system, idle, iowait, irq, softirq, steal (guest time
/// is already in user). `None` when the line is missing or short.
pub fn cpu_ticks(stat: &str, cpu: usize) -> Option<[u64; 8]> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let mut out = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(out)
}

/// User + nice share (%) of `cpu` between two `/proc/stat` snapshots,
/// over the same total as [`kernel_share`].
pub fn user_share(before: &str, after: &str, cpu: usize) -> Option<f64> {
    share(before, after, cpu, &[0, 1])
}

/// The share (%) of the counters at `indices` (of [`cpu_ticks`]) in `cpu`'s
/// ticks between two `/proc/stat` snapshots.
fn share(before: &str, after: &str, cpu: usize, indices: &[usize]) -> Option<f64> {
    let (b, a) = (cpu_ticks(before, cpu)?, cpu_ticks(after, cpu)?);
    let d: Vec<u64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.saturating_sub(*y))
        .collect();
    let total: u64 = d.iter().sum();
    let part: u64 = indices.iter().map(|&i| d[i]).sum();
    (total > 0).then(|| 100.0 * part as f64 / total as f64)
}

/// System + irq + softirq share (%) of `cpu` between two `/proc/stat`
/// snapshots, over user + nice + system + idle + iowait + irq + softirq +
/// steal (guest time is already in user). `None` when the CPU is missing
/// or no time passed.
pub fn kernel_share(before: &str, after: &str, cpu: usize) -> Option<f64> {
    share(before, after, cpu, &[2, 5, 6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::pin_current_thread;
    use crate::sched::get_attr;

    #[test]
    fn cpu_ticks_reads_one_cpus_line_and_refuses_a_short_one() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 2 3\n";
        assert_eq!(cpu_ticks(stat, 0), Some([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(cpu_ticks(stat, 1), None, "short line");
        assert_eq!(cpu_ticks(stat, 2), None, "missing CPU");
    }

    /// Whether this process may use SCHED_FIFO; CI must (it runs as root).
    fn fifo_allowed() -> bool {
        let probe = std::thread::spawn(|| {
            let tid = gettid();
            let ok = set_attr(tid, &SchedAttr::fifo(1)).is_ok();
            let _ = set_attr(tid, &SchedAttr::other(0));
            ok
        })
        .join()
        .unwrap();
        if !probe {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must allow SCHED_FIFO"
            );
            eprintln!("skipping: SCHED_FIFO not permitted here");
        }
        probe
    }

    /// Tests that load a CPU or check one take turns.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CPU the blocking tests use: the last one, when there are two
    /// (the test harness keeps the others).
    fn test_cpu() -> Option<usize> {
        let cpus = current_affinity().unwrap();
        if cpus.len() < 2 {
            eprintln!("skipping: needs two CPUs");
            return None;
        }
        cpus.last().copied()
    }

    /// A thread of this test in SCHED_FIFO 99 spinning on one CPU until
    /// dropped (or for at most `MAX_SPIN`), in SCHED_OTHER again before it
    /// ends; RT throttling (950 of every 1000 ms) bounds it as well.
    struct Blocker {
        stop: Arc<AtomicBool>,
        handle: Option<std::thread::JoinHandle<()>>,
    }

    const MAX_SPIN: Duration = Duration::from_millis(500);

    impl Blocker {
        fn start(cpu: usize) -> Blocker {
            let stop = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = mpsc::channel();
            let flag = stop.clone();
            let handle = std::thread::Builder::new()
                .name("canary-blocker".into())
                .spawn(move || {
                    pin_current_thread(&[cpu]).unwrap();
                    let tid = gettid();
                    set_attr(tid, &SchedAttr::fifo(99)).unwrap();
                    struct Restore(u32);
                    impl Drop for Restore {
                        fn drop(&mut self) {
                            let _ = set_attr(self.0, &SchedAttr::other(0));
                        }
                    }
                    let _restore = Restore(tid);
                    ready_tx.send(()).unwrap();
                    let end = monotonic_ns() + MAX_SPIN.as_nanos() as u64;
                    while !flag.load(Ordering::Relaxed) && monotonic_ns() < end {
                        std::hint::spin_loop();
                    }
                })
                .unwrap();
            ready_rx.recv().unwrap();
            Blocker {
                stop,
                handle: Some(handle),
            }
        }
    }

    impl Drop for Blocker {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    /// Threads of this process still in a real-time class, by name.
    fn realtime_threads_named(prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let tid: u32 = t.file_name().to_str().unwrap().parse().unwrap();
            if comm.trim().starts_with(prefix) && get_attr(tid).is_ok_and(|a| a.is_realtime()) {
                out.push(format!("{tid} {}", comm.trim()));
            }
        }
        out
    }

    fn quick() -> CheckSettings {
        CheckSettings {
            tries: 2,
            pause: Duration::from_millis(5),
            exit_wait: Duration::from_millis(100),
            window: Duration::from_millis(50),
            ..CheckSettings::default()
        }
    }

    #[test]
    fn a_canary_that_cannot_run_anywhere_is_left_in_sched_other_and_ends_later() {
        let _turn = one_at_a_time();
        let Some(cpu) = test_cpu() else { return };
        if !fifo_allowed() {
            return;
        }
        let settings = CheckSettings {
            tries: 1,
            exit_wait: Duration::from_millis(50),
            ..quick()
        };
        let blocker = Blocker::start(cpu);
        // As on a wedged CPU: the canary may not go anywhere else.
        let canary = canary_releasing_to(cpu, &settings, &[cpu]);
        let Canary::Missed { left_behind, .. } = &canary else {
            panic!("{canary:?}");
        };
        let [tid] = left_behind[..] else {
            panic!("one canary should be left behind: {canary:?}");
        };
        let attr = get_attr(tid).expect("the canary cannot have run to exit");
        assert!(!attr.is_realtime(), "left behind in SCHED_FIFO: {attr:?}");
        drop(blocker);
        let end = monotonic_ns() + 2_000_000_000;
        while std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
            assert!(monotonic_ns() < end, "the released canary never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_healthy_cpu_runs_the_canary_at_once() {
        let _turn = one_at_a_time();
        if !fifo_allowed() {
            return;
        }
        for cpu in current_affinity().unwrap() {
            match run_canary(cpu, &CheckSettings::default()) {
                Canary::Ran { after, .. } => assert!(after <= Duration::from_millis(20)),
                other => panic!("CPU {cpu}: {other:?}"),
            }
        }
        assert!(realtime_threads_named("slokit-canary").is_empty());
    }

    #[test]
    fn a_cpu_held_by_higher_priority_fifo_work_is_reported_and_no_canary_stays_realtime() {
        let _turn = one_at_a_time();
        let Some(cpu) = test_cpu() else { return };
        if !fifo_allowed() {
            return;
        }
        let settings = quick();
        let canary = {
            let _blocker = Blocker::start(cpu);
            let canary = run_canary(cpu, &settings);
            // While the CPU is still held: every canary is out of the
            // real-time class and gone (it was let run on another CPU).
            assert!(realtime_threads_named("slokit-canary").is_empty());
            canary
        };
        let Canary::Missed {
            tries,
            rt_tasks,
            left_behind,
        } = &canary
        else {
            panic!("the canary ran on a CPU held by SCHED_FIFO 99: {canary:?}");
        };
        assert_eq!(*tries, 2);
        assert!(left_behind.is_empty(), "{left_behind:?}");
        assert!(
            rt_tasks
                .iter()
                .any(|t| t.comm == "canary-blocker" && t.priority == 99),
            "{rt_tasks:?}"
        );
        assert!(realtime_threads_named("slokit-canary").is_empty());
        let report = HealthReport {
            cpus: vec![CpuHealth {
                cpu,
                canary,
                kernel_percent: Some(1.0),
                user_percent: Some(0.0),
                busy_with: vec![],
            }],
            settings: settings.clone(),
        };
        let text = report.findings()[0].to_string();
        assert!(
            text.starts_with(&format!(
                "CPU {cpu}: a SCHED_FIFO canary (priority 1) did not run within 20 ms (2 tries)"
            )),
            "{text}"
        );
        assert!(text.contains("canary-blocker, FIFO 99"), "{text}");
        // The same CPU is healthy again once the blocker is gone.
        assert!(matches!(run_canary(cpu, &settings), Canary::Ran { .. }));
    }

    #[test]
    fn preflight_refuses_a_held_cpu_and_force_records_it() {
        let _turn = one_at_a_time();
        let Some(cpu) = test_cpu() else { return };
        if !fifo_allowed() {
            return;
        }
        let refused = {
            let _blocker = Blocker::start(cpu);
            preflight(&[cpu], false)
        };
        let e = refused.expect_err("a CPU held by SCHED_FIFO 99 passed the check");
        assert!(e.findings.iter().all(|f| f.cpu() == cpu));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("CPU {cpu}: a SCHED_FIFO canary")),
            "{msg}"
        );
        assert!(msg.contains("--force"), "{msg}");
        assert!(msg.contains("stop the real-time tasks"), "{msg}");
        let forced = {
            let _blocker = Blocker::start(cpu);
            preflight(&[cpu], true).expect("--force goes on")
        };
        assert!(forced[0].contains("--force"), "{forced:?}");
        assert!(forced[0].contains(&format!("CPU {cpu}:")), "{forced:?}");
    }

    #[test]
    fn kernel_time_of_another_process_is_measured_and_named_not_refused() {
        let _turn = one_at_a_time();
        let Some(cpu) = test_cpu() else { return };
        // A low limit: other work on this shared machine takes some of the CPU.
        let settings = CheckSettings {
            kernel_limit_percent: 20.0,
            tries: 1,
            ..CheckSettings::default()
        };
        // Reading /dev/zero is memset in the kernel: system time.
        let mut cmd = std::process::Command::new("dd");
        cmd.args(["if=/dev/zero", "of=/dev/null", "bs=1M"])
            .stderr(std::process::Stdio::null());
        // SAFETY: set_affinity allocates nothing and only makes a syscall.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || set_affinity(0, &[cpu]));
        }
        let mut dd = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let report = check_cpus(&[cpu], &settings);
        let _ = dd.kill();
        let _ = dd.wait();
        assert!(
            report.cpus[0].kernel_percent.unwrap() > 20.0,
            "dd should keep the kernel busy: {report:?}"
        );
        assert!(
            report.cpus[0].busy_with.iter().any(|t| t.comm == "dd"),
            "{report:?}"
        );
        assert!(
            !report
                .findings()
                .iter()
                .any(|f| matches!(f, Finding::KernelBusy { .. })),
            "the kernel time is dd's: {report:?}"
        );
        let notes = report.warnings();
        assert!(
            notes.iter().any(|n| n.starts_with(&format!("CPU {cpu}: "))
                && n.contains("(tid ")
                && n.contains("dd, OTHER")),
            "{notes:?}"
        );
    }

    #[test]
    fn kernel_time_with_no_task_to_show_for_it_is_a_finding() {
        let health = |busy_with: Vec<Task>| HealthReport {
            cpus: vec![CpuHealth {
                cpu: 1,
                canary: Canary::Ran {
                    after: Duration::from_micros(30),
                    attempt: 1,
                },
                kernel_percent: Some(97.0),
                user_percent: Some(0.0),
                busy_with,
            }],
            settings: CheckSettings::default(),
        };
        let idle = health(vec![]);
        let [Finding::KernelBusy {
            cpu: 1, percent, ..
        }] = idle.findings()[..]
        else {
            panic!("{:?}", idle.findings());
        };
        assert_eq!(percent, 97.0);
        assert!(idle.warnings().is_empty());
        let busy = health(vec![Task {
            tid: 7,
            comm: "tar".into(),
            policy: "OTHER",
            priority: 0,
        }]);
        assert!(busy.findings().is_empty());
        assert_eq!(
            busy.warnings(),
            ["CPU 1: 97 % system time, for other work running there (tid 7 (tar, OTHER)); expect noise"]
        );
        let below = HealthReport {
            cpus: vec![CpuHealth {
                kernel_percent: Some(40.0),
                ..idle.cpus[0].clone()
            }],
            ..idle.clone()
        };
        assert!(below.findings().is_empty() && below.warnings().is_empty());
        // A bursty server leaves user time but is rarely caught runnable:
        // its kernel time is its own, not a wedge's.
        let serving = HealthReport {
            cpus: vec![CpuHealth {
                kernel_percent: Some(60.0),
                user_percent: Some(15.0),
                ..idle.cpus[0].clone()
            }],
            ..idle.clone()
        };
        assert!(serving.findings().is_empty(), "{:?}", serving.findings());
        assert_eq!(
            serving.warnings(),
            ["CPU 1: 60 % system time, for other work running there (15 % user time there); expect noise"]
        );
        let one_tick = HealthReport {
            cpus: vec![CpuHealth {
                user_percent: Some(4.0),
                ..serving.cpus[0].clone()
            }],
            ..idle.clone()
        };
        assert_eq!(
            one_tick.findings().len(),
            1,
            "below USER_WORK_PERCENT it is idle"
        );
    }

    #[test]
    fn kernel_share_counts_system_irq_and_softirq() {
        let before = "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 100 0 50 800 0 0 0 0 0 0\ncpu1 100 0 50 800 0 0 0 0 0 0\n";
        let after = "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 110 0 52 888 0 0 0 0 0 0\ncpu1 100 0 130 800 0 10 5 5 0 0\n";
        assert_eq!(kernel_share(before, after, 0), Some(2.0));
        assert_eq!(kernel_share(before, after, 1), Some(95.0));
        assert_eq!(kernel_share(before, after, 2), None);
        assert_eq!(kernel_share(before, before, 0), None);
        assert_eq!(kernel_share("cpu0 1 x", after, 0), None);
    }

    #[test]
    fn runnable_tasks_come_from_the_stat_line() {
        // Fields 3.. after the comm; 39-41 are processor, rt_priority, policy.
        let stat_line = |state: &str, cpu: &str, prio: &str, policy: &str| {
            let mut f = vec!["0"; 50];
            f[0] = state;
            f[36] = cpu;
            f[37] = prio;
            f[38] = policy;
            format!("4242 (a (odd) name) {}", f.join(" "))
        };
        let fifo = parse_runnable_task(&stat_line("R", "1", "99", "1"), 1).unwrap();
        assert_eq!(
            fifo,
            Task {
                tid: 4242,
                comm: "a (odd) name".into(),
                policy: "FIFO",
                priority: 99
            }
        );
        assert!(fifo.realtime());
        assert_eq!(fifo.to_string(), "tid 4242 (a (odd) name, FIFO 99)");
        let rr = parse_runnable_task(&stat_line("R", "1", "5", "2"), 1).unwrap();
        assert_eq!((rr.policy, rr.realtime()), ("RR", true));
        let other = parse_runnable_task(&stat_line("R", "1", "0", "0"), 1).unwrap();
        assert_eq!((other.policy, other.realtime()), ("OTHER", false));
        assert_eq!(other.to_string(), "tid 4242 (a (odd) name, OTHER)");
        let on_cpu0 = stat_line("R", "0", "99", "1");
        assert_eq!(parse_runnable_task(&on_cpu0, 1), None, "another CPU");
        let sleeping = stat_line("S", "1", "99", "1");
        assert_eq!(parse_runnable_task(&sleeping, 1), None, "sleeping");
        assert_eq!(
            parse_runnable_task("4242 (short) R 1", 1),
            None,
            "truncated"
        );
    }

    #[test]
    fn messages_name_the_cpu_and_what_was_seen() {
        let f = Finding::RtStalled {
            cpu: 1,
            priority: 1,
            bound: Duration::from_millis(20),
            tries: 3,
            rt_tasks: vec![],
            left_behind: vec![77],
        };
        let t = f.to_string();
        assert!(
            t.starts_with(
                "CPU 1: a SCHED_FIFO canary (priority 1) did not run within 20 ms (3 tries)"
            ),
            "{t}"
        );
        assert!(t.contains("looks wedged") && t.contains("77"), "{t}");
        let refused = CpuCheckFailed {
            findings: vec![f.clone()],
        }
        .to_string();
        assert!(refused.contains("reboot the machine"), "{refused}");
        let k = Finding::KernelBusy {
            cpu: 1,
            percent: 97.2,
            window: Duration::from_millis(200),
        };
        assert!(k
            .to_string()
            .starts_with("CPU 1: 97 % system time while idle"));
    }
}
