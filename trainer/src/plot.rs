//! Charts as PNG files: [`line_chart`], [`bar_chart`] and the training run's [`loss_curve`].
//!
//! Every chart has a title, labelled axes with tick values and a legend naming every series. The text is set in
//! DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`, its licence beside it) and rasterised by
//! plotters' pure-Rust `ab_glyph` renderer: no system font, fontconfig or freetype is looked up, so a bare machine
//! draws the same pictures as a desktop.
//!
//! plotters' own tick placement is not used: its logarithmic axis labels only powers of ten, so a loss that stays
//! within one decade got a single label (or none). `Axis` places and formats the ticks itself.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::TrainError;
use crate::metrics::{Baselines, Record};

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

/// One named line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// (x, y), drawn joined in this order. Points that the axes cannot show (non-finite, or ≤ 0 on a log axis)
    /// are left out.
    pub points: Vec<(f64, f64)>,
    /// `None`: the next colour of a colour-blind-safe palette (by the series' index).
    pub color: Option<Rgb>,
    /// Circles at the points (a series of a single point always gets one, or it would not show).
    pub markers: bool,
}

impl Series {
    /// A series in the palette's colour, without markers.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, color: None, markers: false }
    }
}

/// A chart of lines: see [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Logarithmic x axis (points with x ≤ 0 are left out).
    pub log_x: bool,
    /// Logarithmic y axis (points with y ≤ 0 are left out).
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Circles at the points of every series.
    pub markers: bool,
}

/// A chart of grouped bars: see [`bar_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// The groups along x (e.g. parameter names), labelled under the axis (vertically when they do not fit).
    pub categories: Vec<String>,
    /// (name, one value per category): one bar per series in each group. A missing or non-finite value leaves
    /// its bar out.
    pub series: Vec<(String, Vec<f64>)>,
    /// The y axis' range (values beyond it are cut at its edge); `None` (or an empty range): from the data, always
    /// including 0, where the bars start.
    pub y_range: Option<(f64, f64)>,
}

/// Pixel size of every chart.
const SIZE: (u32, u32) = (1000, 600);
/// Okabe & Ito's colour-blind-safe palette, without its yellow (too faint on white); see [`series_color`].
const PALETTE: [Rgb; 7] =
    [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0)];
/// The family name the embedded font is registered under: plotters' default text (e.g. in the mesh) asks for
/// `FontFamily::SansSerif`, so this one name serves every piece of text.
const FAMILY: &str = "sans-serif";
const TITLE_PX: f64 = 22.0;
const AXIS_LABEL_PX: f64 = 17.0;
const TICK_PX: f64 = 14.0;
const LEGEND_PX: f64 = 15.0;
/// Tick marks' length; plotters keeps twice this between an axis and its tick labels.
const TICK_LEN: i32 = 5;
/// At most this many labelled ticks per axis.
const X_TICKS: usize = 10;
const Y_TICKS: usize = 8;

/// Draws `chart` to a PNG at `path` (1000×600): a title, labelled axes with tick values (log axes where asked),
/// ranges fitted to the data with a margin, one line per series in a distinct colour, and a legend under the
/// plot naming every series (a series with nothing to draw is listed with "(no data)").
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<(), TrainError> {
    render(path, |root| draw_line_chart(root, chart))
}

/// Draws `chart` to a PNG at `path` (1000×600): grouped bars, one group per category (its name under the x axis),
/// one bar per series in each group, a title, labelled axes with tick values and a legend under the plot.
pub fn bar_chart(path: &Path, chart: &BarChart) -> Result<(), TrainError> {
    render(path, |root| draw_bar_chart(root, chart))
}

