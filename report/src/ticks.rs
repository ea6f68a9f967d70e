//! Where an axis' ticks go and how they read: evenly spaced ticks at round steps, ticks of a logarithmic axis,
//! and the tick labels' text.
//!
//! plotters' own tick placement is not used: its logarithmic axis labels only powers of ten, so a loss that stays
//! within one decade got a single label (or none).

/// Evenly spaced ticks at a round step (1, 2, 2.5 or 5 × 10^k), at most `max` of them, and the step.
pub(crate) fn linear_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / max.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// Ticks of a log axis: powers of ten when the range spans a few decades (every n-th when many), else 1-2-5 or
/// 1…9 × 10^k, else (within a decade) evenly spaced ones. Returns (ticks, fainter grid lines, the even step).
pub(crate) fn log_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, Vec<f64>, Option<f64>) {
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
pub(crate) fn number_label(v: f64, scientific: bool, step: Option<f64>) -> String {
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
