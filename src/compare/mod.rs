//! `slokit compare`: profiles the functions when needed, starts one function
//! host per function on the function CPUs, replays the same arrival schedule
//! under each policy with the scheduling agent attached, adds the simulated
//! runs (SRPT, PS, FIFO, and two-level and las through the same policy
//! objects the agent runs) for the same schedule, and hands the records to
//! the report. Presentation lives behind [`CompareObserver`].

pub mod cgroup;
pub mod children;
pub mod external;
pub mod profiles;
pub mod runner;
pub mod schedules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use slokit_functions::{Catalogue, CatalogueConfig, Environment, RunRecord, Schedule};
use slokit_report::{Comparison, PolicyRun, ScenarioRuns, ServiceCheck};
use slokit_sched::policy::CpuService;
use slokit_sched::sim::{simulate, ServiceModel, ServiceSampler, SimConfig, SimPolicy};

use crate::experiment::{Experiment, HostSpec, Workload};
use cgroup::CgroupTree;
use profiles::HostProfiling;
use runner::{run_once, transport_overhead, RunSettings, Transport};
use schedules::{scenario_schedule, tail_services_us, ServiceFacts};

/// What `compare` needs besides the experiment.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub experiment: Experiment,
    /// Folder relative paths of the experiment are resolved against.
    pub root: PathBuf,
    /// Folder for the run records, agent metrics and partial results.
    pub out_dir: PathBuf,
    /// The `slokit` binary used for hosts and agents.
    pub slokit: PathBuf,
    /// Profile every function again even when its profile is fresh.
    pub reprofile: bool,
    /// Measure even when the CPU check fails; every run record then says so.
    pub force: bool,
}

/// Progress of a comparison; every hook defaults to nothing. Also the load
/// generator's reporter (per-run progress) and the profiler's observer.
pub trait CompareObserver: slokit_loadgen::Reporter {
    /// A line worth showing (placement, profiles, schedules, warnings).
    fn note(&self, _text: &str) {}
    /// Run `index` of `total` starts.
    fn run_started(
        &self,
        _scenario: &str,
        _policy: &str,
        _repetition: u32,
        _index: usize,
        _total: usize,
    ) {
    }
    /// A run ended with this record.
    fn run_finished(&self, _scenario: &str, _record: &RunRecord) {}
    /// The profiler's observer, for profiles derived on the way.
    fn profiler(&self) -> Box<dyn slokit_profiler::Observer + '_> {
        Box::new(slokit_profiler::NoopObserver)
    }
}

/// What a comparison produced: every run that finished, and why it stopped
/// early if it did. The comparison is valid (and reportable) even then.
#[derive(Debug)]
pub struct CompareOutcome {
    pub comparison: Comparison,
    pub interrupted: bool,
    pub error: Option<anyhow::Error>,
}

