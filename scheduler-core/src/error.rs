//! The crate's error type: what callers of the agent may match on. Messages
//! name the thing and the fix.

use std::path::PathBuf;

/// Errors of the scheduling agent.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// Invalid flags or configuration.
    #[error("{0}")]
    Config(String),
    /// A target the agent must never touch.
    #[error("refusing to schedule pid {pid}: {reason}")]
    Refused { pid: u32, reason: String },
    /// A target that does not exist.
    #[error("no process with pid {0} (is the function host running?)")]
    NoSuchProcess(u32),
    /// `sched_setattr` was refused.
    #[error("cannot set {policy} on tid {tid}: {source} (run as root or grant CAP_SYS_NICE)")]
    Permission {
        tid: u32,
        policy: &'static str,
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The eBPF monitor could not start; the message says what is missing.
    #[error("eBPF monitor unavailable: {0}")]
    Bpf(String),
    /// The notify monitor could not start.
    #[error("notify monitor: {0}")]
    Notify(String),
}

impl SchedError {
    pub(crate) fn sys(what: impl Into<String>, source: std::io::Error) -> Self {
        SchedError::Sys {
            what: what.into(),
            source,
        }
    }
}
