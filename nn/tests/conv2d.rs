//! The CPU conv2d op of [`Conv2d`] (im2col + gemm) against stock candle conv2d ([`conv2d_stock`], whose CPU
//! backward is correct): the values and the input, weight and bias gradients at batch ≥ 2 in f32 and f64, over
//! strides, paddings, dilations, odd sizes, non-square kernels and one input channel; f64 finite differences at
//! batch 2; no gradient for arguments that are not variables; strided inputs and output gradients; results that
//! do not depend on the thread count.

use afx_nn::conv::{Conv2d, Conv2dConfig, conv2d_stock};
use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
use candle_core::{DType, Device, Module, Result, Tensor, Var};

/// One convolution: input `(batch, c_in, h, w)`, kernel `(c_out, c_in, kh, kw)`.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

const fn case(
    (batch, c_in, c_out): (usize, usize, usize),
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (stride, padding, dilation): (usize, usize, usize),
) -> Case {
    Case { batch, c_in, c_out, h, w, kh, kw, stride, padding, dilation }
}

const CASES: [Case; 14] = [
    case((2, 1, 4), (11, 9), (3, 3), (1, 0, 1)), // one input channel, stride 1, no padding
    case((3, 2, 3), (9, 8), (3, 3), (2, 1, 1)),  // stride 2, padding 1, odd × even
    case((2, 3, 5), (10, 13), (3, 3), (2, 0, 1)), // stride 2, no padding: the last row/column is never read
    case((2, 2, 3), (12, 11), (3, 3), (1, 2, 2)), // dilation 2
    case((2, 3, 2), (8, 9), (3, 3), (2, 1, 2)),  // dilation 2 and stride 2
    case((2, 4, 2), (7, 7), (1, 1), (1, 0, 1)),  // pointwise
    case((2, 3, 4), (16, 15), (5, 5), (3, 2, 1)), // kernel 5, stride 3
    case((2, 2, 3), (9, 10), (2, 3), (2, 1, 1)), // non-square, even kernel height
    case((2, 3, 2), (6, 7), (3, 3), (1, 3, 1)),  // padding wider than the kernel: windows of zeros only
    case((2, 3, 4), (5, 6), (3, 3), (1, 1, 3)),  // the kernel's span fills the padded height exactly
    case((2, 1, 8), (257, 87), (3, 3), (2, 1, 1)), // the encoder's first layer (several tiles per item)
    case((2, 8, 16), (129, 44), (3, 3), (2, 1, 1)), // its second (several channel groups in the input gradient)
    case((1, 5, 3), (40, 37), (3, 3), (1, 1, 1)), // batch 1: tiles keep several tasks
    case((2, 2, 3), (301, 300), (3, 3), (1, 1, 1)), // input gradient in many column tiles, cut mid-row
];

impl Case {
    fn config(&self) -> Conv2dConfig {
        Conv2dConfig {
            padding: self.padding,
            stride: self.stride,
            dilation: self.dilation,
            groups: 1,
            cudnn_fwd_algo: None,
        }
    }

    /// Input, kernel and bias variables of `dtype`, pseudo-random from `seed`.
    fn vars(&self, dtype: DType, seed: u64) -> (Var, Var, Var) {
        let var = |shape: &[usize], seed| {
            let t = pseudo_random(shape, seed, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            Var::from_tensor(&t).unwrap()
        };
        (
            var(&[self.batch, self.c_in, self.h, self.w], seed),
            var(&[self.c_out, self.c_in, self.kh, self.kw], seed + 1),
            var(&[self.c_out], seed + 2),
        )
    }
}

/// max |a − b| / max(1, max |b|).
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let max = |t: &Tensor| -> f64 {
        t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_dtype(DType::F64).unwrap().to_scalar().unwrap()
    };
    max(&(a - b).unwrap()) / max(b).max(1.0)
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-12 } else { 1e-5 }
}

/// `(y, dx, dw, db)` of `loss(conv(x))` through our op or stock.
fn run(c: &Case, x: &Tensor, w: &Var, b: &Var, ours: bool, loss: impl Fn(&Tensor) -> Result<Tensor>) -> [Tensor; 4] {
    let y = if ours {
        Conv2d::from_tensors(w.as_tensor().clone(), Some(b.as_tensor().clone()), c.config()).forward(x).unwrap()
    } else {
        conv2d_stock(x, w.as_tensor(), Some(b.as_tensor()), &c.config()).unwrap()
    };
    let grads = loss(&y).unwrap().backward().unwrap();
    let grad = |t: &Tensor| grads.get(t).unwrap_or_else(|| panic!("{c:?}: a gradient is missing")).clone();
    [y.clone(), grad(x), grad(w.as_tensor()), grad(b.as_tensor())]
}

