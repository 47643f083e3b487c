//! The slice of HTTP/1.1 the host speaks: parse a request head (with
//! `httparse`), read one request on the worker (body by `Content-Length`,
//! under the request's deadline), write one reply with `Content-Length`.
//! Chunked request bodies are refused with 411; `Expect: 100-continue` is
//! answered by the poller before the body arrives (see `poller.rs`).

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slokit_model::contract::{EXEC_US_HEADER, TID_HEADER};

use super::sock;

/// Longest request head (request line + headers) accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
const READ_CHUNK: usize = 16 * 1024;

/// A connection as the host keeps it: the socket (shared with the
/// poller's record of it while a worker serves it, so the poller can cut
/// it off at the end of a shutdown), the worker's read buffer, and its id
/// for the notify protocol.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) buf: Vec<u8>,
    /// Bytes of a request the poller waits to see buffered before a worker
    /// takes it, when the request is larger (see `poller.rs`).
    pub(crate) peek_limit: usize,
}

/// Request methods the host routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// The parts of a request head the host needs, owned.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    /// Path without the query string.
    pub(crate) path: String,
    pub(crate) keep_alive: bool,
    /// HTTP/1.0 client that asked for keep-alive: the reply must say so.
    pub(crate) http10_keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
}

impl Head {
    /// Head and body: the bytes the request occupies on the connection.
    pub(crate) fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// Why no request could be read; each maps to a status and closes the
/// connection, except `Idle` and `Closed`.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing to read after all: park it again.
    Idle,
    /// The peer closed (or reset) between requests: drop it quietly.
    Closed,
    /// Status and detail to answer with before closing.
    Reject(u16, String),
}

/// Reads one complete request into `conn.buf` (cleared first) on the
/// worker. The poller has seen `hint` bytes of it in the socket (the whole
/// request, or its head and the first part of a large body), so the first
/// `recv` normally takes all of it at once; further reads wait for the rest
/// until `deadline`, then the request gets 408. Reads stop at the end of
/// the request, so a pipelined next one stays in the socket for the poller.
pub(crate) fn read_request(
    conn: &mut Conn,
    hint: usize,
    deadline: Instant,
    max_body: usize,
) -> Result<Head, ReadError> {
    conn.buf.clear();
    let fd = conn.stream.as_raw_fd();
    let mut head: Option<Head> = None;
    loop {
        let have = conn.buf.len();
        let want = match &head {
            Some(h) => h.total_len() - have,
            // Before the head is known: what the poller saw, then more
            // of the head (it cannot pass MAX_HEAD without a 431).
            None if have < hint => hint - have,
            None => READ_CHUNK.min((MAX_HEAD + 1).saturating_sub(have)).max(1),
        };
        match sock::recv_into(fd, &mut conn.buf, want) {
            Ok(0) if conn.buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Reject(
                    400,
                    "connection closed in the middle of a request".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if conn.buf.is_empty() {
                    return Err(ReadError::Idle);
                }
                if !sock::wait_readable(fd, deadline) {
                    return Err(timeout());
                }
                continue;
            }
            Err(_) if conn.buf.is_empty() => return Err(ReadError::Closed),
            Err(e) => return Err(ReadError::Reject(400, format!("reading the request: {e}"))),
        }
        if head.is_none() {
            head = parse_head(&conn.buf, max_body)?;
            if let Some(h) = &head {
                conn.buf
                    .reserve(h.total_len().saturating_sub(conn.buf.len()));
            }
        }
        if let Some(h) = &head {
            if conn.buf.len() >= h.total_len() {
                return Ok(head.take().expect("checked above"));
            }
        }
        if Instant::now() >= deadline {
            return Err(timeout());
        }
    }
}

/// The rejection of a request not complete within its deadline.
pub(crate) fn timeout() -> ReadError {
    ReadError::Reject(
        408,
        "request not completed within the request timeout".into(),
    )
}

/// Parses the head once it is complete; `Ok(None)` while more is needed.
pub(crate) fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(ReadError::Reject(
                    431,
                    format!("request head longer than {MAX_HEAD} bytes"),
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reject(
                431,
                format!("more than {MAX_HEADERS} request headers"),
            ))
        }
        Err(e) => {
            return Err(ReadError::Reject(
                400,
                format!("malformed HTTP request: {e}"),
            ))
        }
    };
    if head_len > MAX_HEAD {
        return Err(ReadError::Reject(
            431,
            format!("request head longer than {MAX_HEAD} bytes"),
        ));
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    let http10 = req.version == Some(0);

    let mut close = false;
    let mut ka = false;
    let mut expect_continue = false;
    let mut body_len: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = parse_content_length(h.value).ok_or_else(|| {
                ReadError::Reject(
                    400,
                    "invalid Content-Length (digits only, like `Content-Length: 42`)".into(),
                )
            })?;
            if body_len.is_some_and(|b| b != v) {
                return Err(ReadError::Reject(
                    400,
                    "conflicting Content-Length headers".into(),
                ));
            }
            body_len = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Reject(
                411,
                "chunked or encoded request bodies are not supported; send Content-Length".into(),
            ));
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                ka |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > max_body {
        return Err(ReadError::Reject(
            413,
            format!("request body of {body_len} bytes exceeds the limit of {max_body} bytes"),
        ));
    }
    let keep_alive = !close && (!http10 || ka);
    Ok(Some(Head {
        method,
        path,
        keep_alive,
        http10_keep_alive: http10 && keep_alive,
        expect_continue,
        head_len,
        body_len,
    }))
}

