//! `slokit compare`: the side-by-side scheduler comparison. Parses flags
//! over the experiment file, shows progress, writes the report files and
//! maps failed gates to exit code 99.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use slokit::compare::{run_compare, CompareObserver, CompareOptions};
use slokit::experiment::{Experiment, Workload, DEFAULT_EXPERIMENT};
use slokit_functions::{RunRecord, Schedule};
use slokit_loadgen::{ClientConfig, Progress, Reporter};
use slokit_report::{exporter_for, parse_gates, Format, Report, ReportOptions};
use slokit_sched::Policy;

/// Exit code when a `--gate` threshold fails (k6's convention).
pub const EXIT_GATE_FAILED: i32 = slokit_report::GATE_FAILED_EXIT;

/// Arguments of `slokit compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file (default: the embedded profiles/default-experiment.toml).
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// Print the embedded default experiment and exit.
    #[arg(long)]
    pub print_default_experiment: bool,
    /// Run only these scenarios (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Policies to compare, comma-separated (cfs, fifo, two-level, las).
    #[arg(long, value_delimiter = ',')]
    pub policies: Option<Vec<Policy>>,
    /// Repetitions per policy.
    #[arg(long)]
    pub repetitions: Option<u32>,
    /// Seconds of arrivals per run (every scenario).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Target utilisation of the function CPUs (every scenario).
    #[arg(long)]
    pub rho: Option<f64>,
    /// Seed of the arrival schedules.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds of idle time between runs.
    #[arg(long, value_name = "SECONDS")]
    pub cooldown: Option<f64>,
    /// CPUs for the function workers, e.g. `1` or `2,3` (default: all but CPU 0).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub function_cpus: Option<Vec<usize>>,
    /// Worker threads per function host.
    #[arg(long)]
    pub workers: Option<usize>,
    /// A short smoke run: 3 s per run, one repetition.
    #[arg(long)]
    pub quick: bool,
    /// Profile every function again even when its profile is fresh.
    #[arg(long)]
    pub reprofile: bool,
    /// Folder for the report and run records (default: results/compare-<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// What to print on stdout: terminal, json, markdown or html.
    #[arg(long, default_value = "terminal")]
    pub format: String,
    /// A threshold like `auth.slo_attainment>=0.99` (repeatable); exit 99 when one fails.
    #[arg(long = "gate", value_name = "EXPR")]
    pub gates: Vec<String>,
    /// Measure even when the CPU check fails (a SCHED_FIFO canary that does
    /// not run on a function or agent CPU, or one busy in the kernel while
    /// idle); the report's notes then say so.
    #[arg(long)]
    pub force: bool,
}

impl Args {
    /// The experiment with every flag applied, validated.
    fn experiment(&self) -> anyhow::Result<Experiment> {
        let mut e = match &self.experiment {
            Some(path) => Experiment::load(path)?,
            None => Experiment::default_experiment(),
        };
        e.select_scenarios(&self.scenarios)
            .map_err(anyhow::Error::msg)?;
        if self.quick {
            e.repetitions = 1;
            e.cooldown_s = e.cooldown_s.min(0.5);
            for s in &mut e.scenarios {
                s.duration_s = s.duration_s.min(3.0);
            }
        }
        if let Some(p) = &self.policies {
            e.policies = p.clone();
        }
        if let Some(r) = self.repetitions {
            e.repetitions = r;
        }
        if let Some(seed) = self.seed {
            e.seed = seed;
        }
        if let Some(c) = self.cooldown {
            e.cooldown_s = c;
        }
        if let Some(cpus) = &self.function_cpus {
            e.placement.function_cpus = cpus.clone();
        }
        if let Some(w) = self.workers {
            e.placement.workers_per_host = w;
        }
        for s in &mut e.scenarios {
            if let Some(d) = self.duration {
                s.duration_s = d;
            }
            if let Some(r) = self.rho {
                match &mut s.workload {
                    Workload::Mix { rho, .. } | Workload::Azure2019 { rho, .. } => *rho = r,
                }
            }
        }
        e.validate()
            .map_err(|m| anyhow::anyhow!("after applying the flags: {m}"))?;
        Ok(e)
    }
}

/// Terminal progress: a line per run and, on a TTY, a bar while the load
/// runs.
struct Console {
    bar: ProgressBar,
    tty: bool,
}

