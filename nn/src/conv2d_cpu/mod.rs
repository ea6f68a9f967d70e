//! CPU kernels of [`crate::conv::Conv2d`] (groups 1, any stride, padding and dilation): im2col into a reused
//! per-thread buffer, then one `gemm` per task.
//!
//! With `K = Cin·KH·KW` rows `(c, kh, kw)` and `N = OH·OW` columns `(oh, ow)`, `col_b (K × N)` holds the input
//! values each output position reads (zero where the window lies in the padding), and for each batch item b:
//! - forward:      `y_b (Cout × N) = bias + W (Cout × K) · col_b`
//! - input grad:   `dx_b = col2im(Wᵀ · dy_b)` (the adjoint of im2col: scatter-add each column back to its pixel)
//! - weight grad:  `dW (Cout × K) = Σ_b dy_b · col_bᵀ`
//! - bias grad:    `db = Σ_b Σ_n dy_b[:, n]`
//!
//! Tasks (rayon): the forward and the weight gradient split each item's N columns into tiles; the input gradient
//! splits each item's input channels into groups (a channel's pixels receive only from its own rows of Wᵀ · dy_b,
//! so groups never write to the same memory), each walking its columns in tiles. Tile and group sizes depend on
//! the shapes only, never on the thread count, and the weight gradient's per-task partial sums are added in task
//! order: results are bit-for-bit the same for any number of threads. gemm runs single-threaded inside each task;
//! the im2col / col2im buffer of a task lives in a thread-local vector that is reused from call to call (no
//! allocation in the loops once it has grown; at most about [`BUFFER`] elements per thread and dtype).

use std::cell::RefCell;
use std::thread::LocalKey;

use candle_core::{CpuStorage, Layout, Result, Shape, bail};
use rayon::prelude::*;

use crate::cpu_kernel::{self, Element as Scalar, SharedMut, gemm_add, sum_in_order};
use crate::custom_op::{Arg, same_dtype};

mod im2col;

pub(crate) use im2col::Geometry;
use im2col::{col2im, im2col};

/// Elements of a task's im2col / col2im buffer: big enough for gemm to run at full speed, small enough (256 KiB
/// in f32) to stay in L2 between the copy and the product.
const BUFFER: usize = 64 * 1024;

/// Tasks wanted per call (when the shapes allow): items × tiles, so that a batch of 1 or 2 still uses every core.
const MIN_TASKS: usize = 8;

/// Fewest output columns per forward / weight-gradient tile.
const MIN_TILE: usize = 256;

/// The element types the kernels run on, each with its thread-local scratch buffer.
pub(crate) trait Element: Scalar {
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>>;
}

thread_local! {
    static SCRATCH_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl Element for f32 {
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>> {
        &SCRATCH_F32
    }
}

impl Element for f64 {
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>> {
        &SCRATCH_F64
    }
}

/// Runs `f` on `len` elements of this thread's scratch buffer (stale values: `f` must write before it reads).
/// Falls back to a fresh vector if the buffer is in use (it never is: tasks do not nest).
fn with_scratch<T: Element, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    T::scratch().with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, T::default());
            }
            f(&mut buffer[..len])
        }
        Err(_) => f(&mut vec![T::default(); len]),
    })
}

/// A 4-D view of a CPU buffer.
type View<'a, T> = cpu_kernel::View<'a, T, 4>;

/// Views `data` through a rank-4 `layout`, bounds-checked (see [`cpu_kernel::View::new`]).
fn view<'a, T>(data: &'a [T], layout: &Layout) -> Result<View<'a, T>> {
    View::new(data, layout, "conv2d")
}

