//! The encoder's input: a log-magnitude spectrogram. Nothing upstream of it is trained, so it is computed on
//! detached audio (nn's STFT, no gradient kept).

use afx_core::Audio;
use afx_nn::stft::Stft;
use candle_core::{DType, Device, Result, Tensor};

/// Log-magnitude STFT `(B, 1, bins, frames)` of mono clips `(B, T)`.
#[derive(Debug, Clone)]
pub struct Frontend {
    stft: Stft,
}

/// `ln |X|` spans about −9 (the STFT's floor) to +5; dividing by this keeps the first conv's input near unit scale
/// without normalising each clip (its level is information the compressor and make-up gain need).
pub const LOG_SCALE: f64 = 4.0;

impl Frontend {
    pub fn new(n_fft: usize, hop: usize, device: &Device) -> Result<Frontend> {
        Ok(Frontend { stft: Stft::new(n_fft, hop, DType::F32, device)? })
    }

    /// Features of `(B, T)` mono audio.
    pub fn features(&self, audio: &Tensor) -> Result<Tensor> {
        (self.stft.log_magnitude(audio)? / LOG_SCALE)?.unsqueeze(1) // (B, 1, bins, frames)
    }

    /// Features of a batch of mono clips of equal length.
    pub fn features_of(&self, clips: &[&Audio], device: &Device) -> Result<Tensor> {
        self.features(&batch_tensor(clips, device)?)
    }
}

/// `(B, T)` tensor of the first channel of each clip (all the same length).
pub fn batch_tensor(clips: &[&Audio], device: &Device) -> Result<Tensor> {
    let frames = clips.first().map_or(0, |c| c.frames());
    let mut data = Vec::with_capacity(clips.len() * frames);
    for clip in clips {
        if clip.frames() != frames {
            candle_core::bail!("batch: clips of {} and {frames} frames", clip.frames())
        }
        data.extend_from_slice(clip.channel(0));
    }
    Tensor::from_vec(data, (clips.len(), frames), device)
}
