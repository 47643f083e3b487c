//! Cgroups that hold the process trees `compare` starts, so that a whole
//! tree can be listed and killed at once — whatever the runtime forks
//! (gunicorn's workers, a watchdog's children), and however `compare`
//! itself ends.
//!
//! One cgroup v2 directory per comparison, `slokit-compare-<pid>` under the
//! v2 mount, with one child per started host. No controller is enabled in
//! it, so the hosts share one fair-class group as they did in `compare`'s
//! own cgroup, and their threads compete with each other as before. The
//! kernel's `cgroup.kill` (Linux ≥ 5.14) ends every process of a cgroup and
//! its descendants in one write.
//!
//! SIGKILL of `compare` runs no destructor, so a watchdog outlives it: a
//! tiny `sh` process, outside the cgroup and in a process group of its own
//! (Ctrl-C does not reach it), blocked reading a pipe only `compare` holds.
//! When `compare` exits, however it exits, the kernel closes the pipe and
//! the watchdog writes `cgroup.kill`, waits until the cgroup is empty and
//! removes the directories. On a normal exit `compare` has already done so,
//! and the watchdog finds nothing left to do.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// What the watchdog runs once `compare` is gone: kill the tree, wait for
/// it to empty, remove the directories. `$1` is the comparison's cgroup.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT TERM HUP
cat >/dev/null
cg="$1"
[ -d "$cg" ] || exit 0
echo 1 > "$cg/cgroup.kill" 2>/dev/null
i=0
while [ "$i" -lt 100 ] && ! grep -q '^populated 0' "$cg/cgroup.events" 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
done
for d in "$cg"/*/; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null
done
rmdir "$cg" 2>/dev/null
exit 0
"#;

/// The comparison's cgroup and its watchdog; dropping it kills whatever is
/// left in it and removes it.
#[derive(Debug)]
pub struct CgroupTree {
    dir: PathBuf,
    next: AtomicUsize,
    watchdog: Option<(Child, ChildStdin)>,
}

impl CgroupTree {
    /// Creates `slokit-compare-<pid>` under the cgroup v2 mount and starts
    /// its watchdog. Fails where there is no writable cgroup v2 hierarchy
    /// or no `cgroup.kill` (the caller falls back to process groups).
    pub fn create() -> anyhow::Result<CgroupTree> {
        let root = slokit_sched::targets::cgroup2_root();
        let dir = root.join(format!("slokit-compare-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the cgroup {}", dir.display()))?;
        let mut tree = CgroupTree {
            dir,
            next: AtomicUsize::new(0),
            watchdog: None,
        };
        anyhow::ensure!(
            tree.dir.join("cgroup.kill").exists(),
            "{} has no cgroup.kill (Linux ≥ 5.14 needed)",
            tree.dir.display()
        );
        tree.watchdog = Some(spawn_watchdog(&tree.dir)?);
        Ok(tree)
    }

    /// The comparison's cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty child cgroup for one host (`<name>-<n>`).
    pub fn host(&self, name: &str) -> anyhow::Result<HostCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = self.dir.join(format!("{safe}-{n}"));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the cgroup {}", dir.display()))?;
        HostCgroup::at(dir)
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        kill_and_remove(&self.dir, true);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // Closing the pipe wakes the watchdog, which finds nothing left.
            drop(stdin);
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_watchdog(dir: &Path) -> anyhow::Result<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", WATCHDOG_SCRIPT, "slokit-watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setpgid(2) is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .context("cannot start the cgroup watchdog (sh)")?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Nothing is ever written; the write end only has to stay open. A
    // zero-length write checks the pipe is there.
    stdin.write_all(b"").ok();
    Ok((child, stdin))
}

/// One host's cgroup: the child joins it before it runs its program, so
/// every process it ever forks is in it too. Dropping it kills the members
/// left and removes the directory.
#[derive(Debug)]
pub struct HostCgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, ready for the child's `pre_exec` (no
    /// allocation between fork and exec).
    procs_path: CString,
}

impl HostCgroup {
    fn at(dir: PathBuf) -> anyhow::Result<HostCgroup> {
        let procs_path = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .context("cgroup path contains a NUL byte")?;
        Ok(HostCgroup { dir, procs_path })
    }

    /// The directory (what the agent's `--cgroup` takes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a child's `pre_exec` needs to join this cgroup.
    pub fn joiner(&self) -> CgroupJoin {
        CgroupJoin(self.procs_path.clone())
    }

    /// Pids of every process in it now.
    pub fn procs(&self) -> Vec<u32> {
        read_procs(&self.dir)
    }

    /// Whether no process is left in it.
    pub fn is_empty(&self) -> bool {
        self.procs().is_empty()
    }

    /// SIGKILLs every process in it (`cgroup.kill`).
    pub fn kill(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// Waits up to `timeout` for it to empty; returns whether it did.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.is_empty() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The `cgroup.procs` path of a host cgroup, owned by a `pre_exec` closure.
#[derive(Debug, Clone)]
pub struct CgroupJoin(CString);

impl CgroupJoin {
    /// Moves the calling process into the cgroup. Only open(2), write(2)
    /// and close(2), nothing allocated: safe between fork and exec.
    pub fn join(&self) -> std::io::Result<()> {
        // SAFETY: a valid NUL-terminated path; plain system calls on an fd
        // this function opens and closes. Writing "0" moves the writer.
        unsafe {
            let fd = libc::open(self.0.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if rc != 1 {
                return Err(err);
            }
        }
        Ok(())
    }
}

impl Drop for HostCgroup {
    fn drop(&mut self) {
        kill_and_remove(&self.dir, false);
    }
}

fn read_procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process under `dir` (descendants included), waits up to 2 s
/// for them to go, and removes `dir` (and, with `children`, its child
/// directories first).
fn kill_and_remove(dir: &Path, children: bool) {
    if !dir.exists() {
        return;
    }
    let populated = || {
        std::fs::read_to_string(dir.join("cgroup.events"))
            .map(|e| e.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    };
    if populated() {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let end = Instant::now() + Duration::from_secs(2);
        while populated() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if children {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn a_host_cgroup_holds_the_whole_tree_and_kill_ends_it() {
        if !root() {
            eprintln!("skipping: cgroups need root");
            return;
        }
        let tree = match CgroupTree::create() {
            Ok(t) => t,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "{e:#}");
                eprintln!("skipping: {e:#}");
                return;
            }
        };
        let cg = tree.host("test host").unwrap();
        let name = cg.dir().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("test-host-"), "{name}");
        let mut cmd = Command::new("sh");
        // a child that forks a grandchild in the background
        cmd.args(["-c", "sleep 30 & exec sleep 30"]);
        let join = cg.joiner();
        // SAFETY: CgroupJoin::join is async-signal-safe and allocates nothing.
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || join.join()) };
        let mut child = cmd.spawn().unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while cg.procs().len() < 2 {
            assert!(Instant::now() < end, "{:?}", cg.procs());
            std::thread::sleep(Duration::from_millis(10));
        }
        let members = cg.procs();
        assert!(members.contains(&child.id()), "{members:?}");
        cg.kill();
        assert!(cg.wait_empty(Duration::from_secs(2)));
        child.wait().unwrap();
        for pid in members {
            assert!(
                !slokit_sched::targets::alive(pid),
                "{pid} outlived cgroup.kill"
            );
        }
        let dir = tree.dir().to_path_buf();
        drop(cg);
        drop(tree);
        assert!(!dir.exists(), "the comparison's cgroup is removed");
    }
}
