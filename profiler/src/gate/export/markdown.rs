//! Markdown export, for pull-request comments and job summaries.

use std::fmt::Write;

use super::{pct, value_cells, value_titles, Exporter};
use crate::error::ProfileError;
use crate::gate::{GateReport, Verdict};

/// A GitHub-flavoured Markdown table.
#[derive(Debug, Default, Clone, Copy)]
pub struct MarkdownExporter;

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Exporter for MarkdownExporter {
    fn serialize(&self, r: &GateReport) -> Result<Vec<u8>, ProfileError> {
        let mut s = String::new();
        let head = if r.has_regression() {
            "❌ regression"
        } else {
            "✅ no regression"
        };
        let _ = writeln!(s, "## slokit gate: {head}\n");
        let _ = writeln!(
            s,
            "Mode: {}. {}. Threshold {:.1} %, {:.0} % CI; {}, slokit {}.\n",
            escape(&r.method()),
            escape(&r.decided_by()),
            r.threshold * 100.0,
            r.confidence * 100.0,
            escape(&r.environment),
            r.slokit_version
        );
        let [base_title, current_title] = value_titles(r);
        let _ = writeln!(s, "| function | {base_title} | {current_title} | change | 95 % CI | deadline (base → now) | verdict |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- | --- | --- |");
        for f in &r.results {
            let verdict = match f.verdict {
                Verdict::Regression => "**regression**".to_string(),
                v => v.to_string(),
            };
            let [base, current, deadline] = value_cells(r, f);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | [{}, {}] | {} | {}{} |",
                escape(&f.function),
                base,
                current,
                pct(f.change),
                pct(f.change_ci[0]),
                pct(f.change_ci[1]),
                deadline,
                verdict,
                if f.remeasured { " (re-measured)" } else { "" }
            );
        }
        let notes: Vec<String> = r
            .results
            .iter()
            .flat_map(|f| {
                f.paired
                    .iter()
                    .map(|p| p.summary())
                    .chain(f.notes.iter().cloned())
                    .map(move |n| format!("`{}`: {}", f.function, escape(&n)))
            })
            .chain(r.warnings.iter().map(|w| format!("warning: {}", escape(w))))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s);
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        Ok(s.into_bytes())
    }
}