/// The training run's `loss.png`: loss against step on a logarithmic y axis: the training loss of every step
/// (light grey), its moving average over 20 steps, and the validation MRSTFT of the trained model and of the
/// default and random parameters (with markers: validations are sparse).
pub fn loss_curve(path: &Path, records: &[Record]) -> Result<(), TrainError> {
    const WINDOW: usize = 20;
    let steps: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) => Some((s.step as f64, s.loss)),
            _ => None,
        })
        .collect();
    // The average skips losses the log axis cannot show, so one failed step does not blank 20 points.
    let usable: Vec<(f64, f64)> = steps.iter().copied().filter(|p| p.1.is_finite() && p.1 > 0.0).collect();
    let smooth: Vec<(f64, f64)> = (0..usable.len())
        .map(|i| {
            let window = &usable[i.saturating_sub(WINDOW - 1)..=i];
            (usable[i].0, window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64)
        })
        .collect();
    let validation = |pick: fn(&Baselines) -> f64| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Validation(v) => Some((v.step as f64, pick(&v.mrstft))),
                _ => None,
            })
            .collect()
    };
    let mut series = vec![
        Series { color: Some((190, 190, 190)), ..Series::new("training loss", steps) },
        Series { color: Some((0, 0, 0)), ..Series::new(format!("training loss (moving average of {WINDOW})"), smooth) },
    ];
    let validations = [
        ("validation: trained", validation(|b| b.trained), PALETTE[0]),
        ("validation: default parameters", validation(|b| b.default), PALETTE[1]),
        ("validation: random parameters", validation(|b| b.random), PALETTE[2]),
    ];
    for (name, points, color) in validations {
        // A run stopped before its first validation has none: no legend entries for lines that cannot exist.
        if !points.is_empty() {
            series.push(Series { color: Some(color), markers: true, ..Series::new(name, points) });
        }
    }
    let chart = LineChart {
        title: "Training and validation loss (MRSTFT)",
        x_label: "step",
        y_label: "loss",
        log_x: false,
        log_y: true,
        series,
        markers: false,
    };
    line_chart(path, &chart)
}

/// Registers the embedded font with plotters, once per process. Without it every piece of text fails to draw.
fn register_font() -> Result<(), String> {
    static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err("the embedded font assets/DejaVuSans.ttf could not be read".to_string()) }
}

fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), TrainError> {
    let err = |message: String| TrainError::Plot { path: path.to_path_buf(), message };
    register_font().map_err(err)?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), px, FontStyle::Normal)
}

/// Width and height in pixels of `text` (zero where the font is missing: drawing then fails with the reason).
fn text_size(text: &str, font: &FontDesc) -> (i32, i32) {
    font.box_size(text).map(|(w, h)| (w as i32, h as i32)).unwrap_or((0, 0))
}

fn rgb((r, g, b): Rgb) -> RGBColor {
    RGBColor(r, g, b)
}

/// The i-th series' colour: [`PALETTE`], then (more than seven series) plotters' 99 distinct colours, so no two
/// series share one.
fn series_color(i: usize) -> RGBColor {
    match PALETTE.get(i) {
        Some(c) => rgb(*c),
        None => rgb(Palette99::pick(i - PALETTE.len()).rgb()),
    }
}

fn draw_line_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &LineChart) -> Result<(), String> {
    root.fill(&WHITE).map_err(msg)?;
    let shown = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let points: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| s.points.iter().copied().filter(|p| shown(p.0, chart.log_x) && shown(p.1, chart.log_y)).collect())
        .collect();
    let all = || points.iter().flatten();
    let x = Axis::numbers(padded_range(all().map(|p| p.0), chart.log_x, 0.02), chart.log_x, X_TICKS);
    let y = Axis::numbers(padded_range(all().map(|p| p.1), chart.log_y, 0.05), chart.log_y, Y_TICKS);
    let legend: Vec<LegendEntry> = chart
        .series
        .iter()
        .zip(&points)
        .enumerate()
        .map(|(i, (s, points))| LegendEntry {
            text: if points.is_empty() { format!("{} (no data)", s.name) } else { s.name.clone() },
            color: s.color.map_or_else(|| series_color(i), rgb),
            mark: Mark::Line { marker: chart.markers || s.markers || points.len() == 1 },
        })
        .collect();
    let (plot_area, legend_area) = split_off_legend(root, &legend);
    let x_area = TICK_LEN * 2 + text_size("0", &font(TICK_PX)).1 + 8 + text_size("x", &font(AXIS_LABEL_PX)).1 + 6;
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(chart.title, font(TITLE_PX))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(x_area)
        .y_label_area_size(y_label_area(&y))
        .build_cartesian_2d(x, y)
        .map_err(msg)?;
    draw_mesh(&mut ctx, chart.x_label, chart.y_label, true)?;
    for (points, entry) in points.iter().zip(&legend) {
        if points.len() > 1 {
            ctx.draw_series(LineSeries::new(points.iter().copied(), entry.color.stroke_width(2))).map_err(msg)?;
        }
        if matches!(entry.mark, Mark::Line { marker: true }) {
            let circles = points.iter().map(|p| Circle::new(*p, 3, entry.color.filled()));
            ctx.draw_series(circles).map_err(msg)?;
        }
    }
    draw_legend(&legend_area, &legend)
}

