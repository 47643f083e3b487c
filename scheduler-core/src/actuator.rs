//! The actuator: puts threads in SCHED_FIFO and back with `sched_setattr(2)`
//! (SFS spawned `schedtool` per change). It remembers each touched thread's
//! original attributes and restores them on [`Actuator::restore_all`], in
//! `Drop` (normal exit, error, unwinding panic) and from a panic hook (for
//! `panic = "abort"` builds); a [`Guardian`] covers SIGKILL. A thread that
//! vanished (ESRCH, or its tid now names a thread of another process) is
//! skipped and counted.
//!
//! Only threads of the target processes reach it (the agent checks); it
//! restores a thread that was real-time before we touched it to plain
//! SCHED_OTHER, never back to real time.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use crate::error::SchedError;
use crate::guardian::Guardian;
use slokit_sys::sched::{self, SchedAttr};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The thread no longer exists (ESRCH): skipped.
    Vanished,
}

#[derive(Debug, Clone, Copy)]
struct Touched {
    tgid: u32,
    original: SchedAttr,
    /// The SCHED_FIFO priority it holds now (None: its original policy).
    fifo: Option<u8>,
}

/// Every thread any actuator of this process holds in SCHED_FIFO, for the
/// panic hook: tid → attributes to restore.
static IN_FIFO: Mutex<Option<HashMap<u32, SchedAttr>>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn registry_set(tid: u32, restore: Option<SchedAttr>) {
    let mut g = IN_FIFO.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    match restore {
        Some(a) => {
            map.insert(tid, a);
        }
        None => {
            map.remove(&tid);
        }
    }
}

/// Installs (once per process) a panic hook that restores every thread
/// still in SCHED_FIFO before the previous hook runs.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut g) = IN_FIFO.try_lock() {
                if let Some(map) = g.as_mut() {
                    for (tid, a) in map.drain() {
                        let _ = sched::set_attr(tid, &a);
                    }
                }
            }
            previous(info);
        }));
    });
}

/// Counters of the actuator, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActuatorStats {
    pub setattr_calls: u64,
    pub vanished_threads: u64,
}

/// Sets and restores scheduling policies of target threads.
#[derive(Debug)]
pub struct Actuator {
    touched: HashMap<u32, Touched>,
    guardian: Option<Guardian>,
    stats: ActuatorStats,
}

impl Actuator {
    /// An actuator; with a guardian, every thread is announced to it before
    /// it first enters SCHED_FIFO.
    pub fn new(guardian: Option<Guardian>) -> Self {
        install_panic_hook();
        Actuator {
            touched: HashMap::new(),
            guardian,
            stats: ActuatorStats::default(),
        }
    }

    pub fn stats(&self) -> ActuatorStats {
        self.stats
    }

    /// Threads currently held in SCHED_FIFO.
    pub fn fifo_threads(&self) -> usize {
        self.touched.values().filter(|t| t.fifo.is_some()).count()
    }

    /// Whether `tid` is still a thread of `tgid`. A thread that exited may
    /// leave its tid to a thread of another process (pid_max is often
    /// 32768): that one is never touched, and the old one counts as
    /// vanished.
    fn still_in_process(&mut self, tgid: u32, tid: u32) -> bool {
        if sched::thread_in_process(tgid, tid) {
            return true;
        }
        if self.touched.remove(&tid).is_some() {
            registry_set(tid, None);
        }
        self.stats.vanished_threads += 1;
        false
    }

