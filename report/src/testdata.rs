//! Test fixtures: realistic run records built the way the load generator
//! builds them — seeded synthetic samples fed through `FunctionRecorder` —
//! for two scenarios, four policies (cfs, fifo, two-level, las) × three
//! repetitions, simulated runs (srpt, ps, fifo, two-level, las) and
//! two-level timelines.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use slokit_model::record::{RunKind, TimelinePoint, RUN_SCHEMA};
use slokit_model::{Environment, FunctionRecorder, Outcome, RunRecord, Sample};

use crate::{parse_gate, Comparison, PolicyRun, Report, ReportOptions, ScenarioRuns};

pub(crate) fn environment() -> Environment {
    Environment {
        slokit_version: slokit_model::VERSION.to_string(),
        hostname: Some("testhost".into()),
        cpu_model: Some("Test CPU @ 2.0GHz".into()),
        logical_cpus: 2,
        kernel: Some("6.18.0-test".into()),
        governor: Some("performance".into()),
        turbo: Some(false),
        aslr: Some(2),
        rt_runtime_us: Some(950_000),
        rt_period_us: Some(1_000_000),
        isolcpus: None,
        nohz_full: None,
        loadavg_1m: Some(0.5),
        function_hosts: Vec::new(),
    }
}

/// (label, service µs, deadline µs)
type Fun = (&'static str, f64, f64);

const COLOCATED: [Fun; 3] = [
    ("auth", 900.0, 4_000.0),
    ("aes", 3_500.0, 12_000.0),
    ("video", 60_000.0, 180_000.0),
];
const AZURE: [Fun; 4] = [
    ("fn-3f2a", 2_000.0, 8_000.0),
    ("fn-91c0", 8_000.0, 30_000.0),
    ("fn-c77e", 40_000.0, 150_000.0),
    ("fn-0b5d", 150_000.0, 500_000.0),
];

/// Median slowdown by policy for short (< 10 ms) and long functions, and
/// the log-normal sigma (tail weight).
fn behaviour(policy: &str, short: bool) -> (f64, f64) {
    match (policy, short) {
        ("cfs", true) => (2.2, 0.7),
        ("cfs", false) => (1.5, 0.35),
        ("fifo", true) => (1.6, 1.3),
        ("fifo", false) => (1.2, 0.3),
        ("two-level", true) => (1.1, 0.25),
        ("two-level", false) => (1.7, 0.35),
        ("las", true) => (1.05, 0.2),
        ("las", false) => (1.6, 0.35),
        ("srpt", true) => (1.02, 0.05),
        ("srpt", false) => (1.3, 0.25),
        ("ps", _) => (1.8, 0.4),
        (_, _) => (1.5, 0.5),
    }
}

fn record(funs: &[Fun], policy: &str, kind: RunKind, seed: u64, n: usize) -> RunRecord {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let duration_s = 30.0;
    let functions = funs
        .iter()
        .map(|&(label, service, deadline)| {
            let function = if label.starts_with("fn-") {
                "spin"
            } else {
                label
            };
            let mut rec = FunctionRecorder::new(label, function, Some(deadline));
            let (median, sigma) = behaviour(policy, service < 10_000.0);
            let slowdown = LogNormal::new(median.ln(), sigma).expect("valid log-normal");
            for _ in 0..n {
                let sd: f64 = slowdown.sample(&mut rng).max(1.0);
                let exec = service * rng.random_range(0.95..1.05);
                let response = (service * sd) as u64;
                let outcome = match kind {
                    RunKind::Measured if rng.random_bool(0.002) => Outcome::Timeout,
                    RunKind::Measured if rng.random_bool(0.001) => Outcome::HttpError(503),
                    _ => Outcome::Ok,
                };
                rec.record(&Sample {
                    outcome,
                    response_us: response,
                    response_uncorrected_us: response - response / 20,
                    exec_us: Some(exec as u64),
                    service_us: Some(service),
                });
            }
            rec.stats()
        })
        .collect();
    RunRecord {
        schema: RUN_SCHEMA.into(),
        slokit_version: slokit_model::VERSION.into(),
        kind,
        policy: Some(policy.into()),
        monitor: (kind == RunKind::Measured).then(|| "ebpf".into()),
        source: "poisson rho=0.8".into(),
        seed: 7,
        environment: environment(),
        started_unix_ms: 1_795_000_000_000,
        duration_s,
        functions,
        send: None,
        notes: Vec::new(),
    }
}

fn timeline(seed: u64) -> Vec<TimelinePoint> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut slice = 20.0f64;
    let mut queue = 0i64;
    (0..300)
        .map(|i| {
            slice = (slice + rng.random_range(-1.5..1.5)).clamp(4.0, 40.0);
            queue = (queue + rng.random_range(-2..=2)).max(0);
            TimelinePoint {
                t_s: i as f64 * 0.1,
                slice_ms: slice,
                queue_len: queue as u32,
                fifo_holders: 1,
                demoted: rng.random_range(0..3),
            }
        })
        .collect()
}

