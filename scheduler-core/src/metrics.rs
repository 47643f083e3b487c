//! The agent's metrics: what it saw and did, written as JSON at exit
//! (`--metrics-out`, schema [`METRICS_SCHEMA`]) and read back by
//! `slokit compare`. Decision latencies are HdrHistograms (ns), summarised
//! in µs and embedded whole (V2 + deflate, base64) for reports.
//!
//! Schema `slokit.sched-metrics/1` (every field always present):
//!
//! | field | meaning |
//! | --- | --- |
//! | `schema` | `"slokit.sched-metrics/1"` |
//! | `slokit_version` | version of the agent |
//! | `policy` | `cfs`, `fifo`, `two-level` or `las` |
//! | `monitor` | `ebpf` or `notify`: the monitor that ran |
//! | `monitor_note` | why `auto` fell back to notify, else null |
//! | `params` | the two-level constants (`TwoLevelParams`) |
//! | `targets` | target pids watched |
//! | `deadlines_ms` | pid → deadline, ms |
//! | `function_cpus`, `agent_cpus` | CPU placement |
//! | `agent_priority` | SCHED_FIFO priority of the agent's event thread (0: none) |
//! | `started_unix_ms`, `duration_s` | when and how long |
//! | `exit_reason` | `signal`, `duration`, `targets exited`, `error: …`, `panic: …` |
//! | `requests_seen` | requests the register started |
//! | `requests_completed` | requests that ended with a send |
//! | `requests_abandoned` | requests whose thread moved on without a reply |
//! | `requests_active_at_exit` | still open at exit |
//! | `events` | socket events received from the monitor |
//! | `event_drops` | events lost (ring buffer full) |
//! | `untracked_threads` | target threads the CPU-time map had no room for (their credit unmetered) |
//! | `ring_nudges` | wake-ups sent because the agent or its poller left its CPU with events pending |
//! | `transitions` | counts per state transition (`TransitionCounts`) |
//! | `demotions`, `promotions`, `overload_demotions` | totals |
//! | `fifo_threads` | threads the `fifo` baseline put in SCHED_FIFO |
//! | `setattr_calls` | `sched_setattr` calls made |
//! | `vanished_threads` | threads gone (ESRCH) when acted on |
//! | `arrival_to_fifo_us` | arrival event → SCHED_FIFO set, µs (`Percentiles` + `histogram_ns`) |
//! | `arrival_to_agent_us` | arrival event → the agent handling it (the wake-up share), µs |
//! | `exhausted_to_demoted_us` | credit (two-level) or quantum (las) exhausted → the lower level set, µs |
//! | `las` | las only: thresholds, quanta, requests and time per level, promotions, arrivals not parked, idle demotions, hand-offs (`LasMetrics`), else null |
//! | `las_params` | las only: its constants (`LasParams`), else null |
//! | `repark_us` | las: reply sent → thread parked at the top level again, µs |
//! | `timeline` | `TimelinePoint`s: S and queue length over time |
//! | `notes` | remarks worth reading next to the figures |

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use slokit_model::record::{encode_histogram, Percentiles, TimelinePoint};

use crate::error::SchedError;
use crate::params::TwoLevelParams;
use crate::policy::{LasMetrics, LasParams};
use crate::runtime::TransitionCounts;

/// Schema id of the metrics JSON.
pub const METRICS_SCHEMA: &str = "slokit.sched-metrics/1";

/// A decision latency: summary in µs and the whole histogram in ns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// count, min, mean, p50, p90, p99, p999, max, stddev — µs.
    pub summary: Percentiles,
    /// HdrHistogram (ns), V2 + deflate, base64.
    pub histogram_ns: String,
}

impl LatencyStats {
    pub fn of(h: &Histogram<u64>) -> Self {
        LatencyStats {
            summary: Percentiles::of(h, 1000.0),
            histogram_ns: encode_histogram(h),
        }
    }
}

