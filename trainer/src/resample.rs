//! Mono downmix and sample-rate conversion (rubato's FFT resampler) for the model's analysis rate.

use afx_host::Audio;
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};

use crate::TrainError;

/// Frames `start..start + frames` of `audio`, averaged over channels.
pub fn mono_range(audio: &Audio, start: usize, frames: usize) -> Vec<f32> {
    let scale = 1.0 / audio.num_channels() as f32;
    (start..start + frames).map(|i| audio.channels().iter().map(|c| c[i]).sum::<f32>() * scale).collect()
}

/// `audio` averaged to one channel.
pub fn mono(audio: &Audio) -> Audio {
    Audio::new(audio.sample_rate(), vec![mono_range(audio, 0, audio.frames())]).expect("one channel")
}

/// `audio` (any channels) as mono at `rate`; unchanged apart from the downmix when it is already there.
pub fn to_rate(audio: &Audio, rate: u32) -> Result<Audio, TrainError> {
    let mono = mono(audio);
    let from = audio.sample_rate();
    if from == rate {
        return Ok(mono);
    }
    let err = |message: String| TrainError::Resample { from, to: rate, message };
    let frames = mono.frames();
    let mut resampler =
        Fft::<f32>::new(from as usize, rate as usize, 1024, 1, FixedSync::Both).map_err(|e| err(e.to_string()))?;
    let channels = mono.into_channels();
    let input = SequentialSliceOfVecs::new(&channels, 1, frames).map_err(|e| err(e.to_string()))?;
    // process_all trims the resampler's delay and padding: the output lines up with the input.
    let output = resampler.process_all(&input, frames, None).map_err(|e| err(e.to_string()))?;
    let samples = output.take_data();
    Audio::new(rate, vec![samples]).map_err(|e| err(e.to_string()))
}
