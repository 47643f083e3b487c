//! The strings and exit codes that form a contract between slokit
//! processes. Each is written by one side and read by another (often a
//! different binary or crate), so both sides use these constants instead of
//! typing the literal again.

/// Response header in which the function host reports a request's execution
/// time in microseconds; the load generator reads it.
pub const EXEC_US_HEADER: &str = "x-slokit-exec-us";

/// Response header in which the function host reports the thread id of the
/// worker that served the request.
pub const TID_HEADER: &str = "x-slokit-tid";

/// Prefix of the line `slokit serve` prints on stdout once it accepts
/// requests (`listening on http://ADDR`); `slokit compare` waits for it.
pub const LISTENING_ON: &str = "listening on";

/// The line `slokit sched` prints on stdout once monitoring runs;
/// `slokit compare` waits for it.
pub const AGENT_READY: &str = "agent ready";

/// Exit code of `slokit compare` when a `--gate` threshold fails (k6's
/// convention).
pub const GATE_FAILED_EXIT: i32 = 99;
