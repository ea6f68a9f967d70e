//! Forward + backward time of a conditional TCN (causal dilated conv → FiLM → PReLU, residual) with three conv1d
//! implementations side by side in one run:
//! - `Afx`: afx-nn's conv1d as it runs on CPU (shifted-view gemm kernels, no im2col, no padded copy);
//! - `Passthrough`: the previous afx-nn conv1d, still the path on non-CPU devices (stock forward + hand-written
//!   backward, [`afx_nn::conv::conv1d_passthrough`]);
//! - `Stock`: stock candle conv1d (its weight gradient is WRONG at batch > 1: timed only for comparison).
//!
//! Two shapes: the DeepAFx-ST proxy TCN (32 channels, kernel 13, dilations 1, 4, …, 1024, batch 8, 24 000 samples)
//! and a small proxy (16 channels, kernel 13, dilations 1, 8, 64, 512, batch 8, 23 405 samples). Then a breakdown
//! of the small proxy's step: forward + backward of each piece on its own (conv, batch norm, FiLM, PReLU, residual
//! add, MR-STFT loss), to show where the step time goes once the convolution is fast.
//!
//! `cargo bench -p afx-nn --bench tcn [-- ITERATIONS] [breakdown]` (default 3 iterations after one warm-up each;
//! `breakdown`: the breakdown only). The thread count is rayon's (`RAYON_NUM_THREADS`).

use std::time::Instant;

use afx_nn::act::PRelu;
use afx_nn::conv::{Conv1d, Conv1dConfig, Padding, conv1d_passthrough};
use afx_nn::film::Film;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_nn::norm::BatchNorm1d;
use afx_nn::stft::Stft;
use candle_core::{D, DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

const PARAMS: usize = 8;

/// One benchmarked network shape.
struct Config {
    name: &'static str,
    channels: usize,
    kernel: usize,
    dilations: &'static [usize],
    batch: usize,
    samples: usize,
}

const SHAPES: [Config; 2] = [
    Config {
        name: "DeepAFx-ST proxy TCN",
        channels: 32,
        kernel: 13,
        dilations: &[1, 4, 16, 64, 256, 1024],
        batch: 8,
        samples: 24_000,
    },
    Config {
        name: "small proxy TCN",
        channels: 16,
        kernel: 13,
        dilations: &[1, 8, 64, 512],
        batch: 8,
        samples: 23_405,
    },
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum ConvImpl {
    Afx,
    Passthrough,
    Stock,
}

const IMPLS: [ConvImpl; 3] = [ConvImpl::Afx, ConvImpl::Passthrough, ConvImpl::Stock];

struct Block {
    conv: Conv1d,
    film: Film,
    act: PRelu,
    residual: Option<Conv1d>,
}

struct Tcn {
    blocks: Vec<Block>,
    out: Conv1d,
}

impl Tcn {
    fn new(config: &Config, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        for (i, &dilation) in config.dilations.iter().enumerate() {
            let vb = vb.pp(format!("block{i}"));
            let in_ch = if i == 0 { 1 } else { config.channels };
            let cfg = Conv1dConfig { dilation, padding: Padding::Causal, bias: true };
            let residual = if i == 0 {
                let cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: false };
                Some(Conv1d::new(in_ch, config.channels, 1, cfg, vb.pp("res"))?)
            } else {
                None
            };
            blocks.push(Block {
                conv: Conv1d::new(in_ch, config.channels, config.kernel, cfg, vb.pp("conv"))?,
                film: Film::new(PARAMS, config.channels, vb.pp("film"))?,
                act: PRelu::new(Some(config.channels), vb.pp("act"))?,
                residual,
            });
        }
        let out_cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: true };
        Ok(Self { blocks, out: Conv1d::new(config.channels, 1, 1, out_cfg, vb.pp("out"))? })
    }

    fn forward(&self, x: &Tensor, params: &Tensor, which: ConvImpl) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            let y = conv(&block.conv, &h, which)?;
            let y = block.act.forward(&block.film.forward(&y, params)?)?;
            h = match &block.residual {
                Some(res) => (y + conv(res, &h, which)?)?,
                None => (y + h)?,
            };
        }
        conv(&self.out, &h, which)
    }
}

