//! Activations candle lacks or that are cheaper written with `where_cond`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::layers_cpu;

/// PReLU with one learnable slope per channel (dimension 1 of the input) or one shared slope:
/// `y = x` where `x ≥ 0`, else `a·x`. Written with `where_cond` (no `maximum`/`minimum` pair). Checkpoint name:
/// `weight` `(channels)` (or `(1)`), initialised to 0.25 as in PyTorch.
#[derive(Debug, Clone)]
pub struct PRelu {
    weight: Tensor,
}

impl PRelu {
    /// `channels = None` shares one slope across channels.
    pub fn new(channels: Option<usize>, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get_with_hints(channels.unwrap_or(1), "weight", Init::Const(0.25))? })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl PRelu {
    /// The same layer written with candle's own ops (`where_cond`, a broadcast product): the path on devices
    /// without afx's kernels, and the reference the kernels are tested against.
    pub fn forward_composite(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1; x.rank()];
        if self.weight.dim(0)? > 1 {
            shape[1] = self.weight.dim(0)?;
        }
        let slope = self.weight.reshape(shape)?;
        let positive = x.ge(0.0)?;
        positive.where_cond(x, &x.broadcast_mul(&slope)?)
    }
}

impl Module for PRelu {
    /// `x` `(B, C, ...)`. On CPU one fused kernel forward and backward (`layers_cpu`), else [`Self::forward_composite`].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if layers_cpu::runs_on(x) && x.rank() >= 2 {
            layers_cpu::prelu(x, &self.weight)
        } else {
            self.forward_composite(x)
        }
    }
}
