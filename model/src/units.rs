//! Units: [`human_us`], the one readable form of a duration in tables, and
//! parsing of human durations (`30s`, `500ms`, `2m`, `50us`) into
//! microseconds, and of `label=duration` lists (`--service`, `--deadline`,
//! `--known-service`). One parser serves every command line; a
//! [`DurationSyntax`] says whether a bare number is allowed (and in which
//! unit) and whether hours are.

use std::fmt;

/// A duration given in µs, readable at any scale: `0.51 µs`, `3.22 ms`,
/// `1.24 s` (two decimals in the largest unit below the value).
pub fn human_us(us: f64) -> String {
    if us.abs() >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us.abs() >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.2} µs")
    }
}

/// What a duration's text may look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationSyntax {
    /// The unit, in µs, of a bare number (`30`); `None` rejects bare numbers
    /// because the unit is not guessable.
    pub bare_unit_us: Option<f64>,
    /// Whether `h` (hours) is accepted.
    pub hours: bool,
}

impl DurationSyntax {
    /// A unit is required; `ns`, `us`/`µs`, `ms`, `s`, `m`/`min` (the
    /// simulator's syntax).
    pub const UNIT_REQUIRED: Self = DurationSyntax {
        bare_unit_us: None,
        hours: false,
    };

    /// A bare number is in `unit_us` µs; `h` is accepted too (the load
    /// generator's syntax).
    pub const fn bare_numbers_in(unit_us: f64) -> Self {
        DurationSyntax {
            bare_unit_us: Some(unit_us),
            hours: true,
        }
    }

    fn units(&self) -> &'static str {
        if self.hours {
            "ns, us, ms, s, m or h"
        } else {
            "ns, us, ms, s or m"
        }
    }
}