fn scenario(name: &str, description: &str, funs: &[Fun], seed: u64) -> ScenarioRuns {
    let mut runs = Vec::new();
    for (pi, policy) in ["cfs", "fifo", "two-level", "las"].into_iter().enumerate() {
        for rep in 0..3u32 {
            let s = seed + 100 * pi as u64 + rep as u64;
            runs.push(PolicyRun {
                policy: policy.into(),
                repetition: rep,
                record: record(funs, policy, RunKind::Measured, s, 1500),
                timeline: if policy == "two-level" {
                    timeline(s)
                } else {
                    Vec::new()
                },
            });
        }
    }
    let bounds = ["srpt", "ps", "fifo", "two-level", "las"]
        .into_iter()
        .enumerate()
        .map(|(i, p)| record(funs, p, RunKind::Simulated, seed + 1000 + i as u64, 1500))
        .collect();
    ScenarioRuns {
        name: name.into(),
        description: description.into(),
        runs,
        bounds,
        service_check: Vec::new(),
    }
}

pub(crate) fn comparison() -> Comparison {
    Comparison {
        title: "fixture comparison".into(),
        environment: environment(),
        seed: 7,
        created_unix_ms: 1_795_000_000_000,
        settings: serde_json::json!({"rho": 0.8, "repetitions": 3, "policies": ["cfs", "fifo", "two-level", "las"]}),
        scenarios: vec![
            scenario("colocated", "auth + aes + video at ρ = 0.8", &COLOCATED, 1),
            scenario(
                "azure",
                "Azure Functions 2019 sample replayed through spin",
                &AZURE,
                2,
            ),
        ],
    }
}

/// The fixture report with one passing and one failing gate (built once).
pub(crate) fn report() -> Report {
    static REPORT: std::sync::OnceLock<Report> = std::sync::OnceLock::new();
    REPORT.get_or_init(build_report).clone()
}

fn build_report() -> Report {
    let gates = ["auth.slo_attainment>=0.9", "colocated/video.p99_ms@fifo<1"]
        .iter()
        .map(|g| parse_gate(g).unwrap())
        .collect();
    Report::build(
        &comparison(),
        &ReportOptions {
            gates,
            ..ReportOptions::default()
        },
    )
    .unwrap()
}

/// Explicit samples of one function: (label, deadline µs, samples as
/// (response µs, service µs, outcome)).
pub(crate) type ExactFunction<'a> = (&'a str, Option<f64>, Vec<(u64, f64, Outcome)>);

/// A measured or simulated record from explicit samples per function.
pub(crate) fn exact_record(
    policy: &str,
    kind: RunKind,
    duration_s: f64,
    funs: &[ExactFunction],
) -> RunRecord {
    let functions = funs
        .iter()
        .map(|(label, deadline, samples)| {
            let mut rec = FunctionRecorder::new(*label, "spin", *deadline);
            for &(response_us, service, outcome) in samples {
                rec.record(&Sample {
                    outcome,
                    response_us,
                    response_uncorrected_us: response_us,
                    exec_us: Some(service as u64),
                    service_us: Some(service),
                });
            }
            rec.stats()
        })
        .collect();
    RunRecord {
        duration_s,
        functions,
        ..record(&[], policy, kind, 0, 0)
    }
}

/// A comparison of one scenario from explicit runs.
pub(crate) fn single(runs: Vec<PolicyRun>, bounds: Vec<RunRecord>) -> Comparison {
    Comparison {
        scenarios: vec![ScenarioRuns {
            name: "s".into(),
            description: String::new(),
            runs,
            bounds,
            service_check: Vec::new(),
        }],
        ..comparison_shell()
    }
}

fn comparison_shell() -> Comparison {
    Comparison {
        title: "t".into(),
        environment: environment(),
        seed: 1,
        created_unix_ms: 0,
        settings: serde_json::Value::Null,
        scenarios: Vec::new(),
    }
}

/// A measured run of `policy`, repetition `rep`.
pub(crate) fn run(policy: &str, rep: u32, record: RunRecord) -> PolicyRun {
    PolicyRun {
        policy: policy.into(),
        repetition: rep,
        record,
        timeline: Vec::new(),
    }
}
