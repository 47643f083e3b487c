//! The poller: where connections wait without holding a worker — idle
//! keep-alive ones (DESIGN.md, "Idle keep-alive connections must not pin
//! workers") and ones whose request has not fully arrived, so a stalled or
//! slow client costs a file descriptor, not a worker.
//!
//! The poller owns every connection no worker serves, in one epoll set,
//! edge-triggered. It **never consumes request bytes**: it looks at them
//! with `MSG_PEEK` and `FIONREAD` (`sock.rs`), so the first `recv` that
//! returns data is the worker's, and a monitor keyed on socket receives
//! still sees the arrival on the thread that runs the request (the
//! threading contract, DESIGN.md). A connection goes to a worker when:
//!
//! - its head and whole body are in the socket buffer, or
//! - its head is complete and at least `peek_limit` bytes are buffered (a
//!   large body the socket buffer cannot hold whole; the client has shown it
//!   sends); the worker reads the rest under the request's deadline, or
//! - its head is malformed or too large: the worker reads it and answers
//!   4xx, as it always did.
//!
//! The poller answers, itself and without reading, a request not complete
//! within its deadline (408), one that would pass the host's bytes-in-flight
//! limit (503), and `Expect: 100-continue` (100, before the body is sent).
//! These sends come before any worker `recv`, so the monitor's register sees
//! them on a socket with no active request and ignores them.
//!
//! While a worker serves a connection the poller acts only on the peer's
//! hang-up (`EPOLLRDHUP`): it sets the request's cancellation flag
//! (`cancel.rs`). Workers give connections back through a channel and an
//! eventfd, and the poller looks at each one it gets back at once.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slokit_sys::sched::gettid;

use super::http::{
    encode_reply, error_body, parse_head, rejection_kind, Conn, Head, Reply, MAX_HEAD,
};
use super::inflight::Reservation;
use super::{sock, Job, Shared};

/// Token of the poller's wake eventfd in the epoll set (connection ids start
/// at 1).
pub(crate) const WAKE_TOKEN: u64 = 0;
const MAX_EVENTS: usize = 256;

/// Every connection: each new arrival of bytes and the hang-up,
/// edge-triggered (nothing is consumed, so level-triggered readiness would
/// report the same bytes forever). The registration never changes: while a
/// worker has the connection its byte arrivals are ignored, and it is
/// looked at again when it comes back.
const WATCH: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
const HANGUP: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// How long a connection the poller answered (408, 503) stays open before
/// it is closed, so the client reads the reply: closing with unread request
/// bytes makes the kernel reset the connection.
const LINGER: Duration = Duration::from_millis(500);

/// Seconds a 503 for the bytes-in-flight limit tells the client to wait.
pub(crate) const RETRY_AFTER_S: u32 = 1;

/// Messages to the poller.
pub(crate) enum Back {
    /// A connection the acceptor just accepted.
    Adopt(Conn),
    /// A worker answered a request and keeps the connection open.
    Park(Conn),
    /// A worker closed the connection with this id.
    Closed(u64),
}

/// A worker's job: a connection whose request is in the socket.
pub(crate) struct Handoff {
    pub(crate) conn: Conn,
    /// Bytes of the request the poller saw buffered (what the first `recv`
    /// should take).
    pub(crate) hint: usize,
    /// When the request must be complete; 408 after.
    pub(crate) deadline: Instant,
    /// Set when the client hangs up while the worker has the connection.
    pub(crate) cancel: Arc<AtomicBool>,
    /// The request's bytes in flight (`None` for heads the worker rejects).
    pub(crate) reservation: Option<Reservation>,
}

enum Slot {
    /// Idle, or its request still arriving.
    Parked(Parked),
    /// A worker has it (queued or serving).
    Busy {
        stream: Arc<TcpStream>,
        cancel: Arc<AtomicBool>,
    },
    /// Answered by the poller; closed at `until` or when the peer closes.
    Closing { _conn: Conn, until: Instant },
}

struct Parked {
    conn: Conn,
    /// When the first byte of its request was seen: its deadline runs from
    /// here.
    started: Option<Instant>,
    head: Option<Head>,
    continue_sent: bool,
}

impl Parked {
    fn new(conn: Conn) -> Self {
        Self {
            conn,
            started: None,
            head: None,
            continue_sent: false,
        }
    }
}

/// What a look at a parked connection decided.
enum Verdict {
    Wait,
    Close,
    /// To a worker, with the bytes seen and the reservation (`None`: its head
    /// is rejected).
    Dispatch(usize, Option<Reservation>),
    /// Answer at once with this status and detail, then close.
    Answer(u16, String),
}

