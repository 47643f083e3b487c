//! Isolation of the measured thread: CPU choice, affinity, `SCHED_FIFO`, the
//! optional `--isolate` move of other tasks, the Ctrl-C flag, and the
//! environment check (pyperf's `system show`: per-CPU load from `/proc/stat`
//! deltas, `isolcpus=`/`nohz_full=` membership, governor, turbo, ASLR, RT
//! throttling).
//!
//! Every change is held by an RAII guard that restores the original in
//! `Drop` (sched-ext/scx's habit), so nothing stays changed after an error,
//! a panic or Ctrl-C.
//!
//! `--isolate` method (chosen for the machines here, which mount cgroup v1
//! cpuset at `/sys/fs/cgroup/cpuset` and a cgroup v2 hierarchy without the
//! cpuset controller): moving tasks between v1 cpusets resets their
//! affinity to the cpuset's CPUs, which would lose any mask a task set for
//! itself. Instead we change each movable task's affinity with
//! `sched_setaffinity(2)` to its own mask minus the measurement CPU, record
//! the original, and restore it afterwards — only where the task's mask is
//! still the one we set (its owner may have changed it meanwhile). Kernel
//! threads, our own process, and tasks allowed only on the measurement CPU
//! are skipped; tasks that refuse are counted. Tasks created during the
//! measurement by a moved process inherit the reduced mask; on restore they
//! get their parent's (or thread group's) original mask.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slokit_model::Environment;
use slokit_sys::cpu::{get_affinity, parse_cpu_list_lenient};
use slokit_sys::sched::gettid;

use crate::error::ProfileError;

/// The in-process target (target.rs) pins with it as
/// `isolation::set_affinity`; the one copy is slokit-sys's.
pub use slokit_sys::cpu::set_affinity;

/// A set of CPU numbers.
pub type CpuSet = Vec<usize>;

/// Chooses the measurement CPU: `requested` if this process may run there,
/// else an error naming the allowed CPUs; by default the last allowed CPU.
pub fn choose_cpu(requested: Option<usize>) -> Result<(usize, CpuSet), ProfileError> {
    let allowed = get_affinity(0).map_err(|e| {
        ProfileError::System(format!("cannot read this process's CPU affinity: {e}"))
    })?;
    let cpu = match requested {
        Some(c) if allowed.contains(&c) => c,
        Some(c) => {
            return Err(ProfileError::Settings(format!(
                "--cpu {c} is not available to this process (allowed CPUs: {allowed:?})"
            )))
        }
        None => *allowed
            .last()
            .ok_or_else(|| ProfileError::System("this process may run on no CPU".into()))?,
    };
    Ok((cpu, allowed))
}

/// The scheduling policy the measured thread ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    #[serde(rename = "SCHED_FIFO")]
    Fifo,
    #[serde(rename = "SCHED_OTHER")]
    Other,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Fifo => "SCHED_FIFO",
            Policy::Other => "SCHED_OTHER",
        })
    }
}

/// Puts the calling thread in `SCHED_FIFO` and back in `SCHED_OTHER` when
/// dropped — on every path, panics included, before the thread exits.
#[derive(Debug)]
pub struct FifoGuard {
    tid: u32,
}

impl FifoGuard {
    /// `SCHED_FIFO` at `priority` (1..=99) for the calling thread. With
    /// `reset_on_fork`, children it spawns start in `SCHED_OTHER`
    /// (`SCHED_RESET_ON_FORK`), so no process it starts can stay real-time.
    pub fn enter(priority: i32, reset_on_fork: bool) -> std::io::Result<Self> {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        let policy = libc::SCHED_FIFO
            | if reset_on_fork {
                libc::SCHED_RESET_ON_FORK
            } else {
                0
            };
        // SAFETY: 0 names the calling thread; `param` is valid.
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { tid: gettid() })
    }
}

