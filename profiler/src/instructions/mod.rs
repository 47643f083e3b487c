//! `--metric instructions`: how many instructions a function's invocations
//! execute. Unlike wall time, the count does not move with the machine's
//! load, so a gate on it separates a 10 % regression from a shared runner's
//! drift — the approach of CodSpeed and iai-callgrind.
//!
//! Two sources, chosen once per count, hardware first:
//!
//! * [`counter`] — the PMU through `perf_event_open(2)`
//!   (`PERF_COUNT_HW_INSTRUCTIONS`, user space only), read around each
//!   invocation in-process on a thread pinned to the measurement CPU. Used
//!   when the counter opens; virtual machines often expose no PMU
//!   (`perf stat -e instructions` says `<not supported>`).
//! * [`callgrind`] — Valgrind's simulated CPU. The slokit binary re-executes
//!   itself under `valgrind --tool=callgrind` running the hidden
//!   `__count-instructions` subcommand ([`region`]), which calls the
//!   function inside one `#[no_mangle]` function, `slokit_counted_region`.
//!   Callgrind counts only inside it (`--collect-atstart=no
//!   --toggle-collect`) and writes one dump per invocation
//!   (`--dump-after`), so every invocation is counted on its own and
//!   process start-up and slokit's harness are not counted at all. Chosen
//!   over client requests because it needs no hand-written inline assembly.
//!
//! `--command` targets are counted as whole processes under Valgrind's
//! cachegrind (start-up included; the profile and the gate say so).
//! Counts are taken in `SCHED_OTHER` on the measurement CPU: time does not
//! matter here, so nothing is made real-time.

pub mod callgrind;
pub mod counter;
pub mod region;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProfileError;

/// Where a count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountSource {
    /// The CPU's performance-monitoring unit (`perf_event_open`).
    HardwareCounter,
    /// Valgrind's simulated CPU (callgrind or cachegrind).
    Valgrind,
}

impl std::fmt::Display for CountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CountSource::HardwareCounter => "hardware counter",
            CountSource::Valgrind => "Valgrind (simulated CPU)",
        })
    }
}

/// What one count covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountScope {
    /// One invocation of the function: its own code only.
    Invocation,
    /// One whole process execution (`--command`), start-up included.
    Process,
}

impl std::fmt::Display for CountScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CountScope::Invocation => "per invocation (the function's code only)",
            CountScope::Process => "per process execution (whole process, start-up included)",
        })
    }
}

/// The `[instructions]` section of a profile (schema version 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionSection {
    /// Instructions of one invocation (or process): the median of the counted ones.
    pub per_invocation: u64,
    /// Smallest and largest count seen; equal when every invocation executed
    /// exactly the same instructions.
    pub min: u64,
    pub max: u64,
    /// Counted invocations (or process executions).
    pub invocations: u64,
    /// Uncounted invocations before them (lazy initialisation, caches).
    pub warmup: u64,
    pub source: CountSource,
    /// The tool and its version, e.g. `valgrind-3.19.0 callgrind`.
    pub tool: String,
    pub scope: CountScope,
}

