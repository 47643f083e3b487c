//! The host's limit on request bytes in flight: every request a worker is
//! about to take (queued or running) holds its head and body size from the
//! moment the poller hands it over until its function has run. A request
//! that would pass the limit is answered 503 with `Retry-After` at once,
//! so a burst of large requests is shed instead of queued (each costs a
//! worker buffer of its size, and its function's working memory).
//!
//! A request always fits when nothing else is in flight, so one request
//! larger than the limit is still served (413 is `max_body`'s job).
//!
//! Once its body is parsed, a request's reservation grows by its function's
//! memory estimate ([`crate::catalogue::Function::memory_estimate`]), under
//! the same rule: it fits if the total stays within the limit or if no
//! other request holds bytes.

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
                        limit: self.limit,
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
    limit: usize,
}

impl Reservation {
    /// Adds `extra` bytes to this reservation unless that would pass the
    /// limit while other requests hold bytes too; false (and unchanged) if
    /// it does not fit.
    pub(crate) fn try_grow(&mut self, extra: usize) -> bool {
        let mut now = self.bytes.load(Ordering::Relaxed);
        loop {
            let others = now > self.held;
            if others && now.saturating_add(extra) > self.limit {
                return false;
            }
            match self.bytes.compare_exchange_weak(
                now,
                now.saturating_add(extra),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.held = self.held.saturating_add(extra);
                    return true;
                }
                Err(actual) => now = actual,
            }
        }
    }
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
    fn a_reservation_grows_if_it_fits_or_is_alone_and_gives_all_back() {
        let f = InFlight::new(100);
        let mut a = f.try_reserve(10).unwrap();
        assert!(a.try_grow(150), "alone: grows past the limit");
        assert_eq!(f.current(), 160);
        drop(a);
        assert_eq!(f.current(), 0);
        let mut a = f.try_reserve(10).unwrap();
        let mut b = f.try_reserve(10).unwrap();
        assert!(a.try_grow(70));
        assert!(!b.try_grow(30), "90 + 30 would pass 100");
        assert_eq!(f.current(), 90);
        assert!(b.try_grow(10));
        drop(a);
        assert_eq!(f.current(), 20);
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
