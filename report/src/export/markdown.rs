//! The Markdown exporter: the same content as the terminal report as
//! GitHub-flavoured Markdown tables, for pull-request comments and docs.
//! Every figure shows its mean and, where repetitions differ, the min–max.

use crate::export::{agreement_rows, agreement_title, created_utc, environment_rows, Exporter};
use crate::fmt::{count, num, opt, spread_pct, spread_with, times};
use crate::{PolicyFigures, Report, ReportError};

/// Writes GitHub-flavoured Markdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkdownExporter;

/// Escapes text for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn sim(p: &PolicyFigures) -> String {
    match p.kind {
        slokit_model::record::RunKind::Simulated => format!("*sim {}*", p.policy),
        slokit_model::record::RunKind::Measured => format!("**{}**", p.policy),
    }
}

impl Exporter for MarkdownExporter {
    fn extension(&self) -> &'static str {
        "md"
    }

    fn export(&self, report: &Report) -> Result<Vec<u8>, ReportError> {
        let mut o = format!("# {}\n\n", cell(&report.title));
        o.push_str(&format!(
            "slokit compare, created {}. Figures are means over repetitions with the min–max range in parentheses where repetitions differ; `sim` rows come from the simulator (SRPT is the lower bound).\n\n",
            created_utc(report)
        ));
        o.push_str("| environment | |\n| --- | --- |\n");
        for (k, v) in environment_rows(report) {
            o.push_str(&format!("| {k} | {} |\n", cell(&v)));
        }

        if !report.gates.is_empty() {
            let failed = report.gates.iter().filter(|g| !g.passed).count();
            o.push_str(&format!(
                "\n## Gates: {}\n\n",
                if failed == 0 {
                    "all passed".to_string()
                } else {
                    format!("{failed} of {} failed", report.gates.len())
                }
            ));
            for g in &report.gates {
                o.push_str(&format!("- `{}`\n", g.line()));
            }
        }

        for s in &report.scenarios {
            o.push_str(&format!("\n## Scenario `{}`\n\n", s.name));
            if !s.description.is_empty() {
                o.push_str(&format!("{}\n\n", s.description));
            }
            let duration = s
                .duration_s
                .map_or_else(String::new, |d| format!(" of {} s", num(d.mean)));
            o.push_str(&format!(
                "{} repetition(s){duration} per policy.\n\n",
                s.repetitions
            ));
            let quoted: Vec<String> = s
                .headline
                .lines
                .iter()
                .map(|l| format!("> **{l}**\n"))
                .collect();
            o.push_str(&quoted.join(">\n"));
            o.push_str("\n### Verdicts\n\n");
            for f in &s.functions {
                o.push_str(&format!("- {}\n", f.verdict.text));
            }
            o.push_str("\n### Per function\n\n");
            o.push_str("| function | policy | SLO met | p50 ms | p99 ms | p99.9 ms | mean slowdown | p99 slowdown | slowdown ≤ 2 | errors | invocations | p99 / SRPT |\n");
            o.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for f in &s.functions {
                let mut head = format!("`{}`", f.label);
                if let Some(d) = f.deadline_ms {
                    head.push_str(&format!("<br>D = {} ms", num(d)));
                }
                if let Some(sv) = f.service_ms {
                    head.push_str(&format!("<br>service {} ms", num(sv)));
                }
                for (i, p) in f.measured.iter().chain(&f.simulated).enumerate() {
                    o.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        if i == 0 { head.as_str() } else { "" },
                        sim(p),
                        opt(p.slo_attainment.as_ref(), spread_pct),
                        spread_with(&p.p50_ms, num),
                        spread_with(&p.p99_ms, num),
                        spread_with(&p.p999_ms, num),
                        opt(p.mean_slowdown.as_ref(), |s| spread_with(s, num)),
                        opt(p.p99_slowdown.as_ref(), |s| spread_with(s, num)),
                        opt(p.share_slowdown_le_2.as_ref(), spread_pct),
                        spread_with(&p.errors, count),
                        spread_with(&p.invocations, count),
                        p.vs_bound
                            .and_then(|b| b.p99)
                            .map_or_else(|| "–".into(), times),
                    ));
                }
            }
            if !s.goodput.is_empty() {
                o.push_str("\n### Goodput\n\nSuccessful invocations within their deadline per second, all functions together.\n\n| policy | goodput /s |\n| --- | ---: |\n");
                for g in &s.goodput {
                    let name = match g.kind {
                        slokit_model::record::RunKind::Simulated => {
                            format!("*sim {}*", g.policy)
                        }
                        slokit_model::record::RunKind::Measured => format!("**{}**", g.policy),
                    };
                    o.push_str(&format!("| {name} | {} |\n", spread_with(&g.per_s, num)));
                }
            }
            if !s.model_agreement.is_empty() {
                o.push_str(&format!("\n### {}\n\n", agreement_title()));
                for l in s.agreement_summary() {
                    o.push_str(&format!("- {}\n", cell(&l)));
                }
                o.push_str("\n| policy | function | measured p99 ms | simulated p99 ms | simulated / measured | agrees | why |\n| --- | --- | ---: | ---: | ---: | :---: | --- |\n");
                for r in agreement_rows(s) {
                    o.push_str(&format!(
                        "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                        cell(&r.policy),
                        r.function,
                        r.measured_ms,
                        r.simulated_ms,
                        r.ratio,
                        r.mark,
                        cell(&r.why)
                    ));
                }
            }
            if !s.notes.is_empty() {
                o.push_str("\n### Notes\n\n");
                for n in &s.notes {
                    o.push_str(&format!("- {}\n", n));
                }
            }
        }
        Ok(o.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn has_a_row_per_function_and_policy_and_the_gates() {
        let report = testdata::report();
        let md = String::from_utf8(MarkdownExporter.export(&report).unwrap()).unwrap();
        let rows = md
            .lines()
            .filter(|l| {
                l.starts_with("| ") && l.contains("**two-level**") && l.matches(" | ").count() >= 11
            })
            .count();
        let functions: usize = report.scenarios.iter().map(|s| s.functions.len()).sum();
        assert_eq!(rows, functions, "{md}");
        assert!(md.contains("*sim srpt*"));
        // One agreement row per entry, marked and explained as computed.
        for s in &report.scenarios {
            for l in s.agreement_summary() {
                assert!(md.contains(&format!("- {l}\n")), "missing {l}");
            }
            for a in &s.model_agreement {
                let name = crate::aggregate::agreement_pair_name(&a.policy, &a.simulated_policy);
                let mark = match a.within {
                    Some(true) => "✓",
                    Some(false) => "✗",
                    None => "–",
                };
                let head = format!(
                    "| {name} | `{}` | {} | {} |",
                    a.label,
                    crate::fmt::num(a.measured_p99_ms),
                    crate::fmt::num(a.simulated_p99_ms)
                );
                let row = md
                    .lines()
                    .find(|l| l.starts_with(&head))
                    .unwrap_or_else(|| panic!("no row {head}\n{md}"));
                assert!(row.contains(&format!("| {mark} |")), "{row}");
                assert!(
                    row.ends_with(&format!("| {} |", a.why.as_deref().unwrap_or(""))),
                    "{row}"
                );
            }
        }
        assert_eq!(md.matches("### Simulated vs measured").count(), 2);
        assert!(md.contains("## Gates: 1 of 2 failed"), "{md}");
        assert!(md.contains("| kernel | 6.18.0-test |"));
    }
}