impl InstructionSection {
    /// Builds the section from individual counts (at least one).
    pub fn from_counts(
        counts: &[u64],
        warmup: u64,
        source: CountSource,
        tool: String,
        scope: CountScope,
    ) -> Result<Self, ProfileError> {
        if counts.is_empty() {
            return Err(ProfileError::Count("no invocation was counted".into()));
        }
        let mut sorted = counts.to_vec();
        sorted.sort_unstable();
        Ok(Self {
            per_invocation: sorted[(sorted.len() - 1) / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            invocations: counts.len() as u64,
            warmup,
            source,
            tool,
            scope,
        })
    }

    /// Whether every counted invocation executed the same number of instructions.
    pub fn identical(&self) -> bool {
        self.min == self.max
    }

    /// (max − min) / median: how much the counts varied.
    pub fn spread(&self) -> f64 {
        if self.per_invocation == 0 {
            return 0.0;
        }
        (self.max - self.min) as f64 / self.per_invocation as f64
    }

    /// One line for humans: count, how obtained, variation.
    pub fn describe(&self) -> String {
        let variation = if self.identical() {
            format!("identical in {} of {}", self.invocations, self.invocations)
        } else {
            format!(
                "varied {}–{} ({:.3} %) over {}",
                self.min,
                self.max,
                self.spread() * 100.0,
                self.invocations
            )
        };
        format!(
            "{} instructions {} — {}, {}; {variation}",
            self.per_invocation, self.scope, self.source, self.tool
        )
    }
}

/// How to count.
#[derive(Debug, Clone, PartialEq)]
pub struct CountSettings {
    /// Counted invocations.
    pub invocations: u64,
    /// Uncounted invocations first (built-ins only).
    pub warmup: u64,
    /// The slokit binary that Valgrind runs (`None`: this executable).
    pub exe: Option<PathBuf>,
    /// Environment for the counting child (e.g. `SLOKIT_AUTH_SECRET`).
    pub child_env: Vec<(String, String)>,
    /// Use Valgrind even when a hardware counter opens.
    pub force_valgrind: bool,
}

impl Default for CountSettings {
    fn default() -> Self {
        Self {
            invocations: 3,
            // Two: after one, glibc malloc's free lists are not yet in their
            // steady state and the next invocation takes other paths.
            warmup: 2,
            exe: None,
            child_env: Vec::new(),
            force_valgrind: false,
        }
    }
}

impl CountSettings {
    /// Checks ranges; errors name the flag.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !(1..=1000).contains(&self.invocations) {
            return Err(ProfileError::Settings(format!(
                "--count-invocations must be in 1..=1000, got {}",
                self.invocations
            )));
        }
        Ok(())
    }
}

/// What to count.
pub enum CountTarget<'a> {
    /// A catalogue function by name, with its parameters as given.
    Builtin {
        name: &'a str,
        function: std::sync::Arc<dyn slokit_functions::Function>,
        params: &'a Value,
    },
    /// A command line, one whole process per count.
    Command { argv: &'a [String] },
}

/// Counts `target` on `cpu`: the hardware counter when it opens (built-ins),
/// else Valgrind. `timeout` bounds each child process; `stop` is the
/// Ctrl-C flag (a running child is killed by its pid).
pub fn count(
    target: &CountTarget<'_>,
    cpu: usize,
    settings: &CountSettings,
    timeout: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<InstructionSection, ProfileError> {
    settings.validate()?;
    match target {
        CountTarget::Builtin {
            name,
            function,
            params,
        } => {
            if !settings.force_valgrind && counter::available() {
                return counter::count_builtin(function.clone(), params, cpu, settings);
            }
            callgrind::count_builtin(name, params, cpu, settings, timeout, stop)
        }
        CountTarget::Command { argv } => {
            callgrind::count_command(argv, cpu, settings, timeout, stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_summarise_counts() {
        let s = InstructionSection::from_counts(
            &[100, 100, 100],
            1,
            CountSource::Valgrind,
            "valgrind-3.19.0 callgrind".into(),
            CountScope::Invocation,
        )
        .unwrap();
        assert!(s.identical());
        assert_eq!((s.per_invocation, s.invocations), (100, 3));
        assert!(
            s.describe().contains("identical in 3 of 3"),
            "{}",
            s.describe()
        );
        let v = InstructionSection::from_counts(
            &[110, 100, 105],
            0,
            CountSource::HardwareCounter,
            "perf".into(),
            CountScope::Invocation,
        )
        .unwrap();
        assert!(!v.identical());
        assert_eq!((v.min, v.per_invocation, v.max), (100, 105, 110));
        assert!((v.spread() - 10.0 / 105.0).abs() < 1e-12);
        assert!(InstructionSection::from_counts(
            &[],
            0,
            CountSource::Valgrind,
            String::new(),
            CountScope::Process
        )
        .is_err());
    }
}
