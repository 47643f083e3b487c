//! The register: turns a monitor's socket events into requests (the seed's
//! "Register"). Its rule, keyed by socket:
//!
//! ```text
//! if FD not in dict and event == rcv:  dict[FD] = request status
//! if FD in dict and event == send:     del dict[FD]
//! ```
//!
//! A receive on a socket with no active request starts one; a send on a
//! socket with an active request ends it. Further receives on an active
//! socket (the rest of a request that spans packets) and further sends on an
//! idle one (the rest of a reply) are ignored — the seed's multi-packet trace
//! (two receives, then four sends) is exactly one request.
//!
//! One addition: a worker thread serves one request at a time, so when a
//! thread starts a request on another socket while it still holds one (the
//! old connection died without a reply), the old one is abandoned rather
//! than left active forever.

use rustc_hash::FxHashMap;

/// Identifier the register gives each request (1, 2, 3, … in arrival order).
pub type RequestId = u64;

/// What a socket event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Data received (`recv`/`read` returned > 0), or the host's arrival notice.
    Recv,
    /// A send (`send`/`write`), or the host's completion notice.
    Send,
}

/// One socket event of a target process, from any monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEvent {
    pub kind: EventKind,
    /// Thread that made the call.
    pub tid: u32,
    /// Its process.
    pub tgid: u32,
    /// Socket identity: the kernel `struct sock` pointer (eBPF) or the
    /// host's connection id (notify).
    pub sock: u64,
    /// Bytes the call returned (negative: an error).
    pub bytes: i64,
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
}

/// A request the register tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub tid: u32,
    pub tgid: u32,
    pub sock: u64,
    /// Time of the receive that started it.
    pub start_ns: u64,
}

/// What an event did to the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new request arrived.
    Started(Request),
    /// A request ended (its reply is being sent) at `end_ns` by thread
    /// `sender_tid` (another thread than `request.tid` when the runtime
    /// hands requests off).
    Ended {
        request: Request,
        end_ns: u64,
        sender_tid: u32,
    },
    /// A request was given up: its thread started another request on a
    /// different socket without replying to this one. Followed by the
    /// `Started` of the new one.
    Abandoned(Request),
}

/// The register of active requests.
#[derive(Debug, Default)]
pub struct Register {
    // Fx hashing: SipHash was a large share of the agent's CPU at high
    // request rates (docs/measurements.md, monitor cost).
    by_sock: FxHashMap<(u32, u64), Request>,
    by_tid: FxHashMap<u32, (u32, u64)>,
    next_id: RequestId,
    ignored: u64,
}

impl Register {
    pub fn new() -> Self {
        Register::default()
    }

    /// Applies one event; pushes what changed (0, 1 or 2 changes) to `out`.
    pub fn on_event(&mut self, e: &SocketEvent, out: &mut Vec<Change>) {
        let key = (e.tgid, e.sock);
        match e.kind {
            EventKind::Recv => {
                if e.bytes <= 0 || self.by_sock.contains_key(&key) {
                    self.ignored += 1;
                    return;
                }
                if let Some(old_key) = self.by_tid.remove(&e.tid) {
                    if let Some(old) = self.by_sock.remove(&old_key) {
                        out.push(Change::Abandoned(old));
                    }
                }
                self.next_id += 1;
                let r = Request {
                    id: self.next_id,
                    tid: e.tid,
                    tgid: e.tgid,
                    sock: e.sock,
                    start_ns: e.ts_ns,
                };
                self.by_sock.insert(key, r);
                self.by_tid.insert(e.tid, key);
                out.push(Change::Started(r));
            }
            EventKind::Send => match self.by_sock.remove(&key) {
                Some(request) => {
                    if self.by_tid.get(&request.tid) == Some(&key) {
                        self.by_tid.remove(&request.tid);
                    }
                    out.push(Change::Ended {
                        request,
                        end_ns: e.ts_ns,
                        sender_tid: e.tid,
                    });
                }
                None => self.ignored += 1,
            },
        }
    }

    /// Requests currently active.
    pub fn active(&self) -> usize {
        self.by_sock.len()
    }

