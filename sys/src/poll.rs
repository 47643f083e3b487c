//! Thin wrappers over epoll(7), timerfd(2) and eventfd(2): the agent's
//! event loop waits on the monitor, the credit timer, the periodic tick and
//! the idle poller's kick at once, and the credit timer fires at an
//! absolute `CLOCK_MONOTONIC` instant (no polling loop, no sleep
//! granularity); the function host parks idle connections in a one-shot
//! epoll set and sleeps on a stop eventfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Reads the 8-byte counter of a timerfd or eventfd (0 when none is
/// pending on a non-blocking one).
fn read_counter(fd: &OwnedFd) -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: reading 8 bytes into an 8-byte buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        0
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event; fd validity is the caller's.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Watches `fd` for readability (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token)
    }

    /// Watches `fd` for `events` (`EPOLLIN | EPOLLONESHOT`, …), reporting
    /// `token`.
    pub fn add_with(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes what `fd` is watched for (re-arms a one-shot registration).
    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Waits up to `timeout_ms` (-1: forever) for events into `events`;
    /// returns how many arrived. A signal is `Err` of kind `Interrupted`.
    pub fn wait_events(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        // SAFETY: `events` is valid writable storage for its length, as the
        // call is told.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len().min(i32::MAX as usize) as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            return Err(last_error());
        }
        Ok(n as usize)
    }

    /// Waits up to `timeout_ms` (-1: forever); returns the ready tokens (at
    /// most 8; none when a signal interrupted the wait).
    pub fn wait(&self, tokens: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
        tokens.clear();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        match self.wait_events(&mut evs, timeout_ms) {
            Ok(n) => {
                tokens.extend(evs[..n].iter().map(|e| e.u64));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

impl TimerFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn settime(&self, flags: i32, value_ns: u64, interval_ns: u64) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(interval_ns),
            it_value: timespec(value_ns),
        };
        // SAFETY: `spec` is valid; the old value is not requested.
        let r = unsafe {
            libc::timerfd_settime(self.0.as_raw_fd(), flags, &spec, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Fires once at absolute monotonic time `at_ns`.
    pub fn set_at(&self, at_ns: u64) -> io::Result<()> {
        self.settime(libc::TFD_TIMER_ABSTIME, at_ns.max(1), 0)
    }

    /// Fires every `period_ns`, first after one period.
    pub fn set_periodic(&self, period_ns: u64) -> io::Result<()> {
        self.settime(0, period_ns, period_ns)
    }

    /// Disarms the timer.
    pub fn disarm(&self) -> io::Result<()> {
        self.settime(0, 0, 0)
    }

    /// Consumes pending expirations (so level-triggered epoll goes quiet).
    pub fn drain(&self) -> u64 {
        read_counter(&self.0)
    }
}

/// An eventfd another thread signals to wake a loop (the agent's, the
/// host's acceptor and poller).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        Self::with_flags(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)
    }

    /// A blocking eventfd: [`EventFd::drain`] waits for a signal.
    pub fn blocking() -> io::Result<Self> {
        Self::with_flags(libc::EFD_CLOEXEC)
    }

    fn with_flags(flags: libc::c_int) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, flags) };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the descriptor readable (wakes a waiter).
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from an 8-byte buffer to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Clears it; returns how many signals were pending (a blocking one
    /// first waits for one).
    pub fn drain(&self) -> u64 {
        read_counter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::monotonic_ns;

    #[test]
    fn eventfd_signals_wake_epoll_until_drained() {
        let ep = Epoll::new().unwrap();
        let e = EventFd::new().unwrap();
        ep.add(e.fd(), 3).unwrap();
        let mut tokens = Vec::new();
        ep.wait(&mut tokens, 0).unwrap();
        assert!(tokens.is_empty());
        e.signal();
        e.signal();
        ep.wait(&mut tokens, 1000).unwrap();
        assert_eq!(tokens, [3]);
        assert_eq!(e.drain(), 2);
        assert_eq!(e.drain(), 0, "non-blocking: nothing pending");
    }

    #[test]
    fn absolute_timer_wakes_epoll_after_its_instant() {
        let ep = Epoll::new().unwrap();
        let t = TimerFd::new().unwrap();
        ep.add(t.fd(), 7).unwrap();
        let at = monotonic_ns() + 2_000_000;
        t.set_at(at).unwrap();
        let mut tokens = Vec::new();
        while tokens.is_empty() {
            ep.wait(&mut tokens, 1000).unwrap();
        }
        assert!(monotonic_ns() >= at);
        assert_eq!(tokens, [7]);
        assert_eq!(t.drain(), 1);
        t.disarm().unwrap();
        ep.wait(&mut tokens, 5).unwrap();
        assert!(tokens.is_empty(), "drained and disarmed: quiet");
    }
}
