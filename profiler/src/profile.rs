//! Profiles: the TOML file `profiles/<function>.toml` that records how long a
//! function takes when alone and the deadline derived from it, plus the
//! per-function deadline rules of `profiles/profile.toml`.
//!
//! Schema `version = 2` (documented field by field in docs/profiler.md);
//! version 1 files still read. Version 2 added the optional
//! `[instructions]` section (the instruction count and how it was obtained)
//! and, in `[deadline]`, `timing` (where each run's time came from) and
//! `estimator` (how the percentile was estimated); version 1 files get the
//! values those files were made with (`clock`, `hyndman-fan-7`).
//! Units are in field names (`p99_us`); the full distribution is kept as an
//! HdrHistogram (V2 + deflate, base64, nanoseconds) so later readers can ask
//! any percentile. Loading checks `version` first — a newer file is refused
//! with the version it found — then deserialises with the path of every
//! field tracked, so a malformed file is reported as "file, field, why".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use slokit_model::record::{decode_histogram, encode_histogram};
use slokit_model::Environment;

use crate::error::ProfileError;
use crate::instructions::InstructionSection;
use crate::isolation::{IsolateOutcome, Policy};
use crate::sampler::StopReason;
use crate::stats::{Outliers, Sample};
use crate::target::{Target, TimeFrom};

/// How the deadline percentile was estimated from the runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantileEstimator {
    /// Linear interpolation between the closest ranks (version 1 profiles).
    #[default]
    #[serde(rename = "hyndman-fan-7")]
    HyndmanFan7,
    /// Harrell–Davis: Beta-weighted sum of all order statistics
    /// ([`crate::stats::harrell_davis_sorted`]), over the whole sample: used
    /// when the runs are too few for blocks.
    HarrellDavis,
    /// The median over consecutive blocks of runs of each block's
    /// Harrell–Davis percentile
    /// ([`crate::stats::median_of_block_percentiles`]): the percentile of a
    /// typical stretch of the run, what slokit uses when it can.
    MedianOfBlocks,
}

/// The `schema` value of every profile file.
pub const PROFILE_SCHEMA: &str = "slokit.profile";
/// The profile format version this slokit writes (it reads 1 too).
pub const PROFILE_VERSION: i64 = 2;
/// The oldest profile format version this slokit reads.
pub const OLDEST_PROFILE_VERSION: i64 = 1;
/// The name of the deadline-rule config inside a profiles directory.
pub const CONFIG_FILE: &str = "profile.toml";

/// How a deadline is derived: `deadline = percentile P of the isolated wall
/// execution time × slack`, judged against an SLO target of X %.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeadlineRule {
    /// P, e.g. 99.
    pub percentile: f64,
    /// Multiplier absorbing co-location noise, e.g. 1.5.
    pub slack: f64,
    /// X of "X % of invocations finish within the deadline", e.g. 99.
    pub slo_target_percent: f64,
}

impl Default for DeadlineRule {
    fn default() -> Self {
        Self {
            percentile: 99.0,
            slack: 1.5,
            slo_target_percent: 99.0,
        }
    }
}

impl DeadlineRule {
    /// Checks ranges; errors name the flag.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !(self.percentile > 0.0 && self.percentile < 100.0) {
            return Err(ProfileError::Settings(format!(
                "--percentile must be in (0, 100), got {}",
                self.percentile
            )));
        }
        if !(self.slack.is_finite() && self.slack >= 1.0) {
            return Err(ProfileError::Settings(format!(
                "--slack must be ≥ 1, got {}",
                self.slack
            )));
        }
        if !(self.slo_target_percent > 0.0 && self.slo_target_percent <= 100.0) {
            return Err(ProfileError::Settings(format!(
                "--slo must be in (0, 100], got {}",
                self.slo_target_percent
            )));
        }
        Ok(())
    }
}

/// Optional overrides of a [`DeadlineRule`] (flags or one config section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverrides {
    pub percentile: Option<f64>,
    pub slack: Option<f64>,
    pub slo_target_percent: Option<f64>,
}

