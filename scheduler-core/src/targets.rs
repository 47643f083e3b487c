//! Target processes: who the agent may touch. Only threads of processes
//! named on the command line (`--pid`, `--cgroup`) are ever scheduled; pid 1,
//! the agent itself and kernel threads are refused. Worker threads are found
//! by the host's naming contract, comm prefix `fn-worker-`, or by the prefixes
//! given for other runtimes (`--worker-prefix fn-worker-,gunicorn`); threads
//! seen receiving requests are workers whatever their name (the policies
//! learn those from the monitor).

use std::path::{Path, PathBuf};

use slokit_sys::procfs::{read_process, Stat};

use crate::error::SchedError;

/// Comm prefix of the function host's worker threads.
pub const WORKER_PREFIX: &str = "fn-worker-";

/// Checks that `pid` may be scheduled by the agent running as `self_pid`.
pub fn validate_pid(pid: u32, self_pid: u32) -> Result<(), SchedError> {
    let refuse = |reason: &str| SchedError::Refused {
        pid,
        reason: reason.into(),
    };
    if pid == 0 {
        return Err(refuse("pid 0 is not a process"));
    }
    if pid == 1 {
        return Err(refuse("pid 1 is init; the agent never touches it"));
    }
    if pid == self_pid {
        return Err(refuse("that is the agent itself"));
    }
    let stat = read_process(pid).map_err(|_| SchedError::NoSuchProcess(pid))?;
    let stat = Stat::parse(&stat).ok_or_else(|| refuse("unreadable /proc/<pid>/stat"))?;
    if stat.is_kernel_thread() {
        return Err(refuse("it is a kernel thread"));
    }
    if std::fs::read_link(format!("/proc/{pid}/exe")).is_err() {
        return Err(refuse(
            "it has no /proc/<pid>/exe (a kernel thread, a zombie, or not ours to read)",
        ));
    }
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified
/// systems, /sys/fs/cgroup/unified on hybrid ones (read from /proc/self/mounts).
pub fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|mounts| cgroup2_mount_in(&mounts))
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(target))
    })
}

/// The processes of cgroup `path` (its `cgroup.procs`; v2, or any v1
/// hierarchy given by absolute path); a relative path is taken under the
/// cgroup v2 mount ([`cgroup2_root`]).
pub fn cgroup_procs(path: &Path) -> Result<Vec<u32>, SchedError> {
    let dir: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cgroup2_root().join(path)
    };
    let file = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&file).map_err(|source| SchedError::Io {
        path: file.clone(),
        source,
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match read_process(pid) {
        Ok(s) => Stat::parse(&s).is_some_and(|s| s.state() != "Z"),
        Err(_) => false,
    }
}

/// Threads of `pid` whose comm starts with one of `prefixes`: a
/// comma-separated list (`fn-worker-` or `fn-worker-,gunicorn`); empty
/// entries are ignored, so an empty list names no thread.
pub fn threads_named(pid: u32, prefixes: &str) -> Vec<u32> {
    let prefixes: Vec<&str> = prefixes.split(',').filter(|p| !p.is_empty()).collect();
    if prefixes.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| prefixes.iter().any(|p| c.starts_with(p)))
        })
        .collect();
    tids.sort_unstable();
    tids
}

/// On-CPU ns of a thread from /proc/<pid>/task/<tid>/schedstat (first
/// field; updated by the kernel at ticks and switches, so a running thread's
/// figure lags by up to one tick).
pub fn schedstat_cpu_ns(pid: u32, tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_on_unified_and_hybrid_systems() {
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount_in("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn refuses_init_self_and_kernel_threads() {
        let me = std::process::id();
        let e = validate_pid(1, me).unwrap_err().to_string();
        assert!(e.contains("pid 1"), "{e}");
        assert!(validate_pid(me, me)
            .unwrap_err()
            .to_string()
            .contains("agent itself"));
        // kthreadd (pid 2) exists on every Linux with a visible kernel
        if std::path::Path::new("/proc/2/stat").exists() {
            let e = validate_pid(2, me).unwrap_err().to_string();
            assert!(e.contains("kernel thread"), "{e}");
        }
        assert!(matches!(
            validate_pid(u32::MAX - 1, me),
            Err(SchedError::NoSuchProcess(_))
        ));
    }

    #[test]
    fn accepts_a_child_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let r = validate_pid(child.id(), std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        r.unwrap();
    }

    #[test]
    fn finds_named_threads_of_this_process() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("fn-worker-t".into())
            .spawn(move || {
                // The new thread names itself before running this closure;
                // say so, or /proc may still show the old name.
                ready_tx.send(()).unwrap();
                let _ = rx.recv();
            })
            .unwrap();
        ready_rx.recv().unwrap();
        let me = std::process::id();
        let found = threads_named(me, "fn-worker-t");
        let in_a_list = threads_named(me, "gunicorn,fn-worker-t");
        let other_names = threads_named(me, "gunicorn,uvicorn");
        let none = threads_named(me, "");
        tx.send(()).unwrap();
        h.join().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(in_a_list, found, "any prefix of the list matches");
        assert!(other_names.is_empty() && none.is_empty());
    }
}