impl<T: Copy> View<'_, T> {
    /// Stride between consecutive positions of the flattened last two axes; `None` when they do not flatten.
    fn flat_stride(&self) -> Option<usize> {
        let [_, _, rows, cols] = self.dims;
        (rows <= 1 || self.strides[2] == cols * self.strides[3]).then_some(self.strides[3])
    }

    /// The elements, contiguous in row-major order.
    fn to_contiguous(self) -> Vec<T> {
        let [d0, d1, d2, d3] = self.dims;
        let mut out = Vec::with_capacity(d0 * d1 * d2 * d3);
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    out.extend((0..d3).map(|l| self.data[self.index([i, j, k, l])]));
                }
            }
        }
        out
    }
}

impl Geometry {
    /// Output columns per tile of the forward and weight gradient: the im2col tile fits [`BUFFER`], and items ×
    /// tiles reaches [`MIN_TASKS`] when columns allow; tiles of one item are of near-equal size.
    fn tile(&self, batch: usize, rows: usize) -> usize {
        let n = self.columns().max(1);
        let for_buffer = (rows * n).div_ceil(BUFFER);
        let for_tasks = MIN_TASKS.div_ceil(batch.max(1)).min(n.div_ceil(MIN_TILE));
        let tiles = for_buffer.max(for_tasks).clamp(1, n);
        n.div_ceil(tiles)
    }
}

/// `y (B, Cout, OH, OW) = bias + conv(x (B, Cin, H, W), w)`, contiguous; `w` is `(Cout, Cin·KH·KW)` row-major.
fn forward<T: Element>(x: View<T>, w: &[T], c_out: usize, bias: Option<&[T]>, g: Geometry) -> Vec<T> {
    let [batch, c_in, _, _] = x.dims;
    let (k, n) = (c_in * g.taps(), g.columns());
    let mut y = vec![T::default(); batch * c_out * n];
    if y.is_empty() {
        return y;
    }
    if k == 0 {
        if let Some(bias) = bias {
            y.chunks_exact_mut(n).enumerate().for_each(|(i, row)| row.fill(bias[i % c_out]));
        }
        return y;
    }
    let tile = g.tile(batch, k);
    let tiles = n.div_ceil(tile);
    let dst = SharedMut(y.as_mut_ptr());
    (0..batch * tiles).into_par_iter().for_each(|task| {
        let (b, t) = (task / tiles, task % tiles);
        let (n0, n1) = (t * tile, ((t + 1) * tile).min(n));
        let len = n1 - n0;
        // This task's block of the output: rows 0..Cout, columns n0..n1 of item b of the contiguous (B, Cout, N)
        // buffer `y`, which lives until the loop ends. No two tasks share a (b, tile), so the blocks are disjoint,
        // and nothing else touches `y` meanwhile.
        let out = dst.ptr().wrapping_add(b * c_out * n + n0);
        if let Some(bias) = bias {
            for (o, &v) in bias.iter().enumerate() {
                // SAFETY: row o, columns n0..n1 of this task's block (inside `y`, written by no other task).
                unsafe { std::slice::from_raw_parts_mut(out.wrapping_add(o * n), len) }.fill(v);
            }
        }
        with_scratch(k * len, |col: &mut [T]| {
            im2col(&x, b, &g, n0, col);
            // SAFETY: the destination is this task's block (Cout × len, row stride N); the lhs is the contiguous
            // Cout × K kernel `w` and the rhs this task's K × len im2col buffer, both fully inside their slices.
            unsafe {
                gemm_add(
                    (c_out, len, k),
                    (out, 1, n as isize),
                    bias.is_some(),
                    (w.as_ptr(), 1, k as isize),
                    (col.as_ptr(), 1, len as isize),
                )
            }
        });
    });
    y
}