impl RuleOverrides {
    fn apply(&self, r: &mut DeadlineRule) {
        if let Some(v) = self.percentile {
            r.percentile = v;
        }
        if let Some(v) = self.slack {
            r.slack = v;
        }
        if let Some(v) = self.slo_target_percent {
            r.slo_target_percent = v;
        }
    }
}

/// `profiles/profile.toml`: default and per-function deadline rules.
///
/// ```toml
/// [defaults]
/// percentile = 99.0
/// slack = 1.5
/// slo_target_percent = 99.0
///
/// [function.video]
/// slack = 2.0
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default)]
    pub defaults: RuleOverrides,
    #[serde(default)]
    pub function: BTreeMap<String, RuleOverrides>,
}

impl ProfileConfig {
    /// Reads the config; a missing file is the empty config.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ProfileError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let value: toml::Value = toml::from_str(&text).map_err(|e| ProfileError::Malformed {
            path: path.to_path_buf(),
            field: "(TOML syntax)".into(),
            message: e.message().to_string(),
        })?;
        serde_path_to_error::deserialize(value).map_err(|e| malformed(path, &e))
    }

    /// The rule for `function`: built-in defaults, then `[defaults]`, then
    /// `[function.<name>]`, then `flags`.
    pub fn rule_for(&self, function: &str, flags: &RuleOverrides) -> DeadlineRule {
        let mut r = DeadlineRule::default();
        self.defaults.apply(&mut r);
        if let Some(f) = self.function.get(function) {
            f.apply(&mut r);
        }
        flags.apply(&mut r);
        r
    }
}

/// The deadline and how it was derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSection {
    /// percentile × slack, µs of wall execution time.
    pub deadline_us: f64,
    pub percentile: f64,
    pub slack: f64,
    pub slo_target_percent: f64,
    /// Always `"wall"`: the deadline bounds wall execution time (what a user waits).
    pub basis: String,
    /// Where each run's time came from: slokit's clock around the run, or
    /// the number the command printed (`--time-from stdout`).
    #[serde(default)]
    pub timing: TimeFrom,
    /// How the percentile was estimated (absent in version 1: `hyndman-fan-7`).
    #[serde(default)]
    pub estimator: QuantileEstimator,
    /// Blocks the median-of-blocks estimator used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<usize>,
    /// The whole sample's Harrell–Davis percentile, µs, beside the
    /// median-of-blocks one (how much the slow stretches weighed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_sample_percentile_us: Option<f64>,
    /// Lower and upper quartiles, µs, of the blocks' percentiles: how far
    /// the machine's speed moved the tail while sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_quartiles_us: Option<[f64; 2]>,
}

/// Summary of the isolated wall execution time (and the CPU time beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub runs: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub stddev_us: f64,
    /// Coefficient of variation (stddev / mean).
    pub cv: f64,
    /// Bootstrap 95 % CI of the median, µs, `[lo, hi]`.
    pub median_ci95_us: [f64; 2],
    /// Bootstrap 95 % CI of the deadline percentile, µs, `[lo, hi]`.
    pub percentile_ci95_us: [f64; 2],
    /// Mean and p99 CPU time per run, µs.
    pub cpu_mean_us: f64,
    pub cpu_p99_us: f64,
    /// Tukey-fence outlier counts (reported, not removed).
    pub outliers: Outliers,
}

/// How the runs were isolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationSection {
    pub cpu: usize,
    pub policy: Policy,
    /// `SCHED_FIFO` priority (0 under `SCHED_OTHER`).
    pub priority: i32,
    pub isolate_requested: bool,
    /// What `--isolate` did, when requested.
    pub isolate: Option<IsolateOutcome>,
    /// Busy share of the CPU over ~200 ms before the runs.
    pub cpu_busy_percent_before: Option<f64>,
    pub cpu_in_isolcpus: bool,
    pub cpu_in_nohz_full: bool,
    /// Largest busy share of wall time the measured thread was allowed.
    pub duty_cycle: f64,
    /// Busy time of one batch of back-to-back runs between rests, ms
    /// (absent in profiles written before the field existed).
    #[serde(default)]
    pub batch_ms: Option<f64>,
}

