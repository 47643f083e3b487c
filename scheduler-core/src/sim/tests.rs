//! Tests of the simulator: hand-computed schedules for each policy,
//! queueing-theory validation on long runs, cross-policy properties
//! (SRPT is the bound, two-level's limits are fifo and ps) and
//! conservation.

use serde_json::Value;
use slokit_model::{Arrival, ScheduledFunction};

use super::theory::*;
use super::*;

// ---------- helpers ----------

/// A schedule from (arrival ms, function index, service ms) triples.
fn hand(functions: &[(&str, Option<f64>)], arrivals: &[(f64, u32, f64)]) -> Schedule {
    let mut extras = Vec::new();
    let arrivals = arrivals
        .iter()
        .map(|&(at_ms, function, service_ms)| {
            Arrival::with_extra(
                (at_ms * 1e6) as u64,
                function,
                &mut extras,
                None,
                Some(service_ms * 1e3),
            )
        })
        .collect();
    Schedule {
        source: "hand".into(),
        seed: 0,
        functions: functions
            .iter()
            .map(|(label, deadline_ms)| ScheduledFunction {
                label: label.to_string(),
                function: label.to_string(),
                params: Value::Null,
                service_us: None,
                deadline_us: deadline_ms.map(|d| d * 1e3),
            })
            .collect(),
        arrivals,
        extras,
    }
}

/// Per-job response times in ms, straight from the engine.
fn responses_ms(schedule: &Schedule, cfg: &SimConfig) -> Vec<f64> {
    let services = ServiceModel::new().draw(schedule, cfg.seed).unwrap();
    let jobs = Jobs::new(schedule, &services);
    let params = TwoLevelParams {
        cpus: cfg.cpus,
        ..cfg.params
    };
    let run = run_engine(&jobs, cfg, &params);
    run.completion_ns
        .iter()
        .zip(&jobs.arrival_ns)
        .map(|(c, a)| (c - a) / 1e6)
        .collect()
}

fn fixed_slice(ms: f64) -> TwoLevelParams {
    TwoLevelParams {
        initial_slice_ms: ms,
        min_slice_ms: ms,
        max_slice_ms: ms,
        ..TwoLevelParams::default()
    }
}

fn cfg(cpus: u32, policy: SimPolicy, params: TwoLevelParams) -> SimConfig {
    SimConfig {
        params,
        ..SimConfig::new(cpus, policy)
    }
}

/// `n` Poisson arrivals of one function `x` with sampler `service`, loading
/// `cpus` CPUs to `rho`.
fn poisson(n: usize, cpus: u32, rho: f64, service: &str, seed: u64) -> (Schedule, ServiceModel) {
    let model = ServiceModel::new().with("x", service.parse().unwrap());
    let entries = PoissonMix::parse_weights("x:1").unwrap();
    let rate = PoissonMix::rate_for_load(&entries, &model, cpus, rho).unwrap();
    let mix = PoissonMix {
        entries,
        rate_per_s: rate,
        horizon: Horizon::Arrivals(n),
        seed,
    };
    (mix.schedule().unwrap(), model)
}

/// Exact mean response in µs, from the engine.
fn mean_response_us(schedule: &Schedule, model: &ServiceModel, cfg: &SimConfig) -> f64 {
    let services = model.draw(schedule, cfg.seed).unwrap();
    let jobs = Jobs::new(schedule, &services);
    let params = TwoLevelParams {
        cpus: cfg.cpus,
        ..cfg.params
    };
    let run = run_engine(&jobs, cfg, &params);
    let n = jobs.len() as f64;
    let t: f64 = run
        .completion_ns
        .iter()
        .zip(&jobs.arrival_ns)
        .map(|(c, a)| c - a)
        .sum();
    t / n / 1e3
}

/// Equal to within a nanosecond.
fn assert_ms(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    let err = got / want - 1.0;
    assert!(
        err.abs() <= tol,
        "{what}: simulated {got:.3}, theory {want:.3} ({:+.2} %, tolerance {:.1} %)",
        err * 100.0,
        tol * 100.0
    );
    eprintln!(
        "{what}: simulated {got:.3}, theory {want:.3} ({:+.2} %)",
        err * 100.0
    );
}

// ---------- policies on hand-computed schedules ----------

#[test]
fn fifo_runs_to_completion_in_arrival_order() {
    let s = hand(
        &[("x", None)],
        &[(0.0, 0, 10.0), (1.0, 0, 2.0), (2.0, 0, 1.0)],
    );
    assert_ms(
        &responses_ms(&s, &SimConfig::new(1, SimPolicy::Fifo)),
        &[10.0, 11.0, 11.0],
    );
    assert_ms(
        &responses_ms(&s, &SimConfig::new(2, SimPolicy::Fifo)),
        &[10.0, 2.0, 2.0],
    );
}

