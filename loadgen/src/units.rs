//! The load generator's reading of human durations (`30s`, `500ms`, `2m`,
//! `50us`, bare numbers in a default unit) and of the `label=value,...` maps
//! the command line takes (`--service`, `--deadline`): thin wrappers over
//! [`slokit_model::units`].

use std::collections::HashMap;
use std::time::Duration;

use slokit_model::units::{parse_duration_us, parse_label_duration_list, DurationSyntax};

use crate::LoadgenError;

/// Parses a duration with an optional unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`) into microseconds; a bare number is in `default_unit_us`.
pub fn parse_us(text: &str, default_unit_us: f64) -> Result<f64, String> {
    parse_duration_us(text, DurationSyntax::bare_numbers_in(default_unit_us))
        .map_err(|e| e.to_string())
}

/// Parses a duration whose bare numbers are seconds (`30`, `30s`, `1m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_us(text, 1e6).map(|us| Duration::from_nanos((us * 1e3).round() as u64))
}

/// Parses `label=duration,label=duration` (bare numbers in ms) into µs per
/// label, as `--service auth=0.05ms,video=120ms`.
pub fn parse_us_map(
    option: &'static str,
    text: &str,
) -> Result<HashMap<String, f64>, LoadgenError> {
    let entries = parse_label_duration_list(text, DurationSyntax::bare_numbers_in(1e3))
        .map_err(|e| LoadgenError::invalid(option, e.to_string()))?;
    Ok(entries.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_us("0.05ms", 1.0).unwrap(), 50.0);
        assert_eq!(parse_us("120ms", 1.0).unwrap(), 120_000.0);
        assert_eq!(parse_us("2s", 1.0).unwrap(), 2e6);
        assert_eq!(parse_us("7", 1e3).unwrap(), 7000.0);
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_us("5 parsecs", 1.0).unwrap_err().contains("unit"));
        assert!(parse_us("-1s", 1.0).is_err());
    }

    #[test]
    fn maps() {
        let m = parse_us_map("--service", "auth=0.05ms, video=120ms").unwrap();
        assert_eq!(m["auth"], 50.0);
        assert_eq!(m["video"], 120_000.0);
        let e = parse_us_map("--service", "auth").unwrap_err().to_string();
        assert!(
            e.contains("--service") && e.contains("label=duration"),
            "{e}"
        );
    }
}