fn draw_bar_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &BarChart) -> Result<(), String> {
    root.fill(&WHITE).map_err(msg)?;
    let n = chart.categories.len().max(1);
    let value = |s: &(String, Vec<f64>), i: usize| s.1.get(i).copied().filter(|v| v.is_finite());
    let y_range = match chart.y_range {
        Some((lo, hi)) if lo < hi => lo..hi,
        _ => {
            let values: Vec<f64> =
                chart.series.iter().flat_map(|s| (0..chart.categories.len()).filter_map(|i| value(s, i))).collect();
            // 0 is where the bars start, so it is always on the axis, without a margin on a side with no bars.
            let r = padded_range(values.iter().copied().chain([0.0]), false, 0.05);
            let lo = if values.iter().any(|v| *v < 0.0) { r.start } else { 0.0 };
            let hi = if values.iter().any(|v| *v > 0.0) || lo == 0.0 { r.end } else { 0.0 };
            lo..hi
        }
    };
    let y = Axis::numbers(y_range.clone(), false, Y_TICKS);
    let legend: Vec<LegendEntry> = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendEntry { text: s.0.clone(), color: series_color(i), mark: Mark::Bar })
        .collect();
    let (plot_area, legend_area) = split_off_legend(root, &legend);

    // Category names: horizontal when each fits its group's width, else vertical (reading upwards), and cut
    // with "…" beyond a third of the picture's height.
    let tick_font = font(TICK_PX);
    let y_area = y_label_area(&y);
    let plot_width = plot_area.dim_in_pixel().0 as i32 - y_area - 12 - 28;
    let group_px = plot_width / n as i32;
    let max_label = plot_area.dim_in_pixel().1 as i32 / 3;
    let names: Vec<String> = chart.categories.iter().map(|c| ellipsize(c, &tick_font, max_label)).collect();
    let widest = names.iter().map(|c| text_size(c, &tick_font).0).max().unwrap_or(0);
    let vertical = widest + 6 > group_px;
    // Turned names still need their line height each: with more categories than fit, name every k-th.
    let every =
        if vertical { (text_size("Hg", &tick_font).1 as usize + 4).div_ceil(group_px.max(1) as usize) } else { 1 };
    let name_extent = if vertical { widest } else { text_size("Hg", &tick_font).1 };
    let x_area = TICK_LEN * 2 + name_extent + 10 + text_size("x", &font(AXIS_LABEL_PX)).1 + 6;

    let x = Axis::categories(n);
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(chart.title, font(TITLE_PX))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x, y)
        .map_err(msg)?;
    // The mesh draws the axis, its ticks and the x label; the names come below, so they can be turned.
    draw_mesh(&mut ctx, chart.x_label, chart.y_label, false)?;
    let (lo, hi) = (y_range.start, y_range.end);
    let base = 0f64.clamp(lo, hi);
    let m = chart.series.len().max(1) as f64;
    let bar = 0.8 / m;
    for (k, s) in chart.series.iter().enumerate() {
        let color = legend[k].color;
        let bars = (0..chart.categories.len()).filter_map(|i| {
            let v = value(s, i)?.clamp(lo, hi);
            let x0 = i as f64 + 0.1 + bar * k as f64;
            Some(Rectangle::new([(x0, base), (x0 + bar * 0.9, v)], color.filled()))
        });
        ctx.draw_series(bars).map_err(msg)?;
    }
    let axis_y = ctx.backend_coord(&(0.0, lo)).1;
    let label_style = TextStyle::from(tick_font.clone()).color(&BLACK);
    for (i, name) in names.iter().enumerate().step_by(every) {
        let (px, _) = ctx.backend_coord(&(i as f64 + 0.5, lo));
        let top = axis_y + TICK_LEN * 2;
        if vertical {
            // Turned a quarter to the left, the text's end at the axis: it reads upwards from its start.
            let style = label_style.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw_text(name, &style, (px, top)).map_err(msg)?;
        } else {
            root.draw_text(name, &label_style.pos(Pos::new(HPos::Center, VPos::Top)), (px, top)).map_err(msg)?;
        }
    }
    draw_legend(&legend_area, &legend)
}

