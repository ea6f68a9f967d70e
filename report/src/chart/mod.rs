//! Charts as PNG files: [`line_chart`] and [`bar_chart`].
//!
//! Every chart has a title, labelled axes with tick values (placed by `ticks`, on an `axis`) and a legend naming
//! every series (`legend`); its text is set in the embedded font (`font`). This module holds what the kinds
//! share: the picture's size, the palette, the frame (mesh, axis labels) and the PNG file.

mod bar;
mod curves;
mod line;

pub use bar::{BarChart, bar_chart};
pub use curves::{CurveLine, curves_chart};
pub use line::{LineChart, Series, line_chart};

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::PlotError;
use crate::axis::Axis;
use crate::error::msg;
use crate::font::{AXIS_LABEL_PX, TICK_PX, font, register_font, text_size};

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

/// Pixel size of every chart.
pub(crate) const SIZE: (u32, u32) = (1000, 600);
/// Okabe & Ito's colour-blind-safe palette, without its yellow (too faint on white): the
/// colours of the series without one of their own, in order.
pub const PALETTE: [Rgb; 7] =
    [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0)];
/// Tick marks' length; plotters keeps twice this between an axis and its tick labels.
pub(crate) const TICK_LEN: i32 = 5;
/// At most this many labelled ticks per axis.
pub(crate) const X_TICKS: usize = 10;
pub(crate) const Y_TICKS: usize = 8;

/// Draws a chart with `draw` and writes it to a PNG at `path`.
pub(crate) fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    render_sized(path, SIZE, draw)
}

/// [`render`] at another size.
pub(crate) fn render_sized(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    let err = |message: String| PlotError { path: path.to_path_buf(), message };
    register_font().map_err(err)?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    draw(&root).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

pub(crate) fn rgb((r, g, b): Rgb) -> RGBColor {
    RGBColor(r, g, b)
}

/// The i-th series' colour: [`PALETTE`], then (more than seven series) plotters' 99 distinct colours, so no two
/// series share one.
pub(crate) fn series_color(i: usize) -> RGBColor {
    match PALETTE.get(i) {
        Some(c) => rgb(*c),
        None => rgb(Palette99::pick(i - PALETTE.len()).rgb()),
    }
}

/// The y label area's width: the axis label (turned) plus the widest tick label and the gap plotters keeps.
pub(crate) fn y_label_area(y: &Axis) -> i32 {
    let tick_font = font(TICK_PX);
    let widest = y.ticks.iter().map(|t| text_size(&y.label(*t), &tick_font).0).max().unwrap_or(0);
    TICK_LEN * 2 + widest + 10 + text_size("x", &font(AXIS_LABEL_PX)).1 + 4
}

pub(crate) fn draw_mesh<DB: DrawingBackend>(
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

/// Fails unless `path` holds a PNG with more than a blank picture in it.
#[cfg(test)]
pub(crate) fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    // A blank 1000×600 PNG compresses to a few KB; axes, text and lines take far more.
    assert!(bytes.len() > 10_000, "{} has only {} bytes", path.display(), bytes.len());
}