/// Asserts each of the four is within `tol` of stock's; returns the largest relative difference.
fn assert_same(label: &str, ours: &[Tensor; 4], stock: &[Tensor; 4], tol: f64) -> f64 {
    let mut worst = 0f64;
    for (name, (a, b)) in
        ["forward", "input gradient", "weight gradient", "bias gradient"].iter().zip(ours.iter().zip(stock))
    {
        let err = rel_diff(a, b);
        assert!(err < tol, "{label}: {name} differs from stock by {err:.2e} (relative)");
        worst = worst.max(err);
    }
    worst
}

#[test]
fn values_and_all_gradients_equal_stock_candle_conv2d_in_f32_and_f64() {
    for dtype in [DType::F64, DType::F32] {
        let mut worst = 0f64;
        for (i, c) in CASES.iter().enumerate() {
            let (x, w, b) = c.vars(dtype, 10 * i as u64);
            let loss = |y: &Tensor| project(y, 7);
            let ours = run(c, x.as_tensor(), &w, &b, true, loss);
            let stock = run(c, x.as_tensor(), &w, &b, false, loss);
            assert_eq!(ours[0].dims(), stock[0].dims(), "{c:?}");
            worst = worst.max(assert_same(&format!("{dtype:?} {c:?}"), &ours, &stock, tolerance(dtype)));
        }
        println!("{dtype:?}: largest relative difference from stock over {} cases: {worst:.2e}", CASES.len());
    }
}

/// A scalar function of a layer's output.
type Loss = dyn Fn(&Tensor) -> Result<Tensor>;

/// Transposed, narrowed inputs and output gradients that are broadcasts (a plain sum) or transposed views reach
/// the kernels as strided views: same results as stock.
#[test]
fn strided_inputs_and_output_gradients_give_the_same_results() {
    let c = case((2, 3, 4), (13, 10), (3, 3), (2, 1, 1));
    let (_, w, b) = c.vars(DType::F64, 100);
    let base = pseudo_random((2, 3, 12, 15), 101, &Device::Cpu).unwrap();
    let x = Var::from_tensor(&base).unwrap();
    // (2, 3, 13, 10): width stride 15, height stride 1.
    let view = |x: &Var| x.as_tensor().transpose(2, 3).unwrap().narrow(2, 1, 13).unwrap().narrow(3, 2, 10).unwrap();
    assert!(!view(&x).is_contiguous());
    let losses: [(&str, &Loss); 3] = [
        ("projection", &|y| project(y, 102)),
        ("plain sum (broadcast gradient)", &|y| y.sum_all()),
        ("transposed output", &|y| project(&y.transpose(2, 3)?, 103)),
    ];
    for (name, loss) in losses {
        let run_on = |ours: bool| {
            let y = if ours {
                Conv2d::from_tensors(w.as_tensor().clone(), Some(b.as_tensor().clone()), c.config())
                    .forward(&view(&x))
                    .unwrap()
            } else {
                conv2d_stock(&view(&x).contiguous().unwrap(), w.as_tensor(), Some(b.as_tensor()), &c.config()).unwrap()
            };
            let grads = loss(&y).unwrap().backward().unwrap();
            [y.clone(), grads.get(&x).unwrap().clone(), grads.get(&w).unwrap().clone(), grads.get(&b).unwrap().clone()]
        };
        assert_same(name, &run_on(true), &run_on(false), 1e-12);
    }
}

/// f64 central finite differences at batch 2 for the input, the kernel and the bias.
#[test]
fn gradients_match_finite_differences_at_batch_2() {
    let cases = [
        case((2, 1, 3), (9, 8), (3, 3), (2, 1, 1)),
        case((2, 2, 3), (9, 10), (3, 3), (1, 2, 2)),
        case((2, 3, 2), (8, 7), (2, 3), (2, 0, 1)),
        case((2, 2, 2), (11, 9), (3, 3), (3, 1, 1)),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w, b) = c.vars(DType::F64, 200 + 10 * i as u64);
        let conv = Conv2d::from_tensors(w.as_tensor().clone(), Some(b.as_tensor().clone()), c.config());
        let f = || project(&conv.forward(x.as_tensor())?, 17);
        let reports = GradCheck::default().run(f, &[("x", &x), ("weight", &w), ("bias", &b)]).unwrap();
        for r in reports {
            println!("{c:?}: {r}");
            assert!(r.max_abs_grad > 0.0, "{c:?}: {} has an all-zero gradient", r.name);
            assert!(r.rel_err < 1e-6, "{c:?}: {r}");
        }
    }
}

