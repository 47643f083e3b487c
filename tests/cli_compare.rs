//! End-to-end tests of `slokit compare`: real hosts, the real agent (eBPF
//! monitor, `sched_setattr`), the real load generator, a short schedule.
//! They need root (CAP_SYS_NICE and BPF); CI runs as root.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (outside CI) or fails (in CI) when not root.
fn require_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "compare tests need root in CI"
    );
    eprintln!("skipping: `slokit compare` needs root (SCHED_FIFO and BPF)");
    false
}

/// A small experiment whose profiles live in `dir` (so a re-profile on
/// another machine never touches the committed ones): `auth` beside `spin`
/// (10 ms), short enough for a test.
fn experiment_in(dir: &Path) -> PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    for f in ["auth", "spin", "profile"] {
        std::fs::copy(
            repo().join(format!("profiles/{f}.toml")),
            profiles.join(format!("{f}.toml")),
        )
        .unwrap();
    }
    let default = slokit::experiment::DEFAULT_EXPERIMENT;
    let head = &default[..default.find("[[scenarios]]").unwrap()];
    let text = format!(
        "{}\n[[scenarios]]\nname = \"colocated\"\nduration_s = 2.0\nkind = \"mix\"\nrho = 0.5\n\n\
         [[scenarios.functions]]\nlabel = \"auth\"\nfunction = \"auth\"\nweight = 0.8\n\n\
         [[scenarios.functions]]\nlabel = \"spin\"\nfunction = \"spin\"\nweight = 0.2\n",
        head.replace(
            "profiles_dir = \"profiles\"",
            &format!("profiles_dir = {:?}", profiles.display().to_string())
        )
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn print_default_experiment_is_the_committed_file() {
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .args(["compare", "--print-default-experiment"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(repo().join("profiles/default-experiment.toml")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn bad_flags_and_bad_experiments_exit_2_naming_the_problem() {
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .args(["compare", "--scenario", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario `nope`"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "seed = \"x\"\n").unwrap();
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .args(["compare", "--experiment"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("seed"), "{err}");
    // A bad trace window names the file, the scenario and the value
    // before anything runs.
    let default = slokit::experiment::DEFAULT_EXPERIMENT;
    std::fs::write(
        &bad,
        default.replace("minutes = \"540-541\"", "minutes = \"abc\""),
    )
    .unwrap();
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .args(["compare", "--experiment"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("scenario `azure`") && err.contains("\"abc\""),
        "{err}"
    );
    // An external host with a built-in name too is refused the same way.
    let host = "[[scenarios.functions]]\nlabel = \"aes\"\nfunction = \"aes\"\nweight = 0.3\n\
                [scenarios.functions.host]\ncommand = [\"python3\"]\nurl = \"http://127.0.0.1:{port}/\"\n";
    std::fs::write(
        &bad,
        default.replace(
            "[[scenarios.functions]]\nlabel = \"aes\"\nfunction = \"aes\"\nweight = 0.3\n",
            host,
        ),
    )
    .unwrap();
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .args(["compare", "--experiment"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("not both"),
        "{err}"
    );
}

#[test]
fn a_short_comparison_writes_every_report_and_gates_exit_99() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let experiment = experiment_in(dir.path());
    let out_dir = dir.path().join("out");
    let out = Command::cargo_bin("slokit")
        .unwrap()
        .current_dir(dir.path())
        .args(["compare", "--experiment"])
        .arg(&experiment)
        .args([
            "--scenario",
            "colocated",
            "--policies",
            "cfs,two-level,las",
            "--duration",
            "2",
        ])
        .args([
            "--repetitions",
            "1",
            "--cooldown",
            "0.2",
            "--format",
            "json",
            "--out",
        ])
        .arg(&out_dir)
        // Attainment can never exceed 1: this gate must fail.
        .args(["--gate", "auth.slo_attainment@cfs>1.5"])
        .timeout(std::time::Duration::from_secs(240))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "stderr:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    assert_eq!(report["schema"], "slokit.compare/1");
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "comparison.json",
        "run-colocated-cfs-0.json",
    ] {
        assert!(out_dir.join(f).exists(), "{f} missing");
    }
    for policy in ["two-level", "las"] {
        let path = out_dir.join(format!("run-colocated-{policy}-0.json"));
        let run = std::fs::read_to_string(path).unwrap();
        let run = slokit_functions::RunRecord::from_json(&run).unwrap();
        assert_eq!(run.policy.as_deref(), Some(policy));
        assert!(run.monitor.is_some(), "the agent's monitor is named");
        let total: u64 = run.functions.iter().map(|f| f.invocations).sum();
        assert!(total > 0);
    }
    // las took its thresholds from the profiles (compare passes each
    // function's p99 to the agent), and the simulated las ran beside it.
    let las_agent: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("agent-colocated-las-0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        las_agent["las"]["threshold_source"], "profiles",
        "{}",
        las_agent["las"]
    );
    let scenario = &report["scenarios"][0];
    assert!(
        scenario.to_string().contains("\"las\""),
        "las in the report: {scenario}"
    );
    // Nothing left in a real-time class: every host has exited.
    assert!(!stderr.contains("ignored SIGTERM"), "{stderr}");
    // The committed profiles (written by `slokit profile`, params as given)
    // are used as they are, not re-derived — unless this machine differs
    // from the one that made them, which is then the reason given.
    let here = slokit_functions::Environment::probe();
    for f in ["auth", "spin"] {
        let committed =
            slokit_profiler::Profile::load(repo().join(format!("profiles/{f}.toml"))).unwrap();
        let reprofiled = format!("profiling `{f}` now");
        if committed.environment.differences(&here).is_empty() {
            assert!(!stderr.contains(&reprofiled), "{stderr}");
        } else {
            assert!(
                stderr.contains(&format!("{reprofiled}: environment changed")),
                "{stderr}"
            );
            // kept as this machine's own; the committed baseline untouched
            let profiles = dir.path().join("profiles");
            assert!(profiles.join(format!("local/{f}.toml")).exists());
            assert_eq!(
                std::fs::read(profiles.join(format!("{f}.toml"))).unwrap(),
                std::fs::read(repo().join(format!("profiles/{f}.toml"))).unwrap(),
                "compare never overwrites a committed profile"
            );
        }
    }
}
