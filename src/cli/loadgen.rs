//! `slokit loadgen`: builds an arrival schedule (a process, a weighted mix
//! or a trace), replays it open-loop against HTTP endpoints and prints a
//! summary; the record, interval log and per-invocation CSV go to files.
//! Options are validated into the library's config structs before anything
//! runs; the logic lives in slokit-loadgen.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use slokit_functions::{RunRecord, Schedule, ScheduledFunction};
use slokit_loadgen::azure2019::{Azure2019Options, Iat};
use slokit_loadgen::azure2021::Azure2021Options;
use slokit_loadgen::limits::{DEFAULT_MAX_INVOCATIONS, MAX_TRACE_TIME_S};
use slokit_loadgen::units::{parse_duration, parse_us_map};
use slokit_loadgen::{
    azure2019, azure2021, check_expected_invocations, csv_trace, mix_schedule, parse_mix,
    process_schedule, require_success, BurstySpec, CapMode, ClientConfig, Load, MixSpec, Process,
    ProcessSpec, Progress, Reporter,
};

/// Arguments of `slokit loadgen` (boxed: they are many).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub opts: Box<Opts>,
}

/// The options of `slokit loadgen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  slokit loadgen --rate 200 --process poisson --function spin --params '{\"ms\": 2}' --duration 30s --target http://127.0.0.1:8080
  slokit loadgen --mix auth:0.9,video:0.1 --rho 0.8 --cpus 1 --service auth=0.05ms,video=120ms --duration 60s --target http://127.0.0.1:8080
  slokit loadgen --trace-azure2019 traces/azure2019-sample10 --minutes 540-570 --scale 0.1 --target http://127.0.0.1:8080 --out run.json")]
