//! The HTML exporter: ONE self-contained file — inline CSS, plots as inline
//! SVG drawn with plotters, no external resources — with the environment
//! header, gates, and per scenario the headline, verdicts, tables, the
//! simulator's p99 against the measured one, the response-time CDF of
//! every function, slowdown against service time and
//! the two-level agent's S and queue length over time.
//!
//! A tiny inline script (the page needs none to display) counts the plots
//! that actually rendered and writes the count into
//! `<body data-plots-rendered>`, next to `data-plots-expected`, so a test
//! in a real headless browser can check the page (see the tests below).

use slokit_model::record::{decode_histogram, RunKind};

use crate::aggregate::{BOUND, REFERENCE};
use crate::export::{agreement_rows, agreement_title, created_utc, environment_rows, Exporter};
use crate::fmt::{count, num, pct, times};
use crate::plot::{self, CdfSeries, SlowdownPoint};
use crate::{PolicyFigures, Report, ReportError, ScenarioReport, Spread};

/// Writes the self-contained HTML report.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtmlExporter;

const STYLE: &str = r#"
:root { --fg:#1d2228; --muted:#5f6b76; --line:#d9dee3; --bg:#ffffff; --soft:#f5f7f9; --ok:#0a7d4f; --bad:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 28px 60px; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:21px; margin:40px 0 6px; padding-top:14px; border-top:2px solid var(--line); }
h3 { font-size:16px; margin:26px 0 8px; color:#30373e; }
.sub, .muted { color:var(--muted); }
.env { display:grid; grid-template-columns:repeat(4, minmax(0,1fr)); gap:8px 18px; margin:16px 0 8px; padding:12px 16px; background:var(--soft); border:1px solid var(--line); border-radius:8px; }
.env div { min-width:0; } .env dt { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); } .env dd { margin:0; overflow-wrap:anywhere; }
nav a { margin-right:14px; }
.headline { margin:10px 0 4px; padding:12px 16px; border-left:4px solid #009e73; background:#eef8f4; border-radius:4px; font-size:16px; }
.headline p { margin:2px 0; }
ul.verdicts { padding-left:20px; } ul.verdicts li { margin:3px 0; }
table { border-collapse:collapse; width:100%; font-size:13px; font-variant-numeric:tabular-nums; }
th, td { padding:4px 6px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; vertical-align:top; }
th { background:var(--soft); font-weight:600; white-space:normal; vertical-align:bottom; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align:left; }
tr.first td { border-top:2px solid #b8c0c8; }
tr.sim td { color:#4a535c; background:#fafbfc; }
td small { display:block; color:var(--muted); font-size:11px; }
td.fn { white-space:normal; min-width:92px; } td.fn b { font-size:14px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:baseline; }
.win { font-weight:700; }
.gates { list-style:none; padding:0; } .gates li { margin:4px 0; font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:13px; }
.badge { display:inline-block; min-width:44px; text-align:center; padding:1px 6px; margin-right:8px; border-radius:4px; color:#fff; font-weight:700; font-family:system-ui,sans-serif; }
.pass { background:var(--ok); } .fail { background:var(--bad); }
.grid { display:grid; grid-template-columns:repeat(2, minmax(0,1fr)); gap:14px; }
figure.plot { margin:0; border:1px solid var(--line); border-radius:8px; padding:6px; background:#fff; }
figure.plot svg { display:block; width:100%; height:auto; }
figure.plot figcaption { font-size:12.5px; color:var(--muted); padding:2px 6px 4px; }
.notes li { color:#4a535c; }
table.agreement td.why { white-space:normal; text-align:left; min-width:260px; color:#4a535c; }
table.agreement td.mark, table.agreement th.mark { text-align:center; font-weight:700; }
table.agreement th.why { text-align:left; }
td.mark.ok { color:var(--ok); } td.mark.bad { color:var(--bad); } td.mark.none { color:var(--muted); }
pre { background:var(--soft); padding:12px; border-radius:6px; overflow:auto; font-size:12.5px; }
footer { margin-top:40px; color:var(--muted); font-size:12.5px; }
"#;

/// Counts plots that rendered (an `svg` with a non-empty box and text)
/// and script or resource errors, and records both on `<body>` once the
/// page has loaded; the report itself does not need it. It sits in
/// `<head>` so the error listener sees everything after it.
const CHECK_SCRIPT: &str = r#"
(function () {
  var errors = 0;
  window.addEventListener("error", function () { errors += 1; }, true);
  window.addEventListener("load", function () {
    var rendered = 0;
    document.querySelectorAll("figure.plot").forEach(function (f) {
      var s = f.querySelector("svg");
      if (s && s.getBoundingClientRect().width > 0 && s.querySelectorAll("text").length > 0) { rendered += 1; }
    });
    document.body.setAttribute("data-plots-rendered", String(rendered));
    document.body.setAttribute("data-errors", String(errors));
  });
})();
"#;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An id fragment from a name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Makes a plotters SVG scale with its container and gives it a title.
fn embed(svg: &str, title: &str) -> String {
    let open_end = svg.find('>').unwrap_or(0);
    let open = &svg[..open_end];
    let rest = &svg[open_end + 1..];
    let mut attrs: Vec<&str> = open
        .trim_start_matches("<svg")
        .split_whitespace()
        .filter(|a| !a.starts_with("width=") && !a.starts_with("height="))
        .collect();
    attrs.push("role=\"img\"");
    format!(
        "<svg {} aria-label=\"{}\"><title>{}</title>{}",
        attrs.join(" "),
        esc(title),
        esc(title),
        rest
    )
}

fn figure(svg: &str, title: &str, caption: &str, out: &mut String, plots: &mut usize) {
    *plots += 1;
    out.push_str(&format!(
        "<figure class=\"plot\">{}<figcaption>{}</figcaption></figure>\n",
        embed(svg, title),
        caption
    ));
}

/// A table cell: mean with the min–max range underneath.
fn cell(s: &Spread, f: impl Fn(f64) -> String) -> String {
    let (lo, hi) = (f(s.min), f(s.max));
    if s.n > 1 && lo != hi {
        format!("<td>{}<small>{lo}–{hi}</small></td>", f(s.mean))
    } else {
        format!("<td>{}</td>", f(s.mean))
    }
}

fn opt_cell(s: Option<&Spread>, f: impl Fn(f64) -> String) -> String {
    s.map_or_else(|| "<td>–</td>".into(), |s| cell(s, f))
}

fn pct1(v: f64) -> String {
    pct(v)
}

fn policy_name(p: &str, kind: RunKind) -> String {
    let sw = format!(
        "<span class=\"sw\" style=\"background:{}\"></span>",
        plot::policy_css(p)
    );
    match kind {
        RunKind::Measured => format!("{sw}{}", esc(p)),
        RunKind::Simulated => format!("{sw}{} <span class=\"muted\">(sim)</span>", esc(p)),
    }
}

fn figures_row(p: &PolicyFigures, first_cell: &str, first: bool, winner: bool) -> String {
    let mut classes = Vec::new();
    if first {
        classes.push("first");
    }
    if p.kind == RunKind::Simulated {
        classes.push("sim");
    }
    format!(
        "<tr class=\"{}\">{first_cell}<td{}>{}</td>{}{}{}{}{}{}{}{}{}<td>{}</td></tr>\n",
        classes.join(" "),
        if winner { " class=\"win\"" } else { "" },
        policy_name(&p.policy, p.kind),
        opt_cell(p.slo_attainment.as_ref(), pct1),
        cell(&p.p50_ms, num),
        cell(&p.p99_ms, num),
        cell(&p.p999_ms, num),
        opt_cell(p.mean_slowdown.as_ref(), num),
        opt_cell(p.p99_slowdown.as_ref(), num),
        opt_cell(p.share_slowdown_le_2.as_ref(), pct1),
        cell(&p.errors, count),
        cell(&p.invocations, count),
        p.vs_bound
            .and_then(|b| b.p99)
            .map_or_else(|| "–".into(), times),
    )
}

fn scenario(s: &ScenarioReport, out: &mut String, plots: &mut usize) -> Result<(), ReportError> {
    out.push_str(&format!(
        "<section id=\"scenario-{}\">\n<h2>Scenario <code>{}</code></h2>\n",
        slug(&s.name),
        esc(&s.name)
    ));
    let duration = s
        .duration_s
        .map_or_else(String::new, |d| format!(" of {} s", num(d.mean)));
    out.push_str(&format!(
        "<p class=\"sub\">{}{}{} repetition(s){duration} per policy · figures are means over repetitions, min–max underneath where they differ</p>\n",
        esc(&s.description),
        if s.description.is_empty() { "" } else { " · " },
        s.repetitions
    ));
    out.push_str("<div class=\"headline\">");
    for l in &s.headline.lines {
        out.push_str(&format!("<p>{}</p>", esc(l)));
    }
    out.push_str("</div>\n<h3>Verdicts</h3>\n<ul class=\"verdicts\">\n");
    for f in &s.functions {
        out.push_str(&format!("<li>{}</li>\n", esc(&f.verdict.text)));
    }
    out.push_str("</ul>\n");

    out.push_str("<h3>Per function and policy</h3>\n<div style=\"overflow-x:auto\"><table>\n<thead><tr><th>function</th><th>policy</th><th>SLO met</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>mean slowdown</th><th>p99 slowdown</th><th>slowdown ≤ 2</th><th>errors</th><th>invocations</th><th>p99 / SRPT</th></tr></thead>\n<tbody>\n");
    for f in &s.functions {
        let rows: Vec<&PolicyFigures> = f.measured.iter().chain(&f.simulated).collect();
        let mut head = format!("<b>{}</b>", esc(&f.label));
        if f.function != f.label {
            head.push_str(&format!(
                " <span class=\"muted\">({})</span>",
                esc(&f.function)
            ));
        }
        if let Some(d) = f.deadline_ms {
            head.push_str(&format!("<small>deadline {} ms</small>", num(d)));
        }
        if let Some(sv) = f.service_ms {
            let class = match f.class {
                Some(crate::FunctionClass::Short) => " · short",
                Some(crate::FunctionClass::Long) => " · long",
                None => "",
            };
            head.push_str(&format!("<small>service {} ms{class}</small>", num(sv)));
        }
        let first_cell = format!("<td class=\"fn\" rowspan=\"{}\">{head}</td>", rows.len());
        for (i, p) in rows.iter().enumerate() {
            let winner =
                p.kind == RunKind::Measured && f.verdict.winner.as_deref() == Some(&p.policy);
            out.push_str(&figures_row(
                p,
                if i == 0 { &first_cell } else { "" },
                i == 0,
                winner,
            ));
        }
    }
    out.push_str("</tbody></table></div>\n");

    if !s.goodput.is_empty() {
        out.push_str("<h3>Goodput</h3>\n<p class=\"muted\">Successful invocations within their deadline per second, all functions together.</p>\n<table style=\"width:auto\"><thead><tr><th>policy</th><th>goodput /s</th></tr></thead><tbody>\n");
        for g in &s.goodput {
            out.push_str(&format!(
                "<tr class=\"{}\"><td>{}</td>{}</tr>\n",
                if g.kind == RunKind::Simulated {
                    "sim"
                } else {
                    ""
                },
                policy_name(&g.policy, g.kind),
                cell(&g.per_s, num)
            ));
        }
        out.push_str("</tbody></table>\n");
    }

    if !s.model_agreement.is_empty() {
        out.push_str(&format!(
            "<h3>{}</h3>\n<ul class=\"verdicts\">\n",
            esc(&agreement_title())
        ));
        for l in s.agreement_summary() {
            out.push_str(&format!("<li>{}</li>\n", esc(&l)));
        }
        out.push_str("</ul>\n<div style=\"overflow-x:auto\"><table class=\"agreement\">\n<thead><tr><th>policy</th><th>function</th><th>measured p99 ms</th><th>simulated p99 ms</th><th>simulated / measured</th><th class=\"mark\">agrees</th><th class=\"why\">why</th></tr></thead>\n<tbody>\n");
        for r in agreement_rows(s) {
            let class = match r.mark {
                "✓" => "ok",
                "✗" => "bad",
                _ => "none",
            };
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mark {class}\">{}</td><td class=\"why\">{}</td></tr>\n",
                esc(&r.policy),
                esc(&r.function),
                r.measured_ms,
                r.simulated_ms,
                r.ratio,
                r.mark,
                esc(&r.why)
            ));
        }
        out.push_str("</tbody></table></div>\n");
    }

    // Response-time CDFs.
    out.push_str("<h3>Response-time CDF</h3>\n<p class=\"muted\">All repetitions pooled; dashed black: the simulated SRPT bound; dashed grey: the deadline.</p>\n<div class=\"grid\">\n");
    for f in &s.functions {
        let mut series = Vec::new();
        let sources = f
            .measured
            .iter()
            .chain(f.simulated.iter().filter(|p| p.policy == BOUND));
        for p in sources {
            let h = decode_histogram(&p.response_histogram).map_err(|message| {
                ReportError::Histogram {
                    what: format!("{} under {} in the report", f.label, p.policy),
                    message,
                }
            })?;
            let points = plot::cdf_points(&h);
            if points.is_empty() {
                continue;
            }
            series.push(CdfSeries {
                label: match p.kind {
                    RunKind::Measured => p.policy.clone(),
                    RunKind::Simulated => format!("{} (sim)", p.policy),
                },
                color: plot::policy_color(&p.policy),
                dashed: p.kind == RunKind::Simulated,
                points,
            });
        }
        if series.is_empty() {
            continue;
        }
        let title = format!("{}: response-time CDF", f.label);
        let svg = plot::cdf(&title, &series, f.deadline_ms)?;
        figure(
            &svg,
            &format!("{} / {}", s.name, title),
            &format!("<b>{}</b> in <code>{}</code>", esc(&f.label), esc(&s.name)),
            out,
            plots,
        );
    }
    out.push_str("</div>\n");

    // Slowdown against service time.
    let mut order = s.policies.clone();
    if s.simulated_policies.iter().any(|p| p == BOUND) {
        order.push(BOUND.to_string());
    }
    let mut points = Vec::new();
    for f in &s.functions {
        let Some(service_ms) = f.service_ms else {
            continue;
        };
        for p in f
            .measured
            .iter()
            .chain(f.simulated.iter().filter(|p| p.policy == BOUND))
        {
            if let (Some(mean), Some(p99)) = (&p.mean_slowdown, &p.p99_slowdown) {
                points.push(SlowdownPoint {
                    function: f.label.clone(),
                    policy: p.policy.clone(),
                    service_ms,
                    mean: mean.mean,
                    p99: p99.mean,
                });
            }
        }
    }
    if !points.is_empty() {
        out.push_str("<h3>Slowdown against service time</h3>\n");
        let title = format!("{}: slowdown by service time (mean ● and p99 ○)", s.name);
        let svg = plot::slowdown(&title, &points, &order)?;
        figure(
            &svg,
            &title,
            "Per function and policy, means over repetitions; 1 is ideal; srpt is the simulated lower bound.",
            out,
            plots,
        );
    }

    // Two-level timeline.
    if !s.timelines.is_empty() {
        out.push_str(
            "<h3>Two-level agent: S and queue length over time</h3>
",
        );
        let title = format!("{}: {REFERENCE} FIFO slice S and queue length", s.name);
        let svg = plot::timeline(&title, &s.timelines)?;
        figure(
            &svg,
            &title,
            "S = mean inter-arrival time × c (top); requests waiting for a FIFO slot (bottom, largest per plotted step).",
            out,
            plots,
        );
    }

    if !s.notes.is_empty() {
        out.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for n in &s.notes {
            out.push_str(&format!("<li>{}</li>\n", esc(n)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

impl Exporter for HtmlExporter {
    fn extension(&self) -> &'static str {
        "html"
    }

    fn export(&self, report: &Report) -> Result<Vec<u8>, ReportError> {
        let mut body = String::new();
        let mut plots = 0usize;
        body.push_str(&format!(
            "<header>\n<h1>{}</h1>\n<p class=\"sub\">slokit compare · created {} · seed {} · schema {}</p>\n<dl class=\"env\">\n",
            esc(&report.title),
            created_utc(report),
            report.seed,
            esc(&report.schema)
        ));
        for (k, v) in environment_rows(report) {
            body.push_str(&format!("<div><dt>{k}</dt><dd>{}</dd></div>\n", esc(&v)));
        }
        body.push_str("</dl>\n<nav>");
        for s in &report.scenarios {
            body.push_str(&format!(
                "<a href=\"#scenario-{}\">{}</a>",
                slug(&s.name),
                esc(&s.name)
            ));
        }
        body.push_str("</nav>\n</header>\n");

        if !report.gates.is_empty() {
            let failed = report.gates.iter().filter(|g| !g.passed).count();
            body.push_str(&format!(
                "<h2>Gates <span class=\"muted\">({})</span></h2>\n<ul class=\"gates\">\n",
                if failed == 0 {
                    "all passed".to_string()
                } else {
                    format!("{failed} of {} failed", report.gates.len())
                }
            ));
            for g in &report.gates {
                let (class, word) = if g.passed {
                    ("pass", "PASS")
                } else {
                    ("fail", "FAIL")
                };
                let line = g.line();
                let detail = line.split_once(' ').map_or(line.as_str(), |(_, d)| d);
                body.push_str(&format!(
                    "<li><span class=\"badge {class}\">{word}</span>{}</li>\n",
                    esc(detail)
                ));
            }
            body.push_str("</ul>\n");
        }

        for s in &report.scenarios {
            scenario(s, &mut body, &mut plots)?;
        }

        let settings = serde_json::to_string_pretty(&report.settings)?;
        body.push_str(&format!(
            "<h2>Experiment settings</h2>\n<pre>{}</pre>\n<footer>Generated by slokit {}. Self-contained: no external resources. The machine-readable form of this report is schema <code>{}</code> (docs/report.md).</footer>\n",
            esc(&settings),
            esc(&report.environment.slokit_version),
            esc(&report.schema)
        ));

        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — slokit compare</title>\n<style>{STYLE}</style>\n<script>{CHECK_SCRIPT}</script>\n</head>\n<body data-plots-expected=\"{plots}\">\n<main>\n{body}</main>\n</body>\n</html>\n",
            esc(&report.title)
        );
        Ok(html.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    /// Plots the fixture report must contain: a CDF per function, a
    /// slowdown plot per scenario, a timeline per scenario with two-level
    /// timelines.
    fn expected_plots(r: &Report) -> usize {
        r.scenarios
            .iter()
            .map(|s| s.functions.len() + 1 + usize::from(!s.timelines.is_empty()))
            .sum()
    }

    #[test]
    fn is_self_contained_deterministic_and_counts_its_plots() {
        let report = testdata::report();
        let a = HtmlExporter.export(&report).unwrap();
        assert_eq!(a, HtmlExporter.export(&report).unwrap(), "deterministic");
        let html = String::from_utf8(a).unwrap();
        let n = expected_plots(&report);
        assert!(
            html.contains(&format!("data-plots-expected=\"{n}\"")),
            "expected {n}"
        );
        assert_eq!(html.matches("<figure class=\"plot\">").count(), n);
        for banned in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
            assert!(!html.contains(banned), "external resource: {banned}");
        }
        assert!(html.contains("6.18.0-test") && html.contains("FAIL") && html.contains("PASS"));
        let entries: Vec<&crate::Agreement> = report
            .scenarios
            .iter()
            .flat_map(|s| &s.model_agreement)
            .collect();
        assert_eq!(
            html.matches("<td class=\"mark bad\">✗</td>").count(),
            entries.iter().filter(|a| a.within == Some(false)).count()
        );
        assert_eq!(
            html.matches("<td class=\"mark ok\">✓</td>").count(),
            entries.iter().filter(|a| a.within == Some(true)).count()
        );
        assert_eq!(html.matches("<td class=\"mark ").count(), entries.len());
        for l in report.scenarios.iter().flat_map(|s| s.agreement_summary()) {
            assert!(html.contains(&esc(&l)), "missing {l}");
        }
    }

    #[test]
    fn escapes_text_from_records() {
        let mut report = testdata::report();
        report.title = "<script>alert(1)</script>".into();
        let html = String::from_utf8(HtmlExporter.export(&report).unwrap()).unwrap();
        assert!(!html.contains("<script>alert(1)"));
        assert!(html.contains("&lt;script&gt;alert(1)"));
    }

    /// Finds a Chromium binary on PATH.
    fn chromium() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH")?;
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
            .find(|p| p.is_file())
    }

    /// Chromium, or `None` after saying why the browser test is skipped
    /// (in CI a missing browser is a failure).
    fn browser_or_skip() -> Option<std::path::PathBuf> {
        let found = chromium();
        if found.is_none() {
            if std::env::var_os("CI").is_some() {
                panic!("chromium is not installed; run `cargo xtask setup` (installs Debian's chromium) — the HTML report test needs a real browser in CI");
            }
            eprintln!("skipping the browser test: chromium not found on PATH (install it with `cargo xtask setup`)");
        }
        found
    }

    /// Loads `html` in headless Chromium; returns the DOM after `load` and
    /// the console lines Chromium logged (`…:CONSOLE…] "message", source: …`).
    fn open_in_chromium(bin: &std::path::Path, html: &[u8]) -> (String, Vec<String>) {
        use std::io::Read;
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("report.html");
        std::fs::write(&page, html).unwrap();
        let profile = dir.path().join("profile");
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=1",
                "--window-size=1400,3000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("file://{}", page.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).map(|_| s)
        });
        let err_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            err.read_to_end(&mut b).map(|_| b)
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dom = out_reader.join().unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap().unwrap()).into_owned();
        let console = stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect();
        (dom, console)
    }

    fn body_attr(dom: &str, name: &str) -> Option<usize> {
        let at = dom.find("<body")?;
        let tag = &dom[at..at + dom[at..].find('>')?];
        let key = format!("{name}=\"");
        let v = &tag[tag.find(&key)? + key.len()..];
        v[..v.find('"')?].parse().ok()
    }

    #[test]
    fn renders_every_plot_in_headless_chromium_without_console_errors() {
        let Some(bin) = browser_or_skip() else {
            return;
        };
        let report = testdata::report();
        let html = HtmlExporter.export(&report).unwrap();
        let (dom, console) = open_in_chromium(&bin, &html);
        let expected = expected_plots(&report);
        assert_eq!(
            body_attr(&dom, "data-plots-expected"),
            Some(expected),
            "{}",
            &dom[..dom.len().min(2000)]
        );
        assert_eq!(
            body_attr(&dom, "data-plots-rendered"),
            Some(expected),
            "every plot renders"
        );
        assert_eq!(body_attr(&dom, "data-errors"), Some(0));
        assert!(console.is_empty(), "console output: {console:#?}");
    }

    #[test]
    fn the_browser_check_catches_a_broken_script_and_a_missing_plot() {
        let Some(bin) = browser_or_skip() else {
            return;
        };
        let report = testdata::report();
        let html = String::from_utf8(HtmlExporter.export(&report).unwrap()).unwrap();
        // A script error: logged on the console and counted on <body>.
        let broken = html.replacen(
            "</main>",
            "</main><script>notDefinedAnywhere();</script>",
            1,
        );
        let (dom, console) = open_in_chromium(&bin, broken.as_bytes());
        assert_eq!(
            body_attr(&dom, "data-errors"),
            Some(1),
            "{}",
            &dom[..dom.len().min(2000)]
        );
        assert!(
            console.iter().any(|l| l.contains("notDefinedAnywhere")),
            "console: {console:#?}"
        );
        // A plot without its SVG is not counted as rendered.
        let at =
            html.find("<figure class=\"plot\"><svg").unwrap() + "<figure class=\"plot\">".len();
        let end = at + html[at..].find("</svg>").unwrap() + "</svg>".len();
        let missing = format!("{}<div></div>{}", &html[..at], &html[end..]);
        let (dom, _) = open_in_chromium(&bin, missing.as_bytes());
        let expected = expected_plots(&report);
        assert_eq!(body_attr(&dom, "data-plots-rendered"), Some(expected - 1));
    }

    /// Writes the fixture report in every format to `$SLOKIT_REPORT_DUMP`
    /// (a directory), for looking at it: `SLOKIT_REPORT_DUMP=/tmp/r cargo
    /// test -p slokit-report dump_fixture -- --ignored`.
    #[test]
    #[ignore = "writes files; run on demand"]
    fn dump_fixture_report() {
        let dir = std::path::PathBuf::from(
            std::env::var_os("SLOKIT_REPORT_DUMP").expect("set SLOKIT_REPORT_DUMP to a directory"),
        );
        std::fs::create_dir_all(&dir).unwrap();
        let report = testdata::report();
        for f in [
            crate::Format::Terminal,
            crate::Format::Json,
            crate::Format::Markdown,
            crate::Format::Html,
        ] {
            let e = crate::exporter_for(f);
            std::fs::write(
                dir.join(format!("report.{}", e.extension())),
                e.export(&report).unwrap(),
            )
            .unwrap();
        }
    }
}
