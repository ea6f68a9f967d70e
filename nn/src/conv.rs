//! Convolutions with correct gradients at any batch size.
//!
//! candle 0.11.1's conv1d backward is wrong on CPU for batch > 1 (the weight gradient always, the input gradient
//! when padding = 0 and dilation = 1; see `tests/stock_candle.rs`), and its CPU forward is slow (im2col copies).
//!
//! On CPU (f32/f64), [`conv1d`] and [`Conv1d`] run their own custom op: a stride-1 dilated convolution is a sum of
//! K matrix products on time-shifted views of the input, so forward, input gradient and weight gradient are each
//! K strided `gemm` calls per time tile, with no im2col, no padded copy of the input and the bias fused into the
//! forward (see `conv1d_cpu`). The gradients are computed by further custom ops, exactly (up to float rounding).
//!
//! On other devices (CUDA) they keep the earlier pass-through path ([`conv1d_passthrough`]): stock conv1d for the
//! forward, and a hand-written backward through a pass-through op (the private `passthrough` module):
//! - dX = conv1d(dY, W flipped in time with in/out channels swapped, padding (K-1)·d, dilation d): a stock conv1d
//!   FORWARD on a contiguous kernel, which is correct;
//! - dW[:, :, k] = Σ_b dY_b · X_b[:, k·d .. k·d + T_out]ᵀ: K plain matmuls on strided views, no im2col copy.
//!
//! Gradients are computed only for arguments that take part in autograd (the audio input of a first layer gets
//! none). [`Conv2d`] does the same on CPU with its own im2col + gemm op (`conv2d_cpu`) and keeps stock conv2d
//! ([`conv2d_stock`]) elsewhere.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, DType, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::conv1d_cpu::{self, Geometry};
use crate::conv2d_cpu;
use crate::custom_op::{Arg, cpu_fwd};
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

impl Padding {
    /// Zeros `(before, after)` the signal for a kernel spanning `total + 1` samples.
    fn split(self, total: usize) -> (usize, usize) {
        match self {
            Padding::Causal => (total, 0),
            Padding::Same => (total / 2, total - total / 2),
            Padding::Valid => (0, 0),
        }
    }
}

impl Module for Conv1d {
    /// `x`: `(batch, in_channels, time)` → `(batch, out_channels, time')`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.config.dilation;
        let (before, after) = self.config.padding.split((self.weight.dim(2)? - 1) * d);
        if on_cpu_kernels(x, &self.weight, self.bias.as_ref()) {
            return CpuConv(Conv1dCpu { dilation: d, pad: (before, after) }).apply(x, &self.weight, self.bias.as_ref());
        }
        let x = if before + after > 0 { x.pad_with_zeros(D::Minus1, before, after)? } else { x.clone() };
        let y = conv1d_passthrough(&x, &self.weight, d)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

/// Valid (unpadded), stride-1 1-D convolution `x (B, C, T) ⋆ w (O, C, K)` with dilation `d` → `(B, O, T − (K−1)d)`,
/// with gradients correct for every batch size (see the module doc).
pub fn conv1d(x: &Tensor, w: &Tensor, dilation: usize) -> Result<Tensor> {
    if on_cpu_kernels(x, w, None) {
        return CpuConv(Conv1dCpu { dilation, pad: (0, 0) }).apply(x, w, None);
    }
    conv1d_passthrough(x, w, dilation)
}

/// Whether the CPU kernels handle these tensors: all on CPU, all f32 or all f64.
fn on_cpu_kernels(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> bool {
    let same = |t: &Tensor| t.device().is_cpu() && t.dtype() == x.dtype();
    matches!(x.dtype(), DType::F32 | DType::F64) && same(x) && same(w) && bias.is_none_or(same)
}

/// [`conv1d`] as it runs on non-CPU devices: stock candle conv1d forward, hand-written backward (see the module
/// doc). Public so benchmarks and tests can compare it with the CPU kernels; prefer [`conv1d`].
pub fn conv1d_passthrough(x: &Tensor, w: &Tensor, dilation: usize) -> Result<Tensor> {
    let y = x.detach().conv1d(&w.detach(), 0, 1, dilation, 1)?;
    if !x.track_op() && !w.track_op() {
        return Ok(y);
    }
    y.apply_op3(x, w, Conv1dGrad { dilation })
}

/// What the 1-D and 2-D CPU convolutions differ in; [`CpuConv`] makes either a candle op.
trait ConvKernel: Copy + Send + Sync + 'static {
    /// Names of the ops: the forward without and with the fused bias, the input gradient, the weight gradient.
    const NAMES: [&'static str; 4];
    /// What the gradient kernels need to know of the sizes.
    type Geometry: Copy + Send + Sync;
    /// `dx` from `(dy, w)` on CPU storages.
    const INPUT_GRAD: GradKernel<Self::Geometry>;
    /// `dw` from `(dy, x)` on CPU storages.
    const WEIGHT_GRAD: GradKernel<Self::Geometry>;

    /// The output (bias added when given) on CPU storages.
    fn forward(&self, x: Arg, w: Arg, bias: Option<Arg>) -> Result<(CpuStorage, Shape)>;

    /// The geometry of the gradient kernels for these `x` and `w`.
    fn geometry(&self, x: &Tensor, w: &Tensor) -> Result<Self::Geometry>;

    /// `grad` as the gradient kernels read it.
    fn grad_view(grad: &Tensor) -> Result<Tensor>;

    /// The bias gradient, `(out)`.
    fn bias_grad(&self, grad: &Tensor) -> Result<Tensor>;
}

/// A gradient kernel on CPU storages: `(dy, w or x, geometry)` → `dx` or `dw`.
type GradKernel<G> = fn(Arg, Arg, G) -> Result<(CpuStorage, Shape)>;

/// A CPU convolution as a candle op: a `CustomOp2` `(x, w)` without bias, a `CustomOp3` `(x, w, b)` with it.
#[derive(Debug, Clone, Copy)]
struct CpuConv<K>(K);

impl<K: ConvKernel> CpuConv<K> {
    fn apply(self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        match bias {
            Some(b) => x.apply_op3(w, b, self),
            None => x.apply_op2(w, self),
        }
    }

    /// Gradients for `x` and `w` (each only where it takes part in autograd), from further custom ops that
    /// record no graph of their own.
    fn grads(&self, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !x.track_op() && !w.track_op() {
            return Ok((None, None));
        }
        let geometry = self.0.geometry(x, w)?;
        let grad = K::grad_view(grad)?;
        let [_, _, input_grad, weight_grad] = K::NAMES;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &GradOp { name: input_grad, kernel: K::INPUT_GRAD, geometry })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(grad.apply_op2_no_bwd(x, &GradOp { name: weight_grad, kernel: K::WEIGHT_GRAD, geometry })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl<K: ConvKernel> CustomOp2 for CpuConv<K> {
    fn name(&self) -> &'static str {
        K::NAMES[0]
    }

    cpu_fwd!(|self, x, w| self.0.forward(x, w, None));

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, grad)
    }
}

impl<K: ConvKernel> CustomOp3 for CpuConv<K> {
    fn name(&self) -> &'static str {
        K::NAMES[1]
    }