/// How long sampling ran and why it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    pub warmup_runs: u64,
    pub runs: u64,
    pub elapsed_s: f64,
    pub stop_reason: StopReason,
    /// Target relative half-width of the percentile's CI (0.02 = ±2 %).
    pub precision: f64,
    /// The half-width reached.
    pub percentile_ci_half_width: f64,
    /// How far the machine's speed moved while sampling: (max − min) / median
    /// of the medians of ~1 s windows of runs, in % (absent with fewer than
    /// 3 windows, and in profiles written before the field existed).
    #[serde(default)]
    pub median_drift_percent: Option<f64>,
}

/// The serialised distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramSection {
    /// Always `"ns"`.
    pub unit: String,
    /// Always `"hdrhistogram-v2-deflate-base64"`.
    pub encoding: String,
    pub data: String,
}

/// A function's profile (schema version 2). See the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub schema: String,
    pub version: i64,
    pub function: String,
    pub slokit_version: String,
    pub created_unix_s: u64,
    pub target: Target,
    /// The parameters every run used, exactly as given (`{}` = defaults).
    pub params: Map<String, Value>,
    pub deadline: DeadlineSection,
    pub summary: Summary,
    pub isolation: IsolationSection,
    pub sampling: SamplingSection,
    /// The instruction count (`--metric instructions`), when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<InstructionSection>,
    /// The CPU the serving runtime spent per request, when the profile was
    /// taken through a URL of a runtime slokit started (`slokit compare`'s
    /// external hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSection>,
    /// Warnings raised while profiling (noisy CPU, no SCHED_FIFO, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    pub environment: Environment,
    pub histogram: HistogramSection,
    /// Raw wall times (ns) of this run, when it was measured in this
    /// process (never serialised).
    #[serde(skip)]
    pub raw_wall_ns: Vec<f64>,
    #[serde(skip)]
    decoded: Option<Histogram<u64>>,
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        // Compares the serialised form: raw samples are a cache.
        toml::to_string(self).ok() == toml::to_string(other).ok()
    }
}

fn malformed<E: std::fmt::Display>(path: &Path, e: &serde_path_to_error::Error<E>) -> ProfileError {
    let inner = e.inner().to_string();
    let mut field = e.path().to_string();
    // serde reports a missing field at its parent; name the field itself.
    if let Some(name) = inner
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        field = if field == "." || field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
    }
    ProfileError::Malformed {
        path: path.to_path_buf(),
        field,
        message: inner.lines().next().unwrap_or_default().to_string(),
    }
}

