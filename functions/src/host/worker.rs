//! A worker thread: takes a connection whose request the poller has seen
//! in the socket, reads that request, runs the function and writes the
//! reply, all on this thread — the threading contract the scheduler relies
//! on (DESIGN.md, "The function host") — then gives the connection back to
//! the poller.

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::catalogue::Function;
use crate::notify::NotifyKind;

use super::http::{
    encode_reply, error_body, read_request, rejection_kind, Conn, Head, Method, ReadError, Reply,
};
use super::inflight::Reservation;
use super::poller::{Back, Handoff, RETRY_AFTER_S};
use super::{cancel, sock, Job, Shared};

/// Per-worker scratch space, reused across requests.
pub(crate) struct Worker {
    pub(crate) tid: u32,
    body: Vec<u8>,
    out: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(tid: u32) -> Self {
        Self {
            tid,
            body: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
        }
    }

    /// Serves queued connections until told to stop.
    pub(crate) fn run(&mut self, shared: &Shared) {
        while let Ok(Job::Serve(job)) = shared.jobs_rx.recv() {
            let id = job.conn.id;
            if shared.abandoning.load(Ordering::SeqCst) {
                // Past the drain bound: the poller has counted and cut it.
                shared.give_back(Back::Closed(id));
                continue;
            }
            // A bug in the host's own code must not cost a worker either;
            // the connection is dropped (closed) if it happens.
            if catch_unwind(AssertUnwindSafe(|| self.serve(shared, job))).is_err() {
                shared.give_back(Back::Closed(id));
            }
        }
    }

    /// Serves one request and decides where the connection goes.
    fn serve(&mut self, shared: &Shared, job: Handoff) {
        let Handoff {
            mut conn,
            hint,
            deadline,
            cancel,
            mut reservation,
        } = job;
        let head = match read_request(&mut conn, hint, deadline, shared.config.max_body) {
            Ok(head) => head,
            Err(ReadError::Idle) => return shared.give_back(Back::Park(conn)),
            Err(ReadError::Closed) => return close(shared, conn),
            Err(ReadError::Reject(status, detail)) => {
                error_body(&mut self.body, rejection_kind(status), &detail);
                let counter = if status == 408 {
                    &shared.counters.timed_out
                } else {
                    &shared.counters.rejected
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let outcome = Outcome::plain(status, JSON);
                self.send(&mut conn, &outcome, false, false, false);
                lingering_close(&conn);
                return close(shared, conn);
            }
        };
        let notifier = shared.notifier.as_ref();
        if let Some(n) = notifier {
            n.send(NotifyKind::Arrival, self.tid, conn.id);
        }
        let outcome = self.route(shared, &conn, &head, &cancel, &mut reservation);
        // The request's bytes (and its function's memory) are done with;
        // counted before the reply so a client that reads it sees the
        // counters and the limit updated.
        drop(reservation);
        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
        // Checked after the function ran: a shutdown that began meanwhile
        // still gets this reply, marked as the connection's last. Bytes read
        // past the request (cannot happen: reads stop at its end) would be
        // lost on parking, so such a connection closes.
        let keep_alive = head.keep_alive
            && !shared.stopping.load(Ordering::SeqCst)
            && conn.buf.len() == head.total_len();
        let written = self.send(
            &mut conn,
            &outcome,
            keep_alive,
            head.http10_keep_alive,
            head.method == Method::Head,
        );
        if let Some(n) = notifier {
            n.send(NotifyKind::Completion, self.tid, conn.id);
        }
        if !written || !keep_alive {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return close(shared, conn);
        }
        conn.buf.clear();
        if conn.buf.capacity() > MAX_IDLE_BUF {
            // After a large body: parked connections keep small buffers.
            conn.buf.shrink_to(MAX_IDLE_BUF);
        }
        shared.give_back(Back::Park(conn));
    }

    /// Runs the route for `head`; the reply body is left in `self.body`.
    /// An invocation's memory estimate is added to `reservation`.
    fn route(
        &mut self,
        shared: &Shared,
        conn: &Conn,
        head: &Head,
        cancel: &Arc<AtomicBool>,
        reservation: &mut Option<Reservation>,
    ) -> Outcome {
        self.body.clear();
        let path = head.path.as_str();
        if let Some(name) = path.strip_prefix("/invoke/") {
            if head.method != Method::Post {
                self.error_body("method not allowed", "invoke a function with POST");
                return Outcome {
                    allow: Some("POST"),
                    ..Outcome::plain(405, JSON)
                };
            }
            let Some(function) = shared.catalogue.get(name) else {
                let detail = match shared.catalogue.require(name) {
                    Err(e) => e.to_string(),
                    Ok(_) => unreachable!("get() said the function is missing"),
                };
                self.error_body("unknown function", &detail);
                return Outcome::plain(404, JSON);
            };
            let raw = &conn.buf[head.head_len..head.head_len + head.body_len];
            let params = if raw.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice::<Value>(raw) {
                    Ok(v) => v,
                    Err(e) => {
                        self.error_body("malformed JSON", &e.to_string());
                        return Outcome::plain(400, JSON);
                    }
                }
            };
            if let Some(refusal) = self.admit(shared, name, function.as_ref(), &params, reservation)
            {
                return refusal;
            }
            let start = Instant::now();
            let scope = cancel::scope(cancel.clone());
            let outcome = catch_unwind(AssertUnwindSafe(|| function.invoke(&params)));
            drop(scope);
            let exec = Some(start.elapsed());
            if cancel.load(Ordering::Relaxed) {
                shared.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            return match outcome {
                Ok(Ok(reply)) => {
                    let _ = serde_json::to_writer(&mut self.body, &reply);
                    Outcome {
                        exec,
                        ..Outcome::plain(200, JSON)
                    }
                }
                Ok(Err(e)) => {
                    self.error_body(e.kind(), e.detail());
                    Outcome {
                        exec,
                        ..Outcome::plain(e.status(), JSON)
                    }
                }
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    self.error_body("function panicked", &msg);
                    Outcome {
                        exec,
                        ..Outcome::plain(500, JSON)
                    }
                }
            };
        }
        match (path, head.method) {
            ("/healthz", Method::Get) => {
                self.body.extend_from_slice(b"ok");
                Outcome::plain(200, "text/plain")
            }
            ("/functions", Method::Get) => {
                self.body.extend_from_slice(&shared.functions_json);
                Outcome::plain(200, JSON)
            }
            ("/healthz" | "/functions", _) => {
                self.error_body("method not allowed", "use GET");
                Outcome {
                    allow: Some("GET"),
                    ..Outcome::plain(405, JSON)
                }
            }
            _ => {
                self.error_body(
                    "not found",
                    &format!("no route {path}; try POST /invoke/{{function}}, GET /functions or GET /healthz"),
                );
                Outcome::plain(404, JSON)
            }
        }
    }