/// `text`, cut with "…" to at most `max_px` wide.
fn ellipsize(text: &str, font: &FontDesc, max_px: i32) -> String {
    if text_size(text, font).0 <= max_px {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len())
        .rev()
        .map(|n| chars[..n].iter().collect::<String>() + "…")
        .find(|t| text_size(t, font).0 <= max_px)
        .unwrap_or_else(|| "…".to_string())
}

/// The y label area's width: the axis label (turned) plus the widest tick label and the gap plotters keeps.
fn y_label_area(y: &Axis) -> i32 {
    let tick_font = font(TICK_PX);
    let widest = y.ticks.iter().map(|t| text_size(&y.label(*t), &tick_font).0).max().unwrap_or(0);
    TICK_LEN * 2 + widest + 10 + text_size("x", &font(AXIS_LABEL_PX)).1 + 4
}

fn draw_mesh<DB: DrawingBackend>(
    ctx: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    x_label: &str,
    y_label: &str,
    x_grid: bool,
) -> Result<(), String> {
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .axis_desc_style(font(AXIS_LABEL_PX))
        .label_style(font(TICK_PX))
        .set_all_tick_mark_size(TICK_LEN)
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.05));
    if !x_grid {
        mesh.disable_x_mesh();
    }
    mesh.draw().map_err(msg)
}

/// An entry of a legend.
struct LegendEntry {
    text: String,
    color: RGBColor,
    mark: Mark,
}

enum Mark {
    /// A line's colour, with a circle for series drawn with markers.
    Line { marker: bool },
    /// A filled square.
    Bar,
}

const LEGEND_SWATCH: i32 = 26;
const LEGEND_GAP: i32 = 28;
const LEGEND_ROW: i32 = 22;
const LEGEND_PAD: i32 = 8;

/// The legend sits under the plot, in as many centred rows as its entries need: it never covers data, and long
/// series names do not squeeze the plot sideways.
fn split_off_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let (w, h) = root.dim_in_pixel();
    let rows = legend_rows(entries, w as i32 - 40).len() as i32;
    let height = if rows == 0 { 0 } else { rows * LEGEND_ROW + 2 * LEGEND_PAD + 10 };
    root.split_vertically(h as i32 - height)
}

fn legend_width(entry: &LegendEntry) -> i32 {
    LEGEND_SWATCH + 6 + text_size(&entry.text, &font(LEGEND_PX)).0
}

/// Greedy rows of entry indices, each at most `max_width` wide.
fn legend_rows(entries: &[LegendEntry], max_width: i32) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![];
    let mut width = 0;
    for (i, e) in entries.iter().enumerate() {
        let w = legend_width(e);
        match rows.last_mut() {
            Some(row) if width + LEGEND_GAP + w <= max_width => {
                row.push(i);
                width += LEGEND_GAP + w;
            }
            _ => {
                rows.push(vec![i]);
                width = w;
            }
        }
    }
    rows
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[LegendEntry]) -> Result<(), String> {
    let (w, _) = area.dim_in_pixel();
    let rows = legend_rows(entries, w as i32 - 40);
    if rows.is_empty() {
        return Ok(());
    }
    let row_width = |row: &Vec<usize>| {
        row.iter().map(|i| legend_width(&entries[*i])).sum::<i32>() + LEGEND_GAP * (row.len() as i32 - 1)
    };
    let widest = rows.iter().map(row_width).max().unwrap_or(0);
    let (left, top) = ((w as i32 - widest) / 2 - LEGEND_PAD, 0);
    let frame = [(left, top), (left + widest + 2 * LEGEND_PAD, top + rows.len() as i32 * LEGEND_ROW + 2 * LEGEND_PAD)];
    area.draw(&Rectangle::new(frame, BLACK.mix(0.4).stroke_width(1))).map_err(msg)?;
    let style = TextStyle::from(font(LEGEND_PX)).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    for (r, row) in rows.iter().enumerate() {
        let mut x = (w as i32 - row_width(row)) / 2;
        let y = top + LEGEND_PAD + r as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        for &i in row {
            let e = &entries[i];
            match e.mark {
                Mark::Line { marker } => {
                    let line = PathElement::new(vec![(x, y), (x + LEGEND_SWATCH, y)], e.color.stroke_width(2));
                    area.draw(&line).map_err(msg)?;
                    if marker {
                        area.draw(&Circle::new((x + LEGEND_SWATCH / 2, y), 3, e.color.filled())).map_err(msg)?;
                    }
                }
                Mark::Bar => {
                    let square = [(x + 7, y - 6), (x + 19, y + 6)];
                    area.draw(&Rectangle::new(square, e.color.filled())).map_err(msg)?;
                }
            }
            area.draw_text(&e.text, &style, (x + LEGEND_SWATCH + 6, y)).map_err(msg)?;
            x += legend_width(e) + LEGEND_GAP;
        }
    }
    Ok(())
}

