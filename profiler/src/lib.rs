//! slokit-profiler: runs a function many times on a pinned, isolated CPU,
//! derives its deadline (the SLO "X % of invocations finish within D") and
//! stores it as a profile; the regression gate re-profiles and compares.
//!
//! The seed's method ("test the function in an ideally isolated environment,
//! run it several times, keep the environment the same") made rigorous:
//! `SCHED_FIFO` on a dedicated CPU with a duty cycle under the RT-throttling
//! budget, a bootstrap stopping rule on the deadline percentile, and the
//! environment fingerprint stored beside the numbers. See docs/profiler.md.
//!
//! Entry points: [`profile_builtin`] / [`profile_target`] produce a
//! [`Profile`]; [`count_instructions`] counts a target's instructions
//! (`--metric instructions`, see [`instructions`]); [`Profile::load`] /
//! [`Profile::save`] read and write `profiles/<function>.toml`;
//! [`gate::run_gate`] compares against baselines.

pub mod error;
pub mod gate;
pub mod instructions;
pub mod isolation;
pub mod observer;
pub mod profile;
pub mod sampler;
pub mod stats;
pub mod target;

use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use slokit_functions::Catalogue;

pub use error::ProfileError;
pub use instructions::{CountSettings, InstructionSection};
pub use isolation::{Policy, SystemReport};
pub use observer::{NoopObserver, Observer, Phase, Progress};
pub use profile::{
    effective_params, DeadlineRule, Profile, ProfileConfig, QuantileEstimator, RuleOverrides,
    CONFIG_FILE, PROFILE_VERSION,
};
pub use sampler::{SamplingPlan, StopReason};
pub use target::{Target, TimeFrom};

use instructions::CountTarget;
use isolation::{InterruptFlag, IsolateGuard};
use profile::QuantileEstimator as Estimator;
use profile::{summarise, DeadlineSection, IsolationSection, SamplingSection};
use sampler::SystemClock;
use slokit_sys::cpu::AffinityGuard;
use stats::{bootstrap_percentile_ci, Sample};
use target::{BuiltinJob, CommandJob, HeaderTimedUrlJob, HttpUrl, IsolatedRunner, Job, UrlJob};

/// Spread of the instruction counts of one profile above which it carries
/// a warning (a tenth of the instruction gate's default threshold). Below
/// it the spread is still recorded (`instructions.min`/`max`): glibc's
/// `memcmp`/`memcpy` take alignment-dependent paths, so an invocation can
/// differ from the next by a few instructions.
const COUNT_SPREAD_WARNING: f64 = 0.001;

/// Drift of the 1-s window medians above which a profile carries a warning.
const DRIFT_WARNING: f64 = 0.05;

/// What a profile or a gate measures besides the deadline's wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Wall execution time (the gate compares medians).
    #[default]
    WallTime,
    /// Instructions executed per invocation (the profile adds the count;
    /// the gate compares counts and measures no time).
    Instructions,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::WallTime => "wall time",
            Metric::Instructions => "instructions",
        })
    }
}

/// Everything that shapes a profiling run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Measurement CPU; `None` = the last CPU this process may use.
    pub cpu: Option<usize>,
    /// `SCHED_FIFO` priority of the measurement thread (1..=99).
    pub priority: i32,
    /// Move other movable tasks off the CPU for the duration (`--isolate`).
    pub isolate: bool,
    /// Warm-up, stopping rule and caps. Its `percentile` is replaced by the
    /// deadline rule's.
    pub plan: SamplingPlan,
    /// How the deadline is derived.
    pub rule: DeadlineRule,
    /// Longest one batch of runs (or one counting child) may take before it is abandoned.
    pub timeout: Duration,
    /// [`Metric::Instructions`] adds an instruction count to the profile.
    pub metric: Metric,
    /// How instructions are counted.
    pub count: CountSettings,
    /// Where a command's run time comes from (`--time-from`).
    pub time_from: TimeFrom,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cpu: None,
            priority: 50,
            isolate: false,
            plan: SamplingPlan::default(),
            rule: DeadlineRule::default(),
            timeout: Duration::from_secs(60),
            metric: Metric::WallTime,
            count: CountSettings::default(),
            time_from: TimeFrom::Clock,
        }
    }
}

