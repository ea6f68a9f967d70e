//! Parameter curves over time ([`curves_chart`]): one panel per unit, stacked, each a line chart of steps.

use std::path::Path;

use plotters::prelude::*;

use super::line::draw_line_chart;
use super::render_sized;
use crate::error::msg;
use crate::{LineChart, PlotError, Series};

/// Height of one panel, in pixels (the picture is 1000 pixels wide).
const PANEL_HEIGHT: u32 = 360;

/// One parameter's values over time, one per hop.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveLine<'a> {
    /// The legend's text (the parameter's key).
    pub name: &'a str,
    /// The y axis' label: parameters with the same unit share a panel.
    pub unit: Option<&'a str>,
    pub values: &'a [f32],
}

/// Draws `curves` to a PNG at `path`: value `f` of a curve holds from `f · seconds_per_value` seconds to the
/// next (drawn as steps, as they are rendered). Curves that share a unit share a panel, titled `title` and the
/// unit, with time in seconds on its x axis, the unit on its y axis and a legend naming each curve; panels are
/// stacked in the order their units first appear.
pub fn curves_chart(
    path: &Path,
    title: &str,
    seconds_per_value: f64,
    curves: &[CurveLine<'_>],
) -> Result<(), PlotError> {
    let mut units: Vec<Option<&str>> = vec![];
    for c in curves {
        if !units.contains(&c.unit) {
            units.push(c.unit);
        }
    }
    let panels: Vec<(String, String, Vec<Series>)> = units
        .iter()
        .map(|&unit| {
            let series = curves.iter().filter(|c| c.unit == unit).map(|c| steps(c, seconds_per_value)).collect();
            let label = unit.unwrap_or("value").to_string();
            (
                format!("{title}: {}", unit.map_or("parameters without a unit".into(), |u| format!("in {u}"))),
                label,
                series,
            )
        })
        .collect();
    let height = PANEL_HEIGHT * panels.len().max(1) as u32;
    render_sized(path, (1000, height), |root| {
        root.fill(&WHITE).map_err(msg)?;
        for (area, (title, y_label, series)) in root.split_evenly((panels.len().max(1), 1)).iter().zip(&panels) {
            let chart = LineChart {
                title,
                x_label: "time (s)",
                y_label,
                log_x: false,
                log_y: false,
                series: series.clone(),
                markers: false,
            };
            draw_line_chart(area, &chart)?;
        }
        Ok(())
    })
}

/// The points of a curve drawn as steps: each value from its start to the next one's.
fn steps(curve: &CurveLine<'_>, seconds_per_value: f64) -> Series {
    let points = curve
        .values
        .iter()
        .enumerate()
        .flat_map(|(f, &v)| {
            [(f as f64 * seconds_per_value, f64::from(v)), ((f + 1) as f64 * seconds_per_value, f64::from(v))]
        })
        .collect();
    Series::new(curve.name, points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::assert_png;

    #[test]
    fn curves_in_two_units_make_two_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let thr: Vec<f32> = (0..40).map(|f| if f % 10 < 5 { -40.0 } else { -12.0 }).collect();
        let att: Vec<f32> = (0..40).map(|f| 5.0 + f as f32).collect();
        let mak: Vec<f32> = vec![3.0; 40];
        let curves = [
            CurveLine { name: "thr", unit: Some("dB"), values: &thr },
            CurveLine { name: "att", unit: Some("ms"), values: &att },
            CurveLine { name: "mak", unit: Some("dB"), values: &mak },
        ];
        curves_chart(&path, "ZamComp", 1024.0 / 44_100.0, &curves).unwrap();
        assert_png(&path);
        let (width, height) = png_size(&path);
        assert_eq!((width, height), (1000, 2 * PANEL_HEIGHT));
        assert_eq!(steps(&curves[0], 0.5).points[..4], [(0.0, -40.0), (0.5, -40.0), (0.5, -40.0), (1.0, -40.0)]);
    }

    /// Width and height from a PNG's IHDR chunk.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }
}
