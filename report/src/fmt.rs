//! Number formatting shared by the text exporters, so the terminal,
//! Markdown and HTML tables show the same digits (three significant digits
//! for times, one decimal for percentages).

use crate::stats::Spread;

/// A value with about three significant digits: `0.123`, `1.23`, `12.3`, `123`.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// An axis tick: like [`num`] without trailing zeros (`5`, `2.5`, `0.25`).
pub fn tick(v: f64) -> String {
    let s = num(v);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A share as a percentage with one decimal: `99.2 %`.
pub fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// A ratio: `0.21×`.
pub fn times(v: f64) -> String {
    format!("{}×", num(v))
}

/// A count mean: integers stay integers.
pub fn count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Mean with its min–max range when the repetitions differ:
/// `12.3 (11.9–12.8)`.
pub fn spread_with(s: &Spread, f: impl Fn(f64) -> String) -> String {
    let (lo, hi) = (f(s.min), f(s.max));
    if s.n > 1 && lo != hi {
        format!("{} ({lo}–{hi})", f(s.mean))
    } else {
        f(s.mean)
    }
}

/// Like [`spread_with`] for shares, with the `%` sign once at the end.
pub fn spread_pct(s: &Spread) -> String {
    let p = |v: f64| format!("{:.1}", v * 100.0);
    let (lo, hi) = (p(s.min), p(s.max));
    if s.n > 1 && lo != hi {
        format!("{} % ({lo}–{hi})", p(s.mean))
    } else {
        format!("{} %", p(s.mean))
    }
}

/// Optional figure, `–` when absent.
pub fn opt(s: Option<&Spread>, f: impl Fn(&Spread) -> String) -> String {
    s.map_or_else(|| "–".into(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(pct(0.9921), "99.2 %");
        assert_eq!(
            (tick(5.0), tick(10.0), tick(2.5), tick(0.25)),
            ("5".into(), "10".into(), "2.5".into(), "0.25".into())
        );
        let s = Spread::of([1.0, 2.0, 3.0]).unwrap();
        assert_eq!(spread_with(&s, num), "2.00 (1.00–3.00)");
        assert_eq!(spread_pct(&Spread::of([0.5]).unwrap()), "50.0 %");
    }
}
