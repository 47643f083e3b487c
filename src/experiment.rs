//! Experiment files: what `slokit compare` runs — scenarios (a mix at ρ or a
//! trace replay), policies, repetitions, placement and the two-level and
//! las constants. The default experiment is `profiles/default-experiment.toml`,
//! embedded in the binary so `slokit compare` works from any directory.
//!
//! A mix function is either a built-in (`function = "aes"`, served by
//! `slokit serve`) or an external function host (`[scenarios.functions.host]`:
//! the user's own runtime, started from a command; see
//! docs/external-runtimes.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slokit_sched::{LasParams, TwoLevelParams};

/// The text of `profiles/default-experiment.toml`.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../profiles/default-experiment.toml");

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub seed: u64,
    pub repetitions: u32,
    pub policies: Vec<Policy>,
    pub cooldown_s: f64,
    pub profiles_dir: PathBuf,
    pub out_dir: PathBuf,
    pub trace_deadline_slack: f64,
    pub placement: Placement,
    #[serde(default)]
    pub two_level: TwoLevelParams,
    #[serde(default)]
    pub las: LasParams,
    pub scenarios: Vec<Scenario>,
}

pub use slokit_sched::Policy;

/// Which CPUs do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// CPUs for function workers; empty = every CPU but CPU 0.
    #[serde(default)]
    pub function_cpus: Vec<usize>,
    pub workers_per_host: usize,
}

impl Placement {
    /// (function CPUs, loadgen/agent CPUs) on a machine with `ncpus` CPUs.
    pub fn resolve(&self, ncpus: usize) -> Result<(Vec<usize>, Vec<usize>), String> {
        if ncpus < 2 {
            return Err("slokit compare needs at least 2 CPUs: one for the functions, one for the load generator and agent".into());
        }
        let functions = if self.function_cpus.is_empty() {
            (1..ncpus).collect::<Vec<_>>()
        } else {
            self.function_cpus.clone()
        };
        if let Some(bad) = functions.iter().find(|c| **c >= ncpus) {
            return Err(format!(
                "placement.function_cpus names CPU {bad}, but this machine has CPUs 0..{}",
                ncpus - 1
            ));
        }
        let others: Vec<usize> = (0..ncpus).filter(|c| !functions.contains(c)).collect();
        if others.is_empty() {
            return Err("placement.function_cpus takes every CPU; leave at least one for the load generator and agent".into());
        }
        Ok((functions, others))
    }
}

/// One scenario: a workload replayed for `duration_s` under every policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub duration_s: f64,
    #[serde(flatten)]
    pub workload: Workload,
}

/// Where a scenario's arrivals come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Workload {
    /// A weighted Poisson mix of functions at utilisation `rho` of the
    /// function CPUs (service times from the profiles).
    Mix {
        rho: f64,
        functions: Vec<MixFunction>,
    },
    /// The Azure Functions 2019 format, through `spin`, rate scaled to `rho`.
    #[serde(rename = "azure2019")]
    Azure2019 {
        trace_dir: PathBuf,
        minutes: String,
        rho: f64,
        #[serde(default)]
        max_duration_ms: Option<f64>,
    },
}

/// One function of a mix: a built-in (`function`) or an external host
/// (`host`), exactly one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixFunction {
    pub label: String,
    /// A catalogue function served by `slokit serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The user's own runtime, started by `compare` for every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSpec>,
    pub weight: f64,
    /// Parameters sent with every invocation (defaults when absent); for an
    /// external host, the JSON body of every invocation.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

/// Placeholder in a host's command, environment and URL for the free TCP
/// port `compare` picks for each start.
pub const PORT_PLACEHOLDER: &str = "{port}";

/// Default of [`HostSpec::ready_timeout_s`].
pub const DEFAULT_READY_TIMEOUT_S: f64 = 30.0;

