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

use super::Shared;

/// Token of the shutdown eventfd in the epoll set (connection ids start at 1).
pub(crate) const WAKE_TOKEN: u64 = 0;
const MAX_EVENTS: usize = 256;

/// How a parked connection is watched: one readiness report, then disarmed
/// until a worker re-arms it (`Epoll::modify`) after the reply.
pub(crate) const ONESHOT_READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

/// The poller thread's loop: hands readable parked connections to the
/// workers until the wake fd fires, then hands over whatever is already
/// readable one last time (those requests have arrived; they get served).
pub(crate) fn run(shared: &Shared) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut stopping = false;
    loop {
        let timeout = if stopping { 0 } else { -1 };
        let n = match shared.epoll.wait_events(&mut events, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
