//! Run records: what every invocation experienced, aggregated per function,
//! and the versioned JSON schema (`slokit.run/1`) that the load generator
//! writes for real runs and the simulator writes for modelled ones, so
//! reports put both side by side.
//!
//! Aggregation is HdrHistogram-based (no per-sample vectors on long runs).
//! A failed or timed-out invocation is an SLO miss: it counts in
//! `invocations`, in the count of its kind and in the attainment
//! denominator, never dropped. It is never a latency: response-time,
//! execution-time and slowdown figures come from successful (2xx) replies
//! only, so a run whose sends all fail fast cannot look fast.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::environment::Environment;

/// Schema id of [`RunRecord`] JSON files.
pub const RUN_SCHEMA: &str = "slokit.run/1";

/// Highest trackable latency: one hour, in µs.
const MAX_US: u64 = 3_600_000_000;
/// Slowdown is stored in thousandths; highest trackable: 10^6 ×.
const SLOWDOWN_SCALE: f64 = 1000.0;
const MAX_SLOWDOWN_MILLI: u64 = 1_000_000_000;

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A 2xx reply.
    Ok,
    /// A reply with another status.
    HttpError(u16),
    /// No reply within the timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable), or the
    /// send was dropped by a cap before it was made.
    ConnectError,
    /// The connection was made but the exchange failed: the server closed
    /// or reset it before a complete reply, or replied with bytes that are
    /// not HTTP.
    ProtocolError,
}

/// One finished invocation, as the recorder sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub outcome: Outcome,
    /// Intended send time → last byte of the reply (or → giving up), µs.
    pub response_us: u64,
    /// Actual send time → last byte (coordinated-omission uncorrected), µs.
    pub response_uncorrected_us: u64,
    /// Execution time the server reported, µs.
    pub exec_us: Option<u64>,
    /// Known service time of the invocation, µs (profile or trace).
    pub service_us: Option<f64>,
}

/// Percentile summary of a histogram, in the histogram's unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub stddev: f64,
}

impl Percentiles {
    /// Summarises `h`, dividing every value by `scale`.
    pub fn of(h: &Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / scale;
        Percentiles {
            count: h.len(),
            min: h.min() as f64 / scale,
            mean: h.mean() / scale,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / scale,
            stddev: h.stdev() / scale,
        }
    }
}

/// Slowdown (response / service time) figures of one function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowdownStats {
    /// Over successful invocations with a known service time.
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    /// Share of *all* invocations with slowdown ≤ 2 (failures count as > 2).
    pub share_le_2: f64,
}

/// SLO figures of one function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SloStats {
    pub deadline_us: f64,
    /// Invocations that succeeded within the deadline.
    pub met: u64,
    /// `met / invocations`; failures and timeouts are misses.
    pub attainment: f64,
}

/// Everything measured for one function in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionStats {
    pub label: String,
    pub function: String,
    pub invocations: u64,
    pub ok: u64,
    pub http_errors: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    /// Connections that closed or answered garbage (records written before
    /// this field existed counted them in `connect_errors`).
    #[serde(default)]
    pub protocol_errors: u64,
    /// Response time from the intended send time of the successful
    /// invocations, µs (`count` = `ok`; all zero when none succeeded).
    pub response_us: Percentiles,
    /// Response time from the actual send time of the successful
    /// invocations, µs.
    pub response_uncorrected_us: Percentiles,
    /// Server-reported execution time of the successful invocations, µs
    /// (absent when the target does not report it).
    pub exec_us: Option<Percentiles>,
    pub slowdown: Option<SlowdownStats>,
    pub slo: Option<SloStats>,
    /// The response-time histogram (µs) of the successful invocations,
    /// HdrHistogram V2 + deflate, base64, so reports can draw the whole CDF.
    pub response_histogram: String,
}

impl FunctionStats {
    /// Invocations that did not succeed, of every kind (each an SLO miss).
    pub fn failures(&self) -> u64 {
        self.http_errors + self.timeouts + self.connect_errors + self.protocol_errors
    }

    /// The response-time percentiles, or `None` when no invocation
    /// succeeded (there is then no latency to report, only failures).
    pub fn response(&self) -> Option<&Percentiles> {
        (self.response_us.count > 0).then_some(&self.response_us)
    }

