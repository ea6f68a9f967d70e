//! Integrated loudness (EBU R128 / ITU-R BS.1770, in LUFS) with the `ebur128` crate, for the loudness error
//! of `afx compare` (DeepAFx-ST's raw logs report it beside MRSTFT) and of a pair folder's held-out pairs.

use afx_core::Audio;

/// The quietest loudness reported: the standard's absolute gate (silence has no loudness, −∞).
pub const FLOOR_LUFS: f64 = -70.0;

/// The integrated loudness of `audio` in LUFS, at least [`FLOOR_LUFS`].
pub fn integrated_lufs(audio: &Audio) -> f64 {
    let channels: Vec<&[f32]> = audio.channels().iter().map(Vec::as_slice).collect();
    let Ok(mut meter) = ebur128::EbuR128::new(channels.len() as u32, audio.sample_rate(), ebur128::Mode::I) else {
        return FLOOR_LUFS;
    };
    if meter.add_frames_planar_f32(&channels).is_err() {
        return FLOOR_LUFS;
    }
    meter.loudness_global().ok().filter(|l| l.is_finite()).map_or(FLOOR_LUFS, |l| l.max(FLOOR_LUFS))
}

/// |loudness(a) − loudness(b)| in LU.
pub fn loudness_error(a: &Audio, b: &Audio) -> f64 {
    (integrated_lufs(a) - integrated_lufs(b)).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_reads_as_the_standard_says_and_6_db_more_is_6_lu_more() {
        // BS.1770: a full-scale 997 Hz sine in one channel reads -3.01 LUFS, so a peak of 0.1 (-20 dB) reads
        // -23.01; doubling the amplitude adds 6.02 LU.
        let sine = |amp: f32| {
            let x =
                (0..48_000 * 3).map(|n| amp * (std::f32::consts::TAU * 997.0 * n as f32 / 48_000.0).sin()).collect();
            Audio::new(48_000, vec![x]).unwrap()
        };
        let quiet = integrated_lufs(&sine(0.1));
        assert!((quiet + 23.01).abs() < 0.1, "{quiet}");
        assert!((loudness_error(&sine(0.2), &sine(0.1)) - 6.02).abs() < 0.05);
        assert_eq!(integrated_lufs(&Audio::silence(48_000, 1, 48_000)), FLOOR_LUFS);
    }
}
