//! What every direct loop is and shares: the [`DirectRender`] trait, its error, and the port buffers each loop
//! fills the same way whatever the format.

/// A direct loop failed (set-up or render); the message says what the hosting crate or plugin answered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectError(pub String);

/// A direct loop: renders `signal` (mono, fed to every main input; sidechains get silence) with the plugin's
/// parameters at `values`, into buffers of its own.
pub trait DirectRender {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError>;
}

/// Fills one buffer per input port (the signal on main inputs, silence on sidechains) and sizes one per output
/// port, all `padded` frames long. Shared by the direct loops: it is the same for every format.
pub(crate) fn fill_ports(
    inputs: &mut Vec<Vec<f32>>,
    outputs: &mut Vec<Vec<f32>>,
    main: &[bool],
    num_outputs: usize,
    signal: &[f32],
    padded: usize,
) {
    inputs.resize_with(main.len(), Vec::new);
    for (buffer, &main) in inputs.iter_mut().zip(main) {
        buffer.clear();
        if main {
            buffer.extend_from_slice(signal);
        }
        buffer.resize(padded, 0.0);
    }
    outputs.resize_with(num_outputs, Vec::new);
    for buffer in outputs {
        buffer.resize(padded, 0.0);
    }
}

pub(crate) fn direct_error(e: impl std::fmt::Display) -> DirectError {
    DirectError(e.to_string())
}