impl Settings {
    /// Checks every range; errors name the flag.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !(1..=99).contains(&self.priority) {
            return Err(ProfileError::Settings(format!(
                "--priority must be in 1..=99, got {}",
                self.priority
            )));
        }
        self.rule.validate()?;
        self.count.validate()?;
        self.plan.validate()
    }

    /// Checks the flags that only some targets support.
    fn validate_for(&self, target: &Target) -> Result<(), ProfileError> {
        if self.time_from == TimeFrom::Stdout && !matches!(target, Target::Command { .. }) {
            return Err(ProfileError::Settings(
                "--time-from stdout needs a --command target: it reads the time the command prints"
                    .into(),
            ));
        }
        if self.time_from == TimeFrom::Header && !matches!(target, Target::Url { .. }) {
            return Err(ProfileError::Settings(format!(
                "--time-from header needs a --url target: it reads the time the runtime reports \
                 in each reply's `{}` header",
                target::EXEC_US_HEADER
            )));
        }
        if self.metric == Metric::Instructions && matches!(target, Target::Url { .. }) {
            return Err(ProfileError::Settings(
                "--metric instructions cannot count a --url target (the server is another process): \
                 count the function as a built-in, or the server's code with --command"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Counts the instructions of one target (the gate's instruction metric
/// calls this alone; `--metric instructions` profiles call it after the
/// wall-time runs): a built-in's invocations, or a command's whole
/// processes. See [`instructions`] for how.
pub fn count_instructions(
    name: &str,
    target: &Target,
    params: &Value,
    catalogue: &Catalogue,
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Result<InstructionSection, ProfileError> {
    settings.validate()?;
    let counting = Settings {
        metric: Metric::Instructions,
        ..settings.clone()
    };
    counting.validate_for(target)?;
    let interrupt = InterruptFlag::register()?;
    let (cpu, _) = isolation::choose_cpu(settings.cpu)?;
    match target {
        Target::Builtin => {
            let function = catalogue.require(name)?.clone();
            function.invoke(params).map_err(|e| ProfileError::Invoke {
                function: name.to_string(),
                message: e.to_string(),
            })?;
            let t = CountTarget::Builtin {
                name,
                function,
                params,
            };
            count_with(&t, name, cpu, settings, &interrupt, observer)
        }
        Target::Command { command } => {
            let argv = target::command_argv(command)?;
            let t = CountTarget::Command { argv: &argv };
            count_with(&t, name, cpu, settings, &interrupt, observer)
        }
        Target::Url { .. } => unreachable!("validate_for refuses URLs"),
    }
}

fn count_with(
    target: &CountTarget<'_>,
    name: &str,
    cpu: usize,
    settings: &Settings,
    interrupt: &InterruptFlag,
    observer: &mut dyn Observer,
) -> Result<InstructionSection, ProfileError> {
    let how = match target {
        CountTarget::Builtin { .. }
            if !settings.count.force_valgrind && instructions::counter::available() =>
        {
            "with the hardware instruction counter"
        }
        CountTarget::Builtin { .. } => "under Valgrind (callgrind; the function's code only)",
        CountTarget::Command { .. } => "under Valgrind (cachegrind; whole processes)",
    };
    observer.note(&format!(
        "counting the instructions of `{name}` {how} on CPU {cpu}: {} warm-up + {} counted",
        match target {
            CountTarget::Builtin { .. } => settings.count.warmup,
            CountTarget::Command { .. } => 0,
        },
        settings.count.invocations
    ));
    // A simulated CPU runs ~50× slower than the real one: each counting
    // child gets at least ten minutes, or --timeout when that is longer.
    let timeout = settings.timeout.max(Duration::from_secs(600));
    instructions::count(target, cpu, &settings.count, timeout, &interrupt.flag)
}

/// Profiles the catalogue function `function_name` with `params` (JSON
/// object, or `null` for the defaults). The profile records the parameters
/// exactly as given (`{}` = the function's defaults), because filling in
/// defaults can conflict with functions whose parameters exclude each other
/// (`aes`: at most one of `plaintext`, `plaintext_hex`, `length`).
pub fn profile_builtin(
    function_name: &str,
    params: &Value,
    catalogue: &Catalogue,
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Result<Profile, ProfileError> {
    let function = catalogue.require(function_name)?.clone();
    let given = match params {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(ProfileError::Settings(format!(
                "parameters of `{function_name}` must be a JSON object, got {other}"
            )))
        }
    };
    // One invocation up front, off the measurement CPU, so bad parameters
    // fail fast with the function's own message.
    function.invoke(params).map_err(|e| ProfileError::Invoke {
        function: function_name.to_string(),
        message: e.to_string(),
    })?;
    let count = CountTarget::Builtin {
        name: function_name,
        function: function.clone(),
        params,
    };
    let job = Box::new(BuiltinJob {
        function,
        params: params.clone(),
    });
    run_profile(
        function_name,
        Target::Builtin,
        given,
        job,
        Arc::new(AtomicI32::new(0)),
        false,
        Some(count),
        settings,
        observer,
    )
}

/// Profiles any target: a built-in (looked up in `catalogue`), a command
/// (one process execution per run) or a URL (one HTTP request per run; the
/// parameters become a JSON `POST` body when not empty).
pub fn profile_target(
    name: &str,
    target: &Target,
    params: &Value,
    catalogue: &Catalogue,
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Result<Profile, ProfileError> {
    let params_map = match params {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(ProfileError::Settings(format!(
                "parameters must be a JSON object, got {other}"
            )))
        }
    };
    settings.validate_for(target)?;
    match target {
        Target::Builtin => profile_builtin(name, params, catalogue, settings, observer),
        Target::Command { command } => {
            let argv = target::command_argv(command)?;
            let child = Arc::new(AtomicI32::new(0));
            let job = Box::new(CommandJob {
                argv: argv.clone(),
                time_from: settings.time_from,
                current_child: child.clone(),
            });
            run_profile(
                name,
                target.clone(),
                params_map,
                job,
                child,
                true,
                Some(CountTarget::Command { argv: &argv }),
                settings,
                observer,
            )
        }
        Target::Url { url } => {
            let body =
                (!params_map.is_empty()).then(|| Value::Object(params_map.clone()).to_string());
            let job = UrlJob {
                url: HttpUrl::parse(url)?,
                body,
                timeout: settings.timeout,
            };
            let job: Box<dyn Job> = match settings.time_from {
                TimeFrom::Header => Box::new(HeaderTimedUrlJob(job)),
                _ => Box::new(job),
            };
            run_profile(
                name,
                target.clone(),
                params_map,
                job,
                Arc::new(AtomicI32::new(0)),
                false,
                None,
                settings,
                observer,
            )
        }
    }
}

/// Set-up, sampling, restore, summary — see the crate docs.
#[allow(clippy::too_many_arguments)]
fn run_profile(
    name: &str,
    target: Target,
    params: Map<String, Value>,
    job: Box<dyn Job>,
    child: Arc<AtomicI32>,
    reset_on_fork: bool,
    count_target: Option<CountTarget<'_>>,
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Result<Profile, ProfileError> {
    settings.validate()?;
    settings.validate_for(&target)?;
    let mut plan = settings.plan.clone();
    plan.percentile = settings.rule.percentile;
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |observer: &mut dyn Observer, w: String| {
        observer.warning(&w);
        warnings.push(w);
    };
    observer.start(name);

    let interrupt = InterruptFlag::register()?;
    let (cpu, allowed) = isolation::choose_cpu(settings.cpu)?;
    let system = SystemReport::probe(cpu);
    observer.system(&system);
    for w in &system.warnings {
        warn(observer, w.clone());
    }

    // Guards drop in reverse order: runner (FIFO off, thread joined), then
    // the --isolate move, then this thread's own affinity.
    let others: Vec<usize> = allowed.iter().copied().filter(|&c| c != cpu).collect();
    let _main_pin = if others.is_empty() {
        warn(observer, format!("no CPU other than {cpu} is available: slokit's own threads share the measurement CPU"));
        None
    } else {
        match AffinityGuard::pin_current(&others) {
            Ok(g) => Some(g),
            Err(e) => {
                warn(
                    observer,
                    format!("cannot move slokit's main thread off CPU {cpu}: {e}"),
                );
                None
            }
        }
    };
    let isolate = settings.isolate.then(|| IsolateGuard::isolate(cpu));
    if let Some(g) = &isolate {
        if g.outcome.refused > 0 || g.outcome.pinned_there > 0 {
            warn(
                observer,
                format!(
                    "--isolate moved {} tasks off CPU {cpu}; {} refused, {} may run only there and stayed",
                    g.outcome.moved, g.outcome.refused, g.outcome.pinned_there
                ),
            );
        }
    }
    let mut runner = IsolatedRunner::start(
        name,
        cpu,
        settings.priority,
        reset_on_fork,
        child,
        settings.timeout,
        job,
    )?;
    if let Some(e) = &runner.setup.fifo_error {
        warn(observer, e.clone());
    }
    let setup = runner.setup.clone();
    let mut clock = SystemClock::default();
    let sampling = sampler::sample(&mut runner, &mut clock, &plan, &interrupt.flag, observer);
    drop(runner);
    let isolate_outcome = isolate.as_ref().map(|g| g.outcome.clone());
    drop(isolate);
    let sampling = sampling?;
    // The count runs after the timed runs, with nothing real-time left.
    let instructions = match (settings.metric, &count_target) {
        (Metric::Instructions, Some(t)) => {
            let c = count_with(t, name, cpu, settings, &interrupt, observer)?;
            if c.spread() >= COUNT_SPREAD_WARNING {
                warn(
                    observer,
                    format!(
                        "the instruction count varied between invocations: {}–{} ({:.3} %) over {} ({}); the gate's threshold must exceed that",
                        c.min,
                        c.max,
                        c.spread() * 100.0,
                        c.invocations,
                        c.source
                    ),
                );
            }
            Some(c)
        }
        _ => None,
    };

    let wall = Sample::new(sampling.raw_wall_ns.clone())?;
    let seed = plan.seed;
    let median_ci = bootstrap_percentile_ci(&wall, 50.0, 1000, 0.95, seed)?;
    let pct_ci = bootstrap_percentile_ci(&wall, plan.percentile, 1000, 0.95, seed ^ 1)?;
    let summary = summarise(
        &wall,
        &sampling.cpu_ns,
        [median_ci.lo, median_ci.hi],
        [pct_ci.lo, pct_ci.hi],
    );
    let needed = plan.runs_before_precision_check();
    if sampling.runs < needed {
        warn(
            observer,
            format!(
                "stopped at {} after {} runs; a p{} estimate needs ≥ {needed} (10 runs beyond it), so this deadline is rough — raise --max-time",
                sampling.stop_reason, sampling.runs, plan.percentile
            ),
        );
    } else if sampling.stop_reason != StopReason::Precision {
        warn(
            observer,
            format!(
                "stopped at {} after {} runs before the p{} CI reached ±{:.1} % (reached ±{:.1} %)",
                sampling.stop_reason,
                sampling.runs,
                plan.percentile,
                plan.precision * 100.0,
                pct_ci.relative_half_width() * 100.0
            ),
        );
    }
    let drift = sampler::drift(&sampling.window_medians_ns);
    if let Some(d) = drift.filter(|&d| d > DRIFT_WARNING) {
        let (lo, hi) = sampling
            .window_medians_ns
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &m| {
                (lo.min(m), hi.max(m))
            });
        warn(
            observer,
            format!(
                "the machine's speed drifted while sampling: medians of 1-s windows ranged {:.1}–{:.1} µs ({:.1} %); profiles taken minutes apart will not agree closer than that",
                lo / 1e3,
                hi / 1e3,
                d * 100.0
            ),
        );
    }
    // Harrell–Davis: lower variance than the interpolated order statistic;
    // the median over blocks of it when the run spans enough windows, so a
    // few slow stretches of the machine do not decide the deadline and
    // consecutive profiles agree more closely.
    let whole_ns = wall.harrell_davis(plan.percentile);
    let blocks =
        crate::stats::median_of_block_percentiles(&sampling.windows_wall_ns, plan.percentile);
    let (percentile_ns, estimator) = match blocks {
        Some(b) => (b.median, Estimator::MedianOfBlocks),
        None => (whole_ns, Estimator::HarrellDavis),
    };
    let mut profile = Profile::new(
        name.to_string(),
        target,
        params,
        DeadlineSection {
            deadline_us: percentile_ns * settings.rule.slack / 1e3,
            percentile: settings.rule.percentile,
            slack: settings.rule.slack,
            slo_target_percent: settings.rule.slo_target_percent,
            basis: "wall".into(),
            timing: settings.time_from,
            estimator,
            blocks: blocks.map(|b| b.blocks),
            whole_sample_percentile_us: blocks.map(|_| whole_ns / 1e3),
            block_quartiles_us: blocks.map(|b| b.quartiles.map(|ns| ns / 1e3)),
        },
        summary,
        IsolationSection {
            cpu,
            policy: setup.policy,
            priority: setup.priority,
            isolate_requested: settings.isolate,
            isolate: isolate_outcome,
            cpu_busy_percent_before: system.cpu_busy_percent,
            cpu_in_isolcpus: system.cpu_isolated,
            cpu_in_nohz_full: system.cpu_nohz_full,
            duty_cycle: plan.duty_cycle,
            batch_ms: Some(plan.batch_target.as_secs_f64() * 1e3),
        },
        SamplingSection {
            warmup_runs: sampling.warmup_runs,
            runs: sampling.runs,
            elapsed_s: sampling.elapsed.as_secs_f64(),
            stop_reason: sampling.stop_reason,
            precision: plan.precision,
            percentile_ci_half_width: pct_ci.relative_half_width(),
            median_drift_percent: drift.map(|d| d * 100.0),
        },
        warnings,
        system.environment.clone(),
        &sampling.wall_ns,
        sampling.raw_wall_ns,
    );
    profile.instructions = instructions;
    observer.finish(&profile);
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slokit_functions::CatalogueConfig;

    #[test]
    fn profiling_spin_gives_a_deadline_near_its_cpu_time() {
        let catalogue = Catalogue::builtin(&CatalogueConfig::default());
        let settings = Settings {
            plan: SamplingPlan {
                warmup: 2,
                max_time: Duration::from_millis(600),
                ..SamplingPlan::default()
            },
            ..Settings::default()
        };
        let p = profile_builtin(
            "spin",
            &serde_json::json!({"ms": 2}),
            &catalogue,
            &settings,
            &mut NoopObserver,
        )
        .unwrap();
        assert!(p.summary.runs >= 2);
        // spin burns 2 ms of CPU; wall ≥ CPU, and the median is close to it.
        assert!(p.service_time_us() >= 1990.0, "{:?}", p.summary);
        assert!(
            p.summary.cpu_mean_us >= 1990.0 && p.summary.cpu_mean_us < 2500.0,
            "{:?}",
            p.summary
        );
        // The deadline is the Harrell–Davis p99 × 1.5: near the interpolated p99.
        let hd = Sample::new(p.raw_wall_ns.clone())
            .unwrap()
            .harrell_davis(99.0)
            / 1e3;
        assert!((p.deadline_us() - hd * 1.5).abs() < 1e-6 * p.deadline_us());
        assert_eq!(p.deadline.estimator, Estimator::HarrellDavis);
        assert_eq!(p.params["ms"], serde_json::json!(2));
        // The measurement thread is gone and this thread's affinity is back.
        assert_eq!(isolation::current_policy(), libc::SCHED_OTHER);
    }

    #[test]
    fn bad_params_fail_before_any_isolation() {
        let catalogue = Catalogue::builtin(&CatalogueConfig::default());
        let e = profile_builtin(
            "spin",
            &serde_json::json!({"ms": -1}),
            &catalogue,
            &Settings::default(),
            &mut NoopObserver,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`ms`"), "{e}");
    }

    #[test]
    #[ignore = "changes other processes' CPU affinity (the --isolate opt-in); run with --ignored"]
    fn isolate_moves_nothing_of_ours_and_restores_affinities() {
        // Snapshot every non-kernel task's affinity, isolate, restore, compare.
        let cpu = *slokit_sys::cpu::current_affinity().unwrap().last().unwrap();
        let snapshot = || {
            let mut m = std::collections::BTreeMap::new();
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                    if let Ok(a) = slokit_sys::cpu::get_affinity(pid) {
                        m.insert(pid, a);
                    }
                }
            }
            m
        };
        let before = snapshot();
        let g = IsolateGuard::isolate(cpu);
        let outcome = g.outcome.clone();
        drop(g);
        let after = snapshot();
        // Tasks present both times have the same mask (owners could change
        // theirs meanwhile, but not in this short window in practice).
        let changed: Vec<_> = before
            .iter()
            .filter(|(pid, a)| after.get(pid).is_some_and(|b| b != *a))
            .collect();
        assert!(
            changed.is_empty(),
            "not restored: {changed:?} ({outcome:?})"
        );
    }
}
