//! The bounds that keep a schedule buildable and a replay finite: how many
//! invocations one schedule may hold (checked against what a trace or a
//! process asks for *before* anything is allocated, so a count of 10¹² is a
//! clear refusal instead of an aborted allocation) and how far in time a
//! trace may reach (a time of 10²⁰ would be a replay that never ends).

use crate::LoadgenError;

/// Default of `--max-invocations`: the most invocations one schedule may
/// hold. A schedule costs tens of bytes per invocation (a trace's own
/// parameters more), so this is a few hundred MB at most; raise it for
/// bigger replays.
pub const DEFAULT_MAX_INVOCATIONS: u64 = 10_000_000;

/// Latest time a trace may place an invocation at (and longest duration it
/// may give one), seconds: 31 days, beyond the two weeks of the Azure
/// Functions 2021 trace. A time past it is a typo or a corrupt file.
pub const MAX_TRACE_TIME_S: f64 = 31.0 * 86_400.0;

/// `MAX_TRACE_TIME_S` as text for messages.
pub(crate) const MAX_TRACE_TIME_TEXT: &str = "31 days";

/// Whether `seconds` is a usable trace time: finite, ≥ 0 and within
/// [`MAX_TRACE_TIME_S`].
pub(crate) fn time_in_bounds(seconds: f64) -> bool {
    seconds.is_finite() && (0.0..=MAX_TRACE_TIME_S).contains(&seconds)
}

/// Refuses a schedule expected to hold more than `max` invocations;
/// `asked_by` names what asked for them (`--rate 1e6 × --duration 1h`).
pub fn check_expected_invocations(
    expected: f64,
    max: u64,
    asked_by: &str,
) -> Result<(), LoadgenError> {
    if expected.is_nan() || expected > max as f64 {
        return Err(LoadgenError::invalid(
            "--max-invocations",
            format!(
                "{asked_by} asks for {} invocations, more than the limit of {max}; ask for fewer or raise --max-invocations",
                count_text(expected)
            ),
        ));
    }
    Ok(())
}

/// A count for messages: exact below 10¹⁵, in scientific notation above.
pub(crate) fn count_text(n: f64) -> String {
    if n.is_finite() && n < 1e15 {
        format!("{:.0}", n.ceil())
    } else {
        format!("{n:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_over_the_limit_are_refused_by_name() {
        assert!(check_expected_invocations(10.0, 10, "--rate").is_ok());
        let e = check_expected_invocations(3.6e12, 10_000_000, "--rate 1e9 × --duration 1h")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--max-invocations")
                && e.contains("3600000000000")
                && e.contains("10000000")
                && e.contains("--rate 1e9"),
            "{e}"
        );
        assert!(check_expected_invocations(f64::INFINITY, 1, "x").is_err());
        assert!(check_expected_invocations(f64::NAN, 1, "x").is_err());
        assert_eq!(count_text(1e20), "1e20");
    }

    #[test]
    fn trace_times_are_bounded() {
        assert!(time_in_bounds(0.0) && time_in_bounds(14.0 * 86_400.0));
        for bad in [-1.0, 1e20, f64::INFINITY, f64::NAN, MAX_TRACE_TIME_S + 1.0] {
            assert!(!time_in_bounds(bad), "{bad}");
        }
    }
}
