//! Style features: what a reference recording of OTHER material tells about its processing, for
//! `afx match --reference`.
//!
//! An MRSTFT needs the same notes at the same times; a style reference has neither. ST-ITO compares AFx-Rep
//! embeddings, a network afx does not ship. These features describe what an EQ, a compressor and a limiter
//! change, in dB, whatever the material:
//! - **spectral balance**: the long-term average power in [`BANDS`] log-spaced bands from 40 Hz to 16 kHz
//!   (an EQ's curve, and the level);
//! - **dynamics**: the spread of short-term level (the 95th minus the 10th percentile of 400 ms RMS in dB,
//!   as a loudness range is measured) and the crest factor (peak over RMS), which a compressor narrows.
//!
//! The distance is the mean absolute band difference plus the two dynamics differences, all in dB.

use afx_core::Audio;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Bands of the spectral balance.
pub const BANDS: usize = 24;
const LOW_HZ: f64 = 40.0;
const HIGH_HZ: f64 = 16_000.0;
const N_FFT: usize = 2048;
/// Power floor (−120 dB): silence has a level, not −∞.
const FLOOR: f64 = 1e-12;

/// A recording's style, in dB.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StyleFeatures {
    /// Mean power per band, dB.
    pub bands_db: Vec<f64>,
    /// 95th − 10th percentile of the 400 ms RMS level (frames above −70 dBFS), dB.
    pub level_range_db: f64,
    /// Peak over RMS, dB.
    pub crest_db: f64,
}

impl StyleFeatures {
    /// The features of `audio`'s mono mix at its own rate (any length of at least one FFT frame).
    pub fn of(audio: &Audio) -> StyleFeatures {
        let mono = mono(audio);
        let rate = f64::from(audio.sample_rate());
        StyleFeatures {
            bands_db: band_levels(&mono, rate),
            level_range_db: level_range(&mono, rate),
            crest_db: crest(&mono),
        }
    }

    /// The distance to `other`, in dB: mean |band difference| + |range difference| + |crest difference|.
    pub fn distance(&self, other: &StyleFeatures) -> f64 {
        let bands = self.bands_db.iter().zip(&other.bands_db).map(|(a, b)| (a - b).abs()).sum::<f64>()
            / self.bands_db.len().max(1) as f64;
        bands + (self.level_range_db - other.level_range_db).abs() + (self.crest_db - other.crest_db).abs()
    }
}

fn mono(audio: &Audio) -> Vec<f64> {
    let channels = audio.channels();
    let scale = 1.0 / channels.len().max(1) as f64;
    (0..audio.frames()).map(|i| channels.iter().map(|c| f64::from(c[i])).sum::<f64>() * scale).collect()
}

fn db(power: f64) -> f64 {
    10.0 * power.max(FLOOR).log10()
}

/// Mean power per band from Hann-windowed frames (hop N/2); bands above Nyquist repeat the last one below it.
fn band_levels(x: &[f64], rate: f64) -> Vec<f64> {
    let fft = FftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let window: Vec<f64> =
        (0..N_FFT).map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / N_FFT as f64).cos()).collect();
    let mut power = vec![0.0; N_FFT / 2 + 1];
    let mut frames = 0usize;
    let mut start = 0;
    let mut buf = vec![Complex::new(0.0, 0.0); N_FFT];
    loop {
        for (i, b) in buf.iter_mut().enumerate() {
            let v = x.get(start + i).copied().unwrap_or(0.0);
            *b = Complex::new(v * window[i], 0.0);
        }
        fft.process(&mut buf);
        for (p, b) in power.iter_mut().zip(&buf) {
            *p += b.norm_sqr();
        }
        frames += 1;
        start += N_FFT / 2;
        if start + N_FFT > x.len() {
            break;
        }
    }
    let bin_hz = rate / N_FFT as f64;
    let high = HIGH_HZ.min(rate / 2.0);
    let edges: Vec<f64> = (0..=BANDS).map(|b| LOW_HZ * (high / LOW_HZ).powf(b as f64 / BANDS as f64)).collect();
    let mut out = Vec::with_capacity(BANDS);
    for b in 0..BANDS {
        let lo = (edges[b] / bin_hz).floor() as usize;
        let hi = ((edges[b + 1] / bin_hz).ceil() as usize).clamp(lo + 1, power.len());
        let lo = lo.min(hi - 1);
        let mean = power[lo..hi].iter().sum::<f64>() / ((hi - lo) * frames) as f64;
        out.push(db(mean / (N_FFT as f64 * 0.375)));
    }
    out
}

/// The 95th − 10th percentile of 400 ms RMS levels (hop 100 ms) above −70 dBFS; 0 when fewer than two frames.
fn level_range(x: &[f64], rate: f64) -> f64 {
    let (len, hop) = ((0.4 * rate) as usize, (0.1 * rate) as usize);
    if len == 0 || hop == 0 || x.len() < len {
        return 0.0;
    }
    let mut levels: Vec<f64> = (0..=(x.len() - len) / hop)
        .map(|f| db(x[f * hop..f * hop + len].iter().map(|v| v * v).sum::<f64>() / len as f64))
        .filter(|&l| l > -70.0)
        .collect();
    if levels.len() < 2 {
        return 0.0;
    }
    levels.sort_by(f64::total_cmp);
    let at = |q: f64| levels[((levels.len() - 1) as f64 * q).round() as usize];
    at(0.95) - at(0.10)
}

fn crest(x: &[f64]) -> f64 {
    let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mean_square = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
    db(peak * peak) - db(mean_square)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_db_of_gain_raises_every_band_by_six_db_and_leaves_the_dynamics() {
        let x = afx_testkit::amen_mono();
        let louder = Audio::new(x.sample_rate(), vec![x.channel(0).iter().map(|v| v * 2.0).collect()]).unwrap();
        let (a, b) = (StyleFeatures::of(&x), StyleFeatures::of(&louder));
        for (p, q) in a.bands_db.iter().zip(&b.bands_db) {
            assert!((q - p - 6.02).abs() < 0.01, "{p} → {q}");
        }
        assert!((a.level_range_db - b.level_range_db).abs() < 1e-6 && (a.crest_db - b.crest_db).abs() < 1e-6);
        assert!((a.distance(&b) - 6.02).abs() < 0.01, "{}", a.distance(&b));
    }

    #[test]
    fn a_sine_shows_in_its_band_and_a_clipped_drum_loop_has_less_crest() {
        let rate = 44_100u32;
        let sine: Vec<f32> =
            (0..rate).map(|n| 0.5 * (std::f32::consts::TAU * 1000.0 * n as f32 / 44_100.0).sin()).collect();
        let f = StyleFeatures::of(&Audio::new(rate, vec![sine]).unwrap());
        let loudest = f.bands_db.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let edges = |b: usize| LOW_HZ * (HIGH_HZ / LOW_HZ).powf(b as f64 / BANDS as f64);
        assert!(edges(loudest) <= 1000.0 && 1000.0 <= edges(loudest + 1), "band {loudest}");
        let x = afx_testkit::amen_mono();
        let clipped =
            Audio::new(x.sample_rate(), vec![x.channel(0).iter().map(|v| v.clamp(-0.1, 0.1)).collect()]).unwrap();
        assert!(StyleFeatures::of(&clipped).crest_db < StyleFeatures::of(&x).crest_db - 3.0);
    }
}