    /// Puts thread `tid` of process `tgid` in SCHED_FIFO at `priority` (or
    /// moves it there from another SCHED_FIFO priority).
    pub fn set_fifo(&mut self, tgid: u32, tid: u32, priority: u8) -> Result<Applied, SchedError> {
        if !self.still_in_process(tgid, tid) {
            return Ok(Applied::Vanished);
        }
        let t = match self.touched.get(&tid) {
            Some(t) if t.tgid == tgid => *t,
            _ => {
                let original = match sched::get_attr(tid) {
                    Ok(a) if a.is_realtime() => SchedAttr::other(0),
                    Ok(a) => a,
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                        self.stats.vanished_threads += 1;
                        return Ok(Applied::Vanished);
                    }
                    Err(e) => return Err(SchedError::sys(format!("sched_getattr({tid})"), e)),
                };
                let t = Touched {
                    tgid,
                    original,
                    fifo: None,
                };
                self.touched.insert(tid, t);
                t
            }
        };
        if t.fifo == Some(priority) {
            return Ok(Applied::Done);
        }
        let first_entry = t.fifo.is_none();
        if first_entry {
            if let Some(g) = &mut self.guardian {
                g.announce(tgid, tid, &t.original)?;
            }
            registry_set(tid, Some(t.original));
        }
        self.stats.setattr_calls += 1;
        match sched::set_attr(tid, &SchedAttr::fifo(priority)) {
            Ok(()) => {
                self.touched.get_mut(&tid).expect("just inserted").fifo = Some(priority);
                Ok(Applied::Done)
            }
            Err(e) if !first_entry && e.raw_os_error() != Some(libc::ESRCH) => {
                // Still in SCHED_FIFO at the old priority: restore it.
                let restored = self.set_normal(tid);
                Err(SchedError::sys(
                    format!(
                        "sched_setattr(SCHED_FIFO {priority}) on tid {tid} (restored: {restored:?})"
                    ),
                    e,
                ))
            }
            Err(e) => {
                registry_set(tid, None);
                self.touched.remove(&tid);
                match e.raw_os_error() {
                    Some(libc::ESRCH) => {
                        self.stats.vanished_threads += 1;
                        Ok(Applied::Vanished)
                    }
                    Some(libc::EPERM) => Err(SchedError::Permission {
                        tid,
                        policy: "SCHED_FIFO",
                        source: e,
                    }),
                    _ => Err(SchedError::sys(
                        format!("sched_setattr(SCHED_FIFO) on tid {tid}"),
                        e,
                    )),
                }
            }
        }
    }

    /// Puts thread `tid` back to its original (non-real-time) policy.
    pub fn set_normal(&mut self, tid: u32) -> Result<Applied, SchedError> {
        let Some(t) = self.touched.get(&tid).copied() else {
            return Ok(Applied::Done);
        };
        if t.fifo.is_none() {
            return Ok(Applied::Done);
        }
        if !self.still_in_process(t.tgid, tid) {
            return Ok(Applied::Vanished);
        }
        self.touched.get_mut(&tid).expect("checked above").fifo = None;
        let original = t.original;
        registry_set(tid, None);
        self.stats.setattr_calls += 1;
        match sched::set_attr(tid, &original) {
            Ok(()) => Ok(Applied::Done),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                self.touched.remove(&tid);
                self.stats.vanished_threads += 1;
                Ok(Applied::Vanished)
            }
            Err(e) => Err(SchedError::sys(
                format!("cannot restore SCHED_OTHER on tid {tid}"),
                e,
            )),
        }
    }

    /// Restores every thread still in SCHED_FIFO; returns how many were
    /// restored. Errors are reported on stderr and do not stop the pass.
    pub fn restore_all(&mut self) -> usize {
        let tids: Vec<u32> = self
            .touched
            .iter()
            .filter(|(_, t)| t.fifo.is_some())
            .map(|(tid, _)| *tid)
            .collect();
        let mut n = 0;
        for tid in tids {
            match self.set_normal(tid) {
                Ok(Applied::Done) => n += 1,
                Ok(Applied::Vanished) => {}
                Err(e) => eprintln!("slokit sched: {e}"),
            }
        }
        n
    }

    /// Restores everything and lets the guardian go.
    pub fn shutdown(&mut self) {
        self.restore_all();
        if let Some(mut g) = self.guardian.take() {
            g.finish();
        }
    }
}

