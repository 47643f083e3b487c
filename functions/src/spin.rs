//! `spin`: the synthetic function trace replays use (as vHive's invitro
//! does). It burns a given number of milliseconds of the *calling thread's*
//! CPU time — measured on `CLOCK_THREAD_CPUTIME_ID`, not the wall clock — so
//! its service time is known exactly whatever the scheduler does to it.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalogue::{parse_params, Function, FunctionInfo, InvokeError, ParamInfo};

/// Upper bound on one spin, so a typo cannot occupy a worker for hours.
pub const MAX_SPIN_MS: f64 = 60_000.0;
const DEFAULT_SPIN_MS: f64 = 10.0;

/// Parameters of `spin`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpinParams {
    /// CPU time to burn, in milliseconds.
    pub ms: f64,
}

impl Default for SpinParams {
    fn default() -> Self {
        Self {
            ms: DEFAULT_SPIN_MS,
        }
    }
}

impl SpinParams {
    fn validate(&self) -> Result<(), InvokeError> {
        if !self.ms.is_finite() || self.ms < 0.0 || self.ms > MAX_SPIN_MS {
            return Err(InvokeError::BadParams(format!(
                "`ms` must be between 0 and {MAX_SPIN_MS}, got {}",
                self.ms
            )));
        }
        Ok(())
    }
}

/// The clocks `spin` burns and reports on (kept under `spin::` for the
/// profiler's in-process targets and the benches, which time functions the
/// same way).
pub use slokit_sys::clock::{monotonic_ns, thread_cpu_ns};

/// Burns `ns` nanoseconds of this thread's CPU time and returns the CPU time
/// actually used.
pub fn burn_cpu_ns(ns: u64) -> u64 {
    static NEVER: AtomicBool = AtomicBool::new(false);
    burn_cpu_ns_unless(ns, &NEVER).0
}

/// Like [`burn_cpu_ns`], but stops early once `cancelled` is set (checked
/// between clock reads, a few µs apart); returns the CPU time used and
/// whether it stopped early.
pub fn burn_cpu_ns_unless(ns: u64, cancelled: &AtomicBool) -> (u64, bool) {
    let start = thread_cpu_ns();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        // A little integer work between clock reads keeps the loop on the CPU
        // without spending most of it in the vDSO.
        for _ in 0..256 {
            x = x.rotate_left(5) ^ x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        }
        std::hint::black_box(x);
        let used = thread_cpu_ns() - start;
        if used >= ns {
            return (used, false);
        }
        if cancelled.load(Ordering::Relaxed) {
            return (used, true);
        }
    }
}

/// The `spin` function.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spin;

impl Function for Spin {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "spin",
            summary: "burns `ms` milliseconds of the worker thread's CPU time (known service time)",
            params: vec![ParamInfo {
                name: "ms",
                kind: "number",
                default: json!(DEFAULT_SPIN_MS),
                doc: "CPU time to burn, in milliseconds (0..=60000)",
            }],
        }
    }

    fn invoke(&self, params: &Value) -> Result<Value, InvokeError> {
        let p: SpinParams = parse_params(params)?;
        p.validate()?;
        let ns = (p.ms * 1e6) as u64;
        let wall_start = monotonic_ns();
        let used = match crate::host::cancel::current() {
            Some(flag) => match burn_cpu_ns_unless(ns, &flag) {
                (used, false) => used,
                (used, true) => {
                    return Err(InvokeError::Failed(format!(
                        "cancelled after {:.3} of {} ms: the client hung up",
                        used as f64 / 1e6,
                        p.ms
                    )))
                }
            },
            None => burn_cpu_ns(ns),
        };
        let wall = monotonic_ns() - wall_start;
        Ok(json!({
            "requested_ms": p.ms,
            "cpu_ms": used as f64 / 1e6,
            "wall_ms": wall as f64 / 1e6,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burns_the_requested_cpu_time_within_half_a_millisecond() {
        for ms in [1.0, 5.0, 20.0] {
            let reply = Spin.invoke(&json!({ "ms": ms })).unwrap();
            let cpu = reply["cpu_ms"].as_f64().unwrap();
            assert!(
                cpu >= ms && cpu < ms + 0.5,
                "asked {ms} ms, burned {cpu} ms"
            );
        }
    }

    #[test]
    fn cpu_time_is_not_wall_time_when_sharing_a_cpu() {
        // Two spinners on one CPU: each burns its own CPU time, so wall time
        // is at least the CPU time (and roughly double when they share).
        let reply = Spin.invoke(&json!({ "ms": 2.0 })).unwrap();
        assert!(reply["wall_ms"].as_f64().unwrap() >= reply["cpu_ms"].as_f64().unwrap() - 0.01);
    }

    #[test]
    fn rejects_negative_huge_and_non_numeric_ms() {
        for bad in [json!({"ms": -1}), json!({"ms": 1e9}), json!({"ms": "ten"})] {
            assert_eq!(Spin.invoke(&bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn a_set_flag_stops_the_burn_early() {
        let flag = AtomicBool::new(false);
        let (used, stopped) = burn_cpu_ns_unless(1_000_000, &flag);
        assert!(!stopped && used >= 1_000_000);
        flag.store(true, Ordering::Relaxed);
        let (used, stopped) = burn_cpu_ns_unless(10_000_000_000, &flag);
        assert!(stopped && used < 10_000_000_000);
    }

    #[test]
    fn empty_params_use_the_default() {
        let reply = Spin.invoke(&Value::Null).unwrap();
        assert_eq!(reply["requested_ms"], json!(DEFAULT_SPIN_MS));
    }
}
