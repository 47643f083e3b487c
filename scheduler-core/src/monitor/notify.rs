//! The notify monitor: the fallback for kernels without BTF tracepoints.
//! The function host (`slokit serve --notify PATH`) sends one
//! [`NotifyEvent`] datagram per arrival and completion to a Unix datagram
//! socket the agent binds at PATH (wire format in
//! `slokit_model::notify`). Arrivals map to receives and completions to
//! sends on the connection id, so the same register applies. Credit is read
//! from /proc/<pid>/task/<tid>/schedstat (precise to one scheduler tick).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use slokit_model::notify::{NotifyEvent, NotifyKind, NOTIFY_LEN};

use super::Monitor;
use crate::error::SchedError;
use crate::register::{EventKind, SocketEvent};
use crate::runtime::CpuTimes;
use crate::targets;

/// The notify monitor: a bound Unix datagram socket.
#[derive(Debug)]
pub struct NotifyMonitor {
    socket: UnixDatagram,
    path: PathBuf,
    targets: Vec<u32>,
    tid_owner: std::cell::RefCell<std::collections::HashMap<u32, u32>>,
    malformed: u64,
}

impl NotifyMonitor {
    /// Binds `path` (replacing a stale socket file left by a dead agent).
    pub fn bind(path: &Path) -> Result<Self, SchedError> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(path);
            } else {
                return Err(SchedError::Notify(format!(
                    "{} exists and is not a socket; choose another --notify path",
                    path.display()
                )));
            }
        }
        let socket = UnixDatagram::bind(path)
            .map_err(|e| SchedError::Notify(format!("cannot bind {}: {e}", path.display())))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| SchedError::Notify(format!("set_nonblocking: {e}")))?;
        Ok(NotifyMonitor {
            socket,
            path: path.to_path_buf(),
            targets: Vec::new(),
            tid_owner: Default::default(),
            malformed: 0,
        })
    }

    /// Datagrams that were not valid notify events.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Drop for NotifyMonitor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl CpuTimes for NotifyMonitor {
    fn cpu_ns(&self, tid: u32, _now_ns: u64) -> Option<u64> {
        let tgid = *self.tid_owner.borrow().get(&tid)?;
        targets::schedstat_cpu_ns(tgid, tid)
    }
}

impl Monitor for NotifyMonitor {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn drain(&mut self, out: &mut Vec<SocketEvent>) -> Result<(), SchedError> {
        let mut buf = [0u8; 64];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let Some(ev) = (n == NOTIFY_LEN)
                        .then(|| NotifyEvent::decode(&buf[..n]))
                        .flatten()
                    else {
                        self.malformed += 1;
                        continue;
                    };
                    if !self.targets.contains(&ev.tgid) {
                        continue;
                    }
                    self.tid_owner.borrow_mut().insert(ev.tid, ev.tgid);
                    out.push(SocketEvent {
                        kind: match ev.kind {
                            NotifyKind::Arrival => EventKind::Recv,
                            NotifyKind::Completion => EventKind::Send,
                        },
                        tid: ev.tid,
                        tgid: ev.tgid,
                        sock: ev.conn_id,
                        bytes: 1,
                        ts_ns: ev.ts_ns,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SchedError::Notify(format!("recv: {e}"))),
            }
        }
    }

    fn drops(&self) -> u64 {
        0
    }

    fn add_target(&mut self, tgid: u32) -> Result<(), SchedError> {
        if !self.targets.contains(&tgid) {
            self.targets.push(tgid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_datagrams_into_socket_events_for_targets_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let mut m = NotifyMonitor::bind(&path).unwrap();
        m.add_target(42).unwrap();
        let tx = UnixDatagram::unbound().unwrap();
        let ev = |kind, tgid| NotifyEvent {
            kind,
            tid: 7,
            tgid,
            conn_id: 99,
            ts_ns: 1234,
        };
        tx.send_to(&ev(NotifyKind::Arrival, 42).encode(), &path)
            .unwrap();
        tx.send_to(&ev(NotifyKind::Arrival, 43).encode(), &path)
            .unwrap();
        tx.send_to(b"garbage", &path).unwrap();
        tx.send_to(&ev(NotifyKind::Completion, 42).encode(), &path)
            .unwrap();
        let mut out = Vec::new();
        m.drain(&mut out).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].kind, EventKind::Recv);
        assert_eq!((out[0].sock, out[0].ts_ns, out[0].tid), (99, 1234, 7));
        assert_eq!(out[1].kind, EventKind::Send);
        assert_eq!(m.malformed(), 1);
        drop(m);
        assert!(!path.exists(), "socket file removed on drop");
    }
}