/// Puts the calling thread back in `SCHED_OTHER`.
pub fn reset_to_other() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: 0 names the calling thread; `param` is valid.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's current policy (`sched_getscheduler`), without flags.
pub fn current_policy() -> i32 {
    // SAFETY: 0 names the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

impl Drop for FifoGuard {
    fn drop(&mut self) {
        debug_assert_eq!(
            self.tid,
            gettid(),
            "a FifoGuard must drop on its own thread"
        );
        if let Err(e) = reset_to_other() {
            // Nothing better to do in Drop; say it loudly.
            eprintln!("slokit: cannot reset tid {} to SCHED_OTHER: {e}", self.tid);
        }
    }
}

/// Ctrl-C / SIGTERM → an `AtomicBool`, unregistered when dropped (so the
/// default action is back after profiling).
#[derive(Debug)]
pub struct InterruptFlag {
    pub flag: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl InterruptFlag {
    /// Registers SIGINT and SIGTERM handlers that set the flag.
    pub fn register() -> Result<Self, ProfileError> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let id = signal_hook::flag::register(sig, flag.clone()).map_err(|e| {
                ProfileError::System(format!("cannot install the Ctrl-C handler: {e}"))
            })?;
            ids.push(id);
        }
        Ok(Self { flag, ids })
    }
}

impl Drop for InterruptFlag {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// One task whose affinity `--isolate` changed.
#[derive(Debug, Clone)]
struct MovedTask {
    tid: libc::pid_t,
    tgid: libc::pid_t,
    original: CpuSet,
    set_to: CpuSet,
}

/// What `--isolate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolateOutcome {
    /// Tasks moved off the measurement CPU.
    pub moved: usize,
    /// Tasks that refused (`EPERM`, `EINVAL`, exited).
    pub refused: usize,
    /// Tasks left alone because they may run only on the measurement CPU.
    pub pinned_there: usize,
}

/// `--isolate`: other tasks' affinity minus the measurement CPU, restored in `Drop`.
#[derive(Debug)]
pub struct IsolateGuard {
    cpu: usize,
    moved: Vec<MovedTask>,
    pub outcome: IsolateOutcome,
}

/// The facts about one task that `--isolate` needs, from `/proc/<tid>/stat`.
struct TaskStat {
    ppid: libc::pid_t,
    kernel_thread: bool,
}

fn task_stat(pid: libc::pid_t, tid: libc::pid_t) -> Option<TaskStat> {
    use slokit_sys::procfs::{field, read_task, Stat};
    let text = read_task(pid as u32, tid as u32).ok()?;
    let stat = Stat::parse(&text)?;
    Some(TaskStat {
        ppid: stat.get(field::PPID)?,
        // kthreadd's own tasks count by the process's pid (2), not the tid.
        kernel_thread: stat.is_kernel_thread() || pid == 2,
    })
}

/// Every (tgid, tid) pair in `/proc`.
fn all_tasks() -> Vec<(libc::pid_t, libc::pid_t)> {
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
                out.push((pid, tid));
            }
        }
    }
    out
}

impl IsolateGuard {
    /// Moves every movable task except this process's off `cpu`.
    pub fn isolate(cpu: usize) -> Self {
        let me = std::process::id() as libc::pid_t;
        let mut guard = IsolateGuard {
            cpu,
            moved: Vec::new(),
            outcome: IsolateOutcome::default(),
        };
        for (tgid, tid) in all_tasks() {
            if tgid == me {
                continue;
            }
            let Some(stat) = task_stat(tgid, tid) else {
                continue;
            };
            if stat.kernel_thread {
                continue;
            }
            let Ok(mask) = get_affinity(tid) else {
                guard.outcome.refused += 1;
                continue;
            };
            if !mask.contains(&cpu) {
                continue;
            }
            let reduced: CpuSet = mask.iter().copied().filter(|&c| c != cpu).collect();
            if reduced.is_empty() {
                guard.outcome.pinned_there += 1;
                continue;
            }
            match set_affinity(tid, &reduced) {
                Ok(()) => {
                    guard.moved.push(MovedTask {
                        tid,
                        tgid,
                        original: mask,
                        set_to: reduced,
                    });
                    guard.outcome.moved += 1;
                }
                Err(_) => guard.outcome.refused += 1,
            }
        }
        guard
    }

