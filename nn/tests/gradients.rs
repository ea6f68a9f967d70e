//! Every layer of afx-nn against f64 central finite differences at batch ≥ 2, for the input and every weight.
//! Pass threshold: relative error (max abs error / max |gradient|) below 1e-6; correct backwards land near 1e-9.

use afx_nn::act::PRelu;
use afx_nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Padding};
use afx_nn::film::Film;
use afx_nn::gradcheck::{GradCheck, GradReport, project, pseudo_random};
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_nn::norm::{BatchNorm1d, GroupNorm, LayerNorm};
use afx_nn::stft::Stft;
use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

const THRESHOLD: f64 = 1e-6;

fn input(shape: &[usize], seed: u64) -> Result<Var> {
    Var::from_tensor(&pseudo_random(shape, seed, &Device::Cpu)?)
}

fn f64_vb(varmap: &VarMap) -> VarBuilder<'static> {
    VarBuilder::from_varmap(varmap, DType::F64, &Device::Cpu)
}

/// The VarMap's variables, by name.
fn weights(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut all: Vec<(String, Var)> =
        varmap.data().lock().expect("varmap lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Gradchecks `f` for `x` and every variable of `varmap`; asserts all are below THRESHOLD.
fn check_all(label: &str, f: impl Fn() -> Result<Tensor>, x: &[(&str, &Var)], varmap: &VarMap) -> Vec<GradReport> {
    let named = weights(varmap);
    let mut vars: Vec<(&str, &Var)> = x.to_vec();
    vars.extend(named.iter().map(|(n, v)| (n.as_str(), v)));
    let reports = GradCheck::default().run(f, &vars).expect("gradcheck runs");
    for r in &reports {
        println!("{label}: {r}");
        assert!(r.max_abs_grad > 0.0, "{label}: {} has an all-zero gradient, the check proves nothing", r.name);
        assert!(r.rel_err < THRESHOLD, "{label}: {r}");
    }
    reports
}

#[test]
fn conv1d_causal_dilated_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let cfg = Conv1dConfig { dilation: 3, padding: Padding::Causal, bias: true };
    let conv = Conv1d::new(3, 4, 5, cfg, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 3, 40], 1).unwrap();
    check_all("conv1d causal d3", || project(&conv.forward(x.as_tensor())?, 11), &[("x", &x)], &varmap);
}

#[test]
fn conv1d_same_padding_gradients_match_finite_differences_at_batch_3() {
    let varmap = VarMap::new();
    let cfg = Conv1dConfig { dilation: 2, padding: Padding::Same, bias: true };
    let conv = Conv1d::new(2, 3, 4, cfg, f64_vb(&varmap)).unwrap();
    let x = input(&[3, 2, 33], 2).unwrap();
    check_all("conv1d same d2 k4", || project(&conv.forward(x.as_tensor())?, 12), &[("x", &x)], &varmap);
}

/// Padding 0 and dilation 1: the case where stock candle's INPUT gradient is also wrong.
#[test]
fn conv1d_valid_undilated_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: false };
    let conv = Conv1d::new(3, 2, 3, cfg, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 3, 25], 3).unwrap();
    check_all("conv1d valid d1", || project(&conv.forward(x.as_tensor())?, 13), &[("x", &x)], &varmap);
}

#[test]
fn conv1d_pointwise_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let cfg = Conv1dConfig { dilation: 1, padding: Padding::Causal, bias: true };
    let conv = Conv1d::new(4, 3, 1, cfg, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 4, 17], 4).unwrap();
    check_all("conv1d 1x1", || project(&conv.forward(x.as_tensor())?, 14), &[("x", &x)], &varmap);
}

/// Every padding, with and without bias, undilated and dilated, several in/out channels, batch 3, even and odd
/// kernels: input, weight and bias gradients of the CPU kernels (conv1d_cpu).
#[test]
fn conv1d_gradients_match_finite_differences_for_every_padding_bias_and_dilation_at_batch_3() {
    for padding in [Padding::Causal, Padding::Same, Padding::Valid] {
        for bias in [true, false] {
            for (dilation, kernel) in [(1, 3), (3, 4), (5, 3)] {
                let varmap = VarMap::new();
                let cfg = Conv1dConfig { dilation, padding, bias };
                let conv = Conv1d::new(3, 2, kernel, cfg, f64_vb(&varmap)).unwrap();
                let x = input(&[3, 3, 29], 21).unwrap();
                let label = format!("conv1d {padding:?} bias {bias} d{dilation} k{kernel}");
                check_all(&label, || project(&conv.forward(x.as_tensor())?, 24), &[("x", &x)], &varmap);
            }
        }
    }
}

