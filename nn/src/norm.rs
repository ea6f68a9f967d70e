//! Normalisations written with plain differentiable ops (candle_nn's `LayerNorm`/`RmsNorm` drop gradients).

use candle_core::{D, DType, Module, Result, Tensor, Var, bail};
use candle_nn::{Init, VarBuilder};

use crate::layers_cpu;

/// Group normalisation over `(B, C, ...)`: statistics per item and group of C/G channels, then a per-channel affine.
/// Checkpoint names: `weight` `(C)` (init 1), `bias` `(C)` (init 0).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || channels / groups * groups != channels {
            bail!("group norm: {channels} channels do not split into {groups} groups")
        }
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, groups, eps })
    }
}

impl Module for GroupNorm {
    /// On CPU one fused kernel forward and backward (`layers_cpu`), else [`Self::forward_composite`].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if layers_cpu::runs_on(x) && x.rank() >= 2 {
            layers_cpu::group_norm(x, &self.weight, &self.bias, self.groups, self.eps)
        } else {
            self.forward_composite(x)
        }
    }
}

impl GroupNorm {
    /// The same layer written with candle's own ops: the path on devices without afx's kernels, and the
    /// reference the kernels are tested against.
    pub fn forward_composite(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() < 2 {
            bail!("group norm: expected (B, C, ...), got {dims:?}")
        }
        let grouped = x.reshape((dims[0], self.groups, ()))?;
        let normalised = normalise_last(&grouped, self.eps)?.reshape(dims.as_slice())?;
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        normalised.broadcast_mul(&self.weight.reshape(shape.as_slice())?)?.broadcast_add(&self.bias.reshape(shape)?)
    }
}

/// Layer normalisation over the LAST dimension with a learnable affine, via `candle_nn::ops::layer_norm_slow`.
/// Checkpoint names: `weight` (init 1), `bias` (init 0).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f32, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
    }
}

/// Batch normalisation over `(B, C, T)` WITHOUT affine (as inside DeepAFx-ST's FiLM blocks). Training uses the
/// batch's per-channel statistics (biased variance, differentiable) and updates the running statistics with
/// `momentum`; evaluation uses the running ones. Checkpoint names: `running_mean`, `running_var` (they live in the
/// VarMap so checkpoints carry them, but receive no gradient, so optimizers skip them).
#[derive(Debug, Clone)]
pub struct BatchNorm1d {
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm1d {
    pub fn new(channels: usize, momentum: f64, eps: f64, vb: VarBuilder) -> Result<Self> {
        let mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        // From a VarMap these are its Vars (updates land in checkpoints); from a loaded file, private copies.
        Ok(Self { running_mean: Var::from_tensor(&mean)?, running_var: Var::from_tensor(&var)?, momentum, eps })
    }

    /// `train = true`: batch statistics, running statistics updated. `false`: running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, channels, _) = x.dims3()?;
        if !train {
            let mean = self.running_mean.as_tensor().reshape((1, channels, 1))?;
            let std = (self.running_var.as_tensor() + self.eps)?.sqrt()?.reshape((1, channels, 1))?;
            return x.broadcast_sub(&mean)?.broadcast_div(&std);
        }
        let mean = x.mean_keepdim(2)?.mean_keepdim(0)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(2)?.mean_keepdim(0)?;
        let count = (x.elem_count() / channels) as f64;
        let unbiased = (var.detach().flatten_all()? * (count / (count - 1.0).max(1.0)))?;
        let m = self.momentum;
        let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach().flatten_all()? * m)?)?;
        let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean.to_dtype(self.running_mean.dtype())?)?;
        self.running_var.set(&new_var.to_dtype(self.running_var.dtype())?)?;
        centred.broadcast_div(&(var + self.eps)?.sqrt()?)
    }
}

/// `(x − mean) / sqrt(var + eps)` over the last dimension (biased variance).
fn normalise_last(x: &Tensor, eps: f64) -> Result<Tensor> {
    let internal = match x.dtype() {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    };
    let x32 = x.to_dtype(internal)?;
    let centred = x32.broadcast_sub(&x32.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(x.dtype())
}
