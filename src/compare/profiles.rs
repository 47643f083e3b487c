//! The profiles a comparison needs: loads `profiles/<label>.toml` for each
//! function of a mix, and when it is missing or stale (other parameters,
//! another machine) uses or derives this machine's own in
//! `profiles/local/<label>.toml` — the committed profiles are the gate's
//! baselines and a comparison never overwrites them. It hands the deadline,
//! the service time and the service-time distribution to the schedule and
//! simulator.
//!
//! An external host is profiled through its URL (`slokit profile --url`'s
//! measurement: one request per run from a pinned `SCHED_FIFO` client on a
//! load-generator CPU, the runtime alone on the measurement CPU), and the
//! profile is kept in `profiles/local/hosts/<label>.toml`. Its deadline is
//! then a response-time bound, unless the host table sets `service_header`:
//! then each run's time is the runtime's own `x-slokit-exec-us` header and
//! the deadline an execution-time bound like the built-ins' (the transport
//! overhead is added to it). A `deadline_ms` in the host table replaces it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::Value;
use slokit_functions::{Catalogue, Environment};
use slokit_profiler::profile::{effective_params, Profile, RuntimeSection};
use slokit_profiler::{profile_builtin, Observer, Settings, Target, TimeFrom};

use super::cgroup::CgroupTree;
use super::external::ExternalHost;
use super::schedules::ServiceFacts;
use crate::experiment::{Experiment, HostSpec, MixFunction, Workload};

/// Where and how external hosts are profiled.
#[derive(Debug, Clone)]
pub struct HostProfiling {
    /// The CPU the runtime runs on while it is measured.
    pub runtime_cpu: usize,
    /// The CPU of the measuring client (a load-generator CPU).
    pub client_cpu: usize,
    /// The comparison's cgroup for the host's tree, when there is one.
    pub cgroups: Option<Arc<CgroupTree>>,
    /// Folder the host's output is appended to.
    pub log_dir: PathBuf,
}

/// The folder under the profiles directory where comparisons keep the
/// profiles they make on this machine: the committed `profiles/<label>.toml`
/// are the gate's baselines and are never overwritten by a comparison (a
/// stale one is re-measured here instead, once, and reused while fresh).
pub const LOCAL: &str = "local";

/// A function's profile figures, keyed by mix label.
#[derive(Debug, Clone)]
pub struct ProfiledFunction {
    pub facts: ServiceFacts,
    /// Isolated execution times, µs.
    pub histogram_us: Histogram<u64>,
    /// Where it came from: "profiles/auth.toml" or "profiled now (reason)".
    pub origin: String,
}

/// Loads or derives the profile of every mix function of `exp`; external
/// hosts are profiled as `hosts` says.
pub fn ensure_profiles(
    exp: &Experiment,
    root: &Path,
    catalogue: &Catalogue,
    measure_cpu: usize,
    hosts: &HostProfiling,
    reprofile: bool,
    observer: &mut dyn Observer,
) -> anyhow::Result<HashMap<String, ProfiledFunction>> {
    let env = Environment::probe();
    let dir = if exp.profiles_dir.is_absolute() {
        exp.profiles_dir.clone()
    } else {
        root.join(&exp.profiles_dir)
    };
    let mut out = HashMap::new();
    for scenario in &exp.scenarios {
        let Workload::Mix { functions, .. } = &scenario.workload else {
            continue;
        };
        for f in functions {
            if out.contains_key(&f.label) {
                continue;
            }
            let Some(builtin) = f.builtin() else {
                let spec = f.host.as_ref().expect("validated: a function or a host");
                let p = external_profile(f, spec, &dir, &env, hosts, reprofile, observer)?;
                out.insert(f.label.clone(), p);
                continue;
            };
            let function = catalogue.require(builtin)?;
            let params = serde_json::Value::Object(effective_params(&function.info(), &f.params)?);
            let committed = dir.join(format!("{}.toml", f.label));
            let local = dir.join(LOCAL).join(format!("{}.toml", f.label));
            // A profile written by `slokit profile NAME` records the
            // parameters as given (`{}` = defaults): compare like with like.
            let staleness = |path: &Path| -> anyhow::Result<Result<Profile, String>> {
                if !path.exists() {
                    return Ok(Err(format!("{} is missing", path.display())));
                }
                let p = Profile::load(path)
                    .with_context(|| format!("reading the profile of `{}`", f.label))?;
                let recorded = Value::Object(p.params.clone());
                let mut as_run = p.clone();
                as_run.params = effective_params(&function.info(), &recorded)?;
                Ok(match as_run.is_stale(&params, &env) {
                    None => Ok(p),
                    Some(reason) => Err(format!("{reason} ({})", path.display())),
                })
            };
            let found = if reprofile {
                Err("--reprofile".to_string())
            } else {
                match staleness(&committed)? {
                    Ok(p) => Ok((p, committed.display().to_string())),
                    Err(why_not_committed) => match staleness(&local)? {
                        Ok(p) => Ok((p, format!("{} ({why_not_committed})", local.display()))),
                        Err(_) => Err(why_not_committed),
                    },
                }
            };
            let (profile, origin) = match found {
                Ok(found) => found,
                Err(reason) => {
                    observer.warning(&format!("profiling `{}` now: {reason}", f.label));
                    let settings = Settings {
                        cpu: Some(measure_cpu),
                        ..Settings::default()
                    };
                    let p = profile_builtin(builtin, &params, catalogue, &settings, observer)
                        .with_context(|| format!("profiling `{}`", f.label))?;
                    let parent = local.parent().expect("has a parent");
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                    p.save(&local)?;
                    (
                        p,
                        format!("profiled now ({reason}), saved to {}", local.display()),
                    )
                }
            };
            out.insert(f.label.clone(), from_profile(&profile, origin));
        }
    }
    Ok(out)
}

