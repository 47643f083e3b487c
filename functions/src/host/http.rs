//! The slice of HTTP/1.1 the host speaks, on a blocking socket: read one
//! request (head parsed with `httparse`, body by `Content-Length`), write
//! one reply with `Content-Length`. Chunked request bodies are refused with
//! 411; `Expect: 100-continue` is honoured.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use slokit_model::contract::{EXEC_US_HEADER, TID_HEADER};

/// Longest request head (request line + headers) accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
const READ_CHUNK: usize = 16 * 1024;

/// A connection as the host keeps it: the socket, bytes read past the last
/// request (pipelining), and its id for the notify protocol.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

/// Request methods the host routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
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
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
}

/// Why no request could be read; each maps to a status and closes the
/// connection, except `Idle` and `Closed`.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing to read after all (spurious readiness): park it again.
    Idle,
    /// The peer closed (or reset) between requests: drop it quietly.
    Closed,
    /// Status and detail to answer with before closing.
    Reject(u16, String),
}

/// Reads one complete request into `conn.buf`. The first read does not
/// block (the poller said the socket is readable; if it is not, the
/// connection is parked again); later reads block up to the socket's read
/// timeout, so a client stalling mid-request holds its worker at most that
/// long.
pub(crate) fn read_request(conn: &mut Conn, max_body: usize) -> Result<Head, ReadError> {
    let mut first = conn.buf.is_empty();
    let mut sent_continue = false;
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() && !conn.buf.is_empty() {
            head = parse_head(&conn.buf, max_body)?;
        }
        if let Some(h) = &head {
            if h.body_len > 0 && !sent_continue && conn.buf.len() < h.head_len + h.body_len {
                if expects_continue(&conn.buf[..h.head_len]) {
                    conn.stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .map_err(|_| ReadError::Closed)?;
                }
                sent_continue = true;
            }
            if conn.buf.len() >= h.head_len + h.body_len {
                return Ok(head.take().expect("checked above"));
            }
        }
        match recv_more(conn, first) {
            Ok(0) if conn.buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Reject(
                    400,
                    "connection closed in the middle of a request".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if first && e.kind() == io::ErrorKind::WouldBlock => {
                return Err(ReadError::Idle)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(ReadError::Reject(
                    408,
                    "request not completed within the read timeout".into(),
                ))
            }
            Err(_) if conn.buf.is_empty() => return Err(ReadError::Closed),
            Err(e) => return Err(ReadError::Reject(400, format!("reading the request: {e}"))),
        }
        first = false;
    }
}

/// One `recv(2)` appended to the connection buffer; `dont_wait` makes it
/// non-blocking for this call only.
fn recv_more(conn: &mut Conn, dont_wait: bool) -> io::Result<usize> {
    conn.buf.reserve(READ_CHUNK);
    let spare = conn.buf.spare_capacity_mut();
    let flags = if dont_wait { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: the pointer and length describe the buffer's spare
        // capacity, which the kernel may write to.
        let n = unsafe {
            libc::recv(
                conn.stream.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                flags,
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised the first `n` spare bytes.
            unsafe { conn.buf.set_len(conn.buf.len() + n) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Parses the head once it is complete; `Ok(None)` while more is needed.
fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<Head>, ReadError> {
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
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    let http10 = req.version == Some(0);

    let mut close = false;
    let mut ka = false;
    let mut body_len: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ReadError::Reject(400, "invalid Content-Length".into()))?;
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
        head_len,
        body_len,
    }))
}

fn expects_continue(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return false;
    }
    req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("expect")
            && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
    })
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
    pub(crate) tid: u32,
    pub(crate) exec: Option<Duration>,
}

/// Serialises `reply` into `out` (cleared first): status line, headers,
/// body, ready for one `send`.
pub(crate) fn encode_reply(reply: &Reply<'_>, out: &mut Vec<u8>) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{TID_HEADER}: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        reply.tid
    );
    if let Some(exec) = reply.exec {
        let _ = write!(out, "{EXEC_US_HEADER}: {}\r\n", exec.as_micros());
    }
    if let Some(allow) = reply.allow {
        let _ = write!(out, "allow: {allow}\r\n");
    }
    if !reply.keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if reply.http10_keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(reply.body);
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
}
