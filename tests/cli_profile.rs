//! `slokit profile` and `slokit gate` end to end on the real binary, with
//! `spin` (its service time is known) and small `--max-time`s so the suite
//! stays quick. These are accuracy and behaviour checks, not speed goals.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn slokit() -> Command {
    Command::cargo_bin("slokit").unwrap()
}

/// `slokit profile spin` with `ms` into `dir`.
fn profile_spin(dir: &Path, ms: &str) {
    slokit()
        .args(["profile", "spin", "--param"])
        .arg(format!("ms={ms}"))
        .args(["--max-time", "1", "--warmup", "2", "--out-dir"])
        .arg(dir)
        .assert()
        .success()
        .stdout(predicate::str::contains("spin"));
}

#[test]
fn profile_spin_writes_a_valid_profile() {
    let dir = tempfile::tempdir().unwrap();
    profile_spin(dir.path(), "2");
    let text = std::fs::read_to_string(dir.path().join("spin.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["version"].as_integer(), Some(1));
    assert_eq!(v["schema"].as_str(), Some("slokit.profile"));
    assert_eq!(v["function"].as_str(), Some("spin"));
    let p50 = v["summary"]["p50_us"].as_float().unwrap();
    // spin burns 2 ms of CPU time; its isolated wall time is at least that.
    assert!((1990.0..3000.0).contains(&p50), "p50 {p50} µs");
    let deadline = v["deadline"]["deadline_us"].as_float().unwrap();
    let p99 = v["summary"]["p99_us"].as_float().unwrap();
    assert!((deadline - 1.5 * p99).abs() < 1e-6 * deadline);
    assert_eq!(v["deadline"]["basis"].as_str(), Some("wall"));
    assert!(!v["histogram"]["data"].as_str().unwrap().is_empty());
    assert!(v["isolation"]["cpu"].as_integer().is_some());
    let policy = v["isolation"]["policy"].as_str().unwrap();
    if std::env::var("CI").as_deref() == Ok("true") {
        assert_eq!(policy, "SCHED_FIFO", "CI runs as root");
    }
    // Library readers accept what the CLI wrote.
    let p = slokit_profiler::Profile::load(dir.path().join("spin.toml")).unwrap();
    assert_eq!(p.histogram().len(), p.summary.runs);
}

#[test]
fn gate_against_the_same_build_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    profile_spin(dir.path(), "2");
    slokit()
        .args([
            "gate",
            "spin",
            "--max-time",
            "1",
            "--warmup",
            "2",
            "--baseline",
        ])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no regression"));
}

#[test]
fn gate_against_a_faster_baseline_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // Baseline: 1 ms of CPU per run; current: 2 ms — twice as slow.
    profile_spin(dir.path(), "1");
    slokit()
        .args([
            "gate",
            "--param",
            "ms=2",
            "--max-time",
            "1",
            "--warmup",
            "2",
            "--baseline",
        ])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("REGRESSION"));
}

#[test]
fn a_malformed_profile_exits_2_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    profile_spin(dir.path(), "1");
    let path = dir.path().join("spin.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken: String = text
        .lines()
        .map(|l| {
            if l.starts_with("p99_us") {
                "p99_us = \"fast\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, broken).unwrap();
    slokit()
        .args(["gate", "spin", "--max-time", "1", "--baseline"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("spin.toml").and(predicate::str::contains("summary.p99_us")),
        );
}

#[test]
fn a_newer_profile_version_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    profile_spin(dir.path(), "1");
    let path = dir.path().join("spin.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("version = 1", "version = 7");
    std::fs::write(&path, text).unwrap();
    slokit()
        .args(["gate", "spin", "--baseline"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`version` is 7"));
}

#[test]
fn profile_rejects_unknown_functions_and_bad_flags_with_exit_2() {
    slokit()
        .args(["profile", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));
    slokit()
        .args(["profile", "spin", "--precision", "fast"])
        .assert()
        .code(2);
    slokit()
        .args(["profile", "spin", "--priority", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--priority"));
    // Above 90 % busy the measured thread would meet RT throttling.
    slokit()
        .args(["profile", "spin", "--duty-cycle", "95%"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--duty-cycle"));
    slokit()
        .args(["profile", "spin", "--batch-ms", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--batch-ms"));
}

#[test]
fn a_command_is_profiled_one_execution_per_run() {
    let dir = tempfile::tempdir().unwrap();
    slokit()
        .args([
            "profile",
            "--command",
            "true",
            "--name",
            "true",
            "--max-time",
            "1",
            "--warmup",
            "1",
            "--out-dir",
        ])
        .arg(dir.path())
        .assert()
        .success();
    let p = slokit_profiler::Profile::load(dir.path().join("true.toml")).unwrap();
    assert!(matches!(p.target, slokit_profiler::Target::Command { .. }));
    assert!(p.summary.p50_us > 10.0, "{:?}", p.summary);
}