impl Profile {
    /// Assembles a profile (used by the profiler; the histogram is encoded here).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        function: String,
        target: Target,
        params: Map<String, Value>,
        deadline: DeadlineSection,
        summary: Summary,
        isolation: IsolationSection,
        sampling: SamplingSection,
        warnings: Vec<String>,
        environment: Environment,
        histogram: &Histogram<u64>,
        raw_wall_ns: Vec<f64>,
    ) -> Self {
        Profile {
            schema: PROFILE_SCHEMA.into(),
            version: PROFILE_VERSION,
            function,
            slokit_version: slokit_model::VERSION.into(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            target,
            params,
            deadline,
            summary,
            isolation,
            sampling,
            instructions: None,
            runtime: None,
            warnings,
            environment,
            histogram: HistogramSection {
                unit: "ns".into(),
                encoding: "hdrhistogram-v2-deflate-base64".into(),
                data: encode_histogram(histogram),
            },
            raw_wall_ns,
            decoded: Some(histogram.clone()),
        }
    }

    /// Reads and validates a profile file. Errors name the file and the field.
    pub fn load(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses profile TOML; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        let bad = |field: &str, message: String| ProfileError::Malformed {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let value: toml::Value =
            toml::from_str(text).map_err(|e| bad("(TOML syntax)", e.message().to_string()))?;
        match value.get("version") {
            None => return Err(bad("version", "missing (is this a slokit profile?)".into())),
            Some(toml::Value::Integer(v)) if *v > PROFILE_VERSION => {
                return Err(ProfileError::NewerVersion {
                    path: path.to_path_buf(),
                    found: *v,
                    supported: PROFILE_VERSION,
                })
            }
            Some(toml::Value::Integer(v))
                if (OLDEST_PROFILE_VERSION..=PROFILE_VERSION).contains(v) => {}
            Some(other) => {
                return Err(bad(
                    "version",
                    format!(
                        "expected an integer from {OLDEST_PROFILE_VERSION} to {PROFILE_VERSION}, found {other}"
                    ),
                ))
            }
        }
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(PROFILE_SCHEMA) => {}
            Some(other) => {
                return Err(bad(
                    "schema",
                    format!("expected `{PROFILE_SCHEMA}`, found `{other}`"),
                ))
            }
            None => {
                return Err(bad(
                    "schema",
                    format!("missing (expected `{PROFILE_SCHEMA}`)"),
                ))
            }
        }
        let mut p: Profile =
            serde_path_to_error::deserialize(value).map_err(|e| malformed(path, &e))?;
        let d = &p.deadline;
        if !(d.deadline_us.is_finite() && d.deadline_us > 0.0) {
            return Err(bad(
                "deadline.deadline_us",
                format!("must be a positive number, got {}", d.deadline_us),
            ));
        }
        if !(d.percentile > 0.0 && d.percentile < 100.0) {
            return Err(bad(
                "deadline.percentile",
                format!("must be in (0, 100), got {}", d.percentile),
            ));
        }
        if p.histogram.unit != "ns" {
            return Err(bad(
                "histogram.unit",
                format!("expected `ns`, found `{}`", p.histogram.unit),
            ));
        }
        let h = decode_histogram(&p.histogram.data).map_err(|e| bad("histogram.data", e))?;
        if h.len() < 2 {
            return Err(bad(
                "histogram.data",
                format!("holds {} runs; a profile needs at least 2", h.len()),
            ));
        }
        p.decoded = Some(h);
        Ok(p)
    }

    /// Serialises to TOML text, always as the current schema version (a
    /// version 1 profile read and saved again is a version 2 file).
    pub fn to_toml(&self) -> Result<String, ProfileError> {
        let err = |e: &dyn std::fmt::Display| ProfileError::Export {
            format: "TOML profile",
            message: e.to_string(),
        };
        if self.version == PROFILE_VERSION {
            return toml::to_string(self).map_err(|e| err(&e));
        }
        let mut current = self.clone();
        current.version = PROFILE_VERSION;
        toml::to_string(&current).map_err(|e| err(&e))
    }

    /// Writes the profile (creating the directory), atomically via a temp file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ProfileError> {
        let path = path.as_ref();
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ProfileError::Io {
                action,
                path: p,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create the directory", dir))?;
        }
        let text = format!(
            "# slokit profile of `{}` — written by `slokit profile`; see docs/profiler.md for the schema.\n{}",
            self.function,
            self.to_toml()?
        );
        let tmp: PathBuf = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename into place", path))
    }

    /// The deadline, µs of wall execution time.
    pub fn deadline_us(&self) -> f64 {
        self.deadline.deadline_us
    }

    /// The service time: the **median** isolated wall execution time, µs.
    /// The median rather than the mean, because on a shared machine a few
    /// preempted runs drag the mean while the median stays the typical cost.
    pub fn service_time_us(&self) -> f64 {
        self.summary.p50_us
    }

    /// The distribution of isolated wall execution times, in **ns**.
    pub fn histogram(&self) -> Histogram<u64> {
        match &self.decoded {
            Some(h) => h.clone(),
            None => decode_histogram(&self.histogram.data)
                .unwrap_or_else(|_| crate::sampler::ns_histogram()),
        }
    }

    /// Wall times (ns) for statistics: the raw samples when this profile was
    /// measured in this process, else values expanded from the histogram
    /// (each bucket's representative value, counts scaled to ≤ `cap`).
    pub fn samples_ns(&self, cap: usize) -> Vec<f64> {
        if self.raw_wall_ns.len() >= 2 {
            let mut v = self.raw_wall_ns.clone();
            v.sort_by(f64::total_cmp);
            return crate::stats::thin_sorted(&v, cap);
        }
        expand_histogram(&self.histogram(), cap)
    }

    /// Why this profile no longer describes `params` on `env`, if it does not:
    /// different parameters, or a different environment fingerprint
    /// ([`Environment::differences`]). Parameters compare as given — numbers
    /// by value (`10` = `10.0`), `null` = `{}` — so pass them in the form
    /// they were profiled with (an explicit default and an omitted one
    /// count as different: conservative, it only causes a re-profile).
    pub fn is_stale(&self, params: &Value, env: &Environment) -> Option<String> {
        if !params_equal(&Value::Object(self.params.clone()), params) {
            return Some(format!(
                "parameters differ: profiled with {}, asked for {}",
                Value::Object(self.params.clone()),
                params
            ));
        }
        let d = self.environment.differences(env);
        if !d.is_empty() {
            return Some(format!("environment changed: {}", d.join("; ")));
        }
        None
    }

    /// How far this profile's deadline moved from `previous`, the profile it
    /// replaces, when that one describes the same target, parameters,
    /// timing and environment and the move exceeds
    /// [`DEADLINE_MOVE_WARNING`]: a sentence for the user, or `None`. A
    /// profile cannot see a slow stretch of the machine that lasts longer
    /// than itself (docs/profiler.md, *Deadline reproducibility*); the
    /// previous profile can.
    pub fn moved_from(&self, previous: &Profile) -> Option<String> {
        let same = previous.target == self.target
            && previous.deadline.timing == self.deadline.timing
            && previous.deadline.percentile == self.deadline.percentile
            && previous.deadline.slack == self.deadline.slack
            && previous
                .is_stale(&Value::Object(self.params.clone()), &self.environment)
                .is_none();
        let (new, old) = (self.deadline_us(), previous.deadline_us());
        let change = new / old - 1.0;
        (same && old > 0.0 && change.abs() > DEADLINE_MOVE_WARNING).then(|| {
            let minutes = self.created_unix_s.saturating_sub(previous.created_unix_s) as f64 / 60.0;
            format!(
                "the deadline moved {:+.1} % from the profile it replaces ({:.1} µs, {:.0} min earlier, p50 {:.1} µs then, {:.1} µs now): with nothing changed, that is the machine's speed; profile again, or with a longer --min-time, before trusting either",
                change * 100.0,
                old,
                minutes,
                previous.summary.p50_us,
                self.summary.p50_us
            )
        })
    }
}

