//! Terminal export: a comfy-table with one row per function.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, ContentArrangement, Table};

use super::{pct, value_cells, value_titles, Exporter};
use crate::error::ProfileError;
use crate::gate::{GateReport, Verdict};

/// A terminal table followed by notes and the overall result.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableExporter;

impl Exporter for TableExporter {
    fn serialize(&self, r: &GateReport) -> Result<Vec<u8>, ProfileError> {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec![
                "function",
                value_titles(r)[0],
                value_titles(r)[1],
                "change",
                "95 % CI",
                "deadline base → now",
                "verdict",
            ]);
        for f in &r.results {
            let color = match f.verdict {
                Verdict::Regression => Color::Red,
                Verdict::Improvement => Color::Green,
                Verdict::Unconfirmed => Color::Yellow,
                Verdict::Unchanged => Color::Reset,
            };
            let [base, current, deadline] = value_cells(r, f);
            t.add_row(vec![
                Cell::new(&f.function),
                Cell::new(base),
                Cell::new(current),
                Cell::new(pct(f.change)),
                Cell::new(format!(
                    "[{}, {}]",
                    pct(f.change_ci[0]),
                    pct(f.change_ci[1])
                )),
                Cell::new(deadline),
                Cell::new(format!(
                    "{}{}",
                    f.verdict,
                    if f.remeasured { " (re-measured)" } else { "" }
                ))
                .fg(color),
            ]);
        }
        let mut s = format!("{t}\n");
        for f in &r.results {
            if let Some(p) = &f.paired {
                s.push_str(&format!("note: {}: {}\n", f.function, p.summary()));
            }
            for n in &f.notes {
                s.push_str(&format!("note: {}: {n}\n", f.function));
            }
        }
        for w in &r.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s.push_str(&format!(
            "{} ({}; {}; threshold {:.1} %, {:.0} % CI)\n",
            if r.has_regression() {
                "REGRESSION"
            } else {
                "no regression"
            },
            r.method(),
            r.decided_by(),
            r.threshold * 100.0,
            r.confidence * 100.0
        ));
        Ok(s.into_bytes())
    }
}
