//! `slokit compare`: profiles the functions when needed, starts one function
//! host per function on the function CPUs, replays the same arrival schedule
//! under each policy with the scheduling agent attached, adds the simulated
//! SRPT bound, and hands the records to the report.

pub mod children;
