//! The two-level policy's parameters and its controller — the rule that
//! sets the FIFO slice S from the arrival rate (seed: "S = IAT × c", from
//! the M/G/c intuition ρ = λ / (cμ); SFS uses the same window of the last
//! 100 arrivals). Shared by the real agent and the simulator so both run
//! the same policy.

use serde::{Deserialize, Serialize};

use crate::policy::LasParams;

/// Every constant of the two-level policy. Defaults follow the seed and SFS.
/// Also the two-level flags of `slokit sched` (flattened there) and the
/// `[two_level]` table of an experiment: defined and validated once, here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TwoLevelParams {
    /// Number of function CPUs c: at most c requests hold SCHED_FIFO (the
    /// agent's `--cpus`, default the number of function CPUs).
    #[arg(skip = TwoLevelParams::default().cpus)]
    pub cpus: u32,
    /// Arrivals in the IAT window of the slice controller (seed and SFS: 100).
    #[arg(long, default_value_t = TwoLevelParams::default().iat_window)]
    pub iat_window: usize,
    /// S before the window has two arrivals, ms (seed and SFS: 20).
    #[arg(long, default_value_t = TwoLevelParams::default().initial_slice_ms)]
    pub initial_slice_ms: f64,
    /// Lower clamp of S, ms.
    #[arg(long, default_value_t = TwoLevelParams::default().min_slice_ms)]
    pub min_slice_ms: f64,
    /// Upper clamp of S, ms.
    #[arg(long, default_value_t = TwoLevelParams::default().max_slice_ms)]
    pub max_slice_ms: f64,
    /// A request waiting longer than this many slices for a FIFO slot is
    /// demoted without running in FIFO (SFS's overload rule: 3).
    #[arg(long, default_value_t = TwoLevelParams::default().overload_factor)]
    pub overload_factor: f64,
    /// A demoted request whose deadline is at most this many slices away
    /// (and not yet passed) is promoted to FIFO once more ("Imminent").
    #[arg(long, default_value_t = TwoLevelParams::default().imminent_factor)]
    pub imminent_factor: f64,
    /// SCHED_FIFO priority of embarked requests (two-level) and of every
    /// worker (fifo), 1..=99.
    #[arg(long, default_value_t = TwoLevelParams::default().fifo_priority)]
    pub fifo_priority: u8,
}

impl Default for TwoLevelParams {
    fn default() -> Self {
        TwoLevelParams {
            cpus: 1,
            iat_window: 100,
            initial_slice_ms: 20.0,
            min_slice_ms: 1.0,
            max_slice_ms: 1000.0,
            overload_factor: 3.0,
            imminent_factor: 1.0,
            fifo_priority: 10,
        }
    }
}

impl TwoLevelParams {
    /// Checks ranges; the message names the field and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpus == 0 {
            return Err("cpus must be at least 1".into());
        }
        if self.iat_window < 2 {
            return Err(format!(
                "iat_window must be at least 2, got {}",
                self.iat_window
            ));
        }
        let positive = [
            ("initial_slice_ms", self.initial_slice_ms),
            ("min_slice_ms", self.min_slice_ms),
            ("max_slice_ms", self.max_slice_ms),
            ("overload_factor", self.overload_factor),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        if self.min_slice_ms > self.max_slice_ms {
            return Err(format!(
                "min_slice_ms ({}) exceeds max_slice_ms ({})",
                self.min_slice_ms, self.max_slice_ms
            ));
        }
        if !(self.imminent_factor.is_finite() && self.imminent_factor >= 0.0) {
            return Err(format!(
                "imminent_factor must be ≥ 0, got {}",
                self.imminent_factor
            ));
        }
        if !(1..=99).contains(&self.fifo_priority) {
            return Err(format!(
                "fifo_priority must be in 1..=99, got {}",
                self.fifo_priority
            ));
        }
        Ok(())
    }

    /// One line listing every constant, printed when an agent starts.
    pub fn describe(&self) -> String {
        format!(
            "c={} window={} S0={}ms S∈[{}, {}]ms overload={}S imminent≤{}S fifo_prio={}",
            self.cpus,
            self.iat_window,
            self.initial_slice_ms,
            self.min_slice_ms,
            self.max_slice_ms,
            self.overload_factor,
            self.imminent_factor,
            self.fifo_priority
        )
    }
}

