//! `slokit gate`: re-profiles functions and compares them with committed
//! baseline profiles; exit 0 when nothing regressed, 1 on a confirmed
//! regression, 2 on usage, configuration or environment errors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use slokit_profiler::gate::export::exporter_for;
use slokit_profiler::gate::{run_gate, GateSettings};
use slokit_profiler::ProfileError;

use super::invoke::params_object;
use super::profile::{parse_fraction, MeasureArgs, TerminalObserver, EXIT_INTERRUPTED};

/// Output formats of the gate report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A terminal table.
    Table,
    Json,
    Markdown,
    Junit,
}

/// Arguments of `slokit gate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Functions to gate (default: every profile in the baseline directory).
    pub functions: Vec<String>,
    /// Directory of the committed baseline profiles.
    #[arg(long, default_value = "profiles")]
    pub baseline: PathBuf,
    /// Noise threshold: smaller changes never count (0.05 or 5%).
    #[arg(long, default_value = "5%", value_parser = parse_fraction)]
    pub threshold: f64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override a baseline parameter as key=value for the current measurement. Repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Report a suspected regression without re-measuring it first.
    #[arg(long)]
    pub no_confirm: bool,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let settings = args.measure.settings()?;
    let overrides = params_object(&args.params)?;
    let gs = GateSettings {
        threshold: args.threshold,
        seed: args.measure.seed,
        confirm: !args.no_confirm,
        ..GateSettings::default()
    };
    let catalogue = args.measure.catalogue();
    let mut observer = TerminalObserver::default();
    let report = match run_gate(
        &args.baseline,
        &args.functions,
        &overrides,
        &catalogue,
        &settings,
        &gs,
        &mut observer,
    ) {
        Ok(r) => r,
        Err(ProfileError::Interrupted) => {
            eprintln!("interrupted: scheduling policy and affinities were restored");
            return Ok(EXIT_INTERRUPTED);
        }
        Err(e) => return Err(e.into()),
    };
    drop(observer);
    let name = match args.format {
        Format::Table => "table",
        Format::Json => "json",
        Format::Markdown => "markdown",
        Format::Junit => "junit",
    };
    let bytes = exporter_for(name)
        .expect("every Format has an exporter")
        .serialize(&report)?;
    match &args.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write the report to `{}`", path.display()))?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(if report.has_regression() { 1 } else { 0 })
}