/// What an external host's profile records as its target: the URL pattern,
/// the command and the timing source, so a changed host table makes the
/// profile stale.
fn host_identity(spec: &HostSpec) -> Target {
    let timed = if spec.service_header {
        "; timed by its x-slokit-exec-us header"
    } else {
        ""
    };
    Target::Url {
        url: format!("{} (host: {}{timed})", spec.url, spec.command_line()),
    }
}

/// Where each profiling run's time of `spec` comes from.
fn host_timing(spec: &HostSpec) -> TimeFrom {
    if spec.service_header {
        TimeFrom::Header
    } else {
        TimeFrom::Clock
    }
}

/// Loads `hosts/<label>.toml` or profiles the host through its URL: starts
/// it on the runtime CPU, measures from the client CPU, stops it.
fn external_profile(
    f: &MixFunction,
    spec: &HostSpec,
    dir: &Path,
    env: &Environment,
    hosts: &HostProfiling,
    reprofile: bool,
    observer: &mut dyn Observer,
) -> anyhow::Result<ProfiledFunction> {
    if let (Some(deadline_ms), Some(service_ms)) = (spec.deadline_ms, spec.service_ms) {
        return Ok(given_figures(deadline_ms, service_ms));
    }
    let path = dir
        .join(LOCAL)
        .join("hosts")
        .join(format!("{}.toml", f.label));
    let params = if f.params.is_null() {
        Value::Object(Default::default())
    } else {
        f.params.clone()
    };
    let identity = host_identity(spec);
    let why_new = if reprofile {
        Some("--reprofile".to_string())
    } else if !path.exists() {
        Some(format!("{} is missing", path.display()))
    } else {
        let p = Profile::load(&path)
            .with_context(|| format!("reading the profile of `{}`", f.label))?;
        if p.target != identity || p.deadline.timing != host_timing(spec) {
            Some("the host's command, URL or timing changed".to_string())
        } else if p.runtime.is_none() {
            Some("it does not say what the runtime spent per request".to_string())
        } else {
            p.is_stale(&params, env)
        }
    };
    let (profile, origin) = match why_new {
        None => (Profile::load(&path)?, path.display().to_string()),
        Some(reason) => {
            observer.warning(&format!(
                "profiling `{}` through its URL now: {reason}",
                f.label
            ));
            let log = hosts.log_dir.join(format!("host-{}.log", f.label));
            let mut host = ExternalHost::start(
                &f.label,
                spec,
                &params,
                &[hosts.runtime_cpu],
                hosts.cgroups.as_deref(),
                &log,
            )?;
            let settings = Settings {
                cpu: Some(hosts.client_cpu),
                time_from: host_timing(spec),
                ..Settings::default()
            };
            let cpu_before = host.cpu_time_us();
            let measured = slokit_profiler::profile_target(
                &f.label,
                &Target::Url {
                    url: host.url.clone(),
                },
                &params,
                &Catalogue::builtin(&Default::default()),
                &settings,
                observer,
            );
            let cpu_after = host.cpu_time_us();
            host.stop(std::time::Duration::from_secs(5));
            let mut p = measured
                .with_context(|| format!("profiling `{}` through {}", f.label, host.url))?;
            p.target = identity;
            let requests = p.sampling.warmup_runs + p.sampling.runs;
            if let (Some((before, source)), Some((after, _))) = (cpu_before, cpu_after) {
                if requests > 0 && after >= before {
                    p.runtime = Some(RuntimeSection {
                        cpu_per_request_us: (after - before) as f64 / requests as f64,
                        requests,
                        source: source.to_string(),
                    });
                }
            }
            std::fs::create_dir_all(path.parent().expect("has a parent"))
                .with_context(|| format!("creating {}", dir.display()))?;
            p.save(&path)?;
            (
                p,
                format!(
                    "profiled now through the URL ({reason}), saved to {}",
                    path.display()
                ),
            )
        }
    };
    let mut out = from_profile(&profile, origin);
    if let Some(runtime) = &profile.runtime {
        charge_runtime_cost(&mut out, runtime);
    }
    let timed_by = if profile.deadline.timing == TimeFrom::Header {
        "from the runtime's x-slokit-exec-us header"
    } else {
        "from the HTTP round trip"
    };
    if let Some(ms) = spec.deadline_ms {
        // A given deadline bounds the response time.
        out.facts.deadline_is_response = true;
        out.facts.deadline_us = ms * 1e3;
        out.origin = format!(
            "deadline_ms = {ms} in the experiment; service time {timed_by}, {}",
            out.origin
        );
    } else {
        // Timed by the round trip from the client: already a response time;
        // timed by the runtime's header: an execution time, like a built-in's.
        out.facts.deadline_is_response = profile.deadline.timing != TimeFrom::Header;
        out.origin = format!("deadline and service time {timed_by}, {}", out.origin);
    }
    Ok(out)
}

