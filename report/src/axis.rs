//! A chart axis for plotters ([`Axis`]): linear, logarithmic or a row of categories, with the ticks of
//! [`crate::ticks`], and the data range an axis is fitted to ([`padded_range`]).

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter};

use crate::ticks::{linear_ticks, log_ticks, number_label};

/// The data's range with `pad` of its span (in log space on a log axis) added on both sides; a single value gets
/// a range around it, no data a default range.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>, log: bool, pad: f64) -> Range<f64> {
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

/// A chart axis for plotters: linear or logarithmic, with ticks placed and labelled by [`crate::ticks`] (see its module doc), or
/// a row of named categories (unit-wide slots centred on i + 0.5).
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    range: Range<f64>,
    log: bool,
    /// Labelled ticks (with a grid line).
    pub(crate) ticks: Vec<f64>,
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
    pub(crate) fn numbers(range: Range<f64>, log: bool, max_ticks: usize) -> Axis {
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

    pub(crate) fn categories(n: usize) -> Axis {
        let ticks = (0..n).map(|i| i as f64 + 0.5).collect();
        Axis { range: 0.0..n.max(1) as f64, log: false, ticks, minor: vec![], labels: Labels::Categories }
    }

    fn scale(&self, v: f64) -> f64 {
        if self.log { v.ln() } else { v }
    }

    pub(crate) fn label(&self, v: f64) -> String {
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
