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
