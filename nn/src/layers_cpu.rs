//! CPU kernels of PReLU, GroupNorm and FiLM, forward and backward, as candle custom ops.
//!
//! Why: written with candle's elementwise ops, each layer is 3-10 ops whose backward allocates and traverses
//! full-size temporaries (a `where_cond` backward builds zeros and two selects; a broadcast product sums over the
//! broadcast axes, which candle does slowly), so their backward cost 10-25x their forward (`../shared/notes/
//! candle.md`). Here each layer is one pass forward, and its backward is one pass for the input gradient plus one
//! for the (small) weight gradients, each only when autograd needs it (`Tensor::track_op`).
//!
//! Every kernel takes contiguous row-major tensors `(B, C, inner)` (the callers make them contiguous), runs on
//! f32 or f64, accumulates sums in f64, and is parallel over rows with rayon. Reductions over rows (weight
//! gradients) are split per channel, so their summation order does not depend on scheduling: results are
//! deterministic.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Result, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

use crate::custom_op::{Arg, by_dtype, cpu_fwd, data};

/// Below this many elements a layer runs on one thread (spawning costs more than it saves).
const PARALLEL_MIN: usize = 1 << 14;

/// Implements a gradient op: a `CustomOp2`/`CustomOp3` with no backward of its own whose CPU forward is
/// `kernel::<f32>` or `kernel::<f64>` of its arguments, by the first argument's type.
macro_rules! grad_op {
    (op2 $op:ident, $name:literal, $kernel:ident) => {
        impl CustomOp2 for $op {
            fn name(&self) -> &'static str {
                $name
            }

            cpu_fwd!(|self, a1, a2| by_dtype!("afx-nn layer kernel", a1.0, |T| $kernel::<T>(a1, a2)));
        }
    };
    (op3 $op:ident, $name:literal, $kernel:ident) => {
        impl CustomOp3 for $op {
            fn name(&self) -> &'static str {
                $name
            }

            cpu_fwd!(|self, a1, a2, a3| by_dtype!("afx-nn layer kernel", a1.0, |T| $kernel::<T>(a1, a2, a3)));
        }
    };
}

/// `(B, C, inner)` of a tensor shaped `(B, C, ...)` (rank 2 gives inner = 1).
fn split_dims(shape: &Shape) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        bail!("afx-nn layer kernel: expected (B, C, ...), got {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Fills `out` row by row (`row` elements each) with `f(row index, row)`, in parallel when it is large.
fn rows_mut<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if row == 0 {
        return;
    }
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// `f(i)` for i in 0..n, collected in order, in parallel when `work` (elements touched) is large.
fn map_indices<R: Send>(n: usize, work: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if work >= PARALLEL_MIN { (0..n).into_par_iter().map(f).collect() } else { (0..n).map(f).collect() }
}

/// The gradients of an affine layer's scale and shift from `both`, an op that computes the two stacked `(2, ...)`:
/// each only where that argument takes part in autograd, and the op run only when one does.
fn scale_shift_grads(
    scale: &Tensor,
    shift: &Tensor,
    both: impl FnOnce() -> Result<Tensor>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    if !scale.track_op() && !shift.track_op() {
        return Ok((None, None));
    }
    let both = both()?;
    Ok((scale.track_op().then(|| both.get(0)).transpose()?, shift.track_op().then(|| both.get(1)).transpose()?))
}

// ---------------------------------------------------------------------------------------------------- PReLU

/// `y = x` where `x ≥ 0`, else `a_c · x`; `slope` has C entries or one.
pub(crate) struct Prelu;

pub(crate) fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&slope.contiguous()?, Prelu)
}

/// The slope of row `row` of a `(B, C, inner)` tensor.
fn slope_of<T: WithDType>(slope: &[T], channels: usize, row: usize) -> T {
    if slope.len() == 1 { slope[0] } else { slope[row % channels] }
}

fn prelu_fwd<T: WithDType>((x, xl): Arg, (a, al): Arg) -> Result<(CpuStorage, Shape)> {
    let (x, a) = (data::<T>(x, xl)?, data::<T>(a, al)?);
    let (_, channels, inner) = split_dims(xl.shape())?;
    check_slope(a.len(), channels)?;
    let mut y = vec![T::from_f64(0.0); x.len()];
    rows_mut(&mut y, inner, |r, out| {
        let a = slope_of(a, channels, r);
        for (o, &v) in out.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
            *o = if v >= T::from_f64(0.0) { v } else { a * v };
        }
    });
    Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
}

fn check_slope(len: usize, channels: usize) -> Result<()> {
    if len != 1 && len != channels {
        bail!("prelu: {len} slopes for {channels} channels (need 1 or {channels})")
    }
    Ok(())
}

