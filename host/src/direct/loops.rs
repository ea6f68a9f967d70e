//! What every direct loop is and shares: the [`DirectRender`] trait, its error, and the port buffers each loop
//! fills the same way whatever the format.

use crate::info::PluginInfo;

/// A direct loop failed (set-up or render); the message says what the hosting crate or plugin answered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectError(pub String);

/// A direct loop: renders `signal` (mono, fed to every main input; sidechains get silence) with the plugin's
/// parameters at `values`, into buffers of its own.
pub trait DirectRender {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError>;
}

/// What every direct loop holds alike, whatever the format: the block size and sample rate it renders at, which
/// input channels get the signal, and the port buffers it refills for each render ([`Ports::fill`]).
pub(crate) struct Ports {
    /// Per input channel: a main input (gets the signal) or a sidechain (silence).
    audio_in: Vec<bool>,
    pub(crate) inputs: Vec<Vec<f32>>,
    pub(crate) outputs: Vec<Vec<f32>>,
    pub(crate) block_size: usize,
    pub(crate) sample_rate: u32,
}

impl Ports {
    pub(crate) fn new(info: &PluginInfo, block_size: usize, sample_rate: u32) -> Ports {
        let audio_in = info.audio_inputs.iter().map(|p| !p.sidechain).collect();
        Ports { audio_in, inputs: vec![], outputs: vec![], block_size, sample_rate }
    }

    /// Fills one buffer per input channel (the signal on main inputs, silence on sidechains) and sizes one per
    /// output channel (`num_outputs`), all the signal's length padded to whole blocks; returns that length.
    pub(crate) fn fill(&mut self, signal: &[f32], num_outputs: usize) -> usize {
        let padded = signal.len().div_ceil(self.block_size) * self.block_size;
        self.inputs.resize_with(self.audio_in.len(), Vec::new);
        for (buffer, &main) in self.inputs.iter_mut().zip(&self.audio_in) {
            buffer.clear();
            if main {
                buffer.extend_from_slice(signal);
            }
            buffer.resize(padded, 0.0);
        }
        self.outputs.resize_with(num_outputs, Vec::new);
        for buffer in &mut self.outputs {
            buffer.resize(padded, 0.0);
        }
        padded
    }
}

pub(crate) fn direct_error(e: impl std::fmt::Display) -> DirectError {
    DirectError(e.to_string())
}
