//! The report's plots, drawn with plotters to SVG strings (no fonts
//! needed: the SVG backend emits `<text>` and the browser renders it):
//! response-time CDFs (log x), slowdown against service time (log–log, as
//! in SFS's figures), and the two-level agent's S and queue length over
//! time. Colours are the Okabe–Ito palette, readable with colour blindness.

use hdrhistogram::Histogram;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::aggregate::RunTimeline;
use crate::fmt::{num, tick};
use crate::ReportError;

/// The colour of a policy, shared by every plot and the HTML legend.
pub(crate) fn policy_color(policy: &str) -> RGBColor {
    match policy {
        "cfs" => RGBColor(0, 114, 178),
        "fifo" => RGBColor(230, 159, 0),
        "two-level" => RGBColor(0, 158, 115),
        "srpt" => RGBColor(40, 40, 40),
        "ps" => RGBColor(204, 121, 167),
        "las" => RGBColor(213, 94, 0),
        _ => RGBColor(86, 180, 233),
    }
}

/// `#rrggbb` of a policy colour, for CSS.
pub(crate) fn policy_css(policy: &str) -> String {
    let RGBColor(r, g, b) = policy_color(policy);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn plot_err<E: std::fmt::Debug>(plot: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot {
        plot: plot.to_string(),
        message: format!("{e:?}"),
    }
}

/// A log axis over `lo..hi` with readable ticks: 1-2-5 per decade (1-2-3-5
/// when the range is short, only powers of ten when it is long) and light grid lines at every integer multiple. plotters' own
/// log ticks start at the first power of ten, which leaves ranges such as
/// 150–900 ms without labels.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let decades = (hi / lo).log10();
    let mults: &[f64] = if decades > 3.5 {
        &[1.0]
    } else if decades > 1.2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0, 2.0, 3.0, 5.0]
    };
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut bold = Vec::new();
    let mut light = Vec::new();
    for k in first..=last {
        let p = 10f64.powi(k);
        for m in 1..10 {
            let v = f64::from(m) * p;
            if v < lo || v > hi {
                continue;
            }
            if mults.contains(&f64::from(m)) {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
    }
    (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

/// Draws with `f` on a `w`×`h` SVG and returns the SVG text.
fn svg<F>(title: &str, (w, h): (u32, u32), f: F) -> Result<String, ReportError>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), ReportError>,
{
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(title))?;
        f(&root)?;
        root.present().map_err(plot_err(title))?;
    }
    Ok(buf)
}

/// One line of a CDF plot.
pub(crate) struct CdfSeries {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    /// (response ms, cumulative share)
    pub points: Vec<(f64, f64)>,
}

/// The empirical CDF of a µs histogram as (ms, share) points, thinned to
/// steps of at least 0.5 % on a log scale (a few hundred points).
pub(crate) fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len();
    if total == 0 {
        return Vec::new();
    }
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut seen = 0u64;
    let recorded: Vec<_> = h.iter_recorded().collect();
    for (i, v) in recorded.iter().enumerate() {
        seen += v.count_since_last_iteration();
        let x = v.value_iterated_to().max(1) as f64 / 1000.0;
        let y = seen as f64 / total as f64;
        let last = i + 1 == recorded.len();
        match out.last() {
            Some(&(px, _)) if !last && x / px < 1.005 => {
                if let Some(p) = out.last_mut() {
                    p.1 = y;
                }
            }
            _ => out.push((x, y)),
        }
    }
    out
}

/// Response-time CDF, one line per policy, deadline as a vertical line.
pub(crate) fn cdf(
    title: &str,
    series: &[CdfSeries],
    deadline_ms: Option<f64>,
) -> Result<String, ReportError> {
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(deadline_ms);
    let (lo, hi) = xs.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (lo * 0.8, hi * 1.25)
    } else {
        (0.1, 10.0)
    };
    svg(title, (560, 360), |root| {
        let e = plot_err(title);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 21))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(66)
            .build_cartesian_2d(log_axis(lo, hi), 0.0..1.0)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("response time (ms, log scale)")
            .y_desc("share of invocations ≤ x")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(&e)?;
        if let Some(d) = deadline_ms {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    [(d, 0.0), (d, 1.0)],
                    5,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(&e)?
                .label(format!("deadline {} ms", num(d)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(1))
                });
        }
        for s in series {
            let style = s.color.stroke_width(2);
            let anno = if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
                    .map_err(&e)?
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(&e)?
            };
            anno.label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(&e)?;
        Ok(())
    })
}