    /// The failures by kind, e.g. `3 connect errors, 1 timeout` (empty
    /// when there were none).
    pub fn failure_kinds(&self) -> String {
        let kinds = [
            (self.connect_errors, "connect error", "connect errors"),
            (self.protocol_errors, "protocol error", "protocol errors"),
            (self.timeouts, "timeout", "timeouts"),
            (self.http_errors, "HTTP error", "HTTP errors"),
        ];
        kinds
            .iter()
            .filter(|(n, ..)| *n > 0)
            .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Accumulates the samples of one function. Cheap to record into (no
/// allocation); merge per-worker recorders at the end.
#[derive(Debug, Clone)]
pub struct FunctionRecorder {
    label: String,
    function: String,
    deadline_us: Option<f64>,
    response: Histogram<u64>,
    response_uncorrected: Histogram<u64>,
    exec: Histogram<u64>,
    slowdown_milli: Histogram<u64>,
    invocations: u64,
    ok: u64,
    http_errors: u64,
    timeouts: u64,
    connect_errors: u64,
    protocol_errors: u64,
    slo_met: u64,
    slowdown_le_2: u64,
}

fn histogram(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).expect("static histogram bounds are valid")
}

impl FunctionRecorder {
    /// A recorder for `label` (running host function `function`), judging
    /// SLO attainment against `deadline_us` when given.
    pub fn new(
        label: impl Into<String>,
        function: impl Into<String>,
        deadline_us: Option<f64>,
    ) -> Self {
        FunctionRecorder {
            label: label.into(),
            function: function.into(),
            deadline_us,
            response: histogram(MAX_US),
            response_uncorrected: histogram(MAX_US),
            exec: histogram(MAX_US),
            slowdown_milli: histogram(MAX_SLOWDOWN_MILLI),
            invocations: 0,
            ok: 0,
            http_errors: 0,
            timeouts: 0,
            connect_errors: 0,
            protocol_errors: 0,
            slo_met: 0,
            slowdown_le_2: 0,
        }
    }

    /// Records one invocation: a failure only counts (by kind); the times
    /// of a success go into the histograms.
    pub fn record(&mut self, s: &Sample) {
        self.invocations += 1;
        match s.outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::HttpError(_) => self.http_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::ConnectError => self.connect_errors += 1,
            Outcome::ProtocolError => self.protocol_errors += 1,
        }
        if s.outcome != Outcome::Ok {
            return;
        }
        self.response.saturating_record(s.response_us.max(1));
        self.response_uncorrected
            .saturating_record(s.response_uncorrected_us.max(1));
        if let Some(e) = s.exec_us {
            self.exec.saturating_record(e.max(1));
        }
        if let Some(d) = self.deadline_us {
            if (s.response_us as f64) <= d {
                self.slo_met += 1;
            }
        }
        if let Some(service) = s.service_us.filter(|v| *v > 0.0) {
            let slowdown = s.response_us as f64 / service;
            if slowdown <= 2.0 {
                self.slowdown_le_2 += 1;
            }
            self.slowdown_milli
                .saturating_record(((slowdown * SLOWDOWN_SCALE) as u64).max(1));
        }
    }

    /// Adds another recorder's samples (same function) into this one.
    pub fn merge(&mut self, other: &FunctionRecorder) {
        self.response.add(&other.response).expect("same bounds");
        self.response_uncorrected
            .add(&other.response_uncorrected)
            .expect("same bounds");
        self.exec.add(&other.exec).expect("same bounds");
        self.slowdown_milli
            .add(&other.slowdown_milli)
            .expect("same bounds");
        self.invocations += other.invocations;
        self.ok += other.ok;
        self.http_errors += other.http_errors;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        self.protocol_errors += other.protocol_errors;
        self.slo_met += other.slo_met;
        self.slowdown_le_2 += other.slowdown_le_2;
    }

    /// Number of invocations recorded so far.
    pub fn invocations(&self) -> u64 {
        self.invocations
    }

    /// The response-time histogram (µs from the intended send time).
    pub fn response_histogram(&self) -> &Histogram<u64> {
        &self.response
    }

    /// The summary written into run records.
    pub fn stats(&self) -> FunctionStats {
        let n = self.invocations.max(1) as f64;
        let slowdown = (!self.slowdown_milli.is_empty()).then(|| {
            let p = Percentiles::of(&self.slowdown_milli, SLOWDOWN_SCALE);
            SlowdownStats {
                mean: p.mean,
                p50: p.p50,
                p99: p.p99,
                share_le_2: self.slowdown_le_2 as f64 / n,
            }
        });
        FunctionStats {
            label: self.label.clone(),
            function: self.function.clone(),
            invocations: self.invocations,
            ok: self.ok,
            http_errors: self.http_errors,
            timeouts: self.timeouts,
            connect_errors: self.connect_errors,
            protocol_errors: self.protocol_errors,
            response_us: Percentiles::of(&self.response, 1.0),
            response_uncorrected_us: Percentiles::of(&self.response_uncorrected, 1.0),
            exec_us: (!self.exec.is_empty()).then(|| Percentiles::of(&self.exec, 1.0)),
            slowdown,
            slo: self.deadline_us.map(|deadline_us| SloStats {
                deadline_us,
                met: self.slo_met,
                attainment: if self.invocations == 0 {
                    0.0
                } else {
                    self.slo_met as f64 / n
                },
            }),
            response_histogram: encode_histogram(&self.response),
        }
    }
}

/// Serialises a histogram as base64 of HdrHistogram's V2 + deflate format
/// (readable by every HdrHistogram implementation).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serialising into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Reads a histogram written by [`encode_histogram`].
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("histogram is not valid base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

/// Send accuracy of a load generator run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendAccuracy {
    pub target_rate_per_s: f64,
    pub achieved_rate_per_s: f64,
    /// Actual − intended send time, µs.
    pub lateness_us: Percentiles,
    /// Sends a `--max-inflight` cap held back.
    pub delayed_by_cap: u64,
    /// Sends a `--max-inflight` cap dropped (counted as misses).
    pub dropped_by_cap: u64,
}

/// One point of a scheduling agent's timeline, for the report's "S and
/// queue length over time" plot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the agent started.
    pub t_s: f64,
    /// The two-level policy's FIFO slice S, ms (0 for other policies).
    pub slice_ms: f64,
    /// Requests waiting for a FIFO slot (Initiated).
    pub queue_len: u32,
    /// Requests holding SCHED_FIFO (Embarked or Imminent).
    pub fifo_holders: u32,
    /// Requests demoted to SCHED_OTHER and still running.
    pub demoted: u32,
}

