//! The pictures next to BENCHMARKS.md (`docs/bench/<backend>.svg`), drawn from the run's saved
//! data: per backend, the latency distribution of an uncontended acquire + release (ours next
//! to the raw floor, and on Redis next to the peer libraries measured in the same run), the
//! hand-off latency distribution, and throughput against the number of concurrent tasks.
//!
//! Every series has its own marker shape and line pattern as well as its colour, so the
//! pictures read in black and white. Drawn with `plotters`' SVG backend: text is written as
//! SVG `<text>` (no font is loaded), nothing is scripted, so they render on any Markdown host.

use std::path::{Path, PathBuf};

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::cycle::Role;
use crate::error::{BenchError, Result};
use crate::report::title;
use crate::run::{BackendResult, Report};
use crate::stats::{Cdf, Summary};

/// Where the pictures go, relative to the report.
pub const DIR: &str = "docs/bench";

const WIDTH: u32 = 1000;
const PANEL_H: u32 = 380;
const FONT: &str = "sans-serif";
const LEGEND_FONT: f64 = 16.0;
const LEGEND_ROW: u32 = 22;

/// The picture of `backend`, relative to the report's directory.
pub fn relative_path(backend: &str) -> String {
    format!("{DIR}/{backend}.svg")
}

/// Draws every backend's picture into `<dir of report>/docs/bench/`; returns the paths.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write_all(report: &Report, report_path: &Path) -> Result<Vec<PathBuf>> {
    let base = report_path.parent().unwrap_or_else(|| Path::new("."));
    let dir = base.join(DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::from(e).context(format!("creating {}", dir.display())))?;
    let mut written = Vec::new();
    for backend in &report.backends {
        let path = base.join(relative_path(&backend.key));
        let svg = backend_svg(report, backend)?;
        std::fs::write(&path, svg)
            .map_err(|e| BenchError::from(e).context(format!("writing {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// One line on a chart.
struct Series<'a> {
    label: String,
    summary: &'a Summary,
}

/// Colour, marker and dash per series index: distinguishable without colour.
fn style(i: usize) -> (RGBColor, usize) {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(0, 0, 0),
        RGBColor(0x00, 0x55, 0xcc),
        RGBColor(0xcc, 0x33, 0x00),
        RGBColor(0x00, 0x88, 0x44),
        RGBColor(0x88, 0x00, 0x88),
        RGBColor(0x77, 0x77, 0x77),
    ];
    (COLOURS[i % COLOURS.len()], i)
}

/// Draws a marker of kind `kind` at `at` on `area` (pixel offsets around the point).
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    kind: usize,
    colour: RGBColor,
) -> Result<()>
where
    CT::From: Clone,
{
    let s = 5;
    let line = colour.stroke_width(2);
    let point = EmptyElement::at(at);
    match kind % 6 {
        0 => area.draw(&(point + Circle::new((0, 0), s, colour.filled()))),
        1 => area.draw(
            &(point + Polygon::new(vec![(0, -s - 1), (s + 1, s), (-s - 1, s)], colour.filled())),
        ),
        2 => area.draw(&(point + Rectangle::new([(-s, -s), (s, s)], line))),
        3 => area.draw(
            &(point
                + PathElement::new(vec![(-s, -s), (s, s)], line)
                + PathElement::new(vec![(-s, s), (s, -s)], line)),
        ),
        4 => area.draw(&(point + Circle::new((0, 0), s, line))),
        _ => area.draw(
            &(point
                + PathElement::new(
                    vec![(0, -s - 1), (s + 1, s), (-s - 1, s), (0, -s - 1)],
                    line,
                )),
        ),
    }
    .map_err(err)
}

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::new(format!("drawing a benchmark plot: {e}"))
}