    cpu_fwd!(|self, x, w, b| self.0.forward(x, w, Some(b)));

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.grads(x, w, grad)?;
        let db = if b.track_op() { Some(self.0.bias_grad(grad)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// A gradient op of a CPU convolution: `kernel(dy, other, geometry)` (`other` is `w` for the input gradient,
/// `x` for the weight gradient), with no backward of its own.
struct GradOp<G> {
    name: &'static str,
    kernel: GradKernel<G>,
    geometry: G,
}

impl<G: Copy + Send + Sync> CustomOp2 for GradOp<G> {
    fn name(&self) -> &'static str {
        self.name
    }

    cpu_fwd!(|self, dy, other| (self.kernel)(dy, other, self.geometry));
}

/// The 1-D CPU convolution (forward with optional fused bias; backward through the [`GradOp`]s of
/// `conv1d_cpu`). Only for f32/f64 CPU tensors: it has no CUDA forward.
#[derive(Debug, Clone, Copy)]
struct Conv1dCpu {
    dilation: usize,
    /// Zeros before and after the input (never materialised).
    pad: (usize, usize),
}

impl ConvKernel for Conv1dCpu {
    const NAMES: [&'static str; 4] =
        ["afx-conv1d-cpu", "afx-conv1d-cpu-bias", "afx-conv1d-cpu-input-grad", "afx-conv1d-cpu-weight-grad"];
    type Geometry = Geometry;
    const INPUT_GRAD: GradKernel<Geometry> = conv1d_cpu::input_grad_storage;
    const WEIGHT_GRAD: GradKernel<Geometry> = conv1d_cpu::weight_grad_storage;

    fn forward(&self, x: Arg, w: Arg, bias: Option<Arg>) -> Result<(CpuStorage, Shape)> {
        conv1d_cpu::forward_storage(x, w, bias, self.dilation, self.pad)
    }

    fn geometry(&self, x: &Tensor, w: &Tensor) -> Result<Geometry> {
        Geometry::new(w.dim(2)?, self.dilation, self.pad.0, self.pad.1, x.dim(2)?)
    }

    /// As it comes: the 1-D kernels read any strides.
    fn grad_view(grad: &Tensor) -> Result<Tensor> {
        Ok(grad.clone())
    }

    fn bias_grad(&self, grad: &Tensor) -> Result<Tensor> {
        grad.detach().sum_keepdim(2)?.sum(0)?.flatten_all()
    }
}

/// The backward of [`conv1d_passthrough`]; its forward copies the stock conv1d output.
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

/// 2-D convolution over `(batch, in_channels, height, width)`, with bias. Checkpoint names: `weight`
/// `(out, in/groups, kh, kw)`, `bias` `(out)`.
///
/// On CPU (f32/f64, groups 1) it runs its own custom op: im2col per batch item into a reused buffer and one
/// `gemm` per tile, the bias fused into the forward; the input gradient is col2im(Wᵀ · dY) and the weight gradient
/// Σ_b dY_b · col_bᵀ, each computed only when that argument takes part in autograd (see `conv2d_cpu`). Elsewhere
/// (CUDA, groups > 1) it is [`conv2d_stock`].
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

    /// Builds the layer from existing tensors (`weight` `(out, in/groups, kh, kw)`, optional `bias` `(out)`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Self { weight, bias, config }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }
}

impl Module for Conv2d {
    /// `x`: `(batch, in_channels, h, w)` → `(batch, out_channels, h', w')`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        if c.stride == 0 || c.dilation == 0 || c.groups == 0 {
            candle_core::bail!(
                "conv2d: stride ({}), dilation ({}) and groups ({}) must be ≥ 1",
                c.stride,
                c.dilation,
                c.groups
            )
        }
        if c.groups == 1 && on_cpu_kernels(x, &self.weight, self.bias.as_ref()) {
            let op = Conv2dCpu { stride: c.stride, padding: c.padding, dilation: c.dilation };
            return CpuConv(op).apply(x, &self.weight, self.bias.as_ref());
        }
        conv2d_stock(x, &self.weight, self.bias.as_ref(), c)
    }
}