fn conv(layer: &Conv1d, x: &Tensor, which: ConvImpl) -> Result<Tensor> {
    if which == ConvImpl::Afx {
        return layer.forward(x);
    }
    let d = layer.config().dilation;
    let total = (layer.weight().dim(2)? - 1) * d;
    let x = if total > 0 { x.pad_with_zeros(D::Minus1, total, 0)? } else { x.clone() };
    let y = match which {
        ConvImpl::Passthrough => conv1d_passthrough(&x, layer.weight(), d)?,
        _ => x.conv1d(layer.weight(), 0, 1, d, 1)?,
    };
    match layer.bias() {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
        None => Ok(y),
    }
}

/// Seconds of forward (through a mean-square loss) and of backward, one step.
fn step(model: &Tcn, x: &Tensor, params: &Tensor, which: ConvImpl) -> Result<(f64, f64)> {
    timed(|| model.forward(x, params, which)?.sqr()?.mean_all())
}

/// Seconds of `f()` (a scalar, read back so the work is done) and of its backward.
fn timed(f: impl Fn() -> Result<Tensor>) -> Result<(f64, f64)> {
    let start = Instant::now();
    let loss = f()?;
    let _ = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let forward = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let grads = loss.backward()?;
    std::hint::black_box(grads);
    Ok((forward, start.elapsed().as_secs_f64()))
}

/// Mean (forward, backward) seconds over `iterations` after one warm-up.
fn mean_time(iterations: usize, f: impl Fn() -> Result<(f64, f64)>) -> Result<(f64, f64)> {
    f()?;
    let (mut fwd, mut bwd) = (0.0, 0.0);
    for _ in 0..iterations {
        let (f, b) = f()?;
        fwd += f;
        bwd += b;
    }
    Ok((fwd / iterations as f64, bwd / iterations as f64))
}

fn compare(config: &Config, iterations: usize) -> Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Tcn::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let x = Tensor::randn(0f32, 0.3, (config.batch, 1, config.samples), &dev)?;
    let params = Tensor::rand(0f32, 1.0, (config.batch, PARAMS), &dev)?;
    println!(
        "\n{}: {} layers, {} ch, kernel {}, dilations {:?}, batch {}, {} samples, f32",
        config.name,
        config.dilations.len(),
        config.channels,
        config.kernel,
        config.dilations,
        config.batch,
        config.samples
    );
    let mut times = Vec::new();
    for which in IMPLS {
        let (fwd, bwd) = mean_time(iterations, || step(&model, &x, &params, which))?;
        println!("  {:<12} forward {fwd:7.3} s  backward {bwd:7.3} s  total {:7.3} s", format!("{which:?}"), fwd + bwd);
        times.push((fwd, bwd));
    }
    let afx = times[0];
    for (which, other) in IMPLS.iter().zip(&times).skip(1) {
        println!(
            "  speed-up of Afx over {which:?}: forward {:.1}x, backward {:.1}x, total {:.1}x",
            other.0 / afx.0,
            other.1 / afx.1,
            (other.0 + other.1) / (afx.0 + afx.1)
        );
    }
    println!("  (Stock's weight gradient is wrong at batch > 1)");
    Ok(())
}

/// A scalar function of one piece of the network.
type Piece<'a> = dyn Fn() -> Result<Tensor> + 'a;