/// An input that is not a variable gets no gradient (the first layer's spectrogram), nor do frozen weights; the
/// others still get theirs, equal to stock's.
#[test]
fn only_arguments_in_autograd_get_gradients() {
    let c = case((2, 1, 8), (33, 17), (3, 3), (2, 1, 1));
    let (xv, w, b) = c.vars(DType::F64, 300);
    let x = xv.as_tensor().detach();
    let conv = Conv2d::from_tensors(w.as_tensor().clone(), Some(b.as_tensor().clone()), c.config());
    let grads = project(&conv.forward(&x).unwrap(), 301).unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none(), "an input outside autograd got a gradient");
    let stock = conv2d_stock(xv.as_tensor(), w.as_tensor(), Some(b.as_tensor()), &c.config()).unwrap();
    let stock = project(&stock, 301).unwrap().backward().unwrap();
    assert!(rel_diff(grads.get(&w).unwrap(), stock.get(&w).unwrap()) < 1e-12);
    assert!(rel_diff(grads.get(&b).unwrap(), stock.get(&b).unwrap()) < 1e-12);

    // Frozen kernel and bias, input a variable: only dx.
    let frozen = Conv2d::from_tensors(w.as_tensor().detach(), Some(b.as_tensor().detach()), c.config());
    let grads = project(&frozen.forward(xv.as_tensor()).unwrap(), 301).unwrap().backward().unwrap();
    assert!(rel_diff(grads.get(&xv).unwrap(), stock.get(&xv).unwrap()) < 1e-12);
    assert!(grads.get(frozen.weight()).is_none() && grads.get(frozen.bias().unwrap()).is_none());

    // Only the bias: neither dx nor dw.
    let bias_only = Conv2d::from_tensors(w.as_tensor().detach(), Some(b.as_tensor().clone()), c.config());
    let grads = project(&bias_only.forward(&x).unwrap(), 301).unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none() && grads.get(bias_only.weight()).is_none());
    assert!(rel_diff(grads.get(&b).unwrap(), stock.get(&b).unwrap()) < 1e-12);
}

/// Without bias: forward and gradients still equal stock's.
#[test]
fn without_bias_equals_stock() {
    let c = case((3, 4, 5), (17, 12), (3, 3), (2, 1, 1));
    let (x, w, _) = c.vars(DType::F64, 400);
    let mut results = Vec::new();
    for ours in [true, false] {
        let y = if ours {
            Conv2d::from_tensors(w.as_tensor().clone(), None, c.config()).forward(x.as_tensor()).unwrap()
        } else {
            conv2d_stock(x.as_tensor(), w.as_tensor(), None, &c.config()).unwrap()
        };
        let grads = project(&y, 401).unwrap().backward().unwrap();
        results.push([y.clone(), grads.get(&x).unwrap().clone(), grads.get(&w).unwrap().clone()]);
    }
    for (name, (a, b)) in
        ["forward", "input gradient", "weight gradient"].iter().zip(results[0].iter().zip(&results[1]))
    {
        assert!(rel_diff(a, b) < 1e-12, "{name}");
    }
}

/// Forward and gradients are bit-for-bit the same on 1 and 3 threads (training runs stay reproducible).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let c = case((3, 8, 16), (129, 44), (3, 3), (2, 1, 1));
    let (x, w, b) = c.vars(DType::F32, 500);
    let run_with = |threads: usize| -> Vec<Vec<f32>> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            run(&c, x.as_tensor(), &w, &b, true, |y| project(y, 501))
                .iter()
                .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        })
    };
    assert!(run_with(1) == run_with(3), "results differ between 1 and 3 threads");
}

/// Zero stride or dilation and inputs smaller than the kernel's span are errors, not panics; groups > 1 run
/// through stock conv2d.
#[test]
fn refuses_bad_settings_and_falls_back_for_groups() {
    let x = pseudo_random((2, 4, 6, 6), 600, &Device::Cpu).unwrap();
    let w = pseudo_random((4, 4, 3, 3), 601, &Device::Cpu).unwrap();
    let conv = |stride, padding, dilation| {
        let cfg = Conv2dConfig { padding, stride, dilation, groups: 1, cudnn_fwd_algo: None };
        Conv2d::from_tensors(w.clone(), None, cfg).forward(&x)
    };
    assert!(conv(0, 1, 1).is_err());
    assert!(conv(1, 1, 0).is_err());
    assert!(conv(1, 0, 3).is_err()); // a 7-pixel span over 6 pixels
    assert_eq!(conv(1, 1, 3).unwrap().dims(), [2, 4, 2, 2]);
    let grouped = Conv2dConfig { padding: 1, stride: 1, dilation: 1, groups: 2, cudnn_fwd_algo: None };
    let w2 = pseudo_random((4, 2, 3, 3), 602, &Device::Cpu).unwrap();
    let y = Conv2d::from_tensors(w2.clone(), None, grouped).forward(&x).unwrap();
    assert!(rel_diff(&y, &conv2d_stock(&x, &w2, None, &grouped).unwrap()) < 1e-15);
}