/// An external function host: a command that serves the function over
/// HTTP. `compare` starts it on the function CPUs for every run (its whole
/// process tree in a cgroup of its own), waits until `url` answers, lets the
/// agent schedule every process of the tree, and stops the tree afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// argv; `{port}` is replaced by a free port. A program path with a `/`
    /// is relative to `cwd`; a bare name is looked up in `PATH`.
    pub command: Vec<String>,
    /// Working directory; relative to the experiment file (default: its folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Where invocations are POSTed (`http://127.0.0.1:{port}/...`).
    pub url: String,
    /// Deadline of every invocation (a response-time bound), ms; when
    /// absent it is derived by profiling the host through `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<f64>,
    /// Mean service time of an invocation, ms. With `deadline_ms` the host
    /// is not profiled at all (both figures are taken as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ms: Option<f64>,
    /// Comm prefix of the runtime's worker threads, for the `fifo` and
    /// `las` policies to place before their first request (threads seen
    /// receiving requests are found without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_prefix: Option<String>,
    /// The runtime reports each invocation's execution time in the
    /// `x-slokit-exec-us` response header (µs): profiling takes each run's
    /// time from it, so the deadline is an execution-time bound like the
    /// built-ins' rather than the HTTP round trip's.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "service_header_flag"
    )]
    pub service_header: bool,
    /// Extra environment variables (`{port}` is replaced here too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How long the host may take to answer `url` after it starts, s.
    #[serde(default = "default_ready_timeout_s")]
    pub ready_timeout_s: f64,
}

/// `service_header`, with an error that names the field (serde's own says
/// only "expected a boolean").
fn service_header_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::Boolean(b) => Ok(b),
        other => Err(serde::de::Error::custom(format!(
            "host.service_header must be true or false, got {other}"
        ))),
    }
}

fn default_ready_timeout_s() -> f64 {
    DEFAULT_READY_TIMEOUT_S
}

impl HostSpec {
    /// The command with `{port}` replaced.
    pub fn argv(&self, port: u16) -> Vec<String> {
        self.command.iter().map(|a| with_port(a, port)).collect()
    }

    /// The URL with `{port}` replaced.
    pub fn url_for(&self, port: u16) -> String {
        with_port(&self.url, port)
    }

    /// The command as one line, for notes and the report.
    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }

    /// Makes `cwd` absolute (relative to `base`, the experiment file's
    /// folder) and a relative program path with a `/` absolute against it.
    fn resolve(&mut self, base: &Path) {
        let cwd = without_dots(&match &self.cwd {
            Some(c) if c.is_absolute() => c.clone(),
            Some(c) => base.join(c),
            None => base.to_path_buf(),
        });
        if let Some(program) = self.command.first_mut() {
            let p = Path::new(program.as_str());
            if p.is_relative() && program.contains('/') {
                *program = without_dots(&cwd.join(p)).display().to_string();
            }
        }
        self.cwd = Some(cwd);
    }

    fn validate(&self) -> Result<(), String> {
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err("host.command must name a program, e.g. [\"gunicorn\", \"-b\", \"127.0.0.1:{port}\", \"app:aes\"]".into());
        }
        if !self.url.starts_with("http://") {
            return Err(format!(
                "host.url must start with http:// (HTTPS is not supported), got `{}`",
                self.url
            ));
        }
        for (name, v) in [
            ("deadline_ms", self.deadline_ms),
            ("service_ms", self.service_ms),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("host.{name} must be > 0, got {v}"));
                }
            }
        }
        if self.service_ms.is_some() && self.deadline_ms.is_none() {
            return Err("host.service_ms needs host.deadline_ms too (else the host is profiled through its URL for both)".into());
        }
        if !(self.ready_timeout_s.is_finite() && self.ready_timeout_s > 0.0) {
            return Err(format!(
                "host.ready_timeout_s must be > 0, got {}",
                self.ready_timeout_s
            ));
        }
        if let Some(p) = &self.worker_prefix {
            if p.is_empty() || p.contains(',') || p.len() > 15 {
                return Err(format!(
                    "host.worker_prefix must be 1 to 15 characters without commas (a thread's comm), got `{p}`"
                ));
            }
        }
        Ok(())
    }
}

/// `path` without its `.` components (`a/./b` → `a/b`); `..` is kept, as
/// only the file system knows what it leads to through a symlink.
fn without_dots(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn with_port(text: &str, port: u16) -> String {
    text.replace(PORT_PLACEHOLDER, &port.to_string())
}

impl MixFunction {
    /// The catalogue function, when this is a built-in.
    pub fn builtin(&self) -> Option<&str> {
        self.function.as_deref()
    }
}

/// `"540-570"` → `(540, 570)`: the half-open window of trace minutes `A-B`
/// with A < B.
pub fn parse_minutes(text: &str) -> Result<(u32, u32), String> {
    let shape = || format!("minutes = \"{text}\" is not A-B with A < B (e.g. \"540-570\")");
    let (a, b) = text.split_once('-').ok_or_else(shape)?;
    let (a, b): (u32, u32) = match (a.trim().parse(), b.trim().parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(shape()),
    };
    if a >= b {
        return Err(shape());
    }
    Ok((a, b))
}

/// A problem with an experiment file, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ExperimentError {
    pub origin: String,
    pub message: String,
}

