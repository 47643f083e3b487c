//! slokit-loadgen: open-loop replay of arrival processes (constant, Poisson,
//! bursty), weighted function mixes and real traces (Azure Functions
//! 2019/2021, plain CSV) against function endpoints, recording what every
//! invocation experienced.
//!
//! Two halves, joined only by [`slokit_model::Schedule`]:
//! - *what to send*: [`arrivals`], [`mix`] and [`trace`] turn a process or a
//!   trace into a precomputed, seeded schedule (same seed, same schedule,
//!   bit for bit);
//! - *sending it*: [`client`] replays a schedule open-loop (sends follow the
//!   schedule whatever the replies do), measures response time from the
//!   intended send time (coordinated-omission free, after Gil Tene's
//!   wrk2/HdrHistogram work) and returns a [`slokit_model::RunRecord`].

pub mod arrivals;
pub mod client;
mod error;
pub mod limits;
pub mod mix;
pub mod trace;
pub mod units;

pub use arrivals::{process_schedule, BurstySpec, Process, ProcessSpec};
pub use client::{
    ctrl_c_flag, require_success, run, run_blocking, CapMode, ClientConfig, NoReporter, Progress,
    Reporter,
};
pub use error::LoadgenError;
pub use limits::{check_expected_invocations, DEFAULT_MAX_INVOCATIONS};
pub use mix::{mix_schedule, parse_mix, Load, MixEntry, MixSpec};
pub use trace::{azure2019, azure2021, csv_trace};
