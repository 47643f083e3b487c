//! `slokit gate --against OLD`: per function, builds the old and the new
//! side the same way, runs them paired on one measurement CPU
//! ([`super::paired`]), decides on the paired ratios and confirms a
//! regression once with fresh processes.
//!
//! What OLD means follows the baseline's target: for a built-in function it
//! is another slokit binary (e.g. built from the baseline commit), run as a
//! persistent `gate-worker` child beside one of the current binary, or, when
//! OLD is too old to have that subcommand, as one `invoke` per run on both
//! sides ([`super::worker`]); for a `--command` profile it is the old
//! command line; for a `--url` profile the old URL. The new side uses the
//! baseline's parameters with the gate's `--param` overrides, the old side
//! the baseline's parameters.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use slokit_functions::Catalogue;
use slokit_sys::cpu::AffinityGuard;

use super::paired::{decide_paired, sample_pairs, PairedPlan, PairedSampling, Sides, MIN_BLOCKS};
use super::worker::{InvokeJob, Spawned, WorkerRequest, WorkerSide};
use super::{
    baseline, list_baselines, FunctionResult, GateMode, GateReport, GateSettings, Verdict,
};
use crate::error::ProfileError;
use crate::isolation::{self, InterruptFlag, IsolateGuard, SystemReport};
use crate::observer::Observer;
use crate::profile::{params_equal, DeadlineRule};
use crate::sampler::{Measurement, SystemClock};
use crate::target::{
    command_argv, CommandJob, HeaderTimedUrlJob, HttpUrl, IsolatedRunner, Job, Target, TimeFrom,
    UrlJob,
};
use crate::Settings;

/// How the two sides of a paired gate were run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairedRunner {
    /// Persistent `gate-worker` children of both binaries.
    Worker,
    /// One `invoke` process per run on both sides (OLD has no `gate-worker`).
    Invoke,
    /// One process of each command per run.
    Command,
    /// One HTTP request to each URL per run.
    Url,
}

impl PairedRunner {
    /// A phrase for reports.
    pub fn describe(self) -> &'static str {
        match self {
            PairedRunner::Worker => "persistent `gate-worker` processes, timed inside them",
            PairedRunner::Invoke => {
                "one `invoke` process per run (OLD has no `gate-worker`), timed by `invoke`"
            }
            PairedRunner::Command => "one process per run of each command",
            PairedRunner::Url => "one request per run to each URL",
        }
    }
}

/// What a paired comparison ran, per function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDetails {
    pub runner: PairedRunner,
    /// The old side: binary, command or URL.
    pub old: String,
    /// The new side: binary, command or URL.
    pub new: String,
    /// Pairs of the measurement that decided.
    pub pairs: usize,
    /// Counted runs per side in it.
    pub runs_per_side: u64,
    pub elapsed_s: f64,
}

impl PairedDetails {
    /// One line for the report's notes.
    pub fn summary(&self) -> String {
        format!(
            "paired against `{}`: {} pairs, {} runs per side in {:.1} s; {}",
            self.old,
            self.pairs,
            self.runs_per_side,
            self.elapsed_s,
            self.runner.describe()
        )
    }
}

/// What `--against` needs beyond the gate's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgainstOptions {
    /// OLD as given: a slokit binary, a command line or a URL.
    pub against: String,
    /// The current slokit binary (the new side of built-in functions).
    pub current_exe: PathBuf,
    /// Added to the environment of every child (the `auth` secret).
    pub child_env: Vec<(String, String)>,
}

/// One function's job: target, both parameter sets, the deadline rule.
struct Case {
    name: String,
    baseline: PathBuf,
    target: Target,
    old_params: Map<String, Value>,
    new_params: Map<String, Value>,
    rule: DeadlineRule,
    /// Where a command's run times come from (the baseline's `--time-from`).
    time_from: TimeFrom,
    notes: Vec<String>,
}

/// Both sides, ready to measure, and their description.
struct Built {
    old: Box<dyn Measurement>,
    new: Box<dyn Measurement>,
    runner: PairedRunner,
    old_label: String,
    new_label: String,
    notes: Vec<String>,
    unreported: Option<[Arc<AtomicI32>; 2]>,
}

fn runner(
    label: &str,
    cpu: usize,
    settings: &Settings,
    reset_on_fork: bool,
    child: Arc<AtomicI32>,
    job: Box<dyn Job>,
) -> Result<Box<dyn Measurement>, ProfileError> {
    Ok(Box::new(IsolatedRunner::start(
        label,
        cpu,
        settings.priority,
        reset_on_fork,
        child,
        settings.timeout,
        job,
    )?))
}