/// `Content-Length`'s value: 1*DIGIT (RFC 9110 §8.6) with optional
/// surrounding whitespace; a sign, a space inside or an overflow is `None`.
fn parse_content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Writes the JSON error body `{"error": .., "detail": ..}` into `out`
/// (cleared first).
pub(crate) fn error_body(out: &mut Vec<u8>, error: &str, detail: &str) {
    out.clear();
    let _ = serde_json::to_writer(
        &mut *out,
        &serde_json::json!({"error": error, "detail": detail}),
    );
}

/// The `error` field of a reply to a request that was not run.
pub(crate) fn rejection_kind(status: u16) -> &'static str {
    match status {
        408 => "request timeout",
        411 => "length required",
        413 => "body too large",
        431 => "request head too large",
        503 => "busy",
        _ => "malformed request",
    }
}

/// Reason phrase of the statuses the host uses.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A reply about to be written.
pub(crate) struct Reply<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'a [u8],
    pub(crate) keep_alive: bool,
    pub(crate) http10_keep_alive: bool,
    pub(crate) allow: Option<&'static str>,
    /// `Retry-After` seconds of a 503.
    pub(crate) retry_after: Option<u32>,
    /// The request was `HEAD`: headers only, `content-length: 0`.
    pub(crate) omit_body: bool,
    pub(crate) tid: u32,
    pub(crate) exec: Option<Duration>,
}

/// Serialises `reply` into `out` (cleared first): status line, headers,
/// body, ready for one `send`.
pub(crate) fn encode_reply(reply: &Reply<'_>, out: &mut Vec<u8>) {
    out.clear();
    let body: &[u8] = if reply.omit_body { b"" } else { reply.body };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{TID_HEADER}: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        body.len(),
        reply.tid
    );
    if let Some(exec) = reply.exec {
        let _ = write!(out, "{EXEC_US_HEADER}: {}\r\n", exec.as_micros());
    }
    if let Some(allow) = reply.allow {
        let _ = write!(out, "allow: {allow}\r\n");
    }
    if let Some(secs) = reply.retry_after {
        let _ = write!(out, "retry-after: {secs}\r\n");
    }
    if !reply.keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if reply.http10_keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, ReadError> {
        parse_head(raw.as_bytes(), 1024)
    }

    #[test]
    fn http11_keeps_alive_unless_told_to_close() {
        let h = head("POST /invoke/spin?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path, "/invoke/spin");
        assert!(h.keep_alive);
        assert_eq!(h.body_len, 2);
        let h = head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        let h = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive && h.http10_keep_alive);
    }

    #[test]
    fn content_length_is_digits_with_optional_whitespace() {
        let h = head("POST / HTTP/1.1\r\nContent-Length:  007 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body_len, 7);
        assert_eq!(h.total_len(), h.head_len + 7);
    }

    #[test]
    fn head_requests_and_expect_continue_are_recognised() {
        let h = head("HEAD /healthz HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.method, Method::Head);
        assert!(!h.expect_continue);
        let h = head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(head("GET / HTTP/1.1\r\nHost: x").unwrap().is_none());
    }

    #[test]
    fn rejections_carry_their_status() {
        let status = |raw: &str| match head(raw) {
            Err(ReadError::Reject(s, _)) => s,
            other => panic!("{raw:?}: {other:?}"),
        };
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n"),
            413
        );
        for bad in ["+2", "-1", "2 3", "0x10", "", "99999999999999999999999"] {
            assert_eq!(
                status(&format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n")),
                400,
                "Content-Length: {bad}"
            );
        }
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn replies_carry_length_tid_and_exec_time() {
        let mut out = Vec::new();
        encode_reply(
            &Reply {
                status: 200,
                content_type: "application/json",
                body: b"{}",
                keep_alive: false,
                http10_keep_alive: false,
                allow: None,
                retry_after: None,
                omit_body: false,
                tid: 42,
                exec: Some(Duration::from_micros(17)),
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 2\r\n"));
        assert!(text.contains("x-slokit-tid: 42\r\n"));
        assert!(text.contains("x-slokit-exec-us: 17\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn replies_to_head_have_no_body_and_503s_say_when_to_retry() {
        let mut out = Vec::new();
        encode_reply(
            &Reply {
                status: 503,
                content_type: "application/json",
                body: b"{\"error\":\"busy\"}",
                keep_alive: false,
                http10_keep_alive: false,
                allow: None,
                retry_after: Some(1),
                omit_body: true,
                tid: 42,
                exec: None,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        assert!(text.contains("retry-after: 1\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
