//! JUnit XML export: one test case per function, a regression is a failure,
//! so CI systems show the gate in their test reports.

use std::fmt::Write;

use super::{pct, us, value_cells, Exporter};
use crate::error::ProfileError;
use crate::gate::{GateMode, GateReport, Verdict};

/// JUnit XML (the Ant/Surefire dialect CI systems read).
#[derive(Debug, Default, Clone, Copy)]
pub struct JunitExporter;

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

impl Exporter for JunitExporter {
    fn serialize(&self, r: &GateReport) -> Result<Vec<u8>, ProfileError> {
        let failures = r
            .results
            .iter()
            .filter(|f| f.verdict == Verdict::Regression)
            .count();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"slokit gate\" tests=\"{}\" failures=\"{failures}\">",
            r.results.len()
        );
        let _ = writeln!(
            s,
            "  <testsuite name=\"slokit gate\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
            r.results.len()
        );
        let mode = match r.mode {
            GateMode::CommittedProfile => "committed-profile",
            GateMode::Paired => "paired",
        };
        let _ = writeln!(
            s,
            "    <properties>\n      <property name=\"mode\" value=\"{mode}\"/>\n      <property name=\"method\" value=\"{}\"/>\n      <property name=\"metric\" value=\"{}\"/>\n    </properties>",
            xml(&r.method()),
            xml(&r.decided_by())
        );
        for f in &r.results {
            let summary = if r.instructions.contains_key(&f.function) {
                let [base, current, _] = value_cells(r, f);
                format!(
                    "{base} → {current} ({}); threshold {:.1} %; {}",
                    pct(f.change),
                    r.threshold * 100.0,
                    r.decided_by()
                )
            } else {
                format!(
                    "median {} → {} ({}, 95 % CI [{}, {}]); deadline {} → {}; threshold {:.1} %",
                    us(f.baseline_median_us),
                    us(f.current_median_us),
                    pct(f.change),
                    pct(f.change_ci[0]),
                    pct(f.change_ci[1]),
                    us(f.baseline_deadline_us),
                    us(f.current_deadline_us),
                    r.threshold * 100.0
                )
            };
            let _ = writeln!(
                s,
                "    <testcase classname=\"slokit.gate\" name=\"{}\">",
                xml(&f.function)
            );
            if f.verdict == Verdict::Regression {
                let _ = writeln!(
                    s,
                    "      <failure message=\"regression: {}\" type=\"regression\">{}</failure>",
                    xml(&pct(f.change)),
                    xml(&summary)
                );
            }
            let mut out = format!("{}: {summary}", f.verdict);
            for n in f
                .paired
                .iter()
                .map(|p| p.summary())
                .chain(f.notes.iter().cloned())
            {
                out.push('\n');
                out.push_str(&n);
            }
            let _ = writeln!(s, "      <system-out>{}</system-out>", xml(&out));
            let _ = writeln!(s, "    </testcase>");
        }
        let _ = writeln!(s, "  </testsuite>\n</testsuites>");
        Ok(s.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_are_failures_and_text_is_escaped() {
        let out = String::from_utf8(
            JunitExporter
                .serialize(&crate::gate::export::tests::report())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out.matches("<failure").count(), 1, "{out}");
        assert!(out.contains("failures=\"1\""));
        assert!(out.contains("a &lt;note&gt; &amp; more"), "{out}");
    }
}
