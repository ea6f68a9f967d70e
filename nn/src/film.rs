//! Feature-wise linear modulation: a conditioning vector sets a per-channel scale and shift.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::layers_cpu;

/// FiLM as in DeepAFx-ST's proxy TCN: `Linear(cond_dim → 2·channels)` gives γ (first half) and β (second half);
/// `y = γ ⊙ x + β` per channel. Checkpoint names: `adaptor.weight` `(2·channels, cond_dim)`, `adaptor.bias`.
#[derive(Debug, Clone)]
pub struct Film {
    adaptor: Linear,
    channels: usize,
}

impl Film {
    pub fn new(cond_dim: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { adaptor: candle_nn::linear(cond_dim, 2 * channels, vb.pp("adaptor"))?, channels })
    }

    /// `x` `(B, channels, T)`, `cond` `(B, cond_dim)` → `(B, channels, T)`.
    /// On CPU the modulation is one fused kernel forward and backward (`layers_cpu`).
    pub fn forward(&self, x: &Tensor, cond: &Tensor) -> Result<Tensor> {
        if !(layers_cpu::runs_on(x) && x.rank() == 3) {
            return self.forward_composite(x, cond);
        }
        let params = self.adaptor.forward(cond)?;
        let gamma = params.narrow(1, 0, self.channels)?;
        let beta = params.narrow(1, self.channels, self.channels)?;
        layers_cpu::film(x, &gamma, &beta)
    }

    /// The same layer written with candle's own broadcast ops: the path on other devices and the reference the
    /// kernel is tested against.
    pub fn forward_composite(&self, x: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let params = self.adaptor.forward(cond)?;
        let gamma = params.narrow(1, 0, self.channels)?.unsqueeze(2)?;
        let beta = params.narrow(1, self.channels, self.channels)?.unsqueeze(2)?;
        x.broadcast_mul(&gamma)?.broadcast_add(&beta)
    }
}
