//! The agent's per-event work: socket events through the [`Register`]
//! (request start on a receive, end on the send), the part of the agent's
//! CPU that grows with the request rate (docs/measurements.md, monitor
//! cost: why the maps use Fx hashing, not SipHash). 200 000
//! requests over 256 keep-alive connections of 16 worker threads, each a
//! receive, a continuation receive and two sends, as the eBPF monitor
//! delivers them. Criterion reports events/s.
//!
//! `cargo bench -p slokit-sched --bench register`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use slokit_sched::register::{Change, EventKind, Register, SocketEvent};

const REQUESTS: usize = 200_000;
const CONNECTIONS: u64 = 256;
const THREADS: u32 = 16;

fn events() -> Vec<SocketEvent> {
    let mut v = Vec::with_capacity(REQUESTS * 4);
    let mut ts = 1_000_000u64;
    for i in 0..REQUESTS {
        let sock = 0xffff_8880_0000_0000 + (i as u64 % CONNECTIONS) * 0x800;
        let tid = 1000 + (i as u32 % THREADS);
        for (kind, bytes) in [
            (EventKind::Recv, 180),
            (EventKind::Recv, 20),
            (EventKind::Send, 120),
            (EventKind::Send, 40),
        ] {
            ts += 250;
            v.push(SocketEvent {
                kind,
                tid,
                tgid: 42,
                sock,
                bytes,
                ts_ns: ts,
            });
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("register");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("on_event", |b| {
        let mut changes: Vec<Change> = Vec::with_capacity(1024);
        b.iter(|| {
            let mut reg = Register::new();
            let mut started = 0u64;
            for chunk in events.chunks(1024) {
                for e in chunk {
                    reg.on_event(e, &mut changes);
                }
                started += changes
                    .drain(..)
                    .filter(|c| matches!(c, Change::Started(_)))
                    .count() as u64;
            }
            assert_eq!(started, REQUESTS as u64);
            reg
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