/// The path non-CPU devices take (stock forward, hand-written backward) stays right, checked here on CPU.
#[test]
fn conv1d_passthrough_gradients_match_finite_differences_at_batch_3() {
    for dilation in [1, 2] {
        let x = input(&[3, 2, 21], 22).unwrap();
        let w = input(&[3, 2, 3], 23).unwrap();
        let f = || project(&afx_nn::conv::conv1d_passthrough(x.as_tensor(), w.as_tensor(), dilation)?, 25);
        check_all(&format!("conv1d passthrough d{dilation}"), f, &[("x", &x), ("w", &w)], &VarMap::new());
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // the reference reads as the formula
fn conv1d_forward_matches_a_naive_causal_dilated_convolution() {
    let varmap = VarMap::new();
    let (b, c, o, k, d, t) = (2, 3, 2, 4, 5, 30);
    let cfg = Conv1dConfig { dilation: d, padding: Padding::Causal, bias: true };
    let conv = Conv1d::new(c, o, k, cfg, f64_vb(&varmap)).unwrap();
    let x = pseudo_random((b, c, t), 5, &Device::Cpu).unwrap();
    let y: Vec<Vec<Vec<f64>>> = conv.forward(&x).unwrap().to_vec3().unwrap();
    let xv: Vec<Vec<Vec<f64>>> = x.to_vec3().unwrap();
    let w: Vec<Vec<Vec<f64>>> = conv.weight().to_vec3().unwrap();
    let bias: Vec<f64> = conv.bias().unwrap().to_vec1().unwrap();
    let mut worst = 0f64;
    for bi in 0..b {
        for oi in 0..o {
            for ti in 0..t {
                let mut acc = bias[oi];
                for ci in 0..c {
                    for ki in 0..k {
                        // Tap ki sees the sample (k − 1 − ki)·d steps in the past.
                        if let Some(s) = (ti + ki * d).checked_sub((k - 1) * d) {
                            acc += w[oi][ci][ki] * xv[bi][ci][s];
                        }
                    }
                }
                worst = worst.max((acc - y[bi][oi][ti]).abs());
            }
        }
    }
    println!("conv1d forward vs naive: max abs err {worst:.2e}");
    assert!(worst < 1e-12, "max abs err {worst}");
}

#[test]
fn conv2d_gradients_match_finite_differences_at_batch_3_with_stride_padding_dilation() {
    for (stride, padding, dilation) in [(1, 1, 1), (2, 1, 1), (2, 0, 1), (3, 1, 2), (1, 2, 2)] {
        let varmap = VarMap::new();
        let cfg = Conv2dConfig { padding, stride, dilation, groups: 1, cudnn_fwd_algo: None };
        let conv = Conv2d::new(2, 3, 3, cfg, true, f64_vb(&varmap)).unwrap();
        let x = input(&[3, 2, 9, 8], 6).unwrap();
        let label = format!("conv2d s{stride} p{padding} d{dilation}");
        check_all(&label, || project(&conv.forward(x.as_tensor())?, 15), &[("x", &x)], &varmap);
    }
}

#[test]
fn stft_magnitude_gradient_matches_finite_differences_at_batch_2() {
    // On CPU the STFT goes through real FFTs and their adjoint; even and odd sizes (an odd size has no Nyquist
    // bin, which the adjoint treats apart).
    for (n_fft, hop, len) in [(32, 8, 100), (31, 5, 97)] {
        let stft = Stft::new(n_fft, hop, DType::F64, &Device::Cpu).unwrap();
        let x = input(&[2, len], 7).unwrap();
        let label = format!("stft n{n_fft} h{hop}");
        check_all(&label, || project(&stft.magnitude(x.as_tensor())?, 16), &[("x", &x)], &VarMap::new());
    }
}

#[test]
fn stft_by_fft_equals_stft_by_dft_matmul_and_so_do_their_gradients() {
    for (n_fft, hop, len) in [(32, 8, 100), (31, 5, 97), (512, 128, 2000)] {
        let stft = Stft::new(n_fft, hop, DType::F64, &Device::Cpu).unwrap();
        let x = input(&[3, len], 17).unwrap();
        let g = pseudo_random((3, stft.frames(len), 2 * stft.bins()), 18, &Device::Cpu).unwrap();
        let mut values = vec![];
        for fft in [true, false] {
            let (re, im) =
                if fft { stft.complex_fft(x.as_tensor()) } else { stft.complex_matmul(x.as_tensor()) }.unwrap();
            let spec = Tensor::cat(&[&re, &im], 2).unwrap();
            let grads = (&spec * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let dx: Vec<f64> = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            values.push((spec.flatten_all().unwrap().to_vec1::<f64>().unwrap(), dx));
        }
        let scale = |v: &[f64]| v.iter().fold(0f64, |m, a| m.max(a.abs()));
        let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        let (spec_fft, dx_fft) = &values[0];
        let (spec_dft, dx_dft) = &values[1];
        assert!(diff(spec_fft, spec_dft) <= 1e-12 * scale(spec_dft), "n{n_fft}: spectra differ");
        assert!(diff(dx_fft, dx_dft) <= 1e-12 * scale(dx_dft), "n{n_fft}: gradients differ");
    }
}

#[test]
fn mrstft_loss_gradient_matches_finite_differences_at_batch_2() {
    let config = MrStftConfig { fft_sizes: vec![16, 32, 64], time_l1_weight: 0.0 };
    let loss = MrStftLoss::new(&config, DType::F64, &Device::Cpu).unwrap();
    let pred = input(&[2, 160], 8).unwrap();
    let target = pseudo_random((2, 160), 9, &Device::Cpu).unwrap();
    check_all("mrstft", || loss.forward(pred.as_tensor(), &target), &[("pred", &pred)], &VarMap::new());
}

#[test]
fn mrstft_with_time_l1_gradient_matches_finite_differences_at_batch_2() {
    let config = MrStftConfig { fft_sizes: vec![16, 64], time_l1_weight: 100.0 };
    let loss = MrStftLoss::new(&config, DType::F64, &Device::Cpu).unwrap();
    let pred = input(&[2, 1, 128], 10).unwrap();
    let target = pseudo_random((2, 1, 128), 11, &Device::Cpu).unwrap();
    check_all("mrstft + 100 L1", || loss.forward(pred.as_tensor(), &target), &[("pred", &pred)], &VarMap::new());
}

#[test]
fn per_item_mrstft_equals_each_item_alone_and_its_gradient_matches_finite_differences_at_batch_3() {
    let config = MrStftConfig { fft_sizes: vec![16, 64], time_l1_weight: 2.0 };
    let loss = MrStftLoss::new(&config, DType::F64, &Device::Cpu).unwrap();
    let pred = input(&[3, 128], 12).unwrap();
    let target = pseudo_random((3, 128), 13, &Device::Cpu).unwrap();
    let batched: Vec<f64> = loss.per_item(pred.as_tensor(), &target).unwrap().to_vec1().unwrap();
    for (i, value) in batched.iter().enumerate() {
        let p = pred.as_tensor().narrow(0, i, 1).unwrap();
        let alone = loss.forward(&p, &target.narrow(0, i, 1).unwrap()).unwrap().to_scalar::<f64>().unwrap();
        assert!((value - alone).abs() <= 1e-12 * alone.abs(), "item {i}: batched {value} vs alone {alone}");
    }
    // Weighted differently per item, so a gradient leaking to another item would show.
    let weights = Tensor::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap();
    check_all(
        "per-item mrstft",
        || (loss.per_item(pred.as_tensor(), &target)? * &weights)?.sum_all(),
        &[("pred", &pred)],
        &VarMap::new(),
    );
}

#[test]
fn a_prepared_target_scores_tiled_predictions_as_per_item_does_against_the_tiled_target() {
    // Two target rows (a stereo target), three predictions of each: row i against target row i mod 2. Both f32
    // (the fused ops, which take the prepared spectra) and f64.
    for dtype in [DType::F32, DType::F64] {
        let config = MrStftConfig { fft_sizes: vec![16, 64], time_l1_weight: 0.5 };
        let loss = MrStftLoss::new(&config, dtype, &Device::Cpu).unwrap();
        let target = pseudo_random((2, 128), 21, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let pred = pseudo_random((6, 128), 22, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let prepared = loss.prepare(&target).unwrap();
        let against = loss.per_item_against(&pred, &prepared).unwrap().to_dtype(DType::F64).unwrap();
        let tiled = Tensor::cat(&[&target, &target, &target], 0).unwrap();
        let direct = loss.per_item(&pred, &tiled).unwrap().to_dtype(DType::F64).unwrap();
        assert_eq!(against.to_vec1::<f64>().unwrap(), direct.to_vec1::<f64>().unwrap(), "{dtype:?}");
        assert!(loss.per_item_against(&pred.narrow(0, 0, 5).unwrap(), &prepared).is_err(), "5 rows for 2");
    }
}

#[test]
fn film_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let film = Film::new(5, 3, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 3, 12], 12).unwrap();
    let cond = input(&[2, 5], 13).unwrap();
    let f = || project(&film.forward(x.as_tensor(), cond.as_tensor())?, 17);
    check_all("film", f, &[("x", &x), ("cond", &cond)], &varmap);
}

#[test]
fn prelu_gradients_match_finite_differences_at_batch_2() {
    for channels in [Some(3), None] {
        let varmap = VarMap::new();
        let prelu = PRelu::new(channels, f64_vb(&varmap)).unwrap();
        let x = input(&[2, 3, 10], 14).unwrap();
        check_all(
            &format!("prelu {channels:?}"),
            || project(&prelu.forward(x.as_tensor())?, 18),
            &[("x", &x)],
            &varmap,
        );
    }
}

#[test]
fn group_norm_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let norm = GroupNorm::new(2, 4, 1e-5, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 4, 5, 3], 15).unwrap();
    check_all("group norm", || project(&norm.forward(x.as_tensor())?, 19), &[("x", &x)], &varmap);
}

#[test]
fn layer_norm_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let norm = LayerNorm::new(6, 1e-5, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 3, 6], 16).unwrap();
    check_all("layer norm", || project(&norm.forward(x.as_tensor())?, 20), &[("x", &x)], &varmap);
}

