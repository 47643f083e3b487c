//! Arrival schedules: the precomputed list of (time, function, params) that
//! the load generator replays against real hosts and the simulator replays
//! against its model. Both read the same type, so "the same schedule under
//! every policy" is a value, not a promise.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A function as it appears in a schedule: a report label, the function the
/// host runs for it, and its default parameters. Trace replays map many
/// labels (`azure-1a2b3c4d`) onto one host function (`spin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledFunction {
    /// Name in reports (unique within a schedule).
    pub label: String,
    /// Function the host runs (`auth`, `aes`, `video`, `spin`, ...).
    pub function: String,
    /// Parameters sent when an arrival carries none of its own.
    #[serde(default)]
    pub params: Value,
    /// Expected service time in µs when known up front (from a profile);
    /// arrivals may override it.
    #[serde(default)]
    pub service_us: Option<f64>,
    /// Deadline in µs from the profile, when there is one.
    #[serde(default)]
    pub deadline_us: Option<f64>,
}

/// One invocation to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// Intended send time, nanoseconds after the start of the run.
    pub at_ns: u64,
    /// Index into [`Schedule::functions`].
    pub function: u32,
    /// Parameters for this invocation only (for example `{"ms": 12.5}` for
    /// a `spin` drawn from a trace's durations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Known service time of this invocation in µs (trace durations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_us: Option<f64>,
}

/// A complete, ordered arrival schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// What produced it, for reports ("poisson 200/s", "azure2019 minutes 540-570 ×0.1").
    pub source: String,
    /// Seed of the generator (the same seed gives the same schedule).
    pub seed: u64,
    pub functions: Vec<ScheduledFunction>,
    /// Sorted by `at_ns`.
    pub arrivals: Vec<Arrival>,
}

impl Schedule {
    /// Length of the schedule: the last intended send time, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.arrivals.last().map_or(0.0, |a| a.at_ns as f64 / 1e9)
    }

    /// The expected service time of `arrival` in µs: its own, else its
    /// function's.
    pub fn service_us(&self, arrival: &Arrival) -> Option<f64> {
        arrival
            .service_us
            .or(self.functions[arrival.function as usize].service_us)
    }

    /// The parameters to send for `arrival`.
    pub fn params<'a>(&'a self, arrival: &'a Arrival) -> &'a Value {
        arrival
            .params
            .as_ref()
            .unwrap_or(&self.functions[arrival.function as usize].params)
    }

    /// Checks the invariants: arrivals sorted, function indices in range,
    /// labels unique.
    pub fn validate(&self) -> Result<(), String> {
        let mut labels = std::collections::HashSet::new();
        for f in &self.functions {
            if !labels.insert(&f.label) {
                return Err(format!("function label `{}` appears twice", f.label));
            }
        }
        let mut last = 0;
        for (i, a) in self.arrivals.iter().enumerate() {
            if a.at_ns < last {
                return Err(format!(
                    "arrival {i} at {} ns is before its predecessor",
                    a.at_ns
                ));
            }
            if a.function as usize >= self.functions.len() {
                return Err(format!(
                    "arrival {i} names function index {} of {}",
                    a.function,
                    self.functions.len()
                ));
            }
            last = a.at_ns;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two() -> Schedule {
        Schedule {
            source: "test".into(),
            seed: 1,
            functions: vec![ScheduledFunction {
                label: "spin".into(),
                function: "spin".into(),
                params: json!({"ms": 1}),
                service_us: Some(1000.0),
                deadline_us: None,
            }],
            arrivals: vec![
                Arrival {
                    at_ns: 0,
                    function: 0,
                    params: None,
                    service_us: None,
                },
                Arrival {
                    at_ns: 5,
                    function: 0,
                    params: Some(json!({"ms": 2})),
                    service_us: Some(2000.0),
                },
            ],
        }
    }

    #[test]
    fn arrival_overrides_function_defaults() {
        let s = two();
        assert_eq!(s.service_us(&s.arrivals[0]), Some(1000.0));
        assert_eq!(s.service_us(&s.arrivals[1]), Some(2000.0));
        assert_eq!(s.params(&s.arrivals[1]), &json!({"ms": 2}));
    }

    #[test]
    fn validate_catches_unsorted_and_out_of_range() {
        let mut s = two();
        assert!(s.validate().is_ok());
        s.arrivals[1].at_ns = 0;
        s.arrivals[0].at_ns = 9;
        assert!(s.validate().unwrap_err().contains("before"));
        let mut s = two();
        s.arrivals[1].function = 3;
        assert!(s.validate().unwrap_err().contains("index 3"));
    }

    #[test]
    fn json_round_trip() {
        let s = two();
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
