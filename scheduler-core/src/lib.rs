//! slokit-sched: the scheduling agent (eBPF monitor, register, runtime,
//! controller, actuator) for the `cfs`, `fifo` and `two-level` policies, and
//! a discrete-event simulator of the same policies with the SRPT bound.

pub mod params;

pub use params::{SliceController, TwoLevelParams};
pub mod sim;