#[test]
fn ps_shares_the_cpus_equally() {
    // One CPU: A (4 ms) alone for 1 ms, then A and B (2 ms) at half speed:
    // B done at 5 ms, A has 1 ms left at 5 ms → done at 6 ms.
    let s = hand(&[("x", None)], &[(0.0, 0, 4.0), (1.0, 0, 2.0)]);
    assert_ms(
        &responses_ms(&s, &SimConfig::new(1, SimPolicy::Ps)),
        &[6.0, 4.0],
    );
    // Two CPUs, three equal jobs at 0: each at 2/3 speed → all done at 1.5×.
    let s = hand(
        &[("x", None)],
        &[(0.0, 0, 2.0), (0.0, 0, 2.0), (0.0, 0, 2.0)],
    );
    assert_ms(
        &responses_ms(&s, &SimConfig::new(2, SimPolicy::Ps)),
        &[3.0, 3.0, 3.0],
    );
}

#[test]
fn srpt_preempts_for_shorter_remaining_work() {
    let s = hand(
        &[("x", None)],
        &[(0.0, 0, 10.0), (1.0, 0, 2.0), (2.0, 0, 5.0)],
    );
    // B preempts A at 1 (9 left > 2) and ends at 3; C (5) has less left
    // than A (9), so C runs 3..8, then A 8..17.
    assert_ms(
        &responses_ms(&s, &SimConfig::new(1, SimPolicy::Srpt)),
        &[17.0, 2.0, 6.0],
    );
    // Two CPUs: A and B run; at 2 the two least-remaining are B (1) and
    // C (5), so A (8 left) is preempted until B ends at 3: A ends at 11.
    assert_ms(
        &responses_ms(&s, &SimConfig::new(2, SimPolicy::Srpt)),
        &[11.0, 2.0, 5.0],
    );
}

#[test]
fn two_level_demotes_after_spending_the_slice() {
    let p = fixed_slice(10.0);
    // Alone: 10 ms in FIFO, then alone in the fair class.
    let s = hand(&[("x", None)], &[(0.0, 0, 25.0)]);
    assert_ms(&responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, p)), &[25.0]);
    // A holds 0..10, B waits, embarks at 10 and finishes at 15; A (15 left)
    // runs in the fair class from 15 to 30.
    let s = hand(&[("x", None)], &[(0.0, 0, 25.0), (1.0, 0, 5.0)]);
    assert_ms(
        &responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, p)),
        &[30.0, 14.0],
    );
}

#[test]
fn two_level_overload_rule_demotes_long_waiters_without_a_slice() {
    let p = fixed_slice(10.0);
    let arrivals = [
        (0.0, 0, 100.0),
        (0.001, 0, 100.0),
        (0.002, 0, 100.0),
        (0.003, 0, 1.0),
        (0.004, 0, 1.0),
    ];
    let s = hand(&[("x", None)], &arrivals);
    // A, B, C hold 0..10, 10..20, 20..30; D embarks at 30 (waited 29.997 ms
    // < 3 S) and ends at 31; E has waited 3 S at 30.004 and is demoted.
    // From 31 the fair class (A, B, C with 90 ms, E with 1 ms) shares the
    // CPU four ways: E ends at 35.
    let r = responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, p));
    assert_ms(&r[3..], &[31.0 - 0.003, 35.0 - 0.004]);
    // Without the rule E would embark at 31 and end at 32.
    let lenient = TwoLevelParams {
        overload_factor: 1e6,
        ..p
    };
    let r = responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, lenient));
    assert_ms(&r[4..], &[32.0 - 0.004]);
}

#[test]
fn two_level_promotes_an_imminent_request_once() {
    // L (100 ms, no deadline) at 0; X (30 ms, deadline 50 ms) at 1.
    // L holds 0..10; X holds 10..20 and is demoted with 20 ms left; both
    // share the CPU from 20. X's deadline (51) is one S away at 41, when it
    // has 9.5 ms left: promoted with a fresh 10 ms credit, it ends at 50.5.
    let s = hand(
        &[("long", None), ("x", Some(50.0))],
        &[(0.0, 0, 100.0), (1.0, 1, 30.0)],
    );
    let p = fixed_slice(10.0);
    let r = responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, p));
    assert_ms(&r, &[130.0, 49.5]);
    // Without Imminent X stays in the fair class and ends at 60.
    let off = TwoLevelParams {
        imminent_factor: 0.0,
        ..p
    };
    assert_ms(
        &responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, off)),
        &[130.0, 59.0],
    );
}

