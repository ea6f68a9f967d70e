//! Gradient checking: autograd gradients against central finite differences, for inputs and weights alike.
//!
//! Use f64 tensors: with ε = 1e-6 the central difference's truncation error is ~1e-12 and its rounding error
//! ~1e-10 relative, so a correct backward agrees to ~1e-8 or better while a wrong one is off by O(1).
//!
//! ```
//! use afx_nn::gradcheck::{GradCheck, pseudo_random, project};
//! use candle_core::{Device, Var};
//!
//! let x = Var::from_tensor(&pseudo_random((2, 5), 1, &Device::Cpu)?)?;
//! let f = || project(&x.as_tensor().tanh()?, 7);
//! let reports = GradCheck::default().run(f, &[("x", &x)])?;
//! assert!(reports[0].rel_err < 1e-6, "{}", reports[0]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use std::fmt;

use candle_core::{DType, Device, Result, Shape, Tensor, Var, bail};

/// Settings of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f64,
    /// At most this many elements of each tensor are perturbed (evenly spread); the others are not checked.
    pub max_points: usize,
}

impl Default for GradCheck {
    fn default() -> Self {
        Self { eps: 1e-6, max_points: 400 }
    }
}

/// Outcome for one checked tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    pub name: String,
    /// Elements compared.
    pub points: usize,
    /// max |autograd − finite difference| over the compared elements.
    pub max_abs_err: f64,
    /// max |finite difference| over the compared elements.
    pub max_abs_grad: f64,
    /// max_abs_err / max(max |autograd|, max |finite difference|, 1e-12).
    pub rel_err: f64,
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: rel err {:.2e} (max abs err {:.2e}, max |grad| {:.2e}, {} points)",
            self.name, self.rel_err, self.max_abs_err, self.max_abs_grad, self.points
        )
    }
}

impl GradCheck {
    /// Compares the gradient of the scalar `f()` with respect to each named `Var` (inputs and weights: whatever `f`
    /// reads) against central finite differences. `f` must be deterministic; it is called 2 × points + 1 times.
    pub fn run(&self, f: impl Fn() -> Result<Tensor>, vars: &[(&str, &Var)]) -> Result<Vec<GradReport>> {
        let loss = f()?;
        if loss.elem_count() != 1 {
            bail!("gradcheck: the function must return a scalar, got shape {:?}", loss.dims())
        }
        let grads = loss.backward()?;
        let mut reports = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let shape = var.shape().clone();
            let original: Vec<f64> = var.as_tensor().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let autograd: Vec<f64> = match grads.get(var.as_tensor()) {
                Some(g) => g.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
                None => vec![0.0; original.len()],
            };
            let points = spread(original.len(), self.max_points);
            let (mut max_abs_err, mut max_abs_grad, mut max_abs_auto) = (0f64, 0f64, 0f64);
            for &i in &points {
                let at = |delta: f64| -> Result<f64> {
                    let mut values = original.clone();
                    values[i] += delta;
                    set_values(var, &values, &shape)?;
                    scalar(&f()?)
                };
                let numeric = (at(self.eps)? - at(-self.eps)?) / (2.0 * self.eps);
                max_abs_err = max_abs_err.max((numeric - autograd[i]).abs());
                max_abs_grad = max_abs_grad.max(numeric.abs());
                max_abs_auto = max_abs_auto.max(autograd[i].abs());
            }
            set_values(var, &original, &shape)?;
            let rel_err = max_abs_err / max_abs_grad.max(max_abs_auto).max(1e-12);
            reports.push(GradReport {
                name: name.to_string(),
                points: points.len(),
                max_abs_err,
                max_abs_grad,
                rel_err,
            });
        }
        Ok(reports)
    }
}

/// `Σ y ⊙ R` for a fixed pseudo-random `R` (from `seed`): turns a layer's output into a scalar whose gradient
/// exercises every output element with a different weight.
pub fn project(y: &Tensor, seed: u64) -> Result<Tensor> {
    let r = pseudo_random(y.shape(), seed, y.device())?.to_dtype(y.dtype())?;
    (y * r)?.sum_all()
}

/// Deterministic f64 values uniform in [-1, 1) (a 64-bit LCG), for reproducible test data.
pub fn pseudo_random<S: Into<Shape>>(shape: S, seed: u64, device: &Device) -> Result<Tensor> {
    let shape = shape.into();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x2545_F491_4F6C_DD1D);
    let values: Vec<f64> = (0..shape.elem_count())
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, device)
}

/// Up to `max` indices spread evenly over `0..len`.
fn spread(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    (0..max).map(|i| i * len / max + (len / max) / 2).collect()
}

fn set_values(var: &Var, values: &[f64], shape: &Shape) -> Result<()> {
    let t = Tensor::from_vec(values.to_vec(), shape.clone(), var.device())?.to_dtype(var.dtype())?;
    var.set(&t)
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .first()
        .copied()
        .ok_or_else(|| candle_core::Error::Msg("gradcheck: empty output".into()))
}