impl CustomOp2 for Prelu {
    fn name(&self) -> &'static str {
        "afx-prelu"
    }

    cpu_fwd!(|self, x, a| by_dtype!("afx-nn layer kernel", x.0, |T| prelu_fwd::<T>(x, a)));

    fn bwd(&self, x: &Tensor, a: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() { Some(grad.apply_op3_no_bwd(x, a, &PreluInputGrad)?) } else { None };
        let da = if a.track_op() { Some(grad.apply_op3_no_bwd(x, a, &PreluSlopeGrad)?) } else { None };
        Ok((dx, da))
    }
}

/// dx = g where x ≥ 0, else a_c · g.
struct PreluInputGrad;

fn prelu_input_grad<T: WithDType>((g, gl): Arg, (x, xl): Arg, (a, al): Arg) -> Result<(CpuStorage, Shape)> {
    let (g, x, a) = (data::<T>(g, gl)?, data::<T>(x, xl)?, data::<T>(a, al)?);
    let (_, channels, inner) = split_dims(xl.shape())?;
    let mut dx = vec![T::from_f64(0.0); x.len()];
    rows_mut(&mut dx, inner, |r, out| {
        let a = slope_of(a, channels, r);
        let span = r * inner..(r + 1) * inner;
        for ((o, &v), &g) in out.iter_mut().zip(&x[span.clone()]).zip(&g[span]) {
            *o = if v >= T::from_f64(0.0) { g } else { a * g };
        }
    });
    Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
}

grad_op!(op3 PreluInputGrad, "afx-prelu-input-grad", prelu_input_grad);

/// da_c = Σ g · x over the positions of channel c (or all, for one slope) where x < 0.
struct PreluSlopeGrad;

fn prelu_slope_grad<T: WithDType>((g, gl): Arg, (x, xl): Arg, (_a, al): Arg) -> Result<(CpuStorage, Shape)> {
    let (g, x) = (data::<T>(g, gl)?, data::<T>(x, xl)?);
    let (batch, channels, inner) = split_dims(xl.shape())?;
    let per_channel = map_indices(channels, x.len(), |c| {
        let mut sum = 0f64;
        for b in 0..batch {
            let span = (b * channels + c) * inner..(b * channels + c + 1) * inner;
            for (&v, &g) in x[span.clone()].iter().zip(&g[span]) {
                if v < T::from_f64(0.0) {
                    sum += g.to_f64() * v.to_f64();
                }
            }
        }
        sum
    });
    let da: Vec<T> = if al.shape().elem_count() == 1 {
        vec![T::from_f64(per_channel.iter().sum())]
    } else {
        per_channel.into_iter().map(T::from_f64).collect()
    };
    Ok((T::to_cpu_storage_owned(da), al.shape().clone()))
}

grad_op!(op3 PreluSlopeGrad, "afx-prelu-slope-grad", prelu_slope_grad);

// ------------------------------------------------------------------------------------------------ GroupNorm

/// Group normalisation of `(B, C, inner)` in `groups` groups of C/G channels, then `y = x̂ · w_c + b_c`.
pub(crate) struct GroupNormOp {
    pub groups: usize,
    pub eps: f64,
}

pub(crate) fn group_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, GroupNormOp { groups, eps })
}

/// Mean and 1/√(var + eps) (biased variance) of each `len`-element block of `x`, two-pass in f64.
fn block_stats<T: WithDType>(x: &[T], len: usize, eps: f64) -> Vec<(f64, f64)> {
    map_indices(x.len() / len.max(1), x.len(), |i| {
        let block = &x[i * len..(i + 1) * len];
        let mean = block.iter().map(|v| v.to_f64()).sum::<f64>() / len as f64;
        let var = block.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / len as f64;
        (mean, 1.0 / (var + eps).sqrt())
    })
}

impl GroupNormOp {
    /// (B, C, inner, elements per group) of `x`, checked against the groups.
    fn geometry(&self, shape: &Shape) -> Result<(usize, usize, usize, usize)> {
        let (batch, channels, inner) = split_dims(shape)?;
        if self.groups == 0 || channels % self.groups != 0 {
            bail!("group norm: {channels} channels do not split into {} groups", self.groups)
        }
        Ok((batch, channels, inner, channels / self.groups * inner))
    }