/// Above this many functions the slowdown plot does not name them.
const MAX_NAMED_FUNCTIONS: usize = 12;

/// One function under one policy in the slowdown plot.
pub(crate) struct SlowdownPoint {
    pub function: String,
    pub policy: String,
    pub service_ms: f64,
    pub mean: f64,
    pub p99: f64,
}

/// Slowdown against service time: mean (filled) and p99 (open) per
/// function × policy, log–log; policies are spread slightly along x so
/// they do not hide each other.
pub(crate) fn slowdown(
    title: &str,
    points: &[SlowdownPoint],
    policies: &[String],
) -> Result<String, ReportError> {
    let xs = points.iter().map(|p| p.service_ms);
    let ys = points.iter().flat_map(|p| [p.mean, p.p99]);
    let (xlo, xhi) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let (ylo, yhi) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let (xlo, xhi) = if xlo.is_finite() && xhi > 0.0 {
        (xlo / 2.0, xhi * 2.0)
    } else {
        (0.1, 100.0)
    };
    let (ylo, yhi) = if ylo.is_finite() && yhi > 0.0 {
        ((ylo * 0.8).min(0.9), yhi * 2.0)
    } else {
        (0.9, 10.0)
    };
    let n = policies.len().max(1) as f64;
    let jitter = |policy: &str| {
        let i = policies.iter().position(|p| p == policy).unwrap_or(0) as f64;
        ((i - (n - 1.0) / 2.0) * 0.07).exp()
    };
    svg(title, (1100, 430), |root| {
        let e = plot_err(title);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 21))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(log_axis(xlo, xhi), log_axis(ylo, yhi))
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("median service time (ms, log scale)")
            .y_desc("slowdown = response / service (log)")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(242, 242, 242))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(&e)?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                [(xlo, 1.0), (xhi, 1.0)],
                4,
                4,
                grey.stroke_width(1),
            ))
            .map_err(&e)?;
        for policy in policies {
            let color = policy_color(policy);
            let mine: Vec<&SlowdownPoint> = points.iter().filter(|p| &p.policy == policy).collect();
            if mine.is_empty() {
                continue;
            }
            let j = jitter(policy);
            chart
                .draw_series(mine.iter().map(|p| {
                    PathElement::new(
                        vec![(p.service_ms * j, p.mean), (p.service_ms * j, p.p99)],
                        color.mix(0.6).stroke_width(1),
                    )
                }))
                .map_err(&e)?;
            chart
                .draw_series(
                    mine.iter()
                        .map(|p| Circle::new((p.service_ms * j, p.p99), 5, color.stroke_width(2))),
                )
                .map_err(&e)?;
            chart
                .draw_series(
                    mine.iter()
                        .map(|p| Circle::new((p.service_ms * j, p.mean), 5, color.filled())),
                )
                .map_err(&e)?
                .label(policy.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        // Function names above each function's highest point (unless
        // there are too many to read; the tables name them then).
        let mut labelled: Vec<(&str, f64, f64)> = Vec::new();
        for p in points {
            match labelled.iter_mut().find(|(f, _, _)| *f == p.function) {
                Some(l) => l.2 = l.2.max(p.p99),
                None => labelled.push((&p.function, p.service_ms, p.p99)),
            }
        }
        if labelled.len() > MAX_NAMED_FUNCTIONS {
            labelled.clear();
        }
        chart
            .draw_series(labelled.iter().map(|(f, x, y)| {
                Text::new(
                    f.to_string(),
                    (*x / 1.08, (*y * 1.25).min(yhi / 1.05)),
                    ("sans-serif", 16).into_font().color(&BLACK),
                )
            }))
            .map_err(&e)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(&e)?;
        Ok(())
    })
}

