//! SIGINT/SIGTERM as a graceful-shutdown request, without a signal handler:
//! the signals are blocked before the host's threads start (they inherit
//! the mask, so no worker is ever interrupted) and the main thread collects
//! them with `sigwait(3)`.

use std::io;

/// SIGINT and SIGTERM, blocked on the calling thread and every thread it
/// spawns afterwards, waiting to be collected by [`ShutdownSignals::wait`].
pub struct ShutdownSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for ShutdownSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownSignals(SIGINT, SIGTERM)")
    }
}

impl ShutdownSignals {
    /// Blocks SIGINT and SIGTERM on the calling thread. Call it before
    /// [`super::Host::start`] so the host's threads inherit the mask.
    pub fn block() -> io::Result<Self> {
        // SAFETY: an all-zero sigset_t is valid storage; sigemptyset
        // initialises it before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is valid storage; SIGINT/SIGTERM are valid signals;
        // pthread_sigmask only changes the calling thread's mask.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Self { set })
    }

    /// Waits for SIGINT or SIGTERM and returns which one arrived.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig = 0;
        // SAFETY: `self.set` was initialised in `block`; `sig` is writable.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(sig)
    }
}

/// The conventional name of a shutdown signal, for log lines.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
