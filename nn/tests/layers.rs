//! PReLU, GroupNorm and FiLM run on CPU as fused kernels (`layers_cpu`); each must equal the same layer written
//! with candle's own ops (`forward_composite`, the path on other devices) in value and in every gradient, at
//! batch ≥ 2, in f32 and f64, for shapes small (one thread) and large enough to run in parallel. The kernels'
//! gradients against finite differences are checked in `gradients.rs`; here, also at the parallel size.

use afx_nn::act::PRelu;
use afx_nn::film::Film;
use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
use afx_nn::norm::GroupNorm;
use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

/// max |a − b| / max(max |b|, 1e-30).
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Value and gradients (w.r.t. `x` and every variable of `varmap`) of `Σ f(x) ⊙ r` by the fused and the
/// composite path, compared at `tolerance`.
fn compare(
    label: &str,
    varmap: &VarMap,
    x: &Var,
    fused: impl Fn(&Tensor) -> Result<Tensor>,
    composite: impl Fn(&Tensor) -> Result<Tensor>,
    tolerance: f64,
) {
    let run = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
        let y = f(x.as_tensor()).unwrap();
        let loss = project(&y, 99).unwrap();
        (y, loss.backward().unwrap())
    };
    let (y_fused, g_fused) = run(&fused);
    let (y_composite, g_composite) = run(&composite);
    let d = rel_diff(&y_fused, &y_composite);
    assert!(d < tolerance, "{label}: values differ by {d:.2e}");
    let mut vars: Vec<(String, Var)> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.push(("x".into(), x.clone()));
    for (name, var) in &vars {
        let (a, b) = (g_fused.get(var).unwrap(), g_composite.get(var).unwrap());
        let d = rel_diff(a, b);
        println!("{label}: d{name} rel diff {d:.2e}");
        assert!(d < tolerance, "{label}: gradient of {name} differs by {d:.2e}");
    }
}

fn setup(dtype: DType, shape: &[usize], seed: u64) -> (VarMap, Var) {
    let x = pseudo_random(shape, seed, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    (VarMap::new(), Var::from_tensor(&x).unwrap())
}

/// (dtype, tolerance) pairs: f32 differs by summation order only; f64 to rounding.
const PRECISIONS: [(DType, f64); 2] = [(DType::F32, 2e-5), (DType::F64, 1e-11)];
/// Small (one thread) and large (parallel) shapes.
const SHAPES: [&[usize]; 3] = [&[2, 4, 5, 3], &[3, 8, 40, 30], &[2, 8, 2100]];

/// Weights away from their initial constants, so a swapped or dropped term shows: pseudo-random values, seeded in
/// the order of the variables' names. (`VarMap` is a `HashMap`, whose order changes from one process to the next;
/// seeded in that order, the finite-difference check below failed about one run in twenty: 2 of the 120 orders put
/// a PReLU input within a step of its kink.)
fn randomise(varmap: &VarMap, seed: u64) {
    let data = varmap.data().lock().unwrap();
    let mut vars: Vec<_> = data.iter().collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (_, var)) in vars.into_iter().enumerate() {
        let t = pseudo_random(var.shape(), seed + i as u64, &Device::Cpu).unwrap().to_dtype(var.dtype()).unwrap();
        var.set(&t).unwrap();
    }
}

