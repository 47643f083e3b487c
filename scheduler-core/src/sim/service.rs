//! Service times for the simulator: where each invocation's CPU demand comes
//! from when the schedule does not carry it.
//!
//! A [`ServiceSampler`] draws from a recorded HdrHistogram (the one a
//! profile stores, in µs) or from a parametric distribution (deterministic,
//! exponential, lognormal, bimodal — the shapes queueing theory is checked
//! against). A [`ServiceModel`] maps schedule labels to samplers and draws
//! one service time per arrival with a seeded ChaCha generator, so a seed
//! fixes every figure of a simulation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use slokit_model::units::{self, DurationSyntax};
use slokit_model::{Schedule, ScheduledFunction};

use super::SimError;

/// ChaCha stream used for service times (arrivals of the built-in mix use
/// stream 0), so one `--seed` drives both without correlating them.
const SERVICE_STREAM: u64 = 1;

/// A distribution of service times, in µs.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceSampler {
    /// Always the same value.
    Deterministic { us: f64 },
    /// Exponential with the given mean (M/M/·).
    Exponential { mean_us: f64 },
    /// Lognormal with the given mean and shape σ (of the underlying normal):
    /// μ = ln(mean) − σ²/2.
    LogNormal { mean_us: f64, sigma: f64 },
    /// `short_us` with probability 1 − `p_long`, else `long_us`.
    Bimodal {
        short_us: f64,
        long_us: f64,
        p_long: f64,
    },
    /// The empirical distribution of a recorded histogram (µs).
    Histogram(EmpiricalCdf),
}

/// A histogram flattened into a cumulative table for O(log n) inverse-CDF
/// draws (HdrHistogram's `value_at_quantile` walks every bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct EmpiricalCdf {
    /// Cumulative counts, strictly increasing.
    cumulative: Vec<u64>,
    /// The bucket's median-equivalent value (µs) for each entry.
    values: Vec<f64>,
    mean_us: f64,
}

impl EmpiricalCdf {
    /// Flattens `h`; fails on an empty histogram.
    pub fn new(h: &Histogram<u64>) -> Result<Self, SimError> {
        if h.is_empty() {
            return Err(SimError::Spec {
                what: "service histogram",
                input: String::new(),
                reason: "the histogram holds no samples".into(),
            });
        }
        let mut cumulative = Vec::new();
        let mut values = Vec::new();
        let mut total = 0u64;
        let mut sum = 0.0;
        for v in h.iter_recorded() {
            total += v.count_at_value();
            let value = h.median_equivalent(v.value_iterated_to()) as f64;
            sum += value * v.count_at_value() as f64;
            cumulative.push(total);
            values.push(value);
        }
        Ok(EmpiricalCdf {
            cumulative,
            values,
            mean_us: sum / total as f64,
        })
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let total = *self.cumulative.last().expect("non-empty by construction");
        let u = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= u);
        self.values[i]
    }
}

impl ServiceSampler {
    /// A sampler over a histogram of service times in µs.
    pub fn from_histogram(h: &Histogram<u64>) -> Result<Self, SimError> {
        Ok(ServiceSampler::Histogram(EmpiricalCdf::new(h)?))
    }

    /// A sampler over a histogram encoded by
    /// [`slokit_model::record::encode_histogram`] (as profiles and run
    /// records store it).
    pub fn from_encoded_histogram(b64: &str) -> Result<Self, SimError> {
        let h = slokit_model::record::decode_histogram(b64).map_err(|reason| SimError::Spec {
            what: "service histogram",
            input: format!("{}…", b64.chars().take(16).collect::<String>()),
            reason,
        })?;
        Self::from_histogram(&h)
    }

    /// The mean service time in µs.
    pub fn mean_us(&self) -> f64 {
        match self {
            ServiceSampler::Deterministic { us } => *us,
            ServiceSampler::Exponential { mean_us } => *mean_us,
            ServiceSampler::LogNormal { mean_us, .. } => *mean_us,
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => short_us * (1.0 - p_long) + long_us * p_long,
            ServiceSampler::Histogram(cdf) => cdf.mean_us,
        }
    }

