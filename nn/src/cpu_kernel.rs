//! What the CPU convolution kernels (`conv1d_cpu`, `conv2d_cpu`) share: their element types, bounds-checked
//! strided views of candle's buffers, a pointer that rayon tasks may share to write disjoint blocks, and the
//! in-order sum of per-task partial results that keeps weight gradients reproducible.

use candle_core::{Layout, Result, bail};
use gemm::{Parallelism, gemm};

/// The element types the kernels run on.
pub(crate) trait Element: Copy + Send + Sync + Default + std::ops::Add<Output = Self> + 'static {
    const ONE: Self;
}

impl Element for f32 {
    const ONE: Self = 1.0;
}

impl Element for f64 {
    const ONE: Self = 1.0;
}

/// An `N`-D strided view into a CPU buffer, bounds-checked against it on creation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a, T, const N: usize> {
    pub(crate) data: &'a [T],
    pub(crate) offset: usize,
    pub(crate) dims: [usize; N],
    pub(crate) strides: [usize; N],
}

impl<'a, T, const N: usize> View<'a, T, N> {
    /// Views `data` through a rank-`N` `layout`; errors (naming the kernel `op`) when the layout has another rank
    /// or does not fit inside `data`.
    pub(crate) fn new(data: &'a [T], layout: &Layout, op: &str) -> Result<Self> {
        let (Ok(dims), Ok(strides)) = (<[usize; N]>::try_from(layout.dims()), <[usize; N]>::try_from(layout.stride()))
        else {
            bail!("{op}: expected a rank-{N} tensor, got shape {:?}", layout.dims())
        };
        let offset = layout.start_offset();
        if dims.iter().all(|&d| d > 0) {
            let last = offset + dims.iter().zip(&strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
            if last >= data.len() {
                bail!("{op}: layout {layout:?} reaches past its {}-element buffer", data.len())
            }
        }
        Ok(Self { data, offset, dims, strides })
    }

    /// Index into `data` of the element at `at`, which must lie inside the view.
    pub(crate) fn index(&self, at: [usize; N]) -> usize {
        debug_assert!(at.iter().zip(&self.dims).all(|(i, d)| i < d));
        self.offset + at.iter().zip(&self.strides).map(|(i, s)| i * s).sum::<usize>()
    }

    /// Pointer to the element at `at`, which must lie inside the view (hence inside `data`).
    pub(crate) fn at(&self, at: [usize; N]) -> *const T {
        self.data[self.index(at)..].as_ptr()
    }

    /// The stride of `axis`, as gemm takes it.
    pub(crate) fn stride(&self, axis: usize) -> isize {
        self.strides[axis] as isize
    }
}

/// `dst = dst + lhs · rhs` (`dst` read as zeros when `read_dst` is false) for `(m, n, k)`: `dst` m × n, `lhs`
/// m × k, `rhs` k × n, each given as `(pointer to element (0, 0), column stride, row stride)` in elements. One
/// single-threaded gemm call: the kernels' tasks are the parallelism.
///
/// # Safety
/// Every element the three operands address must lie inside a live allocation, and nothing else may access
/// `dst`'s elements during the call.
pub(crate) unsafe fn gemm_add<T: Element>(
    (m, n, k): (usize, usize, usize),
    (dst, dst_col, dst_row): (*mut T, isize, isize),
    read_dst: bool,
    (lhs, lhs_col, lhs_row): (*const T, isize, isize),
    (rhs, rhs_col, rhs_row): (*const T, isize, isize),
) {
    // SAFETY: the caller's contract is gemm's: the operands' elements are in bounds and `dst` is exclusive.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            dst_col,
            dst_row,
            read_dst,
            lhs,
            lhs_col,
            lhs_row,
            rhs,
            rhs_col,
            rhs_row,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// A raw pointer that rayon tasks may share; each task writes only its own disjoint region through it.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so that closures capture the whole `Send + Sync` wrapper, not its raw field).
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer targets a buffer that outlives the parallel loop, and the tasks that receive it write
// disjoint regions (documented at each use), so sending it to other threads cannot create a data race.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above: shared only to address disjoint regions.
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// The element-wise sum of per-task partial sums (each `size` long), added in task order, not in rayon's
/// (scheduling-dependent) reduction order: a weight gradient is then bit-for-bit the same for any thread count
/// and any run, so training stays reproducible.
pub(crate) fn sum_in_order<T: Element>(partials: Vec<Vec<T>>, size: usize) -> Vec<T> {
    let mut partials = partials.into_iter();
    let mut total = partials.next().unwrap_or_else(|| vec![T::default(); size]);
    for p in partials {
        total.iter_mut().zip(p).for_each(|(a, b)| *a = *a + b);
    }
    total
}
