//! A picture of one run: the merged history drawn as an SVG timeline, one lane per worker.
//!
//! A table says "stale writes accepted: 0"; the picture shows *why*: worker 1's lease (token 6)
//! runs on through the shaded pause, worker 2 is granted token 7 and writes, and worker 1's
//! late write with token 6 is crossed out by the fence (or, in the control run, lands: a filled
//! triangle). Every kind of mark has its own shape, so the picture reads in black and white.
//!
//! The picture has two panels. The top one is the whole run at a glance (bars, fault bands,
//! rejected and stale writes); the bottom one zooms on the fault that matters most (the first
//! that a stale write accepted or rejected followed, else the first fault), where lease bars
//! carry their tokens and the marks their meaning. [`Timeline::from_history`] does the reading
//! (pure, unit-tested); [`render`] only draws, with `plotters`' SVG backend (text is written as
//! SVG `<text>`, so no font is loaded to draw it).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use fencelock_conformance::history::{COORDINATOR, Event, Op, Record};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::runner::{RunOutcome, RunSpec};

/// Where docs/RELIABILITY.md's pictures go, relative to the document.
pub const DIR: &str = "reliability";

/// The picture's file name for a run: its label with `/` as `-`, then `.svg`.
pub fn file_name(spec: &RunSpec) -> String {
    format!("{}.svg", spec.label().replace('/', "-"))
}

/// The picture of one run, titled with its label, seed and what became of its stale writes.
///
/// # Errors
/// A drawing error (see [`render`]).
pub fn render_run(outcome: &RunOutcome) -> Result<String, String> {
    let t = &outcome.timeline;
    let stale = t.count(MarkKind::StaleAccepted);
    let rejected = t.count(MarkKind::Rejected);
    let title = format!(
        "{} (seed {}): {} stale write{} accepted, {} rejected by the fence",
        outcome.spec.label(),
        outcome.spec.seed,
        stale,
        if stale == 1 { "" } else { "s" },
        rejected,
    );
    render(t, &title)
}

/// Writes the picture of each of `outcomes` into `dir` (created if missing), named by
/// [`file_name`].
///
/// # Errors
/// A drawing error, or a file that cannot be written.
pub fn write_all<'a>(
    outcomes: impl IntoIterator<Item = &'a RunOutcome>,
    dir: &Path,
) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut n = 0;
    for outcome in outcomes {
        let path = dir.join(file_name(&outcome.spec));
        std::fs::write(&path, render_run(outcome)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        n += 1;
    }
    Ok(n)
}

/// One lease as a bar: from its grant to its release (or the worker's last record, when the
/// worker was killed or the run ended first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token granted.
    pub token: u64,
    /// When the grant came back (ns, `CLOCK_MONOTONIC`).
    pub from: u64,
    /// When it was released, or the worker's last record with this token.
    pub to: u64,
    /// Whether a release ended it (false: the worker died or the run stopped first).
    pub released: bool,
    /// The first time its guard said invalid (a `Check` or a `Probe`), if it did.
    pub first_invalid: Option<u64>,
}

/// What became of one fenced read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// A write the resource accepted with a token not below its mark.
    Accepted,
    /// A read or write the fence rejected (token below the mark).
    Rejected,
    /// A write accepted although a higher token had already been accepted: what the fence
    /// exists to prevent (only the control run, without fencing, should have any).
    StaleAccepted,
}

/// One fenced operation on a lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// When the worker got the answer.
    pub t: u64,
    /// The token presented.
    pub token: u64,
    /// Read or write.
    pub op: Op,
    /// The highest token the resource had accepted before (the mark the token lost to).
    pub above: Option<u64>,
    /// What became of it.
    pub kind: MarkKind,
}

/// One worker's lane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lane {
    /// The worker id.
    pub worker: u32,
    /// Its leases, in grant order.
    pub leases: Vec<Lease>,
    /// Its writes (accepted, stale) and rejected operations, in time order.
    pub marks: Vec<Mark>,
}

/// A fault, from injection to heal (both the same instant for a kill or a cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The coordinator's name for it.
    pub name: String,
    /// Injected.
    pub from: u64,
    /// Healed (the run's end when it never was).
    pub to: u64,
}

/// Everything the picture shows, read from a merged history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// The first record's time: the picture's zero.
    pub start: u64,
    /// The last record's time.
    pub end: u64,
    /// One per worker, by id.
    pub lanes: Vec<Lane>,
    /// Faults in injection order.
    pub faults: Vec<Fault>,
    /// The window the detail panel shows.
    pub focus: (u64, u64),
    /// Every token granted, ascending: pictures number large tokens by their rank here.
    pub tokens: Vec<u64>,
}

