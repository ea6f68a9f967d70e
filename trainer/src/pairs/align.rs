//! The time offset between a raw recording and its processed version, by FFT cross-correlation.
//!
//! Sign convention: a POSITIVE offset `d` means the processed signal LAGS the raw one by `d` frames
//! (`processed[n] ≈ raw[n − d]`, as a plugin with uncompensated latency, or an export that starts late, makes
//! it); a negative offset means it leads. [`shift_to_overlap`] undoes it.
//!
//! The correlation is phase-only (GCC-PHAT, see [`estimate_offset`]); the peak is the largest POSITIVE one within ±`max_lag` (EQ and compression do not invert polarity;
//! a strong negative side lobe must not win). Note that a filter moves the peak a little by itself (its group
//! delay): the tolerance of `afx train --pairs` (2 ms) is well above what a typical EQ/compressor shifts it by.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// At most this many frames (from the middle of the recording) are correlated: 60 s at 48 kHz.
pub const MAX_FRAMES: usize = 60 * 48_000;

/// The lag in `-max_lag..=max_lag` (frames) at which `processed` best matches `raw` delayed by it; 0 when
/// either is silent. Both must be at the same rate; they may differ in length.
pub fn estimate_offset(raw: &[f32], processed: &[f32], max_lag: usize) -> i64 {
    let n = raw.len().min(processed.len());
    if n == 0 {
        return 0;
    }
    // The middle MAX_FRAMES of the common length keeps the FFT bounded for long files.
    let (start, len) = if n > MAX_FRAMES { ((n - MAX_FRAMES) / 2, MAX_FRAMES) } else { (0, n) };
    let x = &raw[start..start + len];
    let p = &processed[start..start + len];
    let max_lag = max_lag.min(len - 1);
    let size = (len + max_lag).next_power_of_two();
    let mut planner = FftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let spectrum = |s: &[f32]| {
        let mut buf: Vec<Complex<f32>> = s.iter().map(|&v| Complex::new(v, 0.0)).collect();
        buf.resize(size, Complex::new(0.0, 0.0));
        forward.process(&mut buf);
        buf
    };
    let (xs, mut ps) = (spectrum(x), spectrum(p));
    // IFFT(P · conj(X))[k] = Σ_n p[n]·x[n − k]: the correlation at lag k (negative lags wrap to size + k).
    // Weighted by 1/|P · conj(X)| (GCC-PHAT): only the phase is kept, so the peak is sharp at the delay instead of
    // following the spectrum's tonal side lobes, or the EQ's boosts (a plain correlation of a tonal drum loop
    // through a +12 dB peak at 2 kHz picked a side lobe 33 samples off). A floor of 1e-6 of the largest bin
    // keeps empty bins (silence, zero padding) from being amplified.
    let mut largest = 0.0f32;
    for (a, b) in ps.iter_mut().zip(&xs) {
        *a *= b.conj();
        largest = largest.max(a.norm());
    }
    let floor = largest * 1e-6 + f32::MIN_POSITIVE;
    for a in ps.iter_mut() {
        *a /= a.norm() + floor;
    }
    inverse.process(&mut ps);
    let at = |k: i64| if k >= 0 { ps[k as usize].re } else { ps[(size as i64 + k) as usize].re };
    let mut best = (0i64, 0.0f32);
    for k in -(max_lag as i64)..=max_lag as i64 {
        let c = at(k);
        // Ties (and silence, all zeros) keep the lag nearest zero: scanning outwards would be fairer, but an
        // exact tie between two lags does not happen on real audio; silence gives 0.
        if c > best.1 || (c == best.1 && k.abs() < best.0.abs()) {
            best = (k, c);
        }
    }
    best.0
}

/// `raw` and `processed` (same length, any channels) with `offset` undone (see [`estimate_offset`]'s sign) and
/// both cropped to the frames they share: `len − |offset|` frames.
pub fn shift_to_overlap(raw: &[Vec<f32>], processed: &[Vec<f32>], offset: i64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let d = offset.unsigned_abs() as usize;
    let crop = |channels: &[Vec<f32>], skip: usize| -> Vec<Vec<f32>> {
        channels
            .iter()
            .map(|c| {
                let keep = c.len().saturating_sub(d);
                c[skip.min(c.len())..(skip + keep).min(c.len())].to_vec()
            })
            .collect()
    };
    if offset >= 0 {
        // processed[n] ≈ raw[n − d]: drop processed's first d frames and raw's last d.
        (crop(raw, 0), crop(processed, d))
    } else {
        (crop(raw, d), crop(processed, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real drum loop (sonic-pi-samples), mono.
    fn drums() -> Vec<f32> {
        afx_testkit::amen_mono().channel(0).to_vec()
    }

    fn delayed(x: &[f32], d: i64) -> Vec<f32> {
        // Same length: positive d prepends d zeros and drops the tail; negative d drops the head and pads zeros.
        let n = x.len();
        (0..n as i64).map(|i| if (0..n as i64).contains(&(i - d)) { x[(i - d) as usize] } else { 0.0 }).collect()
    }

    #[test]
    fn a_known_shift_of_real_audio_is_found_with_its_sign() {
        let x = drums();
        let rate = afx_testkit::amen_mono().sample_rate() as f64;
        let max_lag = (0.1 * rate) as usize;
        for d in [0i64, 1, 154, 309, -154, -37, max_lag as i64 - 1] {
            assert_eq!(estimate_offset(&x, &delayed(&x, d), max_lag), d, "shift {d}");
        }
        // The same signal at a lower level, still found.
        let quiet: Vec<f32> = delayed(&x, 88).iter().map(|v| v * 0.05).collect();
        assert_eq!(estimate_offset(&x, &quiet, max_lag), 88);
        // Beyond the search range: not found as itself.
        assert_ne!(estimate_offset(&x, &delayed(&x, 2 * max_lag as i64), max_lag), 2 * max_lag as i64);
        assert_eq!(estimate_offset(&x, &vec![0.0; x.len()], max_lag), 0);
    }

    #[test]
    fn shifting_back_by_the_offset_lines_the_pair_up_on_their_overlap() {
        let x = drums();
        for d in [154i64, -154] {
            let p = delayed(&x, d);
            let (r, q) = shift_to_overlap(std::slice::from_ref(&x), &[p], d);
            assert_eq!(r[0].len(), x.len() - 154);
            assert_eq!(q[0].len(), x.len() - 154);
            assert_eq!(r[0], q[0], "shift {d}");
        }
        let (r, q) = shift_to_overlap(std::slice::from_ref(&x), std::slice::from_ref(&x), 0);
        assert_eq!((r[0].len(), q[0].len()), (x.len(), x.len()));
    }
}