/// Everything the agent reports; the JSON contract with `slokit compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics {
    pub schema: String,
    pub slokit_version: String,
    pub policy: String,
    pub monitor: String,
    pub monitor_note: Option<String>,
    pub params: TwoLevelParams,
    pub targets: Vec<u32>,
    pub deadlines_ms: BTreeMap<u32, f64>,
    pub function_cpus: Vec<usize>,
    pub agent_cpus: Vec<usize>,
    pub agent_priority: u8,
    /// Whether `SCHED_IDLE` spinners kept the agent CPUs out of idle.
    #[serde(default)]
    pub agent_idle_poll: bool,
    /// How early the credit timer was armed (the rest spun), µs.
    #[serde(default)]
    pub agent_timer_lead_us: u64,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub exit_reason: String,
    pub requests_seen: u64,
    pub requests_completed: u64,
    pub requests_abandoned: u64,
    pub requests_active_at_exit: u64,
    pub events: u64,
    pub event_drops: u64,
    #[serde(default)]
    pub untracked_threads: u64,
    #[serde(default)]
    pub ring_nudges: u64,
    pub transitions: TransitionCounts,
    pub demotions: u64,
    pub promotions: u64,
    pub overload_demotions: u64,
    pub fifo_threads: u64,
    pub setattr_calls: u64,
    pub vanished_threads: u64,
    pub arrival_to_fifo_us: LatencyStats,
    /// Arrival event → the agent processing it (the wake-up part of
    /// `arrival_to_fifo_us`), every request; the baselines drain on the
    /// 100 ms tick, so for them it is that delay.
    #[serde(default)]
    pub arrival_to_agent_us: LatencyStats,
    pub exhausted_to_demoted_us: LatencyStats,
    #[serde(default)]
    pub las: Option<LasMetrics>,
    #[serde(default)]
    pub las_params: Option<LasParams>,
    #[serde(default)]
    pub repark_us: LatencyStats,
    pub timeline: Vec<TimelinePoint>,
    pub notes: Vec<String>,
}

impl AgentMetrics {
    /// Reads metrics JSON, refusing other schema versions.
    pub fn from_json(text: &str) -> Result<Self, SchedError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| SchedError::Config(format!("agent metrics are not JSON: {e}")))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(METRICS_SCHEMA) => {}
            other => {
                return Err(SchedError::Config(format!(
                    "agent metrics schema is {other:?}, this slokit reads `{METRICS_SCHEMA}`"
                )))
            }
        }
        serde_json::from_value(v)
            .map_err(|e| SchedError::Config(format!("invalid agent metrics: {e}")))
    }

    /// Writes the JSON to `path` (via a temporary file and rename).
    pub fn write(&self, path: &Path) -> Result<(), SchedError> {
        let text = serde_json::to_string_pretty(self).expect("metrics serialise");
        let tmp = path.with_extension("json.tmp");
        let io = |source| SchedError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The one-line summary printed at exit.
    pub fn summary_line(&self) -> String {
        let las = match &self.las {
            Some(l) => format!(
                " las: thresholds={:?}µs reached={:?} not-parked={} idle-demotions={} \
                 promotions={} repark p50/p99={:.0}/{:.0}µs",
                l.thresholds_us
                    .iter()
                    .map(|t| t.round() as u64)
                    .collect::<Vec<_>>(),
                l.reached,
                l.arrivals_not_parked,
                l.idle_demotions,
                l.promotions,
                self.repark_us.summary.p50,
                self.repark_us.summary.p99,
            ),
            None => String::new(),
        };
        format!(
            "slokit sched: {} via {} for {:.1}s ({}): requests={} completed={} demotions={} \
             promotions={} overload={} drops={} nudges={} vanished={} arrival→fifo p50/p99/max={:.0}/{:.0}/{:.0}µs \
             exhausted→demoted p50/p99/max={:.0}/{:.0}/{:.0}µs{}",
            self.policy,
            self.monitor,
            self.duration_s,
            self.exit_reason,
            self.requests_seen,
            self.requests_completed,
            self.demotions,
            self.promotions,
            self.overload_demotions,
            self.event_drops,
            self.ring_nudges,
            self.vanished_threads,
            self.arrival_to_fifo_us.summary.p50,
            self.arrival_to_fifo_us.summary.p99,
            self.arrival_to_fifo_us.summary.max,
            self.exhausted_to_demoted_us.summary.p50,
            self.exhausted_to_demoted_us.summary.p99,
            self.exhausted_to_demoted_us.summary.max,
            las,
        )
    }
}
