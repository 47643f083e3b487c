//! The Poisson mix generator: arrivals at a total rate λ (exponential
//! inter-arrival times), each one a function drawn by weight. The load
//! generator (`slokit loadgen --mix`, `slokit compare`) and the simulator
//! (`slokit simulate --mix`, the M in its M/G/c validation) both build their
//! schedules with it; how each picks λ (a rate, or a utilisation ρ from
//! service times) stays with them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::schedule::{Arrival, Schedule, ScheduledFunction};

/// One function of a mix.
#[derive(Debug, Clone, PartialEq)]
pub struct MixEntry {
    /// Name in reports and label in the schedule (unique within the mix).
    pub label: String,
    /// Function the host runs.
    pub function: String,
    /// Parameters sent with every invocation.
    pub params: Value,
    /// Relative share of arrivals (normalised over the mix).
    pub weight: f64,
    /// Service time in µs, when known.
    pub service_us: Option<f64>,
    /// Deadline in µs, when the function has an SLO.
    pub deadline_us: Option<f64>,
}

impl MixEntry {
    /// An entry whose function is named by its label, with `params`, no
    /// service time and no deadline.
    pub fn named(label: impl Into<String>, weight: f64, params: Value) -> Self {
        let label = label.into();
        MixEntry {
            function: label.clone(),
            label,
            params,
            weight,
            service_us: None,
            deadline_us: None,
        }
    }
}

/// When the generator stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Horizon {
    /// Arrivals up to this many seconds.
    Seconds(f64),
    /// Exactly this many arrivals.
    Arrivals(usize),
}

/// What a `label:weight,...` list may look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightSyntax {
    /// The weight of an entry written without `:WEIGHT`; `None` rejects it.
    pub bare_label_weight: Option<f64>,
    /// Whether a weight of zero is accepted (otherwise weights must be
    /// positive).
    pub zero_weight: bool,
}

/// Parses `auth:0.9,video:0.1` into `(label, weight)` pairs, in order. The
/// error is the reason, without the input.
pub fn parse_weights(text: &str, syntax: WeightSyntax) -> Result<Vec<(String, f64)>, String> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (label, weight) = match (part.split_once(':'), syntax.bare_label_weight) {
            (Some((label, w)), _) => {
                let label = label.trim();
                let weight: f64 = w.trim().parse().map_err(|_| {
                    format!("weight `{w}` of `{label}` is not a number (e.g. auth:0.9,video:0.1)")
                })?;
                (label, weight)
            }
            (None, Some(weight)) => (part, weight),
            (None, None) => return Err(format!("`{part}` is not LABEL:WEIGHT (e.g. auth:0.9)")),
        };
        if syntax.zero_weight {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(format!("weight of `{label}` must be ≥ 0, got {weight}"));
            }
        } else if !(weight.is_finite() && weight > 0.0) {
            return Err(format!(
                "weight of `{label}` must be positive, got {weight}"
            ));
        }
        if out.iter().any(|(l, _)| l == label) {
            return Err(format!("`{label}` appears twice"));
        }
        out.push((label.to_string(), weight));
    }
    if out.is_empty() {
        return Err("the mix names no function (e.g. auth:0.9,video:0.1)".into());
    }
    Ok(out)
}

