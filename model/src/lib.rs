//! slokit-model: the shared model — the types and contracts every slokit
//! process and crate agrees on: arrival schedules, run records and
//! timelines, the environment fingerprint, the notify protocol, units and
//! duration parsing, the workload mix, and the strings and exit codes that
//! form a contract between processes ([`contract`]).
//!
//! It sits at the bottom of the workspace next to `slokit-sys` and depends
//! on no other slokit crate, so every crate may use it without pulling in
//! the function catalogue (AES, JPEG and video decoding).

pub mod contract;
pub mod environment;
pub mod mix;
pub mod notify;
pub mod record;
pub mod schedule;
pub mod units;

pub use environment::Environment;
pub use record::{FunctionRecorder, FunctionStats, Outcome, RunRecord, Sample};
pub use schedule::{Arrival, ArrivalExtra, Schedule, ScheduledFunction};

/// The slokit version, stamped into every record and report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
