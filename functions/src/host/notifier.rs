//! The sending side of the notify protocol ([`crate::notify`]): one
//! non-blocking Unix datagram per arrival and completion, to the agent's
//! socket given by `--notify PATH`. A full socket buffer never stalls a
//! worker: the event is dropped and counted instead.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::notify::{NotifyEvent, NotifyKind};
use slokit_sys::clock::monotonic_ns;

use super::HostError;

pub(crate) struct Notifier {
    socket: UnixDatagram,
    tgid: u32,
    dropped: AtomicU64,
}

impl Notifier {
    pub(crate) fn connect(path: &Path) -> Result<Self, HostError> {
        let err = |source| HostError::Notify {
            path: path.to_path_buf(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(err)?;
        socket.connect(path).map_err(err)?;
        socket.set_nonblocking(true).map_err(err)?;
        Ok(Self {
            socket,
            tgid: std::process::id(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Sends one event stamped now; never blocks.
    pub(crate) fn send(&self, kind: NotifyKind, tid: u32, conn_id: u64) {
        let event = NotifyEvent {
            kind,
            tid,
            tgid: self.tgid,
            conn_id,
            ts_ns: monotonic_ns(),
        };
        // EAGAIN (receiver slow), ECONNREFUSED (receiver gone): the monitor
        // is best effort, the request is not.
        if self.socket.send(&event.encode()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
