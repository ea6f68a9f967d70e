//! Planar audio buffers ([`Audio`]) and why audio could not be made, read or written ([`AudioError`]); the files
//! themselves are [`crate::audio_file`]'s.

use std::io;
use std::path::PathBuf;

/// Why an audio buffer could not be made, or an audio file read or written.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// A file of another format than WAV (read through the decoder) could not be opened.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A file of another format than WAV that the decoder could not read (truncated, corrupt, no audio track).
    #[error("{path}: cannot decode: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path} is not a readable WAV file: {reason}")]
    NotWav { path: PathBuf, reason: String },
    #[error("{path} holds no audio (0 frames)")]
    Empty { path: PathBuf },
    #[error("{path}: sample {value} (NaN or infinite) at frame {frame} of channel {channel}")]
    NonFinite { path: PathBuf, value: f32, frame: usize, channel: usize },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("invalid audio buffer: {0}")]
    Invalid(String),
}

/// Audio as one `Vec<f32>` per channel, all the same length, at one sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    sample_rate: u32,
    channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Builds a buffer; every channel must have the same length and there must be at least one.
    pub fn new(sample_rate: u32, channels: Vec<Vec<f32>>) -> Result<Audio, AudioError> {
        if channels.is_empty() {
            return Err(AudioError::Invalid("no channels".into()));
        }
        if sample_rate == 0 {
            return Err(AudioError::Invalid("sample rate 0".into()));
        }
        let frames = channels[0].len();
        if let Some(c) = channels.iter().position(|c| c.len() != frames) {
            return Err(AudioError::Invalid(format!(
                "channel {c} has {} frames, channel 0 has {frames}",
                channels[c].len()
            )));
        }
        Ok(Audio { sample_rate, channels })
    }

    /// Silence of the given shape.
    pub fn silence(sample_rate: u32, num_channels: usize, frames: usize) -> Audio {
        Audio { sample_rate, channels: vec![vec![0.0; frames]; num_channels.max(1)] }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn frames(&self) -> usize {
        self.channels[0].len()
    }

    pub fn channel(&self, index: usize) -> &[f32] {
        &self.channels[index]
    }

    pub fn channels(&self) -> &[Vec<f32>] {
        &self.channels
    }

    pub fn into_channels(self) -> Vec<Vec<f32>> {
        self.channels
    }

    /// The average of all channels.
    pub fn mono(&self) -> Audio {
        if self.num_channels() == 1 {
            return self.clone();
        }
        let scale = 1.0 / self.num_channels() as f32;
        let mixed = (0..self.frames()).map(|f| self.channels().iter().map(|c| c[f]).sum::<f32>() * scale).collect();
        Audio::new(self.sample_rate(), vec![mixed]).expect("one channel")
    }
}

impl Audio {
    /// Makes this buffer `num_channels` x `frames` at `sample_rate`, reusing its allocations. Contents are
    /// unspecified afterwards. (For a renderer that fills the same output buffer render after render.)
    pub fn reshape(&mut self, sample_rate: u32, num_channels: usize, frames: usize) {
        self.sample_rate = sample_rate;
        self.channels.resize_with(num_channels.max(1), Vec::new);
        for channel in &mut self.channels {
            channel.resize(frames, 0.0);
        }
    }

    /// The channels to write into; their lengths stay as they are (see [`Audio::reshape`]).
    pub fn channels_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.channels
    }
}