/// `dx (B, Cin, H, W)` from `dy (B, Cout, OH, OW)` and `w` (`Cout × Cin·KH·KW` row-major), contiguous.
fn input_grad<T: Element>(dy: View<T>, dy_col: usize, w: &[T], c_in: usize, g: Geometry) -> Vec<T> {
    let [batch, c_out, _, _] = dy.dims;
    let (taps, n, hw) = (g.taps(), g.columns(), g.h * g.w);
    let k = c_in * taps;
    let mut dx = vec![T::default(); batch * c_in * hw];
    if dx.is_empty() || c_out == 0 || n == 0 {
        return dx;
    }
    // Channels per task: items × groups reaches MIN_TASKS if it can (a channel's pixels receive only from its own
    // rows of Wᵀ·dy, so groups write disjoint planes). Each task then walks its columns in tiles whose Wᵀ·dy rows
    // fit the buffer.
    let groups = MIN_TASKS.div_ceil(batch).clamp(1, c_in);
    let per_group = c_in.div_ceil(groups);
    let tasks: Vec<(usize, usize, &mut [T])> = dx
        .chunks_exact_mut(c_in * hw)
        .enumerate()
        .flat_map(|(b, item)| item.chunks_mut(per_group * hw).enumerate().map(move |(i, p)| (b, i * per_group, p)))
        .collect();
    tasks.into_par_iter().for_each(|(b, c0, planes)| {
        let rows = planes.len() / hw * taps;
        let tile = n.div_ceil((rows * n).div_ceil(BUFFER).clamp(1, n));
        with_scratch(rows * tile, |buffer: &mut [T]| {
            for n0 in (0..n).step_by(tile) {
                let len = tile.min(n - n0);
                let dcol = &mut buffer[..rows * len];
                // SAFETY: the destination is this task's own rows × len buffer; the lhs is rows c0·taps.. of Wᵀ (a
                // transposed view of the contiguous Cout × K kernel: element (r, o) at o·K + c0·taps + r, inside
                // `w`), and the rhs columns n0..n0 + len of dy_b (Cout × N, column stride `dy_col`: the flattened
                // spatial stride), bounds-checked against its buffer by `View::new`.
                unsafe {
                    gemm_add(
                        (rows, len, c_out),
                        (dcol.as_mut_ptr(), 1, len as isize),
                        false,
                        (w[c0 * taps..].as_ptr(), k as isize, 1),
                        (dy.at([b, 0, 0, 0]).add(n0 * dy_col), dy_col as isize, dy.strides[1] as isize),
                    )
                }
                col2im(dcol, &g, n0, planes);
            }
        });
    });
    dx
}

/// `dw (Cout, Cin·KH·KW)` from `dy (B, Cout, OH, OW)` and `x (B, Cin, H, W)`, contiguous.
fn weight_grad<T: Element>(dy: View<T>, dy_col: usize, x: View<T>, g: Geometry) -> Vec<T> {
    let [batch, c_out, _, _] = dy.dims;
    let (k, n) = (x.dims[1] * g.taps(), g.columns());
    let size = c_out * k;
    if size == 0 || batch == 0 || n == 0 {
        return vec![T::default(); size];
    }
    let tile = g.tile(batch, k);
    let tiles = n.div_ceil(tile);
    let partial = |task: usize| {
        let (b, t) = (task / tiles, task % tiles);
        let (n0, n1) = (t * tile, ((t + 1) * tile).min(n));
        let len = n1 - n0;
        let mut acc = vec![T::default(); size];
        with_scratch(k * len, |col: &mut [T]| {
            im2col(&x, b, &g, n0, col);
            // SAFETY: the destination is this task's own Cout × K accumulator; the lhs is dy_b's columns n0..n1
            // (Cout × len, column stride `dy_col`), bounds-checked by `View::new`, and the rhs colᵀ (len × K, a
            // transposed view of this task's K × len buffer).
            unsafe {
                gemm_add(
                    (c_out, k, len),
                    (acc.as_mut_ptr(), 1, k as isize),
                    false,
                    (dy.at([b, 0, 0, 0]).add(n0 * dy_col), dy_col as isize, dy.strides[1] as isize),
                    (col.as_ptr(), len as isize, 1),
                )
            }
        });
        acc
    };
    sum_in_order((0..batch * tiles).into_par_iter().map(partial).collect(), size)
}

