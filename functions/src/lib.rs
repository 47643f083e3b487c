//! slokit-functions: the function catalogue (`auth`, `aes`, `video`, `spin`)
//! and the function host behind `slokit serve`.
//!
//! The types every slokit crate shares (arrival schedules, run records, the
//! environment fingerprint, the notify protocol) live in `slokit-model`; they
//! are re-exported here so `slokit_functions::X` paths keep working. Below
//! this crate are only `slokit-model` and `slokit-sys`, the OS layer
//! (affinity, epoll, clocks).

pub mod aes_ctr;
pub mod auth;
pub mod catalogue;
pub mod host;
pub mod spin;
pub mod video;

pub use catalogue::{Catalogue, CatalogueConfig, Function, FunctionInfo, InvokeError, ParamInfo};
pub use slokit_model::{contract, environment, notify, record, schedule};
pub use slokit_model::{
    Arrival, ArrivalExtra, Environment, FunctionRecorder, FunctionStats, Outcome, RunRecord,
    Sample, Schedule, ScheduledFunction, VERSION,
};
