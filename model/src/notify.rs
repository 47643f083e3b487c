//! The notify protocol: how a function host (`slokit serve --notify PATH`)
//! tells a scheduling agent about request arrivals and completions over a
//! Unix datagram socket. It is the fallback monitor for kernels without BTF
//! tracepoints; the eBPF monitor sees the same events without the host's
//! help.
//!
//! Wire format (slokit's own): one datagram per event, 32 bytes,
//! little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | kind: 1 = arrival (request read), 2 = completion (reply written) |
//! | 1 | 3 | zero |
//! | 4 | 4 | tid of the worker thread |
//! | 8 | 4 | tgid (process id) of the host |
//! | 12 | 4 | zero |
//! | 16 | 8 | connection id (unique within the host) |
//! | 24 | 8 | timestamp, `CLOCK_MONOTONIC` ns (the clock BPF's `bpf_ktime_get_ns` reads) |

/// Size of one notify datagram.
pub const NOTIFY_LEN: usize = 32;

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// The worker read the request.
    Arrival,
    /// The worker wrote the reply.
    Completion,
}

/// One event of the notify protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyEvent {
    pub kind: NotifyKind,
    pub tid: u32,
    pub tgid: u32,
    pub conn_id: u64,
    pub ts_ns: u64,
}

impl NotifyEvent {
    /// The 32-byte datagram.
    pub fn encode(&self) -> [u8; NOTIFY_LEN] {
        let mut b = [0u8; NOTIFY_LEN];
        b[0] = match self.kind {
            NotifyKind::Arrival => 1,
            NotifyKind::Completion => 2,
        };
        b[4..8].copy_from_slice(&self.tid.to_le_bytes());
        b[8..12].copy_from_slice(&self.tgid.to_le_bytes());
        b[16..24].copy_from_slice(&self.conn_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.ts_ns.to_le_bytes());
        b
    }

    /// Parses a datagram; `None` when it is not a valid event.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != NOTIFY_LEN {
            return None;
        }
        let kind = match b[0] {
            1 => NotifyKind::Arrival,
            2 => NotifyKind::Completion,
            _ => return None,
        };
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(NotifyEvent {
            kind,
            tid: u32_at(4),
            tgid: u32_at(8),
            conn_id: u64_at(16),
            ts_ns: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for kind in [NotifyKind::Arrival, NotifyKind::Completion] {
            let e = NotifyEvent {
                kind,
                tid: 4121,
                tgid: 4000,
                conn_id: u64::MAX - 3,
                ts_ns: 123_456_789,
            };
            assert_eq!(NotifyEvent::decode(&e.encode()), Some(e));
        }
    }

    #[test]
    fn rejects_wrong_length_and_kind() {
        assert_eq!(NotifyEvent::decode(&[1u8; 31]), None);
        let mut b = [0u8; NOTIFY_LEN];
        b[0] = 7;
        assert_eq!(NotifyEvent::decode(&b), None);
    }
}