/// `db (Cout) = Σ_b Σ_n dy[b, o, n]`, items added in order (each item's row summed in 8 fixed lanes).
fn bias_grad<T: Element>(dy: View<T>, dy_col: usize) -> Vec<T> {
    let [batch, c_out, oh, ow] = dy.dims;
    let n = oh * ow;
    let mut db = vec![T::default(); c_out];
    if n == 0 {
        return db;
    }
    for b in 0..batch {
        for (o, total) in db.iter_mut().enumerate() {
            let start = dy.index([b, o, 0, 0]);
            let mut lanes = [T::default(); 8];
            if dy_col == 1 {
                let row = &dy.data[start..start + n];
                let mut chunks = row.chunks_exact(8);
                for chunk in &mut chunks {
                    lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l = *l + *v);
                }
                lanes.iter_mut().zip(chunks.remainder()).for_each(|(l, v)| *l = *l + *v);
            } else {
                (0..n).for_each(|i| lanes[i % 8] = lanes[i % 8] + dy.data[start + i * dy_col]);
            }
            *total = *total + lanes.iter().fold(T::default(), |a, &l| a + l);
        }
    }
    db
}

/// The kernel `(Cout, Cin, KH, KW)` as a contiguous `Cout × Cin·KH·KW` matrix (a copy only when strided).
fn kernel_matrix<T: Element>(w: View<'_, T>) -> std::borrow::Cow<'_, [T]> {
    let len: usize = w.dims.iter().product();
    let [_, s1, s2, s3] = w.strides;
    let [_, d1, d2, d3] = w.dims;
    let contiguous = (d3 <= 1 || s3 == 1)
        && (d2 <= 1 || s2 == d3)
        && (d1 <= 1 || s1 == d2 * d3)
        && (w.dims[0] <= 1 || w.strides[0] == d1 * d2 * d3);
    if contiguous && len > 0 {
        std::borrow::Cow::Borrowed(&w.data[w.offset..w.offset + len])
    } else {
        std::borrow::Cow::Owned(w.to_contiguous())
    }
}

/// The dy view's flattened spatial stride; errors when its last two axes do not flatten (the caller passes a
/// contiguous copy then).
fn dy_column_stride<T: Copy>(dy: &View<T>) -> Result<usize> {
    match dy.flat_stride() {
        Some(s) => Ok(s),
        None => bail!("conv2d backward: the output gradient's spatial axes must flatten (strides {:?})", dy.strides),
    }
}

/// The forward on CPU storages: `x (B, Cin, H, W)`, `w (Cout, Cin, KH, KW)`, optional `bias (Cout)` →
/// `(B, Cout, OH, OW)`.
pub(crate) fn forward_storage(
    x: Arg,
    w: Arg,
    bias: Option<Arg>,
    (stride, padding, dilation): (usize, usize, usize),
) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_in, h, width], &[c_out, w_in, kh, kw]) = (x.1.dims(), w.1.dims()) else {
        bail!("conv2d: expected x (B, Cin, H, W) and w (Cout, Cin, KH, KW), got {:?} and {:?}", x.1.dims(), w.1.dims())
    };
    if w_in != c_in {
        bail!("conv2d: input has {c_in} channels, the kernel expects {w_in}")
    }
    if let Some((_, l)) = bias
        && l.dims() != [c_out]
    {
        bail!("conv2d: bias of shape {:?} for {c_out} output channels", l.dims())
    }
    let g = Geometry::new((kh, kw), (h, width), stride, padding, dilation)?;
    let shape = Shape::from((batch, c_out, g.oh, g.ow));
    /// The rank-1 bias as a contiguous vector, bounds-checked.
    fn bias_of<T: Copy>(data: &[T], l: &Layout) -> Result<Vec<T>> {
        let (offset, stride, len) = (l.start_offset(), l.stride()[0], l.dims()[0]);
        if len > 0 && offset + (len - 1) * stride >= data.len() {
            bail!("conv2d: bias layout {l:?} reaches past its buffer")
        }
        Ok((0..len).map(|i| data[offset + i * stride]).collect())
    }
    const MIXED: &str = "conv2d (CPU): input, kernel and bias must all be f32 or all f64";
    let storage = match bias {
        None => same_dtype!(MIXED, |xs, ws| (x.0, w.0) => {
            let ws = view(ws, w.1)?;
            forward(view(xs, x.1)?, &kernel_matrix(ws), c_out, None, g)
        }),
        Some((b, bl)) => same_dtype!(MIXED, |xs, ws, bs| (x.0, w.0, b) => {
            let ws = view(ws, w.1)?;
            let b = bias_of(bs, bl)?;
            forward(view(xs, x.1)?, &kernel_matrix(ws), c_out, Some(&b), g)
        }),
    };
    Ok((storage, shape))
}