fn command_side(
    label: &str,
    command: &str,
    time_from: TimeFrom,
    cpu: usize,
    settings: &Settings,
) -> Result<Box<dyn Measurement>, ProfileError> {
    let child = Arc::new(AtomicI32::new(0));
    let job = Box::new(CommandJob {
        argv: command_argv(command)?,
        time_from,
        current_child: child.clone(),
    });
    runner(label, cpu, settings, true, child, job)
}

/// One side of a `--url` pair, timed as the baseline was: by the round
/// trip, or by the runtime's `x-slokit-exec-us` header.
fn url_side(
    label: &str,
    url: &str,
    params: &Map<String, Value>,
    time_from: TimeFrom,
    cpu: usize,
    settings: &Settings,
) -> Result<Box<dyn Measurement>, ProfileError> {
    let url_job = UrlJob {
        url: HttpUrl::parse(url)?,
        body: (!params.is_empty()).then(|| Value::Object(params.clone()).to_string()),
        timeout: settings.timeout,
    };
    let job: Box<dyn Job> = match time_from {
        TimeFrom::Header => Box::new(HeaderTimedUrlJob(url_job)),
        _ => Box::new(url_job),
    };
    runner(
        label,
        cpu,
        settings,
        false,
        Arc::new(AtomicI32::new(0)),
        job,
    )
}

fn resolve_old_binary(against: &str) -> Result<PathBuf, ProfileError> {
    let p = PathBuf::from(against);
    if against.contains('/') && !p.is_file() {
        return Err(ProfileError::Settings(format!(
            "--against `{against}`: no such file (give the path of the old slokit binary)"
        )));
    }
    Ok(p)
}

fn builtin_sides(
    case: &Case,
    opts: &AgainstOptions,
    cpu: usize,
    settings: &Settings,
) -> Result<Built, ProfileError> {
    let old_bin = resolve_old_binary(&opts.against)?;
    let request = |params: &Map<String, Value>| WorkerRequest {
        function: case.name.clone(),
        params: Value::Object(params.clone()),
        cpu,
        priority: settings.priority,
    };
    let spawn = |label: &str, bin: &Path, params| {
        WorkerSide::spawn(
            &format!("{} ({label})", case.name),
            bin,
            &request(params),
            &opts.child_env,
            settings.timeout,
        )
    };
    let labels = (
        old_bin.display().to_string(),
        opts.current_exe.display().to_string(),
    );
    if let Spawned::Worker(old) = spawn("old", &old_bin, &case.old_params)? {
        let Spawned::Worker(new) = spawn("new", &opts.current_exe, &case.new_params)? else {
            return Err(ProfileError::System(format!(
                "`{}` (this slokit) has no `gate-worker` subcommand",
                opts.current_exe.display()
            )));
        };
        let notes = [&old, &new]
            .iter()
            .filter_map(|w| w.fifo_error.clone())
            .collect();
        return Ok(Built {
            old: Box::new(old),
            new: Box::new(new),
            runner: PairedRunner::Worker,
            old_label: labels.0,
            new_label: labels.1,
            notes,
            unreported: None,
        });
    }
    // An older slokit: both sides as one `invoke` per run.
    let side = |label: &str, bin: &Path, params: &Map<String, Value>, count: Arc<AtomicI32>| {
        let child = Arc::new(AtomicI32::new(0));
        let job = Box::new(InvokeJob {
            program: bin.to_path_buf(),
            function: case.name.clone(),
            params: InvokeJob::param_args(&Value::Object(params.clone())),
            env: opts.child_env.clone(),
            current_child: child.clone(),
            unreported_runs: count,
        });
        runner(
            &format!("{} ({label})", case.name),
            cpu,
            settings,
            true,
            child,
            job,
        )
    };
    let counts = [Arc::new(AtomicI32::new(0)), Arc::new(AtomicI32::new(0))];
    Ok(Built {
        old: side("old", &old_bin, &case.old_params, counts[0].clone())?,
        new: side("new", &opts.current_exe, &case.new_params, counts[1].clone())?,
        runner: PairedRunner::Invoke,
        old_label: labels.0,
        new_label: labels.1,
        notes: vec![format!(
            "`{}` has no `gate-worker` subcommand (an older slokit): both sides ran one `invoke` process per run; process start-up is excluded, the time is the one `invoke` prints (1 µs resolution)",
            opts.against
        )],
        unreported: Some(counts),
    })
}