#[test]
fn two_level_does_not_promote_past_deadlines() {
    // X's deadline (5 ms) passes while it is still in FIFO; after demotion
    // at 10 it must not be promoted again.
    let s = hand(
        &[("long", None), ("x", Some(5.0))],
        &[(0.0, 1, 30.0), (0.0, 0, 30.0)],
    );
    let p = fixed_slice(10.0);
    let r = responses_ms(&s, &cfg(1, SimPolicy::TwoLevel, p));
    let off = responses_ms(
        &s,
        &cfg(
            1,
            SimPolicy::TwoLevel,
            TwoLevelParams {
                imminent_factor: 0.0,
                ..p
            },
        ),
    );
    assert_eq!(r, off);
}

#[test]
fn two_level_slice_follows_the_controller() {
    // Arrivals every 2 ms on 4 CPUs: S = 2 ms × 4 = 8 ms once the window
    // has two arrivals; the timeline records it.
    let arrivals: Vec<(f64, u32, f64)> = (0..50).map(|i| (i as f64 * 2.0, 0, 1.0)).collect();
    let s = hand(&[("x", None)], &arrivals);
    let c = SimConfig {
        timeline_interval_ms: 10.0,
        ..SimConfig::new(4, SimPolicy::TwoLevel)
    };
    let out = simulate(&s, &ServiceModel::new(), &c).unwrap();
    assert_eq!(out.timeline[0].slice_ms, 20.0, "initial S");
    let last = out.timeline.last().unwrap();
    assert!((last.slice_ms - 8.0).abs() < 1e-9, "{last:?}");
    assert!(out.timeline.windows(2).all(|w| w[0].t_s <= w[1].t_s));
    assert!(out.timeline.iter().all(|p| p.fifo_holders <= 4));
}

/// las with fixed thresholds (µs of attained service).
fn las(cpus: u32, thresholds_us: &[f64]) -> SimConfig {
    SimConfig {
        las: LasParams {
            thresholds_us: thresholds_us.to_vec(),
            ..LasParams::default()
        },
        ..SimConfig::new(cpus, SimPolicy::Las)
    }
}

#[test]
fn las_a_new_short_job_preempts_a_long_one_at_once() {
    // One CPU, levels end at 1 ms and 10 ms of CPU. L (100 ms) at 0 is in
    // the fair class by 10 ms; S (0.5 ms) at 50 starts at the top
    // priority, preempts it and ends 0.5 ms after its arrival.
    let c = las(1, &[1000.0, 10_000.0]);
    let s = hand(&[("x", None)], &[(0.0, 0, 100.0), (50.0, 0, 0.5)]);
    assert_ms(&responses_ms(&s, &c), &[100.5, 0.5]);
    // Also while L is still at the second level (prio 39 < 40).
    let s = hand(&[("x", None)], &[(0.0, 0, 100.0), (5.0, 0, 0.5)]);
    assert_ms(&responses_ms(&s, &c), &[100.5, 0.5]);
}

#[test]
fn las_runs_the_least_attained_first_and_a_dropped_thread_keeps_the_cpu() {
    // One CPU, thresholds 1 ms and 10 ms. A (20 ms) at 0: 0..1 at prio 40,
    // then 39. B (5 ms) at 2 preempts it (40) and drops to 39 at 3 — to
    // the head of prio 39, before A (Linux puts a lowered thread at the
    // front). C (0.5 ms) at 3.2 preempts B: 3.2..3.7. B resumes first:
    // 3.7..7.5. A runs from 7.5 (2 ms attained), leaves prio 39 at 10 ms
    // attained and ends at 25.5.
    let s = hand(
        &[("x", None)],
        &[(0.0, 0, 20.0), (2.0, 0, 5.0), (3.2, 0, 0.5)],
    );
    assert_ms(
        &responses_ms(&s, &las(1, &[1000.0, 10_000.0])),
        &[25.5, 5.5, 0.5],
    );
}

#[test]
fn las_promotes_a_fair_class_request_near_its_deadline_once() {
    // One CPU, thresholds 1 ms and 3 ms (last quantum 2 ms). X (10 ms,
    // deadline 20 ms) and L (100 ms) at 0. X 0..1 (prio 40), L 1..2 (40),
    // L at the head of 39 2..4, X 4..6 (39); from 6 both share the fair
    // class. At 18 (2 ms before X's deadline) X has 1 ms left and is
    // promoted to prio 39 for one quantum: it ends at 19. Without the
    // promotion it ends at 20.
    let s = hand(
        &[("x", Some(20.0)), ("long", None)],
        &[(0.0, 0, 10.0), (0.0, 1, 100.0)],
    );
    let mut c = las(1, &[1000.0, 3000.0]);
    assert_ms(&responses_ms(&s, &c), &[19.0, 110.0]);
    let out = simulate(&s, &ServiceModel::new(), &c).unwrap();
    assert_eq!(out.policy_report.unwrap().las.unwrap().promotions, 1);
    c.las.promote = false;
    assert_ms(&responses_ms(&s, &c), &[20.0, 110.0]);
}