/// The Poisson schedule of a weighted mix: arrivals at `rate_per_s` until
/// `horizon`, each function drawn by weight; deterministic for the seed
/// (ChaCha8, stream 0). The error is the reason, without the input.
pub fn poisson_schedule(
    entries: &[MixEntry],
    rate_per_s: f64,
    horizon: Horizon,
    seed: u64,
) -> Result<Schedule, String> {
    if entries.is_empty() {
        return Err("the mix names no function".into());
    }
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return Err(format!("the rate must be positive, got {rate_per_s}"));
    }
    if let Some(e) = entries
        .iter()
        .find(|e| !(e.weight.is_finite() && e.weight >= 0.0))
    {
        return Err(format!(
            "weight of `{}` must be ≥ 0, got {}",
            e.label, e.weight
        ));
    }
    let total: f64 = entries.iter().map(|e| e.weight).sum();
    if total <= 0.0 {
        return Err("weights sum to zero".into());
    }
    let mut cumulative = Vec::with_capacity(entries.len());
    let mut acc = 0.0;
    for e in entries {
        acc += e.weight / total;
        cumulative.push(acc);
    }
    // Rounding may leave the last sum just under 1: fall back to the last
    // entry that can be drawn at all.
    let last = entries
        .iter()
        .rposition(|e| e.weight > 0.0)
        .expect("total weight is positive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mean_iat_ns = 1e9 / rate_per_s;
    let (limit_ns, limit_n) = match horizon {
        Horizon::Seconds(s) => (s * 1e9, usize::MAX),
        Horizon::Arrivals(n) => (f64::INFINITY, n),
    };
    let expected = match horizon {
        Horizon::Seconds(s) => (s * rate_per_s * 1.01) as usize + 16,
        Horizon::Arrivals(n) => n,
    };
    let mut arrivals = Vec::with_capacity(expected.min(50_000_000));
    let mut t = 0.0f64;
    while arrivals.len() < limit_n {
        let e: f64 = rand_distr::Distribution::sample(&rand_distr::Exp1, &mut rng);
        t += e * mean_iat_ns;
        if t > limit_ns {
            break;
        }
        let u: f64 = rng.random();
        let function = cumulative.iter().position(|&c| u < c).unwrap_or(last) as u32;
        arrivals.push(Arrival::new(t.round() as u64, function));
    }
    let mix: Vec<String> = entries
        .iter()
        .map(|e| format!("{}:{}", e.label, e.weight))
        .collect();
    Ok(Schedule {
        source: format!("poisson {:.1}/s mix {}", rate_per_s, mix.join(",")),
        seed,
        functions: entries
            .iter()
            .map(|e| ScheduledFunction {
                label: e.label.clone(),
                function: e.function.clone(),
                params: e.params.clone(),
                service_us: e.service_us,
                deadline_us: e.deadline_us,
            })
            .collect(),
        arrivals,
        extras: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: WeightSyntax = WeightSyntax {
        bare_label_weight: None,
        zero_weight: false,
    };

    fn entries(text: &str) -> Vec<MixEntry> {
        parse_weights(text, STRICT)
            .unwrap()
            .into_iter()
            .map(|(l, w)| MixEntry::named(l, w, Value::Null))
            .collect()
    }

    #[test]
    fn rate_and_weights_are_honoured() {
        let s = poisson_schedule(&entries("a:3,b:1"), 1000.0, Horizon::Seconds(100.0), 3).unwrap();
        s.validate().unwrap();
        let n = s.arrivals.len() as f64;
        assert!((n / 100_000.0 - 1.0).abs() < 0.01, "{n} arrivals");
        let a = s.arrivals.iter().filter(|x| x.function == 0).count() as f64;
        assert!((a / n - 0.75).abs() < 0.005, "share of a {}", a / n);
        assert!(s.duration_s() <= 100.0);
    }

    #[test]
    fn same_seed_same_schedule() {
        let e = entries("a:3,b:1");
        let a = poisson_schedule(&e, 1000.0, Horizon::Arrivals(1000), 9).unwrap();
        assert_eq!(a.arrivals.len(), 1000);
        assert_eq!(
            a,
            poisson_schedule(&e, 1000.0, Horizon::Arrivals(1000), 9).unwrap()
        );
        assert_ne!(
            a,
            poisson_schedule(&e, 1000.0, Horizon::Arrivals(1000), 10).unwrap()
        );
    }

    #[test]
    fn zero_weights_are_never_drawn() {
        let mut e = entries("a:1,b:1");
        e[1].weight = 0.0;
        let s = poisson_schedule(&e, 1000.0, Horizon::Arrivals(5000), 1).unwrap();
        assert!(s.arrivals.iter().all(|a| a.function == 0));
    }

    #[test]
    fn bad_weights_are_named() {
        for (text, needle) in [
            ("auth", "LABEL:WEIGHT"),
            ("a:x", "`x`"),
            ("a:1,a:2", "twice"),
            ("a:-1", "positive"),
            ("a:0", "positive"),
            ("", "names no function"),
        ] {
            let e = parse_weights(text, STRICT).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let lenient = WeightSyntax {
            bare_label_weight: Some(1.0),
            zero_weight: true,
        };
        assert_eq!(
            parse_weights("auth, video:0", lenient).unwrap(),
            vec![("auth".into(), 1.0), ("video".into(), 0.0)]
        );
        assert!(parse_weights("a:-1", lenient).unwrap_err().contains("≥ 0"));
    }
}
