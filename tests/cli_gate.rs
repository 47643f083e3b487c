//! `slokit gate` output formats and error paths on the real binary.

use assert_cmd::Command;
use predicates::prelude::*;

fn slokit() -> Command {
    Command::cargo_bin("slokit").unwrap()
}

fn baseline(dir: &std::path::Path) {
    slokit()
        .args([
            "profile",
            "spin",
            "--param",
            "ms=1",
            "--max-time",
            "1",
            "--warmup",
            "2",
            "--out-dir",
        ])
        .arg(dir)
        .assert()
        .success();
}

#[test]
fn gate_writes_json_markdown_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    baseline(dir.path());
    // An experiment config beside the profiles is not mistaken for one.
    std::fs::write(
        dir.path().join("default-experiment.toml"),
        "[experiment]\nseed = 1\n",
    )
    .unwrap();
    for (format, needle) in [
        ("json", "\"verdict\""),
        ("markdown", "| function |"),
        ("junit", "<testsuite"),
    ] {
        let out = dir.path().join(format!("report.{format}"));
        let code = slokit()
            .args([
                "gate",
                "--max-time",
                "1",
                "--warmup",
                "2",
                "--format",
                format,
                "--out",
            ])
            .arg(&out)
            .arg("--baseline")
            .arg(dir.path())
            .assert()
            .get_output()
            .status
            .code();
        assert!(matches!(code, Some(0) | Some(1)), "{format}: exit {code:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains(needle) && text.contains("spin"),
            "{format}: {text}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["regression"], serde_json::json!(code == Some(1)));
        }
    }
}

#[test]
fn a_missing_baseline_exits_2_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    slokit()
        .args(["gate", "spin", "--baseline"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("slokit profile spin"));
    slokit()
        .args(["gate", "--baseline"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no profiles"));
}

#[test]
fn usage_errors_exit_2() {
    slokit()
        .args(["gate", "--threshold", "lots"])
        .assert()
        .code(2);
    slokit().args(["gate", "--format", "yaml"]).assert().code(2);
}

/// The path of the slokit binary these tests drive.
fn slokit_path() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("slokit")
}

fn paired_json(
    dir: &std::path::Path,
    against: &std::path::Path,
) -> (Option<i32>, serde_json::Value) {
    let out = dir.join("paired.json");
    let code = slokit()
        .args([
            "gate",
            "spin",
            "--max-time",
            "1.5",
            "--warmup",
            "2",
            "--batch-ms",
            "10",
            "--no-confirm",
            "--format",
            "json",
            "--out",
        ])
        .arg(&out)
        .arg("--baseline")
        .arg(dir)
        .arg("--against")
        .arg(against)
        .assert()
        .get_output()
        .status
        .code();
    let text = std::fs::read_to_string(&out).unwrap();
    (code, serde_json::from_str(&text).unwrap())
}

#[test]
fn gate_against_its_own_binary_runs_paired_workers() {
    let dir = tempfile::tempdir().unwrap();
    baseline(dir.path());
    let (code, v) = paired_json(dir.path(), &slokit_path());
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}: {v}");
    assert_eq!(v["mode"], "paired", "{v}");
    assert_eq!(v["against"], slokit_path().display().to_string(), "{v}");
    let r = &v["results"][0];
    assert_eq!(r["function"], "spin");
    assert_eq!(r["paired"]["runner"], "worker", "{v}");
    assert!(r["paired"]["pairs"].as_u64().unwrap() >= 2, "{v}");
    // Same binary, same parameters: spin burns CPU time, so the two sides agree.
    assert!(r["change"].as_f64().unwrap().abs() < 0.2, "{v}");
}

#[test]
fn gate_against_an_older_slokit_falls_back_to_invoke_per_run() {
    let dir = tempfile::tempdir().unwrap();
    baseline(dir.path());
    // An older slokit: the same CLI but without the `gate-worker`
    // subcommand, answering it as clap does.
    let old = dir.path().join("old-slokit");
    std::fs::write(
        &old,
        format!(
            "#!/bin/sh\nif [ \"$1\" = gate-worker ]; then\n  echo \"error: unrecognized subcommand 'gate-worker'\" >&2\n  exit 2\nfi\nexec '{}' \"$@\"\n",
            slokit_path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, v) = paired_json(dir.path(), &old);
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}: {v}");
    let r = &v["results"][0];
    assert_eq!(r["paired"]["runner"], "invoke", "{v}");
    assert!(r["notes"].to_string().contains("no `gate-worker`"), "{v}");
}

#[test]
fn gate_against_a_missing_binary_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    slokit()
        .args([
            "gate",
            "spin",
            "--against",
            "/nonexistent/slokit",
            "--baseline",
        ])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/slokit"));
}

#[test]
fn a_corrupt_baseline_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    baseline(dir.path());
    let path = dir.path().join("spin.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let line_of = |needle: &str| good.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    // A TOML syntax error, with every profile gated (the directory listing
    // used to skip such a file and pass) and with the function named.
    std::fs::write(&path, good.replacen("runs = ", "runs = = ", 1)).unwrap();
    let want = format!("line {}", line_of("runs = "));
    for named in [false, true] {
        let mut cmd = slokit();
        cmd.arg("gate");
        if named {
            cmd.arg("spin");
        }
        cmd.arg("--baseline")
            .arg(dir.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains("spin.toml"))
            .stderr(predicate::str::contains(want.clone()));
    }
    // A field of the wrong type.
    std::fs::write(&path, good.replacen("p99_us = ", "p99_us = \"fast\" #", 1)).unwrap();
    slokit()
        .args(["gate", "--baseline"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("spin.toml"))
        .stderr(predicate::str::contains(format!(
            "line {}",
            line_of("p99_us = ")
        )))
        .stderr(predicate::str::contains("summary.p99_us"));
}

#[test]
fn gate_against_an_old_command_runs_both_commands_paired() {
    let dir = tempfile::tempdir().unwrap();
    slokit()
        .args([
            "profile",
            "--command",
            "true",
            "--name",
            "t",
            "--max-time",
            "1",
            "--warmup",
            "2",
            "--out-dir",
        ])
        .arg(dir.path())
        .assert()
        .success();
    let out = dir.path().join("t.json");
    let code = slokit()
        .args([
            "gate",
            "t",
            "--against",
            "sh -c true",
            "--max-time",
            "1",
            "--warmup",
            "2",
        ])
        .args(["--no-confirm", "--format", "json", "--out"])
        .arg(&out)
        .arg("--baseline")
        .arg(dir.path())
        .assert()
        .get_output()
        .status
        .code();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}: {v}");
    assert_eq!(v["mode"], "paired", "{v}");
    let p = &v["results"][0]["paired"];
    assert_eq!(p["runner"], "command", "{v}");
    assert_eq!(
        (p["old"].as_str(), p["new"].as_str()),
        (Some("sh -c true"), Some("true")),
        "{v}"
    );
}
