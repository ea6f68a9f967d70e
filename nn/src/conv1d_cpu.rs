//! CPU kernels of [`crate::conv::conv1d`]: a stride-1, groups-1 dilated convolution is a sum of K matrix products
//! on time-SHIFTED views of the input, so neither an im2col matrix nor a padded copy of the input is ever built.
//!
//! With `s_k = k·d − pad_left` (where tap k reads the input relative to the output), for each batch item b:
//! - forward:      `y_b[:, t] = bias + Σ_k W_k · x_b[:, t + s_k]`                    (W_k = w[:, :, k], Cout × Cin)
//! - input grad:   `dx_b[:, u] = Σ_k W_kᵀ · dy_b[:, u − s_k]`
//! - weight grad:  `dW_k = Σ_b Σ_t dy_b[:, t] · x_b[:, t + s_k]ᵀ`
//!
//! where every sum runs only over the time indices that fall inside the real (unpadded) signal: padding is zeros,
//! so clipping each tap's time range is the same as padding, without touching memory. Each term is one `gemm` call
//! on strided views (gemm takes row and column strides, so shifted and transposed views cost nothing).
//!
//! Parallelism: rayon over (batch item, time tile). The forward and the input gradient are gathers (each task owns
//! a disjoint tile of the output and loops over the K taps while that tile is hot in cache); the weight gradient
//! gives each task a private Cout × Cin × K accumulator and sums them at the end, in task order. gemm itself runs
//! single-threaded inside each task. Every output element is computed by the same sequence of operations whatever
//! the thread count, so results are reproducible bit for bit.

use candle_core::{CpuStorage, Layout, Result, Shape, bail};
use rayon::prelude::*;

use crate::custom_op::{Arg, same_dtype};

use crate::cpu_kernel::{self, Element, SharedMut, gemm_add, sum_in_order};

/// Output columns per forward / input-gradient task: large enough for gemm to run at full speed, small enough
/// that a Cout × TILE tile of the output stays in L2 while the K taps accumulate into it.
const TILE: usize = 1024;

/// Output columns per weight-gradient task (its inner dimension; the private accumulators are tiny).
const GRAD_CHUNK: usize = 4096;

/// Time geometry of one convolution: input length, output length, and where each tap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    kernel: usize,
    dilation: usize,
    pad_left: usize,
    t_in: usize,
    t_out: usize,
}

impl Geometry {
    /// Geometry of a convolution of `t_in` samples padded with `pad_left` / `pad_right` zeros.
    pub(crate) fn new(kernel: usize, dilation: usize, pad_left: usize, pad_right: usize, t_in: usize) -> Result<Self> {
        if kernel == 0 || dilation == 0 {
            bail!("conv1d: kernel ({kernel}) and dilation ({dilation}) must be at least 1")
        }
        let span = (kernel - 1) * dilation + 1;
        let padded = t_in + pad_left + pad_right;
        if padded < span {
            bail!("conv1d: {t_in} input samples + {pad_left}/{pad_right} padding < the kernel's {span}-sample span")
        }
        Ok(Self { kernel, dilation, pad_left, t_in, t_out: padded - span + 1 })
    }

    /// Input index minus output index for tap `k`.
    fn shift(&self, k: usize) -> isize {
        (k * self.dilation) as isize - self.pad_left as isize
    }

    /// Output indices `t` in `lo..hi` whose input `t + shift(k)` lies inside the signal, clipped to `lo..hi`.
    fn out_range(&self, k: usize, lo: usize, hi: usize) -> Option<(usize, usize)> {
        let s = self.shift(k);
        let start = (lo as isize).max(-s);
        let end = (hi as isize).min(self.t_in as isize - s);
        (end > start).then_some((start as usize, end as usize))
    }

    /// Input indices `u` in `lo..hi` that tap `k` reads for some output `u − shift(k)`, clipped to `lo..hi`.
    fn in_range(&self, k: usize, lo: usize, hi: usize) -> Option<(usize, usize)> {
        let s = self.shift(k);
        let start = (lo as isize).max(s);
        let end = (hi as isize).min(self.t_out as isize + s);
        (end > start).then_some((start as usize, end as usize))
    }
}

/// A 3-D view of a CPU buffer.
type View<'a, T> = cpu_kernel::View<'a, T, 3>;

/// Views `data` through a rank-3 `layout`, bounds-checked (see [`cpu_kernel::View::new`]).
fn view<'a, T>(data: &'a [T], layout: &Layout) -> Result<View<'a, T>> {
    View::new(data, layout, "conv1d")
}

