//! slokit-report: turns run records of a comparison (scenarios × policies ×
//! repetitions) into a report — per-function figures with their spread,
//! verdicts, CI gates — and writes it as a terminal table, JSON, Markdown or
//! a self-contained HTML page with plots. It reads records; it never reaches
//! into a running component.
