//! candle building blocks that `proxy` and `trainer` both train through, each with a correct gradient at any
//! batch size (candle 0.11.1 gets several wrong silently; every layer here is checked against f64 finite
//! differences at batch ≥ 2 in `tests/gradients.rs`).
//!
//! 1. [`conv::Conv1d`]: dilated causal/same/valid 1-D convolution with a hand-written backward
//!    ([`conv::conv1d`]; on CPU its own gemm kernels on shifted views, several times faster than stock candle's
//!    im2col), and [`conv::Conv2d`] (stock conv2d, whose backward is right).
//! 2. [`stft::Stft`]: differentiable STFT magnitude (real FFTs with their adjoint as the backward on CPU; a
//!    windowed DFT basis by matmul elsewhere).
//! 3. [`loss::MrStftLoss`]: multi-resolution STFT loss (+ optional time-domain L1), a scalar tensor.
//! 4. [`film::Film`], [`act::PRelu`], [`norm::GroupNorm`], [`norm::LayerNorm`], [`norm::BatchNorm1d`]: what a
//!    conditional TCN and a CNN encoder need. On CPU, FiLM, PReLU and GroupNorm are fused kernels with their own
//!    backward (one pass each, no temporaries); elsewhere, and as the reference they are tested against, they are
//!    written with candle ops whose gradients candle gets right.
//! 5. [`optim::AdamW`] with saveable moments, and [`checkpoint`] (model + optimizer in one safetensors file,
//!    written atomically) so a resumed run continues exactly.
//! 6. [`gradcheck`]: autograd vs central finite differences, for any scalar function of inputs and weights.
//!
//! Build with the `cuda` feature for candle's CUDA backend (needs `nvcc`; `scripts/build-cuda.sh`); the default
//! build is CPU only. Each layer picks its path by the device of its input, so nothing fails on a GPU:
//!
//! | layer | CPU (f32/f64) | other devices |
//! |---|---|---|
//! | conv1d | own gemm kernels, forward and backward | stock conv1d forward + hand-written backward |
//! | conv2d | own im2col + gemm kernels, forward and backward | stock conv2d (cuDNN forward) |
//! | STFT | real FFTs, adjoint backward | windowed DFT basis by matmul |
//! | MRSTFT sums | one fused op per resolution | candle expression |
//! | PReLU, GroupNorm, FiLM | fused ops | candle expressions |
//!
//! ```
//! use afx_nn::conv::{Conv1d, Conv1dConfig, Padding};
//! use afx_nn::loss::{MrStftConfig, MrStftLoss};
//! use afx_nn::optim::{AdamW, AdamWConfig};
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//!
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
//! let config = Conv1dConfig { dilation: 4, padding: Padding::Causal, bias: true };
//! let conv = Conv1d::new(1, 1, 13, config, vb.pp("conv"))?;
//! let loss_fn = MrStftLoss::new(&MrStftConfig { fft_sizes: vec![64, 128], time_l1_weight: 1.0 }, DType::F32, &dev)?;
//! let mut opt = AdamW::new(&varmap, AdamWConfig::default())?;
//!
//! let x = Tensor::randn(0f32, 1.0, (2, 1, 1024), &dev)?; // (batch, channels, samples)
//! let target = (&x * 0.5)?;
//! let y = conv.forward(&x)?;
//! let loss = loss_fn.forward(&y, &target)?;
//! opt.backward_step(&loss)?;
//! assert_eq!(opt.steps(), 1);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod act;
pub mod checkpoint;
pub mod conv;
mod conv1d_cpu;
mod conv2d_cpu;
mod cpu_kernel;
mod custom_op;
mod fft;
pub mod film;
pub mod gradcheck;
pub mod init;
mod layers_cpu;
pub mod loss;
pub mod norm;
pub mod optim;
mod passthrough;
mod spectral;
mod spectral_cpu;
pub mod stft;
