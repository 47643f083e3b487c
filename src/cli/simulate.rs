//! `slokit simulate`: runs one arrival schedule through the simulator's
//! policies (fifo, ps, two-level, las, srpt) on a model of c CPUs and
//! prints them side by side; the model lives in `slokit_sched::sim`
//! (two-level and las are the agent's own policy objects over a model of
//! the kernel's scheduling classes).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use slokit_functions::record::TimelinePoint;
use slokit_functions::{RunRecord, Schedule};
use slokit_model::units::human_us;
use slokit_sched::sim::{
    self, parse_duration_us, parse_label_durations, Horizon, PoissonMix, ServiceModel,
    ServiceSampler, SimConfig, SimPolicy,
};
use slokit_sched::{LasParams, TwoLevelParams};

/// Arguments of `slokit simulate` (boxed: they are many, and the
/// subcommand enum should stay small).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    inner: Box<SimArgs>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Service distributions (SPEC): 5ms | det:5ms | exp:0.5ms | lognormal:MEAN:SIGMA | \
bimodal:SHORT:LONG:P_LONG | hist:FILE (base64 HdrHistogram of µs, as profiles store it).

Examples:
  slokit simulate --cpus 64 --mix auth:0.9,video:0.1 \\
      --service auth=exp:0.5ms,video=lognormal:120ms:0.5 --rho 0.8 --duration 600s
  slokit simulate --cpus 4 --schedule schedule.json --service spin=exp:2ms --out runs.json")]
struct SimArgs {
    /// CPUs in the model (c); any number, independent of this machine.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Policies, comma-separated: fifo, ps, two-level, las, srpt.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fifo,ps,two-level,las,srpt"
    )]
    policy: Vec<String>,
    /// Arrival schedule JSON (as `slokit loadgen --dump-schedule` writes).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mix", "rho", "rate", "arrivals", "experiment"])]
    schedule: Option<PathBuf>,
    /// A scenario of an experiment file, as `slokit compare` runs it
    /// (`default` = the embedded default experiment); load scaled to --cpus,
    /// service times from the profiles.
    #[arg(long, value_name = "FILE|default", conflicts_with_all = ["mix", "rho", "rate", "arrivals"])]
    experiment: Option<String>,
    /// Scenario of --experiment (default: its first).
    #[arg(long, requires = "experiment")]
    scenario: Option<String>,
    /// Built-in Poisson mix, LABEL:WEIGHT,... (e.g. auth:0.9,video:0.1).
    #[arg(long, required_unless_present_any = ["schedule", "experiment"])]
    mix: Option<String>,
    /// Service times, LABEL=SPEC,...; a SPEC without LABEL= applies to
    /// every function without its own. Wins over the schedule's
    /// per-function values, never over per-arrival ones.
    #[arg(long, value_delimiter = ',', value_name = "LABEL=SPEC")]
    service: Vec<String>,
    /// Utilisation per CPU ρ; sets the mix's rate to ρ·c / E[S].
    #[arg(long, conflicts_with = "rate")]
    rho: Option<f64>,
    /// Arrival rate of the mix, per second (instead of --rho).
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the mix (e.g. 600s, 10m).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Exactly this many arrivals instead of --duration.
    #[arg(long)]
    arrivals: Option<usize>,
    /// Seed of the mix's arrivals and of the service-time draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Deadlines, LABEL=DURATION,... (e.g. auth=5ms); override the schedule's.
    #[arg(long, value_delimiter = ',', value_name = "LABEL=DURATION")]
    deadline: Vec<String>,
    /// Two-level: arrivals in the IAT window.
    #[arg(long)]
    iat_window: Option<usize>,
    /// Two-level: S before the window has two arrivals (e.g. 20ms).
    #[arg(long)]
    initial_slice: Option<String>,
    /// Two-level: lower clamp of S (e.g. 1ms).
    #[arg(long)]
    min_slice: Option<String>,
    /// Two-level: upper clamp of S (e.g. 1s).
    #[arg(long)]
    max_slice: Option<String>,
    /// Two-level: demote a request waiting more than this many S for a FIFO slot.
    #[arg(long)]
    overload_factor: Option<f64>,
    /// Two-level: promote a demoted request once when its deadline is this many S away (0 = off).
    #[arg(long)]
    imminent_factor: Option<f64>,
    #[command(flatten)]
    las: Box<LasParams>,
    /// las: known service time per function, LABEL=DURATION,... (e.g. a
    /// profile's p99, auth=2.3ms), from which las derives its thresholds,
    /// as the agent's --service does.
    #[arg(long, value_delimiter = ',', value_name = "LABEL=DURATION")]
    known_service: Vec<String>,
    /// Kernel model: real-time threads may use this much of every
    /// --rt-period (sched_rt_runtime_us); ≥ --rt-period turns RT
    /// throttling off.
    #[arg(long, default_value = "950ms")]
    rt_runtime: String,
    /// Kernel model: the RT throttling period (sched_rt_period_us).
    #[arg(long, default_value = "1s")]
    rt_period: String,
    /// Add one draw of this distribution (SPEC, as for --service) to every
    /// simulated response time: the loopback HTTP round trip that measured
    /// response times include (e.g. det:80us).
    #[arg(long, value_name = "SPEC")]
    transport: Option<String>,
    /// Two-level and las: simulated time between timeline points (e.g. 100ms).
    #[arg(long, default_value = "100ms")]
    timeline_every: String,
    /// Write the run records (JSON array, schema slokit.run/1) here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the timeline (JSON array of points) of two-level, or else of
    /// las, here; when both run, las's goes to FILE with `.las` before the
    /// extension.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
}