/// Every policy constant in one file, as `slokit sched --params FILE` reads
/// it and `slokit compare` writes it: the `[two_level]` and `[las]` tables
/// of an experiment (other keys of an experiment file are ignored, so one
/// may be passed as it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyParams {
    pub two_level: TwoLevelParams,
    pub las: LasParams,
}

impl PolicyParams {
    /// Parses the TOML text; the error names the table and field.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The TOML text [`PolicyParams::from_toml`] reads back.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("plain data serialises")
    }
}

/// The controller: S = mean IAT over the last `iat_window` arrivals × c,
/// clamped, starting at `initial_slice_ms`.
#[derive(Debug, Clone)]
pub struct SliceController {
    params: TwoLevelParams,
    /// Arrival times (ns) in the window, oldest first.
    window: std::collections::VecDeque<u64>,
}

impl SliceController {
    pub fn new(params: TwoLevelParams) -> Self {
        SliceController {
            params,
            window: std::collections::VecDeque::with_capacity(params.iat_window + 1),
        }
    }

    /// Records an arrival at `now_ns` (monotonic, non-decreasing).
    pub fn on_arrival(&mut self, now_ns: u64) {
        self.window.push_back(now_ns);
        if self.window.len() > self.params.iat_window {
            self.window.pop_front();
        }
    }

    /// Mean inter-arrival time over the window in ns, once there are two
    /// arrivals.
    pub fn mean_iat_ns(&self) -> Option<f64> {
        let (first, last) = (self.window.front()?, self.window.back()?);
        let gaps = self.window.len().checked_sub(1).filter(|g| *g > 0)?;
        Some((last - first) as f64 / gaps as f64)
    }

    /// The current slice S in ns.
    pub fn slice_ns(&self) -> u64 {
        let p = &self.params;
        let ms = match self.mean_iat_ns() {
            None => p.initial_slice_ms,
            Some(iat) => (iat / 1e6 * p.cpus as f64).clamp(p.min_slice_ms, p.max_slice_ms),
        };
        (ms * 1e6) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_initial_slice() {
        let mut c = SliceController::new(TwoLevelParams::default());
        assert_eq!(c.slice_ns(), 20_000_000);
        c.on_arrival(5);
        assert_eq!(c.slice_ns(), 20_000_000, "one arrival has no gap yet");
    }

    #[test]
    fn slice_is_mean_iat_times_cpus() {
        let mut c = SliceController::new(TwoLevelParams {
            cpus: 4,
            ..Default::default()
        });
        for i in 0..10u64 {
            c.on_arrival(i * 5_000_000); // every 5 ms
        }
        assert_eq!(c.slice_ns(), 20_000_000);
    }

    #[test]
    fn window_forgets_old_arrivals() {
        let mut c = SliceController::new(TwoLevelParams {
            iat_window: 3,
            ..Default::default()
        });
        for t in [0u64, 100_000_000, 102_000_000, 104_000_000] {
            c.on_arrival(t);
        }
        assert_eq!(c.mean_iat_ns(), Some(2_000_000.0));
    }

    #[test]
    fn slice_is_clamped() {
        let p = TwoLevelParams::default();
        let mut c = SliceController::new(p);
        c.on_arrival(0);
        c.on_arrival(10); // 10 ns gap
        assert_eq!(c.slice_ns(), 1_000_000);
        let mut c = SliceController::new(p);
        c.on_arrival(0);
        c.on_arrival(10_000_000_000); // 10 s gap
        assert_eq!(c.slice_ns(), 1_000_000_000);
    }

    #[test]
    fn policy_params_round_trip_and_read_an_experiment_s_tables() {
        let p = PolicyParams {
            two_level: TwoLevelParams {
                max_slice_ms: 2.0,
                ..Default::default()
            },
            las: LasParams {
                top_priority: 30,
                ..Default::default()
            },
        };
        assert_eq!(PolicyParams::from_toml(&p.to_toml()).unwrap(), p);
        let exp = "seed = 1\n[two_level]\nmax_slice_ms = 2.0\n[las]\ntop_priority = 30\n";
        assert_eq!(PolicyParams::from_toml(exp).unwrap(), p);
        let bad = PolicyParams::from_toml("[las]\ntop_prio = 30\n").unwrap_err();
        assert!(bad.contains("top_prio"), "{bad}");
    }

    #[test]
    fn validate_names_the_field() {
        let bad = TwoLevelParams {
            min_slice_ms: 5.0,
            max_slice_ms: 1.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("min_slice_ms"));
        assert!(TwoLevelParams::default().validate().is_ok());
    }
}
