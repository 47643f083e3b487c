//! The environment fingerprint: what a measurement ran on (CPU model, cores,
//! kernel, frequency governor, turbo, ASLR, RT throttling, isolation knobs),
//! in the spirit of pyperf's `system show`. The portable facts (host name,
//! CPU brand, online CPUs, kernel release, load average) come from
//! `sysinfo`; the tuning knobs it does not cover are read from `/proc` and
//! `/sys` directly. Every profile, run record and report carries one.

use std::fs;

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, RefreshKind, System};

/// What a measurement ran on. Fields that could not be read are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub slokit_version: String,
    pub hostname: Option<String>,
    pub cpu_model: Option<String>,
    pub logical_cpus: usize,
    pub kernel: Option<String>,
    /// `scaling_governor` of CPU 0 (`performance`, `powersave`, ...).
    pub governor: Option<String>,
    /// Whether turbo/boost is enabled, where the driver says.
    pub turbo: Option<bool>,
    /// `/proc/sys/kernel/randomize_va_space` (0 off, 2 full).
    pub aslr: Option<u8>,
    /// `sched_rt_runtime_us` (-1 means throttling is off).
    pub rt_runtime_us: Option<i64>,
    pub rt_period_us: Option<i64>,
    /// `isolcpus=` / `nohz_full=` from the kernel command line.
    pub isolcpus: Option<String>,
    pub nohz_full: Option<String>,
    /// One-minute load average when probed.
    pub loadavg_1m: Option<f64>,
    /// External function hosts a comparison ran (empty elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub function_hosts: Vec<FunctionHost>,
}

/// An external function host: the command `compare` started and the
/// runtime's version as it reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionHost {
    pub label: String,
    pub command: String,
    /// e.g. `gunicorn (version 23.0.0); Python 3.11.7`.
    #[serde(default)]
    pub runtime: Option<String>,
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).map(str::to_string))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// CPUs online on the machine (sysinfo lists the `cpuN` lines of
/// `/proc/stat`) — not `available_parallelism`, which shrinks to the calling
/// thread's affinity mask (compare pins itself to one CPU) and is only the
/// fallback when `/proc/stat` cannot be read.
fn online_cpus(sys: &System) -> usize {
    match sys.cpus().len() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Environment {
    /// Reads the fingerprint of this machine now.
    pub fn probe() -> Self {
        // CPU list and brands only: no usage sampling, no frequencies.
        let sys =
            System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
        let cpu_model = non_empty(sys.cpus().first().map(|c| c.brand().to_string()));
        let cmdline = read_trim("/proc/cmdline").unwrap_or_default();
        let turbo = read_trim("/sys/devices/system/cpu/intel_pstate/no_turbo")
            .map(|v| v == "0")
            .or_else(|| read_trim("/sys/devices/system/cpu/cpufreq/boost").map(|v| v == "1"));
        Environment {
            slokit_version: crate::VERSION.to_string(),
            hostname: non_empty(System::host_name()),
            cpu_model,
            logical_cpus: online_cpus(&sys),
            kernel: non_empty(System::kernel_version()),
            governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            turbo,
            aslr: read_trim("/proc/sys/kernel/randomize_va_space").and_then(|v| v.parse().ok()),
            rt_runtime_us: read_trim("/proc/sys/kernel/sched_rt_runtime_us")
                .and_then(|v| v.parse().ok()),
            rt_period_us: read_trim("/proc/sys/kernel/sched_rt_period_us")
                .and_then(|v| v.parse().ok()),
            isolcpus: cmdline_value(&cmdline, "isolcpus="),
            nohz_full: cmdline_value(&cmdline, "nohz_full="),
            loadavg_1m: Some(System::load_average().one),
            function_hosts: Vec::new(),
        }
    }

    /// Fields that make measurements incomparable, as "field: a → b" lines
    /// (load average and hostname are not part of the fingerprint).
    pub fn differences(&self, other: &Environment) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} → {b}"));
            }
        };
        cmp(
            "cpu_model",
            format!("{:?}", self.cpu_model),
            format!("{:?}", other.cpu_model),
        );
        cmp(
            "logical_cpus",
            self.logical_cpus.to_string(),
            other.logical_cpus.to_string(),
        );
        cmp(
            "kernel",
            format!("{:?}", self.kernel),
            format!("{:?}", other.kernel),
        );
        cmp(
            "governor",
            format!("{:?}", self.governor),
            format!("{:?}", other.governor),
        );
        cmp(
            "turbo",
            format!("{:?}", self.turbo),
            format!("{:?}", other.turbo),
        );
        cmp(
            "rt_runtime_us",
            format!("{:?}", self.rt_runtime_us),
            format!("{:?}", other.rt_runtime_us),
        );
        cmp(
            "isolcpus",
            format!("{:?}", self.isolcpus),
            format!("{:?}", other.isolcpus),
        );
        cmp(
            "nohz_full",
            format!("{:?}", self.nohz_full),
            format!("{:?}", other.nohz_full),
        );
        out
    }

    /// One line for report headers.
    pub fn one_line(&self) -> String {
        format!(
            "{} × {} · Linux {} · governor {} · slokit {}",
            self.logical_cpus,
            self.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.kernel.as_deref().unwrap_or("?"),
            self.governor.as_deref().unwrap_or("n/a"),
            self.slokit_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_this_linux_machine() {
        let e = Environment::probe();
        assert!(e.logical_cpus >= 1);
        assert!(
            e.kernel.is_some(),
            "kernel release is always readable on Linux"
        );
        assert_eq!(e.slokit_version, crate::VERSION);
    }

    #[test]
    fn differences_ignore_load_and_name_changed_fields() {
        let a = Environment::probe();
        let mut b = a.clone();
        b.loadavg_1m = Some(99.0);
        assert!(a.differences(&b).is_empty());
        b.kernel = Some("1.0".into());
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("kernel"));
    }

    #[test]
    fn cmdline_values_are_found() {
        assert_eq!(
            cmdline_value("ro isolcpus=1-3 quiet", "isolcpus=").as_deref(),
            Some("1-3")
        );
        assert_eq!(cmdline_value("ro quiet", "nohz_full="), None);
    }
}
