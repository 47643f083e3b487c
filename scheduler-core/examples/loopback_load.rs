//! A small loopback HTTP load driver for the agent's measurements
//! (scripts/monitor-overhead.sh and the decision-latency run in
//! docs/measurements.md): keep-alive connections to a `slokit serve` host,
//! `POST /invoke/spin` with `{"ms": X}` drawn from a mix.
//!
//! - closed loop (default): each connection sends its next request when the
//!   previous reply arrived; reports throughput (the monitor-cost figure).
//! - open loop (`--rate R`): exponential gaps at R req/s overall, spread
//!   over the connections; a connection that is still busy sends late. It
//!   only drives load for the agent's decision latencies — use `slokit
//!   loadgen` for response-time figures.
//!
//! Usage: loopback_load ADDR [--conns N] [--secs S] [--rate R] [--mix MS:W,MS:W...]
//! Prints one JSON line: requests, errors, secs, rps, p50_us, p99_us.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

struct Opts {
    addr: String,
    conns: usize,
    secs: f64,
    rate: Option<f64>,
    mix: Vec<(f64, f64)>,
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        addr: args
            .next()
            .expect("usage: loopback_load ADDR [--conns N] [--secs S] [--rate R] [--mix MS:W,...]"),
        conns: 4,
        secs: 10.0,
        rate: None,
        mix: vec![(0.0, 1.0)],
    };
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--conns" => o.conns = v.parse().expect("--conns N"),
            "--secs" => o.secs = v.parse().expect("--secs S"),
            "--rate" => o.rate = Some(v.parse().expect("--rate R")),
            "--mix" => {
                o.mix = v
                    .split(',')
                    .map(|p| {
                        let (ms, w) = p.split_once(':').unwrap_or((p, "1"));
                        (ms.parse().expect("mix ms"), w.parse().expect("mix weight"))
                    })
                    .collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    o
}

/// xorshift64*: enough randomness for a load mix, no dependency.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pick(mix: &[(f64, f64)], rng: &mut Rng) -> f64 {
    let total: f64 = mix.iter().map(|m| m.1).sum();
    let mut x = rng.next_f64() * total;
    for &(ms, w) in mix {
        if x < w {
            return ms;
        }
        x -= w;
    }
    mix.last().map_or(0.0, |m| m.0)
}

/// Sends one request and reads the whole reply; true on a 200.
fn call(c: &mut TcpStream, ms: f64, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let body = format!("{{\"ms\":{ms}}}");
    let req = format!(
        "POST /invoke/spin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(head.starts_with("http/1.1 200"));
            }
        }
        let n = c.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() {
    let o = parse();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.secs);
    let per_conn_rate = o.rate.map(|r| r / o.conns as f64);
    let handles: Vec<_> = (0..o.conns)
        .map(|i| {
            let addr = o.addr.clone();
            let mix = o.mix.clone();
            std::thread::spawn(move || {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut c = TcpStream::connect(&addr).expect("connect to the host");
                c.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(4096);
                let mut next = Instant::now();
                while Instant::now() < end {
                    if let Some(r) = per_conn_rate {
                        let gap = -(1.0 - rng.next_f64()).ln() / r;
                        next += Duration::from_secs_f64(gap);
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        if Instant::now() >= end {
                            break;
                        }
                    }
                    let ms = pick(&mix, &mut rng);
                    let t = Instant::now();
                    match call(&mut c, ms, &mut buf) {
                        Ok(true) => ok += 1,
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            c = TcpStream::connect(&addr).expect("reconnect to the host");
                        }
                    }
                    h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                }
                (ok, errors, h)
            })
        })
        .collect();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut ok, mut errors) = (0, 0);
    for t in handles {
        let (o2, e, h2) = t.join().unwrap();
        ok += o2;
        errors += e;
        h.add(&h2).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"requests\":{ok},\"errors\":{errors},\"secs\":{secs:.3},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{}}}",
        ok as f64 / secs,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
}