fn build_sides(
    case: &Case,
    opts: &AgainstOptions,
    cpu: usize,
    settings: &Settings,
) -> Result<Built, ProfileError> {
    let plain = |old, new, runner, old_label: &str, new_label: &str| Built {
        old,
        new,
        runner,
        old_label: old_label.to_string(),
        new_label: new_label.to_string(),
        notes: Vec::new(),
        unreported: None,
    };
    match &case.target {
        Target::Builtin => builtin_sides(case, opts, cpu, settings),
        Target::Command { command } => Ok(plain(
            command_side(
                &format!("{} (old)", case.name),
                &opts.against,
                case.time_from,
                cpu,
                settings,
            )?,
            command_side(
                &format!("{} (new)", case.name),
                command,
                case.time_from,
                cpu,
                settings,
            )?,
            PairedRunner::Command,
            &opts.against,
            command,
        )),
        Target::Url { url } => Ok(plain(
            url_side(
                &format!("{} (old)", case.name),
                &opts.against,
                &case.old_params,
                case.time_from,
                cpu,
                settings,
            )?,
            url_side(
                &format!("{} (new)", case.name),
                url,
                &case.new_params,
                case.time_from,
                cpu,
                settings,
            )?,
            PairedRunner::Url,
            &opts.against,
            url,
        )),
    }
}

/// The baseline's target, parameters and rule for each function; a function
/// named on the command line without a committed profile is compared at its
/// defaults.
fn cases(
    baseline_dir: &Path,
    functions: &[String],
    param_overrides: &Value,
    catalogue: &Catalogue,
    settings: &Settings,
) -> Result<Vec<Case>, ProfileError> {
    let names = if functions.is_empty() {
        list_baselines(baseline_dir)?
    } else {
        functions.to_vec()
    };
    let mut out = Vec::new();
    for name in names {
        let path = baseline_dir.join(format!("{name}.toml"));
        let mut notes = Vec::new();
        let (target, old_params, rule, time_from) = if path.exists() {
            let p = baseline::load(&path)?;
            let rule = DeadlineRule {
                percentile: p.deadline.percentile,
                slack: p.deadline.slack,
                slo_target_percent: p.deadline.slo_target_percent,
            };
            (p.target, p.params, rule, p.deadline.timing)
        } else if catalogue.get(&name).is_some() {
            notes.push(format!(
                "no baseline profile `{}`: both sides start from the function's defaults",
                path.display()
            ));
            (
                Target::Builtin,
                Map::new(),
                settings.rule,
                settings.time_from,
            )
        } else {
            return Err(ProfileError::Baseline(format!(
                "no baseline for `{name}`: `{}` does not exist and it is not a built-in function (run `slokit profile --name {name} ...` first)",
                path.display()
            )));
        };
        let mut new_params = old_params.clone();
        if let Value::Object(o) = param_overrides {
            for (k, v) in o {
                new_params.insert(k.clone(), v.clone());
            }
        }
        if !params_equal(
            &Value::Object(new_params.clone()),
            &Value::Object(old_params.clone()),
        ) {
            notes.push(format!(
                "parameters: old {} → new {}",
                Value::Object(old_params.clone()),
                Value::Object(new_params.clone())
            ));
        }
        out.push(Case {
            name,
            baseline: path,
            target,
            old_params,
            new_params,
            rule,
            time_from,
            notes,
        });
    }
    Ok(out)
}

/// The paired plan from the profiling settings: the same warm-up, batch
/// size, duty cycle and time cap (now shared by both sides).
fn plan(settings: &Settings) -> PairedPlan {
    PairedPlan {
        warmup: settings.plan.warmup,
        max_time: settings.plan.max_time,
        max_runs: settings.plan.max_runs,
        batch_target: settings.plan.batch_target,
        duty_cycle: settings.plan.duty_cycle,
    }
}

/// A paired measurement, its sides already gone.
struct Measured {
    sampling: PairedSampling,
    details: PairedDetails,
    notes: Vec<String>,
}

/// One paired measurement with fresh sides (new processes), which end
/// before this returns.
fn measure(
    case: &Case,
    opts: &AgainstOptions,
    cpu: usize,
    settings: &Settings,
    interrupt: &InterruptFlag,
    observer: &mut dyn Observer,
) -> Result<Measured, ProfileError> {
    let mut built = build_sides(case, opts, cpu, settings)?;
    let mut clock = SystemClock::default();
    let sampling = sample_pairs(
        Sides {
            old: built.old.as_mut(),
            new: built.new.as_mut(),
        },
        &mut clock,
        &plan(settings),
        &interrupt.flag,
        observer,
    )?;
    let mut notes = built.notes.clone();
    if let Some(counts) = &built.unreported {
        let n: i32 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if n > 0 {
            notes.push(format!(
                "{n} runs printed no time on stderr and were timed as whole processes"
            ));
        }
    }
    let details = PairedDetails {
        runner: built.runner,
        old: built.old_label.clone(),
        new: built.new_label.clone(),
        pairs: sampling.pairs.len(),
        runs_per_side: sampling.old_ns.len(),
        elapsed_s: sampling.elapsed.as_secs_f64(),
    };
    Ok(Measured {
        sampling,
        details,
        notes,
    })
}

