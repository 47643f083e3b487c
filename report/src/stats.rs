//! Figures over repetitions: a mean with its spread. Repetitions of a run
//! are few (3 by default), so the report shows the full range (min–max)
//! beside the mean and also keeps the sample standard deviation (n − 1
//! denominator; 0 for a single repetition) for tools that want it.

use serde::{Deserialize, Serialize};

/// Mean over repetitions with min, max and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Sample standard deviation (n − 1); 0 when `n` is 1.
    pub stddev: f64,
    /// Number of repetitions.
    pub n: usize,
}

impl Spread {
    /// The spread of `values`; `None` when there are none (non-finite values
    /// are skipped: they carry no information about the mean).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Spread {
            mean,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            stddev,
            n,
        })
    }
}

/// `a / b`, or `None` when either is not a positive finite number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a >= 0.0 && b > 0.0).then(|| a / b)
}

/// Geometric mean of positive values; `None` when there are none.
pub fn geomean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(f64::ln)
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_three_repetitions() {
        let s = Spread::of([1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert!((s.stddev - 1.0).abs() < 1e-12);
    }

    #[test]
    fn single_repetition_has_zero_stddev_and_empty_is_none() {
        assert_eq!(Spread::of([5.0]).unwrap().stddev, 0.0);
        assert!(Spread::of([]).is_none());
        assert!(Spread::of([f64::NAN]).is_none());
    }

    #[test]
    fn ratio_and_geomean_refuse_degenerate_input() {
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert!((geomean([1.0, 4.0]).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(geomean([0.0]), None);
    }
}