/// Whether a record was measured on hosts or computed by the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Measured,
    Simulated,
}

/// One run: a schedule replayed under one policy (or one simulation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Always [`RUN_SCHEMA`].
    pub schema: String,
    pub slokit_version: String,
    pub kind: RunKind,
    /// Scheduling policy (`cfs`, `fifo`, `two-level`, `ps`, `srpt`, ...), if any.
    pub policy: Option<String>,
    /// Monitor that observed the requests (`ebpf`, `notify`), if any.
    pub monitor: Option<String>,
    /// Where the schedule came from and its seed.
    pub source: String,
    pub seed: u64,
    pub environment: Environment,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub functions: Vec<FunctionStats>,
    pub send: Option<SendAccuracy>,
    /// Warnings and remarks worth reading next to the figures.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl RunRecord {
    /// Reads a record, refusing other schema versions with a clear message.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(RUN_SCHEMA) => {}
            Some(other) => {
                return Err(format!(
                    "schema is `{other}`, this slokit reads `{RUN_SCHEMA}`"
                ))
            }
            None => return Err("missing field `schema`".into()),
        }
        serde_json::from_value(v).map_err(|e| format!("invalid run record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(response_us: u64, service_us: f64) -> Sample {
        Sample {
            outcome: Outcome::Ok,
            response_us,
            response_uncorrected_us: response_us,
            exec_us: Some(service_us as u64),
            service_us: Some(service_us),
        }
    }

    #[test]
    fn failures_count_as_slo_misses_and_are_not_dropped() {
        let mut r = FunctionRecorder::new("auth", "auth", Some(1000.0));
        r.record(&ok(500, 400.0));
        r.record(&ok(1500, 400.0));
        r.record(&Sample {
            outcome: Outcome::Timeout,
            ..ok(5000, 400.0)
        });
        r.record(&Sample {
            outcome: Outcome::HttpError(500),
            ..ok(10, 400.0)
        });
        let s = r.stats();
        assert_eq!(
            (s.invocations, s.ok, s.timeouts, s.http_errors),
            (4, 2, 1, 1)
        );
        let slo = s.slo.unwrap();
        assert_eq!(slo.met, 1);
        assert!((slo.attainment - 0.25).abs() < 1e-12);
        let sd = s.slowdown.unwrap();
        assert!((sd.share_le_2 - 0.25).abs() < 1e-12, "{sd:?}");
    }

    #[test]
    fn failures_are_counted_by_kind_and_are_never_a_latency() {
        let mut r = FunctionRecorder::new("auth", "auth", Some(1000.0));
        r.record(&ok(800, 400.0));
        for (outcome, response_us) in [
            (Outcome::ConnectError, 130),
            (Outcome::ProtocolError, 90),
            (Outcome::Timeout, 30_000_000),
            (Outcome::HttpError(503), 20),
        ] {
            r.record(&Sample {
                outcome,
                ..ok(response_us, 400.0)
            });
        }
        let s = r.stats();
        assert_eq!(s.invocations, 5);
        assert_eq!(
            (
                s.ok,
                s.connect_errors,
                s.protocol_errors,
                s.timeouts,
                s.http_errors
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(s.failures(), 4);
        assert_eq!(
            s.failure_kinds(),
            "1 connect error, 1 protocol error, 1 timeout, 1 HTTP error"
        );
        // Only the success is a latency.
        for p in [s.response_us, s.response_uncorrected_us, s.exec_us.unwrap()] {
            assert_eq!(p.count, 1, "{p:?}");
        }
        assert!(
            (799.0..=801.0).contains(&s.response_us.min),
            "{:?}",
            s.response_us
        );
        assert!(
            (799.0..=801.0).contains(&s.response_us.max),
            "{:?}",
            s.response_us
        );
        assert_eq!(decode_histogram(&s.response_histogram).unwrap().len(), 1);
        assert!((s.slo.unwrap().attainment - 0.2).abs() < 1e-12);

        let mut none = FunctionRecorder::new("auth", "auth", None);
        for _ in 0..133 {
            none.record(&Sample {
                outcome: Outcome::ConnectError,
                ..ok(132, 400.0)
            });
        }
        let s = none.stats();
        assert_eq!((s.invocations, s.connect_errors), (133, 133));
        assert!(s.response().is_none(), "{:?}", s.response_us);
        assert_eq!(s.response_us.p50, 0.0);
        assert!(s.exec_us.is_none() && s.slowdown.is_none());
    }

    #[test]
    fn records_without_protocol_errors_still_read() {
        let mut r = FunctionRecorder::new("x", "spin", None);
        r.record(&ok(10, 5.0));
        let mut v = serde_json::to_value(r.stats()).unwrap();
        v.as_object_mut().unwrap().remove("protocol_errors");
        let s: FunctionStats = serde_json::from_value(v).unwrap();
        assert_eq!(s.protocol_errors, 0);
    }

    #[test]
    fn slowdown_is_response_over_service() {
        let mut r = FunctionRecorder::new("spin", "spin", None);
        for _ in 0..100 {
            r.record(&ok(3000, 1000.0));
        }
        let sd = r.stats().slowdown.unwrap();
        assert!((sd.mean - 3.0).abs() < 0.01, "{sd:?}");
        assert_eq!(sd.share_le_2, 0.0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = FunctionRecorder::new("x", "spin", Some(100.0));
        let mut b = FunctionRecorder::new("x", "spin", Some(100.0));
        let mut all = FunctionRecorder::new("x", "spin", Some(100.0));
        for i in 1..200u64 {
            let s = ok(i, 50.0);
            if i % 2 == 0 {
                a.record(&s)
            } else {
                b.record(&s)
            }
            all.record(&s);
        }
        a.merge(&b);
        assert_eq!(a.stats(), all.stats());
    }

    #[test]
    fn histogram_survives_encoding() {
        let mut r = FunctionRecorder::new("x", "spin", None);
        for i in 1..1000u64 {
            r.record(&ok(i * 7, 1.0));
        }
        let h = decode_histogram(&r.stats().response_histogram).unwrap();
        assert_eq!(h.len(), 999);
        assert_eq!(
            h.value_at_quantile(0.5),
            r.response_histogram().value_at_quantile(0.5)
        );
    }

    #[test]
    fn run_record_rejects_other_schema_versions() {
        let e = RunRecord::from_json(r#"{"schema": "slokit.run/9"}"#).unwrap_err();
        assert!(e.contains("slokit.run/9"), "{e}");
    }
}
