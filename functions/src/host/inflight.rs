//! The host's limit on request bytes in flight: every request a worker is
//! about to take (queued or running) holds its head and body size from the
//! moment the poller hands it over until its function has run. A request
//! that would pass the limit is answered 503 with `Retry-After` at once,
//! so a burst of large requests is shed instead of queued (each costs a
//! worker buffer of its size, and its function's working memory).
//!
//! A request always fits when nothing else is in flight, so one request
//! larger than the limit is still served (413 is `max_body`'s job).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes in flight and their limit.
#[derive(Debug)]
pub(crate) struct InFlight {
    bytes: Arc<AtomicUsize>,
    limit: usize,
}

impl InFlight {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            bytes: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Reserves `bytes` unless that would pass the limit while other
    /// requests are in flight.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut now = self.bytes.load(Ordering::Relaxed);
        loop {
            if now > 0 && now.saturating_add(bytes) > self.limit {
                return None;
            }
            match self.bytes.compare_exchange_weak(
                now,
                now + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        bytes: self.bytes.clone(),
                        held: bytes,
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Bytes reserved now.
    pub(crate) fn current(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Bytes of one request, given back when dropped (on every path: function
/// run, request rejected, connection lost, job dropped at shutdown).
#[derive(Debug)]
pub(crate) struct Reservation {
    bytes: Arc<AtomicUsize>,
    held: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.bytes.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_limit_are_refused_until_bytes_come_back() {
        let f = InFlight::new(100);
        let a = f.try_reserve(60).unwrap();
        assert!(f.try_reserve(50).is_none());
        let b = f.try_reserve(40).unwrap();
        assert_eq!(f.current(), 100);
        drop(a);
        assert_eq!(f.current(), 40);
        assert!(f.try_reserve(60).is_some());
        drop(b);
        assert_eq!(f.current(), 0);
    }

    #[test]
    fn a_lone_request_larger_than_the_limit_still_fits() {
        let f = InFlight::new(10);
        let big = f.try_reserve(1000).unwrap();
        assert!(f.try_reserve(1).is_none());
        drop(big);
        assert!(f.try_reserve(1).is_some());
    }
}
