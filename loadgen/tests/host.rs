//! The load generator against slokit's own function host (`spin`): every
//! send is accounted, the host's execution-time header is read, slowdown and
//! SLO attainment come out, and the host's own request counter agrees.

use std::time::Duration;

use serde_json::json;
use slokit_functions::host::{Host, HostConfig};
use slokit_functions::{Arrival, Catalogue, CatalogueConfig, Schedule, ScheduledFunction};
use slokit_loadgen::{run_blocking, ClientConfig, NoReporter};

fn function(
    label: &str,
    function: &str,
    params: serde_json::Value,
    deadline_us: f64,
) -> ScheduledFunction {
    ScheduledFunction {
        label: label.into(),
        function: function.into(),
        params,
        service_us: Some(2000.0),
        deadline_us: Some(deadline_us),
    }
}

#[test]
fn spin_on_the_real_host_is_fully_accounted() {
    let host = Host::start(
        HostConfig {
            workers: 2,
            ..HostConfig::default()
        },
        Catalogue::builtin(&CatalogueConfig::default()),
    )
    .expect("the host starts on loopback");
    let url = format!("http://{}", host.local_addr());
    // 150 spins of 2 ms at 50/s (ρ ≈ 0.1 of one CPU), plus 30 calls of an
    // unknown function (404) and 30 with bad parameters (400).
    let functions = vec![
        function("spin", "spin", json!({"ms": 2}), 1_000_000.0),
        function("missing", "no-such-function", json!({}), 1_000_000.0),
        function("bad", "spin", json!({"ms": -1}), 1_000_000.0),
    ];
    let arrivals = (0..210u64)
        .map(|i| {
            let function = match i % 7 {
                5 => 1,
                6 => 2,
                _ => 0,
            };
            Arrival::new(i * 20_000_000 / 2, function)
        })
        .collect();
    let schedule = Schedule {
        source: "host test".into(),
        seed: 0,
        functions,
        arrivals,
        extras: Vec::new(),
    };
    let cfg = ClientConfig {
        target: Some(url),
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let r = run_blocking(&schedule, &cfg, &NoReporter).unwrap();
    let stats = host.shutdown();
    let by = |l: &str| r.functions.iter().find(|f| f.label == l).unwrap();
    let total: u64 = r
        .functions
        .iter()
        .map(|f| {
            assert_eq!(
                f.invocations,
                f.ok + f.http_errors + f.timeouts + f.connect_errors
            );
            f.invocations
        })
        .sum();
    assert_eq!(total, 210, "every send accounted");
    let spin = by("spin");
    assert_eq!(spin.ok, 150, "{spin:?}");
    let exec = spin.exec_us.expect("the host reports x-slokit-exec-us");
    assert!(exec.p50 >= 1900.0 && exec.p50 < 20_000.0, "{exec:?}");
    assert!(
        spin.response_us.p50 >= exec.p50,
        "response includes execution"
    );
    let slowdown = spin.slowdown.unwrap();
    assert!(slowdown.p50 >= 0.95, "{slowdown:?}");
    assert_eq!(spin.slo.unwrap().attainment, 1.0);
    assert_eq!(by("missing").http_errors, 30);
    assert_eq!(
        by("missing").slo.unwrap().attainment,
        0.0,
        "errors are misses"
    );
    assert_eq!(by("bad").http_errors, 30);
    assert_eq!(stats.requests, 210, "the host answered every request");
}
