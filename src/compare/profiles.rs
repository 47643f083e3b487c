//! The profiles a comparison needs: loads `profiles/<label>.toml` for each
//! function of a mix, derives a fresh one when it is missing or stale
//! (other parameters, another machine), and hands the deadline, the service
//! time and the service-time distribution to the schedule and simulator.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::Value;
use slokit_functions::{Catalogue, Environment};
use slokit_profiler::profile::{effective_params, Profile};
use slokit_profiler::{profile_builtin, Observer, Settings};

use super::schedules::ServiceFacts;
use crate::experiment::{Experiment, Workload};

/// A function's profile figures, keyed by mix label.
#[derive(Debug, Clone)]
pub struct ProfiledFunction {
    pub facts: ServiceFacts,
    /// Isolated execution times, µs.
    pub histogram_us: Histogram<u64>,
    /// Where it came from: "profiles/auth.toml" or "profiled now (reason)".
    pub origin: String,
}

/// Loads or derives the profile of every mix function of `exp`.
pub fn ensure_profiles(
    exp: &Experiment,
    root: &Path,
    catalogue: &Catalogue,
    measure_cpu: usize,
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
            let function = catalogue.require(&f.function)?;
            let params = serde_json::Value::Object(effective_params(&function.info(), &f.params)?);
            let path = dir.join(format!("{}.toml", f.label));
            let existing = if path.exists() && !reprofile {
                Some(
                    Profile::load(&path)
                        .with_context(|| format!("reading the profile of `{}`", f.label))?,
                )
            } else {
                None
            };
            let why_new = match &existing {
                None if reprofile => Some("--reprofile".to_string()),
                None => Some(format!("{} is missing", path.display())),
                // A profile written by `slokit profile NAME` records the
                // parameters as given (`{}` = defaults): compare like with like.
                Some(p) => {
                    let recorded = Value::Object(p.params.clone());
                    let mut as_run = p.clone();
                    as_run.params = effective_params(&function.info(), &recorded)?;
                    as_run.is_stale(&params, &env)
                }
            };
            let (profile, origin) = match (existing, why_new) {
                (Some(p), None) => (p, path.display().to_string()),
                (_, reason) => {
                    let reason = reason.unwrap_or_else(|| "no profile".into());
                    observer.warning(&format!("profiling `{}` now: {reason}", f.label));
                    let settings = Settings {
                        cpu: Some(measure_cpu),
                        ..Settings::default()
                    };
                    let p = profile_builtin(&f.function, &params, catalogue, &settings, observer)
                        .with_context(|| format!("profiling `{}`", f.label))?;
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    p.save(&path)?;
                    (
                        p,
                        format!("profiled now ({reason}), saved to {}", path.display()),
                    )
                }
            };
            out.insert(f.label.clone(), from_profile(&profile, origin));
        }
    }
    Ok(out)
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
        },
        histogram_us: us,
        origin,
    }
}
