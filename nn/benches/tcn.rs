//! Forward + backward time of a 6-layer conditional TCN (DeepAFx-ST proxy shape: 32 channels, kernel 13, causal
//! dilations 1, 4, 16, 64, 256, 1024, FiLM, PReLU, batch 8, 24 000 samples) with afx-nn's conv1d vs stock candle
//! conv1d (whose weight gradient is WRONG at batch 8: timed only for comparison), side by side in one run.
//!
//! `cargo bench -p afx-nn --bench tcn [-- ITERATIONS]` (default 3 iterations after one warm-up each).

use std::time::Instant;

use afx_nn::act::PRelu;
use afx_nn::conv::{Conv1d, Conv1dConfig, Padding};
use afx_nn::film::Film;
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

const CHANNELS: usize = 32;
const KERNEL: usize = 13;
const DILATIONS: [usize; 6] = [1, 4, 16, 64, 256, 1024];
const BATCH: usize = 8;
const SAMPLES: usize = 24_000;
const PARAMS: usize = 8;

#[derive(Clone, Copy, PartialEq, Debug)]
enum ConvImpl {
    Afx,
    Stock,
}

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
    fn new(vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        for (i, &dilation) in DILATIONS.iter().enumerate() {
            let vb = vb.pp(format!("block{i}"));
            let in_ch = if i == 0 { 1 } else { CHANNELS };
            let cfg = Conv1dConfig { dilation, padding: Padding::Causal, bias: true };
            let residual = if i == 0 {
                let cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: false };
                Some(Conv1d::new(in_ch, CHANNELS, 1, cfg, vb.pp("res"))?)
            } else {
                None
            };
            blocks.push(Block {
                conv: Conv1d::new(in_ch, CHANNELS, KERNEL, cfg, vb.pp("conv"))?,
                film: Film::new(PARAMS, CHANNELS, vb.pp("film"))?,
                act: PRelu::new(Some(CHANNELS), vb.pp("act"))?,
                residual,
            });
        }
        let out_cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: true };
        Ok(Self { blocks, out: Conv1d::new(CHANNELS, 1, 1, out_cfg, vb.pp("out"))? })
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
    match which {
        ConvImpl::Afx => layer.forward(x),
        ConvImpl::Stock => {
            let d = layer.config().dilation;
            let total = (layer.weight().dim(2)? - 1) * d;
            let x = if total > 0 { x.pad_with_zeros(D::Minus1, total, 0)? } else { x.clone() };
            let y = x.conv1d(layer.weight(), 0, 1, d, 1)?;
            match layer.bias() {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
                None => Ok(y),
            }
        }
    }
}

/// Seconds of forward and of backward, one step.
fn step(model: &Tcn, x: &Tensor, params: &Tensor, which: ConvImpl) -> Result<(f64, f64)> {
    let start = Instant::now();
    let y = model.forward(x, params, which)?;
    let loss = y.sqr()?.mean_all()?;
    let _ = loss.to_scalar::<f32>()?;
    let forward = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let grads = loss.backward()?;
    std::hint::black_box(grads);
    Ok((forward, start.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Tcn::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let x = Tensor::randn(0f32, 0.3, (BATCH, 1, SAMPLES), &dev)?;
    let params = Tensor::rand(0f32, 1.0, (BATCH, PARAMS), &dev)?;
    println!(
        "6-layer conditional TCN, {CHANNELS} ch, kernel {KERNEL}, dilations {DILATIONS:?}, batch {BATCH}, \
         {SAMPLES} samples, f32, {} threads; {iterations} iterations after 1 warm-up",
        candle_core::utils::get_num_threads()
    );
    let mut totals = Vec::new();
    for which in [ConvImpl::Afx, ConvImpl::Stock] {
        step(&model, &x, &params, which)?;
        let (mut fwd, mut bwd) = (0.0, 0.0);
        for _ in 0..iterations {
            let (f, b) = step(&model, &x, &params, which)?;
            fwd += f;
            bwd += b;
        }
        let (fwd, bwd) = (fwd / iterations as f64, bwd / iterations as f64);
        println!("{which:?}: forward {fwd:.3} s, backward {bwd:.3} s, total {:.3} s", fwd + bwd);
        totals.push((fwd, bwd));
    }
    let (afx, stock) = (totals[0], totals[1]);
    println!(
        "ratio afx / stock: forward {:.2}, backward {:.2}, total {:.2}  (stock's weight gradient is wrong at batch > 1)",
        afx.0 / stock.0,
        afx.1 / stock.1,
        (afx.0 + afx.1) / (stock.0 + stock.1)
    );
    Ok(())
}