/// `y (B, Cout, t_out) = bias + conv(x (B, Cin, t_in), w (Cout, Cin, K))`, contiguous.
pub(crate) fn forward<T: Element>(x: View<T>, w: View<T>, bias: Option<(&[T], usize, usize)>, g: Geometry) -> Vec<T> {
    let [batch, c_in, _] = x.dims;
    let c_out = w.dims[0];
    let t_out = g.t_out;
    let mut y = vec![T::default(); batch * c_out * t_out];
    if let Some((data, offset, stride)) = bias {
        for (i, row) in y.chunks_exact_mut(t_out.max(1)).enumerate() {
            row.fill(data[offset + (i % c_out) * stride]);
        }
    }
    if y.is_empty() || c_in == 0 {
        return y;
    }
    let tiles = t_out.div_ceil(TILE);
    let dst = SharedMut(y.as_mut_ptr());
    (0..batch * tiles).into_par_iter().for_each(|task| {
        let (b, tile) = (task / tiles, task % tiles);
        let (lo, hi) = (tile * TILE, ((tile + 1) * TILE).min(t_out));
        for k in 0..g.kernel {
            let Some((start, end)) = g.out_range(k, lo, hi) else { continue };
            let input_start = (start as isize + g.shift(k)) as usize;
            // SAFETY: the destination block is rows 0..Cout, columns start..end of item b of the contiguous
            // (B, Cout, t_out) buffer `y`, which lives until the loop ends; it lies inside this task's tile lo..hi,
            // and no two tasks share a (b, tile), so the writes are disjoint. The lhs is W_k (Cout × Cin) and the
            // rhs columns input_start..input_start + (end − start) of x_b, inside the signal by `out_range`; both
            // views were bounds-checked against their buffers by `View::new`.
            unsafe {
                gemm_add(
                    (c_out, end - start, c_in),
                    (dst.ptr().add(b * c_out * t_out + start), 1, t_out as isize),
                    true,
                    (w.at([0, 0, k]), w.stride(1), w.stride(0)),
                    (x.at([b, 0, input_start]), x.stride(2), x.stride(1)),
                )
            }
        }
    });
    y
}

/// `dx (B, Cin, t_in)` from `dy (B, Cout, t_out)` and `w (Cout, Cin, K)`, contiguous.
pub(crate) fn input_grad<T: Element>(dy: View<T>, w: View<T>, g: Geometry) -> Vec<T> {
    let [batch, c_out, _] = dy.dims;
    let c_in = w.dims[1];
    let t_in = g.t_in;
    let mut dx = vec![T::default(); batch * c_in * t_in];
    if dx.is_empty() || c_out == 0 {
        return dx;
    }
    let tiles = t_in.div_ceil(TILE);
    let dst = SharedMut(dx.as_mut_ptr());
    (0..batch * tiles).into_par_iter().for_each(|task| {
        let (b, tile) = (task / tiles, task % tiles);
        let (lo, hi) = (tile * TILE, ((tile + 1) * TILE).min(t_in));
        for k in 0..g.kernel {
            let Some((start, end)) = g.in_range(k, lo, hi) else { continue };
            let output_start = (start as isize - g.shift(k)) as usize;
            // SAFETY: the destination block is rows 0..Cin, columns start..end of item b of the contiguous
            // (B, Cin, t_in) buffer `dx`, which lives until the loop ends; it lies inside this task's tile lo..hi,
            // and no two tasks share a (b, tile), so the writes are disjoint. The lhs is W_kᵀ (Cin × Cout, a
            // transposed view of w) and the rhs columns output_start..output_start + (end − start) of dy_b, inside
            // 0..t_out by `in_range`; both views were bounds-checked against their buffers by `View::new`.
            unsafe {
                gemm_add(
                    (c_in, end - start, c_out),
                    (dst.ptr().add(b * c_in * t_in + start), 1, t_in as isize),
                    true,
                    (w.at([0, 0, k]), w.stride(0), w.stride(1)),
                    (dy.at([b, 0, output_start]), dy.stride(2), dy.stride(1)),
                )
            }
        }
    });
    dx
}

/// `dw (Cout, Cin, K)` from `dy (B, Cout, t_out)` and `x (B, Cin, t_in)`, contiguous.
pub(crate) fn weight_grad<T: Element>(dy: View<T>, x: View<T>, g: Geometry) -> Vec<T> {
    let [batch, c_out, _] = dy.dims;
    let c_in = x.dims[1];
    let (kernel, t_out) = (g.kernel, g.t_out);
    let size = c_out * c_in * kernel;
    if size == 0 || batch == 0 || t_out == 0 {
        return vec![T::default(); size];
    }
    let chunks = t_out.div_ceil(GRAD_CHUNK);
    let partial = |task: usize| {
        let (b, chunk) = (task / chunks, task % chunks);
        let (lo, hi) = (chunk * GRAD_CHUNK, ((chunk + 1) * GRAD_CHUNK).min(t_out));
        let mut acc = vec![T::default(); size];
        for k in 0..kernel {
            let Some((start, end)) = g.out_range(k, lo, hi) else { continue };
            let input_start = (start as isize + g.shift(k)) as usize;
            // SAFETY: the destination is the Cout × Cin slice `acc[.., .., k]` (row stride Cin·K, column stride K)
            // of this task's own accumulator, inside its `size` elements. The lhs is dy_b's columns start..end
            // (Cout × len) and the rhs x_bᵀ's rows input_start.. (len × Cin, a transposed view), inside the signal
            // by `out_range`; both views were bounds-checked against their buffers by `View::new`.
            unsafe {
                gemm_add(
                    (c_out, c_in, end - start),
                    (acc[k..].as_mut_ptr(), kernel as isize, (c_in * kernel) as isize),
                    true,
                    (dy.at([b, 0, start]), dy.stride(2), dy.stride(1)),
                    (x.at([b, 0, input_start]), x.stride(1), x.stride(2)),
                )
            }
        }
        acc
    };
    sum_in_order((0..batch * chunks).into_par_iter().map(partial).collect(), size)
}