#[test]
fn las_thresholds_come_from_the_known_service_times_by_label() {
    // auth p99 0.4 ms → 0.6 ms (× margin 1.5); video, the longest class,
    // runs in the fair class; "missing" is not in the schedule and is
    // ignored (else its 5 µs would be the first class).
    let s = hand(
        &[("auth", None), ("video", None)],
        &[(0.0, 0, 0.3), (0.0, 1, 30.0)],
    );
    let c = SimConfig {
        services_us: [("auth", 400.0), ("video", 40_000.0), ("missing", 5.0)]
            .into_iter()
            .map(|(l, us)| (l.to_string(), us))
            .collect(),
        ..SimConfig::new(1, SimPolicy::Las)
    };
    let out = simulate(&s, &ServiceModel::new(), &c).unwrap();
    let m = out.policy_report.unwrap().las.unwrap();
    assert_eq!(m.thresholds_us, [600.0]);
    assert_eq!(
        m.threshold_source,
        Some(crate::policy::las::ThresholdSource::Profiles)
    );
    assert!(
        out.record.notes.iter().any(|n| n.contains("Profiles")),
        "{:?}",
        out.record.notes
    );
    // Without them las starts from its fallback thresholds.
    let out = simulate(&s, &ServiceModel::new(), &SimConfig::new(1, SimPolicy::Las)).unwrap();
    let m = out.policy_report.unwrap().las.unwrap();
    assert_eq!(m.thresholds_us, [1500.0, 15_000.0, 150_000.0]);
}

#[test]
fn two_level_is_rt_throttled_by_the_default_kernel_budget() {
    // One 2 s request with a huge slice on one CPU: SCHED_FIFO throughout,
    // paused 50 ms in each of the two periods (950 ms per 1000 ms).
    let huge = fixed_slice(1e7);
    let s = hand(&[("x", None)], &[(0.0, 0, 2000.0)]);
    let c = cfg(1, SimPolicy::TwoLevel, huge);
    assert_ms(&responses_ms(&s, &c), &[2100.0]);
    let out = simulate(&s, &ServiceModel::new(), &c).unwrap();
    assert!(
        out.record
            .notes
            .iter()
            .any(|n| n.contains("throttled in 2 periods")),
        "{:?}",
        out.record.notes
    );
    // rt_runtime ≥ rt_period: no throttling.
    let off = SimConfig {
        rt_runtime_us: 1_000_000,
        ..c
    };
    assert_ms(&responses_ms(&s, &off), &[2000.0]);
    let out = simulate(&s, &ServiceModel::new(), &off).unwrap();
    assert!(out
        .record
        .notes
        .iter()
        .any(|n| n.contains("RT throttling: off")));
}

// ---------- queueing theory (long runs) ----------
//
// Each case is checked within 2 % of its closed form, evaluated at the
// run's realised arrival rate and service moments (the standard control
// for input noise: it removes the load fluctuation that 1/(1 − ρ)
// amplifies, and leaves the queueing itself to be right). Run lengths are
// chosen so that the standard deviation of the relative error over
// independent seeds is ≤ 0.5 % (measured by `seed_spread`, below, and
// recorded in docs/simulator.md): 2 % is ≥ 4σ, so a correct model passes
// for any seed while a modelling error of a few percent fails.
//
// The inputs come from a SplitMix64 generator here, not from the ChaCha
// samplers, because unoptimised ChaCha dominates debug-build test time; the
// production samplers are checked against their moments in `service.rs`
// and the Poisson generator against its rate in `mix.rs`, and
// `public_api_reproduces_mm1` runs the whole production path.

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast unoptimised, and
/// plenty for drawing test inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }

    fn draw(&mut self, s: &ServiceSampler) -> f64 {
        match *s {
            ServiceSampler::Deterministic { us } => us,
            ServiceSampler::Exponential { mean_us } => self.exp(mean_us),
            ServiceSampler::LogNormal { mean_us, sigma } => {
                let z = (-2.0 * self.unit().ln()).sqrt()
                    * (2.0 * std::f64::consts::PI * self.unit()).cos();
                (mean_us.ln() - sigma * sigma / 2.0 + sigma * z).exp()
            }
            ServiceSampler::Bimodal {
                short_us,
                long_us,
                p_long,
            } => {
                if self.unit() <= p_long {
                    long_us
                } else {
                    short_us
                }
            }
            ServiceSampler::Histogram(_) => unreachable!("parametric cases only"),
        }
    }
}

/// A validation case: Poisson arrivals on `cpus` CPUs at utilisation
/// `rho`, service `spec`, `n` jobs.
struct Case {
    name: &'static str,
    policy: SimPolicy,
    cpus: u32,
    rho: f64,
    spec: &'static str,
    n: usize,
}

