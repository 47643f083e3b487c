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

/// One invocation to send: 16 bytes, so millions of arrivals fit in tens of
/// MB. Per-invocation parameters
/// and service times (trace replays) live beside the list in
/// [`Schedule::extras`], referenced by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Intended send time, nanoseconds after the start of the run.
    pub at_ns: u64,
    /// Index into [`Schedule::functions`].
    pub function: u32,
    /// Index into [`Schedule::extras`], or [`NO_EXTRA`].
    extra: u32,
}

const NO_EXTRA: u32 = u32::MAX;

/// What one invocation carries beyond its function's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrivalExtra {
    /// Parameters for this invocation only (for example `{"ms": 12.5}` for
    /// a `spin` drawn from a trace's durations).
    pub params: Option<Value>,
    /// Known service time of this invocation in µs (trace durations).
    pub service_us: Option<f64>,
}

impl Arrival {
    /// An invocation of `function` with its function's parameters.
    pub const fn new(at_ns: u64, function: u32) -> Arrival {
        Arrival {
            at_ns,
            function,
            extra: NO_EXTRA,
        }
    }

    /// An invocation with its own parameters and/or service time, recorded
    /// in `extras` (the future [`Schedule::extras`]).
    pub fn with_extra(
        at_ns: u64,
        function: u32,
        extras: &mut Vec<ArrivalExtra>,
        params: Option<Value>,
        service_us: Option<f64>,
    ) -> Arrival {
        if params.is_none() && service_us.is_none() {
            return Arrival::new(at_ns, function);
        }
        let extra = u32::try_from(extras.len())
            .ok()
            .filter(|&i| i != NO_EXTRA)
            .expect("fewer than 2^32 - 1 invocations carry their own parameters");
        extras.push(ArrivalExtra { params, service_us });
        Arrival {
            at_ns,
            function,
            extra,
        }
    }
}

/// A complete, ordered arrival schedule.
///
/// Serialised (`--dump-schedule`) with each arrival's own `params` and
/// `service_us` inline: `{"at_ns": 5, "function": 0, "params": {"ms": 2}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "wire::Schedule")]
pub struct Schedule {
    /// What produced it, for reports ("poisson 200/s", "azure2019 minutes 540-570 ×0.1").
    pub source: String,
    /// Seed of the generator (the same seed gives the same schedule).
    pub seed: u64,
    pub functions: Vec<ScheduledFunction>,
    /// Sorted by `at_ns`.
    pub arrivals: Vec<Arrival>,
    /// Per-invocation parameters and service times, indexed by arrivals.
    pub extras: Vec<ArrivalExtra>,
}

impl Schedule {
    /// Length of the schedule: the last intended send time, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.arrivals.last().map_or(0.0, |a| a.at_ns as f64 / 1e9)
    }

    fn extra(&self, arrival: &Arrival) -> Option<&ArrivalExtra> {
        self.extras.get(arrival.extra as usize)
    }

    /// The parameters `arrival` carries itself, if any.
    pub fn own_params(&self, arrival: &Arrival) -> Option<&Value> {
        self.extra(arrival).and_then(|e| e.params.as_ref())
    }

    /// The service time `arrival` carries itself, if any (µs).
    pub fn own_service_us(&self, arrival: &Arrival) -> Option<f64> {
        self.extra(arrival).and_then(|e| e.service_us)
    }

    /// The expected service time of `arrival` in µs: its own, else its
    /// function's.
    pub fn service_us(&self, arrival: &Arrival) -> Option<f64> {
        self.own_service_us(arrival)
            .or(self.functions[arrival.function as usize].service_us)
    }

    /// The parameters to send for `arrival`.
    pub fn params<'a>(&'a self, arrival: &'a Arrival) -> &'a Value {
        self.own_params(arrival)
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
            if a.extra != NO_EXTRA && a.extra as usize >= self.extras.len() {
                return Err(format!(
                    "arrival {i} names extra {} of {}",
                    a.extra,
                    self.extras.len()
                ));
            }
            last = a.at_ns;
        }
        Ok(())
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Arrivals<'a>(&'a Schedule);
        impl Serialize for Arrivals<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let s = self.0;
                serializer.collect_seq(s.arrivals.iter().map(|a| wire::ArrivalRef {
                    at_ns: a.at_ns,
                    function: a.function,
                    params: s.own_params(a),
                    service_us: s.own_service_us(a),
                }))
            }
        }
        let mut st = serializer.serialize_struct("Schedule", 4)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("seed", &self.seed)?;
        st.serialize_field("functions", &self.functions)?;
        st.serialize_field("arrivals", &Arrivals(self))?;
        st.end()
    }
}

/// The serialised form: arrivals with their own parameters inline.
mod wire {
    use super::{ArrivalExtra, ScheduledFunction};
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Serialize)]
    pub(super) struct ArrivalRef<'a> {
        pub at_ns: u64,
        pub function: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub params: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub service_us: Option<f64>,
    }

    #[derive(Deserialize)]
    pub(super) struct Arrival {
        at_ns: u64,
        function: u32,
        #[serde(default)]
        params: Option<Value>,
        #[serde(default)]
        service_us: Option<f64>,
    }

    #[derive(Deserialize)]
    pub(super) struct Schedule {
        source: String,
        seed: u64,
        functions: Vec<ScheduledFunction>,
        arrivals: Vec<Arrival>,
    }

    impl TryFrom<Schedule> for super::Schedule {
        type Error = String;

        fn try_from(w: Schedule) -> Result<Self, String> {
            let mut extras: Vec<ArrivalExtra> = Vec::new();
            let arrivals = w
                .arrivals
                .into_iter()
                .map(|a| {
                    super::Arrival::with_extra(
                        a.at_ns,
                        a.function,
                        &mut extras,
                        a.params,
                        a.service_us,
                    )
                })
                .collect();
            let s = super::Schedule {
                source: w.source,
                seed: w.seed,
                functions: w.functions,
                arrivals,
                extras,
            };
            s.validate()?;
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two() -> Schedule {
        let mut extras = Vec::new();
        let arrivals = vec![
            Arrival::new(0, 0),
            Arrival::with_extra(5, 0, &mut extras, Some(json!({"ms": 2})), Some(2000.0)),
        ];
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
            arrivals,
            extras,
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
        let text = serde_json::to_string(&s).unwrap();
        // Each arrival's own parameters are inline, as users read them.
        assert!(
            text.contains(r#"{"at_ns":5,"function":0,"params":{"ms":2},"service_us":2000.0}"#),
            "{text}"
        );
        assert!(text.contains(r#"{"at_ns":0,"function":0}"#), "{text}");
        let back: Schedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn reading_a_schedule_validates_it() {
        let text =
            r#"{"source":"x","seed":1,"functions":[],"arrivals":[{"at_ns":1,"function":0}]}"#;
        let err = serde_json::from_str::<Schedule>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("function index 0 of 0"), "{err}");
    }

    #[test]
    fn an_arrival_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Arrival>(), 16);
    }
}