/// The poller thread's loop.
pub(crate) fn run(shared: &Shared) {
    let mut poller = Poller {
        shared,
        tid: gettid(),
        slots: HashMap::new(),
        timers: BTreeSet::new(),
        scratch: vec![0; MAX_HEAD + 1],
        out: Vec::new(),
        stopping: false,
    };
    poller.run();
}

struct Poller<'a> {
    shared: &'a Shared,
    tid: u32,
    slots: HashMap<u64, Slot>,
    /// Request deadlines and linger ends, by instant; an entry whose slot
    /// moved on is skipped when it comes up.
    timers: BTreeSet<(Instant, u64)>,
    scratch: Vec<u8>,
    out: Vec<u8>,
    stopping: bool,
}

impl Poller<'_> {
    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        loop {
            let timeout = self.timers.first().map_or(-1, |&(at, _)| {
                sock::timeout_ms(at.saturating_duration_since(Instant::now()))
            });
            let n = match self.shared.epoll.wait_events(&mut events, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(_) => {
                    // EBADF/EINVAL cannot happen on our own epoll fd; back
                    // off rather than spin if it somehow does.
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            let now = Instant::now();
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                if token == WAKE_TOKEN {
                    self.shared.poller_wake.drain();
                } else {
                    self.on_event(token, flags, now);
                }
            }
            self.take_messages();
            self.fire_timers(Instant::now());
            if !self.stopping && self.shared.stopping.load(Ordering::SeqCst) {
                self.begin_stop();
            }
            if self.shared.finishing.load(Ordering::SeqCst) {
                self.take_messages();
                self.cut_off();
                return;
            }
        }
    }

    fn on_event(&mut self, id: u64, flags: u32, now: Instant) {
        let hangup = flags & HANGUP != 0;
        match self.slots.get(&id) {
            Some(Slot::Parked(_)) => self.examine(id, hangup, now),
            Some(Slot::Busy { cancel, .. }) if hangup => cancel.store(true, Ordering::Relaxed),
            Some(Slot::Closing { .. }) if hangup => {
                self.slots.remove(&id);
            }
            _ => {}
        }
    }

    /// Looks at what a parked connection holds and acts on it.
    fn examine(&mut self, id: u64, hangup: bool, now: Instant) {
        let verdict = self.judge(id, hangup, now);
        match verdict {
            Verdict::Wait => {}
            Verdict::Close => {
                self.slots.remove(&id);
            }
            Verdict::Dispatch(hint, reservation) => self.dispatch(id, hint, reservation, now),
            Verdict::Answer(status, detail) => self.answer(id, status, &detail, now),
        }
    }

    fn judge(&mut self, id: u64, hangup: bool, now: Instant) -> Verdict {
        let config = &self.shared.config;
        let Some(Slot::Parked(p)) = self.slots.get_mut(&id) else {
            return Verdict::Wait;
        };
        let fd = p.conn.stream.as_raw_fd();
        let mut seen = 0;
        if p.head.is_none() {
            match sock::peek(fd, &mut self.scratch) {
                // The peer closed with nothing sent, or mid-head: nothing
                // to answer.
                Ok(0) => return Verdict::Close,
                Ok(n) => seen = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if hangup {
                        Verdict::Close
                    } else {
                        Verdict::Wait
                    };
                }
                Err(_) => return Verdict::Close,
            }
            if p.started.is_none() {
                p.started = Some(now);
                self.timers.insert((now + config.request_timeout, id));
            }
            match parse_head(&self.scratch[..seen], config.max_body) {
                Ok(None) if hangup => return Verdict::Close,
                Ok(None) => return Verdict::Wait,
                Ok(Some(head)) => p.head = Some(head),
                Err(_) => return Verdict::Dispatch(seen, None),
            }
        }
        let head = p.head.as_ref().expect("parsed above");
        let total = head.total_len();
        let buffered = if seen >= total {
            seen
        } else {
            match sock::buffered(fd) {
                Ok(n) => n,
                Err(_) => return Verdict::Close,
            }
        };
        if buffered >= total.min(p.conn.peek_limit) {
            return match self.shared.inflight.try_reserve(total) {
                Some(r) => Verdict::Dispatch(buffered.min(total), Some(r)),
                None => Verdict::Answer(
                    503,
                    format!(
                        "the host has {} request bytes in flight, and this request's {total} would pass \
                         its limit of {}; retry later",
                        self.shared.inflight.current(),
                        config.max_inflight_bytes
                    ),
                ),
            };
        }
        if hangup {
            return Verdict::Answer(400, "connection closed in the middle of a request".into());
        }
        if head.expect_continue && !p.continue_sent {
            p.continue_sent = true;
            if sock::send_now(fd, b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                return Verdict::Close;
            }
        }
        Verdict::Wait
    }

    /// Queues a parked connection for the workers; from now on only its
    /// hang-up matters.
    fn dispatch(&mut self, id: u64, hint: usize, reservation: Option<Reservation>, now: Instant) {
        let Some(Slot::Parked(p)) = self.slots.remove(&id) else {
            return;
        };
        let timeout = self.shared.config.request_timeout;
        if let Some(started) = p.started {
            self.timers.remove(&(started + timeout, id));
        }
        let stream = p.conn.stream.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        self.slots.insert(
            id,
            Slot::Busy {
                stream,
                cancel: cancel.clone(),
            },
        );
        self.shared.dispatch(Job::Serve(Handoff {
            conn: p.conn,
            hint,
            deadline: p.started.unwrap_or(now) + timeout,
            cancel,
            reservation,
        }));
    }

    /// Answers a parked connection without reading it (408, 503, 400 for a
    /// peer that closed mid-request), then lingers and closes.
    fn answer(&mut self, id: u64, status: u16, detail: &str, now: Instant) {
        let Some(Slot::Parked(p)) = self.slots.remove(&id) else {
            return;
        };
        let mut body = Vec::new();
        error_body(&mut body, rejection_kind(status), detail);
        encode_reply(
            &Reply {
                status,
                content_type: "application/json",
                body: &body,
                keep_alive: false,
                http10_keep_alive: false,
                allow: None,
                retry_after: (status == 503).then_some(RETRY_AFTER_S),
                omit_body: false,
                tid: self.tid,
                exec: None,
            },
            &mut self.out,
        );
        let counter = match status {
            408 => &self.shared.counters.timed_out,
            503 => &self.shared.counters.shed,
            _ => &self.shared.counters.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // A reply this small fits the empty send buffer; if it does not,
        // the client was not reading anyway.
        let _ = sock::send_now(p.conn.stream.as_raw_fd(), &self.out);
        let _ = p.conn.stream.shutdown(Shutdown::Write);
        if self.stopping {
            return;
        }
        let until = now + LINGER;
        self.timers.insert((until, id));
        self.slots.insert(
            id,
            Slot::Closing {
                _conn: p.conn,
                until,
            },
        );
    }

    fn take_messages(&mut self) {
        while let Ok(msg) = self.shared.back_rx.try_recv() {
            match msg {
                Back::Adopt(conn) => {
                    if self.stopping {
                        continue;
                    }
                    let (id, fd) = (conn.id, conn.stream.as_raw_fd());
                    if self.shared.epoll.add_with(fd, WATCH, id).is_ok() {
                        self.slots.insert(id, Slot::Parked(Parked::new(conn)));
                    }
                }
                Back::Park(conn) => {
                    let id = conn.id;
                    if self.stopping {
                        self.slots.remove(&id);
                        continue;
                    }
                    self.slots.insert(id, Slot::Parked(Parked::new(conn)));
                    // What arrived while a worker had it (a pipelined
                    // request, a hang-up) raised no event we acted on.
                    self.examine(id, false, Instant::now());
                }
                Back::Closed(id) => {
                    self.slots.remove(&id);
                }
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let timeout = self.shared.config.request_timeout;
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            match self.slots.get(&id) {
                Some(Slot::Parked(p)) if p.started.is_some_and(|s| s + timeout == at) => {
                    self.answer(
                        id,
                        408,
                        &format!(
                            "request not completed within the request timeout ({} ms)",
                            timeout.as_millis()
                        ),
                        now,
                    );
                }
                Some(Slot::Closing { until, .. }) if *until == at => {
                    self.slots.remove(&id);
                }
                _ => {}
            }
        }
    }

    /// Shutdown has begun: requests already complete in their sockets go to
    /// the workers (they have arrived; they get served), every other
    /// connection the poller holds is closed. Busy ones stay watched.
    fn begin_stop(&mut self) {
        self.stopping = true;
        let now = Instant::now();
        self.take_messages();
        let parked: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Parked(_)))
            .map(|(&id, _)| id)
            .collect();
        for id in parked {
            self.examine(id, false, now);
        }
        self.slots.retain(|_, s| matches!(s, Slot::Busy { .. }));
        self.timers.clear();
        let _ = self.shared.stop_ack.0.try_send(());
    }

    /// The drain bound passed: requests still queued or running are cut off
    /// (their sockets shut down, their invocations asked to cancel).
    fn cut_off(&mut self) {
        for (_, slot) in self.slots.drain() {
            if let Slot::Busy { stream, cancel } = slot {
                cancel.store(true, Ordering::Relaxed);
                let _ = stream.shutdown(Shutdown::Both);
                self.shared
                    .counters
                    .abandoned
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
