//! The CPU conv1d kernels against stock candle: the forward must equal stock conv1d (plus bias) on every padding,
//! dilation and channel count, on contiguous and strided inputs; the gradients must equal the pass-through path's
//! (whose correctness `tests/gradients.rs` checks against finite differences).

use afx_nn::conv::{Conv1d, Conv1dConfig, Padding, conv1d, conv1d_passthrough};
use afx_nn::gradcheck::pseudo_random;
use candle_core::{D, DType, Device, Module, Result, Tensor, Var};

const PADDINGS: [Padding; 3] = [Padding::Causal, Padding::Same, Padding::Valid];
/// (dilation, kernel): undilated, dilated, even kernel, pointwise.
const SHAPES: [(usize, usize); 5] = [(1, 3), (2, 5), (7, 4), (64, 3), (1, 1)];

/// Stock candle: explicit zero padding, stock conv1d, broadcast bias.
fn stock(conv: &Conv1d, x: &Tensor) -> Result<Tensor> {
    let c = conv.config();
    let total = (conv.weight().dim(2)? - 1) * c.dilation;
    let (before, after) = match c.padding {
        Padding::Causal => (total, 0),
        Padding::Same => (total / 2, total - total / 2),
        Padding::Valid => (0, 0),
    };
    let x = x.pad_with_zeros(D::Minus1, before, after)?;
    let y = x.conv1d(conv.weight(), 0, 1, c.dilation, 1)?;
    match conv.bias() {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
        None => Ok(y),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn layer(c_in: usize, c_out: usize, kernel: usize, config: Conv1dConfig, seed: u64) -> Conv1d {
    let w = pseudo_random((c_out, c_in, kernel), seed, &Device::Cpu).unwrap();
    let b = config.bias.then(|| pseudo_random(c_out, seed + 1, &Device::Cpu).unwrap());
    Conv1d::from_tensors(w, b, config)
}

#[test]
fn cpu_forward_equals_stock_candle_conv1d_for_every_padding_dilation_and_bias() {
    for padding in PADDINGS {
        for bias in [true, false] {
            for (dilation, kernel) in SHAPES {
                for (c_in, c_out) in [(1, 4), (3, 2), (5, 5)] {
                    let conv = layer(c_in, c_out, kernel, Conv1dConfig { dilation, padding, bias }, 1);
                    let x = pseudo_random((3, c_in, 300), 3, &Device::Cpu).unwrap();
                    let (ours, theirs) = (conv.forward(&x).unwrap(), stock(&conv, &x).unwrap());
                    let err = max_abs_diff(&ours, &theirs);
                    assert!(err < 1e-12, "{padding:?} bias {bias} d{dilation} k{kernel} {c_in}→{c_out}: {err:.2e}");
                }
            }
        }
    }
}

/// Transposed and narrowed inputs reach the kernels as strided views (no copy): same result as contiguous.
#[test]
fn cpu_forward_reads_strided_inputs_correctly() {
    let conv = layer(3, 4, 5, Conv1dConfig { dilation: 3, padding: Padding::Same, bias: true }, 4);
    let base = pseudo_random((2, 70, 3), 5, &Device::Cpu).unwrap();
    let x = base.transpose(1, 2).unwrap().narrow(2, 5, 60).unwrap(); // (2, 3, 60), time stride 3
    assert!(!x.is_contiguous());
    let err = max_abs_diff(&conv.forward(&x).unwrap(), &stock(&conv, &x.contiguous().unwrap()).unwrap());
    assert!(err < 1e-12, "{err:.2e}");
}

/// Long input, large dilation and a time length that is not a multiple of the kernels' tiles, in f32 too.
#[test]
fn cpu_forward_equals_stock_on_long_inputs_in_f32_and_f64() {
    for dtype in [DType::F64, DType::F32] {
        let conv = layer(4, 6, 13, Conv1dConfig { dilation: 512, padding: Padding::Causal, bias: true }, 6);
        let conv = Conv1d::from_tensors(
            conv.weight().to_dtype(dtype).unwrap(),
            conv.bias().map(|b| b.to_dtype(dtype).unwrap()),
            conv.config(),
        );
        let x = pseudo_random((2, 4, 9_001), 7, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let err = max_abs_diff(&conv.forward(&x).unwrap(), &stock(&conv, &x).unwrap());
        let tolerance = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
        assert!(err < tolerance, "{dtype:?}: {err:.2e}");
    }
}

/// The free function (valid padding): forward and both gradients equal the pass-through path's.
#[test]
fn cpu_conv1d_gradients_equal_the_passthrough_path() {
    for (dilation, kernel) in SHAPES {
        let x = Var::from_tensor(&pseudo_random((3, 3, 5_000), 8, &Device::Cpu).unwrap()).unwrap();
        let w = Var::from_tensor(&pseudo_random((4, 3, kernel), 9, &Device::Cpu).unwrap()).unwrap();
        let mut results = Vec::new();
        for f in [conv1d, conv1d_passthrough] {
            let y = f(x.as_tensor(), w.as_tensor(), dilation).unwrap();
            let r = pseudo_random(y.shape(), 10, &Device::Cpu).unwrap();
            let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
            results.push((y, grads.get(&x).unwrap().clone(), grads.get(&w).unwrap().clone()));
        }
        let (a, b) = (&results[0], &results[1]);
        let label = format!("d{dilation} k{kernel}");
        assert!(max_abs_diff(&a.0, &b.0) < 1e-11, "{label}: forward");
        assert!(max_abs_diff(&a.1, &b.1) < 1e-11, "{label}: input gradient");
        assert!(max_abs_diff(&a.2, &b.2) < 1e-9, "{label}: weight gradient");
    }
}

/// An input shorter than the kernel's span is an error, not a panic or an empty tensor.
#[test]
fn cpu_conv1d_rejects_inputs_shorter_than_the_kernel_span() {
    let x = pseudo_random((1, 2, 10), 11, &Device::Cpu).unwrap();
    let w = pseudo_random((3, 2, 4), 12, &Device::Cpu).unwrap();
    assert_eq!(conv1d(&x, &w, 3).unwrap().dims(), [1, 3, 1]); // span 10: one output sample
    assert!(conv1d(&x, &w, 4).is_err()); // span 13
}

/// Forward and gradients are bit-for-bit the same on 1 and 3 threads (training runs stay reproducible).
#[test]
fn cpu_conv1d_results_do_not_depend_on_the_thread_count() {
    let x = Var::from_tensor(&pseudo_random((3, 4, 20_000), 13, &Device::Cpu).unwrap()).unwrap();
    let run = |threads: usize| -> Vec<Vec<f64>> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let conv = layer(4, 5, 7, Conv1dConfig { dilation: 9, padding: Padding::Same, bias: true }, 14);
            let (w, b) = (Var::from_tensor(conv.weight()).unwrap(), Var::from_tensor(conv.bias().unwrap()).unwrap());
            let conv = Conv1d::from_tensors(w.as_tensor().clone(), Some(b.as_tensor().clone()), conv.config());
            let y = conv.forward(x.as_tensor()).unwrap();
            let r = pseudo_random(y.shape(), 15, &Device::Cpu).unwrap();
            let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
            [y, grads.get(&x).unwrap().clone(), grads.get(&w).unwrap().clone(), grads.get(&b).unwrap().clone()]
                .iter()
                .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        })
    };
    assert!(run(1) == run(3), "results differ between 1 and 3 threads");
}