pub struct Opts {
    // --- what to send -------------------------------------------------
    /// Arrivals per second (one function with --process, or the total of --mix).
    #[arg(long, help_heading = "Schedule")]
    pub rate: Option<f64>,
    /// Arrival process for --rate.
    #[arg(long, value_enum, default_value = "poisson", help_heading = "Schedule")]
    pub process: ProcessArg,
    /// Function to invoke with --rate/--process.
    #[arg(long, default_value = "spin", help_heading = "Schedule")]
    pub function: String,
    /// JSON parameters sent with every invocation of --function.
    #[arg(long, default_value = "{}", help_heading = "Schedule")]
    pub params: String,
    /// Bursty: rate in the high state over the low state (`inf` for on/off).
    #[arg(long, default_value_t = 10.0, help_heading = "Schedule")]
    pub burst_ratio: f64,
    /// Bursty: share of time in the high state.
    #[arg(long, default_value_t = 0.2, help_heading = "Schedule")]
    pub burst_share: f64,
    /// Bursty: mean length of one high + low cycle.
    #[arg(long, default_value = "1s", help_heading = "Schedule")]
    pub burst_period: String,
    /// Weighted mix of functions, e.g. auth:0.9,video:0.1 (Poisson arrivals).
    #[arg(long, help_heading = "Schedule")]
    pub mix: Option<String>,
    /// Target utilisation of the function CPUs for --mix (needs --service).
    #[arg(long, help_heading = "Schedule")]
    pub rho: Option<f64>,
    /// Number of function CPUs for --rho.
    #[arg(long, default_value_t = 1.0, help_heading = "Schedule")]
    pub cpus: f64,
    /// Replay the Azure Functions 2019 trace in DIR (invocations.csv, durations.csv).
    #[arg(long, value_name = "DIR", help_heading = "Schedule")]
    pub trace_azure2019: Option<PathBuf>,
    /// Minute window A-B of the 2019 trace (columns A…B−1).
    #[arg(long, default_value = "1-31", help_heading = "Schedule")]
    pub minutes: String,
    /// Rate scale factor for traces (2019: per-minute counts × F; 2021: thinning).
    #[arg(long, default_value_t = 1.0, help_heading = "Schedule")]
    pub scale: f64,
    /// Inter-arrival times inside a trace minute.
    #[arg(
        long,
        value_enum,
        default_value = "exponential",
        help_heading = "Schedule"
    )]
    pub iat: IatArg,
    /// Cap on one drawn trace duration, ms.
    #[arg(long, help_heading = "Schedule")]
    pub max_duration_ms: Option<f64>,
    /// Host function that trace invocations run.
    #[arg(long, default_value = "spin", help_heading = "Schedule")]
    pub trace_function: String,
    /// Replay an Azure Functions 2021 per-invocation trace (app,func,end_timestamp,duration).
    #[arg(long, value_name = "FILE", help_heading = "Schedule")]
    pub trace_azure2021: Option<PathBuf>,
    /// Replay a CSV trace of time_ms,function[,params_json].
    #[arg(long, value_name = "FILE", help_heading = "Schedule")]
    pub trace_csv: Option<PathBuf>,
    /// Replay a schedule JSON written by --dump-schedule.
    #[arg(long, value_name = "FILE", help_heading = "Schedule")]
    pub schedule: Option<PathBuf>,
    /// Length of a synthetic schedule (30s, 2m, ...).
    #[arg(long, default_value = "30s", help_heading = "Schedule")]
    pub duration: String,
    /// Seed of the random arrival stream (same seed, same schedule).
    #[arg(long, default_value_t = 1, help_heading = "Schedule")]
    pub seed: u64,
    /// Service time per label (auth=0.05ms,video=120ms): --rho and slowdown.
    #[arg(long, default_value = "", help_heading = "Schedule")]
    pub service: String,
    /// Deadline per label (auth=2ms,video=300ms): SLO attainment.
    #[arg(long, default_value = "", help_heading = "Schedule")]
    pub deadline: String,
    /// Write the schedule as JSON; without --target, only that.
    #[arg(long, value_name = "FILE", help_heading = "Schedule")]
    pub dump_schedule: Option<PathBuf>,
    /// Refuse a schedule of more invocations than this (checked before it is built).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_INVOCATIONS, help_heading = "Schedule")]
    pub max_invocations: u64,

    // --- where and how to send ----------------------------------------
    /// Base URL of the target, e.g. http://127.0.0.1:8080.
    #[arg(long, help_heading = "Client")]
    pub target: Option<String>,
    /// Path under --target; {function} and {label} are substituted.
    #[arg(long, default_value = "/invoke/{function}", help_heading = "Client")]
    pub path_template: String,
    /// Full URL for one label (LABEL=URL), overriding --target. Repeatable.
    #[arg(long = "url", value_name = "LABEL=URL", help_heading = "Client")]
    pub urls: Vec<String>,
    /// An invocation without a reply after this long is a timeout (an SLO miss).
    #[arg(long, default_value = "30s", help_heading = "Client")]
    pub timeout: String,
    /// Cap on invocations in flight (every delayed or dropped send is counted).
    #[arg(long, help_heading = "Client")]
    pub max_inflight: Option<usize>,
    /// What the cap does with a send: delay it or drop it (a miss).
    #[arg(long, value_enum, default_value = "delay", help_heading = "Client")]
    pub cap_mode: CapArg,
    /// After Ctrl-C, how long to wait for replies in flight.
    #[arg(long, default_value = "5s", help_heading = "Client")]
    pub grace: String,
    /// Sending threads.
    #[arg(long, default_value_t = 1, help_heading = "Client")]
    pub threads: usize,
    /// Keep-alive connections opened per target before the run (more are
    /// opened whenever all are busy).
    #[arg(long, default_value_t = 4, help_heading = "Client")]
    pub connections: usize,
    /// Busy-poll instead of sleeping this close to a send (precise pacing).
    #[arg(long, default_value = "2ms", help_heading = "Client")]
    pub spin: String,
    /// Pin the sending threads to these CPUs (e.g. 0 or 0,1).
    #[arg(long = "pin", value_delimiter = ',', help_heading = "Client")]
    pub pin: Vec<usize>,
    /// Do not check that the target accepts connections before the run.
    #[arg(long, help_heading = "Client")]
    pub no_probe: bool,

    // --- outputs -------------------------------------------------------
    /// Write the run record (slokit.run/1 JSON).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Write an HdrHistogram interval log (one interval per second).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub hlog: Option<PathBuf>,
    /// Write one CSV row per invocation.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub csv: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short, help_heading = "Output")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProcessArg {
    Constant,
    Poisson,
    Bursty,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IatArg {
    Exponential,
    Uniform,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CapArg {
    Delay,
    Drop,
}

fn duration(option: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration(text).map_err(|e| anyhow::anyhow!("{option}: {e}"))
}

fn minutes(text: &str) -> anyhow::Result<(u32, u32)> {
    let (a, b) = text
        .split_once('-')
        .with_context(|| format!("--minutes `{text}` is not A-B (e.g. 540-570)"))?;
    let p = |s: &str| {
        s.trim()
            .parse::<u32>()
            .with_context(|| format!("--minutes `{text}`: `{s}` is not a minute number"))
    };
    Ok((p(a)?, p(b)?))
}

/// Builds the schedule the options describe.
fn build_schedule(a: &Opts) -> anyhow::Result<Schedule> {
    let service = parse_us_map("--service", &a.service)?;
    let deadline = parse_us_map("--deadline", &a.deadline)?;
    let sources = [
        a.mix.is_some(),
        a.trace_azure2019.is_some(),
        a.trace_azure2021.is_some(),
        a.trace_csv.is_some(),
        a.schedule.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if sources > 1 {
        bail!("choose one of --mix, --trace-azure2019, --trace-azure2021, --trace-csv, --schedule");
    }
    let duration_s = duration("--duration", &a.duration)?.as_secs_f64();
    let max = a.max_invocations;
    let mut schedule = if let Some(mix) = &a.mix {
        let (load, asked_by) = match (a.rho, a.rate) {
            (Some(_), Some(_)) => bail!("--mix takes either --rate (total) or --rho, not both"),
            (Some(rho), None) => (Load::Rho { rho, cpus: a.cpus }, format!("--rho {rho}")),
            (None, Some(rate)) => (Load::Rate(rate), format!("--rate {rate}")),
            (None, None) => {
                bail!("--mix needs a load: --rate R (total per second) or --rho 0.8 --cpus 1")
            }
        };
        let spec = MixSpec {
            functions: parse_mix(mix, &service, &deadline)?,
            load,
            duration_s,
            seed: a.seed,
        };
        let rate = spec.total_rate()?;
        check_expected_invocations(
            rate * duration_s,
            max,
            &format!("{asked_by} ({rate:.1}/s) × --duration {}", a.duration),
        )?;
        mix_schedule(&spec)?
    } else if let Some(dir) = &a.trace_azure2019 {
        azure2019::schedule(
            dir,
            &Azure2019Options {
                minutes: minutes(&a.minutes)?,
                scale: a.scale,
                iat: match a.iat {
                    IatArg::Exponential => Iat::Exponential,
                    IatArg::Uniform => Iat::Uniform,
                },
                max_duration_ms: a.max_duration_ms,
                function: a.trace_function.clone(),
                seed: a.seed,
                max_invocations: max,
            },
        )?
    } else if let Some(file) = &a.trace_azure2021 {
        azure2021::schedule(
            file,
            &Azure2021Options {
                scale: a.scale,
                window_s: None,
                max_duration_ms: a.max_duration_ms,
                function: a.trace_function.clone(),
                seed: a.seed,
                max_invocations: max,
            },
        )?
    } else if let Some(file) = &a.trace_csv {
        csv_trace::schedule(file, a.seed, max)?
    } else if let Some(file) = &a.schedule {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read schedule {}", file.display()))?;
        let s: Schedule = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a schedule JSON", file.display()))?;
        s.validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if s.arrivals.len() as u64 > max {
            bail!(
                "{}: {} arrivals, more than --max-invocations {max}; raise --max-invocations",
                file.display(),
                s.arrivals.len()
            );
        }
        if s.duration_s() > MAX_TRACE_TIME_S {
            bail!(
                "{}: the last arrival is at {:.0} s, beyond the 31 days a replay may span (`at_ns` of arrival {})",
                file.display(),
                s.duration_s(),
                s.arrivals.len() - 1
            );
        }
        s
    } else {
        let Some(rate) = a.rate else {
            bail!("nothing to send: give --rate R (with --process), --mix, --trace-azure2019, --trace-azure2021, --trace-csv or --schedule");
        };
        let params: serde_json::Value = serde_json::from_str(&a.params).with_context(|| {
            format!("--params `{}` is not JSON (e.g. '{{\"ms\": 2}}')", a.params)
        })?;
        check_expected_invocations(
            rate * duration_s,
            max,
            &format!("--rate {rate} × --duration {}", a.duration),
        )?;
        let process = match a.process {
            ProcessArg::Constant => Process::Constant,
            ProcessArg::Poisson => Process::Poisson,
            ProcessArg::Bursty => Process::Bursty(BurstySpec {
                ratio: a.burst_ratio,
                high_share: a.burst_share,
                period_s: duration("--burst-period", &a.burst_period)?.as_secs_f64(),
            }),
        };
        process_schedule(&ProcessSpec {
            function: ScheduledFunction {
                label: a.function.clone(),
                function: a.function.clone(),
                params,
                service_us: None,
                deadline_us: None,
            },
            process,
            rate_per_s: rate,
            duration_s,
            seed: a.seed,
        })?
    };
    // --service / --deadline apply to any schedule, by label.
    for (option, map) in [("--service", &service), ("--deadline", &deadline)] {
        for label in map.keys() {
            if !schedule.functions.iter().any(|f| &f.label == label) {
                let known: Vec<&str> = schedule
                    .functions
                    .iter()
                    .map(|f| f.label.as_str())
                    .collect();
                bail!(
                    "{option}: no function labelled `{label}` in this schedule (labels: {})",
                    known.join(", ")
                );
            }
        }
    }
    for f in &mut schedule.functions {
        if let Some(s) = service.get(&f.label) {
            f.service_us = Some(*s);
        }
        if let Some(d) = deadline.get(&f.label) {
            f.deadline_us = Some(*d);
        }
    }
    Ok(schedule)
}

fn client_config(a: &Opts) -> anyhow::Result<ClientConfig> {
    let mut urls = HashMap::new();
    for u in &a.urls {
        let (label, url) = u
            .split_once('=')
            .with_context(|| format!("--url `{u}` is not LABEL=URL"))?;
        urls.insert(label.to_string(), url.to_string());
    }
    Ok(ClientConfig {
        target: a.target.clone(),
        path_template: a.path_template.clone(),
        urls,
        timeout: duration("--timeout", &a.timeout)?,
        max_inflight: a.max_inflight,
        cap_mode: match a.cap_mode {
            CapArg::Delay => CapMode::Delay,
            CapArg::Drop => CapMode::Drop,
        },
        grace: duration("--grace", &a.grace)?,
        threads: a.threads,
        connections: a.connections,
        spin: duration("--spin", &a.spin)?,
        cpus: a.pin.clone(),
        probe: !a.no_probe,
        hlog: a.hlog.clone(),
        csv: a.csv.clone(),
        stop: None,
    })
}

/// Progress bar on stderr (hidden when stderr is not a terminal) and
/// warnings; the summary table is printed after the run.
struct TerminalReporter {
    bar: ProgressBar,
}

impl TerminalReporter {
    fn new(quiet: bool) -> Self {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} sent · {msg}",
            )
            .expect("static template"),
        );
        TerminalReporter { bar }
    }
}

