//! Criterion benchmarks of the built-in functions at their defaults, and of
//! AES-CTR throughput on 16 KiB messages (compare with
//! `openssl speed -evp aes-128-ctr`, 16384-byte column; docs/functions.md).
//!
//! ```text
//! cargo bench -p slokit-functions --bench functions
//! ```
//!
//! Everything is measured in the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time: service time is the CPU time
//! an invocation needs (DESIGN.md), the development machines are shared and
//! noisy, and `openssl speed` also counts CPU time unless given `-elapsed`.

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use slokit_functions::aes_ctr::{ctr_apply, random_message, AesKey, DEFAULT_KEY_HEX};
use slokit_functions::auth;
use slokit_functions::catalogue::DEFAULT_AUTH_SECRET;
use slokit_functions::spin::thread_cpu_ns;
use slokit_functions::{Catalogue, CatalogueConfig};

/// Criterion measurement of the calling thread's CPU time, in nanoseconds
/// (formatted like wall time).
struct ThreadCpuTime {
    durations: WallTime,
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.durations.formatter()
    }
}

type Cpu = Criterion<ThreadCpuTime>;

fn defaults(c: &mut Cpu) {
    let catalogue = Catalogue::builtin(&CatalogueConfig::default());
    let mut g = c.benchmark_group("default");
    for name in ["auth", "aes", "video"] {
        let f = catalogue.require(name).unwrap().clone();
        if name == "video" {
            g.sample_size(20);
        }
        g.bench_function(name, |b| {
            b.iter(|| f.invoke(black_box(&Value::Null)).unwrap())
        });
    }
    g.finish();

    let f = catalogue.require("auth").unwrap().clone();
    let token = auth::mint_token(DEFAULT_AUTH_SECRET.as_bytes(), "bench-user", 4_000_000_000);
    let params = json!({ "token": token });
    c.bench_function("auth/jwt", |b| {
        b.iter(|| f.invoke(black_box(&params)).unwrap())
    });
}

/// `video` across its parameter range (short to very long invocations).
fn video_range(c: &mut Cpu) {
    let f = Catalogue::builtin(&CatalogueConfig::default())
        .require("video")
        .unwrap()
        .clone();
    let mut g = c.benchmark_group("video");
    g.sample_size(10);
    for params in [
        json!({"frames": 20}),
        json!({"frames": 60, "blur": "box"}),
        json!({"frames": 60, "scale": 0.25}),
        json!({"frames": 60, "scale": 0.5}),
        json!({"frames": 30, "scale": 2.0}),
        json!({"frames": 12, "scale": 4.0}),
    ] {
        let id = params.to_string().replace(['{', '}', '"'], "");
        g.bench_function(id, |b| b.iter(|| f.invoke(black_box(&params)).unwrap()));
    }
    g.finish();
}

fn aes_throughput(c: &mut Cpu) {
    const LEN: usize = 16 * 1024;
    let key = AesKey::from_slice(&hex::decode(DEFAULT_KEY_HEX).unwrap()).unwrap();
    let counter = [0u8; 16];
    let msg = random_message(LEN, 1);
    let mut out = vec![0u8; LEN];
    let mut g = c.benchmark_group("aes-128-ctr");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("16KiB", |b| {
        b.iter(|| ctr_apply(&key, &counter, black_box(&msg), black_box(&mut out)))
    });
    g.finish();
}

fn config() -> Cpu {
    Criterion::default().with_measurement(ThreadCpuTime {
        durations: WallTime,
    })
}

criterion_group! {
    name = benches;
    config = config();
    targets = defaults, aes_throughput, video_range
}
criterion_main!(benches);