/// The SVG for one backend: two or three latency panels and the throughput panel.
///
/// # Errors
/// A drawing error of the SVG backend.
pub fn backend_svg(report: &Report, backend: &BackendResult) -> Result<String> {
    let name = title(&backend.key);
    let mut panels: Vec<(String, Vec<Series<'_>>)> = Vec::new();
    let row = |role| backend.row(role).map(|r| (r.label.clone(), &r.latency));
    let mut uncontended = Vec::new();
    for role in [Role::Ours, Role::OursStore, Role::Raw] {
        if let Some((label, summary)) = row(role) {
            uncontended.push(Series { label, summary });
        }
    }
    panels.push((
        format!("{name}: uncontended acquire + release, ours vs the raw floor"),
        uncontended,
    ));
    let peers = report.peers.as_ref().filter(|_| backend.key == "redis");
    if let Some(p) = peers {
        let mut s = vec![
            Series {
                label: "fencelock `Locker`".into(),
                summary: &p.ours_uncontended,
            },
            Series {
                label: "raw floor (SET NX PX + DEL)".into(),
                summary: &p.raw_uncontended,
            },
        ];
        s.extend(p.peers.iter().map(|peer| Series {
            label: peer.library.clone(),
            summary: &peer.uncontended,
        }));
        panels.push((
            format!("{name}: uncontended acquire + release, ours vs peer libraries (same rounds)"),
            s,
        ));
    }
    let mut handoff = vec![Series {
        label: "fencelock `Locker`".into(),
        summary: &backend.handoff.latency,
    }];
    if let Some(p) = peers {
        handoff.extend(p.peers.iter().map(|peer| Series {
            label: peer.library.clone(),
            summary: &peer.handoff.latency,
        }));
    }
    panels.push((
        format!(
            "{name}: hand-off, release → the next waiter's grant ({} waiters)",
            report.params.waiters
        ),
        handoff,
    ));
    // Each panel: the chart, then its legend below it (one row per series).
    let legend_h = |rows: usize| LEGEND_ROW * rows as u32 + 20;
    let heights: Vec<u32> = panels
        .iter()
        .map(|(_, series)| PANEL_H + legend_h(series.len()))
        .chain([PANEL_H + legend_h(2)])
        .collect();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, heights.iter().sum())).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut rest = root.clone();
        let mut areas = Vec::new();
        for &h in &heights {
            let (chart, below) = rest.split_vertically(PANEL_H);
            let (legend, next) = below.split_vertically(h - PANEL_H);
            areas.push((chart, legend));
            rest = next;
        }
        for ((caption, series), (chart, legend)) in panels.iter().zip(&areas) {
            cdf_panel(chart, legend, caption, series)?;
        }
        if let Some((chart, legend)) = areas.last() {
            throughput_panel(chart, legend, backend, report.params.tasks)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn cdf_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    legend_area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    series: &[Series<'_>],
) -> Result<()> {
    let drawn: Vec<&Cdf> = series
        .iter()
        .filter_map(|s| s.summary.cdf.as_ref())
        .collect();
    let values = || drawn.iter().flat_map(|c| c.points().map(|p| p.1));
    // A log axis needs finite, positive bounds (a run without distributions has none).
    let finite = || values().filter(|v| v.is_finite() && *v > 0.0);
    let lo = finite().fold(f64::INFINITY, f64::min);
    let lo = if lo.is_finite() { lo.max(1.0) } else { 10.0 };
    let hi = finite().fold(0.0, f64::max).max(lo * 3.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 21).into_font().color(&BLACK))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (log scale)")
        .y_desc("fraction of operations ≤ x")
        .axis_desc_style((FONT, 17).into_font().color(&BLACK))
        .label_style((FONT, 16).into_font().color(&BLACK))
        .x_label_formatter(&|v| {
            // 1, 2 and 5 times a power of ten only: a power of two such as 1024 µs would print
            // as a second "1.0 ms" beside 1000 µs.
            if one_two_five(*v) {
                format_us(*v)
            } else {
                String::new()
            }
        })
        .y_labels(6)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(err)?;
    if drawn.is_empty() {
        area.draw(&Text::new(
            "this run saved no latency distribution: re-run ./scripts/bench",
            (90, 80),
            (FONT, 18).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        return Ok(());
    }
    let mut entries = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let Some(cdf) = &s.summary.cdf else {
            continue;
        };
        let (colour, kind) = style(i);
        let points: Vec<(f64, f64)> = cdf.points().map(|(q, us)| (us, q)).collect();
        let line = colour.stroke_width(2);
        if i % 2 == 0 {
            chart
                .draw_series(LineSeries::new(points.clone(), line))
                .map_err(err)?;
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 4, line))
                .map_err(err)?;
        }
        // Markers at the deciles and at p99, each series its own shape.
        let at = [10, 30, 50, 70, 90, 99];
        let label = format!(
            "{} — p50 {}, p99 {} (n = {})",
            s.label.replace('`', ""),
            format_us(s.summary.p50_us),
            format_us(s.summary.p99_us),
            s.summary.n
        );
        for &p in at.iter().filter_map(|&k| points.get(k)) {
            draw_marker(chart.plotting_area(), p, kind, colour)?;
        }
        entries.push((i, label));
    }
    legend(
        legend_area,
        &chart.plotting_area().get_pixel_range(),
        &entries,
    )?;
    Ok(())
}