/// ρ counts what a request costs the function CPUs: when the runtime spent
/// more CPU per request than the timed service (a header that times only
/// the function, leaving out the runtime's HTTP and framework work), the
/// service time becomes that CPU cost and the simulator's distribution is
/// shifted by the difference. The deadline is left alone.
fn charge_runtime_cost(out: &mut ProfiledFunction, runtime: &RuntimeSection) {
    let timed = out.facts.service_us;
    let extra = runtime.cpu_per_request_us - timed;
    if extra <= 0.0 {
        out.origin = format!(
            "{}; the runtime spent {:.1} µs of CPU per request ({}), within the timed service",
            out.origin, runtime.cpu_per_request_us, runtime.source
        );
        return;
    }
    let mut shifted =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
    for v in out.histogram_us.iter_recorded() {
        let us = out.histogram_us.median_equivalent(v.value_iterated_to()) as f64 + extra;
        shifted.saturating_record_n(us.round().max(1.0) as u64, v.count_at_value());
    }
    out.histogram_us = shifted;
    out.facts.service_us = runtime.cpu_per_request_us;
    out.origin = format!(
        "{}; service time for the arrival rate and the simulator: the runtime's {:.1} µs of CPU per request over {} requests ({}), not the timed {:.1} µs",
        out.origin, runtime.cpu_per_request_us, runtime.requests, runtime.source, timed
    );
}

/// A host whose deadline and service time the experiment gives: no
/// profile; the simulator's service distribution is that one value.
fn given_figures(deadline_ms: f64, service_ms: f64) -> ProfiledFunction {
    let mut us = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
    us.saturating_record((service_ms * 1e3).max(1.0) as u64);
    ProfiledFunction {
        facts: ServiceFacts {
            service_us: service_ms * 1e3,
            deadline_us: deadline_ms * 1e3,
            deadline_is_response: true,
        },
        histogram_us: us,
        origin: format!(
            "deadline_ms = {deadline_ms} and service_ms = {service_ms} in the experiment (not profiled)"
        ),
    }
}

fn from_profile(p: &Profile, origin: String) -> ProfiledFunction {
    let ns = p.histogram();
    let mut us = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
    for v in ns.iter_recorded() {
        let value = (ns.median_equivalent(v.value_iterated_to()) / 1000).max(1);
        us.saturating_record_n(value, v.count_at_value());
    }
    ProfiledFunction {
        // ρ needs the mean service time (λ·E[S]); the deadline is the profile's.
        facts: ServiceFacts {
            service_us: p.summary.mean_us,
            deadline_us: p.deadline_us(),
            deadline_is_response: false,
        },
        histogram_us: us,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(us: &[u64]) -> ProfiledFunction {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in us {
            h.record(*v).unwrap();
        }
        ProfiledFunction {
            facts: ServiceFacts {
                service_us: h.mean(),
                deadline_us: 10.0,
                deadline_is_response: false,
            },
            histogram_us: h,
            origin: "profiled".into(),
        }
    }

    fn runtime(cpu_per_request_us: f64) -> RuntimeSection {
        RuntimeSection {
            cpu_per_request_us,
            requests: 1000,
            source: "cgroup cpu.stat usage_usec".into(),
        }
    }

    #[test]
    fn a_runtime_that_burns_more_than_the_timed_function_sets_the_service_time() {
        // The header timed 2–4 µs of function; gunicorn spent 400 µs a request.
        let mut f = timed(&[2, 3, 4]);
        charge_runtime_cost(&mut f, &runtime(400.0));
        assert_eq!(f.facts.service_us, 400.0);
        assert_eq!(f.facts.deadline_us, 10.0, "the deadline is the function's");
        assert_eq!(f.histogram_us.len(), 3);
        let mean = f.histogram_us.mean();
        assert!((mean - 400.0).abs() < 1.0, "shifted mean {mean}");
        assert!(
            f.origin.contains("400.0 µs of CPU per request"),
            "{}",
            f.origin
        );
    }

    #[test]
    fn a_round_trip_above_the_runtime_cost_stays() {
        let mut f = timed(&[380, 390, 400]);
        charge_runtime_cost(&mut f, &runtime(250.0));
        assert!((f.facts.service_us - 390.0).abs() < 1.0);
        assert!((f.histogram_us.mean() - 390.0).abs() < 1.0);
        assert!(
            f.origin.contains("within the timed service"),
            "{}",
            f.origin
        );
    }
}