#[test]
fn batch_norm_training_gradient_matches_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let norm = BatchNorm1d::new(3, 0.1, 1e-5, f64_vb(&varmap)).unwrap();
    let x = input(&[2, 3, 7], 17).unwrap();
    // The running statistics receive no gradient: check the input only.
    let reports =
        GradCheck::default().run(|| project(&norm.forward_t(x.as_tensor(), true)?, 21), &[("x", &x)]).unwrap();
    println!("batch norm (train): {}", reports[0]);
    assert!(reports[0].rel_err < THRESHOLD, "{}", reports[0]);
}

#[test]
fn linear_sigmoid_and_leaky_relu_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let linear = candle_nn::linear(4, 3, f64_vb(&varmap).pp("linear")).unwrap();
    let x = input(&[2, 4], 18).unwrap();
    let f = || {
        let h = candle_nn::ops::leaky_relu(&linear.forward(x.as_tensor())?, 0.01)?;
        project(&candle_nn::ops::sigmoid(&h)?, 22)
    };
    check_all("linear → leaky relu → sigmoid", f, &[("x", &x)], &varmap);
}

/// A DeepAFx-ST proxy block end to end: causal dilated conv → batch norm → FiLM → PReLU, plus a 1×1 residual.
#[test]
fn conditional_tcn_block_gradients_match_finite_differences_at_batch_2() {
    let varmap = VarMap::new();
    let vb = f64_vb(&varmap);
    let cfg = Conv1dConfig { dilation: 2, padding: Padding::Causal, bias: false };
    let conv = Conv1d::new(2, 3, 3, cfg, vb.pp("conv")).unwrap();
    let norm = BatchNorm1d::new(3, 0.1, 1e-5, vb.pp("bn")).unwrap();
    let film = Film::new(4, 3, vb.pp("film")).unwrap();
    let act = PRelu::new(Some(3), vb.pp("act")).unwrap();
    let res_cfg = Conv1dConfig { dilation: 1, padding: Padding::Valid, bias: false };
    let res = Conv1d::new(2, 3, 1, res_cfg, vb.pp("res")).unwrap();
    let x = input(&[2, 2, 20], 19).unwrap();
    let p = input(&[2, 4], 20).unwrap();
    let f = || {
        let h = norm.forward_t(&conv.forward(x.as_tensor())?, true)?;
        let h = act.forward(&film.forward(&h, p.as_tensor())?)?;
        project(&(h + res.forward(x.as_tensor())?)?, 23)
    };
    let named: Vec<(String, Var)> = weights(&varmap).into_iter().filter(|(n, _)| !n.contains("running")).collect();
    let mut vars: Vec<(&str, &Var)> = vec![("x", &x), ("params", &p)];
    vars.extend(named.iter().map(|(n, v)| (n.as_str(), v)));
    for r in GradCheck::default().run(f, &vars).unwrap() {
        println!("tcn block: {r}");
        assert!(r.rel_err < THRESHOLD, "tcn block: {r}");
    }
}
