//! The loss curve as a PNG. plotters is built without font support (no system fonts needed), so the plot has no
//! text: x = step, y = log10 loss; grey = training loss per step, black = its moving average, blue = validation
//! MRSTFT of the trained model, red = default parameters, orange = random parameters. report.md says the same.

use std::path::Path;

use plotters::prelude::*;

use crate::TrainError;
use crate::metrics::Record;

pub fn loss_curve(path: &Path, records: &[Record]) -> Result<(), TrainError> {
    let err = |e: String| TrainError::Plot { path: path.to_path_buf(), message: e };
    let steps: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) if s.loss.is_finite() && s.loss > 0.0 => Some((s.step as f64, s.loss.log10())),
            _ => None,
        })
        .collect();
    let vals: Vec<(f64, [f64; 3])> = records
        .iter()
        .filter_map(|r| match r {
            Record::Validation(v) => Some((
                v.step as f64,
                [v.mrstft.trained, v.mrstft.default, v.mrstft.random].map(|x| x.max(1e-9).log10()),
            )),
            _ => None,
        })
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let x_max = steps.iter().map(|p| p.0).fold(1.0, f64::max);
    let ys = steps.iter().map(|p| p.1).chain(vals.iter().flat_map(|v| v.1));
    let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| err(e.to_string()))?;
    let window = 20usize;
    let smooth: Vec<(f64, f64)> = (0..steps.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let mean = steps[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64;
            (steps[i].0, mean)
        })
        .collect();
    let grey = RGBColor(190, 190, 190);
    let series: [(Vec<(f64, f64)>, RGBColor); 5] = [
        (steps, grey),
        (smooth, BLACK),
        (vals.iter().map(|v| (v.0, v.1[0])).collect(), BLUE),
        (vals.iter().map(|v| (v.0, v.1[1])).collect(), RED),
        (vals.iter().map(|v| (v.0, v.1[2])).collect(), RGBColor(255, 165, 0)),
    ];
    for (points, color) in series {
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}
