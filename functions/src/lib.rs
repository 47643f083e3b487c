//! slokit-functions: the function catalogue (`auth`, `aes`, `video`, `spin`),
//! the function host behind `slokit serve`, and the small set of types every
//! other slokit crate shares (arrival schedules, run records, the
//! environment fingerprint).
//!
//! Crates depend downward only (see DESIGN.md): the profiler, the load
//! generator and the scheduler all build on this crate, never on each other;
//! below it is only `slokit-sys`, the OS layer (affinity, epoll, clocks).

pub mod aes_ctr;
pub mod auth;
pub mod catalogue;
pub mod environment;
pub mod host;
pub mod notify;
pub mod record;
pub mod schedule;
pub mod spin;
pub mod video;

pub use catalogue::{Catalogue, CatalogueConfig, Function, FunctionInfo, InvokeError, ParamInfo};
pub use environment::Environment;
pub use record::{FunctionRecorder, FunctionStats, Outcome, RunRecord, Sample};
pub use schedule::{Arrival, ArrivalExtra, Schedule, ScheduledFunction};

/// The slokit version, stamped into every record and report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
