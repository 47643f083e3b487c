//! Round trip of the cheapest invocation (`spin` with `ms = 0`) through the
//! function host on one keep-alive loopback connection: client `send` →
//! poller → worker `recv`, invoke, `send` → client `recv`. Goal: p50 ≤ 50 µs.
//!
//! Criterion reports the mean per round trip; afterwards the bench times
//! 20,000 single round trips into an HdrHistogram and prints p50/p90/p99,
//! since criterion's estimates are of batch means, not per-request
//! percentiles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use slokit_functions::host::{Host, HostConfig};
use slokit_functions::{Catalogue, CatalogueConfig};

const REQUEST: &[u8] =
    b"POST /invoke/spin HTTP/1.1\r\nHost: bench\r\nContent-Length: 9\r\n\r\n{\"ms\": 0}";

/// Sends one request and reads exactly one reply (by Content-Length).
fn round_trip(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    stream.write_all(REQUEST).unwrap();
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "host closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let catalogue = Catalogue::builtin(&CatalogueConfig::default());
    let host = Host::start(
        HostConfig {
            workers: 1,
            ..HostConfig::default()
        },
        catalogue,
    )
    .unwrap();
    let mut stream = TcpStream::connect(host.local_addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);

    c.bench_function("host round trip spin ms=0 (keep-alive, loopback)", |b| {
        b.iter(|| round_trip(&mut stream, &mut buf))
    });

    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..1_000 {
        round_trip(&mut stream, &mut buf);
    }
    for _ in 0..20_000 {
        let t = Instant::now();
        round_trip(&mut stream, &mut buf);
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    println!(
        "per-request round trip over {} requests: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        hist.len(),
        hist.value_at_quantile(0.50) as f64 / 1e3,
        hist.value_at_quantile(0.90) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.max() as f64 / 1e3,
    );
    drop(stream);
    host.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
