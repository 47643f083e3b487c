//! `slokit profile`: measures functions on a pinned, isolated CPU and writes
//! `profiles/<function>.toml` with the derived deadline. Presentation only:
//! the progress bar and tables here implement the profiler's `Observer`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use slokit_functions::{Catalogue, CatalogueConfig};
use slokit_profiler::{
    CountSettings, Metric, Observer, Phase, Profile, ProfileConfig, ProfileError, Progress,
    RuleOverrides, SamplingPlan, Settings, SystemReport, Target, TimeFrom, CONFIG_FILE,
};

use super::invoke::params_object;
use slokit_model::units::human_us as us;

/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Parses `5%` (percent) or `0.05` (fraction).
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.trim().strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (s.trim(), 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number (write 0.02 or 2%)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative number"));
    }
    Ok(v / scale)
}

/// `--metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Wall execution time.
    #[value(name = "wall-time", alias = "wall", alias = "time")]
    WallTime,
    /// Instructions executed per invocation.
    Instructions,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::WallTime => Metric::WallTime,
            MetricArg::Instructions => Metric::Instructions,
        }
    }
}

/// `--time-from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFromArg {
    /// slokit's clock around each run.
    Clock,
    /// The last number each run of the --command prints (seconds, or with a
    /// unit: s, ms, us, ns).
    Stdout,
    /// The x-slokit-exec-us header (µs) of each reply of the --url: the
    /// runtime's own report of the execution.
    Header,
}

/// Measurement flags shared by `profile` and `gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MeasureArgs {
    /// CPU to measure on (default: the last CPU); slokit's other threads move to the rest.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// SCHED_FIFO priority of the measurement thread (1..=99).
    #[arg(long, default_value_t = 50)]
    pub priority: i32,
    /// Move other movable tasks off the measurement CPU for the duration
    /// (changes other processes' affinity; each is restored afterwards).
    #[arg(long)]
    pub isolate: bool,
    /// Warm-up runs, discarded.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Target half-width of the bootstrap CI of the deadline percentile (0.02 or 2%).
    #[arg(long, default_value = "2%", value_parser = parse_fraction)]
    pub precision: f64,
    /// Maximum counted runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub runs: u64,
    /// Maximum time per function, seconds (warm-up included) [default:
    /// profile 45, gate 12].
    #[arg(long)]
    pub max_time: Option<f64>,
    /// Time before the precision rule may stop, seconds (warm-up included),
    /// so the sample spans the machine's drift, not one quiet stretch
    /// [default: profile 30 (at most --max-time), gate 0].
    #[arg(long)]
    pub min_time: Option<f64>,
    /// Largest share of wall time the measurement thread may be busy
    /// (0 < d ≤ 0.9): it rests between batches so SCHED_FIFO never meets
    /// the kernel's RT throttling (95 % of each second).
    #[arg(long, default_value = "50%", value_parser = parse_fraction)]
    pub duty_cycle: f64,
    /// Busy time of one batch of back-to-back runs before a rest, ms.
    #[arg(long, default_value_t = 50.0)]
    pub batch_ms: f64,
    /// Longest one batch of runs may take, seconds, before it is abandoned.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Seed of the reservoir and bootstrap generators.
    #[arg(long, default_value_t = 0x5e1f_0b5e)]
    pub seed: u64,
    /// HS256 secret for `auth`'s JWT tokens.
    #[arg(long, env = "SLOKIT_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// `instructions`: profile adds the instruction count of one invocation
    /// (hardware counter, else Valgrind); gate compares counts instead of
    /// times (default threshold 1 %).
    #[arg(long, value_enum, default_value_t = MetricArg::WallTime)]
    pub metric: MetricArg,
    /// Invocations counted with --metric instructions (each counted on its own).
    #[arg(long, default_value_t = 3)]
    pub count_invocations: u64,
    /// Measure even when the CPU check fails (a SCHED_FIFO canary that does
    /// not run on the measurement CPU, or the CPU busy in the kernel while
    /// idle); the output and the written files then say so.
    #[arg(long)]
    pub force: bool,
}

/// How long a command measures when `--max-time`/`--min-time` are not given.
#[derive(Debug, Clone, Copy)]
pub struct TimeDefaults {
    /// `--max-time`, s.
    pub max_time: f64,
    /// `--min-time`, s; lowered to `--max-time` when that is shorter.
    pub min_time: f64,
}

