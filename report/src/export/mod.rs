//! Exporters: one file per format behind one trait (hyperfine's `export/`).
//! Each turns a [`Report`] into bytes; writing them somewhere is the
//! caller's business. All are deterministic: the same report gives the same
//! bytes.

mod html;
mod json;
mod markdown;
mod terminal;

use std::str::FromStr;

pub use html::HtmlExporter;
pub use json::JsonExporter;
pub use markdown::MarkdownExporter;
pub use terminal::TerminalExporter;

use crate::aggregate::{agreement_pair_name, AGREEMENT_TOLERANCE};
use crate::fmt::{num, times};
use crate::{Report, ReportError, ScenarioReport};

/// Renders a report in one format.
pub trait Exporter {
    /// The usual file extension (`txt`, `json`, `md`, `html`).
    fn extension(&self) -> &'static str;
    /// The report's bytes in this format.
    fn export(&self, report: &Report) -> Result<Vec<u8>, ReportError>;
}

/// The formats slokit writes (`--format`; `text`/`txt` and `md` are
/// accepted too, in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum Format {
    #[value(alias = "text", alias = "txt")]
    Terminal,
    Json,
    #[value(alias = "md")]
    Markdown,
    Html,
}

impl FromStr for Format {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Format as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| ReportError::UnknownFormat(s.to_string()))
    }
}

/// The default exporter of a format.
pub fn exporter_for(format: Format) -> Box<dyn Exporter> {
    match format {
        Format::Terminal => Box::new(TerminalExporter::default()),
        Format::Json => Box::new(JsonExporter::default()),
        Format::Markdown => Box::new(MarkdownExporter),
        Format::Html => Box::new(HtmlExporter),
    }
}

/// Short environment facts shared by the text formats, as (name, value).
pub(crate) fn environment_rows(report: &Report) -> Vec<(&'static str, String)> {
    let e = &report.environment;
    let isolation = match (&e.isolcpus, &e.nohz_full) {
        (None, None) => "none (no isolcpus/nohz_full)".to_string(),
        (i, n) => format!(
            "isolcpus={} nohz_full={}",
            i.as_deref().unwrap_or("–"),
            n.as_deref().unwrap_or("–")
        ),
    };
    let rt = match (e.rt_runtime_us, e.rt_period_us) {
        (Some(-1), _) => "RT throttling off".to_string(),
        (Some(r), Some(p)) => format!("RT throttling {r}/{p} µs"),
        _ => "RT throttling unknown".to_string(),
    };
    let mut rows = vec![
        (
            "CPU",
            e.cpu_model.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("cores", e.logical_cpus.to_string()),
        (
            "kernel",
            e.kernel.clone().unwrap_or_else(|| "unknown".into()),
        ),
        (
            "governor",
            format!(
                "{}{}",
                e.governor.as_deref().unwrap_or("n/a"),
                match e.turbo {
                    Some(true) => ", turbo on",
                    Some(false) => ", turbo off",
                    None => "",
                }
            ),
        ),
        ("isolation", format!("{isolation}; {rt}")),
        (
            "monitor",
            if report.monitors.is_empty() {
                "none".into()
            } else {
                report.monitors.join(", ")
            },
        ),
        ("slokit", e.slokit_version.clone()),
        ("seed", report.seed.to_string()),
    ];
    // External function hosts: what ran the functions slokit did not.
    for h in &e.function_hosts {
        rows.push((
            "function host",
            format!(
                "{}: `{}` ({})",
                h.label,
                h.command,
                h.runtime.as_deref().unwrap_or("runtime version unknown")
            ),
        ));
    }
    rows
}

/// The "Simulated vs measured" section's title, the same in every format.
pub(crate) fn agreement_title() -> String {
    format!(
        "Simulated vs measured (p99; ✓ within {:.0} %)",
        AGREEMENT_TOLERANCE * 100.0
    )
}

/// One row of the "Simulated vs measured" table, as text.
pub(crate) struct AgreementRow {
    /// `las`, or `cfs (sim ps)`.
    pub policy: String,
    pub function: String,
    pub measured_ms: String,
    pub simulated_ms: String,
    /// simulated / measured.
    pub ratio: String,
    /// `✓` within, `✗` outside, `–` not judged.
    pub mark: &'static str,
    /// Why outside, or why not judged; empty when within.
    pub why: String,
}

/// The rows of a scenario's model-agreement table, in the report's order.
pub(crate) fn agreement_rows(s: &ScenarioReport) -> Vec<AgreementRow> {
    s.model_agreement
        .iter()
        .map(|a| AgreementRow {
            policy: agreement_pair_name(&a.policy, &a.simulated_policy),
            function: a.label.clone(),
            measured_ms: num(a.measured_p99_ms),
            simulated_ms: num(a.simulated_p99_ms),
            ratio: a.ratio.map_or_else(|| "–".into(), times),
            mark: match a.within {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "–",
            },
            why: a.why.clone().unwrap_or_default(),
        })
        .collect()
}

/// The report's creation time as UTC `YYYY-MM-DD HH:MM:SS` (no clock read:
/// it formats `created_unix_ms`).
pub(crate) fn created_utc(report: &Report) -> String {
    let secs = report.created_unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_dates_format() {
        assert_eq!("MD".parse::<Format>().unwrap(), Format::Markdown);
        assert!("pdf".parse::<Format>().is_err());
        let mut r = crate::testdata::report();
        r.created_unix_ms = 1_795_000_000_000;
        assert_eq!(created_utc(&r), "2026-11-18 11:06:40 UTC");
    }

    #[test]
    fn external_function_hosts_get_a_row_each() {
        let mut r = crate::testdata::report();
        let rows = environment_rows(&r);
        assert!(rows.iter().all(|(k, _)| *k != "function host"));
        r.environment.function_hosts = vec![slokit_model::environment::FunctionHost {
            label: "py-aes".into(),
            command: ".venv/bin/gunicorn app:aes".into(),
            runtime: Some("gunicorn (version 27.0.1); Python 3.11.7".into()),
        }];
        let rows = environment_rows(&r);
        let row = rows.iter().find(|(k, _)| *k == "function host").unwrap();
        assert_eq!(
            row.1,
            "py-aes: `.venv/bin/gunicorn app:aes` (gunicorn (version 27.0.1); Python 3.11.7)"
        );
    }
}