    fn fwd<T: WithDType>(&self, (x, xl): Arg, (w, wl): Arg, (b, bl): Arg) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (data::<T>(x, xl)?, data::<T>(w, wl)?, data::<T>(b, bl)?);
        let (_, channels, inner, group_len) = self.geometry(xl.shape())?;
        if w.len() != channels || b.len() != channels {
            bail!("group norm: {} weights and {} biases for {channels} channels", w.len(), b.len())
        }
        let stats = block_stats(x, group_len, self.eps);
        let mut y = vec![T::from_f64(0.0); x.len()];
        rows_mut(&mut y, inner, |r, out| {
            let c = r % channels;
            let (mean, rstd) = stats[r * inner / group_len];
            let (scale, shift) = (rstd * w[c].to_f64(), b[c].to_f64() - mean * rstd * w[c].to_f64());
            for (o, &v) in out.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
                *o = T::from_f64(v.to_f64() * scale + shift);
            }
        });
        Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "afx-group-norm"
    }

    cpu_fwd!(|self, x, w, b| by_dtype!("group norm kernel", x.0, |T| self.fwd::<T>(x, w, b)));

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let op = GroupNormGrad { groups: self.groups, eps: self.eps };
        let dx = if x.track_op() { Some(grad.apply_op3_no_bwd(x, w, &GroupNormInputGrad(op))?) } else { None };
        let (dw, db) = scale_shift_grads(w, b, || grad.apply_op2_no_bwd(x, &GroupNormAffineGrad(op)))?;
        Ok((dx, dw, db))
    }
}

#[derive(Clone, Copy)]
struct GroupNormGrad {
    groups: usize,
    eps: f64,
}

impl GroupNormGrad {
    fn op(self) -> GroupNormOp {
        GroupNormOp { groups: self.groups, eps: self.eps }
    }
}

/// dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) per group, with ĝ = g · w_c.
struct GroupNormInputGrad(GroupNormGrad);

impl GroupNormInputGrad {
    fn run<T: WithDType>(&self, (g, gl): Arg, (x, xl): Arg, (w, wl): Arg) -> Result<(CpuStorage, Shape)> {
        let (g, x, w) = (data::<T>(g, gl)?, data::<T>(x, xl)?, data::<T>(w, wl)?);
        let (_, channels, inner, group_len) = self.0.op().geometry(xl.shape())?;
        let group_channels = channels / self.0.groups;
        let stats = block_stats(x, group_len, self.0.eps);
        let mut dx = vec![T::from_f64(0.0); x.len()];
        rows_mut(&mut dx, group_len, |i, out| {
            let (mean, rstd) = stats[i];
            let first_channel = (i % self.0.groups) * group_channels;
            let span = i * group_len..(i + 1) * group_len;
            let (x, g) = (&x[span.clone()], &g[span]);
            let (mut sum_g, mut sum_gx) = (0f64, 0f64);
            for ((x, g), w) in x.chunks(inner).zip(g.chunks(inner)).zip(&w[first_channel..]) {
                let (mut row_g, mut row_gx) = (0f64, 0f64);
                for (&v, &g) in x.iter().zip(g) {
                    row_g += g.to_f64();
                    row_gx += g.to_f64() * v.to_f64();
                }
                // Σ g·w·x̂ = w·rstd·(Σ g·x − mean·Σ g)
                sum_g += w.to_f64() * row_g;
                sum_gx += w.to_f64() * rstd * (row_gx - mean * row_g);
            }
            let (mean_g, mean_gx) = (sum_g / group_len as f64, sum_gx / group_len as f64);
            for (((out, x), g), w) in
                out.chunks_mut(inner).zip(x.chunks(inner)).zip(g.chunks(inner)).zip(&w[first_channel..])
            {
                let w = w.to_f64();
                for ((o, &v), &g) in out.iter_mut().zip(x).zip(g) {
                    let xhat = (v.to_f64() - mean) * rstd;
                    *o = T::from_f64(rstd * (g.to_f64() * w - mean_g - xhat * mean_gx));
                }
            }
        });
        Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
    }
}

impl CustomOp3 for GroupNormInputGrad {
    fn name(&self) -> &'static str {
        "afx-group-norm-input-grad"
    }

    cpu_fwd!(|self, g, x, w| by_dtype!("group norm kernel", g.0, |T| self.run::<T>(g, x, w)));
}

/// `(2, C)`: dw_c = Σ g · x̂ and db_c = Σ g over the batch and the channel's positions.
struct GroupNormAffineGrad(GroupNormGrad);

