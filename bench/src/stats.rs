//! Medians of the benches' samples.
//!
//! Two, because the benches report two different statistics and their figures must stay what they were:
//! timings of repeated runs report a measured sample, the upper middle one ([`median`]); medians over items
//! (matched pairs) and over a child's timed steps report the textbook median, the mean of the two middle
//! samples when their number is even ([`midpoint_median`]).

/// The upper middle sample of `v` (the middle one when their number is odd): a time that was measured. `v` must
/// not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The textbook median: the middle sample, or the mean of the two middle ones when their number is even; NaN
/// when `v` is empty.
pub fn midpoint_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_upper_middle_sample() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn midpoint_median_averages_the_two_middle_samples() {
        assert_eq!(midpoint_median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(midpoint_median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(midpoint_median(vec![]).is_nan());
    }
}