    /// Reserves the memory `function` estimates for `params` beside the
    /// request's bytes; the refusal if it does not fit: 413 if the estimate
    /// alone passes the limit (waiting would never help), 503 with
    /// `Retry-After` if other requests hold the room now.
    fn admit(
        &mut self,
        shared: &Shared,
        name: &str,
        function: &dyn Function,
        params: &Value,
        reservation: &mut Option<Reservation>,
    ) -> Option<Outcome> {
        let estimate = function.memory_estimate(params);
        if estimate == 0 {
            return None;
        }
        let limit = shared.config.max_inflight_bytes;
        if estimate > limit as u64 {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.error_body(
                "too much memory",
                &format!(
                    "`{name}` with these parameters would allocate about {estimate} bytes, more than \
                     the host's limit of {limit} bytes in flight (--max-inflight-bytes); ask for \
                     less or raise the limit"
                ),
            );
            return Some(Outcome::plain(413, JSON));
        }
        let extra = estimate as usize;
        let fits = match reservation {
            Some(r) => r.try_grow(extra),
            None => {
                *reservation = shared.inflight.try_reserve(extra);
                reservation.is_some()
            }
        };
        if fits {
            return None;
        }
        shared.counters.shed.fetch_add(1, Ordering::Relaxed);
        self.error_body(
            "busy",
            &format!(
                "the host has {} bytes in flight, and `{name}` with these parameters would \
                 allocate about {estimate} more, passing its limit of {limit} \
                 (--max-inflight-bytes); retry later",
                shared.inflight.current()
            ),
        );
        Some(Outcome {
            retry_after: Some(RETRY_AFTER_S),
            ..Outcome::plain(503, JSON)
        })
    }

    fn error_body(&mut self, error: &str, detail: &str) {
        error_body(&mut self.body, error, detail);
    }

    /// Writes the reply whose body is in `self.body` (headers only for
    /// `HEAD`); false if the peer is gone.
    fn send(
        &mut self,
        conn: &mut Conn,
        outcome: &Outcome,
        keep_alive: bool,
        http10_keep_alive: bool,
        omit_body: bool,
    ) -> bool {
        encode_reply(
            &Reply {
                status: outcome.status,
                content_type: outcome.content_type,
                body: &self.body,
                keep_alive,
                http10_keep_alive,
                allow: outcome.allow,
                retry_after: outcome.retry_after,
                omit_body,
                tid: self.tid,
                exec: outcome.exec,
            },
            &mut self.out,
        );
        use std::io::Write;
        (&*conn.stream).write_all(&self.out).is_ok()
    }
}

const JSON: &str = "application/json";

/// Buffer capacity a connection keeps between requests.
const MAX_IDLE_BUF: usize = 64 * 1024;

/// What a route answered, apart from the body.
struct Outcome {
    status: u16,
    content_type: &'static str,
    /// `Allow` header of a 405.
    allow: Option<&'static str>,
    /// Wall time of the function's `invoke`, when it ran.
    exec: Option<Duration>,
    /// `Retry-After` seconds of a 503.
    retry_after: Option<u32>,
}

impl Outcome {
    fn plain(status: u16, content_type: &'static str) -> Self {
        Self {
            status,
            content_type,
            allow: None,
            exec: None,
            retry_after: None,
        }
    }
}

/// Drops a connection the worker is done with and tells the poller.
fn close(shared: &Shared, conn: Conn) {
    let id = conn.id;
    drop(conn);
    shared.give_back(Back::Closed(id));
}

/// Closes after an error reply without losing it: a close with unread
/// request bytes makes the kernel send RST, which can destroy the reply
/// before the client reads it. Half-close, then discard what the client
/// still sends, bounded in bytes and time.
fn lingering_close(conn: &Conn) {
    let _ = conn.stream.shutdown(Shutdown::Write);
    let fd = conn.stream.as_raw_fd();
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut sink = Vec::with_capacity(16 * 1024);
    let mut left: usize = 2 * 1024 * 1024;
    while left > 0 && sock::wait_readable(fd, deadline) {
        sink.clear();
        match sock::recv_into(fd, &mut sink, 16 * 1024) {
            Ok(0) => break,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
}