    /// Restores every task we moved, and tasks born meanwhile of moved
    /// processes. Returns (restored, left because their owner changed them).
    fn restore(&mut self) -> (usize, usize) {
        let mut restored = 0;
        let mut changed_by_owner = 0;
        // tgid → (original, set_to) of the thread group leader, or any member.
        let mut by_process: HashMap<libc::pid_t, (CpuSet, CpuSet)> = HashMap::new();
        let mut known: std::collections::HashSet<libc::pid_t> = Default::default();
        for t in &self.moved {
            known.insert(t.tid);
            if t.tid == t.tgid || !by_process.contains_key(&t.tgid) {
                by_process.insert(t.tgid, (t.original.clone(), t.set_to.clone()));
            }
        }
        for t in self.moved.drain(..) {
            match get_affinity(t.tid) {
                Ok(now) if now == t.set_to => {
                    if set_affinity(t.tid, &t.original).is_ok() {
                        restored += 1;
                    }
                }
                Ok(_) => changed_by_owner += 1,
                Err(_) => {} // exited meanwhile
            }
        }
        // Tasks created during the measurement: a new thread of a moved
        // process, or a child of one, inherited the reduced mask. Repeat so
        // grandchildren find their parent's original.
        let me = std::process::id() as libc::pid_t;
        for _ in 0..3 {
            let mut found = false;
            for (tgid, tid) in all_tasks() {
                if tgid == me || known.contains(&tid) {
                    continue;
                }
                let Some(stat) = task_stat(tgid, tid) else {
                    continue;
                };
                if stat.kernel_thread {
                    continue;
                }
                let origin = by_process
                    .get(&tgid)
                    .or_else(|| by_process.get(&stat.ppid))
                    .cloned();
                let Some((original, set_to)) = origin else {
                    continue;
                };
                known.insert(tid);
                if get_affinity(tid).ok().as_ref() == Some(&set_to)
                    && set_affinity(tid, &original).is_ok()
                {
                    restored += 1;
                    by_process.entry(tgid).or_insert((original, set_to));
                    found = true;
                }
            }
            if !found {
                break;
            }
        }
        (restored, changed_by_owner)
    }

    /// The measurement CPU.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for IsolateGuard {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// Busy share of `cpu` over `window`, from `/proc/stat` deltas (user + nice
/// + system + irq + softirq + steal over all but guest time).
pub fn cpu_busy_percent(cpu: usize, window: Duration) -> Option<f64> {
    let read = || -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let v = slokit_sys::canary::cpu_ticks(&stat, cpu)?;
        // user nice system idle iowait irq softirq steal; idle = idle + iowait
        Some((v.iter().sum(), v[3] + v[4]))
    };
    let (t0, i0) = read()?;
    std::thread::sleep(window);
    let (t1, i1) = read()?;
    let dt = t1.saturating_sub(t0);
    if dt == 0 {
        return Some(0.0);
    }
    let busy = dt.saturating_sub(i1.saturating_sub(i0));
    Some(100.0 * busy as f64 / dt as f64)
}

/// The environment check shown before profiling and stored in the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemReport {
    pub environment: Environment,
    /// The measurement CPU.
    pub cpu: usize,
    /// Busy share of that CPU over ~200 ms before the runs.
    pub cpu_busy_percent: Option<f64>,
    /// Whether the CPU is in `isolcpus=` / `nohz_full=`.
    pub cpu_isolated: bool,
    pub cpu_nohz_full: bool,
    /// What looks noisy (warnings, never errors).
    pub warnings: Vec<String>,
}

impl SystemReport {
    /// Probes the machine and the chosen CPU.
    pub fn probe(cpu: usize) -> Self {
        let environment = Environment::probe();
        let busy = cpu_busy_percent(cpu, Duration::from_millis(200));
        Self::assess(environment, cpu, busy)
    }

