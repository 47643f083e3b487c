//! The two clocks slokit measures with: `CLOCK_MONOTONIC` (what
//! `bpf_ktime_get_ns()` and the notify protocol's timestamps read) and
//! `CLOCK_THREAD_CPUTIME_ID` (the calling thread's CPU time, which the
//! host's steal is not in).

use std::time::Duration;

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reads `CLOCK_MONOTONIC` in ns.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds of CPU time the calling thread has used
/// (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// [`thread_cpu_ns`] as a `Duration`.
pub fn thread_cpu_time() -> Duration {
    Duration::from_nanos(thread_cpu_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_moves_forward_and_cpu_time_counts_work() {
        let (w0, c0) = (monotonic_ns(), thread_cpu_ns());
        let mut x = 1u64;
        while thread_cpu_ns() - c0 < 1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        assert!(monotonic_ns() - w0 >= 1_000_000, "wall ≥ CPU time");
        assert!(thread_cpu_time() >= Duration::from_millis(1));
    }
}