/// What the serving runtime itself spent per request while a URL was
/// profiled: the service time `compare` derives the arrival rate from when
/// a run's own time (`x-slokit-exec-us`) leaves the runtime's HTTP and
/// framework work out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// CPU time of the runtime's whole process tree over the profile,
    /// divided by the requests it served (warm-up included), µs.
    pub cpu_per_request_us: f64,
    /// Requests the figure is over.
    pub requests: u64,
    /// Where the CPU time came from, e.g. "cgroup cpu.stat usage_usec".
    pub source: String,
}

/// A deadline that moved more than this from the profile it replaces, with
/// nothing changed, earns a warning: twice the ±2.4 % nine of ten
/// consecutive aes profiles stayed within on machine B (docs/measurements.md).
pub const DEADLINE_MOVE_WARNING: f64 = 0.05;

/// Expands a histogram into at most ~`cap` values (bucket values repeated by
/// their count, scaled down proportionally when the histogram holds more).
pub fn expand_histogram(h: &Histogram<u64>, cap: usize) -> Vec<f64> {
    let total = h.len().max(1);
    let scale = if total as usize > cap && cap > 0 {
        cap as f64 / total as f64
    } else {
        1.0
    };
    let mut out = Vec::new();
    let mut carry = 0.0;
    for v in h.iter_recorded() {
        let value = h.median_equivalent(v.value_iterated_to()) as f64;
        carry += v.count_at_value() as f64 * scale;
        let k = carry.floor();
        carry -= k;
        out.extend(std::iter::repeat_n(value, k as usize));
    }
    out
}