/// Validated options: everything parsed before any simulation runs.
struct Options {
    schedule: Schedule,
    model: ServiceModel,
    policies: Vec<SimPolicy>,
    base: SimConfig,
    out: Option<PathBuf>,
    timeline: Option<PathBuf>,
}

fn ms(text: &str) -> anyhow::Result<f64> {
    Ok(parse_duration_us(text)? / 1e3)
}

impl Options {
    fn from_args(a: SimArgs) -> anyhow::Result<Self> {
        if a.cpus == 0 {
            bail!("--cpus must be at least 1");
        }
        let mut policies = Vec::new();
        for p in &a.policy {
            let p: SimPolicy = p.parse()?;
            if !policies.contains(&p) {
                policies.push(p);
            }
        }
        if a.timeline.is_some() && !policies.iter().any(|p| p.has_timeline()) {
            bail!("--timeline records the two-level or las policy: add one to --policy");
        }
        let mut model = ServiceModel::from_specs(a.service.iter().map(String::as_str))?;
        let deadlines = parse_label_durations(a.deadline.iter().map(String::as_str))?;

        let mut experiment_services = std::collections::HashMap::new();
        let from_experiment = match &a.experiment {
            None => None,
            Some(which) => {
                let exp = if which == "default" {
                    slokit::experiment::Experiment::default_experiment()
                } else {
                    slokit::experiment::Experiment::load(std::path::Path::new(which))?
                };
                let scenario = a
                    .scenario
                    .clone()
                    .unwrap_or_else(|| exp.scenarios[0].name.clone());
                let root = std::env::current_dir().context("reading the current directory")?;
                let input = slokit::compare::scenario_for_simulation(
                    &exp,
                    &scenario,
                    a.cpus as usize,
                    &root,
                    &mut slokit_profiler::NoopObserver,
                )?;
                if a.service.is_empty() {
                    model = input.model;
                }
                experiment_services = input.services_us;
                Some(input.schedule)
            }
        };
        let schedule = match (&a.schedule, &a.mix) {
            _ if from_experiment.is_some() => from_experiment.expect("checked"),
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read schedule {}", path.display()))?;
                let mut schedule: Schedule = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a schedule JSON (slokit loadgen --dump-schedule)",
                        path.display()
                    )
                })?;
                schedule
                    .validate()
                    .map_err(|e| anyhow::anyhow!("schedule {}: {e}", path.display()))?;
                for (label, us) in &deadlines {
                    let f = schedule
                        .functions
                        .iter_mut()
                        .find(|f| &f.label == label)
                        .with_context(|| {
                            format!("--deadline names `{label}`, which the schedule does not have")
                        })?;
                    f.deadline_us = Some(*us);
                }
                schedule
            }
            (None, Some(mix)) => {
                let mut entries = PoissonMix::parse_weights(mix)?;
                for (label, us) in &deadlines {
                    let e = entries
                        .iter_mut()
                        .find(|e| &e.label == label)
                        .with_context(|| {
                            format!("--deadline names `{label}`, which --mix does not have")
                        })?;
                    e.deadline_us = Some(*us);
                }
                let rate_per_s = match (a.rho, a.rate) {
                    (Some(rho), None) => PoissonMix::rate_for_load(&entries, &model, a.cpus, rho)?,
                    (None, Some(rate)) => rate,
                    _ => {
                        bail!("give the mix a load: --rho 0.8 (per CPU) or --rate 200 (per second)")
                    }
                };
                let horizon = match a.arrivals {
                    Some(n) => Horizon::Arrivals(n),
                    None => Horizon::Seconds(parse_duration_us(&a.duration)? / 1e6),
                };
                PoissonMix {
                    entries,
                    rate_per_s,
                    horizon,
                    seed: a.seed,
                }
                .schedule()?
            }
            (None, None) => {
                bail!("give an arrival schedule: --schedule FILE or --mix auth:0.9,video:0.1")
            }
        };
        for label in model.labels() {
            if !schedule.functions.iter().any(|f| f.label == label) {
                bail!("--service names `{label}`, which the schedule does not have");
            }
        }
        let mut known = parse_label_durations(a.known_service.iter().map(String::as_str))?;
        if known.is_empty() {
            // --experiment: each function's p99, as compare gives the agent.
            known = experiment_services.into_iter().collect();
        }
        for (label, us) in &known {
            if !schedule.functions.iter().any(|f| &f.label == label) {
                bail!("--known-service names `{label}`, which the schedule does not have");
            }
            if *us <= 0.0 {
                bail!("--known-service {label}: the service time must be positive");
            }
        }
        let las = *a.las;
        las.validate()
            .map_err(|e| anyhow::anyhow!("invalid las parameter: {e}"))?;
        let rt_runtime_us = parse_duration_us(&a.rt_runtime)?.round() as u64;
        let rt_period_us = parse_duration_us(&a.rt_period)?.round() as u64;
        if rt_period_us == 0 {
            bail!("--rt-period must be at least 1µs");
        }
        let transport: Option<ServiceSampler> = a
            .transport
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("--transport")?;

        let d = TwoLevelParams::default();
        let params = TwoLevelParams {
            cpus: a.cpus,
            iat_window: a.iat_window.unwrap_or(d.iat_window),
            initial_slice_ms: a
                .initial_slice
                .as_deref()
                .map(ms)
                .transpose()?
                .unwrap_or(d.initial_slice_ms),
            min_slice_ms: a
                .min_slice
                .as_deref()
                .map(ms)
                .transpose()?
                .unwrap_or(d.min_slice_ms),
            max_slice_ms: a
                .max_slice
                .as_deref()
                .map(ms)
                .transpose()?
                .unwrap_or(d.max_slice_ms),
            overload_factor: a.overload_factor.unwrap_or(d.overload_factor),
            imminent_factor: a.imminent_factor.unwrap_or(d.imminent_factor),
            fifo_priority: d.fifo_priority,
        };
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("two-level parameters: {e}"))?;
        let base = SimConfig {
            cpus: a.cpus,
            policy: SimPolicy::Fifo,
            params,
            las,
            services_us: known.into_iter().collect(),
            rt_runtime_us,
            rt_period_us,
            transport,
            seed: a.seed,
            timeline_interval_ms: ms(&a.timeline_every)?,
        };
        Ok(Options {
            schedule,
            model,
            policies,
            base,
            out: a.out,
            timeline: a.timeline,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let opts = Options::from_args(*args.inner)?;
    let s = &opts.schedule;
    println!(
        "{}: {} arrivals over {:.1} s, {} functions, model of {} CPUs, seed {}",
        s.source,
        s.arrivals.len(),
        s.duration_s(),
        s.functions.len(),
        opts.base.cpus,
        opts.base.seed
    );
    let mut records: Vec<RunRecord> = Vec::new();
    let mut timelines: Vec<(SimPolicy, Vec<TimelinePoint>)> = Vec::new();
    for &policy in &opts.policies {
        let cfg = SimConfig {
            policy,
            ..opts.base.clone()
        };
        let started = Instant::now();
        let out = sim::simulate(s, &opts.model, &cfg)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{policy}: simulated {} invocations in {:.2} s ({:.2} M/s)",
            out.totals.arrivals,
            secs,
            out.totals.arrivals as f64 / secs.max(1e-9) / 1e6
        );
        if policy.has_timeline() {
            timelines.push((policy, out.timeline));
        }
        records.push(out.record);
    }
    println!("{}", table(&records));
    if let Some(path) = &opts.out {
        std::fs::write(path, serde_json::to_string_pretty(&records)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {} run records to {}", records.len(), path.display());
    }
    if let Some(path) = &opts.timeline {
        // two-level's goes to FILE (as before las existed), else the first.
        timelines.sort_by_key(|(p, _)| *p != SimPolicy::TwoLevel);
        for (i, (policy, timeline)) in timelines.iter().enumerate() {
            let path = if i == 0 {
                path.clone()
            } else {
                sibling(path, policy.name())
            };
            std::fs::write(&path, serde_json::to_string_pretty(timeline)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} {policy} timeline points to {}",
                timeline.len(),
                path.display()
            );
        }
    }
    Ok(0)
}

/// `dir/name.json` → `dir/name.<tag>.json` (`name` → `name.<tag>`).
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "timeline".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{tag}"),
    };
    path.with_file_name(name)
}

fn table(records: &[RunRecord]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "policy",
        "function",
        "invocations",
        "mean",
        "p50",
        "p99",
        "mean slowdown",
        "SLO",
    ]);
    for r in records {
        for f in &r.functions {
            let slo = f.slo.map_or("—".to_string(), |s| {
                format!(
                    "{:.1} % ≤ {}",
                    s.attainment * 100.0,
                    human_us(s.deadline_us)
                )
            });
            let slowdown = f
                .slowdown
                .map_or("—".to_string(), |s| format!("{:.2}", s.mean));
            let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
            t.add_row(vec![
                Cell::new(r.policy.as_deref().unwrap_or("?")),
                Cell::new(&f.label),
                right(f.invocations.to_string()),
                right(human_us(f.response_us.mean)),
                right(human_us(f.response_us.p50)),
                right(human_us(f.response_us.p99)),
                right(slowdown),
                right(slo),
            ]);
        }
    }
    t
}
