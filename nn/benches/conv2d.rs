//! Stock candle conv2d vs afx-nn's CPU conv2d op at the trainer encoder's shapes: batch 16 (input and reference),
//! a (16, 1, 257, 87) log-spectrogram through four 3×3 stride-2 padding-1 convs with 8, 16, 32, 32 channels, f32.
//!
//! Per layer: the forward alone, then forward, backward and their sum for the scalar Σ y ⊙ r (r fixed, so the
//! gradient reaching the conv is a plain contiguous tensor, as inside the network; the backward times include
//! that projection's own backward, printed apart). The first layer's input is not a variable (no input gradient),
//! the others' are. Then the whole encoder (conv → GroupNorm → PReLU, four blocks, then the mean) with either
//! conv. Stock and ours alternate within each iteration (fair under a shared machine's load); medians are
//! printed, with stock / ours ratios.
//!
//! `cargo bench -p afx-nn --bench conv2d [-- ITERATIONS] [breakdown]` (default 21, after one warm-up;
//! `breakdown`: instead, each layer's backward with only dX, only dW or only db). Threads: rayon's
//! (`RAYON_NUM_THREADS`).

use std::time::Instant;

use afx_nn::act::PRelu;
use afx_nn::conv::{Conv2d, Conv2dConfig, conv2d_stock};
use afx_nn::norm::GroupNorm;
use candle_core::{D, DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

const BATCH: usize = 16;
const CHANNELS: [usize; 4] = [8, 16, 32, 32];
const BINS: usize = 257;
const FRAMES: usize = 87;

fn config() -> Conv2dConfig {
    Conv2dConfig { padding: 1, stride: 2, dilation: 1, groups: 1, cudnn_fwd_algo: None }
}

fn conv(layer: &Conv2d, x: &Tensor, ours: bool) -> Result<Tensor> {
    if ours { layer.forward(x) } else { conv2d_stock(x, layer.weight(), layer.bias(), layer.config()) }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Seconds of the forward `f()` (a tensor) and of the backward of `Σ f() ⊙ r` (0 when `r` is `None`).
fn timed(f: impl Fn() -> Result<Tensor>, r: Option<&Tensor>) -> Result<[f64; 2]> {
    let start = Instant::now();
    let y = f()?;
    let forward = start.elapsed().as_secs_f64();
    let Some(r) = r else {
        std::hint::black_box(y);
        return Ok([forward, 0.0]);
    };
    let loss = (y * r)?.sum_all()?;
    let start = Instant::now();
    std::hint::black_box(loss.backward()?);
    Ok([forward, start.elapsed().as_secs_f64()])
}

/// Medians of (forward, backward, forward + backward) seconds for `stock()` and `ours()`, alternated within each of
/// `iterations` after one warm-up of each.
fn compare(
    iterations: usize,
    stock: impl Fn() -> Result<[f64; 2]>,
    ours: impl Fn() -> Result<[f64; 2]>,
) -> Result<[[f64; 3]; 2]> {
    stock()?;
    ours()?;
    let mut runs = [Vec::new(), Vec::new()];
    for _ in 0..iterations {
        runs[0].push(stock()?);
        runs[1].push(ours()?);
    }
    Ok(runs.map(|r| {
        [
            median(r.iter().map(|t| t[0]).collect()),
            median(r.iter().map(|t| t[1]).collect()),
            median(r.iter().map(|t| t[0] + t[1]).collect()),
        ]
    }))
}

fn row(name: &str, stock: f64, ours: f64) {
    println!("  {name:<40} stock {:8.2} ms   afx {:8.2} ms   stock/afx {:5.2}x", stock * 1e3, ours * 1e3, stock / ours);
}

/// The backward of `Σ y ⊙ r` alone (y a variable): part of every backward time above, whichever conv.
fn projection_backward(iterations: usize, y: &Tensor, r: &Tensor) -> Result<f64> {
    let y = Var::from_tensor(y)?;
    let f = || timed(|| Ok(y.as_tensor().clone()), Some(r));
    Ok(compare(iterations, f, f)?[0][1])
}

/// Per layer, the backward when only the input, only the kernel or only the bias takes part in autograd.
fn breakdown(iterations: usize) -> Result<()> {
    let dev = Device::Cpu;
    let (mut c_in, mut h, mut w) = (1, BINS, FRAMES);
    println!("breakdown: backward of Σ conv(x) ⊙ r with one gradient at a time (medians of {iterations}):");
    for (i, &c_out) in CHANNELS.iter().enumerate() {
        let x = Tensor::randn(0f32, 1.0, (BATCH, c_in, h, w), &dev)?;
        let weight = Tensor::randn(0f32, 0.3, (c_out, c_in, 3, 3), &dev)?;
        let bias = Tensor::randn(0f32, 0.3, c_out, &dev)?;
        let (xv, wv, bv) = (Var::from_tensor(&x)?, Var::from_tensor(&weight)?, Var::from_tensor(&bias)?);
        let y = Conv2d::from_tensors(weight.clone(), Some(bias.clone()), config()).forward(&x)?;
        let r = Tensor::randn(0f32, 1.0, y.shape(), &dev)?;
        let (_, _, oh, ow) = y.dims4()?;
        println!("layer {i}: ({BATCH}, {c_in}, {h}, {w}) → ({BATCH}, {c_out}, {oh}, {ow})");
        for (name, x, weight, bias) in [
            ("input gradient only", xv.as_tensor(), &weight, &bias),
            ("weight gradient only", &x, wv.as_tensor(), &bias),
            ("bias gradient only", &x, &weight, bv.as_tensor()),
        ] {
            let layer = Conv2d::from_tensors(weight.clone(), Some(bias.clone()), config());
            let step = |ours: bool| timed(|| conv(&layer, x, ours), Some(&r));
            let [stock, ours] = compare(iterations, || step(false), || step(true))?;
            row(name, stock[1], ours[1]);
        }
        let alone = projection_backward(iterations, &y, &r)?;
        println!("  {:<40} {:8.2} ms", "(Σ y ⊙ r's own backward, in each)", alone * 1e3);
        (c_in, h, w) = (c_out, oh, ow);
    }
    Ok(())
}

fn main() -> Result<()> {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(21);
    println!(
        "conv2d at the encoder's shapes (batch {BATCH}, {BINS} × {FRAMES} input, 3×3 stride 2 padding 1, f32): stock \
         candle vs afx CPU op; {} threads; medians of {iterations} after 1 warm-up",
        candle_core::utils::get_num_threads()
    );
    if std::env::args().any(|a| a == "breakdown") {
        return breakdown(iterations);
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);

    let mut blocks = Vec::new();
    let (mut c_in, mut h, mut w) = (1, BINS, FRAMES);
    let mut totals = [[0.0; 3]; 2];
    for (i, &c_out) in CHANNELS.iter().enumerate() {
        let layer = Conv2d::new(c_in, c_out, 3, config(), true, vb.pp(format!("conv{i}")))?;
        let x = Tensor::randn(0f32, 1.0, (BATCH, c_in, h, w), &dev)?;
        // The first layer's input (the spectrogram) is not a variable; the later layers' are.
        let x = if i == 0 { x } else { Var::from_tensor(&x)?.as_tensor().clone() };
        let y = conv(&layer, &x, true)?;
        let r = Tensor::randn(0f32, 1.0, y.shape(), &dev)?;
        let (_, _, oh, ow) = y.dims4()?;
        println!("layer {i}: ({BATCH}, {c_in}, {h}, {w}) → ({BATCH}, {c_out}, {oh}, {ow})");
        let forward = |ours: bool| timed(|| conv(&layer, &x, ours), None);
        let [stock, ours] = compare(iterations, || forward(false), || forward(true))?;
        row("forward alone", stock[0], ours[0]);
        let step = |ours: bool| timed(|| conv(&layer, &x, ours), Some(&r));
        let [stock, ours] = compare(iterations, || step(false), || step(true))?;
        row(if i == 0 { "backward (dW, db)" } else { "backward (dX, dW, db)" }, stock[1], ours[1]);
        row("forward + backward", stock[2], ours[2]);
        let alone = projection_backward(iterations, &y, &r)?;
        println!("  {:<40} {:8.2} ms", "(Σ y ⊙ r's own backward, in both)", alone * 1e3);
        for (total, t) in totals.iter_mut().zip([stock, ours]) {
            total.iter_mut().zip(t).for_each(|(a, b)| *a += b);
        }
        let norm = GroupNorm::new(4.min(c_out), c_out, 1e-5, vb.pp(format!("norm{i}")))?;
        let act = PRelu::new(Some(c_out), vb.pp(format!("act{i}")))?;
        blocks.push((layer, norm, act));
        (c_in, h, w) = (c_out, oh, ow);
    }
    println!("all four layers (sums of the medians):");
    row("backward", totals[0][1], totals[1][1]);
    row("forward + backward", totals[0][2], totals[1][2]);

    let spectrogram = Tensor::randn(0f32, 1.0, (BATCH, 1, BINS, FRAMES), &dev)?;
    let r = Tensor::randn(0f32, 1.0, (BATCH, *CHANNELS.last().unwrap_or(&1)), &dev)?;
    let encoder = |ours: bool| -> Result<Tensor> {
        let mut x = spectrogram.clone();
        for (layer, norm, act) in &blocks {
            x = act.forward(&norm.forward(&conv(layer, &x, ours)?)?)?;
        }
        x.mean(D::Minus1)?.mean(D::Minus1)
    };
    println!("whole encoder (conv → GroupNorm → PReLU × 4, mean):");
    let step = |ours: bool| timed(|| encoder(ours), Some(&r));
    let [stock, ours] = compare(iterations, || step(false), || step(true))?;
    row("forward", stock[0], ours[0]);
    row("backward", stock[1], ours[1]);
    row("forward + backward", stock[2], ours[2]);
    Ok(())
}
