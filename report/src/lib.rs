//! slokit-report: turns run records of a comparison (scenarios × policies ×
//! repetitions) into a report — per-function figures with their spread,
//! verdicts, CI gates — and writes it as a terminal table, JSON, Markdown or
//! a self-contained HTML page with plots. It reads records; it never reaches
//! into a running component.
//!
//! ```text
//! Comparison ──Report::build──► Report ──Exporter::export──► bytes
//!                  ▲ gates (parse_gate)       terminal · json · markdown · html
//! ```

pub mod aggregate;
pub mod export;
mod fmt;
pub mod gate;
pub mod input;
mod plot;
pub mod stats;
#[cfg(test)]
mod testdata;

pub use aggregate::{
    proposed_policy, Agreement, BoundRatio, FunctionClass, FunctionReport, Goodput, Headline,
    HeadlineRatio, PolicyFigures, Report, ReportOptions, RunTimeline, ScenarioReport, Verdict,
    COMPARE_SCHEMA, GATE_FAILED_EXIT, LAS, REFERENCE,
};
pub use export::{
    exporter_for, Exporter, Format, HtmlExporter, JsonExporter, MarkdownExporter, TerminalExporter,
};
pub use gate::{parse_gate, parse_gates, Gate, GateCheck, GateResult, Metric, Op, Target};
pub use input::{Comparison, PolicyRun, ScenarioRuns, ServiceCheck};
pub use stats::Spread;

/// Everything that can go wrong while building or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A gate does not parse; `column` is 1-based.
    #[error("gate `{gate}`: {message} (at column {column})\n  {gate}\n  {caret}^", caret = " ".repeat(column.saturating_sub(1)))]
    GateSyntax {
        gate: String,
        column: usize,
        message: String,
    },
    /// The comparison breaks the input contract.
    #[error("scenario `{scenario}`: {message}")]
    InvalidInput { scenario: String, message: String },
    /// A record's response-time histogram cannot be read.
    #[error("response histogram of {what}: {message} (was the record written by slokit?)")]
    Histogram { what: String, message: String },
    /// A report JSON of another schema version.
    #[error("report schema is `{found}`, this slokit reads `{}`; re-run `slokit compare` with this version", COMPARE_SCHEMA)]
    Schema { found: String },
    /// An unknown export format name.
    #[error("unknown report format `{0}`; use terminal, json, markdown or html")]
    UnknownFormat(String),
    /// Drawing a plot failed.
    #[error("plot `{plot}`: {message}")]
    Plot { plot: String, message: String },
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
}
