//! Convolutions with correct gradients at any batch size.
//!
//! candle 0.11.1's conv1d backward is wrong on CPU for batch > 1 (the weight gradient always, the input gradient
//! when padding = 0 and dilation = 1; see `tests/stock_candle.rs`). [`conv1d`] keeps stock conv1d for the forward
//! and supplies its own backward through a pass-through op ([`crate::passthrough`]):
//! - dX = conv1d(dY, W flipped in time with in/out channels swapped, padding (K-1)·d, dilation d): a stock conv1d
//!   FORWARD on a contiguous kernel, which is correct;
//! - dW[:, :, k] = Σ_b dY_b · X_b[:, k·d .. k·d + T_out]ᵀ: K plain matmuls on strided views, no im2col copy.
//!
//! Gradients are computed only for arguments that take part in autograd (the audio input of a first layer gets
//! none). [`Conv2d`] wraps stock conv2d, whose backward is correct on CPU.

use candle_core::{CustomOp3, D, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::passthrough::passthrough_fwd;

/// How [`Conv1d`] pads its input in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// (K-1)·d zeros before the signal, none after: the output at t sees inputs up to t. Output length = input.
    Causal,
    /// Zeros split evenly (the extra one after): output length = input length, centred for odd kernels.
    Same,
    /// No padding: output length = input − (K-1)·d.
    Valid,
}

/// Settings of a [`Conv1d`] (stride 1, groups 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dConfig {
    pub dilation: usize,
    pub padding: Padding,
    pub bias: bool,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Self { dilation: 1, padding: Padding::Same, bias: true }
    }
}

/// 1-D convolution over `(batch, in_channels, time)` with dilation and causal/same/valid padding, whose backward
/// is correct for any batch size. Checkpoint names: `weight` `(out, in, kernel)`, `bias` `(out)`.
#[derive(Debug, Clone)]
pub struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv1dConfig,
}

impl Conv1d {
    /// Creates (or loads) the layer's weights under `vb`, initialised as PyTorch does (uniform ±1/√(in·kernel)).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv1dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((in_channels * kernel) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((out_channels, in_channels, kernel), "weight", init)?;
        let bias = if config.bias { Some(vb.get_with_hints(out_channels, "bias", init)?) } else { None };
        Ok(Self { weight, bias, config })
    }

    /// Builds the layer from existing tensors (`weight` `(out, in, kernel)`, optional `bias` `(out)`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, config: Conv1dConfig) -> Self {
        Self { weight, bias, config }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn config(&self) -> Conv1dConfig {
        self.config
    }

    /// Samples of context the layer sees: (kernel − 1) · dilation + 1.
    pub fn receptive_field(&self) -> usize {
        (self.weight.dim(2).unwrap_or(1) - 1) * self.config.dilation + 1
    }
}

impl Module for Conv1d {
    /// `x`: `(batch, in_channels, time)` → `(batch, out_channels, time')`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.config.dilation;
        let total = (self.weight.dim(2)? - 1) * d;
        let x = match self.config.padding {
            Padding::Causal if total > 0 => x.pad_with_zeros(D::Minus1, total, 0)?,
            Padding::Same if total > 0 => x.pad_with_zeros(D::Minus1, total / 2, total - total / 2)?,
            _ => x.clone(),
        };
        let y = conv1d(&x, &self.weight, d)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

/// Valid (unpadded), stride-1 1-D convolution `x (B, C, T) ⋆ w (O, C, K)` with dilation `d` → `(B, O, T − (K−1)d)`,
/// with gradients correct for every batch size (see the module doc).
pub fn conv1d(x: &Tensor, w: &Tensor, dilation: usize) -> Result<Tensor> {
    let y = x.detach().conv1d(&w.detach(), 0, 1, dilation, 1)?;
    if !x.track_op() && !w.track_op() {
        return Ok(y);
    }
    y.apply_op3(x, w, Conv1dGrad { dilation })
}

/// The backward of [`conv1d`]; its forward copies the stock conv1d output.
struct Conv1dGrad {
    dilation: usize,
}

impl CustomOp3 for Conv1dGrad {
    fn name(&self) -> &'static str {
        "afx-conv1d"
    }

    passthrough_fwd!(op3);

    fn bwd(
        &self,
        _y: &Tensor,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dilation;
        let k = w.dim(2)?;
        let grad = grad.detach().contiguous()?;
        let dx = if x.track_op() {
            let reversed: Vec<u32> = (0..k as u32).rev().collect();
            let reversed = Tensor::from_vec(reversed, k, w.device())?;
            // (C, O, K), contiguous: the kernel of the transposed convolution.
            let w_flip = w.detach().index_select(&reversed, 2)?.transpose(0, 1)?.contiguous()?;
            Some(grad.conv1d(&w_flip, (k - 1) * d, 1, d, 1)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let x = x.detach().contiguous()?;
            let t_out = grad.dim(2)?;
            let taps = (0..k)
                .map(|j| {
                    // (B, T_out, C) view with unit row stride; CPU gemm takes any strides, CUDA wants contiguous.
                    let xs = x.narrow(2, j * d, t_out)?.transpose(1, 2)?;
                    let xs = if x.device().is_cpu() { xs } else { xs.contiguous()? };
                    grad.matmul(&xs)?.sum(0)
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::stack(&taps, 2)?)
        } else {
            None
        };
        Ok((None, dx, dw))
    }
}

/// Settings of a [`Conv2d`]; stock candle's.
pub use candle_nn::Conv2dConfig;

/// 2-D convolution over `(batch, in_channels, height, width)`: stock candle conv2d (its backward is correct on
/// CPU when the strided windows tile the padded input exactly; other sizes are padded and cropped explicitly,
/// since there stock backward fails with a shape error) plus bias. Checkpoint names: `weight` `(out, in/groups, kh, kw)`,
/// `bias` `(out)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
}

impl Conv2d {
    /// Creates (or loads) a square-kernel conv2d under `vb`, initialised as PyTorch does.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv2dConfig,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let fan_in = in_channels / config.groups * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let shape = (out_channels, in_channels / config.groups, kernel, kernel);
        let weight = vb.get_with_hints(shape, "weight", init)?;
        let bias = if bias { Some(vb.get_with_hints(out_channels, "bias", init)?) } else { None };
        Ok(Self { weight, bias, config })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (_, _, kh, kw) = self.weight.dims4()?;
        let (_, _, h, w) = x.dims4()?;
        // Rows/columns past the last window make stock conv2d's backward fail (its transposed conv returns a
        // smaller gradient): pad explicitly and drop that unused tail, so every size is exact.
        let used = |len: usize, k: usize| {
            let span = c.dilation * (k - 1) + 1;
            let padded = len + 2 * c.padding;
            if padded < span { padded } else { (padded - span) / c.stride * c.stride + span }
        };
        let (used_h, used_w) = (used(h, kh), used(w, kw));
        let y = if used_h == h + 2 * c.padding && used_w == w + 2 * c.padding {
            x.conv2d(&self.weight, c.padding, c.stride, c.dilation, c.groups)?
        } else {
            let p = c.padding;
            let x = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?.narrow(2, 0, used_h)?.narrow(3, 0, used_w)?;
            x.conv2d(&self.weight, 0, c.stride, c.dilation, c.groups)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}