const CASES: [Case; 6] = [
    Case {
        name: "M/M/1 fifo E[W] (Erlang C, c=1)",
        policy: SimPolicy::Fifo,
        cpus: 1,
        rho: 0.5,
        spec: "exp:1ms",
        n: 600_000,
    },
    Case {
        name: "M/M/4 fifo E[W] (Erlang C)",
        policy: SimPolicy::Fifo,
        cpus: 4,
        rho: 0.7,
        spec: "exp:1ms",
        n: 3_200_000,
    },
    Case {
        name: "M/D/1 fifo E[W] (P-K)",
        policy: SimPolicy::Fifo,
        cpus: 1,
        rho: 0.7,
        spec: "det:1ms",
        n: 1_000_000,
    },
    Case {
        name: "M/LN/1 fifo E[W] (P-K, lognormal σ=0.75)",
        policy: SimPolicy::Fifo,
        cpus: 1,
        rho: 0.5,
        spec: "lognormal:1ms:0.75",
        n: 900_000,
    },
    Case {
        name: "M/G/1-PS ps E[T] (bimodal, SCV 2.6)",
        policy: SimPolicy::Ps,
        cpus: 1,
        rho: 0.7,
        spec: "bimodal:0.5ms:5.5ms:0.1",
        n: 1_400_000,
    },
    Case {
        name: "M/G/4-PS ps E[T] (lognormal σ=1)",
        policy: SimPolicy::Ps,
        cpus: 4,
        rho: 0.7,
        spec: "lognormal:1ms:1",
        n: 400_000,
    },
];

impl Case {
    /// (simulated, theory) in µs for one seed.
    fn run(&self, seed: u64) -> (f64, f64) {
        let sampler: ServiceSampler = self.spec.parse().unwrap();
        let mean_iat_ns = sampler.mean_us() * 1e3 / (self.rho * self.cpus as f64);
        let mut rng = SplitMix(seed);
        let mut jobs = Jobs {
            arrival_ns: Vec::with_capacity(self.n),
            arrival_raw_ns: Vec::with_capacity(self.n),
            service_ns: Vec::with_capacity(self.n),
            deadline_ns: vec![f64::INFINITY; self.n],
            function: vec![0; self.n],
            fn_deadline_ns: vec![None],
            fn_labels: vec!["x".into()],
        };
        let mut t = 0.0;
        for _ in 0..self.n {
            t += rng.exp(mean_iat_ns);
            jobs.arrival_ns.push(t);
            jobs.arrival_raw_ns.push(t as u64);
            jobs.service_ns.push(rng.draw(&sampler) * 1e3);
        }
        let run = run_engine(
            &jobs,
            &SimConfig::new(self.cpus, self.policy),
            &TwoLevelParams::default(),
        );
        let n = self.n as f64;
        let mean_t: f64 = run
            .completion_ns
            .iter()
            .zip(&jobs.arrival_ns)
            .map(|(c, a)| (c - a) / 1e3)
            .sum::<f64>()
            / n;
        // Realised inputs, µs.
        let es = jobs.service_ns.iter().sum::<f64>() / n / 1e3;
        let es2 = jobs.service_ns.iter().map(|s| s * s).sum::<f64>() / n / 1e6;
        let lambda = n / (t / 1e3);
        match (self.policy, &sampler) {
            (SimPolicy::Ps, _) => (mean_t, mgc_ps_mean_response(lambda, es, self.cpus)),
            (_, ServiceSampler::Exponential { .. }) => {
                (mean_t - es, mmc_mean_wait(lambda, es, self.cpus))
            }
            _ => {
                assert_eq!(self.cpus, 1, "P-K is for one CPU");
                (mean_t - es, mg1_mean_wait(lambda, es, es2))
            }
        }
    }

    fn check(&self, seed: u64) {
        let (got, want) = self.run(seed);
        assert_close(self.name, got, want, 0.02);
    }
}

/// The production path (Poisson mix, ChaCha service draws, `simulate`,
/// the run record's histogram) on M/M/1 at ρ = 0.5: mean response
/// E[S]/(1 − ρ) = 2 ms within 2 % (σ ≈ 0.5 % at this length).
#[test]
fn public_api_reproduces_mm1() {
    let (s, m) = poisson(300_000, 1, 0.5, "exp:1ms", 10);
    for p in [SimPolicy::Fifo, SimPolicy::Ps] {
        let out = simulate(&s, &m, &SimConfig::new(1, p)).unwrap();
        let want = mg1_ps_mean_response(0.5 / 1000.0, 1000.0);
        assert_close(
            &format!("M/M/1 {p} E[T] (exact)"),
            out.totals.mean_response_us,
            want,
            0.02,
        );
        let hist_mean = out.record.functions[0].response_us.mean;
        assert_close(&format!("M/M/1 {p} E[T] (record)"), hist_mean, want, 0.02);
    }
}

