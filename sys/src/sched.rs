//! Raw scheduling system calls: `sched_setattr(2)` / `sched_getattr(2)`
//! through `libc::syscall` with a `repr(C)` `struct sched_attr` (SFS spawned
//! `schedtool` per change; one syscall is microseconds), `gettid(2)`, and
//! the `tgkill` existence probe. Async-signal-safe: the agent's guardian
//! calls them after fork.

/// `SCHED_FLAG_RESET_ON_FORK`: children of a FIFO thread start in SCHED_OTHER.
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
/// `SCHED_OTHER` (the fair class).
pub const SCHED_OTHER: u32 = 0;
/// `SCHED_FIFO`.
pub const SCHED_FIFO: u32 = 1;
/// `SCHED_RR`.
pub const SCHED_RR: u32 = 2;
/// `SCHED_IDLE`: runs only when nothing else wants the CPU.
pub const SCHED_IDLE: u32 = 5;

/// `struct sched_attr`, first version (`SCHED_ATTR_SIZE_VER0` = 48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
}

const ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

impl SchedAttr {
    /// SCHED_FIFO at `priority`, reset on fork.
    pub fn fifo(priority: u8) -> Self {
        SchedAttr {
            size: ATTR_SIZE,
            sched_policy: SCHED_FIFO,
            sched_flags: SCHED_FLAG_RESET_ON_FORK,
            sched_priority: priority as u32,
            ..Default::default()
        }
    }

    /// SCHED_OTHER at `nice`.
    pub fn other(nice: i32) -> Self {
        SchedAttr {
            size: ATTR_SIZE,
            sched_policy: SCHED_OTHER,
            sched_nice: nice,
            ..Default::default()
        }
    }

    /// SCHED_IDLE (the agent's idle pollers).
    pub fn idle() -> Self {
        SchedAttr {
            size: ATTR_SIZE,
            sched_policy: SCHED_IDLE,
            ..Default::default()
        }
    }

    /// Whether this is a real-time policy (FIFO or RR).
    pub fn is_realtime(&self) -> bool {
        matches!(self.sched_policy, SCHED_FIFO | SCHED_RR)
    }
}

/// `sched_setattr(tid, attr, 0)`.
pub fn set_attr(tid: u32, attr: &SchedAttr) -> Result<(), std::io::Error> {
    let mut a = *attr;
    a.size = ATTR_SIZE;
    // SAFETY: `a` is a valid sched_attr of `a.size` bytes for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::pid_t,
            &a as *const SchedAttr,
            0u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `sched_getattr(tid)`.
pub fn get_attr(tid: u32) -> Result<SchedAttr, std::io::Error> {
    let mut a = SchedAttr::default();
    // SAFETY: `a` is writable for ATTR_SIZE bytes, as the call is told.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::pid_t,
            &mut a as *mut SchedAttr,
            ATTR_SIZE,
            0u32,
        )
    };
    if r == 0 {
        Ok(a)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether thread `tid` exists and belongs to process `tgid`
/// (`tgkill(tgid, tid, 0)`), so a recycled tid is never mistaken for ours.
pub fn thread_in_process(tgid: u32, tid: u32) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    unsafe { libc::syscall(libc::SYS_tgkill, tgid as libc::pid_t, tid as libc::pid_t, 0) == 0 }
}

/// The kernel thread id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_attr_is_the_kernels_ver0_size() {
        assert_eq!(ATTR_SIZE, 48);
    }

    #[test]
    fn reads_own_policy() {
        let a = get_attr(gettid()).unwrap();
        assert_eq!(a.size, 48);
        assert!(!a.is_realtime(), "test threads start in the fair class");
        assert!(thread_in_process(std::process::id(), gettid()));
        assert!(!thread_in_process(1, gettid()));
    }
}
