//! The CPU check of `compare`, `profile`, `gate` and `sched` on the real
//! binary: with a CPU held by a `SCHED_FIFO` 99 thread of this test (a real
//! real-time hog, not a fake wedge) each command refuses with exit 2 naming
//! the CPU and what was seen, `--force` goes on with a warning, and on a
//! healthy CPU `--force` is accepted and nothing is refused. How a wedged
//! CPU itself is detected is unit-tested in `slokit_sys::canary`.

use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use slokit_sys::sched::{gettid, set_attr, SchedAttr};

fn slokit() -> Command {
    Command::cargo_bin("slokit").unwrap()
}

/// Tests that hold a CPU take turns.
static HOLDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The CPU to hold (the last one) and this test's turn; `None` (skip) on a
/// single CPU or without SCHED_FIFO permission.
fn held_cpu() -> Option<(usize, std::sync::MutexGuard<'static, ()>)> {
    let cpus = slokit_sys::cpu::online_cpus();
    if cpus.len() < 2 {
        eprintln!("skipping: needs two CPUs");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run these tests as root"
        );
        eprintln!("skipping: not root (SCHED_FIFO needs CAP_SYS_NICE)");
        return None;
    }
    let turn = HOLDING.lock().unwrap_or_else(|e| e.into_inner());
    Some((*cpus.last().unwrap(), turn))
}

/// A thread of this test in SCHED_FIFO 99 spinning on one CPU until
/// dropped, for at most `MAX_HOLD`; it is back in SCHED_OTHER before it
/// ends, and RT throttling (950 of every 1000 ms) bounds it as well.
struct Hog {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

const MAX_HOLD: Duration = Duration::from_secs(5);

impl Hog {
    fn hold(cpu: usize) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("cpu-hog".into())
            .spawn(move || {
                slokit_sys::cpu::pin_current_thread(&[cpu]).unwrap();
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
                let end = Instant::now() + MAX_HOLD;
                while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        ready_rx.recv().unwrap();
        Hog {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a refused command must say about `cpu`.
fn refusal(cpu: usize) -> impl Predicate<str> {
    predicate::str::contains("CPU check failed")
        .and(predicate::str::contains(format!(
            "CPU {cpu}: a SCHED_FIFO canary (priority 1) did not run within 20 ms (3 tries)"
        )))
        .and(predicate::str::contains("cpu-hog, FIFO 99"))
        .and(predicate::str::contains("--force"))
}

#[test]
fn profile_and_gate_refuse_a_held_measurement_cpu() {
    let Some((cpu, _turn)) = held_cpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cpu_arg = cpu.to_string();
    let _hog = Hog::hold(cpu);
    slokit()
        .args(["profile", "spin", "-p", "ms=1", "--max-time", "1", "--cpu"])
        .arg(&cpu_arg)
        .arg("--out-dir")
        .arg(dir.path())
        .timeout(Duration::from_secs(4))
        .assert()
        .code(2)
        .stderr(refusal(cpu));
    assert!(!dir.path().join("spin.toml").exists(), "nothing measured");
    slokit()
        .args(["gate", "spin", "--max-time", "1", "--cpu"])
        .arg(&cpu_arg)
        .arg("--baseline")
        .arg(dir.path())
        .timeout(Duration::from_secs(4))
        .assert()
        .code(2)
        .stderr(refusal(cpu));
}

#[test]
fn compare_refuses_before_it_starts_anything() {
    let Some((cpu, _turn)) = held_cpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _hog = Hog::hold(cpu);
    slokit()
        .args(["compare", "--quick", "--function-cpus"])
        .arg(cpu.to_string())
        .arg("--out")
        .arg(dir.path())
        .timeout(Duration::from_secs(4))
        .assert()
        .code(2)
        .stderr(refusal(cpu));
    assert!(
        !dir.path().join("comparison.json").exists(),
        "no run was made"
    );
}

/// A sleeping process allowed only on `cpu`, killed (by pid) when dropped.
struct Target(std::process::Child);

impl Target {
    fn on(cpu: usize) -> Target {
        let mut cmd = StdCommand::new("sleep");
        cmd.arg("30").stdout(Stdio::null());
        // SAFETY: set_affinity allocates nothing and only makes a syscall.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                slokit_sys::cpu::set_affinity(0, &[cpu])
            });
        }
        Target(cmd.spawn().unwrap())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sched_checks_the_targets_cpus_and_force_goes_on_with_a_warning() {
    let Some((cpu, _turn)) = held_cpu() else {
        return;
    };
    let target = Target::on(cpu);
    let pid = target.0.id().to_string();
    let agent = |force: bool| {
        let mut c = slokit();
        c.args([
            "sched",
            "--policy",
            "cfs",
            "--pid",
            &pid,
            "--duration",
            "0.3",
        ])
        .args(["--agent-cpus", "0", "--summary-every", "0"])
        .timeout(Duration::from_secs(4));
        if force {
            c.arg("--force");
        }
        c
    };
    let _hog = Hog::hold(cpu);
    agent(false).assert().code(2).stderr(refusal(cpu));
    agent(true).assert().success().stderr(
        predicate::str::contains("warning: measured with --force although the CPU check failed")
            .and(predicate::str::contains(format!(
                "CPU {cpu}: a SCHED_FIFO canary"
            ))),
    );
}

#[test]
fn on_a_healthy_cpu_force_is_accepted_and_nothing_is_refused() {
    let Some((cpu, _turn)) = held_cpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    slokit()
        .args([
            "profile",
            "spin",
            "-p",
            "ms=1",
            "--max-time",
            "0.5",
            "--warmup",
            "1",
        ])
        .args(["--force", "--cpu"])
        .arg(cpu.to_string())
        .arg("--out-dir")
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("CPU check").not());
    let text = std::fs::read_to_string(dir.path().join("spin.toml")).unwrap();
    assert!(!text.contains("--force"), "a healthy CPU records nothing");
    let target = Target::on(cpu);
    slokit()
        .args(["sched", "--policy", "cfs", "--duration", "0.2", "--force"])
        .args(["--pid", &target.0.id().to_string(), "--summary-every", "0"])
        .assert()
        .success()
        .stderr(predicate::str::contains("CPU check").not());
}