/// The data's range with `pad` of its span (in log space on a log axis) added on both sides; a single value gets
/// a range around it, no data a default range.
fn padded_range(values: impl Iterator<Item = f64>, log: bool, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        let (a, b) = (lo.log10(), hi.log10());
        let p = if b > a { (b - a) * pad } else { 0.5 };
        10f64.powf(a - p)..10f64.powf(b + p)
    } else {
        let p =
            if hi > lo { (hi - lo) * pad } else { (hi.abs() * 0.1).max(1e-9).max(if hi == 0.0 { 1.0 } else { 0.0 }) };
        (lo - p)..(hi + p)
    }
}

/// A chart axis for plotters: linear or logarithmic, with ticks placed and labelled here (see the module doc), or
/// a row of named categories (unit-wide slots centred on i + 0.5).
#[derive(Debug, Clone)]
struct Axis {
    range: Range<f64>,
    log: bool,
    /// Labelled ticks (with a grid line).
    ticks: Vec<f64>,
    /// Unlabelled, fainter grid lines (between the decades of a log axis).
    minor: Vec<f64>,
    labels: Labels,
}

#[derive(Debug, Clone)]
enum Labels {
    /// Numbers; `step`: the ticks' even spacing (sets the decimals), `None` for the uneven ticks of a log axis.
    Numbers { scientific: bool, step: Option<f64> },
    /// Category slots, tick i at i + 0.5; their names are drawn by the chart itself, not by plotters' mesh.
    Categories,
}

impl Axis {
    fn numbers(range: Range<f64>, log: bool, max_ticks: usize) -> Axis {
        let (ticks, minor, step) = if log {
            log_ticks(range.start, range.end, max_ticks)
        } else {
            let (ticks, step) = linear_ticks(range.start, range.end, max_ticks);
            (ticks, vec![], Some(step))
        };
        let largest = ticks.iter().fold(0f64, |m, t| m.max(t.abs()));
        let smallest = ticks.iter().filter(|t| **t != 0.0).fold(f64::INFINITY, |m, t| m.min(t.abs()));
        let scientific = largest >= 1e6 || smallest < 1e-3;
        Axis { range, log, ticks, minor, labels: Labels::Numbers { scientific, step } }
    }

    fn categories(n: usize) -> Axis {
        let ticks = (0..n).map(|i| i as f64 + 0.5).collect();
        Axis { range: 0.0..n.max(1) as f64, log: false, ticks, minor: vec![], labels: Labels::Categories }
    }

    fn scale(&self, v: f64) -> f64 {
        if self.log { v.ln() } else { v }
    }

    fn label(&self, v: f64) -> String {
        match &self.labels {
            // The mesh gets no text for categories: the chart draws (and may turn) them itself.
            Labels::Categories => String::new(),
            Labels::Numbers { scientific, step } => number_label(v, *scientific, *step),
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.scale(self.range.start), self.scale(self.range.end));
        let t = (self.scale(*value) - a) / (b - a);
        // `as` saturates (and maps NaN to 0): a stray value lands on the edge instead of overflowing.
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.ticks.clone(),
            KeyPointWeight::Any => self.ticks.iter().chain(&self.minor).copied().collect(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.label(*value)
    }
}

/// Evenly spaced ticks at a round step (1, 2, 2.5 or 5 × 10^k), at most `max` of them, and the step.
fn linear_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / max.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// Ticks of a log axis: powers of ten when the range spans a few decades (every n-th when many), else 1-2-5 or
/// 1…9 × 10^k, else (within a decade) evenly spaced ones. Returns (ticks, fainter grid lines, the even step).
fn log_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, Vec<f64>, Option<f64>) {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |v: &f64| *v >= lo && *v <= hi;
    let multiples = |ms: &[f64]| -> Vec<f64> {
        // Dividing by an exact power of ten gives the nearest double, the same as the literal (0.05, not
        // 0.05000000000000001).
        let at = |m: f64, k: i32| if k >= 0 { m * 10f64.powi(k) } else { m / 10f64.powi(-k) };
        (k0..=k1).flat_map(|k| ms.iter().map(move |m| at(*m, k))).filter(inside).collect()
    };
    let all: Vec<f64> = multiples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let without = |ticks: &[f64]| -> Vec<f64> {
        all.iter().copied().filter(|v| !ticks.iter().any(|t| (t / v - 1.0).abs() < 1e-9)).collect()
    };
    let powers = multiples(&[1.0]);
    if powers.len() > max {
        let every = powers.len().div_ceil(max) as i32;
        let (ticks, minor) = powers.iter().partition(|v| (v.log10().round() as i32).rem_euclid(every) == 0);
        return (ticks, minor, None);
    }
    // The densest set of "round" multiples that fits; the other multiples of 1…9 become faint grid lines.
    let candidates = [&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..], &[1.0, 2.0, 3.0, 5.0], &[1.0, 2.0, 5.0]];
    let ticks = candidates.iter().map(|ms| multiples(ms)).find(|t| t.len() <= max).unwrap_or(powers);
    if ticks.len() >= 4 {
        let minor = if k1 - k0 <= 8 { without(&ticks) } else { vec![] };
        return (ticks, minor, None);
    }
    // Within about a decade: evenly spaced ticks label it better (0.8, 1.0, 1.2, … rather than 0.8, 0.9, 1).
    let (ticks, step) = linear_ticks(lo, hi, max.min(6));
    (ticks, vec![], Some(step))
}