/// Keeps at most `max` points: the first of each stride for the slice
/// (it moves slowly) and the stride's largest queue (spikes matter).
fn thin(points: &[slokit_model::record::TimelinePoint], max: usize) -> Vec<(f64, f64, f64)> {
    let stride = points.len().div_ceil(max.max(1)).max(1);
    points
        .chunks(stride)
        .map(|c| {
            let q = c.iter().map(|p| p.queue_len).max().unwrap_or(0);
            (c[0].t_s, c[0].slice_ms, f64::from(q))
        })
        .collect()
}

/// The two-level agent's FIFO slice S (top) and its queue length (bottom)
/// over time, one line per repetition.
pub(crate) fn timeline(title: &str, runs: &[RunTimeline]) -> Result<String, ReportError> {
    type Thinned = (u32, Vec<(f64, f64, f64)>);
    let thinned: Vec<Thinned> = runs
        .iter()
        .map(|r| (r.repetition, thin(&r.points, 1200)))
        .collect();
    let all = thinned.iter().flat_map(|(_, p)| p.iter());
    let (t_hi, s_hi, q_hi) = all.fold((0.0f64, 0.0f64, 0.0f64), |(t, s, q), p| {
        (t.max(p.0), s.max(p.1), q.max(p.2))
    });
    let t_hi = if t_hi > 0.0 { t_hi } else { 1.0 };
    let shades = |i: usize, base: RGBColor| {
        let f = 1.0 - 0.3 * (i as f64).min(2.0) / 2.0;
        RGBColor(
            (base.0 as f64 * f) as u8,
            (base.1 as f64 * f) as u8,
            (base.2 as f64 * f) as u8,
        )
        .mix(if i == 0 { 1.0 } else { 0.75 })
    };
    svg(title, (1100, 460), |root| {
        let e = plot_err(title);
        let root = root.titled(title, ("sans-serif", 21)).map_err(&e)?;
        let (top, bottom) = root.split_vertically(200);
        for (area, what) in [(&top, 0), (&bottom, 1)] {
            let (y_hi, desc, base) = if what == 0 {
                (s_hi.max(1.0) * 1.45, "S (ms)", policy_color("two-level"))
            } else {
                (q_hi.max(1.0) * 1.45, "queue length", policy_color("cfs"))
            };
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(if what == 1 { 38 } else { 22 })
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..t_hi, 0.0..y_hi)
                .map_err(&e)?;
            chart
                .configure_mesh()
                .x_desc(if what == 1 {
                    "time since the agent started (s)"
                } else {
                    ""
                })
                .y_desc(desc)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(&e)?;
            for (i, (rep, pts)) in thinned.iter().enumerate() {
                let style = shades(i, base).stroke_width(if i == 0 { 2 } else { 1 });
                let series = pts.iter().map(|p| (p.0, if what == 0 { p.1 } else { p.2 }));
                chart
                    .draw_series(LineSeries::new(series, style))
                    .map_err(&e)?
                    .label(format!("repetition {rep}"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(&e)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_points_rise_to_one() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        let p = cdf_points(&h);
        assert!(p.len() > 50 && p.len() < 2000, "{}", p.len());
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(p.last().unwrap().1, 1.0);
        assert!((p.last().unwrap().0 - 100.0).abs() < 0.2, "{:?}", p.last());
    }

    #[test]
    fn log_axes_label_ranges_within_a_decade() {
        let ticks = |lo, hi| log_axis(lo, hi).bold_points().to_vec();
        assert_eq!(ticks(150.0, 900.0), [200.0, 300.0, 500.0]);
        assert_eq!(ticks(0.8, 130.0), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(ticks(0.5, 50_000.0), [1.0, 10.0, 100.0, 1000.0, 10_000.0]);
    }

    #[test]
    fn plots_have_axis_labels_as_text() {
        let s = CdfSeries {
            label: "cfs".into(),
            color: policy_color("cfs"),
            dashed: false,
            points: vec![(1.0, 0.1), (2.0, 0.5), (10.0, 1.0)],
        };
        let svg = cdf("auth", &[s], Some(4.0)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        // The SVG backend writes text content on its own line.
        let text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        assert!(text("response time (ms, log scale)"), "axis description");
        assert!(text("deadline 4.00 ms"), "legend");
        assert!(text("50 %"), "y tick labels");
    }
}
