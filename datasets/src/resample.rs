//! Sample-rate conversion of whole clips (rubato's FFT resampler, fixed ratio).

use afx_core::Audio;
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};

use crate::DatasetError;

/// `audio` at `rate`: the same duration (rounded to whole frames), every channel resampled, the resampler's
/// delay removed so the result lines up with the input. Returns a copy when the rate already matches.
pub fn resample(audio: &Audio, rate: u32) -> Result<Audio, DatasetError> {
    let from = audio.sample_rate();
    if from == rate {
        return Ok(audio.clone());
    }
    let fail = |reason: String| DatasetError::Resample { from, to: rate, reason };
    let (channels, frames) = (audio.num_channels(), audio.frames());
    let mut resampler = Fft::<f32>::new(from as usize, rate as usize, 1024, channels, FixedSync::Both)
        .map_err(|e| fail(e.to_string()))?;
    let needed = resampler.process_all_needed_output_len(frames);
    let mut output = vec![vec![0.0f32; needed]; channels];
    let input = SequentialSliceOfVecs::new(audio.channels(), channels, frames).map_err(|e| fail(e.to_string()))?;
    let mut out = SequentialSliceOfVecs::new_mut(&mut output, channels, needed).map_err(|e| fail(e.to_string()))?;
    let (_, produced) =
        resampler.process_all_into_buffer(&input, &mut out, frames, None).map_err(|e| fail(e.to_string()))?;
    let expected = ((frames as u64 * u64::from(rate)).div_ceil(u64::from(from)) as usize).min(produced).max(1);
    for c in &mut output {
        c.truncate(expected);
    }
    Audio::new(rate, output).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, seconds: f32) -> Audio {
        let n = (rate as f32 * seconds) as usize;
        Audio::new(rate, vec![(0..n).map(|i| (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin()).collect()])
            .unwrap()
    }

    #[test]
    fn the_same_rate_is_a_copy_and_stereo_stays_stereo() {
        let x = sine(22_050, 100.0, 0.5);
        assert_eq!(resample(&x, 22_050).unwrap(), x);
        let stereo = Audio::new(48_000, vec![x.channel(0).to_vec(), x.channel(0).to_vec()]).unwrap();
        let y = resample(&stereo, 22_050).unwrap();
        assert_eq!((y.num_channels(), y.sample_rate()), (2, 22_050));
        assert_eq!(y.channel(0), y.channel(1));
    }

    #[test]
    fn a_sine_keeps_its_frequency_phase_and_duration() {
        let x = sine(44_100, 440.0, 1.0);
        let y = resample(&x, 16_000).unwrap();
        assert_eq!(y.sample_rate(), 16_000);
        assert_eq!(y.frames(), 16_000);
        let want = sine(16_000, 440.0, 1.0);
        // Away from the edges the resampled sine is the sine at the new rate (delay removed).
        let err = y.channel(0)[1000..15_000]
            .iter()
            .zip(&want.channel(0)[1000..15_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Within a few percent of full scale: the FFT resampler's filters ripple slightly, and its delay is
        // compensated to the frame.
        assert!(err < 5e-2, "max error {err}");
    }
}
