//! The poller: where idle keep-alive connections wait without holding a
//! worker (DESIGN.md, "Idle keep-alive connections must not pin workers").
//!
//! Every connection is registered in one epoll set with `EPOLLONESHOT`.
//! When a parked connection becomes readable the poller takes it out of the
//! idle table and queues it for the workers; it never reads from the socket
//! itself, so every `recv` of a request happens on the worker that runs it.
//! The worker puts the connection back in the table and re-arms it after
//! the reply. One-shot arming makes that hand-over exclusive: a connection
//! is either parked (in the table, armed) or owned by exactly one worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::Shared;

/// Token of the shutdown eventfd in the epoll set (connection ids start at 1).
const WAKE_TOKEN: u64 = 0;
const MAX_EVENTS: usize = 256;

/// An epoll instance.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Parks a new connection: one readiness report, then disarmed.
    pub(crate) fn add_oneshot(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, ONESHOT_READ, token)
    }

    /// Re-parks a connection a worker has finished with.
    pub(crate) fn rearm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, ONESHOT_READ, token)
    }

    /// Registers the (never drained) shutdown eventfd, level-triggered.
    pub(crate) fn add_wake(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, WAKE_TOKEN)
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        loop {
            // SAFETY: `events` is valid writable storage for its length.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    timeout_ms,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

const ONESHOT_READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

/// A non-blocking eventfd that, once signalled, stays readable: the stop
/// flag the acceptor and the poller sleep on.
pub(crate) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The poller thread's loop: hands readable parked connections to the
/// workers until the wake fd fires, then hands over whatever is already
/// readable one last time (those requests have arrived; they get served).
pub(crate) fn run(shared: &Shared) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut stopping = false;
    loop {
        let timeout = if stopping { 0 } else { -1 };
        let n = match shared.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(_) => {
                // EBADF/EINVAL cannot happen on our own epoll fd; back off
                // rather than spin if it somehow does.
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let mut woke = false;
        {
            let mut idle = shared.idle.lock().unwrap_or_else(|p| p.into_inner());
            for ev in &events[..n] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    woke = true;
                    continue;
                }
                if let Some(conn) = idle.remove(&token) {
                    shared.dispatch(conn);
                }
            }
        }
        if stopping {
            return;
        }
        if woke {
            stopping = true;
        }
    }
}