    /// The second moment E[S²] in µs², for Pollaczek–Khinchine.
    pub fn second_moment_us2(&self) -> f64 {
        match self {
            ServiceSampler::Deterministic { us } => us * us,
            ServiceSampler::Exponential { mean_us } => 2.0 * mean_us * mean_us,
            ServiceSampler::LogNormal { mean_us, sigma } => {
                mean_us * mean_us * (sigma * sigma).exp()
            }
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => short_us * short_us * (1.0 - p_long) + long_us * long_us * p_long,
            ServiceSampler::Histogram(cdf) => {
                let mut prev = 0u64;
                let mut sum = 0.0;
                for (c, v) in cdf.cumulative.iter().zip(&cdf.values) {
                    sum += v * v * (c - prev) as f64;
                    prev = *c;
                }
                sum / prev as f64
            }
        }
    }

    /// Checks the parameters (positive, finite means; σ ≥ 0; p in [0, 1]).
    fn validate(&self, input: &str) -> Result<(), SimError> {
        let bad = |reason: String| SimError::Spec {
            what: "service distribution",
            input: input.to_string(),
            reason,
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(format!(
                    "{name} must be a positive duration, got {v} µs"
                )))
            }
        };
        match *self {
            ServiceSampler::Deterministic { us } => positive("the value", us),
            ServiceSampler::Exponential { mean_us } => positive("the mean", mean_us),
            ServiceSampler::LogNormal { mean_us, sigma } => {
                positive("the mean", mean_us)?;
                if sigma.is_finite() && sigma >= 0.0 {
                    Ok(())
                } else {
                    Err(bad(format!("σ must be ≥ 0, got {sigma}")))
                }
            }
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => {
                positive("the short mode", short_us)?;
                positive("the long mode", long_us)?;
                if (0.0..=1.0).contains(&p_long) {
                    Ok(())
                } else {
                    Err(bad(format!("p_long must be in [0, 1], got {p_long}")))
                }
            }
            ServiceSampler::Histogram(_) => Ok(()),
        }
    }

    /// Draws one service time in µs.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match self {
            ServiceSampler::Deterministic { us } => *us,
            ServiceSampler::Exponential { mean_us } => {
                let e: f64 = rand_distr::Exp1.sample(rng);
                e * mean_us
            }
            ServiceSampler::LogNormal { mean_us, sigma } => {
                let mu = mean_us.ln() - sigma * sigma / 2.0;
                LogNormal::new(mu, *sigma)
                    .expect("validated parameters")
                    .sample(rng)
            }
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => {
                if rng.random::<f64>() < *p_long {
                    *long_us
                } else {
                    *short_us
                }
            }
            ServiceSampler::Histogram(cdf) => cdf.sample(rng),
        }
    }
}

impl fmt::Display for ServiceSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceSampler::Deterministic { us } => write!(f, "det:{}", fmt_us(*us)),
            ServiceSampler::Exponential { mean_us } => write!(f, "exp:{}", fmt_us(*mean_us)),
            ServiceSampler::LogNormal { mean_us, sigma } => {
                write!(f, "lognormal:{}:{sigma}", fmt_us(*mean_us))
            }
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => write!(
                f,
                "bimodal:{}:{}:{p_long}",
                fmt_us(*short_us),
                fmt_us(*long_us)
            ),
            ServiceSampler::Histogram(cdf) => write!(
                f,
                "histogram(mean {}, {} buckets)",
                fmt_us(cdf.mean_us),
                cdf.values.len()
            ),
        }
    }
}

fn fmt_us(us: f64) -> String {
    format!("{}us", us)
}

/// Parses a sampler spec:
///
/// | spec | distribution |
/// | --- | --- |
/// | `5ms`, `det:5ms` | deterministic |
/// | `exp:0.5ms` | exponential with mean 0.5 ms |
/// | `lognormal:120ms:0.5` | lognormal with mean 120 ms, σ = 0.5 |
/// | `bimodal:1ms:100ms:0.05` | 1 ms, or 100 ms with probability 0.05 |
/// | `hist:FILE` | the histogram (µs) whose base64 encoding is in FILE |
impl FromStr for ServiceSampler {
    type Err = SimError;