#[test]
fn fused_prelu_equals_the_composite_layer_in_value_and_gradients() {
    for (dtype, tolerance) in PRECISIONS {
        for shape in SHAPES {
            for channels in [Some(shape[1]), None] {
                let (varmap, x) = setup(dtype, shape, 1);
                let prelu = PRelu::new(channels, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
                randomise(&varmap, 5);
                let label = format!("prelu {dtype:?} {shape:?} {channels:?}");
                compare(&label, &varmap, &x, |x| prelu.forward(x), |x| prelu.forward_composite(x), tolerance);
            }
        }
        // The controller's hidden layers: (B, C) rows.
        let (varmap, x) = setup(dtype, &[4, 64], 2);
        let prelu = PRelu::new(Some(64), VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
        randomise(&varmap, 6);
        compare("prelu (B, C)", &varmap, &x, |x| prelu.forward(x), |x| prelu.forward_composite(x), tolerance);
    }
}

#[test]
fn fused_group_norm_equals_the_composite_layer_in_value_and_gradients() {
    for (dtype, tolerance) in PRECISIONS {
        for shape in SHAPES {
            for groups in [1, 2, 4] {
                let (varmap, x) = setup(dtype, shape, 3);
                let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
                let norm = GroupNorm::new(groups, shape[1], 1e-5, vb).unwrap();
                randomise(&varmap, 7);
                let label = format!("group norm {dtype:?} {shape:?} groups {groups}");
                compare(&label, &varmap, &x, |x| norm.forward(x), |x| norm.forward_composite(x), tolerance);
            }
        }
    }
}

#[test]
fn fused_film_equals_the_composite_layer_in_value_and_gradients() {
    for (dtype, tolerance) in PRECISIONS {
        for shape in [&[2usize, 3, 12][..], &[3, 16, 2000]] {
            let (varmap, x) = setup(dtype, shape, 4);
            let film = Film::new(5, shape[1], VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
            randomise(&varmap, 8);
            let cond =
                Var::from_tensor(&pseudo_random((shape[0], 5), 9, &Device::Cpu).unwrap().to_dtype(dtype).unwrap())
                    .unwrap();
            let label = format!("film {dtype:?} {shape:?}");
            let (c1, c2) = (cond.clone(), cond.clone());
            compare(
                &label,
                &varmap,
                &x,
                |x| film.forward(x, c1.as_tensor()),
                |x| film.forward_composite(x, c2.as_tensor()),
                tolerance,
            );
        }
    }
}

/// The finite-difference check of `gradients.rs`, at a size where the kernels run on several threads.
#[test]
fn fused_layers_match_finite_differences_when_parallel() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let norm = GroupNorm::new(4, 8, 1e-5, vb.pp("norm")).unwrap();
    let prelu = PRelu::new(Some(8), vb.pp("act")).unwrap();
    let film = Film::new(3, 8, vb.pp("film")).unwrap();
    randomise(&varmap, 21);
    let x = Var::from_tensor(&pseudo_random((3, 8, 1500), 12, &Device::Cpu).unwrap()).unwrap();
    let cond = Var::from_tensor(&pseudo_random((3, 3), 13, &Device::Cpu).unwrap()).unwrap();
    let check = GradCheck { max_points: 60, ..GradCheck::default() };
    // A central difference straddling PReLU's kink is no derivative: every input to it stays 100 steps away (seed
    // 11 put one 3.5e-6 from 0, and other orders of the same values 4e-7, which failed the check).
    let z = film.forward(&norm.forward(x.as_tensor()).unwrap(), cond.as_tensor()).unwrap();
    let nearest = z.abs().unwrap().min_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(nearest > 100.0 * check.eps, "a PReLU input is {nearest:.1e} from the kink: pick other values");
    let f = || project(&prelu.forward(&film.forward(&norm.forward(x.as_tensor())?, cond.as_tensor())?)?, 14);
    let mut vars: Vec<(String, Var)> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut named: Vec<(&str, &Var)> = vec![("x", &x), ("cond", &cond)];
    named.extend(vars.iter().map(|(n, v)| (n.as_str(), v)));
    for r in check.run(f, &named).unwrap() {
        println!("{r}");
        assert!(r.max_abs_grad > 0.0 && r.rel_err < 1e-6, "{r}");
    }
}

/// The MRSTFT loss on CPU sums each resolution in one fused op (`spectral_cpu`). When the target itself takes a
/// gradient the loss is the composite candle expression; both must give the same value and the same gradient for
/// the prediction, batch-pooled (`forward`) and per item, f32 and f64, with and without the time-domain term.
#[test]
fn fused_mrstft_equals_the_composite_expression_in_value_and_gradient() {
    use afx_nn::loss::{MrStftConfig, MrStftLoss};
    for (dtype, tolerance) in [(DType::F32, 1e-4), (DType::F64, 1e-10)] {
        for time_l1_weight in [0.0, 10.0] {
            let config = MrStftConfig { fft_sizes: vec![64, 128, 256], time_l1_weight };
            let loss = MrStftLoss::new(&config, dtype, &Device::Cpu).unwrap();
            let signal = |seed| pseudo_random((3, 1000), seed, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            // Quiet stretches put some bins on the magnitude floor.
            let pred = Var::from_tensor(
                &signal(21)
                    .slice_assign(&[0..1, 0..300], &Tensor::zeros((1, 300), dtype, &Device::Cpu).unwrap())
                    .unwrap(),
            )
            .unwrap();
            let target = signal(22);
            let target_var = Var::from_tensor(&target).unwrap();
            for per_item in [false, true] {
                let run = |target: &Tensor| {
                    let value = if per_item {
                        loss.per_item(pred.as_tensor(), target).unwrap().sum_all().unwrap()
                    } else {
                        loss.forward(pred.as_tensor(), target).unwrap()
                    };
                    let grads = value.backward().unwrap();
                    (value, grads.get(&pred).unwrap().clone())
                };
                let (fused, fused_grad) = run(&target);
                let (composite, composite_grad) = run(target_var.as_tensor());
                let label = format!("mrstft {dtype:?} l1 {time_l1_weight} per_item {per_item}");
                let d = rel_diff(&fused, &composite);
                assert!(d < tolerance, "{label}: value differs by {d:.2e}");
                let d = rel_diff(&fused_grad, &composite_grad);
                println!("{label}: gradient rel diff {d:.2e}");
                assert!(d < tolerance, "{label}: gradient differs by {d:.2e}");
            }
        }
    }
}

/// The encoder's features: the fused ln |X| (frequency-major) equals candle's magnitude, log and transpose.
#[test]
fn fused_log_magnitude_equals_the_composite_expression() {
    use afx_nn::stft::Stft;
    for (dtype, tolerance) in PRECISIONS {
        let stft = Stft::new(512, 256, dtype, &Device::Cpu).unwrap();
        let x = pseudo_random((3, 5000), 31, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        // A silent stretch puts bins on the floor (ln of the floor's root).
        let x = x.slice_assign(&[0..1, 0..2000], &Tensor::zeros((1, 2000), dtype, &Device::Cpu).unwrap()).unwrap();
        let fused = stft.log_magnitude(&x).unwrap();
        let composite = stft.magnitude(&x).unwrap().log().unwrap().transpose(1, 2).unwrap();
        assert_eq!(fused.dims(), composite.dims());
        let d = rel_diff(&fused, &composite);
        assert!(d < tolerance, "{dtype:?}: log magnitudes differ by {d:.2e}");
        // NaN audio gives NaN features (not the floor), as the composite path does.
        let nan = Tensor::full(f64::NAN, (1, 2000), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let values = stft.log_magnitude(&nan).unwrap().flatten_all().unwrap().to_dtype(DType::F64).unwrap();
        assert!(values.to_vec1::<f64>().unwrap().iter().all(|v| v.is_nan()), "{dtype:?}: NaN audio gave numbers");
    }
}
