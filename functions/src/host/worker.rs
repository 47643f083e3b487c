//! A worker thread: takes a readable connection from the queue, reads one
//! request, runs the function and writes the reply, all on this thread —
//! the threading contract the scheduler relies on (DESIGN.md, "The function
//! host") — then parks the connection with the poller again.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::notify::NotifyKind;

use super::http::{encode_reply, read_request, Conn, Head, Method, ReadError, Reply};
use super::{Job, Shared};

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
        while let Ok(Job::Serve(conn)) = shared.jobs_rx.recv() {
            // A bug in the host's own code must not cost a worker either;
            // the connection is dropped (closed) if it happens.
            let _ = catch_unwind(AssertUnwindSafe(|| self.serve(shared, conn)));
        }
    }

    /// Serves one request on `conn` and decides where the connection goes.
    fn serve(&mut self, shared: &Shared, mut conn: Conn) {
        let head = match read_request(&mut conn, shared.config.max_body) {
            Ok(head) => head,
            Err(ReadError::Idle) => return shared.park(conn),
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(status, detail)) => {
                self.error_body(rejection_kind(status), &detail);
                let outcome = Outcome::plain(status, JSON);
                self.send(&mut conn, &outcome, false, false);
                return lingering_close(conn);
            }
        };
        let notifier = shared.notifier.as_ref();
        if let Some(n) = notifier {
            n.send(NotifyKind::Arrival, self.tid, conn.id);
        }
        let outcome = self.route(shared, &conn, &head);
        // Checked after the function ran: a shutdown that began meanwhile
        // still gets this reply, marked as the connection's last.
        let keep_alive = head.keep_alive && !shared.stopping.load(Ordering::SeqCst);
        let written = self.send(&mut conn, &outcome, keep_alive, head.http10_keep_alive);
        if let Some(n) = notifier {
            n.send(NotifyKind::Completion, self.tid, conn.id);
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if !written || !keep_alive {
            return;
        }
        conn.buf.drain(..head.head_len + head.body_len);
        if conn.buf.capacity() > MAX_IDLE_BUF && conn.buf.len() <= MAX_IDLE_BUF {
            // After a large body: parked connections keep small buffers.
            conn.buf.shrink_to(MAX_IDLE_BUF);
        }
        if conn.buf.is_empty() {
            shared.park(conn);
        } else {
            // A pipelined request is already buffered: readiness will not
            // fire for it, so queue it behind the others.
            shared.dispatch(conn);
        }
    }

    /// Runs the route for `head`; the reply body is left in `self.body`.
    fn route(&mut self, shared: &Shared, conn: &Conn, head: &Head) -> Outcome {
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
            let start = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| function.invoke(&params)));
            let exec = Some(start.elapsed());
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

    fn error_body(&mut self, error: &str, detail: &str) {
        self.body.clear();
        let _ = serde_json::to_writer(&mut self.body, &json!({"error": error, "detail": detail}));
    }

    /// Writes the reply whose body is in `self.body`; false if the peer
    /// is gone.
    fn send(
        &mut self,
        conn: &mut Conn,
        outcome: &Outcome,
        keep_alive: bool,
        http10_keep_alive: bool,
    ) -> bool {
        encode_reply(
            &Reply {
                status: outcome.status,
                content_type: outcome.content_type,
                body: &self.body,
                keep_alive,
                http10_keep_alive,
                allow: outcome.allow,
                tid: self.tid,
                exec: outcome.exec,
            },
            &mut self.out,
        );
        conn.stream.write_all(&self.out).is_ok()
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
}

impl Outcome {
    fn plain(status: u16, content_type: &'static str) -> Self {
        Self {
            status,
            content_type,
            allow: None,
            exec: None,
        }
    }
}

/// The `error` field of a reply to a request that could not be read.
fn rejection_kind(status: u16) -> &'static str {
    match status {
        408 => "request timeout",
        411 => "length required",
        413 => "body too large",
        431 => "request head too large",
        _ => "malformed request",
    }
}

/// Closes after an error reply without losing it: a close with unread
/// request bytes makes the kernel send RST, which can destroy the reply
/// before the client reads it. Half-close, then discard what the client
/// still sends, bounded in bytes and time.
fn lingering_close(mut conn: Conn) {
    let _ = conn.stream.shutdown(Shutdown::Write);
    let _ = conn
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut sink = [0u8; 16 * 1024];
    let mut left: usize = 2 * 1024 * 1024;
    while left > 0 && Instant::now() < deadline {
        match conn.stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