impl TimeDefaults {
    /// `profile`: a deadline is only as reproducible as the span of the
    /// machine's drift it samples; on shared VMs slow stretches last tens
    /// of seconds, so a profile spans 30 s (docs/profiler.md, *Deadline
    /// reproducibility*).
    pub const PROFILE: Self = Self {
        max_time: 45.0,
        min_time: 30.0,
    };
    /// `gate`: compares medians (robust to slow stretches) and confirms a
    /// regression with a second measurement, so it stops at precision.
    pub const GATE: Self = Self {
        max_time: 12.0,
        min_time: 0.0,
    };
}

impl MeasureArgs {
    /// Validated settings (deadline rule left at its default for the caller).
    pub fn settings(&self, defaults: TimeDefaults) -> anyhow::Result<Settings> {
        let max_time = self.max_time.unwrap_or(defaults.max_time);
        let min_time = self
            .min_time
            .unwrap_or_else(|| defaults.min_time.min(max_time));
        anyhow::ensure!(
            max_time.is_finite() && max_time > 0.0,
            "--max-time must be a positive number of seconds, got {max_time}"
        );
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout > 0.0,
            "--timeout must be a positive number of seconds, got {}",
            self.timeout
        );
        anyhow::ensure!(
            min_time.is_finite() && min_time >= 0.0 && min_time <= max_time,
            "--min-time must be between 0 and --max-time ({max_time} s), got {min_time}"
        );
        anyhow::ensure!(
            self.duty_cycle > 0.0 && self.duty_cycle <= 0.9,
            "--duty-cycle must be in (0, 0.9] (RT throttling takes 5 % of every second), got {}",
            self.duty_cycle
        );
        anyhow::ensure!(
            self.batch_ms.is_finite() && self.batch_ms > 0.0 && self.batch_ms <= 500.0,
            "--batch-ms must be in (0, 500], got {}",
            self.batch_ms
        );
        let s = Settings {
            cpu: self.cpu,
            priority: self.priority,
            isolate: self.isolate,
            plan: SamplingPlan {
                warmup: self.warmup,
                max_runs: self.runs,
                max_time: Duration::from_secs_f64(max_time),
                min_time: Duration::from_secs_f64(min_time),
                precision: self.precision,
                seed: self.seed,
                duty_cycle: self.duty_cycle,
                batch_target: Duration::from_secs_f64(self.batch_ms / 1e3),
                ..SamplingPlan::default()
            },
            timeout: Duration::from_secs_f64(self.timeout),
            metric: self.metric.into(),
            count: CountSettings {
                invocations: self.count_invocations,
                // The child reads the secret from the environment, never argv.
                child_env: self
                    .auth_secret
                    .iter()
                    .map(|s| ("SLOKIT_AUTH_SECRET".to_string(), s.clone()))
                    .collect(),
                ..CountSettings::default()
            },
            ..Settings::default()
        };
        s.validate()?;
        Ok(s)
    }

    /// The built-in catalogue with the `auth` secret applied.
    pub fn catalogue(&self) -> Catalogue {
        let mut config = CatalogueConfig::default();
        if let Some(s) = &self.auth_secret {
            config.auth_secret = s.clone().into_bytes();
        }
        Catalogue::builtin(&config)
    }

    /// The CPU check of the measurement CPU (`slokit_sys::canary`): refuses
    /// an unhealthy CPU unless `--force`. Prints and returns the warnings
    /// to record.
    pub fn check_cpu(&self) -> anyhow::Result<Vec<String>> {
        let (cpu, _) = slokit_profiler::isolation::choose_cpu(self.cpu)?;
        let notes = slokit_sys::canary::preflight(&[cpu], self.force)?;
        for n in &notes {
            eprintln!("warning: {n}");
        }
        Ok(notes)
    }
}

