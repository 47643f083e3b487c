//! `slokit gate`: re-profiles functions and compares them with committed
//! baseline profiles, or with `--against OLD` runs the old and the current
//! build paired; exit 0 when nothing regressed, 1 on a confirmed
//! regression, 2 on usage, configuration or environment errors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use slokit_profiler::gate::against::{run_paired_gate, AgainstOptions};
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
    /// Noise threshold: smaller changes never count (0.05 or 5%; default 5%
    /// for wall time, 1% for --metric instructions).
    #[arg(long, value_parser = parse_fraction)]
    pub threshold: Option<f64>,
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
    /// Paired gate: run OLD and the current build interleaved on one CPU and
    /// decide on paired ratios (drift cancels). OLD is the old slokit
    /// binary for built-in functions, the old command for a --command
    /// profile, the old URL for a --url profile.
    #[arg(long, value_name = "OLD")]
    pub against: Option<String>,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let settings = args.measure.settings(super::profile::TimeDefaults::GATE)?;
    let overrides = params_object(&args.params)?;
    let metric: slokit_profiler::Metric = args.measure.metric.into();
    anyhow::ensure!(
        !(args.against.is_some() && metric == slokit_profiler::Metric::Instructions),
        "--against runs old and new builds for their times; --metric instructions compares counts \
         with the baseline profiles' counts: use one or the other"
    );
    let gs = GateSettings {
        threshold: args.threshold.unwrap_or(match metric {
            slokit_profiler::Metric::WallTime => 0.05,
            slokit_profiler::Metric::Instructions => 0.01,
        }),
        seed: args.measure.seed,
        confirm: !args.no_confirm,
        ..GateSettings::default()
    };
    let catalogue = args.measure.catalogue();
    let cpu_notes = args.measure.check_cpu()?;
    let mut observer = TerminalObserver::default();
    let result = match &args.against {
        Some(against) => {
            let opts = AgainstOptions {
                against: against.clone(),
                current_exe: std::env::current_exe()
                    .context("cannot find this slokit binary for the paired gate's new side")?,
                child_env: args
                    .measure
                    .auth_secret
                    .iter()
                    .map(|s| ("SLOKIT_AUTH_SECRET".to_string(), s.clone()))
                    .collect(),
            };
            run_paired_gate(
                &args.baseline,
                &args.functions,
                &overrides,
                &opts,
                &catalogue,
                &settings,
                &gs,
                &mut observer,
            )
        }
        None => run_gate(
            &args.baseline,
            &args.functions,
            &overrides,
            &catalogue,
            &settings,
            &gs,
            &mut observer,
        ),
    };
    let mut report = match result {
        Ok(r) => r,
        Err(ProfileError::Interrupted) => {
            eprintln!("interrupted: scheduling policy and affinities were restored");
            return Ok(EXIT_INTERRUPTED);
        }
        Err(e) => return Err(e.into()),
    };
    drop(observer);
    report.warnings.extend(cpu_notes);
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
