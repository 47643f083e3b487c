//! The guardian: a tiny process forked at agent start that outlives the
//! agent. The agent tells it, over a pipe, every thread it is about to put
//! in SCHED_FIFO (before doing so). When the pipe closes — the agent ended,
//! however it ended, SIGKILL included — the guardian resets each of those
//! threads that still exists in its process and is still SCHED_FIFO/RR back
//! to SCHED_OTHER (its original nice), then exits.
//!
//! The child runs only async-signal-safe system calls (the agent may be
//! multi-threaded when it forks): its record buffer is allocated before
//! `fork`, it reads fixed-size binary records, and it resets with raw
//! `sched_setattr`. It ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C to the
//! process group leaves it to clean up after the agent.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::SchedError;
use slokit_sys::sched::{self, SchedAttr};

/// Capacity of the guardian's thread list.
const MAX_RECORDS: usize = 65536;
/// One record: tgid, tid, original nice (as u32), reserved.
const RECORD: usize = 16;

/// The agent's handle on its guardian process.
#[derive(Debug)]
pub struct Guardian {
    pid: libc::pid_t,
    pipe: Option<OwnedFd>,
    announced: HashSet<u32>,
}

impl Guardian {
    /// Forks the guardian.
    pub fn spawn() -> Result<Guardian, SchedError> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(SchedError::sys(
                "cannot create the guardian pipe",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: pipe2 returned two fresh descriptors we now own.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut records: Vec<[u32; 4]> = Vec::with_capacity(MAX_RECORDS);
        let devnull = c"/dev/null";
        // SAFETY: the child only runs async-signal-safe code (see guardian_main).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SchedError::sys(
                "cannot fork the guardian process",
                std::io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child.
            unsafe { guardian_main(read_end.as_raw_fd(), &mut records, devnull.as_ptr()) }
        }
        drop(read_end);
        Ok(Guardian {
            pid,
            pipe: Some(write_end),
            announced: HashSet::new(),
        })
    }

    /// The guardian's process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Tells the guardian about a thread before it is put in SCHED_FIFO
    /// (once per thread).
    pub fn announce(
        &mut self,
        tgid: u32,
        tid: u32,
        original: &SchedAttr,
    ) -> Result<(), SchedError> {
        if self.announced.contains(&tid) {
            return Ok(());
        }
        let Some(pipe) = &self.pipe else {
            return Err(SchedError::Config("guardian already finished".into()));
        };
        let mut rec = [0u8; RECORD];
        rec[0..4].copy_from_slice(&tgid.to_ne_bytes());
        rec[4..8].copy_from_slice(&tid.to_ne_bytes());
        rec[8..12].copy_from_slice(&original.sched_nice.to_ne_bytes());
        // SAFETY: writing RECORD bytes from a live buffer to our pipe.
        let n = unsafe { libc::write(pipe.as_raw_fd(), rec.as_ptr().cast(), RECORD) };
        if n != RECORD as isize {
            return Err(SchedError::sys(
                "the guardian process is gone (cannot protect SCHED_FIFO threads)",
                std::io::Error::last_os_error(),
            ));
        }
        self.announced.insert(tid);
        Ok(())
    }

    /// Closes the pipe and waits for the guardian to finish its pass.
    pub fn finish(&mut self) {
        if self.pipe.take().is_some() {
            let mut status = 0;
            // SAFETY: waiting for our own child by pid.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The guardian child. Never returns.
///
/// # Safety
/// Must be called only in the child right after `fork`; uses only
/// async-signal-safe calls and no allocation (`records` has its capacity).
unsafe fn guardian_main(
    fd: libc::c_int,
    records: &mut Vec<[u32; 4]>,
    devnull: *const libc::c_char,
) -> ! {
    // SAFETY (whole body): raw system calls on descriptors we own.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"slokit-guardian".as_ptr());
        // Keep stderr; stdin/stdout to /dev/null; our pipe at fd 3; close
        // everything else (other threads' pipes must not be held open here).
        let fd = if fd == 3 { fd } else { libc::dup2(fd, 3) };
        if fd != 3 {
            libc::_exit(1);
        }
        let null = libc::open(devnull, libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
        }
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);

        let mut buf = [0u8; RECORD * 256];
        let mut have = 0usize;
        loop {
            let n = libc::read(3, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            have += n as usize;
            let whole = have / RECORD * RECORD;
            let mut off = 0;
            while off < whole {
                let word = |i: usize| {
                    u32::from_ne_bytes([
                        buf[off + i],
                        buf[off + i + 1],
                        buf[off + i + 2],
                        buf[off + i + 3],
                    ])
                };
                if records.len() < records.capacity() {
                    records.push([word(0), word(4), word(8), 0]);
                }
                off += RECORD;
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        for r in records.iter() {
            let (tgid, tid, nice) = (r[0], r[1], r[2] as i32);
            if !sched::thread_in_process(tgid, tid) {
                continue;
            }
            if let Ok(a) = sched::get_attr(tid) {
                if a.is_realtime() {
                    let _ = sched::set_attr(tid, &SchedAttr::other(nice));
                }
            }
        }
        libc::_exit(0)
    }
}