/// Arguments of `slokit profile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Built-in functions to profile (auth, aes, video, spin).
    #[arg(required_unless_present_any = ["command", "url"])]
    pub functions: Vec<String>,
    /// Profile a command instead: one process execution per run, e.g. 'python3 test1.py'.
    #[arg(long, conflicts_with_all = ["url", "functions"])]
    pub command: Option<String>,
    /// Profile an HTTP endpoint instead: one request per run (params become a JSON POST body).
    #[arg(long, conflicts_with = "functions")]
    pub url: Option<String>,
    /// Where each run's time comes from: `clock` (slokit's, around the run),
    /// `stdout` (the last number the --command printed, e.g. the seed's
    /// `print(end_time - start_time)`) or `header` (the x-slokit-exec-us
    /// header, µs, of each --url reply), so the deadline is the function's
    /// and not the interpreter's or the HTTP round trip's.
    #[arg(long, value_enum, default_value_t = TimeFromArg::Clock)]
    pub time_from: TimeFromArg,
    /// Profile name for --command/--url (file `<out-dir>/<name>.toml`).
    #[arg(long)]
    pub name: Option<String>,
    /// A parameter as key=value (JSON value when it parses, else a string). Repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Deadline percentile P (default 99, or profile.toml).
    #[arg(long)]
    pub percentile: Option<f64>,
    /// Deadline slack multiplier (default 1.5, or profile.toml).
    #[arg(long)]
    pub slack: Option<f64>,
    /// SLO target X %: X % of invocations within the deadline (default 99).
    #[arg(long)]
    pub slo: Option<f64>,
    /// Directory the profiles are written to.
    #[arg(long, default_value = "profiles")]
    pub out_dir: PathBuf,
    /// Deadline rules per function (default: <out-dir>/profile.toml, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// The terminal observer: environment lines and warnings on stderr, a
/// progress bar (hidden when stderr is not a terminal).
#[derive(Default)]
pub struct TerminalObserver {
    bar: Option<ProgressBar>,
    function: String,
}

impl std::fmt::Debug for TerminalObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalObserver")
            .field("function", &self.function)
            .finish()
    }
}

impl TerminalObserver {
    fn bar(&mut self, max_time_s: f64) -> &ProgressBar {
        let function = self.function.clone();
        self.bar.get_or_insert_with(|| {
            let target = if std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            };
            let bar = ProgressBar::with_draw_target(Some((max_time_s * 1000.0) as u64), target);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>8} [{bar:30}] {elapsed:>4} {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(function);
            bar
        })
    }

    fn clear_bar(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Observer for TerminalObserver {
    fn start(&mut self, function: &str) {
        self.function = function.to_string();
        eprintln!("profiling `{function}`");
    }

    fn system(&mut self, report: &SystemReport) {
        for (k, v) in report.lines() {
            eprintln!("  {k:<22} {v}");
        }
    }

    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }

    fn progress(&mut self, p: &Progress) {
        let bar = self.bar(p.max_time_s);
        bar.set_position((p.elapsed_s * 1000.0) as u64);
        let phase = match p.phase {
            Phase::Warmup => "warm-up",
            Phase::Measuring => "runs",
        };
        let ci = p
            .ci_half_width
            .map_or(String::new(), |h| format!(", CI ±{:.1} %", h * 100.0));
        bar.set_message(format!("{phase} {}{ci}", p.runs));
    }

    fn finish(&mut self, _profile: &Profile) {
        self.clear_bar();
    }
}

impl Drop for TerminalObserver {
    fn drop(&mut self) {
        self.clear_bar();
    }
}

