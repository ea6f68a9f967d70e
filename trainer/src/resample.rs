//! Mono downmix and sample-rate conversion for the model's analysis rate: the corpus's own conversion
//! (`afx_datasets`), so training data and inference input go through the same resampler.

use afx_core::Audio;

use crate::TrainError;

/// Frames `start..start + frames` of `audio`, averaged over channels.
pub fn mono_range(audio: &Audio, start: usize, frames: usize) -> Vec<f32> {
    let scale = 1.0 / audio.num_channels() as f32;
    (start..start + frames).map(|i| audio.channels().iter().map(|c| c[i]).sum::<f32>() * scale).collect()
}

/// `audio` (any channels) as mono at `rate`; unchanged apart from the downmix when it is already there.
pub fn to_rate(audio: &Audio, rate: u32) -> Result<Audio, TrainError> {
    let from = audio.sample_rate();
    afx_datasets::resample::resample(&audio.mono(), rate).map_err(|e| TrainError::Resample {
        from,
        to: rate,
        message: e.to_string(),
    })
}
