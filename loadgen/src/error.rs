//! The one error type of slokit-loadgen: what callers may match on, each
//! message naming the thing and the fix.
//!
//! Every message is complete on its own, the OS error included, so no
//! variant also exposes that error as its `source()`: a caller printing the
//! chain (anyhow's `{:#}`) would otherwise print it twice.

use std::path::PathBuf;

/// Everything that can go wrong while building or replaying a schedule.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A command-line or library option is out of range or malformed.
    #[error("invalid option {option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
    /// A trace file could not be opened or read.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A trace file is malformed at a known position (1-based line and
    /// column, as the csv crate counts them).
    #[error("{path}:{line}:{column}: {message}")]
    Trace {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// The target does not accept connections (probed before the run).
    #[error("cannot connect to {url} ({error}): is the target running? Start it (for example `slokit serve`) or fix --target")]
    Unreachable { url: String, error: std::io::Error },
    /// An output file (`--out`, `--hlog`, `--csv`) cannot be written.
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
    /// The schedule violates its invariants.
    #[error("invalid schedule: {0}")]
    Schedule(String),
    /// A run in which no invocation got a successful reply.
    /// `failures` says how they failed (`all failed (133 connect errors)`).
    #[error("no invocation succeeded: {sent} sent, {failures}; there is no response time to report. Check that the target serves HTTP at that address (`slokit invoke`, or curl)")]
    NoSuccess { sent: u64, failures: String },
    /// The runtime could not be built or a worker thread failed.
    #[error("load generator runtime failed: {0}")]
    Runtime(String),
}

impl LoadgenError {
    pub(crate) fn invalid(option: &'static str, message: impl Into<String>) -> Self {
        LoadgenError::Invalid {
            option,
            message: message.into(),
        }
    }
}