fn throughput_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    legend_area: &DrawingArea<SVGBackend<'_>, Shift>,
    backend: &BackendResult,
    tasks: usize,
) -> Result<()> {
    let name = title(&backend.key);
    let curve = |t: &crate::throughput::Throughput| -> Vec<(f64, f64)> {
        if t.by_tasks.is_empty() {
            vec![(tasks as f64, t.ops_per_sec)]
        } else {
            t.by_tasks.iter().map(|p| (p[0], p[1])).collect()
        }
    };
    let lines = [
        ("fencelock `Locker`", curve(&backend.throughput_ours)),
        ("raw floor", curve(&backend.throughput_raw)),
    ];
    let max_x = lines
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let max_y = lines
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{name}: throughput against concurrent tasks (each on its own name)"),
            (FONT, 21).into_font().color(&BLACK),
        )
        .margin(12)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d((0.8..max_x * 1.15).log_scale(), 0.0..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("concurrent tasks (log scale)")
        .y_desc("acquire + release per second")
        .axis_desc_style((FONT, 17).into_font().color(&BLACK))
        .label_style((FONT, 16).into_font().color(&BLACK))
        .x_label_formatter(&|v| {
            // The sweep's counts are powers of 4: label powers of 2 too.
            let power_of_two = *v >= 1.0 && v.log2().fract().abs() < 1e-9;
            if one_two_five(*v) || power_of_two {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(err)?;
    let mut entries = Vec::new();
    for (i, (label, points)) in lines.into_iter().enumerate() {
        let (colour, kind) = style(i);
        let line = colour.stroke_width(2);
        if i % 2 == 0 {
            chart
                .draw_series(LineSeries::new(points.clone(), line))
                .map_err(err)?;
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 4, line))
                .map_err(err)?;
        }
        for &p in &points {
            draw_marker(chart.plotting_area(), p, kind, colour)?;
        }
        entries.push((i, label.replace('`', "")));
    }
    legend(
        legend_area,
        &chart.plotting_area().get_pixel_range(),
        &entries,
    )?;
    Ok(())
}

/// The legend under a chart (`plot`: the chart's plotting area in pixels), each entry with
/// its series' line pattern and marker.
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &(std::ops::Range<i32>, std::ops::Range<i32>),
    entries: &[(usize, String)],
) -> Result<()> {
    let row = LEGEND_ROW as i32;
    let (x, y) = (plot.0.start - area.get_base_pixel().0, 4);
    for (n, (i, text)) in entries.iter().enumerate() {
        let (colour, kind) = style(*i);
        let cy = y + 5 + row * n as i32 + row / 2;
        let line = colour.stroke_width(2);
        if i % 2 == 0 {
            area.draw(&PathElement::new(vec![(x + 8, cy), (x + 40, cy)], line))
                .map_err(err)?;
        } else {
            area.draw(&PathElement::new(vec![(x + 8, cy), (x + 16, cy)], line))
                .map_err(err)?;
            area.draw(&PathElement::new(vec![(x + 28, cy), (x + 40, cy)], line))
                .map_err(err)?;
        }
        draw_marker(area, (x + 24, cy), kind, colour)?;
        area.draw(&Text::new(
            text.clone(),
            (x + 50, cy),
            (FONT, LEGEND_FONT)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Whether a log axis labels `v`: 1, 2 and 5 times a power of ten (more would overlap).
fn one_two_five(v: f64) -> bool {
    if !(v.is_finite() && v > 0.0) {
        return false;
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6 * m)
}

fn format_us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0} ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// The Markdown that embeds the pictures, one per backend.
pub fn markdown(report: &Report) -> String {
    let mut md = String::from(
        "## Pictures\n\nDrawn from this run's data by the same command (`docs/bench/`). Each \
         picture: the latency distribution of an uncontended acquire + release (ours and the \
         raw floor; on Redis also the peer libraries, from their interleaved rounds), the \
         hand-off latency distribution, and throughput against the number of concurrent \
         tasks (the full count of section 4, and 1, 4, 16, … tasks for two slices each). Markers \
         sit at p10, p30, p50, p70, p90 and p99; the legend gives p50 and p99.\n\n",
    );
    for b in &report.backends {
        md.push_str(&format!(
            "![{} latency and throughput]({})\n\n",
            title(&b.key),
            relative_path(&b.key)
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_label_one_two_five() {
        assert!(one_two_five(1.0) && one_two_five(20.0) && one_two_five(500.0));
        assert!(!one_two_five(30.0) && !one_two_five(0.0) && !one_two_five(f64::NAN));
    }

    #[test]
    fn formats_microseconds_for_axes() {
        assert_eq!(format_us(250.0), "250 µs");
        assert_eq!(format_us(2500.0), "2.5 ms");
        assert_eq!(format_us(25_000.0), "25 ms");
    }
}