/// The input gradient on CPU storages: `dy (B, Cout, OH, OW)`, `w (Cout, Cin, KH, KW)` → `dx (B, Cin, H, W)`.
pub(crate) fn input_grad_storage(dy: Arg, w: Arg, g: Geometry) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_out, oh, ow], &[w_out, c_in, kh, kw]) = (dy.1.dims(), w.1.dims()) else {
        bail!("conv2d input grad: expected rank-4 dy and w, got {:?} and {:?}", dy.1.dims(), w.1.dims())
    };
    if w_out != c_out || (oh, ow) != g.output() || (kh, kw) != (g.kh, g.kw) {
        bail!("conv2d input grad: dy {:?} does not match the kernel {:?} and {g:?}", dy.1.dims(), w.1.dims())
    }
    let shape = Shape::from((batch, c_in, g.h, g.w));
    let storage = same_dtype!("conv2d input grad (CPU): both tensors must be f32 or both f64", |d, ws| (dy.0, w.0) => {
        let d = view(d, dy.1)?;
        input_grad(d, dy_column_stride(&d)?, &kernel_matrix(view(ws, w.1)?), c_in, g)
    });
    Ok((storage, shape))
}

/// The weight gradient on CPU storages: `dy (B, Cout, OH, OW)`, `x (B, Cin, H, W)` → `dw (Cout, Cin, KH, KW)`.
pub(crate) fn weight_grad_storage(dy: Arg, x: Arg, g: Geometry) -> Result<(CpuStorage, Shape)> {
    let (&[batch, c_out, oh, ow], &[x_batch, c_in, h, w]) = (dy.1.dims(), x.1.dims()) else {
        bail!("conv2d weight grad: expected rank-4 dy and x, got {:?} and {:?}", dy.1.dims(), x.1.dims())
    };
    if x_batch != batch || (oh, ow) != g.output() || (h, w) != (g.h, g.w) {
        bail!("conv2d weight grad: dy {:?} does not match x {:?} and {g:?}", dy.1.dims(), x.1.dims())
    }
    let shape = Shape::from((c_out, c_in, g.kh, g.kw));
    let storage = same_dtype!("conv2d weight grad (CPU): both tensors must be f32 or both f64", |d, xs| (dy.0, x.0) => {
        let d = view(d, dy.1)?;
        weight_grad(d, dy_column_stride(&d)?, view(xs, x.1)?, g)
    });
    Ok((storage, shape))
}

/// The bias gradient on CPU storages: `dy (B, Cout, OH, OW)` → `db (Cout)`.
pub(crate) fn bias_grad_storage(dy: Arg) -> Result<(CpuStorage, Shape)> {
    let &[_, c_out, _, _] = dy.1.dims() else { bail!("conv2d bias grad: expected a rank-4 dy, got {:?}", dy.1.dims()) };
    let storage = same_dtype!("conv2d bias grad (CPU): dy must be f32 or f64", |d| (dy.0) => {
        let d = view(d, dy.1)?;
        bias_grad(d, dy_column_stride(&d)?)
    });
    Ok((storage, Shape::from(c_out)))
}
