//! slokit-sched: the scheduling agent (eBPF monitor, register, policy,
//! actuator) for the `cfs`, `fifo`, `two-level` and `las` policies, and a
//! discrete-event simulator that drives the same policy objects over a
//! model of the kernel's classes, with the SRPT bound.
//!
//! The agent's entry point is [`run_agent`]; `slokit sched` is its CLI and
//! `slokit compare` drives that CLI (its stdout `agent ready` line and its
//! `--metrics-out` JSON, [`AgentMetrics`], are the contract).

pub mod actuator;
pub mod agent;
pub mod clock;
pub mod error;
pub mod guardian;
pub mod idle_poll;
pub mod metrics;
pub mod monitor;
pub mod params;
pub mod policy;
pub mod register;
pub mod runtime;
pub mod skel;
pub mod targets;

pub use agent::{run_agent, AgentConfig, IdlePoll, ReadyHook};
pub use error::SchedError;
pub use metrics::{AgentMetrics, LatencyStats, METRICS_SCHEMA};
pub use monitor::MonitorChoice;
pub use params::{PolicyParams, SliceController, TwoLevelParams};
pub use policy::{LasParams, Policy, SchedPolicy};
pub mod sim;
