//! Subcommands of `slokit`: one module each, holding its clap arguments and
//! the glue from those arguments to the library crates.

use clap::{Parser, Subcommand};

mod compare;
mod count_instructions;
mod gate;
mod gate_worker;
mod invoke;
mod loadgen;
mod profile;
mod sched;
mod serve;
mod simulate;

/// Exit code for usage, configuration and environment errors.
pub const EXIT_ERROR: i32 = 2;

/// slokit — deadlines, regression gates and scheduler comparison for
/// serverless functions on Linux nodes.
#[derive(Debug, Parser)]
#[command(name = "slokit", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay one arrival schedule under cfs, fifo and two-level and report side by side.
    Compare(compare::Args),
    /// Profile functions on a pinned, isolated CPU and derive their deadlines.
    Profile(profile::Args),
    /// Re-profile and fail (exit 1) on a real regression against committed profiles.
    Gate(gate::Args),
    /// Run the function host: HTTP/1.1, one worker thread per request.
    Serve(serve::Args),
    /// Run one function in-process and print its JSON reply.
    Invoke(invoke::Args),
    /// Drive function endpoints open-loop from an arrival process or a trace.
    Loadgen(loadgen::Args),
    /// Run the scheduling agent (cfs, fifo, two-level) over target processes.
    Sched(sched::Args),
    /// Simulate the policies (and the SRPT bound) on c CPUs.
    Simulate(simulate::Args),
    /// The paired gate's worker process (internal; see `gate --against`).
    #[command(name = "gate-worker", hide = true)]
    GateWorker(gate_worker::Args),
    /// Invoke a built-in inside the region Valgrind counts (internal; see `--metric instructions`).
    #[command(name = "__count-instructions", hide = true)]
    CountInstructions(count_instructions::Args),
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Compare(a) => compare::run(a),
        Command::Profile(a) => profile::run(a),
        Command::Gate(a) => gate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Invoke(a) => invoke::run(a),
        Command::Loadgen(a) => loadgen::run(a),
        Command::Sched(a) => sched::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::GateWorker(a) => gate_worker::run(a),
        Command::CountInstructions(a) => count_instructions::run(a),
    }
}