#[test]
fn fifo_matches_mm1_waiting_time() {
    CASES[0].check(11);
}

#[test]
fn fifo_matches_mmc_erlang_c() {
    CASES[1].check(12);
}

#[test]
fn fifo_matches_pollaczek_khinchine_deterministic() {
    CASES[2].check(13);
}

#[test]
fn fifo_matches_pollaczek_khinchine_lognormal() {
    CASES[3].check(14);
}

#[test]
fn ps_matches_mg1_ps_insensitivity() {
    CASES[4].check(15);
}

#[test]
fn ps_matches_mgc_ps_on_four_cpus() {
    CASES[5].check(16);
}

/// Prints the spread of every validation case over 40 independent seeds
/// (`cargo test --release -p slokit-sched seed_spread -- --ignored --nocapture`).
#[test]
#[ignore = "measures the statistical spread behind the 2 % tolerance; slow in debug"]
fn seed_spread() {
    for case in &CASES {
        let errs: Vec<f64> = (100..140)
            .map(|seed| {
                let (got, want) = case.run(seed);
                got / want - 1.0
            })
            .collect();
        let k = errs.len() as f64;
        let mean = errs.iter().sum::<f64>() / k;
        let sd = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
        let worst = errs.iter().fold(0.0f64, |w, e| w.max(e.abs()));
        eprintln!(
            "| {} | {} | mean error {:+.2} % | sd {:.2} % | worst {:.2} % |",
            case.name,
            case.n,
            mean * 100.0,
            sd * 100.0,
            worst * 100.0
        );
    }
}

// ---------- properties across policies ----------

fn mixed(n: usize, cpus: u32, rho: f64, seed: u64) -> (Schedule, ServiceModel) {
    let mut entries = PoissonMix::parse_weights("auth:0.9,video:0.1").unwrap();
    entries[0].deadline_us = Some(5_000.0);
    entries[1].deadline_us = Some(400_000.0);
    let model = ServiceModel::new()
        .with("auth", "exp:0.5ms".parse().unwrap())
        .with("video", "lognormal:60ms:0.5".parse().unwrap());
    let rate = PoissonMix::rate_for_load(&entries, &model, cpus, rho).unwrap();
    let mix = PoissonMix {
        entries,
        rate_per_s: rate,
        horizon: Horizon::Arrivals(n),
        seed,
    };
    (mix.schedule().unwrap(), model)
}

#[test]
fn srpt_has_the_least_mean_response() {
    for (cpus, rho) in [(1, 0.8), (4, 0.9)] {
        let (s, m) = mixed(30_000, cpus, rho, 21);
        let srpt = mean_response_us(&s, &m, &SimConfig::new(cpus, SimPolicy::Srpt));
        for p in [SimPolicy::Fifo, SimPolicy::Ps, SimPolicy::TwoLevel] {
            let other = mean_response_us(&s, &m, &SimConfig::new(cpus, p));
            assert!(
                srpt <= other,
                "c={cpus}: srpt {srpt:.0} µs > {p} {other:.0} µs"
            );
        }
    }
}

#[test]
fn two_level_with_a_huge_slice_is_fifo() {
    let huge = TwoLevelParams {
        min_slice_ms: 1e9,
        max_slice_ms: 1e9,
        initial_slice_ms: 1e9,
        ..TwoLevelParams::default()
    };
    for cpus in [1, 4] {
        let (s, m) = mixed(20_000, cpus, 0.8, 22);
        let fifo = simulate(&s, &m, &SimConfig::new(cpus, SimPolicy::Fifo)).unwrap();
        // The fifo reference has no RT throttling; the kernel model must
        // not throttle either for the two to be the same policy.
        let unthrottled = SimConfig {
            rt_runtime_us: DEFAULT_RT_PERIOD_US,
            ..cfg(cpus, SimPolicy::TwoLevel, huge)
        };
        let two = simulate(&s, &m, &unthrottled).unwrap();
        assert_eq!(fifo.record.functions, two.record.functions, "c={cpus}");
        assert_eq!(fifo.totals.mean_response_us, two.totals.mean_response_us);
    }
}

