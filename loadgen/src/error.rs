//! The one error type of slokit-loadgen: what callers may match on, each
//! message naming the thing and the fix.

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
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    #[error("cannot connect to {url} ({source}): is the target running? Start it (for example `slokit serve`) or fix --target")]
    Unreachable {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// An output file (`--out`, `--hlog`, `--csv`) cannot be written.
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
    /// The schedule violates its invariants.
    #[error("invalid schedule: {0}")]
    Schedule(String),
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
