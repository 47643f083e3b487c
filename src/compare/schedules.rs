//! Turns an experiment's scenarios into arrival schedules — the one value
//! every policy (and the simulator) replays. Mixes take service times and
//! deadlines from the profiles; trace replays are scaled to the scenario's
//! ρ and get deadlines from their own duration distribution.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use slokit_functions::Schedule;
use slokit_loadgen::azure2019::{self, Azure2019Options};
use slokit_loadgen::{mix_schedule, Load, MixEntry, MixSpec};

use crate::experiment::{parse_minutes, Scenario, Workload};

/// The `function` of an external host's entry in a schedule (its label
/// names it; the host itself is the experiment's `host` table).
pub const EXTERNAL_FUNCTION: &str = "external";

/// What a mix needs from a function's profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceFacts {
    /// Isolated service time, µs (the profile's mean).
    pub service_us: f64,
    /// The profile's deadline, µs.
    pub deadline_us: f64,
    /// Whether the deadline already bounds the *response* time over HTTP
    /// (profiled through a URL, or given as `deadline_ms`), so `compare`
    /// must not add the transport overhead to it again.
    pub deadline_is_response: bool,
}

/// Builds the schedule of `scenario` on `cpus` function CPUs. `facts` maps
/// each mix label to its profile figures; `root` resolves relative trace
/// paths.
pub fn scenario_schedule(
    scenario: &Scenario,
    facts: &HashMap<String, ServiceFacts>,
    cpus: usize,
    seed: u64,
    trace_deadline_slack: f64,
    root: &Path,
) -> anyhow::Result<Schedule> {
    let mut schedule = match &scenario.workload {
        Workload::Mix { rho, functions } => {
            let entries = functions
                .iter()
                .map(|f| {
                    let fact = facts
                        .get(&f.label)
                        .with_context(|| format!("no profile figures for `{}`", f.label))?;
                    Ok(MixEntry {
                        label: f.label.clone(),
                        function: f.builtin().unwrap_or(EXTERNAL_FUNCTION).to_string(),
                        params: f.params.clone(),
                        weight: f.weight,
                        service_us: Some(fact.service_us),
                        deadline_us: Some(fact.deadline_us),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            mix_schedule(&MixSpec {
                functions: entries,
                load: Load::Rho {
                    rho: *rho,
                    cpus: cpus as f64,
                },
                duration_s: scenario.duration_s,
                seed,
            })?
        }
        Workload::Azure2019 {
            trace_dir,
            minutes,
            rho,
            max_duration_ms,
        } => {
            let dir = if trace_dir.is_absolute() {
                trace_dir.clone()
            } else {
                root.join(trace_dir)
            };
            let window = parse_minutes(minutes)
                .map_err(|e| anyhow::anyhow!("scenario `{}`: {e}", scenario.name))?;
            let mut opts = Azure2019Options {
                minutes: window,
                scale: 1.0,
                max_duration_ms: *max_duration_ms,
                seed,
                ..Azure2019Options::default()
            };
            let full = azure2019::schedule(&dir, &opts).with_context(|| {
                format!(
                    "scenario `{}`: reading the trace in {}",
                    scenario.name,
                    dir.display()
                )
            })?;
            let window_s = (window.1 - window.0) as f64 * 60.0;
            let offered = offered_load(&full, window_s, cpus);
            if offered <= 0.0 {
                bail!(
                    "scenario `{}`: the trace window {minutes} has no work",
                    scenario.name
                );
            }
            opts.scale = rho / offered;
            let mut scaled = azure2019::schedule(&dir, &opts)?;
            scaled.source = format!(
                "{} (rate ×{:.4} for ρ = {rho} on {cpus} CPU(s))",
                scaled.source, opts.scale
            );
            truncate(&mut scaled, scenario.duration_s);
            set_trace_deadlines(&mut scaled, trace_deadline_slack);
            scaled
        }
    };
    schedule.source = format!("{}: {}", scenario.name, schedule.source);
    if schedule.arrivals.is_empty() {
        bail!(
            "scenario `{}` produced no arrivals; raise duration_s or rho",
            scenario.name
        );
    }
    Ok(schedule)
}

/// Σ service time / (window × CPUs): the utilisation the schedule offers.
pub fn offered_load(schedule: &Schedule, window_s: f64, cpus: usize) -> f64 {
    let work_us: f64 = schedule
        .arrivals
        .iter()
        .filter_map(|a| schedule.service_us(a))
        .sum();
    work_us / 1e6 / (window_s * cpus as f64)
}

/// Keeps the arrivals of the first `duration_s` seconds and drops functions
/// left without any (re-indexing the rest).
pub fn truncate(schedule: &mut Schedule, duration_s: f64) {
    let limit = (duration_s * 1e9) as u64;
    schedule.arrivals.retain(|a| a.at_ns < limit);
    let mut used = vec![false; schedule.functions.len()];
    for a in &schedule.arrivals {
        used[a.function as usize] = true;
    }
    let mut new_index = vec![u32::MAX; used.len()];
    let mut kept = Vec::new();
    for (i, f) in schedule.functions.drain(..).enumerate() {
        if used[i] {
            new_index[i] = kept.len() as u32;
            kept.push(f);
        }
    }
    schedule.functions = kept;
    for a in &mut schedule.arrivals {
        a.function = new_index[a.function as usize];
    }
}

/// The 99th percentile of each function's service time, µs, by label:
/// from the schedule's own per-arrival durations (trace replays) or else
/// from `profiled_p99_us` (the profiles). las derives its levels from them.
pub fn tail_services_us(
    schedule: &Schedule,
    profiled_p99_us: &HashMap<String, f64>,
) -> HashMap<String, f64> {
    let mut per_function: Vec<Vec<f64>> = vec![Vec::new(); schedule.functions.len()];
    for a in &schedule.arrivals {
        if let Some(s) = schedule.own_service_us(a) {
            per_function[a.function as usize].push(s);
        }
    }
    schedule
        .functions
        .iter()
        .zip(per_function)
        .filter_map(|(f, mut services)| {
            if services.is_empty() {
                return profiled_p99_us.get(&f.label).map(|p| (f.label.clone(), *p));
            }
            services.sort_by(f64::total_cmp);
            let rank =
                ((services.len() as f64 * 0.99).ceil() as usize).clamp(1, services.len()) - 1;
            Some((f.label.clone(), services[rank]))
        })
        .collect()
}

/// A trace function's deadline: the 99th percentile of its drawn durations
/// × `slack` — the same rule as a profile's, with the trace's duration
/// distribution standing in for the isolated runs.
pub fn set_trace_deadlines(schedule: &mut Schedule, slack: f64) {
    let mut per_function: Vec<Vec<f64>> = vec![Vec::new(); schedule.functions.len()];
    for a in &schedule.arrivals {
        if let Some(s) = schedule.own_service_us(a) {
            per_function[a.function as usize].push(s);
        }
    }
    for (f, mut services) in schedule.functions.iter_mut().zip(per_function) {
        if services.is_empty() {
            continue;
        }
        services.sort_by(f64::total_cmp);
        let rank = ((services.len() as f64 * 0.99).ceil() as usize).clamp(1, services.len()) - 1;
        f.service_us = Some(services.iter().sum::<f64>() / services.len() as f64);
        f.deadline_us = Some(services[rank] * slack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn facts() -> HashMap<String, ServiceFacts> {
        [("auth", 20.0), ("aes", 2_000.0), ("video", 150_000.0)]
            .into_iter()
            .map(|(l, s)| {
                (
                    l.to_string(),
                    ServiceFacts {
                        service_us: s,
                        deadline_us: s * 2.0,
                        deadline_is_response: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn colocated_mix_offers_the_requested_load() {
        let e = Experiment::default_experiment();
        let mut s = e.scenarios[0].clone();
        s.duration_s = 600.0;
        let sched = scenario_schedule(&s, &facts(), 1, 7, 1.5, root()).unwrap();
        let rho = offered_load(&sched, 600.0, 1);
        assert!((rho - 0.8).abs() < 0.05, "offered ρ = {rho}");
        assert_eq!(sched.functions[2].deadline_us, Some(300_000.0));
    }

    #[test]
    fn azure_replay_is_scaled_to_rho_truncated_and_has_deadlines() {
        let e = Experiment::default_experiment();
        let mut s = e.scenarios[1].clone();
        s.duration_s = 30.0;
        let sched = scenario_schedule(&s, &HashMap::new(), 1, 3, 1.5, root()).unwrap();
        assert!(sched.duration_s() < 30.0);
        let rho = offered_load(&sched, 30.0, 1);
        assert!((0.5..1.1).contains(&rho), "offered ρ = {rho}");
        assert!(sched
            .functions
            .iter()
            .all(|f| f.function == "spin" && f.deadline_us.is_some()));
        sched.validate().unwrap();
    }

    #[test]
    fn truncate_reindexes_functions() {
        use slokit_functions::{Arrival, ScheduledFunction};
        let f = |l: &str| ScheduledFunction {
            label: l.into(),
            function: "spin".into(),
            params: serde_json::Value::Null,
            service_us: None,
            deadline_us: None,
        };
        let mut extras = Vec::new();
        let mut a = |t: u64, i: u32| Arrival::with_extra(t, i, &mut extras, None, Some(1.0));
        let arrivals = vec![a(1, 2), a(2, 0), a(5_000_000_000, 1)];
        let mut s = Schedule {
            source: "t".into(),
            seed: 0,
            functions: vec![f("a"), f("b"), f("c")],
            arrivals,
            extras,
        };
        truncate(&mut s, 1.0);
        assert_eq!(
            s.functions
                .iter()
                .map(|f| f.label.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            s.arrivals.iter().map(|a| a.function).collect::<Vec<_>>(),
            [1, 0]
        );
    }
}
