//! Finding and loading the gate's baseline profiles so that a broken file
//! stops the gate (exit 2) with its path, line, column and field, instead
//! of being skipped. A file that is not TOML, or that looks like a profile
//! but does not load, is an error; only well-formed TOML that is plainly
//! something else (an experiment config, `profile.toml`) is skipped.
//!
//! Lines come from the TOML parser's span for syntax errors, and for a bad
//! field from locating its dotted path (`summary.p99_us`) in the text: the
//! `[summary]` header, then the `p99_us =` line under it.

use std::path::Path;

use crate::error::ProfileError;
use crate::profile::{Profile, PROFILE_SCHEMA};

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// Where the value of the dotted `field` (`summary.p99_us`, `version`) is
/// written in profile TOML, as (line, column), when it can be found.
pub fn locate_field(text: &str, field: &str) -> Option<(usize, usize)> {
    let (table, key) = match field.rsplit_once('.') {
        Some((t, k)) => (Some(t), k),
        None => (None, field),
    };
    let mut in_table = table.is_none();
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']' || c == ' ');
            in_table = Some(name) == table;
            if in_table {
                table_line = Some((i + 1, raw.len() - line.len() + 1));
            }
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(rest) = line.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some((i + 1, raw.len() - line.len() + 1));
            }
        }
    }
    // A missing field: its table's header, if that exists.
    table_line
}

/// Whether well-formed TOML is a profile, or looks like one that lost its
/// `schema` line (so that loading it reports what is wrong).
fn looks_like_profile(table: &toml::Table, text: &str) -> bool {
    match table.get("schema").and_then(|s| s.as_str()) {
        Some(s) => s == PROFILE_SCHEMA,
        None => {
            text.trim_start().starts_with("# slokit profile")
                || ["histogram", "summary", "deadline"]
                    .iter()
                    .any(|k| table.contains_key(*k))
        }
    }
}

/// The dotted field written on 1-based `line` (`summary.runs`), if the line
/// is a `key = ...` line.
pub fn field_at_line(text: &str, line: usize) -> Option<String> {
    let mut table: Option<String> = None;
    for (i, raw) in text.lines().enumerate().take(line) {
        let l = raw.trim();
        if l.starts_with('[') {
            table = Some(
                l.trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .to_string(),
            );
        } else if i + 1 == line {
            let key = l.split_once('=')?.0.trim();
            if key.is_empty() {
                return None;
            }
            return Some(match &table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_string(),
            });
        }
    }
    None
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ProfileError {
    let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
    let message: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    ProfileError::MalformedAt {
        path: path.to_path_buf(),
        line,
        column,
        field: field_at_line(text, line).unwrap_or_else(|| "?".into()),
        message: format!("TOML syntax: {}", message.join("; ")),
    }
}

/// Whether `path` holds a baseline profile: `Ok(false)` for well-formed
/// TOML that is something else, an error naming line and column for a file
/// that is not TOML at all.
pub fn is_profile_file(path: &Path) -> Result<bool, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        action: "read the baseline",
        path: path.to_path_buf(),
        source,
    })?;
    match text.parse::<toml::Table>() {
        Ok(t) => Ok(looks_like_profile(&t, &text)),
        Err(e) => Err(syntax_error(path, &text, &e)),
    }
}

/// Loads a baseline profile; a malformed one is an error naming the file,
/// the line and column, and the field.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        action: "read the baseline",
        path: path.to_path_buf(),
        source,
    })?;
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(syntax_error(path, &text, &e));
    }
    Profile::from_toml(&text, path).map_err(|e| match e {
        ProfileError::Malformed {
            path,
            field,
            message,
        } => {
            let (line, column) = locate_field(&text, &field).unwrap_or((1, 1));
            ProfileError::MalformedAt {
                path,
                line,
                column,
                field,
                message,
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 8), (2, 3));
    }

    #[test]
    fn fields_are_found_under_their_table() {
        let t = "version = 1\n[deadline]\np99_us = 1\n[summary]\nruns = 3\np99_us = 2\n";
        assert_eq!(locate_field(t, "version"), Some((1, 1)));
        assert_eq!(locate_field(t, "summary.p99_us"), Some((6, 1)));
        assert_eq!(locate_field(t, "summary.missing"), Some((4, 1)));
        assert_eq!(locate_field(t, "nowhere.x"), None);
        assert_eq!(field_at_line(t, 6).as_deref(), Some("summary.p99_us"));
        assert_eq!(field_at_line(t, 1).as_deref(), Some("version"));
        assert_eq!(field_at_line(t, 4), None);
    }

    #[test]
    fn a_corrupt_profile_names_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        let good = crate::profile::tests::synthetic("spin", 1e6)
            .to_toml()
            .unwrap();
        let line_of = |needle: &str| good.lines().position(|l| l.starts_with(needle)).unwrap() + 1;

        std::fs::write(&path, good.replacen("p99_us = ", "p99_us = \"fast\" #", 1)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        let want = format!("line {}", line_of("p99_us"));
        assert!(
            e.contains("spin.toml") && e.contains(&want) && e.contains("summary.p99_us"),
            "{e}"
        );

        std::fs::write(&path, good.replacen("runs = ", "runs = = ", 1)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("line {}", line_of("runs"))), "{e}");
        assert!(
            e.contains("TOML syntax") && e.contains("summary.runs"),
            "{e}"
        );
        assert!(is_profile_file(&path).is_err());

        // Well-formed TOML that is something else is not a baseline.
        std::fs::write(&path, "[experiment]\nseed = 1\n").unwrap();
        assert!(!is_profile_file(&path).unwrap());
        // A profile that lost its schema line still counts, and fails to load.
        let headless: String = good
            .lines()
            .filter(|l| !l.starts_with("schema"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, headless).unwrap();
        assert!(is_profile_file(&path).unwrap());
        assert!(load(&path).unwrap_err().to_string().contains("schema"));
    }
}
