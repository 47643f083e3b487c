//! The terminal exporter: comfy-table tables for a console — the
//! environment header, then per scenario the headline, one row per function
//! × policy (simulated bounds marked `sim`), the verdicts, goodput, the
//! simulator's p99 against the measured one (model agreement) and the
//! gates. Figures are means over repetitions; SLO attainment and p99 also
//! show their min–max range.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::export::{agreement_rows, agreement_title, created_utc, environment_rows, Exporter};
use crate::fmt::{num, opt, pct, spread_pct, spread_with, times};
use crate::{PolicyFigures, Report, ReportError, ScenarioReport};

/// Plain-text tables; no colours, so the bytes do not depend on the TTY.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalExporter {
    /// Wrap tables to this many columns (`None`: as wide as needed).
    pub width: Option<u16>,
}

impl TerminalExporter {
    fn table(&self) -> Table {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).force_no_tty();
        if let Some(w) = self.width {
            t.set_width(w)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        t
    }

    fn scenario(&self, s: &ScenarioReport, out: &mut String) {
        out.push_str(&format!("\n━━ scenario {} ━━", s.name));
        if !s.description.is_empty() {
            out.push_str(&format!(" {}", s.description));
        }
        out.push('\n');
        let duration = s
            .duration_s
            .map_or_else(String::new, |d| format!(", {} s each", num(d.mean)));
        out.push_str(&format!(
            "{} repetition(s) per policy{duration}; figures are means over repetitions, (min–max) where they differ\n",
            s.repetitions
        ));
        for l in &s.headline.lines {
            out.push_str(&format!("▶ {l}\n"));
        }

        let mut t = self.table();
        t.set_header(vec![
            "function", "policy", "SLO met", "p50 ms", "p99 ms", "p99.9 ms", "slowdown", "p99 sd",
            "≤2×", "errors", "p99/SRPT",
        ]);
        for f in &s.functions {
            let mut head = vec![f.label.clone()];
            if let Some(d) = f.deadline_ms {
                head.push(format!("D {} ms", num(d)));
            }
            if let Some(sv) = f.service_ms {
                head.push(format!("svc {} ms", num(sv)));
            }
            let rows: Vec<&PolicyFigures> = f.measured.iter().chain(&f.simulated).collect();
            for (i, p) in rows.iter().enumerate() {
                let mut label = head.get(i).cloned().unwrap_or_default();
                if i + 1 == rows.len() && head.len() > rows.len() {
                    label = head[i..].join(" · ");
                }
                t.add_row(row(label, p));
            }
        }
        for i in 2..11 {
            if let Some(c) = t.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push_str(&t.to_string());
        out.push('\n');

        for f in &s.functions {
            out.push_str(&format!("• {}\n", f.verdict.text));
        }
        if !s.goodput.is_empty() {
            let parts: Vec<String> = s
                .goodput
                .iter()
                .map(|g| {
                    format!(
                        "{}{} {}",
                        sim_prefix(g.kind),
                        g.policy,
                        spread_with(&g.per_s, num)
                    )
                })
                .collect();
            out.push_str(&format!(
                "goodput (invocations within deadline per s): {}\n",
                parts.join(" · ")
            ));
        }
        if !s.model_agreement.is_empty() {
            out.push_str(&format!("{}:\n", agreement_title().to_lowercase()));
            for l in s.agreement_summary() {
                out.push_str(&format!("  {l}\n"));
            }
            let mut t = self.table();
            t.set_header(vec![
                "policy",
                "function",
                "measured p99 ms",
                "sim p99 ms",
                "sim/measured",
                "✓/✗",
                "why",
            ]);
            for r in agreement_rows(s) {
                t.add_row(vec![
                    r.policy,
                    r.function,
                    r.measured_ms,
                    r.simulated_ms,
                    r.ratio,
                    r.mark.to_string(),
                    wrap(&r.why, WHY_WIDTH),
                ]);
            }
            for i in 2..5 {
                if let Some(c) = t.column_mut(i) {
                    c.set_cell_alignment(CellAlignment::Right);
                }
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
        for n in &s.notes {
            out.push_str(&format!("note: {n}\n"));
        }
    }
}

/// Width (characters) the "why" column of the agreement table wraps at.
const WHY_WIDTH: usize = 64;

/// `text` broken into lines of at most `width` characters at spaces (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

fn sim_prefix(kind: slokit_model::record::RunKind) -> &'static str {
    match kind {
        slokit_model::record::RunKind::Simulated => "sim ",
        slokit_model::record::RunKind::Measured => "",
    }
}

fn row(label: String, p: &PolicyFigures) -> Vec<String> {
    vec![
        label,
        format!("{}{}", sim_prefix(p.kind), p.policy),
        opt(p.slo_attainment.as_ref(), spread_pct),
        num(p.p50_ms.mean),
        spread_with(&p.p99_ms, num),
        num(p.p999_ms.mean),
        opt(p.mean_slowdown.as_ref(), |s| num(s.mean)),
        opt(p.p99_slowdown.as_ref(), |s| num(s.mean)),
        opt(p.share_slowdown_le_2.as_ref(), |s| pct(s.mean)),
        crate::fmt::count(p.errors.mean),
        p.vs_bound
            .and_then(|b| b.p99)
            .map_or_else(|| "–".into(), times),
    ]
}

impl Exporter for TerminalExporter {
    fn extension(&self) -> &'static str {
        "txt"
    }

    fn export(&self, report: &Report) -> Result<Vec<u8>, ReportError> {
        let mut out = format!(
            "slokit compare — {}\ncreated {}\n",
            report.title,
            created_utc(report)
        );
        let mut env = self.table();
        for (k, v) in environment_rows(report) {
            env.add_row(vec![k.to_string(), v]);
        }
        out.push_str(&env.to_string());
        out.push('\n');
        for s in &report.scenarios {
            self.scenario(s, &mut out);
        }
        if !report.gates.is_empty() {
            out.push_str("\ngates:\n");
            for g in &report.gates {
                out.push_str(&format!("  {}\n", g.line()));
            }
            let failed = report.gates.iter().filter(|g| !g.passed).count();
            out.push_str(&if failed == 0 {
                format!("all {} gate(s) passed\n", report.gates.len())
            } else {
                format!("{failed} of {} gate(s) FAILED\n", report.gates.len())
            });
        }
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn wraps_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), "aa bb\ncc");
        assert_eq!(wrap("averylongword x", 4), "averylongword\nx");
        assert_eq!(wrap("", 4), "");
    }

    #[test]
    fn shows_environment_every_row_verdicts_and_gates() {
        let report = testdata::report();
        let text = String::from_utf8(TerminalExporter::default().export(&report).unwrap()).unwrap();
        for needle in [
            "CPU",
            "Test CPU @ 2.0GHz",
            "kernel",
            "6.18.0-test",
            "governor",
            "isolation",
            "monitor",
            "ebpf",
            "seed",
            "sim srpt",
            "two-level",
            "goodput",
            "gates:",
            "PASS",
            "FAIL",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
        for f in &report.scenarios[0].functions {
            assert!(text.contains(&f.verdict.text), "{}", f.verdict.text);
        }
        for s in &report.scenarios {
            for l in s.headline.lines.iter().chain(&s.agreement_summary()) {
                assert!(text.contains(l.as_str()), "missing {l}:\n{text}");
            }
        }
        assert_eq!(
            text.matches("simulated vs measured (p99; ✓ within 25 %):")
                .count(),
            report.scenarios.len()
        );
        let outside = report
            .scenarios
            .iter()
            .flat_map(|s| &s.model_agreement)
            .filter(|a| a.within == Some(false))
            .count();
        assert!(outside > 0, "the fixture has disagreements");
        // ✗ marks exactly the rows outside (gate lines use " ✗" too, unboxed).
        let marked = text
            .lines()
            .filter(|l| l.split('┆').any(|c| c.trim() == "✗"))
            .count();
        assert_eq!(marked, outside, "{text}");
        assert_eq!(
            text,
            String::from_utf8(TerminalExporter::default().export(&report).unwrap()).unwrap(),
            "deterministic"
        );
    }
}