    fn from_str(spec: &str) -> Result<Self, SimError> {
        let spec = spec.trim();
        let bad = |reason: &str| SimError::Spec {
            what: "service distribution",
            input: spec.to_string(),
            reason: format!(
                "{reason} (expected det:5ms, exp:0.5ms, lognormal:MEAN:SIGMA, \
                 bimodal:SHORT:LONG:P_LONG or hist:FILE)"
            ),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| bad(&format!("`{s}` is not a number")))
        };
        let dur = |s: &str| parse_duration_us(s).map_err(|e| bad(&e.to_string()));
        let sampler = match parts.as_slice() {
            [one] => ServiceSampler::Deterministic { us: dur(one)? },
            ["det" | "fixed", v] => ServiceSampler::Deterministic { us: dur(v)? },
            ["exp", m] => ServiceSampler::Exponential { mean_us: dur(m)? },
            ["lognormal", m, s] => ServiceSampler::LogNormal {
                mean_us: dur(m)?,
                sigma: num(s)?,
            },
            ["bimodal", a, b, p] => ServiceSampler::Bimodal {
                short_us: dur(a)?,
                long_us: dur(b)?,
                p_long: num(p)?,
            },
            ["hist", _, ..] => {
                let path = &spec["hist:".len()..];
                let text = std::fs::read_to_string(path).map_err(|e| SimError::Spec {
                    what: "service histogram file",
                    input: path.to_string(),
                    reason: format!("cannot read it: {e}"),
                })?;
                return ServiceSampler::from_encoded_histogram(&text);
            }
            _ => return Err(bad("unknown form")),
        };
        sampler.validate(spec)?;
        Ok(sampler)
    }
}

/// Parses a duration with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`) into µs.
/// A bare number is rejected: the unit is not guessable.
pub fn parse_duration_us(text: &str) -> Result<f64, SimError> {
    units::parse_duration_us(text, DurationSyntax::UNIT_REQUIRED).map_err(|e| SimError::Spec {
        what: "duration",
        input: e.input,
        reason: e.reason,
    })
}

/// Parses `LABEL=DURATION` entries (for example `auth=5ms`) into µs.
pub fn parse_label_durations<'a>(
    specs: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, f64)>, SimError> {
    units::parse_label_durations(specs, DurationSyntax::UNIT_REQUIRED).map_err(|e| SimError::Spec {
        what: "LABEL=DURATION",
        input: e.entry().to_string(),
        reason: e.reason(),
    })
}

/// Samplers per schedule label, plus an optional one for every other label.
#[derive(Debug, Clone, Default)]
pub struct ServiceModel {
    by_label: BTreeMap<String, ServiceSampler>,
    fallback: Option<ServiceSampler>,
}

impl ServiceModel {
    /// No samplers: every service time must come from the schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the sampler of `label`.
    pub fn with(mut self, label: impl Into<String>, sampler: ServiceSampler) -> Self {
        self.by_label.insert(label.into(), sampler);
        self
    }

    /// Sets the sampler used for labels without their own.
    pub fn with_fallback(mut self, sampler: ServiceSampler) -> Self {
        self.fallback = Some(sampler);
        self
    }