impl GroupNormAffineGrad {
    fn run<T: WithDType>(&self, (g, gl): Arg, (x, xl): Arg) -> Result<(CpuStorage, Shape)> {
        let (g, x) = (data::<T>(g, gl)?, data::<T>(x, xl)?);
        let (batch, channels, inner, group_len) = self.0.op().geometry(xl.shape())?;
        let stats = block_stats(x, group_len, self.0.eps);
        let sums = map_indices(channels, x.len(), |c| {
            let (mut dw, mut db) = (0f64, 0f64);
            for b in 0..batch {
                let row = b * channels + c;
                let (mean, rstd) = stats[row * inner / group_len];
                let span = row * inner..(row + 1) * inner;
                for (&v, &g) in x[span.clone()].iter().zip(&g[span]) {
                    dw += g.to_f64() * (v.to_f64() - mean) * rstd;
                    db += g.to_f64();
                }
            }
            (dw, db)
        });
        let out: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).chain(sums.iter().map(|s| T::from_f64(s.1))).collect();
        Ok((T::to_cpu_storage_owned(out), Shape::from((2, channels))))
    }
}

impl CustomOp2 for GroupNormAffineGrad {
    fn name(&self) -> &'static str {
        "afx-group-norm-affine-grad"
    }

    cpu_fwd!(|self, g, x| by_dtype!("group norm kernel", g.0, |T| self.run::<T>(g, x)));
}

// ----------------------------------------------------------------------------------------------------- FiLM

/// `y = γ_bc · x + β_bc` for `x` `(B, C, inner)` and γ, β `(B, C)`.
pub(crate) struct FilmOp;

pub(crate) fn film(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, FilmOp)
}

fn film_fwd<T: WithDType>((x, xl): Arg, (gamma, gml): Arg, (beta, bl): Arg) -> Result<(CpuStorage, Shape)> {
    let (x, gamma, beta) = (data::<T>(x, xl)?, data::<T>(gamma, gml)?, data::<T>(beta, bl)?);
    let (batch, channels, inner) = split_dims(xl.shape())?;
    if gamma.len() != batch * channels || beta.len() != batch * channels {
        bail!("film: γ and β must be (B, C) = ({batch}, {channels}), got {:?} and {:?}", gml.dims(), bl.dims())
    }
    let mut y = vec![T::from_f64(0.0); x.len()];
    rows_mut(&mut y, inner, |r, out| {
        let (g, b) = (gamma[r], beta[r]);
        for (o, &v) in out.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
            *o = g * v + b;
        }
    });
    Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
}

impl CustomOp3 for FilmOp {
    fn name(&self) -> &'static str {
        "afx-film"
    }

    cpu_fwd!(|self, x, gamma, beta| by_dtype!("afx-nn layer kernel", x.0, |T| film_fwd::<T>(x, gamma, beta)));

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(gamma, &FilmInputGrad)?) } else { None };
        let (dgamma, dbeta) = scale_shift_grads(gamma, beta, || grad.apply_op2_no_bwd(x, &FilmAffineGrad))?;
        Ok((dx, dgamma, dbeta))
    }
}

/// dx = γ_bc · g.
struct FilmInputGrad;

fn film_input_grad<T: WithDType>((g, gl): Arg, (gamma, gml): Arg) -> Result<(CpuStorage, Shape)> {
    let (g, gamma) = (data::<T>(g, gl)?, data::<T>(gamma, gml)?);
    let (_, _, inner) = split_dims(gl.shape())?;
    let mut dx = vec![T::from_f64(0.0); g.len()];
    rows_mut(&mut dx, inner, |r, out| {
        let scale = gamma[r];
        for (o, &v) in out.iter_mut().zip(&g[r * inner..(r + 1) * inner]) {
            *o = scale * v;
        }
    });
    Ok((T::to_cpu_storage_owned(dx), gl.shape().clone()))
}

grad_op!(op2 FilmInputGrad, "afx-film-input-grad", film_input_grad);

/// `(2, B, C)`: dγ_bc = Σ_t g · x and dβ_bc = Σ_t g.
struct FilmAffineGrad;

fn film_affine_grad<T: WithDType>((g, gl): Arg, (x, xl): Arg) -> Result<(CpuStorage, Shape)> {
    let (g, x) = (data::<T>(g, gl)?, data::<T>(x, xl)?);
    let (batch, channels, inner) = split_dims(xl.shape())?;
    let sums = map_indices(batch * channels, x.len(), |r| {
        let span = r * inner..(r + 1) * inner;
        let (mut dgamma, mut dbeta) = (0f64, 0f64);
        for (&v, &g) in x[span.clone()].iter().zip(&g[span]) {
            dgamma += g.to_f64() * v.to_f64();
            dbeta += g.to_f64();
        }
        (dgamma, dbeta)
    });
    let out: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).chain(sums.iter().map(|s| T::from_f64(s.1))).collect();
    Ok((T::to_cpu_storage_owned(out), Shape::from((2, batch, channels))))
}

grad_op!(op2 FilmAffineGrad, "afx-film-affine-grad", film_affine_grad);

/// Whether the CPU kernels can run on `x` (else the caller uses its composite candle ops).
pub(crate) fn runs_on(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}