    /// Derives the warnings from the facts (pure; tested).
    pub fn assess(environment: Environment, cpu: usize, busy: Option<f64>) -> Self {
        let in_list = |l: &Option<String>| {
            l.as_deref()
                .map(parse_cpu_list_lenient)
                .is_some_and(|s| s.contains(&cpu))
        };
        let cpu_isolated = in_list(&environment.isolcpus);
        let cpu_nohz_full = in_list(&environment.nohz_full);
        let mut warnings = Vec::new();
        if let Some(b) = busy.filter(|b| *b > 10.0) {
            warnings.push(format!(
                "CPU {cpu} was {b:.0} % busy before the runs: other work shares it, expect noise (try --isolate or another --cpu)"
            ));
        }
        if !cpu_isolated {
            warnings.push(format!(
                "CPU {cpu} is not in isolcpus= (kernel command line); the kernel may still place tasks there"
            ));
        }
        if let Some(g) = environment
            .governor
            .as_deref()
            .filter(|g| *g != "performance")
        {
            warnings.push(format!(
                "CPU frequency governor is `{g}`, not `performance`"
            ));
        }
        if environment.turbo == Some(true) {
            warnings.push("turbo/boost is on: frequency depends on temperature and load".into());
        }
        if environment.rt_runtime_us == Some(-1) {
            warnings.push(
                "RT throttling is off (sched_rt_runtime_us = -1): a runaway SCHED_FIFO thread could hang this CPU".into(),
            );
        }
        if environment.logical_cpus < 2 {
            warnings
                .push("only one CPU: slokit's own threads share it with the measurement".into());
        }
        SystemReport {
            environment,
            cpu,
            cpu_busy_percent: busy,
            cpu_isolated,
            cpu_nohz_full,
            warnings,
        }
    }

    /// `name: value` lines, pyperf `system show` style.
    pub fn lines(&self) -> BTreeMap<&'static str, String> {
        let e = &self.environment;
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "n/a".into());
        let mut m = BTreeMap::new();
        m.insert("cpu model", opt(&e.cpu_model));
        m.insert("logical cpus", e.logical_cpus.to_string());
        m.insert("kernel", opt(&e.kernel));
        m.insert("governor", opt(&e.governor));
        m.insert("turbo", e.turbo.map_or("n/a".into(), |t| t.to_string()));
        m.insert(
            "aslr",
            e.aslr.map_or("n/a".into(), |a| match a {
                0 => "off (0)".into(),
                n => format!("on ({n})"),
            }),
        );
        m.insert(
            "rt throttling",
            match (e.rt_runtime_us, e.rt_period_us) {
                (Some(-1), _) => "off".into(),
                (Some(r), Some(p)) => format!("{r} µs of every {p} µs"),
                _ => "n/a".into(),
            },
        );
        m.insert("isolcpus", opt(&e.isolcpus));
        m.insert("nohz_full", opt(&e.nohz_full));
        m.insert(
            "measurement cpu",
            format!(
                "{} (busy {} before the runs{}{})",
                self.cpu,
                self.cpu_busy_percent
                    .map_or("n/a".into(), |b| format!("{b:.1} %")),
                if self.cpu_isolated { ", isolcpus" } else { "" },
                if self.cpu_nohz_full {
                    ", nohz_full"
                } else {
                    ""
                }
            ),
        );
        m.insert(
            "load average (1 min)",
            e.loadavg_1m.map_or("n/a".into(), |l| format!("{l:.2}")),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_guard_restores_sched_other() {
        std::thread::spawn(|| match FifoGuard::enter(10, true) {
            Ok(g) => {
                assert_eq!(current_policy(), libc::SCHED_FIFO);
                drop(g);
                assert_eq!(current_policy(), libc::SCHED_OTHER);
            }
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI must allow SCHED_FIFO: {e}"
                );
                eprintln!("skipping: SCHED_FIFO not permitted here ({e})");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn busy_share_is_a_percentage() {
        let b = cpu_busy_percent(0, Duration::from_millis(50)).unwrap();
        assert!((0.0..=100.0).contains(&b), "{b}");
    }

    #[test]
    fn assessment_warns_about_load_and_governor() {
        let env = Environment {
            governor: Some("powersave".into()),
            isolcpus: Some("1".into()),
            logical_cpus: 2,
            ..Environment::default()
        };
        let r = SystemReport::assess(env, 1, Some(55.0));
        assert!(r.cpu_isolated);
        assert!(
            r.warnings.iter().any(|w| w.contains("55 % busy")),
            "{:?}",
            r.warnings
        );
        assert!(r.warnings.iter().any(|w| w.contains("powersave")));
        assert!(!r.warnings.iter().any(|w| w.contains("isolcpus")));
    }
}
