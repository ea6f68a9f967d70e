//! A chart of lines ([`LineChart`], drawn by [`line_chart`]), each a named [`Series`] of points.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Rgb, TICK_LEN, X_TICKS, Y_TICKS, draw_mesh, render, rgb, series_color, y_label_area};
use crate::PlotError;
use crate::axis::{Axis, padded_range};
use crate::error::msg;
use crate::font::{AXIS_LABEL_PX, TICK_PX, TITLE_PX, font, text_size};
use crate::legend::{LegendEntry, Mark, draw_legend, split_off_legend};

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

/// Draws `chart` to a PNG at `path` (1000×600): a title, labelled axes with tick values (log axes where asked),
/// ranges fitted to the data with a margin, one line per series in a distinct colour, and a legend under the
/// plot naming every series (a series with nothing to draw is listed with "(no data)").
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<(), PlotError> {
    render(path, |root| draw_line_chart(root, chart))
}

pub(super) fn draw_line_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use plotters::prelude::*;

    use super::*;
    use crate::chart::{SIZE, assert_png};
    use crate::font::register_font;

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
}
