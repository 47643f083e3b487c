//! Trace readers: each turns a trace file into a [`slokit_model::Schedule`]
//! of `spin` (or named) invocations. A malformed trace is reported with the
//! file, line and column (1-based, as the csv crate counts positions), so the
//! fix is one look away.

pub mod azure2019;
pub mod azure2021;
pub mod csv_trace;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use csv::StringRecord;

use crate::LoadgenError;

/// Opens `path` as a CSV reader (headers as given, rows of any length).
pub(crate) fn open(path: &Path, has_headers: bool) -> Result<csv::Reader<File>, LoadgenError> {
    let file = File::open(path).map_err(|source| LoadgenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(None)
        .from_reader(file))
}

/// A csv crate error, placed in its file.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> LoadgenError {
    let line = e.position().map_or(0, |p| p.line());
    let column = match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => err.field() as u64 + 1,
        csv::ErrorKind::Deserialize { err, .. } => err.field().map_or(0, |f| f + 1),
        _ => 0,
    };
    match e.into_kind() {
        csv::ErrorKind::Io(source) => LoadgenError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => LoadgenError::Trace {
            path: path.to_path_buf(),
            line,
            column,
            message: format!("{:?}", other),
        },
    }
}

/// Where a record's field sits, for error messages.
pub(crate) struct At<'a> {
    pub path: &'a Path,
    pub record: &'a StringRecord,
}

impl At<'_> {
    pub fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    pub fn error(&self, column: usize, message: impl Into<String>) -> LoadgenError {
        LoadgenError::Trace {
            path: PathBuf::from(self.path),
            line: self.line(),
            column: column as u64 + 1,
            message: message.into(),
        }
    }

    /// Field `column` (0-based), required.
    pub fn field(&self, column: usize, name: &str) -> Result<&str, LoadgenError> {
        self.record
            .get(column)
            .ok_or_else(|| self.error(column, format!("missing field `{name}`")))
    }

    /// Field `column` parsed as `T`, with a message naming the field and value.
    pub fn parse<T: FromStr>(
        &self,
        column: usize,
        name: &str,
        what: &str,
    ) -> Result<T, LoadgenError> {
        let text = self.field(column, name)?;
        text.parse().map_err(|_| {
            self.error(
                column,
                format!("field `{name}` is `{text}`, expected {what}"),
            )
        })
    }
}

/// Stochastic rounding: `x` becomes ⌊x⌋ or ⌈x⌉ with the probability that
/// keeps its expectation (used to scale per-minute counts).
pub(crate) fn round_stochastic(x: f64, rng: &mut impl rand::Rng) -> u64 {
    let floor = x.floor();
    let extra = u64::from(rng.random::<f64>() < x - floor);
    floor as u64 + extra
}
