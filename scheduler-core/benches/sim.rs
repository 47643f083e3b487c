//! Simulator speed: invocations simulated per second for each policy, on
//! 10^6 Poisson arrivals of the auth/video mix (auth exp 0.5 ms 90 %, video
//! lognormal 60 ms σ 0.5 10 %) at ρ = 0.8 on 64 CPUs, including drawing
//! service times and building the run record. Criterion reports the rate
//! as elements/s.
//!
//! `cargo bench -p slokit-sched --bench sim`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slokit_sched::sim::{simulate, Horizon, PoissonMix, ServiceModel, SimConfig, SimPolicy};

const N: usize = 1_000_000;
const CPUS: u32 = 64;

fn workload() -> (slokit_model::Schedule, ServiceModel) {
    let mut entries = PoissonMix::parse_weights("auth:0.9,video:0.1").expect("static mix");
    entries[0].deadline_us = Some(5_000.0);
    entries[1].deadline_us = Some(300_000.0);
    let model = ServiceModel::from_specs(["auth=exp:0.5ms", "video=lognormal:60ms:0.5"])
        .expect("static specs");
    let rate = PoissonMix::rate_for_load(&entries, &model, CPUS, 0.8).expect("valid load");
    let schedule = PoissonMix {
        entries,
        rate_per_s: rate,
        horizon: Horizon::Arrivals(N),
        seed: 1,
    }
    .schedule()
    .expect("valid mix");
    (schedule, model)
}

fn bench(c: &mut Criterion) {
    let (schedule, model) = workload();
    let mut g = c.benchmark_group("simulate_1M_64cpu");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for policy in SimPolicy::ALL {
        let cfg = SimConfig::new(CPUS, policy);
        g.bench_with_input(BenchmarkId::from_parameter(policy), &cfg, |b, cfg| {
            b.iter(|| simulate(&schedule, &model, cfg).expect("simulation runs"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