impl Reporter for TerminalReporter {
    fn started(&self, schedule: &Schedule, _cfg: &ClientConfig) {
        self.bar.set_length(schedule.arrivals.len() as u64);
    }

    fn progress(&self, p: &Progress) {
        self.bar.set_position(p.sent);
        self.bar.set_message(format!(
            "{} done, {} failed, {} in flight",
            p.completed,
            p.failed,
            p.sent.saturating_sub(p.completed)
        ));
    }

    fn stopping(&self, grace: Duration) {
        self.bar.suspend(|| {
            eprintln!(
                "stopping: no new sends; waiting up to {:.1} s for replies in flight (Ctrl-C again to quit now)",
                grace.as_secs_f64()
            )
        });
    }

    fn warning(&self, message: &str) {
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }

    fn finished(&self, _record: &RunRecord) {
        self.bar.finish_and_clear();
    }
}

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.1}", us / 1e3)
    } else {
        format!("{:.3}", us / 1e3)
    }
}

fn summary(r: &RunRecord) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "function",
        "n",
        "ok",
        "err",
        "timeout",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "p99 uncorr.",
        "exec p50",
        "slowdown p50",
        "SLO",
    ]);
    let mut failures = Vec::new();
    for f in &r.functions {
        // Response times are of successes only; with none there are none.
        let latency = |p: f64| {
            if f.response().is_some() {
                ms(p)
            } else {
                "–".into()
            }
        };
        if f.failures() > 0 {
            failures.push(format!("{}: {}", f.label, f.failure_kinds()));
        }
        let row = vec![
            Cell::new(&f.label),
            Cell::new(f.invocations),
            Cell::new(f.ok),
            Cell::new(f.failures() - f.timeouts),
            Cell::new(f.timeouts),
            Cell::new(latency(f.response_us.p50)),
            Cell::new(latency(f.response_us.p99)),
            Cell::new(latency(f.response_us.p999)),
            Cell::new(latency(f.response_us.max)),
            Cell::new(latency(f.response_uncorrected_us.p99)),
            Cell::new(f.exec_us.map_or("–".into(), |e| ms(e.p50))),
            Cell::new(f.slowdown.map_or("–".into(), |s| format!("{:.2}", s.p50))),
            Cell::new(f.slo.map_or("–".into(), |s| {
                format!("{:.2} % ≤ {} ms", s.attainment * 100.0, ms(s.deadline_us))
            })),
        ];
        t.add_row(row);
    }
    for i in 1..13 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!("{}\n{t}\n", r.source);
    if !failures.is_empty() {
        out += &format!("failed: {}\n", failures.join("; "));
    }
    if let Some(s) = &r.send {
        out += &format!(
            "send: target {:.1}/s, achieved {:.1}/s; lateness p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs{}\n",
            s.target_rate_per_s,
            s.achieved_rate_per_s,
            s.lateness_us.p50,
            s.lateness_us.p99,
            s.lateness_us.max,
            if s.delayed_by_cap + s.dropped_by_cap > 0 {
                format!("; cap delayed {}, dropped {}", s.delayed_by_cap, s.dropped_by_cap)
            } else {
                String::new()
            }
        );
    }
    out += &format!(
        "response times of successful replies, from the intended send time (coordinated-omission free); seed {}\n",
        r.seed
    );
    out
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let args = *args.opts;
    let schedule = build_schedule(&args)?;
    if let Some(path) = &args.dump_schedule {
        let json = serde_json::to_vec(&schedule).expect("schedules serialise");
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        if args.target.is_none() && args.urls.is_empty() {
            eprintln!(
                "wrote {} arrivals of {} functions to {}",
                schedule.arrivals.len(),
                schedule.functions.len(),
                path.display()
            );
            return Ok(0);
        }
    }
    if args.target.is_none() && args.urls.is_empty() {
        bail!("no target: pass --target http://HOST:PORT (or --url LABEL=URL, or --dump-schedule FILE to only write the schedule)");
    }
    if schedule.arrivals.is_empty() {
        bail!(
            "the schedule is empty (no arrival in the chosen window or duration); nothing to send"
        );
    }
    let mut cfg = client_config(&args)?;
    cfg.stop = Some(slokit_loadgen::ctrl_c_flag()?);
    let reporter = TerminalReporter::new(args.quiet);
    let record = slokit_loadgen::run_blocking(&schedule, &cfg, &reporter)?;
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&record).expect("records serialise");
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", summary(&record));
    require_success(&record)?;
    Ok(0)
}