    /// Events that changed nothing (continuation packets, stray sends).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Forgets every request of process `tgid` (it exited); returns them.
    pub fn forget_process(&mut self, tgid: u32) -> Vec<Request> {
        let gone: Vec<Request> = self
            .by_sock
            .values()
            .filter(|r| r.tgid == tgid)
            .copied()
            .collect();
        for r in &gone {
            self.by_sock.remove(&(r.tgid, r.sock));
            self.by_tid.remove(&r.tid);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the seed's trace format:
    /// `CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: rcv, Timestamp: 93642890.399628 milliseconds`
    fn parse_seed_line(line: &str) -> SocketEvent {
        let field = |name: &str| -> &str {
            let start = line.find(&format!("{name}: ")).expect(name) + name.len() + 2;
            let rest = &line[start..];
            rest[..rest.find([',', ' ']).unwrap_or(rest.len())].trim()
        };
        let pid: u32 = field("PID").parse().unwrap();
        let ms: f64 = field("Timestamp").parse().unwrap();
        SocketEvent {
            kind: match field("Event") {
                "rcv" => EventKind::Recv,
                "send" => EventKind::Send,
                other => panic!("unknown event {other}"),
            },
            tid: pid,
            tgid: pid,
            sock: field("FD").parse().unwrap(),
            bytes: field("Size").parse().unwrap(),
            ts_ns: (ms * 1e6) as u64,
        }
    }

    /// The seed's multi-packet trace, verbatim (seed/interference-aware-scheduler.txt).
    const SEED_TRACE: &str = "\
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: rcv, Timestamp: 93642890.399628 milliseconds
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: rcv, Timestamp: 93642890.407442 milliseconds
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: send, Timestamp: 93647891.92718 milliseconds
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: send, Timestamp: 93647891.940696 milliseconds
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: send, Timestamp: 93647892.062655 milliseconds
CPU: 28, PID: 61883, FD: 3843769, Size: 36, Event: send, Timestamp: 93647892.064929 milliseconds";

    fn run(events: &[SocketEvent]) -> (Register, Vec<Change>) {
        let mut reg = Register::new();
        let mut out = Vec::new();
        for e in events {
            reg.on_event(e, &mut out);
        }
        (reg, out)
    }

    #[test]
    fn seed_multi_packet_trace_is_exactly_one_request() {
        let events: Vec<SocketEvent> = SEED_TRACE.lines().map(parse_seed_line).collect();
        assert_eq!(events.len(), 6);
        let (reg, changes) = run(&events);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let Change::Started(r) = changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!((r.id, r.tid, r.sock), (1, 61883, 3843769));
        assert_eq!(r.start_ns, events[0].ts_ns, "starts at the first receive");
        match changes[1] {
            Change::Ended {
                request, end_ns, ..
            } => {
                assert_eq!(request, r);
                assert_eq!(end_ns, events[2].ts_ns, "ends at the first send");
                // ~5 s from first receive to first send in the seed's trace
                let ms = (end_ns - request.start_ns) as f64 / 1e6;
                assert!((ms - 5001.5).abs() < 1.0, "{ms}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reg.active(), 0);
        assert_eq!(
            reg.ignored(),
            4,
            "1 continuation receive + 3 trailing sends"
        );
    }

    fn ev(kind: EventKind, tid: u32, sock: u64, ts: u64) -> SocketEvent {
        SocketEvent {
            kind,
            tid,
            tgid: 100,
            sock,
            bytes: 10,
            ts_ns: ts,
        }
    }

    #[test]
    fn keep_alive_connection_carries_successive_requests() {
        use EventKind::*;
        let (_, changes) = run(&[
            ev(Recv, 1, 7, 10),
            ev(Send, 1, 7, 20),
            ev(Recv, 1, 7, 30),
            ev(Recv, 1, 7, 31),
            ev(Send, 1, 7, 40),
            ev(Send, 1, 7, 41),
        ]);
        let ids: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::Started(r) => ("start", r.id),
                Change::Ended { request, .. } => ("end", request.id),
                Change::Abandoned(r) => ("abandon", r.id),
            })
            .collect();
        assert_eq!(
            ids,
            [("start", 1), ("end", 1), ("start", 2), ("end", 2)],
            "{changes:?}"
        );
    }

    #[test]
    fn sockets_are_independent_and_stray_sends_ignored() {
        use EventKind::*;
        let (reg, changes) = run(&[
            ev(Send, 1, 5, 1), // idle socket: ignored
            ev(Recv, 1, 5, 2),
            ev(Recv, 2, 6, 3),
            ev(Send, 2, 6, 4),
        ]);
        assert_eq!(changes.len(), 3);
        assert_eq!(reg.active(), 1);
        assert!(matches!(changes[2], Change::Ended { request, .. } if request.sock == 6));
    }

    #[test]
    fn empty_receive_starts_nothing() {
        let mut e = ev(EventKind::Recv, 1, 5, 1);
        e.bytes = 0;
        let (reg, changes) = run(&[e]);
        assert!(changes.is_empty());
        assert_eq!(reg.active(), 0);
    }

    #[test]
    fn a_thread_moving_to_another_socket_abandons_its_old_request() {
        use EventKind::*;
        let (reg, changes) = run(&[ev(Recv, 1, 5, 1), ev(Recv, 1, 9, 2)]);
        assert!(matches!(changes[0], Change::Started(r) if r.sock == 5));
        assert!(matches!(changes[1], Change::Abandoned(r) if r.sock == 5));
        assert!(matches!(changes[2], Change::Started(r) if r.sock == 9 && r.id == 2));
        assert_eq!(reg.active(), 1);
        // the sk pointer of the dead connection may be reused: a new receive
        // on it starts a fresh request
        let mut reg = reg;
        let mut out = Vec::new();
        reg.on_event(&ev(Recv, 3, 5, 3), &mut out);
        assert!(matches!(out[0], Change::Started(r) if r.sock == 5 && r.id == 3));
    }

    #[test]
    fn forget_process_drops_its_requests() {
        use EventKind::*;
        let mut reg = Register::new();
        let mut out = Vec::new();
        reg.on_event(&ev(Recv, 1, 5, 1), &mut out);
        let mut other = ev(Recv, 2, 5, 1);
        other.tgid = 200;
        reg.on_event(&other, &mut out);
        assert_eq!(reg.forget_process(100).len(), 1);
        assert_eq!(reg.active(), 1);
    }
}
