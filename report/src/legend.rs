//! The legend under a chart: one entry per series (its colour and name), in centred rows.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::msg;
use crate::font::{LEGEND_PX, font, text_size};

/// An entry of a legend.
pub(crate) struct LegendEntry {
    pub(crate) text: String,
    pub(crate) color: RGBColor,
    pub(crate) mark: Mark,
}

/// How an entry shows its series' colour.
pub(crate) enum Mark {
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
pub(crate) fn split_off_legend<DB: DrawingBackend>(
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

pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(), String> {
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
