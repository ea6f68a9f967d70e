//! The training run's chart, `loss.png` ([`loss_curve`]), drawn with `afx-report`'s [`line_chart`], and the
//! curves of a prediction with automation ([`curves_png`]).

use std::path::Path;

use afx_host::Curves;
use afx_report::{CurveLine, LineChart, PALETTE, PlotError, Series, curves_chart, line_chart};

use crate::metrics::{Baselines, Record};

/// The training run's `loss.png`: loss against step on a logarithmic y axis: the training loss of every step
/// (light grey), its moving average over 20 steps, and the validation MRSTFT of the trained model and of the
/// default and random parameters (with markers: validations are sparse).
pub fn loss_curve(path: &Path, records: &[Record]) -> Result<(), PlotError> {
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

/// A curves file's PNG: one panel per unit, time in seconds, a legend naming each parameter (see
/// [`curves_chart`]).
pub fn curves_png(path: &Path, title: &str, curves: &Curves) -> Result<(), PlotError> {
    let lines: Vec<CurveLine> = curves
        .curves
        .iter()
        .map(|c| CurveLine { name: &c.param, unit: c.unit.as_deref(), values: &c.values })
        .collect();
    curves_chart(path, title, curves.hop as f64 / f64::from(curves.sample_rate), &lines)
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
}