impl Console {
    fn new() -> Self {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("  {bar:40} {pos}/{len} sent · {msg}")
                .expect("static template"),
        );
        Console {
            bar,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn line(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }
}

impl Reporter for Console {
    fn started(&self, schedule: &Schedule, _cfg: &ClientConfig) {
        self.bar.reset();
        self.bar.set_length(schedule.arrivals.len() as u64);
        if self.tty {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }
    fn progress(&self, p: &Progress) {
        self.bar.set_position(p.sent);
        self.bar.set_message(format!(
            "{} done, {} failed, {:.0}/{:.0} s",
            p.completed, p.failed, p.elapsed_s, p.duration_s
        ));
    }
    fn warning(&self, message: &str) {
        self.line(&format!("  warning: {message}"));
    }
    fn finished(&self, _record: &RunRecord) {
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
}

impl CompareObserver for Console {
    fn note(&self, text: &str) {
        self.line(text);
    }
    fn run_started(
        &self,
        scenario: &str,
        policy: &str,
        repetition: u32,
        index: usize,
        total: usize,
    ) {
        self.line(&format!(
            "[{index}/{total}] {scenario} · {policy} · repetition {}",
            repetition + 1
        ));
    }
    fn run_finished(&self, _scenario: &str, record: &RunRecord) {
        for f in &record.functions {
            let slo = f.slo.map_or("n/a".to_string(), |s| {
                format!("{:.1} %", s.attainment * 100.0)
            });
            // a function with no successful reply has no latency to show
            let (p50, p99) = f
                .response()
                .map_or(("–".to_string(), "–".to_string()), |r| {
                    (format!("{:.2}", r.p50 / 1e3), format!("{:.2}", r.p99 / 1e3))
                });
            let failed = match f.failure_kinds() {
                k if k.is_empty() => String::new(),
                k => format!("  failed: {k}"),
            };
            self.line(&format!(
                "    {:<16} n={:<6} p50 {p50:>9} ms  p99 {p99:>9} ms  SLO {slo}{failed}",
                f.label, f.invocations,
            ));
        }
    }
    fn profiler(&self) -> Box<dyn slokit_profiler::Observer + '_> {
        Box::new(ProfilerLines(self))
    }
}

struct ProfilerLines<'a>(&'a Console);

impl slokit_profiler::Observer for ProfilerLines<'_> {
    fn warning(&mut self, message: &str) {
        self.0.line(&format!("  {message}"));
    }
}

fn default_out_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("results").join(format!("compare-{secs}"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.print_default_experiment {
        print!("{DEFAULT_EXPERIMENT}");
        return Ok(0);
    }
    let experiment = args.experiment()?;
    let stdout_format: Format = args.format.parse()?;
    let gates = parse_gates(&args.gates)?;
    let out_dir = args.out.clone().unwrap_or_else(|| {
        experiment
            .out_dir
            .join(default_out_dir().file_name().expect("named"))
    });
    let opts = CompareOptions {
        experiment,
        root: std::env::current_dir().context("reading the current directory")?,
        out_dir: out_dir.clone(),
        slokit: std::env::current_exe().context("locating the slokit binary")?,
        reprofile: args.reprofile,
        force: args.force,
    };
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let console = Console::new();
    let outcome = run_compare(&opts, &stop, &console)?;
    if outcome.comparison.scenarios.is_empty() {
        if let Some(e) = outcome.error {
            return Err(e);
        }
        anyhow::bail!("stopped before any run finished; nothing to report");
    }
    let report = Report::build(
        &outcome.comparison,
        &ReportOptions {
            gates,
            ..ReportOptions::default()
        },
    )?;
    for format in [Format::Json, Format::Markdown, Format::Html] {
        let exporter = exporter_for(format);
        let path = out_dir.join(format!("report.{}", exporter.extension()));
        std::fs::write(&path, exporter.export(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let text = exporter_for(stdout_format).export(&report)?;
    std::io::Write::write_all(&mut std::io::stdout(), &text)?;
    eprintln!("report: {}", out_dir.join("report.html").display());
    if let Some(e) = outcome.error {
        eprintln!("error: {e:#}\n(the report above covers the runs that finished)");
        return Ok(crate::cli::EXIT_ERROR);
    }
    if outcome.interrupted || stop.load(Ordering::Relaxed) {
        eprintln!("interrupted: the report covers the runs that finished");
        return Ok(130);
    }
    if report.gates.iter().any(|g| !g.passed) {
        return Ok(EXIT_GATE_FAILED);
    }
    Ok(0)
}
