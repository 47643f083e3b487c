//! Closed-form queueing results the simulator is validated against
//! (Kleinrock, *Queueing Systems* vol. 1; Harchol-Balter, *Performance
//! Modeling and Design of Computer Systems*, ch. 14, 22–23). All functions
//! take an arrival rate and service moments in one consistent time unit
//! and return a time in that unit.

/// Erlang C: the probability that an arrival to an M/M/c queue with
/// offered load `a` = λ/μ must wait. Computed through the Erlang B
/// recursion B(k) = a·B(k−1) / (k + a·B(k−1)), which never overflows, and
/// C = B / (1 − ρ(1 − B)) with ρ = a/c.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    let rho = a / c as f64;
    assert!(rho < 1.0, "Erlang C needs ρ < 1, got {rho}");
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    b / (1.0 - rho * (1.0 - b))
}

/// Mean waiting time (before service) of M/M/c FCFS: C(c, a) / (cμ − λ).
pub fn mmc_mean_wait(lambda: f64, mean_service: f64, c: u32) -> f64 {
    let mu = 1.0 / mean_service;
    erlang_c(c, lambda / mu) / (c as f64 * mu - lambda)
}

/// Mean waiting time of M/G/1 FCFS (Pollaczek–Khinchine):
/// λ·E[S²] / (2(1 − ρ)), ρ = λ·E[S].
pub fn mg1_mean_wait(lambda: f64, mean_service: f64, second_moment: f64) -> f64 {
    let rho = lambda * mean_service;
    assert!(rho < 1.0, "P-K needs ρ < 1, got {rho}");
    lambda * second_moment / (2.0 * (1.0 - rho))
}

/// Mean response time of M/G/1 processor sharing: E[S] / (1 − ρ),
/// insensitive to the service distribution beyond its mean.
pub fn mg1_ps_mean_response(lambda: f64, mean_service: f64) -> f64 {
    let rho = lambda * mean_service;
    assert!(rho < 1.0, "PS needs ρ < 1, got {rho}");
    mean_service / (1.0 - rho)
}

/// Mean response time of M/G/c processor sharing where each of n jobs gets
/// min(1, c/n) of a CPU. Its number in system is the birth–death chain of
/// M/M/c (death rate μ·min(n, c)) and, being a symmetric queue (Kelly), it
/// is insensitive: E[T] = E[N]/λ = W_{M/M/c} + E[S].
pub fn mgc_ps_mean_response(lambda: f64, mean_service: f64, c: u32) -> f64 {
    mmc_mean_wait(lambda, mean_service, c) + mean_service
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_known_values() {
        // c = 1: C = ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // c = 2, a = 1: C = 1/3 (textbook value).
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // c = 10, a = 8: 0.409 (Erlang C tables).
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 5e-4);
    }

    #[test]
    fn formulas_agree_where_they_overlap() {
        // M/M/1: P-K with E[S²] = 2/μ² equals Erlang C with c = 1.
        let (l, m) = (0.6, 1.0);
        assert!((mg1_mean_wait(l, m, 2.0 * m * m) - mmc_mean_wait(l, m, 1)).abs() < 1e-12);
        // M/M/1: PS and FCFS have the same mean response.
        assert!((mg1_ps_mean_response(l, m) - (mmc_mean_wait(l, m, 1) + m)).abs() < 1e-12);
        assert!((mgc_ps_mean_response(l, m, 1) - mg1_ps_mean_response(l, m)).abs() < 1e-12);
    }
}
