//! A chart of grouped bars ([`BarChart`], drawn by [`bar_chart`]): one group per category, one bar per series.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{TICK_LEN, Y_TICKS, draw_mesh, render, series_color, y_label_area};
use crate::PlotError;
use crate::axis::{Axis, padded_range};
use crate::error::msg;
use crate::font::{AXIS_LABEL_PX, TICK_PX, TITLE_PX, font, text_size};
use crate::legend::{LegendEntry, Mark, draw_legend, split_off_legend};

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

/// Draws `chart` to a PNG at `path` (1000×600): grouped bars, one group per category (its name under the x axis),
/// one bar per series in each group, a title, labelled axes with tick values and a legend under the plot.
pub fn bar_chart(path: &Path, chart: &BarChart) -> Result<(), PlotError> {
    render(path, |root| draw_bar_chart(root, chart))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::assert_png;

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
}