/// A tick's text: as many decimals as the step needs (evenly spaced ticks), or three significant digits at most;
/// in scientific notation ("2.5e-4") for axes reaching below 0.001 or to 1 000 000 and beyond.
fn number_label(v: f64, scientific: bool, step: Option<f64>) -> String {
    // A tick at 0 computed as k × step may come out as -1e-17: print it as 0 ("0.0", not "-0.0").
    let v = if step.is_some_and(|step| v.abs() < step * 1e-6) { 0.0 } else { v };
    match (scientific, step) {
        (true, _) if v == 0.0 => "0".to_string(),
        (false, Some(step)) => format!("{v:.*}", decimals(step)),
        (false, None) => {
            // Through the 3-digit scientific text and back, so that Display prints the short form.
            let rounded: f64 = format!("{v:.2e}").parse().unwrap_or(v);
            format!("{rounded}")
        }
        (true, step) => {
            let digits = match step {
                Some(step) => {
                    let lead = v.abs().log10().floor() - step.log10().floor();
                    (lead.max(0.0) as usize + decimals(step / 10f64.powf(step.log10().floor()))).min(12)
                }
                None => 2,
            };
            let text = format!("{v:.digits$e}");
            match text.split_once('e') {
                Some((mantissa, exponent)) if mantissa.contains('.') => {
                    format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
                }
                _ => text,
            }
        }
    }
}