#[test]
fn two_level_with_a_tiny_slice_treats_long_jobs_like_ps() {
    let tiny = TwoLevelParams {
        min_slice_ms: 0.001,
        max_slice_ms: 0.001,
        initial_slice_ms: 0.001,
        ..TwoLevelParams::default()
    };
    let (s, m) = mixed(40_000, 2, 0.8, 23);
    let video = |out: &SimOutput| {
        out.record
            .functions
            .iter()
            .find(|f| f.label == "video")
            .unwrap()
            .slowdown
            .unwrap()
            .mean
    };
    let ps = video(&simulate(&s, &m, &SimConfig::new(2, SimPolicy::Ps)).unwrap());
    let two = video(&simulate(&s, &m, &cfg(2, SimPolicy::TwoLevel, tiny)).unwrap());
    let fifo = video(&simulate(&s, &m, &SimConfig::new(2, SimPolicy::Fifo)).unwrap());
    assert!(
        (two / ps - 1.0).abs() < 0.03,
        "video slowdown: two-level(S=1µs) {two:.3} vs ps {ps:.3}"
    );
    assert!(
        (fifo / ps - 1.0).abs() > 0.1,
        "fifo {fifo:.3} should differ from ps {ps:.3}"
    );
}

#[test]
fn every_policy_completes_every_arrival_and_conserves_work() {
    let (s, m) = mixed(20_000, 3, 0.95, 24);
    for p in SimPolicy::ALL {
        let out = simulate(&s, &m, &SimConfig::new(3, p)).unwrap();
        let t = out.totals;
        assert_eq!(t.completed, t.arrivals, "{p}");
        let counted: u64 = out.record.functions.iter().map(|f| f.invocations).sum();
        assert_eq!(counted, s.arrivals.len() as u64, "{p}");
        assert!(
            (t.busy_us / t.work_us - 1.0).abs() < 1e-9,
            "{p}: handed out {} µs of CPU for {} µs of work",
            t.busy_us,
            t.work_us
        );
        // Nobody finishes faster than alone on a CPU.
        let services = m.draw(&s, 0).unwrap();
        let jobs = Jobs::new(&s, &services);
        let params = TwoLevelParams {
            cpus: 3,
            ..TwoLevelParams::default()
        };
        let run = run_engine(&jobs, &SimConfig::new(3, p), &params);
        for i in 0..jobs.len() {
            let r = run.completion_ns[i] - jobs.arrival_ns[i];
            // (1e-3 ns absorbs the rounding of arrival + service − arrival.)
            assert!(
                r >= jobs.service_ns[i] - 1e-3,
                "{p}: job {i}: response {r} ns < service {} ns",
                jobs.service_ns[i]
            );
        }
    }
}

#[test]
fn results_are_deterministic_for_a_seed() {
    let (s, _) = mixed(5_000, 2, 0.8, 25);
    let m = ServiceModel::new().with_fallback("exp:2ms".parse().unwrap());
    for p in SimPolicy::ALL {
        let c = |seed| SimConfig {
            seed,
            ..SimConfig::new(2, p)
        };
        let a = simulate(&s, &m, &c(1)).unwrap();
        let b = simulate(&s, &m, &c(1)).unwrap();
        let other = simulate(&s, &m, &c(2)).unwrap();
        assert_eq!(a.record, b.record, "{p}");
        assert_eq!(a.timeline, b.timeline, "{p}");
        assert_ne!(a.record.functions, other.record.functions, "{p}");
    }
}

#[test]
fn record_has_the_run_schema() {
    let (s, m) = mixed(2_000, 2, 0.7, 26);
    for p in SimPolicy::ALL {
        let out = simulate(&s, &m, &SimConfig::new(2, p)).unwrap();
        let r = &out.record;
        assert_eq!(r.kind, slokit_model::record::RunKind::Simulated);
        assert_eq!(r.policy.as_deref(), Some(p.name()));
        assert_eq!(r.monitor, None);
        assert_eq!(r.source, s.source);
        let auth = &r.functions[0];
        assert_eq!(auth.label, "auth");
        assert!(auth.slo.is_some() && auth.slowdown.is_some() && auth.exec_us.is_some());
        assert_eq!(auth.response_us, auth.response_uncorrected_us);
        let back = RunRecord::from_json(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!((back.kind, &back.policy), (r.kind, &r.policy));
        assert_eq!(back.functions.len(), r.functions.len());
        assert_eq!(out.timeline.is_empty(), !p.has_timeline(), "{p}");
    }
}

#[test]
fn policy_names_round_trip() {
    for p in SimPolicy::ALL {
        assert_eq!(p.name().parse::<SimPolicy>().unwrap(), p);
    }
    let e = "lottery".parse::<SimPolicy>().unwrap_err().to_string();
    assert!(e.contains("lottery") && e.contains("two-level"), "{e}");
}

#[test]
fn errors_name_the_fix() {
    let (s, _) = mixed(10, 1, 0.5, 27);
    assert!(s.functions[0].label == "auth");
    let e = simulate(
        &s,
        &ServiceModel::new(),
        &SimConfig::new(1, SimPolicy::Fifo),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--service auth="), "{e}");
    let m = ServiceModel::new().with_fallback("exp:1ms".parse().unwrap());
    let e = simulate(&s, &m, &SimConfig::new(0, SimPolicy::Fifo)).unwrap_err();
    assert!(matches!(e, SimError::NoCpus));
}

// ---------- the kernel model against the reference engines ----------

/// Runs `policy`'s object over the kernel model without throttling.
fn kernel_completions(jobs: &Jobs, cpus: u32, policy: crate::policy::Policy) -> Vec<f64> {
    let clock = crate::clock::MockClock::new(0);
    let pc = crate::policy::PolicyConfig::default();
    let mut object = crate::policy::build(policy, &pc, clock.clone());
    let kc = kernel::KernelConfig::new(cpus, 1, 1, 1e15);
    kernel::run(jobs, &kc, object.as_mut(), &clock)
        .run
        .completion_ns
}

#[test]
fn the_kernel_model_with_the_cfs_object_is_ps() {
    // cfs leaves every thread in the fair class: the model is then PS.
    for cpus in [1, 3] {
        let (s, m) = mixed(5_000, cpus, 0.9, 31);
        let jobs = Jobs::new(&s, &m.draw(&s, 0).unwrap());
        let ps = ps::run(&jobs, cpus).completion_ns;
        let k = kernel_completions(&jobs, cpus, crate::policy::Policy::Cfs);
        for (i, (a, b)) in ps.iter().zip(&k).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                "c={cpus} job {i}: ps {a}, kernel {b}"
            );
        }
    }
}

