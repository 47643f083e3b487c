//! Cancellation of an invocation whose client has gone: the poller sets a
//! connection's flag when the peer hangs up (`EPOLLRDHUP`) while a worker
//! serves it, or when a shutdown cuts requests off; the worker makes that
//! flag the current one for the duration of `Function::invoke`; a function
//! that can stop early (`spin`) polls [`requested`].
//!
//! A thread-local instead of a parameter keeps the [`crate::Function`]
//! trait unchanged: functions that cannot stop early ignore it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// The flag of the invocation running on this thread, if it runs under a
/// host (`None` elsewhere: profiler, benches, direct calls).
pub fn current() -> Option<Arc<AtomicBool>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// True when the client of the invocation running on this thread has gone
/// (or the host is cutting it off): the reply will not be read.
pub fn requested() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// Makes `flag` the current one until the guard drops.
pub(crate) fn scope(flag: Arc<AtomicBool>) -> Scope {
    CURRENT.with(|c| *c.borrow_mut() = Some(flag));
    Scope(())
}

/// Clears the current flag on drop (panics included).
pub(crate) struct Scope(());

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_current_only_inside_its_scope() {
        assert!(current().is_none() && !requested());
        let flag = Arc::new(AtomicBool::new(false));
        {
            let _scope = scope(flag.clone());
            assert!(!requested());
            flag.store(true, Ordering::Relaxed);
            assert!(requested());
            // other threads are not affected
            assert!(!std::thread::spawn(requested).join().unwrap());
        }
        assert!(current().is_none() && !requested());
    }
}