    /// Builds a model from `LABEL=SPEC` entries (see [`ServiceSampler`]'s
    /// `FromStr` for SPEC); an entry without `LABEL=` sets the fallback.
    pub fn from_specs<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self, SimError> {
        let mut model = ServiceModel::new();
        for spec in specs.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
            match spec.split_once('=') {
                Some((label, dist)) => {
                    let label = label.trim();
                    if model.by_label.contains_key(label) {
                        return Err(SimError::Spec {
                            what: "service",
                            input: spec.to_string(),
                            reason: format!("`{label}` has two service distributions"),
                        });
                    }
                    model = model.with(label, dist.parse()?);
                }
                None => {
                    if model.fallback.is_some() {
                        return Err(SimError::Spec {
                            what: "service",
                            input: spec.to_string(),
                            reason: "two distributions without a LABEL= prefix".into(),
                        });
                    }
                    model = model.with_fallback(spec.parse()?);
                }
            }
        }
        Ok(model)
    }

    /// The sampler named for `label`, if any (not the fallback).
    pub fn sampler(&self, label: &str) -> Option<&ServiceSampler> {
        self.by_label.get(label)
    }

    /// Labels with their own sampler.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.by_label.keys().map(String::as_str)
    }

    /// Mean service time of `f` in µs under this model, by the same
    /// precedence as [`ServiceModel::draw`] (without per-arrival values).
    pub fn mean_us(&self, f: &ScheduledFunction) -> Option<f64> {
        self.by_label
            .get(&f.label)
            .map(ServiceSampler::mean_us)
            .or(f.service_us)
            .or_else(|| self.fallback.as_ref().map(ServiceSampler::mean_us))
    }

    /// One service time (µs) per arrival of `schedule`, in order. Precedence:
    /// the arrival's own `service_us`; else the sampler named for its
    /// label; else the function's `service_us` from the schedule; else the
    /// fallback sampler. Deterministic for `seed`.
    pub fn draw(&self, schedule: &Schedule, seed: u64) -> Result<Vec<f64>, SimError> {
        enum Source<'a> {
            Sampler(&'a ServiceSampler),
            Fixed(f64),
            Missing,
        }
        let sources: Vec<Source> = schedule
            .functions
            .iter()
            .map(|f| {
                if let Some(s) = self.by_label.get(&f.label) {
                    Source::Sampler(s)
                } else if let Some(v) = f.service_us {
                    Source::Fixed(v)
                } else if let Some(s) = &self.fallback {
                    Source::Sampler(s)
                } else {
                    Source::Missing
                }
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(SERVICE_STREAM);
        let mut out = Vec::with_capacity(schedule.arrivals.len());
        for (i, a) in schedule.arrivals.iter().enumerate() {
            let f = a.function as usize;
            let v = match (schedule.own_service_us(a), &sources[f]) {
                (Some(v), _) => v,
                (None, Source::Sampler(s)) => s.sample(&mut rng),
                (None, Source::Fixed(v)) => *v,
                (None, Source::Missing) => {
                    return Err(SimError::NoServiceTime {
                        label: schedule.functions[f].label.clone(),
                    })
                }
            };
            if !(v.is_finite() && v >= 0.0) {
                return Err(SimError::InvalidServiceTime {
                    arrival: i,
                    value: v,
                });
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_m2(s: &ServiceSampler, n: usize) -> (f64, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut m, mut m2) = (0.0, 0.0);
        for _ in 0..n {
            let v = s.sample(&mut rng);
            m += v;
            m2 += v * v;
        }
        (m / n as f64, m2 / n as f64)
    }

    #[test]
    fn parses_every_form() {
        let cases = [
            ("5ms", 5000.0),
            ("det:250us", 250.0),
            ("exp:0.5ms", 500.0),
            ("lognormal:120ms:0.5", 120_000.0),
            ("bimodal:1ms:101ms:0.1", 0.9 * 1000.0 + 0.1 * 101_000.0),
        ];
        for (spec, mean) in cases {
            let s: ServiceSampler = spec.parse().unwrap();
            assert!((s.mean_us() - mean).abs() < 1e-9, "{spec}: {}", s.mean_us());
        }
    }

    #[test]
    fn rejects_bad_specs_naming_the_input() {
        for bad in [
            "exp:5",
            "lognormal:5ms:-1",
            "bimodal:1ms:2ms:1.5",
            "gamma:1ms",
            "exp:0ms",
        ] {
            let e = bad.parse::<ServiceSampler>().unwrap_err().to_string();
            assert!(e.contains(bad.split(':').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn model_and_deadline_specs() {
        let m =
            ServiceModel::from_specs(["auth=exp:0.5ms", "video=lognormal:120ms:0.5", "det:1ms"])
                .unwrap();
        assert_eq!(m.labels().collect::<Vec<_>>(), vec!["auth", "video"]);
        assert_eq!(m.sampler("auth").unwrap().mean_us(), 500.0);
        assert!(ServiceModel::from_specs(["a=1ms", "a=2ms"]).is_err());
        assert!(ServiceModel::from_specs(["a=what"]).is_err());
        let d = parse_label_durations(["auth=5ms", "video=1s"]).unwrap();
        assert_eq!(d, vec![("auth".into(), 5000.0), ("video".into(), 1e6)]);
        assert!(parse_label_durations(["auth"])
            .unwrap_err()
            .to_string()
            .contains("LABEL=DURATION"));
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration_us("600s").unwrap(), 600e6);
        assert_eq!(parse_duration_us("1.5ms").unwrap(), 1500.0);
        assert_eq!(parse_duration_us("2m").unwrap(), 120e6);
        assert!(parse_duration_us("5")
            .unwrap_err()
            .to_string()
            .contains("unit"));
        assert!(parse_duration_us("5h").is_err());
    }

    #[test]
    fn parametric_moments_match_their_formulas() {
        for spec in ["exp:1ms", "lognormal:1ms:0.5", "bimodal:1ms:5ms:0.2"] {
            let s: ServiceSampler = spec.parse().unwrap();
            let (m, m2) = mean_and_m2(&s, 200_000);
            assert!((m / s.mean_us() - 1.0).abs() < 0.01, "{spec} mean {m}");
            assert!(
                (m2 / s.second_moment_us2() - 1.0).abs() < 0.03,
                "{spec} E[S²] {m2} vs {}",
                s.second_moment_us2()
            );
        }
    }

    #[test]
    fn histogram_sampler_reproduces_the_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record_n(100, 3).unwrap();
        h.record_n(10_000, 1).unwrap();
        let encoded = slokit_model::record::encode_histogram(&h);
        let s = ServiceSampler::from_encoded_histogram(&encoded).unwrap();
        assert!((s.mean_us() - (300.0 + 10_000.0) / 4.0).abs() < 10.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let long = (0..40_000).filter(|_| s.sample(&mut rng) > 5_000.0).count();
        assert!((long as f64 / 40_000.0 - 0.25).abs() < 0.01, "{long}");

        let path = std::env::temp_dir().join(format!("slokit-sim-hist-{}.b64", std::process::id()));
        std::fs::write(&path, format!("{encoded}\n")).unwrap();
        let from_file: ServiceSampler = format!("hist:{}", path.display()).parse().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(from_file.mean_us(), s.mean_us());
        let e = "hist:/nonexistent/h.b64"
            .parse::<ServiceSampler>()
            .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn draw_is_deterministic_and_respects_precedence() {
        use slokit_model::{Arrival, ScheduledFunction};
        let f = |label: &str, service_us| ScheduledFunction {
            label: label.into(),
            function: label.into(),
            params: serde_json::Value::Null,
            service_us,
            deadline_us: None,
        };
        let mut extras = Vec::new();
        let mut a =
            |function, service_us| Arrival::with_extra(0, function, &mut extras, None, service_us);
        let arrivals = vec![a(0, Some(3.0)), a(0, None), a(1, None), a(2, None)];
        let schedule = Schedule {
            source: "t".into(),
            seed: 0,
            functions: vec![f("a", Some(7.0)), f("b", Some(9.0)), f("c", None)],
            arrivals,
            extras,
        };
        let model = ServiceModel::new()
            .with("a", ServiceSampler::Deterministic { us: 5.0 })
            .with_fallback(ServiceSampler::Deterministic { us: 11.0 });
        assert_eq!(model.draw(&schedule, 1).unwrap(), vec![3.0, 5.0, 9.0, 11.0]);
        let e = ServiceModel::new().draw(&schedule, 1).unwrap_err();
        assert!(e.to_string().contains("`c`"), "{e}");

        let exp = ServiceModel::new().with_fallback("exp:1ms".parse().unwrap());
        let mut s2 = schedule.clone();
        s2.functions[2].service_us = None;
        assert_eq!(exp.draw(&s2, 4).unwrap(), exp.draw(&s2, 4).unwrap());
        assert_ne!(exp.draw(&s2, 4).unwrap(), exp.draw(&s2, 5).unwrap());
    }
}
