//! A long series of `aes` invocations on one pinned SCHED_FIFO thread, with
//! reference workloads timed between the same batches — the data behind
//! docs/profiler.md, "Deadline reproducibility". Written by hand because it
//! is the project's own experiment: does the machine's speed, as a fixed
//! workload sees it, track the function's?
//!
//! ```sh
//! cargo run --release -p slokit-profiler --example speed_series -- 300 series.txt [CPU]
//! python3 scripts/speed-series.py series.txt
//! ```
//!
//! Each 50-ms batch of `aes` runs (the built-in at its defaults, and the
//! same cipher rounds on preallocated buffers) is preceded by three timings
//! of each reference: a multiply chain (latency-bound), SHA-256 of 64 KiB,
//! AES-CTR of 8 × 4 KiB, a sum over 256 KiB; and followed by an equal rest
//! (50 % duty, clear of RT throttling). Output: one line per timing,
//! `seconds kind ns`, plus `seconds steal ticks` per batch. The thread is
//! real-time only while it runs; it returns to SCHED_OTHER before exit.

use std::io::Write;
use std::time::{Duration, Instant};

use sha2::Digest;
use slokit_functions::aes_ctr::{ctr_apply, random_message, AesKey, AesParams};
use slokit_sys::sched::{gettid, set_attr, SchedAttr};

fn multiply_chain(n: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17) ^ i;
    }
    x
}

fn steal_ticks(cpu: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // user, nice, system, idle, iowait, irq, softirq, steal
    slokit_sys::canary::cpu_ticks(&stat, cpu).map_or(0, |t| t[7])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: speed_series SECONDS OUT [CPU]";
    let secs: u64 = args.next().ok_or(usage)?.parse()?;
    let out = args.next().ok_or(usage)?;
    let cpu: usize = match args.next() {
        Some(c) => c.parse()?,
        None => *slokit_sys::cpu::online_cpus().last().ok_or("no CPU")?,
    };
    slokit_sys::cpu::pin_current_thread(&[cpu])?;
    let tid = gettid();
    set_attr(tid, &SchedAttr::fifo(50))?;
    let result = series(secs, &out, cpu);
    set_attr(tid, &SchedAttr::other(0))?;
    result
}

fn series(secs: u64, out: &str, cpu: usize) -> Result<(), Box<dyn std::error::Error>> {
    let job = AesParams::default().validate()?;
    let key = AesKey::from_slice(&[3u8; 16]).ok_or("key")?;
    let counter = [0u8; 16];
    let sha_input = vec![7u8; 64 * 1024];
    let small = vec![9u8; 4096];
    let mut small_out = vec![0u8; 4096];
    let message = random_message(16 * 1024, 1);
    let (mut ciphertext, mut decrypted) = (vec![0u8; message.len()], vec![0u8; message.len()]);
    let words: Vec<u64> = (0..32 * 1024).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    let start = Instant::now();
    let mut sink = 0u64;
    let line = |f: &mut dyn Write, kind: &str, ns: u128| {
        writeln!(f, "{:.6} {kind} {ns}", start.elapsed().as_secs_f64())
    };
    while start.elapsed() < Duration::from_secs(secs) {
        let batch = Instant::now();
        line(&mut f, "steal", u128::from(steal_ticks(cpu)))?;
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..8 {
                ctr_apply(&key, &counter, &small, &mut small_out);
            }
            sink ^= u64::from(small_out[5]);
            line(&mut f, "aes4k", t.elapsed().as_nanos())?;
            let t = Instant::now();
            sink ^= std::hint::black_box(words.iter().fold(0u64, |a, w| a.wrapping_add(*w)));
            line(&mut f, "mem", t.elapsed().as_nanos())?;
            let t = Instant::now();
            sink ^= u64::from(sha2::Sha256::digest(&sha_input)[0]);
            line(&mut f, "sha", t.elapsed().as_nanos())?;
            let t = Instant::now();
            sink ^= multiply_chain(std::hint::black_box(100_000));
            line(&mut f, "alu", t.elapsed().as_nanos())?;
        }
        while batch.elapsed() < Duration::from_millis(50) {
            let t = Instant::now();
            let outcome = job.run();
            sink ^= u64::from(outcome.roundtrip_ok);
            line(&mut f, "aes", t.elapsed().as_nanos())?;
            let t = Instant::now();
            for _ in 0..job.iterations {
                ctr_apply(&key, &counter, &message, &mut ciphertext);
                ctr_apply(&key, &counter, &ciphertext, &mut decrypted);
                sink ^= u64::from(decrypted == message);
            }
            line(&mut f, "fixed", t.elapsed().as_nanos())?;
        }
        std::thread::sleep(batch.elapsed());
    }
    f.flush()?;
    eprintln!("done ({sink:x})");
    Ok(())
}