/// The summary table printed after profiling.
pub fn summary_table(profiles: &[(Profile, PathBuf)]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "function", "runs", "min", "p50", "p99", "p99.9", "max", "cv", "outliers", "deadline",
        "stop", "policy", "file",
    ]);
    for (p, path) in profiles {
        let s = &p.summary;
        t.add_row(vec![
            p.function.clone(),
            s.runs.to_string(),
            us(s.min_us),
            us(s.p50_us),
            us(s.p99_us),
            us(s.p999_us),
            us(s.max_us),
            format!("{:.3}", s.cv),
            format!("{} mild, {} severe", s.outliers.mild(), s.outliers.severe()),
            format!(
                "{} (p{} × {})",
                us(p.deadline_us()),
                p.deadline.percentile,
                p.deadline.slack
            ),
            format!(
                "{} (±{:.1} %)",
                p.sampling.stop_reason,
                p.sampling.percentile_ci_half_width * 100.0
            ),
            format!("{} cpu {}", p.isolation.policy, p.isolation.cpu),
            path.display().to_string(),
        ]);
    }
    t
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut settings = args.measure.settings(TimeDefaults::PROFILE)?;
    settings.time_from = match args.time_from {
        TimeFromArg::Clock => TimeFrom::Clock,
        TimeFromArg::Stdout => TimeFrom::Stdout,
        TimeFromArg::Header => TimeFrom::Header,
    };
    let params = params_object(&args.params)?;
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| args.out_dir.join(CONFIG_FILE));
    let config = ProfileConfig::load(&config_path)?;
    let flags = RuleOverrides {
        percentile: args.percentile,
        slack: args.slack,
        slo_target_percent: args.slo,
    };
    let catalogue = args.measure.catalogue();
    let jobs: Vec<(String, Target)> = if let Some(c) = &args.command {
        vec![(
            args.name.clone().unwrap_or_else(|| "command".into()),
            Target::Command { command: c.clone() },
        )]
    } else if let Some(u) = &args.url {
        vec![(
            args.name.clone().unwrap_or_else(|| "url".into()),
            Target::Url { url: u.clone() },
        )]
    } else {
        for f in &args.functions {
            catalogue.require(f)?;
        }
        args.functions
            .iter()
            .map(|f| (f.clone(), Target::Builtin))
            .collect()
    };
    let cpu_notes = args.measure.check_cpu()?;
    let mut done = Vec::new();
    let mut observer = TerminalObserver::default();
    for (name, target) in jobs {
        settings.rule = config.rule_for(&name, &flags);
        let result = slokit_profiler::profile_target(
            &name,
            &target,
            &params,
            &catalogue,
            &settings,
            &mut observer,
        );
        let mut profile = match result {
            Ok(p) => p,
            Err(ProfileError::Interrupted) => {
                eprintln!("interrupted: scheduling policy and affinities were restored; no profile written");
                return Ok(EXIT_INTERRUPTED);
            }
            Err(e) => return Err(e).with_context(|| format!("profiling `{name}`")),
        };
        profile.warnings.extend(cpu_notes.iter().cloned());
        let path = args.out_dir.join(format!("{name}.toml"));
        // An unreadable previous file is simply replaced.
        if let Some(moved) = Profile::load(&path)
            .ok()
            .and_then(|previous| profile.moved_from(&previous))
        {
            eprintln!("warning: {name}: {moved}");
            profile.warnings.push(moved);
        }
        profile.save(&path)?;
        done.push((profile, path));
    }
    println!("{}", summary_table(&done));
    println!(
        "deadline = p{} of wall execution time (Harrell–Davis estimate) × slack; median = service time",
        done.first().map_or(99.0, |(p, _)| p.deadline.percentile)
    );
    for (p, _) in &done {
        if p.deadline.timing != TimeFrom::Clock {
            println!("{}: run times are {}", p.function, p.deadline.timing);
        }
        if let Some(c) = &p.instructions {
            println!("{}: {}", p.function, c.describe());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_as_percent_or_fraction() {
        assert_eq!(parse_fraction("2%").unwrap(), 0.02);
        assert_eq!(parse_fraction("0.05").unwrap(), 0.05);
        assert!(parse_fraction("fast").is_err());
        assert!(parse_fraction("-1").is_err());
    }

    #[derive(clap::Parser)]
    struct Measure {
        #[command(flatten)]
        m: MeasureArgs,
    }

    fn plan(args: &[&str], defaults: TimeDefaults) -> anyhow::Result<(f64, f64)> {
        use clap::Parser;
        let a = Measure::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
        let s = a.m.settings(defaults)?;
        Ok((s.plan.min_time.as_secs_f64(), s.plan.max_time.as_secs_f64()))
    }

    #[test]
    fn profile_spans_thirty_seconds_unless_told_and_gate_stops_at_precision() {
        assert_eq!(plan(&[], TimeDefaults::PROFILE).unwrap(), (30.0, 45.0));
        assert_eq!(plan(&[], TimeDefaults::GATE).unwrap(), (0.0, 12.0));
        // a shorter --max-time lowers the default --min-time with it
        assert_eq!(
            plan(&["--max-time", "2"], TimeDefaults::PROFILE).unwrap(),
            (2.0, 2.0)
        );
        assert_eq!(
            plan(
                &["--min-time", "0", "--max-time", "12"],
                TimeDefaults::PROFILE
            )
            .unwrap(),
            (0.0, 12.0)
        );
        let e = plan(&["--min-time", "5", "--max-time", "2"], TimeDefaults::GATE).unwrap_err();
        assert!(
            e.to_string()
                .contains("--min-time must be between 0 and --max-time (2 s)"),
            "{e}"
        );
    }
}