/// The decimals that show multiples of `step` exactly (0.25 → 2, 5 → 0).
fn decimals(step: f64) -> usize {
    (0..12)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Baselines, ParamErrors, StepRecord, ValidationRecord};
    use crate::timing::StepTiming;

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
        // A blank 1000×600 PNG compresses to a few KB; axes, text and lines take far more.
        assert!(bytes.len() > 10_000, "{} has only {} bytes", path.display(), bytes.len());
    }

    fn sample_chart<'a>(title: &'a str, y_label: &'a str) -> LineChart<'a> {
        LineChart {
            title,
            x_label: "step",
            y_label,
            log_x: false,
            log_y: true,
            series: vec![
                Series::new("falling", (1..50).map(|i| (i as f64, 10.0 / i as f64)).collect()),
                Series::new("one point", vec![(25.0, 1.0)]),
            ],
            markers: false,
        }
    }

    /// The chart as RGB pixels, drawn without a file.
    fn pixels(chart: &LineChart) -> Vec<u8> {
        register_font().unwrap();
        let mut buffer = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area();
            draw_line_chart(&root, chart).unwrap();
            root.present().unwrap();
        }
        buffer
    }

    /// Whether any pixel in the rectangle of rows `rows` and columns `columns` is not white.
    fn inked(buffer: &[u8], rows: Range<u32>, columns: Range<u32>) -> bool {
        rows.flat_map(|y| columns.clone().map(move |x| ((y * SIZE.0 + x) * 3) as usize))
            .any(|i| buffer[i..i + 3] != [255, 255, 255])
    }

    #[test]
    fn text_is_drawn() {
        // The title's rows and the y label's columns hold nothing but text: blank without it, inked with it
        // (built without a usable font, plotters draws no text at all, or fails).
        let plain = pixels(&sample_chart("", ""));
        let titled = pixels(&sample_chart("Loss", "loss"));
        assert!(!inked(&plain, 0..30, 0..SIZE.0));
        assert!(inked(&titled, 0..30, 0..SIZE.0));
        assert!(!inked(&plain, 0..SIZE.1 - 120, 0..30));
        assert!(inked(&titled, 0..SIZE.1 - 120, 0..30));
    }

    #[test]
    fn line_chart_writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("line.png");
        let mut chart = sample_chart("A line chart", "value");
        chart.log_x = true;
        chart.series.push(Series::new("nothing drawable", vec![(-1.0, 1.0), (1.0, f64::NAN)]));
        line_chart(&path, &chart).unwrap();
        assert_png(&path);
        // No data at all still gives a chart (with empty axes), not an error.
        let empty = LineChart { series: vec![], ..chart };
        line_chart(&dir.path().join("empty.png"), &empty).unwrap();
    }

    #[test]
    fn bar_chart_writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bars.png");
        let chart = BarChart {
            title: "Parameter error",
            x_label: "parameter",
            y_label: "mean abs error",
            categories: (1..=16).map(|i| format!("zam_eq.boost{i}")).collect(),
            series: vec![
                ("trained".to_string(), (0..16).map(|i| 0.1 + i as f64 * 0.01).collect()),
                ("default".to_string(), vec![0.3, f64::NAN, -0.1]),
            ],
            y_range: None,
        };
        bar_chart(&path, &chart).unwrap();
        assert_png(&path);
        let fixed = BarChart { y_range: Some((0.0, 0.2)), categories: vec!["a".to_string()], ..chart };
        bar_chart(&dir.path().join("fixed.png"), &fixed).unwrap();
    }

    #[test]
    fn loss_curve_writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let mut records: Vec<Record> = (1..=60)
            .map(|step| {
                let loss = if step == 7 { f64::NAN } else { 1.0 / step as f64 };
                Record::Step(StepRecord {
                    step,
                    loss,
                    lr: 1e-3,
                    ok: 4,
                    failed: 0,
                    param_error: 0.1,
                    timing: StepTiming::default(),
                })
            })
            .collect();
        records.push(Record::Validation(ValidationRecord {
            step: 60,
            items: 4,
            failed: 0,
            mrstft: Baselines { trained: 0.05, input: 1.0, default: 0.5, random: 0.8 },
            proxy: None,
            param_error: Some(ParamErrors { trained: 0.1, default: 0.2, random: 0.3 }),
        }));
        loss_curve(&path, &records).unwrap();
        assert_png(&path);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(number_label(0.25, false, Some(0.25)), "0.25");
        assert_eq!(number_label(1.0, false, Some(0.2)), "1.0");
        assert_eq!(number_label(3000.0, false, Some(500.0)), "3000");
        assert_eq!(number_label(-1e-17, false, Some(0.1)), "0.0");
        assert_eq!(number_label(0.002, false, None), "0.002");
        assert_eq!(number_label(0.00025, true, None), "2.5e-4");
        assert_eq!(number_label(1e-5, true, None), "1e-5");
        assert_eq!(number_label(250000.0, true, Some(50000.0)), "2.5e5");
        assert_eq!(number_label(300000.0, true, Some(50000.0)), "3e5");
    }

    #[test]
    fn tick_placement() {
        let (ticks, step) = linear_ticks(-0.05, 1.05, 8);
        assert_eq!((ticks.len(), step), (6, 0.2));
        // A loss within one decade still gets several labelled ticks (plotters' own log axis gave it one).
        let (ticks, _, step) = log_ticks(0.8, 1.5, 8);
        assert!(ticks.len() >= 4 && step.is_some(), "{ticks:?}");
        let (ticks, minor, step) = log_ticks(1e-4, 10.0, 8);
        assert_eq!(ticks.len(), 6);
        assert!(!minor.is_empty() && step.is_none());
        let (ticks, _, _) = log_ticks(1e-20, 1e20, 8);
        assert!((4..=8).contains(&ticks.len()), "{ticks:?}");
        assert_eq!(log_ticks(0.03, 0.6, 8).0, vec![0.03, 0.05, 0.1, 0.2, 0.3, 0.5]);
    }
}
