//! Parsing of human durations (`30s`, `500ms`, `2m`, `50us`) and of the
//! `label=value,...` maps the command line takes (`--service`,
//! `--deadline`).

use std::collections::HashMap;
use std::time::Duration;

use crate::LoadgenError;

/// Parses a duration with an optional unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`) into microseconds; a bare number is in `default_unit_us`.
pub fn parse_us(text: &str, default_unit_us: f64) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    // `1e3ms` is fine, but an `e` followed by no digit is part of no unit we know.
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try `30s`, `500ms`, `50us`)"))?;
    let scale = match unit.trim() {
        "" => default_unit_us,
        "ns" => 1e-3,
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let us = value * scale;
    if !us.is_finite() || us < 0.0 {
        return Err(format!("`{text}` must be a finite, non-negative duration"));
    }
    Ok(us)
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
    let mut out = HashMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (label, value) = part.split_once('=').ok_or_else(|| {
            LoadgenError::invalid(
                option,
                format!("`{part}` is not `label=duration` (e.g. auth=0.05ms)"),
            )
        })?;
        let us = parse_us(value, 1e3).map_err(|e| LoadgenError::invalid(option, e))?;
        out.insert(label.trim().to_string(), us);
    }
    Ok(out)
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