#[test]
fn the_kernel_model_with_the_fifo_object_is_fifo() {
    // fifo puts every worker at one SCHED_FIFO priority: M/G/c FCFS,
    // bit for bit (no throttling).
    for cpus in [1, 4] {
        let (s, m) = mixed(5_000, cpus, 0.9, 32);
        let jobs = Jobs::new(&s, &m.draw(&s, 0).unwrap());
        let fifo = fifo::run(&jobs, cpus).completion_ns;
        let k = kernel_completions(&jobs, cpus, crate::policy::Policy::Fifo);
        assert_eq!(fifo, k, "c={cpus}");
    }
}

#[test]
fn las_on_64_cpus_completes_every_arrival_and_conserves_work() {
    let (s, m) = mixed(20_000, 64, 0.9, 33);
    let out = simulate(&s, &m, &SimConfig::new(64, SimPolicy::Las)).unwrap();
    let t = out.totals;
    assert_eq!(t.completed, t.arrivals);
    assert_eq!(t.arrivals, 20_000);
    assert!(
        (t.busy_us / t.work_us - 1.0).abs() < 1e-9,
        "handed out {} µs of CPU for {} µs of work",
        t.busy_us,
        t.work_us
    );
    let m = out.policy_report.unwrap().las.unwrap();
    assert_eq!(m.reached[0], 20_000, "every request starts at the top");
    assert_eq!(m.arrivals_not_parked, 0);
    assert!(m.threshold_updates > 0, "adaptive thresholds: {m:?}");
    // Short auth requests (p99 of an exponential 0.5 ms ≈ 2.3 ms) finish
    // at the top levels, ahead of video: most auth responses are their
    // service time.
    let auth = &out.record.functions[0];
    assert!(auth.slowdown.unwrap().p50 < 1.5, "{:?}", auth.slowdown);
    assert!(
        out.timeline.iter().all(|p| p.slice_ms > 0.0),
        "las reports its first threshold"
    );
}

#[test]
fn transport_adds_one_draw_to_every_response_time() {
    let (s, m) = mixed(3_000, 2, 0.7, 34);
    for p in SimPolicy::ALL {
        let base = simulate(&s, &m, &SimConfig::new(2, p)).unwrap();
        let det = SimConfig {
            transport: Some("det:100us".parse().unwrap()),
            ..SimConfig::new(2, p)
        };
        let out = simulate(&s, &m, &det).unwrap();
        let diff = out.totals.mean_response_us - base.totals.mean_response_us;
        assert!((diff - 100.0).abs() < 1e-6, "{p}: {diff}");
        assert_eq!(out.totals.makespan_s, base.totals.makespan_s, "{p}");
        assert!(
            out.record.notes.iter().any(|n| n.contains("det:100")),
            "{p}"
        );
        // A random one: independent draws, fixed by the seed.
        let exp = SimConfig {
            transport: Some("exp:50us".parse().unwrap()),
            seed: 3,
            ..SimConfig::new(2, p)
        };
        let a = simulate(&s, &m, &exp).unwrap();
        let b = simulate(&s, &m, &exp).unwrap();
        assert_eq!(a.record, b.record, "{p}");
        let base = simulate(
            &s,
            &m,
            &SimConfig {
                transport: None,
                ..exp.clone()
            },
        )
        .unwrap();
        let diff = a.totals.mean_response_us - base.totals.mean_response_us;
        assert!((diff - 50.0).abs() < 5.0, "{p}: mean transport {diff} µs");
    }
}
