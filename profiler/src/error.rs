//! The one error type of slokit-profiler. Every message names the thing that
//! went wrong and, where there is one, the fix (hyperfine's habit).

use std::path::PathBuf;

/// Everything the profiler and the gate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A statistic was asked of data that cannot support it.
    #[error("invalid sample: {0}")]
    InvalidSample(String),
    /// Settings or flags that contradict each other or are out of range.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The function name is not in the catalogue.
    #[error(transparent)]
    UnknownFunction(#[from] slokit_functions::catalogue::UnknownFunction),
    /// One invocation of the function failed; a profile of failures is no profile.
    #[error("`{function}` failed during profiling: {message}")]
    Invoke { function: String, message: String },
    /// A profile (or profile config) file could not be read or written.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A profile file exists but does not follow the schema.
    #[error("malformed profile `{path}`: field `{field}`: {message}")]
    Malformed {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A profile file that does not parse or follow the schema, with the
    /// place in the file (line 0: unknown).
    #[error(
        "malformed profile `{path}`, line {line}, column {column}: field `{field}`: {message}"
    )]
    MalformedAt {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    /// A profile written by a newer slokit.
    #[error("profile `{path}`: field `version` is {found}, this slokit reads version {supported} (upgrade slokit or re-run `slokit profile`)")]
    NewerVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A system call of the isolation set-up failed in a way we cannot work around.
    #[error("{0}")]
    System(String),
    /// Ctrl-C (SIGINT) or SIGTERM arrived; everything was restored.
    #[error("interrupted by a signal; scheduling policy and affinities were restored")]
    Interrupted,
    /// The gate's baseline is missing or unusable.
    #[error("baseline: {0}")]
    Baseline(String),
    /// Counting instructions failed (no counter and no Valgrind, a child that failed).
    #[error("instruction count: {0}")]
    Count(String),
    /// An exporter could not serialise the gate report.
    #[error("cannot write the {format} report: {message}")]
    Export {
        format: &'static str,
        message: String,
    },
}
