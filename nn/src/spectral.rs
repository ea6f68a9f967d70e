//! The conventions every spectral path agrees on (the DFT basis and the real FFTs of [`crate::stft`], the fused
//! sums of `spectral_cpu`): the window and the floor under the power. Public as [`crate::stft::hann`] and
//! [`crate::stft::POWER_FLOOR`]; defined here, below the STFT and its CPU kernels, so that the kernels need
//! nothing from the layer that calls them.

/// Floor under `re² + im²` before the square root, as auraloss: keeps the magnitude's gradient finite at silence.
pub const POWER_FLOOR: f64 = 1e-8;

/// Periodic Hann window (torch.hann_window's default): 0.5 − 0.5·cos(2πn/N).
pub fn hann(n: usize, size: usize) -> f64 {
    0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / size as f64).cos()
}