fn quantile_us(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

/// Runs the paired gate over `functions` (every baseline when empty).
#[allow(clippy::too_many_arguments)]
pub fn run_paired_gate(
    baseline_dir: &Path,
    functions: &[String],
    param_overrides: &Value,
    opts: &AgainstOptions,
    catalogue: &Catalogue,
    settings: &Settings,
    gs: &GateSettings,
    observer: &mut dyn Observer,
) -> Result<GateReport, ProfileError> {
    gs.validate()?;
    settings.validate()?;
    if settings.metric != crate::Metric::WallTime {
        return Err(ProfileError::Settings(
            "--against compares wall time of two builds run paired; --metric instructions compares exact counts with the committed profile (no pairing needed): use one or the other".into(),
        ));
    }
    let cases = cases(
        baseline_dir,
        functions,
        param_overrides,
        catalogue,
        settings,
    )?;
    let mut warnings = Vec::new();
    let mut results = Vec::new();
    let mut env_line = String::new();
    for case in cases {
        observer.start(&case.name);
        let interrupt = InterruptFlag::register()?;
        let (cpu, allowed) = isolation::choose_cpu(settings.cpu)?;
        let system = SystemReport::probe(cpu);
        observer.system(&system);
        env_line = system.environment.one_line();
        let mut notes = case.notes.clone();
        for w in &system.warnings {
            observer.warning(w);
        }
        // Guards drop in reverse order: sides (inside `measure`), --isolate, this thread's pin.
        let others: Vec<usize> = allowed.iter().copied().filter(|&c| c != cpu).collect();
        let _main_pin = if others.is_empty() {
            notes.push(format!(
                "no CPU other than {cpu}: the gate's own threads share the measurement CPU"
            ));
            None
        } else {
            AffinityGuard::pin_current(&others).ok()
        };
        let _isolate = settings.isolate.then(|| IsolateGuard::isolate(cpu));

        let mut m = measure(&case, opts, cpu, settings, &interrupt, observer)?;
        let mut decision = decide_paired(&m.sampling.ratios(), gs)?;
        let mut remeasured = false;
        if decision.verdict == Verdict::Regression && gs.confirm {
            remeasured = true;
            let first = decision;
            m = measure(&case, opts, cpu, settings, &interrupt, observer)?;
            let second = decide_paired(
                &m.sampling.ratios(),
                &GateSettings {
                    seed: gs.seed ^ 0x5eed,
                    ..gs.clone()
                },
            )?;
            decision = if second.verdict == Verdict::Regression {
                second
            } else {
                notes.push(format!(
                    "first measurement was {:+.1} % slower; the re-measurement (fresh processes) was {:+.1} %: not counted",
                    (first.ratio.point - 1.0) * 100.0,
                    (second.ratio.point - 1.0) * 100.0
                ));
                super::paired::PairedDecision {
                    verdict: Verdict::Unconfirmed,
                    ..second
                }
            };
        }
        notes.extend(m.notes);
        let sampling = m.sampling;
        if sampling.pairs.len() < 2 * MIN_BLOCKS {
            let w = format!(
                "`{}`: only {} pairs (the decision wants ≥ {}); raise --max-time",
                case.name,
                sampling.pairs.len(),
                2 * MIN_BLOCKS
            );
            observer.warning(&w);
            warnings.push(w);
        }
        let q = case.rule.percentile / 100.0;
        results.push(FunctionResult {
            function: case.name.clone(),
            baseline: case.baseline.clone(),
            baseline_median_us: quantile_us(&sampling.old_ns, 0.5),
            current_median_us: quantile_us(&sampling.new_ns, 0.5),
            change: decision.ratio.point - 1.0,
            change_ci: [decision.ratio.lo - 1.0, decision.ratio.hi - 1.0],
            significant: decision.significant,
            baseline_deadline_us: quantile_us(&sampling.old_ns, q) * case.rule.slack,
            current_deadline_us: quantile_us(&sampling.new_ns, q) * case.rule.slack,
            verdict: decision.verdict,
            remeasured,
            notes,
            paired: Some(m.details),
        });
    }
    Ok(GateReport {
        mode: GateMode::Paired,
        against: Some(opts.against.clone()),
        ..GateReport::new(env_line, gs, results, warnings)
    })
}