/// The forward on CPU storages: `x (B, Cin, t_in)`, `w (Cout, Cin, K)`, optional `bias (Cout)` →
/// `(B, Cout, t_out)`, with `t_in` and `K` taken from the layouts.
pub(crate) fn forward_storage(
    x: Arg,
    w: Arg,
    bias: Option<Arg>,
    dilation: usize,
    (pad_left, pad_right): (usize, usize),
) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_in, t_in], &[c_out, w_in, kernel]) = (x.1.dims(), w.1.dims()) else {
        bail!("conv1d: expected x (B, Cin, T) and w (Cout, Cin, K), got {:?} and {:?}", x.1.dims(), w.1.dims())
    };
    if w_in != c_in {
        bail!("conv1d: input has {c_in} channels, the kernel expects {w_in}")
    }
    if let Some((_, l)) = bias
        && l.dims() != [c_out]
    {
        bail!("conv1d: bias of shape {:?} for {c_out} output channels", l.dims())
    }
    let g = Geometry::new(kernel, dilation, pad_left, pad_right, t_in)?;
    let shape = Shape::from((batch, c_out, g.t_out));
    /// `(data, offset, stride)` of a rank-1 bias, bounds-checked.
    fn bias_of<'a, T>(data: &'a [T], l: &Layout) -> Result<(&'a [T], usize, usize)> {
        let (offset, stride) = (l.start_offset(), l.stride()[0]);
        if l.dims()[0] > 0 && offset + (l.dims()[0] - 1) * stride >= data.len() {
            bail!("conv1d: bias layout {l:?} reaches past its buffer")
        }
        Ok((data, offset, stride))
    }
    const MIXED: &str = "conv1d (CPU): input, kernel and bias must all be f32 or all f64";
    let storage = match bias {
        None => same_dtype!(MIXED, |xs, ws| (x.0, w.0) => forward(view(xs, x.1)?, view(ws, w.1)?, None, g)),
        Some((b, bl)) => same_dtype!(MIXED, |xs, ws, bs| (x.0, w.0, b) => {
            forward(view(xs, x.1)?, view(ws, w.1)?, Some(bias_of(bs, bl)?), g)
        }),
    };
    Ok((storage, shape))
}

/// The input gradient on CPU storages: `dy (B, Cout, t_out)`, `w (Cout, Cin, K)` → `dx (B, Cin, t_in)`.
pub(crate) fn input_grad_storage(dy: Arg, w: Arg, g: Geometry) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_out, t_out], &[w_out, c_in, kernel]) = (dy.1.dims(), w.1.dims()) else {
        bail!(
            "conv1d input grad: expected dy (B, Cout, T) and w (Cout, Cin, K), got {:?} and {:?}",
            dy.1.dims(),
            w.1.dims()
        )
    };
    if w_out != c_out || t_out != g.t_out || kernel != g.kernel {
        bail!("conv1d input grad: dy {:?} does not match the kernel {:?} and {g:?}", dy.1.dims(), w.1.dims())
    }
    let shape = Shape::from((batch, c_in, g.t_in));
    let storage = same_dtype!("conv1d input grad (CPU): both tensors must be f32 or both f64", |d, ws| (dy.0, w.0) => {
        input_grad(view(d, dy.1)?, view(ws, w.1)?, g)
    });
    Ok((storage, shape))
}

/// The weight gradient on CPU storages: `dy (B, Cout, t_out)`, `x (B, Cin, t_in)` → `dw (Cout, Cin, K)`.
pub(crate) fn weight_grad_storage(dy: Arg, x: Arg, g: Geometry) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_out, t_out], &[x_batch, c_in, t_in]) = (dy.1.dims(), x.1.dims()) else {
        bail!(
            "conv1d weight grad: expected dy (B, Cout, T) and x (B, Cin, T), got {:?} and {:?}",
            dy.1.dims(),
            x.1.dims()
        )
    };
    if x_batch != batch || t_out != g.t_out || t_in != g.t_in {
        bail!("conv1d weight grad: dy {:?} does not match x {:?} and {g:?}", dy.1.dims(), x.1.dims())
    }
    let shape = Shape::from((c_out, c_in, g.kernel));
    let storage = same_dtype!("conv1d weight grad (CPU): both tensors must be f32 or both f64", |d, xs| (dy.0, x.0) => {
        weight_grad(view(d, dy.1)?, view(xs, x.1)?, g)
    });
    Ok((storage, shape))
}
