//! Planar audio buffers and WAV files (read any PCM/float WAV, write 32-bit float atomically).

use std::io;
use std::path::{Path, PathBuf};

/// Why an audio file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
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

    /// Reads a WAV file (integer PCM of any width or 32-bit float) into f32 samples in [-1, 1].
    pub fn read_wav(path: &Path) -> Result<Audio, AudioError> {
        let file = std::fs::File::open(path).map_err(|source| AudioError::Open { path: path.into(), source })?;
        let not_wav = |e: hound::Error| AudioError::NotWav { path: path.into(), reason: e.to_string() };
        let reader = hound::WavReader::new(io::BufReader::new(file)).map_err(not_wav)?;
        let spec = reader.spec();
        let num_channels = usize::from(spec.channels);
        if num_channels == 0 {
            return Err(AudioError::NotWav { path: path.into(), reason: "header says 0 channels".into() });
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(not_wav)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|s| s as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(not_wav)?
            }
        };
        let frames = interleaved.len() / num_channels;
        if frames == 0 {
            return Err(AudioError::Empty { path: path.into() });
        }
        if let Some(i) = interleaved.iter().position(|s| !s.is_finite()) {
            let (frame, channel) = (i / num_channels, i % num_channels);
            return Err(AudioError::NonFinite { path: path.into(), value: interleaved[i], frame, channel });
        }
        let mut channels = vec![Vec::with_capacity(frames); num_channels];
        for frame in interleaved.chunks_exact(num_channels) {
            for (channel, &sample) in channels.iter_mut().zip(frame) {
                channel.push(sample);
            }
        }
        Audio::new(spec.sample_rate, channels)
    }

    /// Writes 32-bit float WAV through a temporary file in the same folder, renamed at the end, so a failure
    /// never leaves a half-written file under `path`.
    pub fn write_wav(&self, path: &Path) -> Result<(), AudioError> {
        let fail = |reason: String| AudioError::Write { path: path.into(), reason };
        let spec = hound::WavSpec {
            channels: u16::try_from(self.num_channels()).map_err(|_| fail("too many channels".into()))?,
            sample_rate: self.sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        crate::atomic::write_with(path, |file| {
            let mut writer = hound::WavWriter::new(io::BufWriter::new(file), spec).map_err(|e| e.to_string())?;
            for frame in 0..self.frames() {
                for channel in &self.channels {
                    writer.write_sample(channel[frame]).map_err(|e| e.to_string())?;
                }
            }
            writer.finalize().map_err(|e| e.to_string())
        })
        .map_err(fail)
    }
}

impl Audio {
    /// Makes this buffer `num_channels` x `frames` at `sample_rate`, reusing its allocations. Contents are
    /// unspecified afterwards.
    pub(crate) fn reshape(&mut self, sample_rate: u32, num_channels: usize, frames: usize) {
        self.sample_rate = sample_rate;
        self.channels.resize_with(num_channels.max(1), Vec::new);
        for channel in &mut self.channels {
            channel.resize(frames, 0.0);
        }
    }

    pub(crate) fn channels_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.channels
    }
}