/// A duration that does not parse: the trimmed input and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a duration: {}", self.input, self.reason)
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`/`min`,
/// and `h` when `syntax.hours`) into µs. A bare number is in
/// `syntax.bare_unit_us`, or rejected when that is `None`.
pub fn parse_duration_us(text: &str, syntax: DurationSyntax) -> Result<f64, DurationError> {
    let t = text.trim();
    let bad = |reason: String| DurationError {
        input: t.to_string(),
        reason,
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let scale = match unit {
        "" => syntax.bare_unit_us.ok_or_else(|| {
            bad(format!(
                "give a unit: {} (for example 0.5ms)",
                syntax.units()
            ))
        })?,
        "ns" => 1e-3,
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" if syntax.hours => 3600e6,
        other => {
            return Err(bad(format!(
                "unknown unit `{other}` (use {})",
                syntax.units()
            )))
        }
    };
    let value: f64 = num.trim().parse().map_err(|_| {
        bad(format!(
            "`{num}` is not a number (try `30s`, `500ms`, `50us`)"
        ))
    })?;
    let us = value * scale;
    if !(us.is_finite() && us >= 0.0) {
        return Err(bad("must be a finite, non-negative duration".into()));
    }
    Ok(us)
}

/// A `label=duration` entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelDurationError {
    /// The entry has no `=`.
    NoLabel { entry: String },
    /// The label is given twice.
    Twice { entry: String, label: String },
    /// The duration after `=` does not parse.
    Duration { entry: String, error: DurationError },
}

impl LabelDurationError {
    /// The entry that failed.
    pub fn entry(&self) -> &str {
        match self {
            LabelDurationError::NoLabel { entry }
            | LabelDurationError::Twice { entry, .. }
            | LabelDurationError::Duration { entry, .. } => entry,
        }
    }

    /// Why, without the entry.
    pub fn reason(&self) -> String {
        match self {
            LabelDurationError::NoLabel { .. } => {
                "expected `label=duration`, for example auth=5ms".to_string()
            }
            LabelDurationError::Twice { label, .. } => format!("`{label}` is given twice"),
            LabelDurationError::Duration { error, .. } => error.to_string(),
        }
    }
}

impl fmt::Display for LabelDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.entry(), self.reason())
    }
}

impl std::error::Error for LabelDurationError {}

/// Parses `label=duration` entries (empty ones are skipped) into µs per
/// label, in order; a label given twice is an error. Each entry is one item
/// of `entries`; split a comma-separated list with
/// [`parse_label_duration_list`].
pub fn parse_label_durations<'a>(
    entries: impl IntoIterator<Item = &'a str>,
    syntax: DurationSyntax,
) -> Result<Vec<(String, f64)>, LabelDurationError> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for entry in entries.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        let (label, d) = entry
            .split_once('=')
            .ok_or_else(|| LabelDurationError::NoLabel {
                entry: entry.to_string(),
            })?;
        let label = label.trim();
        if out.iter().any(|(l, _)| l == label) {
            return Err(LabelDurationError::Twice {
                entry: entry.to_string(),
                label: label.to_string(),
            });
        }
        let us = parse_duration_us(d, syntax).map_err(|error| LabelDurationError::Duration {
            entry: entry.to_string(),
            error,
        })?;
        out.push((label.to_string(), us));
    }
    Ok(out)
}

/// [`parse_label_durations`] over a comma-separated list
/// (`auth=0.05ms,video=120ms`).
pub fn parse_label_duration_list(
    text: &str,
    syntax: DurationSyntax,
) -> Result<Vec<(String, f64)>, LabelDurationError> {
    parse_label_durations(text.split(','), syntax)
}

#[cfg(test)]
mod tests {

    #[test]
    fn human_us_picks_the_unit() {
        assert_eq!(human_us(0.511), "0.51 µs");
        assert_eq!(human_us(999.0), "999.00 µs");
        assert_eq!(human_us(3222.0), "3.22 ms");
        assert_eq!(human_us(5000.0), "5.00 ms");
        assert_eq!(human_us(1_240_000.0), "1.24 s");
    }

    use super::*;

    const BARE_US: DurationSyntax = DurationSyntax::bare_numbers_in(1.0);
    const STRICT: DurationSyntax = DurationSyntax::UNIT_REQUIRED;

    #[test]
    fn units() {
        assert_eq!(parse_duration_us("0.05ms", BARE_US).unwrap(), 50.0);
        assert_eq!(parse_duration_us("120ms", BARE_US).unwrap(), 120_000.0);
        assert_eq!(parse_duration_us("2s", BARE_US).unwrap(), 2e6);
        assert_eq!(parse_duration_us("1e3ms", BARE_US).unwrap(), 1e6);
        assert_eq!(parse_duration_us("3h", BARE_US).unwrap(), 3.0 * 3600e6);
        assert_eq!(
            parse_duration_us("7", DurationSyntax::bare_numbers_in(1e3)).unwrap(),
            7000.0
        );
        assert!(parse_duration_us("5 parsecs", BARE_US)
            .unwrap_err()
            .to_string()
            .contains("unit"));
        assert!(parse_duration_us("-1s", BARE_US).is_err());
        assert!(parse_duration_us("xs", BARE_US).is_err());
    }

    #[test]
    fn unit_required() {
        assert_eq!(parse_duration_us("600s", STRICT).unwrap(), 600e6);
        assert_eq!(parse_duration_us("1.5 ms", STRICT).unwrap(), 1500.0);
        assert_eq!(parse_duration_us("2m", STRICT).unwrap(), 120e6);
        let e = parse_duration_us("5", STRICT).unwrap_err();
        assert_eq!(e.input, "5");
        assert!(e.reason.contains("give a unit"), "{e}");
        assert!(parse_duration_us("5h", STRICT).is_err());
    }

    #[test]
    fn label_lists() {
        let d = parse_label_duration_list("auth=0.05ms, video=120ms,", BARE_US).unwrap();
        assert_eq!(d, vec![("auth".into(), 50.0), ("video".into(), 120_000.0)]);
        let e = parse_label_durations(["auth"], STRICT).unwrap_err();
        assert!(matches!(e, LabelDurationError::NoLabel { .. }));
        assert!(e.to_string().contains("label=duration"), "{e}");
        let e = parse_label_durations(["a=1ms", "a=2ms"], STRICT).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = parse_label_durations(["a=1"], STRICT).unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
    }
}
