//! The `slokit` library behind the binary: the experiment files and the
//! orchestration of `slokit compare`, which ties the profiler, the load
//! generator, the scheduling agent, the simulator and the report together.

pub mod compare;
pub mod experiment;
