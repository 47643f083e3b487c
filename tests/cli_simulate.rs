//! `slokit simulate` end to end: the real binary, a built-in mix or a
//! schedule file, the table, the JSON run records and the timeline.

use assert_cmd::Command;
use predicates::prelude::*;
use slokit_functions::record::{RunKind, TimelinePoint};
use slokit_functions::{Arrival, RunRecord, Schedule, ScheduledFunction};

fn slokit() -> Command {
    Command::cargo_bin("slokit").expect("the slokit binary is built")
}

const MIX: [&str; 10] = [
    "simulate",
    "--mix",
    "auth:0.9,video:0.1",
    "--service",
    "auth=exp:0.5ms,video=lognormal:120ms:0.5",
    "--rho",
    "0.8",
    "--duration",
    "20s",
    "--deadline=auth=5ms",
];

#[test]
fn mix_prints_every_policy_and_function() {
    let out = slokit()
        .args(MIX)
        .args(["--cpus", "64", "--seed", "3"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "fifo",
        "ps",
        "two-level",
        "srpt",
        "auth",
        "video",
        "≤ 5.00 ms",
        "model of 64 CPUs",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn out_writes_simulated_run_records_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let path = dir.path().join(name);
        slokit()
            .args(MIX)
            .args(["--cpus", "4", "--policy", "fifo,srpt", "--out"])
            .arg(&path)
            .assert()
            .success();
        std::fs::read_to_string(path).unwrap()
    };
    let (a, b) = (run("a.json"), run("b.json"));
    assert_eq!(a, b, "same seed, same records");
    let values: Vec<serde_json::Value> = serde_json::from_str(&a).unwrap();
    assert_eq!(values.len(), 2);
    let records: Vec<RunRecord> = values
        .iter()
        .map(|v| RunRecord::from_json(&v.to_string()).unwrap())
        .collect();
    assert_eq!(records[0].policy.as_deref(), Some("fifo"));
    assert_eq!(records[1].policy.as_deref(), Some("srpt"));
    for r in &records {
        assert_eq!(r.kind, RunKind::Simulated);
        assert_eq!(r.functions.len(), 2);
        assert_eq!(r.functions[0].slo.unwrap().deadline_us, 5000.0);
        assert!(r.functions[1].slo.is_none());
    }
    let n = |r: &RunRecord| r.functions.iter().map(|f| f.invocations).sum::<u64>();
    assert_eq!(n(&records[0]), n(&records[1]), "same schedule under both");
    assert!(
        records[1].functions[0].response_us.mean <= records[0].functions[0].response_us.mean,
        "srpt serves short auth calls no later than fifo"
    );
}

#[test]
fn schedule_file_with_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut extras = Vec::new();
    let arrivals = (0..2000u64)
        .map(|i| {
            let service_us = (i % 10 == 0).then_some(5_000.0);
            Arrival::with_extra(i * 1_000_000, 0, &mut extras, None, service_us)
        })
        .collect();
    let schedule = Schedule {
        source: "test file".into(),
        seed: 5,
        functions: vec![ScheduledFunction {
            label: "spin".into(),
            function: "spin".into(),
            params: serde_json::json!({"ms": 2}),
            service_us: None,
            deadline_us: None,
        }],
        arrivals,
        extras,
    };
    let path = dir.path().join("schedule.json");
    std::fs::write(&path, serde_json::to_string(&schedule).unwrap()).unwrap();
    let timeline = dir.path().join("timeline.json");
    slokit()
        .args([
            "simulate",
            "--cpus",
            "2",
            "--service",
            "spin=exp:1ms",
            "--schedule",
        ])
        .arg(&path)
        .arg("--timeline")
        .arg(&timeline)
        .assert()
        .success()
        .stdout(predicate::str::contains("test file: 2000 arrivals"));
    let points: Vec<TimelinePoint> =
        serde_json::from_str(&std::fs::read_to_string(timeline).unwrap()).unwrap();
    assert!(
        points.len() >= 20,
        "2 s at one point per 100 ms: {}",
        points.len()
    );
    // One arrival per ms on 2 CPUs: S = 1 ms × 2 once the window fills.
    let last = points.last().unwrap();
    assert!((last.slice_ms - 2.0).abs() < 0.01, "{last:?}");
}

#[test]
fn missing_service_time_names_the_fix() {
    slokit()
        .args(["simulate", "--mix", "auth:1", "--rho", "0.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--service auth="));
}

#[test]
fn bad_inputs_are_rejected_with_their_name() {
    slokit()
        .args(MIX)
        .args(["--policy", "lottery"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("lottery"));
    slokit()
        .args([
            "simulate",
            "--mix",
            "auth:1",
            "--service",
            "auth=exp:5",
            "--rho",
            "0.5",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unit"));
    slokit()
        .args(MIX)
        .args(["--deadline", "nope=1ms"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`nope`"));
    slokit()
        .args(["simulate", "--mix", "auth:1", "--service", "auth=1ms"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--rho"));
}

#[test]
fn simulates_a_scenario_of_the_default_experiment_at_64_cpus() {
    let out = assert_cmd::Command::cargo_bin("slokit")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "simulate",
            "--experiment",
            "default",
            "--scenario",
            "azure",
            "--cpus",
            "64",
        ])
        .args(["--policy", "srpt,two-level"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("64 CPU"), "{all}");
    assert!(
        stdout.contains("azure-") && stdout.contains("two-level"),
        "{stdout}"
    );
}
