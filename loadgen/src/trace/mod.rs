//! Trace readers: each turns a trace file into a [`slokit_model::Schedule`]
//! of `spin` (or named) invocations. A malformed trace is reported with the
//! file, line and column (1-based; the column is the field's place in its
//! row), so the fix is one look away.
//!
//! Lines are counted here, not taken from the csv crate as they are: the
//! crate stamps a record with the position where it started reading it,
//! which is still *before* the `\n` of a CRLF ending or a blank line in
//! front of the record, one line too early. [`record_line`] re-reads those
//! few bytes (only when there is an error to report).

pub mod azure2019;
pub mod azure2021;
pub mod csv_trace;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use csv::StringRecord;

use crate::LoadgenError;

/// Opens `path` as a CSV reader (headers as given, rows of any length).
pub(crate) fn open(path: &Path, has_headers: bool) -> Result<csv::Reader<File>, LoadgenError> {
    let file = File::open(path).map_err(|error| LoadgenError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(None)
        .from_reader(file))
}

/// The 1-based line on which the record read from `pos` begins: `pos`'s
/// line plus the line ends between `pos` and the record's first byte (see
/// the module doc). Falls back to `pos`'s line if the file cannot be read
/// again.
pub(crate) fn record_line(path: &Path, pos: &csv::Position) -> u64 {
    let skipped = (|| -> std::io::Result<u64> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(pos.byte()))?;
        let mut newlines = 0;
        for byte in BufReader::new(file).bytes() {
            match byte? {
                b'\n' => newlines += 1,
                b'\r' => {}
                _ => break,
            }
        }
        Ok(newlines)
    })();
    pos.line() + skipped.unwrap_or(0)
}

/// A csv crate error, placed in its file, in words (never the crate's
/// debug output).
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> LoadgenError {
    let line = e.position().map_or(0, |p| record_line(path, p));
    let trace = |column: u64, message: String| LoadgenError::Trace {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    match e.into_kind() {
        csv::ErrorKind::Io(error) => LoadgenError::Io {
            path: path.to_path_buf(),
            error,
        },
        csv::ErrorKind::Utf8 { err, .. } => trace(
            err.field() as u64 + 1,
            format!(
                "field {} is not valid UTF-8 (a bad byte after its first {} bytes); save the trace as UTF-8 text",
                err.field() + 1,
                err.valid_up_to()
            ),
        ),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => trace(
            0,
            format!("row has {len} fields where the rows before have {expected_len}"),
        ),
        _ => trace(0, "cannot parse this row as CSV".into()),
    }
}

/// An error at field `column` (0-based) of the record read from `pos`.
pub(crate) fn error_at(
    path: &Path,
    pos: &csv::Position,
    column: usize,
    message: impl Into<String>,
) -> LoadgenError {
    LoadgenError::Trace {
        path: path.to_path_buf(),
        line: record_line(path, pos),
        column: column as u64 + 1,
        message: message.into(),
    }
}

/// Where a record's field sits, for error messages.
pub(crate) struct At<'a> {
    pub path: &'a Path,
    pub record: &'a StringRecord,
}

impl At<'_> {
    /// The line the record begins on (see [`record_line`]).
    pub fn line(&self) -> u64 {
        self.record
            .position()
            .map_or(0, |p| record_line(self.path, p))
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
