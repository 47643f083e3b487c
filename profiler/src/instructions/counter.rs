//! The hardware instruction counter: `perf_event_open(2)` with
//! `PERF_TYPE_HARDWARE` / `PERF_COUNT_HW_INSTRUCTIONS`, user space only
//! (`exclude_kernel`, `exclude_hv`), on the calling thread. Each invocation
//! is bracketed by `PERF_EVENT_IOC_RESET`/`ENABLE` and `DISABLE`, then the
//! counter is read.
//!
//! The attribute struct is written out by hand in its first published
//! layout (`PERF_ATTR_SIZE_VER0`, 64 bytes), which every kernel accepts and
//! which is all this needs; libc carries the syscall number but not the
//! struct, and a bindgen crate for six fields was not worth a dependency.
//! Counts from a PMU are not exact (skid, interrupts landing in user
//! space): the profile keeps their spread, and the gate's threshold covers it.

use std::sync::Arc;

use serde_json::Value;
use slokit_functions::Function;

use super::{CountScope, CountSettings, CountSource, InstructionSection};
use crate::error::ProfileError;
use crate::isolation::set_affinity;

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const PERF_ATTR_SIZE_VER0: u32 = 64;
/// Bits of the attribute's flag word (include/uapi/linux/perf_event.h).
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
/// `_IO('$', 0)`, `_IO('$', 1)`, `_IO('$', 3)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_DISABLE: libc::c_ulong = 0x2401;
const IOC_RESET: libc::c_ulong = 0x2403;

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER0`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
}

/// An open user-space instruction counter of the calling thread.
pub struct InstructionCounter {
    fd: libc::c_int,
}

impl InstructionCounter {
    /// Opens the counter on the calling thread, disabled.
    pub fn open() -> std::io::Result<Self> {
        let attr = PerfEventAttrV0 {
            type_: PERF_TYPE_HARDWARE,
            size: PERF_ATTR_SIZE_VER0,
            config: PERF_COUNT_HW_INSTRUCTIONS,
            flags: FLAG_DISABLED | FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV,
            ..PerfEventAttrV0::default()
        };
        // SAFETY: `attr` is a valid perf_event_attr of the size it states;
        // pid 0 / cpu -1 = this thread on any CPU, no group, no flags.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttrV0,
                0 as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                0 as libc::c_ulong,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd: fd as libc::c_int,
        })
    }

    fn ioctl(&self, request: libc::c_ulong) -> std::io::Result<()> {
        // SAFETY: an ioctl without argument on our own perf fd.
        if unsafe { libc::ioctl(self.fd, request as _, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// User-space instructions this thread executes in `f`.
    pub fn count(&self, f: impl FnOnce()) -> std::io::Result<u64> {
        self.ioctl(IOC_RESET)?;
        self.ioctl(IOC_ENABLE)?;
        f();
        self.ioctl(IOC_DISABLE)?;
        let mut value = 0u64;
        // SAFETY: reads 8 bytes (the default read_format) into `value`.
        let n = unsafe { libc::read(self.fd, (&mut value as *mut u64).cast(), 8) };
        if n != 8 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(value)
    }
}

impl Drop for InstructionCounter {
    fn drop(&mut self) {
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(self.fd) };
    }
}

/// Whether a user-space instruction counter opens and counts on this machine.
pub fn available() -> bool {
    InstructionCounter::open()
        .and_then(|c| {
            c.count(|| {
                std::hint::black_box((0..1000u64).sum::<u64>());
            })
        })
        .is_ok_and(|n| n > 0)
}

/// Counts a built-in in-process, on a thread pinned to `cpu` (`SCHED_OTHER`).
pub fn count_builtin(
    function: Arc<dyn Function>,
    params: &Value,
    cpu: usize,
    settings: &CountSettings,
) -> Result<InstructionSection, ProfileError> {
    let params = params.clone();
    let (warmup, invocations) = (settings.warmup, settings.invocations);
    let counts = std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<u64>, ProfileError> {
            set_affinity(0, &[cpu]).map_err(|e| {
                ProfileError::System(format!("cannot pin the counting thread to CPU {cpu}: {e}"))
            })?;
            let counter = InstructionCounter::open().map_err(|e| {
                ProfileError::Count(format!("cannot open the instruction counter: {e}"))
            })?;
            let fail = |e: String| ProfileError::Count(format!("the function failed: {e}"));
            for _ in 0..warmup {
                function.invoke(&params).map_err(|e| fail(e.to_string()))?;
            }
            let mut counts = Vec::with_capacity(invocations as usize);
            for _ in 0..invocations {
                let mut reply = None;
                let n = counter
                    .count(|| reply = Some(function.invoke(std::hint::black_box(&params))))
                    .map_err(|e| ProfileError::Count(format!("cannot read the counter: {e}")))?;
                if let Some(Err(e)) = reply {
                    return Err(fail(e.to_string()));
                }
                counts.push(n);
            }
            Ok(counts)
        })
        .join()
        .unwrap_or_else(|_| Err(ProfileError::System("the counting thread panicked".into())))
    })?;
    InstructionSection::from_counts(
        &counts,
        warmup,
        CountSource::HardwareCounter,
        "perf_event_open PERF_COUNT_HW_INSTRUCTIONS (user space)".into(),
        CountScope::Invocation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_counts_or_says_why_not() {
        match InstructionCounter::open() {
            Ok(c) => {
                let small = c
                    .count(|| {
                        std::hint::black_box((0..10u64).sum::<u64>());
                    })
                    .unwrap();
                let large = c
                    .count(|| {
                        std::hint::black_box(
                            (0..100_000u64).map(std::hint::black_box).sum::<u64>(),
                        );
                    })
                    .unwrap();
                assert!(large > small, "{small} vs {large}");
                assert!(available());
            }
            Err(e) => {
                eprintln!("no hardware instruction counter here ({e}); Valgrind is used instead");
                assert!(!available());
            }
        }
    }
}