impl Drop for Actuator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slokit_sys::sched::{get_attr, gettid, SCHED_FIFO, SCHED_OTHER};
    use std::sync::mpsc;

    /// A parked thread named `fn-worker-x` (comm) in this process.
    struct Parked {
        tid: u32,
        stop: mpsc::Sender<()>,
        handle: Option<std::thread::JoinHandle<()>>,
    }

    fn parked(name: &str) -> Parked {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                tid_tx.send(gettid()).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        Parked {
            tid: tid_rx.recv().unwrap(),
            stop,
            handle: Some(handle),
        }
    }

    impl Drop for Parked {
        fn drop(&mut self) {
            let _ = self.stop.send(());
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    /// Policy of a thread from /proc/<pid>/task/<tid>/stat field 41.
    fn stat_policy(tid: u32) -> u32 {
        use slokit_sys::procfs::{field, read_task, Stat};
        let text = read_task(std::process::id(), tid).unwrap();
        Stat::parse(&text).unwrap().get(field::POLICY).unwrap()
    }

    fn skip_unless_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run as root: the actuator test needs CAP_SYS_NICE"
            );
            eprintln!("skipping: not root (SCHED_FIFO needs CAP_SYS_NICE)");
            return true;
        }
        false
    }

    #[test]
    fn sets_fifo_on_real_threads_and_restores() {
        if skip_unless_root() {
            return;
        }
        let workers = [parked("fn-worker-x"), parked("fn-worker-y")];
        let pid = std::process::id();
        let mut act = Actuator::new(None);
        for w in &workers {
            assert_eq!(act.set_fifo(pid, w.tid, 7).unwrap(), Applied::Done);
            let a = get_attr(w.tid).unwrap();
            assert_eq!((a.sched_policy, a.sched_priority), (SCHED_FIFO, 7));
            assert_ne!(a.sched_flags & sched::SCHED_FLAG_RESET_ON_FORK, 0);
            assert_eq!(stat_policy(w.tid), SCHED_FIFO);
        }
        assert_eq!(act.fifo_threads(), 2);
        // a move between priorities (las's levels) is one call
        let calls = act.stats().setattr_calls;
        assert_eq!(act.set_fifo(pid, workers[1].tid, 5).unwrap(), Applied::Done);
        assert_eq!(act.set_fifo(pid, workers[1].tid, 5).unwrap(), Applied::Done);
        assert_eq!(act.stats().setattr_calls, calls + 1);
        assert_eq!(get_attr(workers[1].tid).unwrap().sched_priority, 5);
        assert_eq!(act.set_normal(workers[0].tid).unwrap(), Applied::Done);
        assert_eq!(stat_policy(workers[0].tid), SCHED_OTHER);
        drop(act); // restores the other
        for w in &workers {
            assert_eq!(get_attr(w.tid).unwrap().sched_policy, SCHED_OTHER);
            assert_eq!(stat_policy(w.tid), SCHED_OTHER);
        }
    }

    #[test]
    fn vanished_thread_is_skipped_and_counted() {
        if skip_unless_root() {
            return;
        }
        let w = parked("fn-worker-v");
        let tid = w.tid;
        drop(w);
        // wait until the kernel reaps it
        for _ in 0..100 {
            if !sched::thread_in_process(std::process::id(), tid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut act = Actuator::new(None);
        assert_eq!(
            act.set_fifo(std::process::id(), tid, 5).unwrap(),
            Applied::Vanished
        );
        assert_eq!(act.stats().vanished_threads, 1);
    }

    #[test]
    fn a_tid_of_another_process_is_never_touched() {
        if skip_unless_root() {
            return;
        }
        let w = parked("fn-worker-r");
        struct Restore(u32);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = sched::set_attr(self.0, &SchedAttr::other(0));
            }
        }
        let _restore = Restore(w.tid);
        let pid = std::process::id();
        let mut act = Actuator::new(None);
        // As if the tid had been recycled into process 1.
        assert_eq!(act.set_fifo(1, w.tid, 5).unwrap(), Applied::Vanished);
        assert_eq!(stat_policy(w.tid), SCHED_OTHER);
        // Held in SCHED_FIFO, then its tid belongs to another process:
        // restoring leaves that process's thread alone.
        assert_eq!(act.set_fifo(pid, w.tid, 5).unwrap(), Applied::Done);
        act.touched.get_mut(&w.tid).unwrap().tgid = 1;
        assert_eq!(act.set_normal(w.tid).unwrap(), Applied::Vanished);
        assert_eq!(act.fifo_threads(), 0);
        assert_eq!(
            stat_policy(w.tid),
            SCHED_FIFO,
            "not ours any more: untouched"
        );
        assert_eq!(act.stats().vanished_threads, 2);
    }

    #[test]
    fn guardian_restores_after_the_agent_vanishes() {
        if skip_unless_root() {
            return;
        }
        let w = parked("fn-worker-g");
        let pid = std::process::id();
        let mut act = Actuator::new(Some(Guardian::spawn().unwrap()));
        act.set_fifo(pid, w.tid, 6).unwrap();
        assert_eq!(stat_policy(w.tid), SCHED_FIFO);
        // Simulate the agent dying without restoring: forget our own
        // bookkeeping and close the guardian's pipe only.
        act.touched.clear();
        registry_set(w.tid, None);
        let mut g = act.guardian.take().unwrap();
        g.finish(); // closes the pipe, waits for the guardian's pass
        assert_eq!(stat_policy(w.tid), SCHED_OTHER, "guardian reset it");
        let _ = gettid();
    }
}