/// [`Conv2d`] as it runs on non-CPU devices and for groups > 1: stock candle conv2d plus a broadcast bias. Stock
/// backward is correct on CPU when the strided windows tile the padded input exactly; for other sizes it fails with
/// a shape error, so those are padded and cropped explicitly here. Public so benchmarks and tests can compare it
/// with the CPU kernels; prefer [`Conv2d`].
pub fn conv2d_stock(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, c: &Conv2dConfig) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
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
        x.conv2d(weight, c.padding, c.stride, c.dilation, c.groups)?
    } else {
        let p = c.padding;
        let x = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?.narrow(2, 0, used_h)?.narrow(3, 0, used_w)?;
        x.conv2d(weight, 0, c.stride, c.dilation, c.groups)?
    };
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// The 2-D CPU convolution (groups 1; forward with optional fused bias; backward through the [`GradOp`]s of
/// `conv2d_cpu` and [`Conv2dBiasGrad`]). Only for f32/f64 CPU tensors: it has no CUDA forward.
#[derive(Debug, Clone, Copy)]
struct Conv2dCpu {
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl ConvKernel for Conv2dCpu {
    const NAMES: [&'static str; 4] =
        ["afx-conv2d-cpu", "afx-conv2d-cpu-bias", "afx-conv2d-cpu-input-grad", "afx-conv2d-cpu-weight-grad"];
    type Geometry = conv2d_cpu::Geometry;
    const INPUT_GRAD: GradKernel<conv2d_cpu::Geometry> = conv2d_cpu::input_grad_storage;
    const WEIGHT_GRAD: GradKernel<conv2d_cpu::Geometry> = conv2d_cpu::weight_grad_storage;

    fn forward(&self, x: Arg, w: Arg, bias: Option<Arg>) -> Result<(CpuStorage, Shape)> {
        conv2d_cpu::forward_storage(x, w, bias, (self.stride, self.padding, self.dilation))
    }

    fn geometry(&self, x: &Tensor, w: &Tensor) -> Result<conv2d_cpu::Geometry> {
        let (_, _, kh, kw) = w.dims4()?;
        let (_, _, h, width) = x.dims4()?;
        conv2d_cpu::Geometry::new((kh, kw), (h, width), self.stride, self.padding, self.dilation)
    }

    fn grad_view(grad: &Tensor) -> Result<Tensor> {
        flat_spatial(grad)
    }

    fn bias_grad(&self, grad: &Tensor) -> Result<Tensor> {
        flat_spatial(grad)?.apply_op1_no_bwd(&Conv2dBiasGrad)
    }
}

/// `grad` detached, as the gradient kernels read it: `(B, Cout, OH·OW)` with one spatial stride (a contiguous copy
/// only when its spatial axes do not flatten, e.g. a transposed view).
fn flat_spatial(grad: &Tensor) -> Result<Tensor> {
    let grad = grad.detach();
    let (_, _, oh, ow) = grad.dims4()?;
    let strides = grad.stride();
    if oh <= 1 || strides[2] == ow * strides[3] { Ok(grad) } else { grad.contiguous() }
}

/// `db` of [`Conv2dCpu`] from `dy`.
struct Conv2dBiasGrad;

impl CustomOp1 for Conv2dBiasGrad {
    fn name(&self) -> &'static str {
        "afx-conv2d-cpu-bias-grad"
    }

    cpu_fwd!(|self, dy| conv2d_cpu::bias_grad_storage(dy));
}