impl Timeline {
    /// Reads `history` (merged, in time order, as `read_histories` returns it). `ttl` sets the
    /// margins of the detail window around its fault. An election observer (a worker that
    /// recorded `LeaderObserved`) gets no lane: it never holds nor writes. In a semaphore run
    /// each place has its own mark: a worker's read or write is placed by the in-memory
    /// oracle's record of it (written before the worker heard back).
    pub fn from_history(history: &[Record], ttl: Duration) -> Self {
        let observers: std::collections::HashSet<u32> = history
            .iter()
            .filter(|r| matches!(r.event, Event::LeaderObserved { .. }))
            .map(|r| r.w)
            .collect();
        let start = history.first().map_or(0, |r| r.t);
        let end = history.last().map_or(0, |r| r.t);
        let mut lanes: BTreeMap<u32, Lane> = BTreeMap::new();
        let mut faults: Vec<Fault> = Vec::new();
        // The highest token each place accepted so far (reads raise it too); `None`: the one
        // counter.
        let mut highs: HashMap<Option<u32>, u64> = HashMap::new();
        // (worker, token) → the place its operations go to, from the oracle's records.
        let mut places: HashMap<(u32, u64), u32> = HashMap::new();
        for r in history {
            if r.w == COORDINATOR {
                match &r.event {
                    Event::Oracle {
                        worker,
                        token,
                        slot: Some(slot),
                        ..
                    } => {
                        places.insert((*worker, *token), *slot);
                    }
                    Event::FaultInjected { fault, .. } => faults.push(Fault {
                        name: fault.clone(),
                        from: r.t,
                        to: end,
                    }),
                    Event::FaultHealed { fault } => {
                        if let Some(f) = faults
                            .iter_mut()
                            .rev()
                            .find(|f| f.name == *fault && f.to == end)
                        {
                            f.to = r.t;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if observers.contains(&r.w) {
                continue;
            }
            let lane = lanes.entry(r.w).or_insert_with(|| Lane {
                worker: r.w,
                ..Lane::default()
            });
            match r.event {
                Event::Acquired { token, .. } => lane.leases.push(Lease {
                    token,
                    from: r.t,
                    to: r.t,
                    released: false,
                    first_invalid: None,
                }),
                Event::Released { token, .. } => {
                    if let Some(l) = open(lane, token, r.t) {
                        l.released = true;
                    }
                }
                Event::Check { token, valid } | Event::Probe { token, valid } => {
                    if let Some(l) = open(lane, token, r.t)
                        && !valid
                        && l.first_invalid.is_none()
                    {
                        l.first_invalid = Some(r.t);
                    }
                }
                Event::Read { token, .. } => {
                    open(lane, token, r.t);
                    let place = places.get(&(r.w, token)).copied();
                    let high = highs.entry(place).or_insert(token);
                    *high = (*high).max(token);
                }
                Event::WriteAccepted { token, .. } => {
                    open(lane, token, r.t);
                    let place = places.get(&(r.w, token)).copied();
                    let high = highs.get(&place).copied();
                    let stale = high.is_some_and(|h| token < h);
                    lane.marks.push(Mark {
                        t: r.t,
                        token,
                        op: Op::Write,
                        above: high.filter(|_| stale),
                        kind: if stale {
                            MarkKind::StaleAccepted
                        } else {
                            MarkKind::Accepted
                        },
                    });
                    highs.insert(place, high.map_or(token, |h| h.max(token)));
                }
                Event::Rejected {
                    op,
                    token,
                    high_water,
                } => {
                    open(lane, token, r.t);
                    lane.marks.push(Mark {
                        t: r.t,
                        token,
                        op,
                        above: Some(high_water),
                        kind: MarkKind::Rejected,
                    });
                }
                Event::OpFailed { token, .. } => {
                    open(lane, token, r.t);
                }
                _ => {}
            }
        }
        let lanes: Vec<Lane> = lanes.into_values().collect();
        let focus = focus(&lanes, &faults, (start, end), ttl);
        let mut tokens: Vec<u64> = lanes
            .iter()
            .flat_map(|l| l.leases.iter().map(|l| l.token))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        Self {
            start,
            end,
            lanes,
            faults,
            focus,
            tokens,
        }
    }

    /// Whether tokens are too long to print (Redis and etcd tokens carry a clock floor, e.g.
    /// 1796170573065271): they are then shown as `#k`, their rank among the run's grants,
    /// which keeps their order (I2 holds, or the run says so).
    pub fn numbers_tokens(&self) -> bool {
        self.tokens.last().is_some_and(|&t| t >= 100_000)
    }

    /// How the picture names `token`.
    pub fn token_name(&self, token: u64) -> String {
        if !self.numbers_tokens() {
            return token.to_string();
        }
        match self.tokens.binary_search(&token) {
            Ok(i) => format!("#{}", i + 1),
            // Not granted in this history (a mark from before it, say): as it is.
            Err(_) => token.to_string(),
        }
    }

    /// Marks of `kind` over every lane.
    pub fn count(&self, kind: MarkKind) -> usize {
        self.lanes
            .iter()
            .flat_map(|l| &l.marks)
            .filter(|m| m.kind == kind)
            .count()
    }
}

/// The lease of `lane` that `token` names, if still open; its end moves to `t`.
fn open(lane: &mut Lane, token: u64, t: u64) -> Option<&mut Lease> {
    let lease = lane
        .leases
        .last_mut()
        .filter(|l| l.token == token && !l.released)?;
    lease.to = lease.to.max(t);
    Some(lease)
}

/// The detail window: the first stale write accepted (else rejected operation) with the fault
/// before it, a TTL of margin either side; else the first fault; else the run's first 6 TTLs.
fn focus(lanes: &[Lane], faults: &[Fault], (start, end): (u64, u64), ttl: Duration) -> (u64, u64) {
    let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    let first = |kind| {
        lanes
            .iter()
            .flat_map(|l| &l.marks)
            .filter(|m| m.kind == kind)
            .map(|m| m.t)
            .min()
    };
    let event = first(MarkKind::StaleAccepted).or_else(|| first(MarkKind::Rejected));
    let (from, to) = match event {
        Some(t) => match faults.iter().rev().find(|f| f.from <= t) {
            Some(f) => (f.from, t.max(f.to)),
            None => (t.saturating_sub(2 * ttl), t),
        },
        None => match faults.first() {
            Some(f) => (f.from, f.to),
            None => (start, start.saturating_add(4 * ttl)),
        },
    };
    (
        from.saturating_sub(ttl).max(start),
        to.saturating_add(ttl).min(end.max(start + 1)),
    )
}

const WIDTH: u32 = 1100;
const LEFT: i32 = 110;
const RIGHT: i32 = 30;
const FONT: &str = "sans-serif";
const LANE_PX: i32 = 64;
const OVERVIEW_LANE_PX: i32 = 18;
const BAR: RGBColor = RGBColor(0x9a, 0xb0, 0xc8);
const BAR_EDGE: RGBColor = RGBColor(0x40, 0x40, 0x40);
const FAULT: RGBColor = RGBColor(0xf2, 0xd4, 0x8c);
const FAULT_EDGE: RGBColor = RGBColor(0xa0, 0x70, 0x00);
const REJECTED: RGBColor = RGBColor(0xc0, 0x10, 0x10);
const STALE: RGBColor = RGBColor(0x90, 0x00, 0x90);
const INVALID: RGBColor = RGBColor(0x10, 0x40, 0xc0);
const FOCUS: RGBColor = RGBColor(0x30, 0x30, 0x30);

/// Draws `timeline` with `title` on top; returns the SVG document.
///
/// # Errors
/// A drawing error of the SVG backend (none is expected: it writes into a string).
pub fn render(timeline: &Timeline, title: &str) -> Result<String, String> {
    let lanes = timeline.lanes.len().max(1) as i32;
    let overview_h = 60 + lanes * OVERVIEW_LANE_PX + 40;
    let shown = detail_lanes(timeline).len().max(1) as i32;
    let detail_h = 50 + shown * LANE_PX + 50;
    let legend_h = 64;
    let height = 40 + overview_h + detail_h + legend_h;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        root.draw(&Text::new(
            title.to_owned(),
            (LEFT, 12),
            (FONT, 21).into_font().style(FontStyle::Bold).color(&BLACK),
        ))
        .map_err(err)?;
        let (overview, rest) = root.split_vertically(40 + overview_h);
        let (detail, legend) = rest.split_vertically(detail_h);
        let (_, overview) = overview.split_vertically(40);
        let whole = (timeline.start, timeline.end.max(timeline.start + 1));
        panel(
            timeline,
            &overview,
            whole,
            false,
            &overview_caption(timeline),
        )?;
        let detail_caption = match timeline.tokens.first() {
            Some(first) if timeline.numbers_tokens() => {
                format!("Detail, ms since start; tokens numbered in grant order (#1 = {first})")
            }
            _ => "Detail, ms since start".to_owned(),
        };
        panel(timeline, &detail, timeline.focus, true, &detail_caption)?;
        draw_legend(&legend)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The lanes the detail panel shows: those with a lease in its window.
fn detail_lanes(timeline: &Timeline) -> Vec<&Lane> {
    let (from, to) = timeline.focus;
    timeline
        .lanes
        .iter()
        .filter(|l| l.leases.iter().any(|l| l.to >= from && l.from <= to))
        .collect()
}

/// "Whole run: 8 faults (holder paused …)": what the shaded bands are.
fn overview_caption(timeline: &Timeline) -> String {
    let mut names: Vec<&str> = timeline.faults.iter().map(|f| f.name.as_str()).collect();
    names.dedup();
    let faults = match (timeline.faults.len(), names.first()) {
        (0, _) | (_, None) => "no fault".to_owned(),
        (1, Some(name)) => format!("1 fault ({name})"),
        (n, Some(name)) if names.len() == 1 => format!("{n} faults ({name})"),
        (n, Some(name)) => format!("{n} faults ({name}, …)"),
    };
    format!("Whole run, ms since start: {faults}; the bracket marks the detail below")
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing the timeline: {e}")
}

fn ms(timeline: &Timeline, t: u64) -> f64 {
    t.saturating_sub(timeline.start) as f64 / 1e6
}

/// About how wide `text` is drawn at plotters font size `size` (the SVG backend writes
/// `size / 1.24` px; sans-serif glyphs average about 0.6 em, wider for capitals).
fn text_px(text: &str, size: f64) -> i32 {
    (text.chars().count() as f64 * size / 1.24 * 0.62).ceil() as i32
}

/// One panel: lanes, bars, fault bands and marks over the window `(from, to)`; `detail`
/// labels bars with tokens and annotates rejected and stale writes.
fn panel(
    timeline: &Timeline,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    (from, to): (u64, u64),
    detail: bool,
    caption: &str,
) -> Result<(), String> {
    let shown: Vec<&Lane> = if detail {
        detail_lanes(timeline)
    } else {
        timeline.lanes.iter().collect()
    };
    let lanes = shown.len().max(1);
    let (x0, x1) = (
        ms(timeline, from),
        ms(timeline, to).max(ms(timeline, from) + 1.0),
    );
    // Lanes from the top: lane i occupies [n - i - 1, n - i); a header row above for fault
    // names.
    let header = if detail { 0.6 } else { 0.9 };
    let top = lanes as f64 + header;
    let mut chart = ChartBuilder::on(area)
        .margin_left(LEFT)
        .margin_right(RIGHT)
        .margin_top(10)
        .x_label_area_size(40)
        .caption(caption, (FONT, 18).into_font().color(&BLACK))
        .build_cartesian_2d(x0..x1, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_labels(12)
        .x_label_style((FONT, 16).into_font().color(&BLACK))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe8, 0xe8, 0xe8))
        .draw()
        .map_err(err)?;
    let px_per_ms = f64::from(WIDTH as i32 - LEFT - RIGHT) / (x1 - x0);
    let clip = |a: f64, b: f64| (a.max(x0), b.min(x1));
    let label_style = (FONT, 16).into_font().color(&BLACK);
    // Fault bands behind everything, their names in the header row.
    let mut name_right = i32::MIN;
    for f in &timeline.faults {
        let (a, b) = (ms(timeline, f.from), ms(timeline, f.to));
        if b < x0 || a > x1 {
            continue;
        }
        let (a, b) = clip(a, b);
        // At least 3 px wide: a kill or cut is an instant.
        let b = b.max(a + 3.0 / px_per_ms);
        chart
            .draw_series([Rectangle::new(
                [(a, 0.0), (b, lanes as f64)],
                FAULT.mix(0.7).filled(),
            )])
            .map_err(err)?;
        chart
            .draw_series([
                PathElement::new([(a, 0.0), (a, top)], FAULT_EDGE.stroke_width(1)),
                PathElement::new([(b, 0.0), (b, lanes as f64)], FAULT_EDGE.stroke_width(1)),
            ])
            .map_err(err)?;
        let name = format!("fault: {}", f.name);
        let (px, _) = chart.backend_coord(&(a, top));
        let w = text_px(&name, 16.0);
        // Left-aligned at the band's start, or right-aligned at the plot's edge when the
        // band starts too far right; left out when it would cover the previous name.
        let right_edge = WIDTH as i32 - RIGHT;
        let (left, x, anchor) = if px + w <= right_edge {
            (px, a, HPos::Left)
        } else {
            (right_edge - w, x1, HPos::Right)
        };
        if detail && left > name_right {
            chart
                .draw_series([Text::new(
                    name.clone(),
                    (x, lanes as f64 + header / 2.0),
                    label_style.pos(Pos::new(anchor, VPos::Center)),
                )])
                .map_err(err)?;
            name_right = left + w + 8;
        }
    }
    if !detail {
        // The detail window, bracketed.
        let (a, b) = clip(
            ms(timeline, timeline.focus.0),
            ms(timeline, timeline.focus.1),
        );
        chart
            .draw_series([PathElement::new(
                [
                    (a, lanes as f64 + 0.2),
                    (a, lanes as f64 + 0.6),
                    (b, lanes as f64 + 0.6),
                    (b, lanes as f64 + 0.2),
                ],
                FOCUS.stroke_width(2),
            )])
            .map_err(err)?;
    }
    for (i, lane) in shown.into_iter().enumerate() {
        let y = (lanes - i - 1) as f64;
        let (bar_lo, bar_hi) = if detail {
            (y + 0.38, y + 0.68)
        } else {
            (y + 0.2, y + 0.8)
        };
        // The lane's name, left of the plot.
        let (_, py) = chart.backend_coord(&(x0, y + 0.5));
        let base = area.get_base_pixel();
        area.draw(&Text::new(
            format!("worker {}", lane.worker),
            (LEFT - 10, py - base.1),
            (FONT, if detail { 17 } else { 15 })
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(err)?;
        for lease in &lane.leases {
            let (a, b) = (ms(timeline, lease.from), ms(timeline, lease.to));
            if b < x0 || a > x1 {
                continue;
            }
            let (a, b) = clip(a, b);
            let b = b.max(a + 1.0 / px_per_ms);
            chart
                .draw_series([
                    Rectangle::new([(a, bar_lo), (b, bar_hi)], BAR.filled()),
                    Rectangle::new([(a, bar_lo), (b, bar_hi)], BAR_EDGE.stroke_width(1)),
                ])
                .map_err(err)?;
            if !lease.released {
                // An open end: the worker died or the run stopped with the lease held.
                chart
                    .draw_series([PathElement::new(
                        [(b, bar_lo - 0.08), (b, bar_hi + 0.08)],
                        BAR_EDGE.stroke_width(3),
                    )])
                    .map_err(err)?;
            }
            if detail {
                let width = ((b - a) * px_per_ms) as i32;
                let long = format!("token {}", timeline.token_name(lease.token));
                let short = timeline.token_name(lease.token);
                let label = if width > text_px(&long, 16.0) + 6 {
                    Some(long)
                } else if width > text_px(&short, 16.0) + 4 {
                    Some(short)
                } else {
                    None
                };
                if let Some(label) = label {
                    chart
                        .draw_series([Text::new(
                            label,
                            ((a + b) / 2.0, (bar_lo + bar_hi) / 2.0),
                            label_style.pos(Pos::new(HPos::Center, VPos::Center)),
                        )])
                        .map_err(err)?;
                }
                if let Some(t) = lease.first_invalid.map(|t| ms(timeline, t))
                    && t >= x0
                    && t <= x1
                {
                    chart
                        .draw_series([EmptyElement::at((t, bar_hi + 0.12))
                            + Rectangle::new([(-5, -5), (5, 5)], INVALID.stroke_width(2))])
                        .map_err(err)?;
                }
            }
        }
        // Marks: writes on the bar's lower edge, annotated ones above.
        let mut note_right = i32::MIN;
        for m in &lane.marks {
            let t = ms(timeline, m.t);
            if t < x0 || t > x1 {
                continue;
            }
            let at = (t, bar_lo);
            match m.kind {
                MarkKind::Accepted => {
                    if detail {
                        chart
                            .draw_series([
                                EmptyElement::at(at) + Circle::new((0, 0), 3, BLACK.filled())
                            ])
                            .map_err(err)?;
                    }
                    continue;
                }
                MarkKind::Rejected => {
                    let s = if detail { 7 } else { 5 };
                    chart
                        .draw_series([EmptyElement::at(at)
                            + PathElement::new([(-s, -s), (s, s)], REJECTED.stroke_width(3))
                            + PathElement::new([(-s, s), (s, -s)], REJECTED.stroke_width(3))])
                        .map_err(err)?;
                }
                MarkKind::StaleAccepted => {
                    let s = if detail { 9 } else { 6 };
                    chart
                        .draw_series([EmptyElement::at(at)
                            + Polygon::new(vec![(0, -s), (s, s), (-s, s)], STALE.filled())
                            + PathElement::new(vec![(0, -s), (s, s), (-s, s), (0, -s)], BLACK)])
                        .map_err(err)?;
                }
            }
            if detail {
                let what = match m.op {
                    Op::Read => "read",
                    Op::Write => "write",
                };
                let verdict = match m.kind {
                    MarkKind::Rejected => "rejected",
                    _ => "ACCEPTED (stale)",
                };
                let token = timeline.token_name(m.token);
                let note = match m.above {
                    Some(h) => format!(
                        "{what} with token {token} {verdict}: mark was {}",
                        timeline.token_name(h)
                    ),
                    None => format!("{what} with token {token} {verdict}"),
                };
                let (px, _) = chart.backend_coord(&at);
                // Keep notes inside the plot and apart from each other.
                let w = text_px(&note, 16.0);
                let right_edge = WIDTH as i32 - RIGHT;
                let flip = px + 10 + w > right_edge;
                let (anchor, left) = if flip {
                    (HPos::Right, px - 10 - w)
                } else {
                    (HPos::Left, px + 10)
                };
                if left > note_right {
                    let x = if flip {
                        t - 10.0 / px_per_ms
                    } else {
                        t + 10.0 / px_per_ms
                    };
                    chart
                        .draw_series([Text::new(
                            note,
                            (x, y + 0.17),
                            label_style.pos(Pos::new(anchor, VPos::Center)),
                        )])
                        .map_err(err)?;
                    note_right = left + w + 10;
                }
            }
        }
    }
    Ok(())
}

fn draw_legend(area: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
    let style = (FONT, 16)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let items = [
        "lease (grant → release)",
        "never released",
        "write accepted",
        "rejected by the fence",
        "stale write accepted",
        "guard first said invalid",
        "fault",
    ];
    let mut y = 14;
    let mut x = LEFT;
    for (kind, text) in items.iter().enumerate() {
        if x + 22 + text_px(text, 16.0) > WIDTH as i32 - RIGHT {
            x = LEFT;
            y += 26;
        }
        let at = EmptyElement::at((x, y));
        match kind {
            0 => area.draw(
                &(at + Rectangle::new([(0, -6), (16, 6)], BAR.filled())
                    + Rectangle::new([(0, -6), (16, 6)], BAR_EDGE.stroke_width(1))),
            ),
            1 => area.draw(
                &(at + Rectangle::new([(0, -6), (16, 6)], BAR.filled())
                    + PathElement::new([(16, -8), (16, 8)], BAR_EDGE.stroke_width(3))),
            ),
            2 => area.draw(&(at + Circle::new((8, 0), 3, BLACK.filled()))),
            3 => area.draw(
                &(at + PathElement::new([(1, -7), (15, 7)], REJECTED.stroke_width(3))
                    + PathElement::new([(1, 7), (15, -7)], REJECTED.stroke_width(3))),
            ),
            4 => area.draw(
                &(at + Polygon::new(vec![(8, -8), (16, 8), (0, 8)], STALE.filled())
                    + PathElement::new(vec![(8, -8), (16, 8), (0, 8), (8, -8)], BLACK)),
            ),
            5 => area.draw(&(at + Rectangle::new([(3, -5), (13, 5)], INVALID.stroke_width(2)))),
            _ => area.draw(&(at + Rectangle::new([(0, -8), (16, 8)], FAULT.mix(0.7).filled()))),
        }
        .map_err(err)?;
        area.draw(&Text::new(text.to_string(), (x + 22, y), style.clone()))
            .map_err(err)?;
        x += 22 + text_px(text, 16.0) + 18;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rec(w: u32, t_ms: u64, event: Event) -> Record {
        Record {
            w,
            t: 1_000 * MS + t_ms * MS,
            event,
        }
    }

    /// Worker 1 holds token 6, is paused past its TTL; worker 2 gets token 7 and writes;
    /// worker 1 wakes and writes with 6. `fenced` decides whether that write is rejected.
    fn story(fenced: bool) -> Vec<Record> {
        let mut h = vec![
            rec(1, 0, Event::Started { pid: 11 }),
            rec(2, 0, Event::Started { pid: 12 }),
            rec(1, 10, Event::Acquired { token: 6, sent: 0 }),
            rec(1, 12, Event::Read { token: 6, value: 5 }),
            rec(
                1,
                20,
                Event::Check {
                    token: 6,
                    valid: true,
                },
            ),
            rec(
                COORDINATOR,
                21,
                Event::FaultInjected {
                    fault: "holder paused (SIGSTOP)".into(),
                    holder: true,
                },
            ),
            rec(
                1,
                600,
                Event::Probe {
                    token: 6,
                    valid: false,
                },
            ),
            rec(
                2,
                700,
                Event::Acquired {
                    token: 7,
                    sent: 100,
                },
            ),
            rec(2, 702, Event::Read { token: 7, value: 5 }),
            rec(2, 710, Event::WriteAccepted { token: 7, value: 6 }),
            rec(2, 1100, Event::Released { token: 7, ok: true }),
            rec(
                COORDINATOR,
                1521,
                Event::FaultHealed {
                    fault: "holder paused (SIGSTOP)".into(),
                },
            ),
        ];
        h.push(if fenced {
            rec(
                1,
                1530,
                Event::Rejected {
                    op: Op::Write,
                    token: 6,
                    high_water: 7,
                },
            )
        } else {
            rec(1, 1530, Event::WriteAccepted { token: 6, value: 6 })
        });
        h.push(rec(
            1,
            1531,
            Event::Check {
                token: 6,
                valid: false,
            },
        ));
        h.push(rec(
            1,
            1540,
            Event::Released {
                token: 6,
                ok: false,
            },
        ));
        // Worker 3 is killed holding token 8.
        h.push(rec(
            3,
            1600,
            Event::Acquired {
                token: 8,
                sent: 1540,
            },
        ));
        h.push(rec(3, 1610, Event::Read { token: 8, value: 6 }));
        h
    }

    #[test]
    fn places_have_marks_of_their_own() {
        // Permits 11 (place 1) and 10 (place 0) hold together: 10's write is not stale. Then
        // permit 12 takes place 0 and 10's late write there is.
        let placed = |w, t, token, slot| {
            rec(
                COORDINATOR,
                t,
                Event::Oracle {
                    op: Op::Read,
                    worker: w,
                    token,
                    accepted: true,
                    high_water: None,
                    value: 0,
                    slot: Some(slot),
                },
            )
        };
        let read = |w, t, token| rec(w, t, Event::Read { token, value: 0 });
        let wrote = |w, t, token| rec(w, t, Event::WriteAccepted { token, value: 1 });
        let history = vec![
            rec(2, 0, Event::Acquired { token: 11, sent: 0 }),
            placed(2, 1, 11, 1),
            read(2, 2, 11),
            rec(1, 3, Event::Acquired { token: 10, sent: 0 }),
            placed(1, 4, 10, 0),
            read(1, 5, 10),
            wrote(1, 6, 10),
            rec(3, 7, Event::Acquired { token: 12, sent: 7 }),
            placed(3, 8, 12, 0),
            read(3, 9, 12),
            wrote(1, 10, 10),
        ];
        let t = Timeline::from_history(&history, Duration::from_millis(500));
        let kinds: Vec<MarkKind> = t.lanes[0].marks.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [MarkKind::Accepted, MarkKind::StaleAccepted]);
        assert_eq!(t.lanes[0].marks[1].above, Some(12));
    }

    #[test]
    fn reads_leases_marks_and_faults() {
        let t = Timeline::from_history(&story(true), Duration::from_millis(500));
        assert_eq!(t.lanes.len(), 3);
        let w1 = &t.lanes[0];
        assert_eq!(w1.leases.len(), 1);
        assert_eq!(w1.leases[0].token, 6);
        assert!(w1.leases[0].released);
        assert_eq!(w1.leases[0].to - w1.leases[0].from, 1530 * MS);
        assert_eq!(w1.leases[0].first_invalid, Some(1_600 * MS));
        assert_eq!(w1.marks.len(), 1);
        assert_eq!(w1.marks[0].kind, MarkKind::Rejected);
        assert_eq!(w1.marks[0].above, Some(7));
        // Worker 3's lease ends at its last record, unreleased.
        let w3 = &t.lanes[2].leases[0];
        assert!(!w3.released);
        assert_eq!(w3.to - w3.from, 10 * MS);
        assert_eq!(t.faults.len(), 1);
        assert_eq!(t.faults[0].to - t.faults[0].from, 1500 * MS);
        // The window: the pause before the rejected write, a TTL either side.
        assert_eq!(t.focus.0, t.start);
        assert_eq!(t.focus.1, t.end);
        assert_eq!(t.count(MarkKind::StaleAccepted), 0);
    }

    #[test]
    fn unfenced_stale_write_is_accepted_and_called_stale() {
        let t = Timeline::from_history(&story(false), Duration::from_millis(500));
        assert_eq!(t.count(MarkKind::StaleAccepted), 1);
        assert_eq!(t.count(MarkKind::Rejected), 0);
        // Worker 2's write with 7 was fine.
        assert_eq!(t.lanes[1].marks[0].kind, MarkKind::Accepted);
        assert_eq!(t.lanes[0].marks[0].above, Some(7));
    }

    #[test]
    fn svg_has_lanes_tokens_rejected_mark_and_fault_band() {
        let t = Timeline::from_history(&story(true), Duration::from_millis(500));
        let svg = render(&t, "holder-pause/redis/gate").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "holder-pause/redis/gate",
            "worker 1",
            "worker 2",
            "worker 3",
            "token 6",
            "token 7",
            "fault: holder paused (SIGSTOP)",
            "write with token 6 rejected: mark was 7",
        ] {
            assert!(
                svg.contains(&format!("\n{text}\n</text>")),
                "no `{text}` in\n{svg}"
            );
        }
        let colour = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        // The rejected cross (two strokes), the fault band, the invalid square.
        assert!(svg.contains(&format!("stroke=\"{}\"", colour(REJECTED))));
        assert!(svg.contains(&format!("fill=\"{}\"", colour(FAULT))));
        assert!(svg.contains(&format!("stroke=\"{}\"", colour(INVALID))));
        assert!(!svg.contains("ACCEPTED (stale)"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn control_svg_shows_the_stale_write_landing() {
        let t = Timeline::from_history(&story(false), Duration::from_millis(500));
        let svg = render(&t, "control").unwrap();
        assert!(svg.contains("\nwrite with token 6 ACCEPTED (stale): mark was 7\n"));
        assert!(svg.contains("<polygon"));
    }

    #[test]
    fn clock_floored_tokens_are_numbered_in_grant_order() {
        let big = 1_796_170_573_065_271;
        let shift = |mut r: Record| {
            match &mut r.event {
                Event::Acquired { token, .. }
                | Event::Read { token, .. }
                | Event::Check { token, .. }
                | Event::Probe { token, .. }
                | Event::WriteAccepted { token, .. }
                | Event::Released { token, .. } => *token += big,
                Event::Rejected {
                    token, high_water, ..
                } => {
                    *token += big;
                    *high_water += big;
                }
                _ => {}
            }
            r
        };
        let history: Vec<Record> = story(true).into_iter().map(shift).collect();
        let t = Timeline::from_history(&history, Duration::from_millis(500));
        assert!(t.numbers_tokens());
        assert_eq!(t.token_name(big + 6), "#1");
        assert_eq!(t.token_name(big + 8), "#3");
        assert_eq!(t.token_name(5), "5");
        let svg = render(&t, "big tokens").unwrap();
        assert!(svg.contains("\nwrite with token #1 rejected: mark was #2\n"));
        assert!(svg.contains(&format!("(#1 = {})", big + 6)));
        // Small tokens are printed as they are.
        let small = Timeline::from_history(&story(true), Duration::from_millis(500));
        assert!(!small.numbers_tokens());
        assert_eq!(small.token_name(7), "7");
    }

    #[test]
    fn runs_are_drawn_under_their_label_and_the_document_links_them() {
        use crate::runner::Oracle;
        use crate::scenario::{Backend, Scenario};
        let outcome = |fenced| RunOutcome {
            spec: RunSpec {
                scenario: Scenario::HolderPause,
                backend: Backend::Redis,
                oracle: Oracle::Gate,
                fenced,
                mutation: None,
                seed: 1001,
                rounds: 8,
                workers: 3,
            },
            report: fencelock_conformance::history::Report::default(),
            problems: Vec::new(),
            elapsed: Duration::from_secs(1),
            kept_dir: None,
            exclusive: true,
            timeline: Timeline::from_history(&story(fenced), Duration::from_millis(500)),
        };
        let (fenced, control) = (outcome(true), outcome(false));
        assert_eq!(file_name(&fenced.spec), "holder-pause-redis-gate.svg");
        assert_eq!(
            file_name(&control.spec),
            "holder-pause-redis-gate-control.svg"
        );
        let svg = render_run(&control).unwrap();
        assert!(svg.contains(
            "\nholder-pause/redis/gate/control (seed 1001): 1 stale write accepted, 0 rejected by the fence\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_all([&fenced, &control], dir.path()).unwrap(), 2);
        assert!(
            dir.path()
                .join("holder-pause-redis-gate-control.svg")
                .exists()
        );
        let doc = crate::report::render(&crate::report::Results {
            command: "test".into(),
            seed: 1,
            versions: Vec::new(),
            fenced: std::slice::from_ref(&fenced),
            control: std::slice::from_ref(&control),
            mutations: &[],
            elapsed: Duration::from_secs(1),
        });
        assert!(doc.contains("| [svg](reliability/holder-pause-redis-gate.svg) |"));
        assert!(doc.contains("| [svg](reliability/holder-pause-redis-gate-control.svg) |"));
    }

    #[test]
    fn an_election_observer_gets_no_lane() {
        let mut history = story(true);
        history.push(rec(9, 5, Event::Started { pid: 19 }));
        history.push(rec(9, 700, Event::LeaderObserved { term: Some(7) }));
        history.sort_by_key(|r| r.t);
        let t = Timeline::from_history(&history, Duration::from_millis(500));
        assert_eq!(
            t,
            Timeline::from_history(&story(true), Duration::from_millis(500))
        );
        assert!(t.lanes.iter().all(|l| l.worker != 9));
    }

    #[test]
    fn empty_history_draws_an_empty_picture() {
        let t = Timeline::from_history(&[], Duration::from_millis(500));
        assert!(t.lanes.is_empty());
        assert!(render(&t, "nothing").unwrap().contains("\nnothing\n"));
    }
}