fn online_cpus() -> usize {
    Environment::probe().logical_cpus
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The simulator's service model: the profiles' distributions for mixes;
/// trace replays carry their own per-arrival durations.
fn service_model(
    profiled: &HashMap<String, profiles::ProfiledFunction>,
) -> anyhow::Result<ServiceModel> {
    let mut model = ServiceModel::new();
    for (label, p) in profiled {
        model = model.with(
            label.clone(),
            ServiceSampler::from_histogram(&p.histogram_us)?,
        );
    }
    Ok(model)
}

/// What `slokit simulate --experiment` replays for one scenario.
#[derive(Debug, Clone)]
pub struct SimulationInput {
    pub schedule: Schedule,
    /// Service-time distributions by label (the profiles').
    pub model: ServiceModel,
    /// p99 service time by label, µs (las's thresholds), as `compare`
    /// passes them to the agent.
    pub services_us: HashMap<String, f64>,
}

/// The schedule, service model and known service times of one scenario of
/// `exp` on a model of `cpus` CPUs — what `slokit simulate --experiment`
/// replays. Profiles are loaded (or derived when missing or stale) exactly
/// as `compare` does.
pub fn scenario_for_simulation(
    exp: &Experiment,
    scenario: &str,
    cpus: usize,
    root: &Path,
    observer: &mut dyn slokit_profiler::Observer,
) -> anyhow::Result<SimulationInput> {
    let mut exp = exp.clone();
    exp.select_scenarios(&[scenario.to_string()])
        .map_err(anyhow::Error::msg)?;
    let catalogue = Catalogue::builtin(&CatalogueConfig::default());
    let measure_cpu = online_cpus() - 1;
    let hosts = HostProfiling {
        runtime_cpu: measure_cpu,
        client_cpu: 0,
        cgroups: exp
            .has_external_hosts()
            .then(|| CgroupTree::create().ok().map(Arc::new))
            .flatten(),
        log_dir: std::env::temp_dir(),
    };
    let profiled =
        profiles::ensure_profiles(&exp, root, &catalogue, measure_cpu, &hosts, false, observer)?;
    let facts: HashMap<String, ServiceFacts> =
        profiled.iter().map(|(l, p)| (l.clone(), p.facts)).collect();
    let schedule = scenario_schedule(
        &exp.scenarios[0],
        &facts,
        cpus,
        exp.seed,
        exp.trace_deadline_slack,
        root,
    )?;
    Ok(SimulationInput {
        services_us: tail_services_us(&schedule, &profiled_p99_us(&profiled)),
        schedule,
        model: service_model(&profiled)?,
    })
}

/// The profiles' p99 service time per label, µs.
pub fn profiled_p99_us(
    profiled: &HashMap<String, profiles::ProfiledFunction>,
) -> HashMap<String, f64> {
    profiled
        .iter()
        .map(|(l, p)| (l.clone(), p.histogram_us.value_at_quantile(0.99) as f64))
        .collect()
}

/// The simulated runs of `schedule` on `cpus` CPUs: SRPT (the bound), PS
/// (the model of CFS), FIFO, two-level and las (the agent's own policy
/// objects over the model of the kernel's classes). `services_us` are the
/// known p99 service times (las's thresholds); `transport`, when measured,
/// is added to every simulated response.
pub fn simulated_bounds(
    schedule: &Schedule,
    model: &ServiceModel,
    exp: &Experiment,
    cpus: usize,
    services_us: &HashMap<String, f64>,
    transport: Option<&ServiceSampler>,
) -> anyhow::Result<Vec<RunRecord>> {
    [
        SimPolicy::Srpt,
        SimPolicy::Ps,
        SimPolicy::Fifo,
        SimPolicy::TwoLevel,
        SimPolicy::Las,
    ]
    .into_iter()
    .map(|policy| {
        let cfg = SimConfig {
            params: exp.two_level,
            las: exp.las.clone(),
            services_us: services_us.clone(),
            transport: transport.cloned(),
            seed: exp.seed,
            ..SimConfig::new(cpus as u32, policy)
        };
        Ok(simulate(schedule, model, &cfg)
            .with_context(|| format!("simulating {}", policy.name()))?
            .record)
    })
    .collect()
}

/// The mean service time the simulator drew from (the schedule's, i.e. the
/// profile's or the trace's) against the mean on-CPU time per request the
/// las agent measured during the runs, per function.
fn service_check(
    schedule: &Schedule,
    measured: &HashMap<String, Vec<CpuService>>,
) -> Vec<ServiceCheck> {
    schedule
        .functions
        .iter()
        .filter_map(|f| {
            let runs = measured.get(&f.label)?;
            let count: u64 = runs.iter().map(|c| c.count).sum();
            let sum: f64 = runs.iter().map(|c| c.mean_us * c.count as f64).sum();
            let model_us = f.service_us?;
            (count > 0).then(|| ServiceCheck {
                label: f.label.clone(),
                model_mean_ms: model_us / 1e3,
                measured_mean_ms: sum / count as f64 / 1e3,
                measured_by: format!("las agent, eBPF on-CPU time of {count} requests"),
            })
        })
        .collect()
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The external hosts of `exp` by label.
fn external_hosts(exp: &Experiment) -> HashMap<String, HostSpec> {
    let mut out = HashMap::new();
    for s in &exp.scenarios {
        if let Workload::Mix { functions, .. } = &s.workload {
            for f in functions {
                if let Some(h) = &f.host {
                    out.entry(f.label.clone()).or_insert_with(|| h.clone());
                }
            }
        }
    }
    out
}

/// Saves the comparison so far, so a crash or Ctrl-C loses nothing measured.
pub fn save_partial(comparison: &Comparison, out_dir: &Path) -> anyhow::Result<()> {
    let path = out_dir.join("comparison.json");
    let text = serde_json::to_string(comparison)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs the whole comparison.
pub fn run_compare(
    opts: &CompareOptions,
    stop: &Arc<AtomicBool>,
    observer: &dyn CompareObserver,
) -> anyhow::Result<CompareOutcome> {
    let exp = &opts.experiment;
    let (function_cpus, agent_cpus) = exp
        .placement
        .resolve(online_cpus())
        .map_err(|e| anyhow::anyhow!("placement: {e}"))?;
    let cpus = function_cpus.len();
    observer.note(&format!(
        "function CPUs {function_cpus:?} (c = {cpus}); load generator and agent on CPUs {agent_cpus:?}"
    ));
    // Every CPU is checked before anything (profiles included) runs on it.
    let in_use: Vec<usize> = function_cpus.iter().chain(&agent_cpus).copied().collect();
    let cpu_notes = slokit_sys::canary::preflight(&in_use, opts.force)?;
    for n in &cpu_notes {
        observer.note(&format!("warning: {n}"));
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;

    let log_dir = opts.out_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    // Every host's tree lives in a cgroup of this comparison, which a
    // watchdog kills if compare dies without cleaning up (cgroup.rs).
    let cgroups = match CgroupTree::create() {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            observer.note(&format!(
                "warning: no cgroup for the hosts ({e:#}); each host is held by its process group                  and a parent-death signal only, so a runtime's process that leaves its group                  could outlive a SIGKILL of compare"
            ));
            None
        }
    };
    let external = external_hosts(exp);
    let catalogue = Catalogue::builtin(&CatalogueConfig::default());
    let measure_cpu = *function_cpus
        .last()
        .expect("placement gives at least one function CPU");
    let profiled = {
        let mut obs = observer.profiler();
        let hosts = HostProfiling {
            runtime_cpu: measure_cpu,
            client_cpu: agent_cpus[0],
            cgroups: cgroups.clone(),
            log_dir: log_dir.clone(),
        };
        profiles::ensure_profiles(
            exp,
            &opts.root,
            &catalogue,
            measure_cpu,
            &hosts,
            opts.reprofile,
            obs.as_mut(),
        )?
    };
    let mut labels: Vec<&String> = profiled.keys().collect();
    labels.sort();
    let mut deadline_sources = serde_json::Map::new();
    for label in labels {
        let p = &profiled[label];
        observer.note(&format!(
            "{label}: service {:.1} µs, deadline {:.1} µs ({})",
            p.facts.service_us, p.facts.deadline_us, p.origin
        ));
        deadline_sources.insert(label.clone(), p.origin.clone().into());
    }
    // Profiles measure on a function CPU; from here on slokit itself (the
    // load generator) stays on the other CPUs.
    slokit_sys::cpu::pin_current_thread(&agent_cpus)
        .with_context(|| format!("cannot pin slokit to CPUs {agent_cpus:?}"))?;
    let facts: HashMap<String, ServiceFacts> =
        profiled.iter().map(|(l, p)| (l.clone(), p.facts)).collect();
    let model = service_model(&profiled)?;

    let mut environment = Environment::probe();
    let mut hosts_listed: Vec<(&String, &HostSpec)> = external.iter().collect();
    hosts_listed.sort_by_key(|(label, _)| *label);
    environment.function_hosts = hosts_listed
        .into_iter()
        .map(
            |(label, spec)| slokit_functions::environment::FunctionHost {
                label: label.clone(),
                command: spec.command_line(),
                runtime: external::runtime_version(spec),
            },
        )
        .collect();
    let mut settings_echo = serde_json::to_value(exp)?;
    if let Some(map) = settings_echo.as_object_mut() {
        // Where each deadline came from: a profile file, a profile made now,
        // the experiment's deadline_ms (external hosts).
        map.insert("deadline_sources".into(), deadline_sources.into());
    }
    let mut comparison = Comparison {
        title: "slokit compare".into(),
        environment,
        seed: exp.seed,
        created_unix_ms: unix_ms(),
        settings: settings_echo,
        scenarios: Vec::new(),
    };
    let settings = RunSettings {
        slokit: opts.slokit.clone(),
        function_cpus,
        agent_cpus,
        workers_per_host: exp.placement.workers_per_host,
        two_level: slokit_sched::TwoLevelParams {
            cpus: cpus as u32,
            ..exp.two_level
        },
        las: exp.las.clone(),
        work_dir: opts.out_dir.clone(),
        log_dir,
        external,
        cgroups,
        force_cpu_check: opts.force,
    };
    let Transport {
        p99_us: overhead_us,
        sampler: transport,
    } = transport_overhead(&settings, 200)?;
    observer.note(&format!(
        "transport overhead (idle p99 of an empty invocation): {overhead_us:.0} µs, added to every deadline; \
         simulated responses add draws from its distribution (mean {:.0} µs)",
        transport.mean_us()
    ));
    let profiled_p99 = profiled_p99_us(&profiled);
    let mut schedules = Vec::new();
    for scenario in &exp.scenarios {
        let mut schedule = scenario_schedule(
            scenario,
            &facts,
            cpus,
            exp.seed,
            exp.trace_deadline_slack,
            &opts.root,
        )?;
        for f in &mut schedule.functions {
            // A deadline measured over HTTP already holds the transport.
            let is_response = facts.get(&f.label).is_some_and(|x| x.deadline_is_response);
            if !is_response {
                f.deadline_us = f.deadline_us.map(|d| d + overhead_us);
            }
        }
        observer.note(&format!(
            "{}: {} invocations over {:.1} s ({})",
            scenario.name,
            schedule.arrivals.len(),
            schedule.duration_s(),
            schedule.source
        ));
        let services = tail_services_us(&schedule, &profiled_p99);
        let bounds = simulated_bounds(&schedule, &model, exp, cpus, &services, Some(&transport))?;
        comparison.scenarios.push(ScenarioRuns {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            runs: Vec::new(),
            bounds,
            service_check: Vec::new(),
        });
        schedules.push((schedule, services));
    }

    let total = exp.scenarios.len() * exp.repetitions as usize * exp.policies.len();
    let mut index = 0;
    let mut error = None;
    // Per scenario and label: the CPU time per request the agent measured.
    let mut cpu_service: Vec<HashMap<String, Vec<CpuService>>> =
        vec![HashMap::new(); schedules.len()];
    'runs: for (si, (schedule, services)) in schedules.iter().enumerate() {
        let name = exp.scenarios[si].name.clone();
        for repetition in 0..exp.repetitions {
            // Policies interleave within a repetition, so slow drift of the
            // machine spreads over all of them instead of favouring one.
            for &policy in &exp.policies {
                if stop.load(Ordering::Relaxed) {
                    break 'runs;
                }
                index += 1;
                observer.run_started(&name, policy.name(), repetition, index, total);
                let tag = format!("{name}-{}-{repetition}", policy.name());
                match run_once(schedule, services, policy, &tag, &settings, stop, observer) {
                    Ok(mut out) => {
                        out.record.notes.extend(cpu_notes.iter().cloned());
                        observer.run_finished(&name, &out.record);
                        for (label, c) in &out.cpu_service {
                            cpu_service[si].entry(label.clone()).or_default().push(*c);
                        }
                        let path = opts.out_dir.join(format!("run-{tag}.json"));
                        std::fs::write(&path, serde_json::to_string_pretty(&out.record)?)
                            .with_context(|| format!("writing {}", path.display()))?;
                        comparison.scenarios[si].runs.push(PolicyRun {
                            policy: policy.name().to_string(),
                            repetition,
                            record: out.record,
                            timeline: out.timeline,
                        });
                        save_partial(&comparison, &opts.out_dir)?;
                    }
                    Err(e) => {
                        error = Some(e.context(format!("run {tag}")));
                        break 'runs;
                    }
                }
                sleep_unless_stopped(Duration::from_secs_f64(exp.cooldown_s), stop);
            }
        }
    }
    for (si, (schedule, _)) in schedules.iter().enumerate() {
        comparison.scenarios[si].service_check = service_check(schedule, &cpu_service[si]);
    }
    comparison.scenarios.retain(|s| !s.runs.is_empty());
    Ok(CompareOutcome {
        interrupted: stop.load(Ordering::Relaxed),
        comparison,
        error,
    })
}