/// JSON parameter equality where numbers compare by value (`10` == `10.0`)
/// and `null` equals `{}`.
pub fn params_equal(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
    match (a, b) {
        _ if empty(a) && empty(b) => true,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| params_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| params_equal(v, w))
        }
        _ => a == b,
    }
}

/// A built-in function's parameters with its non-null defaults filled in
/// (`given` overrides); `null` means "all defaults". For display and
/// comparison only — do not invoke with it: functions with mutually
/// exclusive parameters reject the merged object.
pub fn effective_params(
    info: &slokit_functions::FunctionInfo,
    given: &Value,
) -> Result<Map<String, Value>, ProfileError> {
    let mut out: Map<String, Value> = info
        .params
        .iter()
        .filter(|p| !p.default.is_null())
        .map(|p| (p.name.to_string(), p.default.clone()))
        .collect();
    match given {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
        other => {
            return Err(ProfileError::Settings(format!(
                "parameters of `{}` must be a JSON object, got {other}",
                info.name
            )))
        }
    }
    Ok(out)
}

/// Builds the summary of a sample of wall times (ns) and CPU times.
pub(crate) fn summarise(
    wall: &Sample,
    cpu: &Histogram<u64>,
    median_ci: [f64; 2],
    percentile_ci: [f64; 2],
) -> Summary {
    let us = |ns: f64| ns / 1e3;
    Summary {
        runs: wall.len() as u64,
        min_us: us(wall.min()),
        mean_us: us(wall.mean()),
        p50_us: us(wall.median()),
        p90_us: us(wall.percentile(90.0)),
        p99_us: us(wall.percentile(99.0)),
        p999_us: us(wall.percentile(99.9)),
        max_us: us(wall.max()),
        stddev_us: us(wall.stddev()),
        cv: wall.cv(),
        median_ci95_us: median_ci.map(us),
        percentile_ci95_us: percentile_ci.map(us),
        cpu_mean_us: cpu.mean() / 1e3,
        cpu_p99_us: cpu.value_at_quantile(0.99) as f64 / 1e3,
        outliers: wall.outliers(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sampler::ns_histogram;

    /// A complete, valid profile of synthetic data.
    pub(crate) fn synthetic(function: &str, base_ns: f64) -> Profile {
        let mut h = ns_histogram();
        let raw: Vec<f64> = (0..500)
            .map(|i| base_ns * (1.0 + (i % 50) as f64 / 1000.0))
            .collect();
        for v in &raw {
            h.record(*v as u64).unwrap();
        }
        let s = Sample::new(raw.clone()).unwrap();
        let p99 = s.percentile(99.0);
        Profile::new(
            function.into(),
            Target::Builtin,
            serde_json::json!({"ms": 10.0}).as_object().unwrap().clone(),
            DeadlineSection {
                deadline_us: p99 * 1.5 / 1e3,
                percentile: 99.0,
                slack: 1.5,
                slo_target_percent: 99.0,
                basis: "wall".into(),
                timing: TimeFrom::Clock,
                estimator: QuantileEstimator::MedianOfBlocks,
                blocks: Some(8),
                whole_sample_percentile_us: Some(p99 / 1e3),
                block_quartiles_us: Some([p99 / 1e3 * 0.98, p99 / 1e3 * 1.02]),
            },
            summarise(&s, &h, [1.0, 2.0], [3.0, 4.0]),
            IsolationSection {
                cpu: 1,
                policy: Policy::Fifo,
                priority: 50,
                isolate_requested: false,
                isolate: None,
                cpu_busy_percent_before: Some(3.0),
                cpu_in_isolcpus: false,
                cpu_in_nohz_full: false,
                duty_cycle: 0.5,
                batch_ms: Some(2.0),
            },
            SamplingSection {
                warmup_runs: 10,
                runs: 500,
                elapsed_s: 1.0,
                stop_reason: StopReason::Precision,
                precision: 0.02,
                percentile_ci_half_width: 0.01,
                median_drift_percent: Some(1.5),
            },
            vec!["a warning".into()],
            Environment::probe(),
            &h,
            Vec::new(),
        )
    }

    #[test]
    fn profiles_round_trip_through_toml_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/spin.toml");
        let p = synthetic("spin", 1e6);
        p.save(&path).unwrap();
        let q = Profile::load(&path).unwrap();
        assert_eq!(p, q);
        assert_eq!(q.histogram().len(), 500);
        assert_eq!(q.deadline_us(), p.deadline_us());
        assert_eq!(q.service_time_us(), p.summary.p50_us);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("p99_us"), "{text}");
        assert!(text.contains("deadline_us"), "{text}");
    }

    #[test]
    fn a_profile_with_an_instruction_count_round_trips() {
        use crate::instructions::{CountScope, CountSource};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aes.toml");
        let mut p = synthetic("aes", 2e6);
        p.deadline.timing = TimeFrom::Stdout;
        p.instructions = Some(
            InstructionSection::from_counts(
                &[12_345_678, 12_345_678, 12_345_678],
                1,
                CountSource::Valgrind,
                "valgrind-3.19.0 callgrind".into(),
                CountScope::Invocation,
            )
            .unwrap(),
        );
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[instructions]"), "{text}");
        assert!(text.contains("source = \"valgrind\""), "{text}");
        assert!(text.contains("timing = \"stdout\""), "{text}");
        let q = Profile::load(&path).unwrap();
        assert_eq!(q, p);
        let i = q.instructions.unwrap();
        assert_eq!((i.per_invocation, i.invocations), (12_345_678, 3));
        assert!(i.identical());
        assert_eq!(q.deadline.timing, TimeFrom::Stdout);
        assert_eq!(q.version, PROFILE_VERSION);
    }

    #[test]
    fn a_version_1_profile_still_reads() {
        // A profile written by slokit before schema version 2 (profiles/aes.toml then).
        let text = include_str!("testdata/aes-v1.toml");
        assert!(text.contains("version = 1\n"));
        let p = Profile::from_toml(text, Path::new("testdata/aes-v1.toml")).unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.instructions, None);
        assert_eq!(p.deadline.timing, TimeFrom::Clock);
        assert_eq!(p.deadline.estimator, QuantileEstimator::HyndmanFan7);
        assert_eq!(p.histogram().len(), p.summary.runs);
        // Saved again, it is a version 2 file.
        let again = Profile::from_toml(&p.to_toml().unwrap(), Path::new("x.toml")).unwrap();
        assert_eq!(again.version, PROFILE_VERSION);
        let e = load_str(&text.replace("version = 1", "version = 0"));
        assert!(e.to_string().contains("`version`"), "{e}");
    }

    fn load_str(text: &str) -> ProfileError {
        Profile::from_toml(text, Path::new("profiles/x.toml")).unwrap_err()
    }

    #[test]
    fn newer_versions_are_refused_naming_the_version() {
        let text = synthetic("spin", 1e6)
            .to_toml()
            .unwrap()
            .replace("version = 2", "version = 3");
        let e = load_str(&text);
        assert!(
            matches!(e, ProfileError::NewerVersion { found: 3, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("profiles/x.toml") && e.to_string().contains("`version`"),
            "{e}"
        );
    }

    #[test]
    fn malformed_fields_are_named_with_their_path() {
        let good = synthetic("spin", 1e6).to_toml().unwrap();
        let bad_type = good.replacen("p99_us = ", "p99_us = \"fast\" #", 1);
        let e = load_str(&bad_type);
        assert!(
            matches!(&e, ProfileError::Malformed { field, .. } if field == "summary.p99_us"),
            "{e}"
        );
        let missing: String = good
            .lines()
            .filter(|l| !l.starts_with("deadline_us"))
            .collect::<Vec<_>>()
            .join("\n");
        let e = load_str(&missing);
        assert!(
            matches!(&e, ProfileError::Malformed { field, .. } if field == "deadline.deadline_us"),
            "{e}"
        );
        let e = load_str("this is = not toml = at all");
        assert!(matches!(e, ProfileError::Malformed { .. }), "{e}");
        let e = load_str(&good.replacen("data = \"", "data = \"!!", 1));
        assert!(
            matches!(&e, ProfileError::Malformed { field, .. } if field == "histogram.data"),
            "{e}"
        );
    }

    #[test]
    fn staleness_names_params_and_environment() {
        let p = synthetic("spin", 1e6);
        let env = p.environment.clone();
        assert_eq!(p.is_stale(&serde_json::json!({"ms": 10}), &env), None);
        let why = p.is_stale(&serde_json::json!({"ms": 11}), &env).unwrap();
        assert!(why.contains("parameters"), "{why}");
        let mut other = env.clone();
        other.kernel = Some("0.0".into());
        let why = p
            .is_stale(&serde_json::json!({"ms": 10.0}), &other)
            .unwrap();
        assert!(why.contains("kernel"), "{why}");
    }

    #[test]
    fn a_deadline_that_moved_with_nothing_changed_is_named() {
        let old = synthetic("spin", 1e6);
        let mut new = old.clone();
        assert_eq!(new.moved_from(&old), None, "the same deadline");
        new.deadline.deadline_us = old.deadline.deadline_us * 1.04;
        assert_eq!(new.moved_from(&old), None, "within the threshold");
        new.deadline.deadline_us = old.deadline.deadline_us * 1.25;
        new.created_unix_s = old.created_unix_s + 240;
        let why = new.moved_from(&old).unwrap();
        assert!(
            why.contains("+25.0 %") && why.contains("4 min earlier"),
            "{why}"
        );
        // a changed function or parameter explains the move: no warning
        let mut changed = new.clone();
        changed.params.insert("ms".into(), serde_json::json!(11));
        assert_eq!(changed.moved_from(&old), None);
        let mut other_slack = new.clone();
        other_slack.deadline.slack = 2.0;
        assert_eq!(other_slack.moved_from(&old), None);
    }

    #[test]
    fn config_rules_layer_defaults_sections_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(
            &path,
            "[defaults]\nslack = 2.0\n[function.aes]\npercentile = 99.9\n",
        )
        .unwrap();
        let c = ProfileConfig::load(&path).unwrap();
        let r = c.rule_for("aes", &RuleOverrides::default());
        assert_eq!(
            (r.percentile, r.slack, r.slo_target_percent),
            (99.9, 2.0, 99.0)
        );
        let r = c.rule_for(
            "spin",
            &RuleOverrides {
                slack: Some(1.2),
                ..Default::default()
            },
        );
        assert_eq!((r.percentile, r.slack), (99.0, 1.2));
        std::fs::write(&path, "[defaults]\nslak = 2.0\n").unwrap();
        let e = ProfileConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("slak"), "{e}");
        assert_eq!(
            ProfileConfig::load(&dir.path().join("none.toml")).unwrap(),
            ProfileConfig::default()
        );
    }

    #[test]
    fn expanding_a_histogram_keeps_its_median() {
        let p = synthetic("spin", 1e6);
        let v = expand_histogram(&p.histogram(), 100);
        assert!((95..=100).contains(&v.len()), "{}", v.len());
        let s = Sample::new(v).unwrap();
        assert!((s.median() / 1e3 - p.summary.p50_us).abs() / p.summary.p50_us < 0.01);
    }

    #[test]
    fn effective_params_fill_defaults() {
        let info = slokit_functions::Function::info(&slokit_functions::spin::Spin);
        let m = effective_params(&info, &Value::Null).unwrap();
        assert_eq!(m["ms"], serde_json::json!(10.0));
        let m = effective_params(&info, &serde_json::json!({"ms": 3})).unwrap();
        assert_eq!(m["ms"], serde_json::json!(3));
    }
}