impl Experiment {
    /// The embedded default experiment.
    pub fn default_experiment() -> Self {
        Self::parse(DEFAULT_EXPERIMENT, "embedded default experiment")
            .expect("the default experiment is valid")
    }

    /// Reads and validates an experiment file.
    /// Host paths (`cwd`, a relative program) are resolved against the
    /// file's folder.
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let mut exp = Self::parse(&text, &origin)?;
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&folder).unwrap_or(folder);
        exp.resolve_host_paths(&base);
        Ok(exp)
    }

    /// Makes every host's `cwd` and relative program absolute against
    /// `base` (done by [`Experiment::load`] with the file's folder).
    pub fn resolve_host_paths(&mut self, base: &Path) {
        for s in &mut self.scenarios {
            if let Workload::Mix { functions, .. } = &mut s.workload {
                for h in functions.iter_mut().filter_map(|f| f.host.as_mut()) {
                    h.resolve(base);
                }
            }
        }
    }

    /// Whether any scenario runs an external function host.
    pub fn has_external_hosts(&self) -> bool {
        self.scenarios.iter().any(|s| match &s.workload {
            Workload::Mix { functions, .. } => functions.iter().any(|f| f.host.is_some()),
            Workload::Azure2019 { .. } => false,
        })
    }

    /// Parses and validates experiment TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ExperimentError> {
        let err = |message: String| ExperimentError {
            origin: origin.to_string(),
            message,
        };
        let exp: Experiment = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        exp.validate().map_err(err)?;
        Ok(exp)
    }

    /// Checks every range and cross-field rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.repetitions == 0 {
            return Err("repetitions must be at least 1".into());
        }
        if self.policies.is_empty() {
            return Err("policies must name at least one of cfs, fifo, two-level, las".into());
        }
        if !(self.cooldown_s.is_finite() && self.cooldown_s >= 0.0) {
            return Err(format!("cooldown_s must be ≥ 0, got {}", self.cooldown_s));
        }
        if !(self.trace_deadline_slack.is_finite() && self.trace_deadline_slack >= 1.0) {
            return Err(format!(
                "trace_deadline_slack must be ≥ 1, got {}",
                self.trace_deadline_slack
            ));
        }
        if self.placement.workers_per_host == 0 {
            return Err("placement.workers_per_host must be at least 1".into());
        }
        self.two_level
            .validate()
            .map_err(|e| format!("two_level: {e}"))?;
        self.las.validate().map_err(|e| format!("las: {e}"))?;
        if self.scenarios.is_empty() {
            return Err("scenarios: at least one scenario is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.scenarios {
            let at = format!("scenario `{}`", s.name);
            if !names.insert(&s.name) {
                return Err(format!("{at} appears twice"));
            }
            if !(s.duration_s.is_finite() && s.duration_s > 0.0) {
                return Err(format!(
                    "{at}: duration_s must be > 0, got {}",
                    s.duration_s
                ));
            }
            let rho = match &s.workload {
                Workload::Mix { rho, functions } => {
                    if functions.is_empty() {
                        return Err(format!("{at}: functions must not be empty"));
                    }
                    let mut labels = std::collections::HashSet::new();
                    for f in functions {
                        if !labels.insert(&f.label) {
                            return Err(format!(
                                "{at}: function label `{}` appears twice",
                                f.label
                            ));
                        }
                        if !(f.weight.is_finite() && f.weight > 0.0) {
                            return Err(format!(
                                "{at}: function `{}` weight must be > 0, got {}",
                                f.label, f.weight
                            ));
                        }
                        let of = format!("{at}: function `{}`", f.label);
                        match (&f.function, &f.host) {
                            (Some(_), Some(_)) => {
                                return Err(format!(
                                    "{of}: give either `function` (a built-in) or a `host` table, not both"
                                ))
                            }
                            (None, None) => {
                                return Err(format!(
                                    "{of}: needs `function` (a built-in: auth, aes, video, spin) or a `host` table (an external runtime)"
                                ))
                            }
                            (None, Some(h)) => h.validate().map_err(|e| format!("{of}: {e}"))?,
                            (Some(_), None) => {}
                        }
                    }
                    *rho
                }
                Workload::Azure2019 {
                    rho,
                    max_duration_ms,
                    minutes,
                    ..
                } => {
                    parse_minutes(minutes).map_err(|e| format!("{at}: {e}"))?;
                    if let Some(m) = max_duration_ms {
                        if !(m.is_finite() && *m > 0.0) {
                            return Err(format!("{at}: max_duration_ms must be > 0, got {m}"));
                        }
                    }
                    *rho
                }
            };
            if !(rho.is_finite() && rho > 0.0 && rho < 1.5) {
                return Err(format!("{at}: rho must be in (0, 1.5), got {rho}"));
            }
        }
        Ok(())
    }

    /// Keeps only the named scenarios, or says which name is unknown.
    pub fn select_scenarios(&mut self, names: &[String]) -> Result<(), String> {
        if names.is_empty() {
            return Ok(());
        }
        for n in names {
            if !self.scenarios.iter().any(|s| &s.name == n) {
                let known: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "unknown scenario `{n}` (known: {})",
                    known.join(", ")
                ));
            }
        }
        self.scenarios.retain(|s| names.contains(&s.name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_experiment_parses_and_has_both_scenarios() {
        let e = Experiment::default_experiment();
        assert_eq!(
            e.policies,
            vec![Policy::Cfs, Policy::Fifo, Policy::TwoLevel, Policy::Las]
        );
        let names: Vec<&str> = e.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["colocated", "azure"]);
        assert!(matches!(e.scenarios[0].workload, Workload::Mix { rho, .. } if rho == 0.8));
        assert!(matches!(
            e.scenarios[1].workload,
            Workload::Azure2019 { .. }
        ));
    }

    #[test]
    fn default_experiment_round_trips_through_toml() {
        let e = Experiment::default_experiment();
        let text = toml::to_string(&e).unwrap();
        assert_eq!(Experiment::parse(&text, "round trip").unwrap(), e);
    }

    #[test]
    fn errors_name_the_origin_and_the_field() {
        let bad = DEFAULT_EXPERIMENT.replace("repetitions = 3", "repetitions = \"three\"");
        let e = Experiment::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:") && e.contains("repetitions"), "{e}");
        let bad = DEFAULT_EXPERIMENT.replace(
            "rho = 0.8\n\n[[scenarios.functions]]",
            "rho = 7.0\n\n[[scenarios.functions]]",
        );
        let e = Experiment::parse(&bad, "y.toml").unwrap_err().to_string();
        assert!(e.contains("colocated") && e.contains("rho"), "{e}");
        let bad = DEFAULT_EXPERIMENT.replace("\"las\"]", "\"round-robin\"]");
        assert!(Experiment::parse(&bad, "z.toml")
            .unwrap_err()
            .to_string()
            .contains("round-robin"));
    }

    /// The default experiment with its colocated `aes` replaced by `entry`.
    fn with_aes_entry(entry: &str) -> String {
        let aes = "[[scenarios.functions]]\nlabel = \"aes\"\nfunction = \"aes\"\nweight = 0.3\n";
        assert!(DEFAULT_EXPERIMENT.contains(aes));
        DEFAULT_EXPERIMENT.replace(aes, entry)
    }

    const HOST_ENTRY: &str = r#"[[scenarios.functions]]
label = "pyaes"
weight = 0.3
params = { length = 4096 }
[scenarios.functions.host]
command = [".venv/bin/gunicorn", "-b", "127.0.0.1:{port}", "app:aes"]
cwd = "python"
url = "http://127.0.0.1:{port}/"
"#;

    #[test]
    fn an_external_host_parses_and_its_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exp.toml");
        std::fs::write(
            &path,
            with_aes_entry(&HOST_ENTRY.replace("\"python\"", "\"./python\"")),
        )
        .unwrap();
        let e = Experiment::load(&path).unwrap();
        assert!(e.has_external_hosts());
        let Workload::Mix { functions, .. } = &e.scenarios[0].workload else {
            panic!("a mix")
        };
        let f = functions.iter().find(|f| f.label == "pyaes").unwrap();
        assert_eq!(f.builtin(), None);
        let h = f.host.as_ref().unwrap();
        let cwd = dir.path().join("python");
        assert_eq!(h.cwd.as_deref(), Some(cwd.as_path()));
        assert_eq!(
            h.argv(8123)[..3],
            [
                cwd.join(".venv/bin/gunicorn").display().to_string(),
                "-b".to_string(),
                "127.0.0.1:8123".to_string()
            ]
        );
        assert_eq!(h.url_for(8123), "http://127.0.0.1:8123/");
        assert_eq!(h.ready_timeout_s, DEFAULT_READY_TIMEOUT_S);
        // a bare program name is left to PATH
        let bare = with_aes_entry(&HOST_ENTRY.replace(".venv/bin/gunicorn", "gunicorn"));
        std::fs::write(&path, bare).unwrap();
        let e = Experiment::load(&path).unwrap();
        let Workload::Mix { functions, .. } = &e.scenarios[0].workload else {
            panic!("a mix")
        };
        let h = functions[1].host.as_ref().unwrap();
        assert_eq!(h.command[0], "gunicorn");
        // the round trip keeps the host
        let text = toml::to_string(&e).unwrap();
        assert_eq!(Experiment::parse(&text, "round trip").unwrap(), e);
    }

    #[test]
    fn a_function_is_a_builtin_or_a_host_and_a_bad_host_names_the_field() {
        let both =
            with_aes_entry(&HOST_ENTRY.replace("weight = 0.3", "function = \"aes\"\nweight = 0.3"));
        let e = Experiment::parse(&both, "b.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("b.toml:") && e.contains("`pyaes`") && e.contains("not both"),
            "{e}"
        );
        let neither = with_aes_entry("[[scenarios.functions]]\nlabel = \"x\"\nweight = 0.3\n");
        let e = Experiment::parse(&neither, "n.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`x`") && e.contains("host"), "{e}");
        let https = with_aes_entry(&HOST_ENTRY.replace("http://127", "https://127"));
        let e = Experiment::parse(&https, "h.toml").unwrap_err().to_string();
        assert!(e.contains("host.url") && e.contains("colocated"), "{e}");
        let empty = with_aes_entry(&HOST_ENTRY.replace(
            r#"[".venv/bin/gunicorn", "-b", "127.0.0.1:{port}", "app:aes"]"#,
            "[]",
        ));
        let e = Experiment::parse(&empty, "e.toml").unwrap_err().to_string();
        assert!(e.contains("host.command"), "{e}");
        let service_only = with_aes_entry(&format!("{HOST_ENTRY}service_ms = 3\n"));
        let e = Experiment::parse(&service_only, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("service_ms needs host.deadline_ms"), "{e}");
        let unknown = with_aes_entry(&format!("{HOST_ENTRY}port = 80\n"));
        let e = Experiment::parse(&unknown, "u.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("u.toml:") && e.contains("port"), "{e}");
    }

    #[test]
    fn a_host_may_report_its_service_time_in_a_header() {
        let mix = |text: &str| {
            let e = Experiment::parse(text, "x.toml").unwrap();
            let Workload::Mix { functions, .. } = &e.scenarios[0].workload else {
                panic!("a mix")
            };
            functions[1].host.clone().unwrap()
        };
        assert!(!mix(&with_aes_entry(HOST_ENTRY)).service_header);
        let with = with_aes_entry(&format!("{HOST_ENTRY}service_header = true\n"));
        assert!(mix(&with).service_header);
        let e = Experiment::parse(&with, "x.toml").unwrap();
        let text = toml::to_string(&e).unwrap();
        assert!(text.contains("service_header = true"), "{text}");
        let bad = with_aes_entry(&format!("{HOST_ENTRY}service_header = \"yes\"\n"));
        let e = Experiment::parse(&bad, "sh.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("sh.toml:") && e.contains("service_header"),
            "{e}"
        );
    }

    #[test]
    fn bad_trace_minutes_name_the_file_and_the_scenario() {
        let bad = DEFAULT_EXPERIMENT.replace("minutes = \"540-541\"", "minutes = \"abc\"");
        let e = Experiment::parse(&bad, "m.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("m.toml:") && e.contains("scenario `azure`") && e.contains("abc"),
            "{e}"
        );
        assert_eq!(parse_minutes("540-570").unwrap(), (540, 570));
        assert!(parse_minutes("540").is_err());
        assert!(parse_minutes("9-3").is_err());
    }

    #[test]
    fn placement_defaults_to_all_but_cpu0() {
        let p = Placement {
            function_cpus: vec![],
            workers_per_host: 4,
        };
        assert_eq!(p.resolve(2).unwrap(), (vec![1], vec![0]));
        assert_eq!(p.resolve(4).unwrap(), (vec![1, 2, 3], vec![0]));
        assert!(p.resolve(1).is_err());
        let all = Placement {
            function_cpus: vec![0, 1],
            workers_per_host: 4,
        };
        assert!(all.resolve(2).unwrap_err().contains("leave at least one"));
    }

    #[test]
    fn select_scenarios_names_the_unknown_one() {
        let mut e = Experiment::default_experiment();
        assert!(e
            .select_scenarios(&["nope".into()])
            .unwrap_err()
            .contains("colocated"));
        e.select_scenarios(&["azure".into()]).unwrap();
        assert_eq!(e.scenarios.len(), 1);
    }
}
