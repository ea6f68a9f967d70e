//! How close one gradient is to another, and summaries over examples: the numbers `eval-grads` reports.

/// ⟨a, b⟩ / (‖a‖ ‖b‖) in f64; 0 when either vector is zero (an estimate of nothing agrees with nothing).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

/// ‖a − reference‖ / ‖reference‖ in f64 (infinite when the reference is zero and `a` is not).
pub fn relative_error(a: &[f32], reference: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(reference).map(|(x, r)| (f64::from(*x) - f64::from(*r)).powi(2)).sum::<f64>().sqrt();
    let scale = norm(reference);
    if scale == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    diff / scale
}

/// Per component: does `a` point the same way as the reference (a zero reference component agrees with a zero).
pub fn signs_agree(a: &[f32], reference: &[f32]) -> Vec<bool> {
    a.iter().zip(reference).map(|(x, r)| x.signum() == r.signum() || (*x == 0.0 && *r == 0.0)).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

pub fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

/// Mean, median and 10th percentile of some values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
    pub p10: f64,
}

impl Summary {
    /// `None` for no values. Quantiles interpolate linearly between order statistics (numpy's default).
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            median: quantile(&sorted, 0.5),
            p10: quantile(&sorted, 0.1),
        })
    }
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64)
}

/// The fraction of `true`s (NaN for none).
pub fn rate(flags: impl IntoIterator<Item = bool>) -> f64 {
    let (mut yes, mut n) = (0usize, 0usize);
    for f in flags {
        yes += usize::from(f);
        n += 1;
    }
    if n == 0 { f64::NAN } else { yes as f64 / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_relative_error_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert!((cosine(&[1.0, 2.0], &[-2.0, -4.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert!((relative_error(&[2.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(relative_error(&[0.0], &[0.0]), 0.0);
        assert_eq!(signs_agree(&[1.0, -1.0, 0.0], &[2.0, 3.0, 0.0]), vec![true, false, true]);
    }

    #[test]
    fn summary_quantiles_match_numpy() {
        // numpy.percentile([1, 2, 3, 4, 10], [10, 50]) = [1.4, 3.0]
        let s = Summary::of(&[10.0, 2.0, 1.0, 4.0, 3.0]).unwrap();
        assert!((s.p10 - 1.4).abs() < 1e-12 && s.median == 3.0 && s.mean == 4.0, "{s:?}");
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(rate([true, false, true, true]), 0.75);
    }
}