/// Forward + backward of each piece of a proxy block on its own, at the small proxy's shape.
fn breakdown(config: &Config, iterations: usize) -> Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let (b, c, t) = (config.batch, config.channels, config.samples);
    let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, t), &dev)?)?;
    let h2 = Tensor::randn(0f32, 1.0, (b, c, t), &dev)?;
    let params = Tensor::rand(0f32, 1.0, (b, PARAMS), &dev)?;
    let audio = Var::from_tensor(&Tensor::randn(0f32, 0.3, (b, 1, t), &dev)?)?;
    let target = Tensor::randn(0f32, 0.3, (b, 1, t), &dev)?;
    let cfg = Conv1dConfig { dilation: config.dilations[1], padding: Padding::Causal, bias: true };
    let conv = Conv1d::new(c, c, config.kernel, cfg, vb.pp("conv"))?;
    let frozen = Conv1d::from_tensors(conv.weight().detach(), conv.bias().map(Tensor::detach), cfg);
    let detached = x_detached(&h);
    let norm = BatchNorm1d::new(c, 0.1, 1e-5, vb.pp("bn"))?;
    let film = Film::new(PARAMS, c, vb.pp("film"))?;
    let act = PRelu::new(Some(c), vb.pp("act"))?;
    let loss =
        MrStftLoss::new(&MrStftConfig { fft_sizes: vec![512, 1024, 2048], time_l1_weight: 100.0 }, DType::F32, &dev)?;
    let stfts: Vec<Stft> =
        [512, 1024, 2048].iter().map(|&n| Stft::new(n, n / 4, DType::F32, &dev)).collect::<Result<_>>()?;
    let x = h.as_tensor();
    // Each piece's (B, C, T) output is reduced as Σ y ⊙ r: the gradient reaching the piece is then a plain
    // contiguous tensor, as inside a network (a bare sum_all would hand it a stride-0 broadcast).
    let r = Tensor::randn(0f32, 1.0, (b, c, t), &dev)?;
    let project = |y: Tensor| (y * &r)?.sum_all();
    let pieces: Vec<(&str, Box<Piece>)> = vec![
        ("conv1d (Afx), one layer", Box::new(|| project(conv.forward(x)?))),
        ("  of which input gradient only", Box::new(|| project(frozen.forward(x)?))),
        ("  of which weight + bias gradients only", Box::new(|| project(conv.forward(&detached)?))),
        ("batch norm (train)", Box::new(|| project(norm.forward_t(x, true)?))),
        ("FiLM", Box::new(|| project(film.forward(x, &params)?))),
        ("PReLU", Box::new(|| project(act.forward(x)?))),
        ("residual add", Box::new(|| project((x + &h2)?))),
        ("Σ x ⊙ r alone (included in each above)", Box::new(|| project(x.clone()))),
        ("MR-STFT (512/1024/2048) + 100 L1 loss", Box::new(|| loss.forward(audio.as_tensor(), &target))),
        ("STFT magnitudes 512/1024/2048 by FFT", Box::new(|| stft_magnitudes(&stfts, audio.as_tensor(), true))),
        ("  the same by DFT matmul", Box::new(|| stft_magnitudes(&stfts, audio.as_tensor(), false))),
    ];
    println!("\nbreakdown at the small proxy's shape ({b} × {c} × {t}, f32), forward + backward of each piece alone:");
    for (name, f) in &pieces {
        let (fwd, bwd) = mean_time(iterations, || timed(f))?;
        println!("  {name:<40} forward {:7.1} ms  backward {:7.1} ms", fwd * 1e3, bwd * 1e3);
    }
    Ok(())
}

/// Σ of the STFT magnitudes of `audio` `(B, 1, T)` at every size, by FFT or by the DFT matmul.
fn stft_magnitudes(stfts: &[Stft], audio: &Tensor, fft: bool) -> Result<Tensor> {
    let x = audio.squeeze(1)?;
    let mut total = Tensor::zeros((), audio.dtype(), audio.device())?;
    for stft in stfts {
        let (re, im) = if fft { stft.complex_fft(&x)? } else { stft.complex_matmul(&x)? };
        total = (total + (re.sqr()? + im.sqr()?)?.maximum(afx_nn::stft::POWER_FLOOR)?.sqrt()?.sum_all()?)?;
    }
    Ok(total)
}

/// The variable's value outside autograd.
fn x_detached(v: &Var) -> Tensor {
    v.as_tensor().detach()
}

fn main() -> Result<()> {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    println!(
        "conv1d: Afx (CPU kernels) vs Passthrough (previous) vs Stock candle; {} threads; {iterations} iterations \
         after 1 warm-up",
        candle_core::utils::get_num_threads()
    );
    if !std::env::args().any(|a| a == "breakdown") {
        for config in &SHAPES {
            compare(config, iterations)?;
        }
    }
    breakdown(&SHAPES[1], iterations)
}
