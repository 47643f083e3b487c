//! The few socket calls the host makes beyond `std`: non-blocking `recv`
//! into a buffer's spare capacity, `MSG_PEEK` and `FIONREAD` for the
//! poller (which looks at a request without consuming it), a non-blocking
//! `send`, and waiting for readability with a timeout.
//!
//! The poller must never consume request bytes: a `recv` that returns data
//! is what the eBPF monitor takes as an arrival, and it must happen on the
//! worker. A `MSG_PEEK` receive still passes the kernel's
//! `sock_recv_length` tracepoint, with the peeked length and `MSG_PEEK` in
//! its flags, so the monitor has to skip receives with that flag (it
//! consumes nothing); `FIONREAD` is an ioctl and no receive at all.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One non-blocking `recv(2)` of at most `max` bytes appended to `buf`
/// (0: the peer closed; `WouldBlock`: nothing buffered).
pub(crate) fn recv_into(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    // SAFETY: the pointer and length describe the buffer's spare capacity,
    // which the kernel may write to.
    let n = retry_eintr(|| unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    })?;
    // SAFETY: the kernel initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Copies what the socket holds, up to `out.len()` bytes, without
/// consuming it (`MSG_PEEK`), without blocking.
pub(crate) fn peek(fd: RawFd, out: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `out` is valid writable storage of its length.
    retry_eintr(|| unsafe {
        libc::recv(
            fd,
            out.as_mut_ptr().cast(),
            out.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    })
}

/// Bytes waiting in the socket's receive queue (`FIONREAD`).
pub(crate) fn buffered(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// One non-blocking `send(2)` (no SIGPIPE); returns the bytes written.
pub(crate) fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid readable storage of its length.
    retry_eintr(|| unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// Waits until `fd` is readable (data, end of stream or error) or
/// `until` passes; true when readable.
pub(crate) fn wait_readable(fd: RawFd, until: Instant) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms(left)) };
        if rc > 0 {
            return true;
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true; // let the next recv report the error
        }
    }
}

/// A timeout for `poll`/`epoll_wait` in whole ms, rounded up so a wait
/// never ends before its instant.
pub(crate) fn timeout_ms(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn peek_and_fionread_leave_the_bytes_for_recv() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();
        let mut buf = Vec::new();
        assert_eq!(
            recv_into(fd, &mut buf, 16).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.write_all(b"hello").unwrap();
        assert!(wait_readable(fd, Instant::now() + Duration::from_secs(5)));
        let mut out = [0u8; 3];
        assert_eq!(peek(fd, &mut out).unwrap(), 3);
        assert_eq!(&out, b"hel");
        assert_eq!(buffered(fd).unwrap(), 5);
        assert_eq!(recv_into(fd, &mut buf, 16).unwrap(), 5);
        assert_eq!(buf, b"hello");
        assert_eq!(buffered(fd).unwrap(), 0);
        assert!(!wait_readable(
            fd,
            Instant::now() + Duration::from_millis(20)
        ));
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::from_millis(7)), 7);
        assert_eq!(timeout_ms(Duration::ZERO), 0);
    }
}
