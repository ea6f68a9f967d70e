//! The spatial geometry of a 2-D convolution and its im2col layout: which input pixel each (row `(c, kh, kw)`,
//! column `(oh, ow)`) of an item's `Cin·KH·KW × OH·OW` matrix reads, [`im2col`] to fill columns of that matrix
//! and [`col2im`], its adjoint, to scatter-add them back.

use candle_core::{Result, bail};

use crate::cpu_kernel::{Element, View};

/// Spatial geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: usize,
    padding: usize,
    dilation: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geometry {
    /// Geometry of a `kh × kw` kernel over an `h × w` input padded with `padding` zeros on every side.
    pub(crate) fn new(
        (kh, kw): (usize, usize),
        (h, w): (usize, usize),
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Self> {
        if kh == 0 || kw == 0 || stride == 0 || dilation == 0 {
            bail!("conv2d: kernel ({kh}×{kw}), stride ({stride}) and dilation ({dilation}) must be at least 1")
        }
        let out = |len: usize, k: usize| {
            let span = (k - 1) * dilation + 1;
            let padded = len + 2 * padding;
            (padded >= span).then(|| (padded - span) / stride + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh), out(w, kw)) else {
            bail!(
                "conv2d: a {h}×{w} input with padding {padding} is smaller than the {kh}×{kw} kernel's span at \
                 dilation {dilation}"
            )
        };
        Ok(Self { kh, kw, stride, padding, dilation, h, w, oh, ow })
    }

    /// `(oh, ow)`.
    pub(crate) fn output(&self) -> (usize, usize) {
        (self.oh, self.ow)
    }

    pub(super) fn taps(&self) -> usize {
        self.kh * self.kw
    }

    pub(super) fn columns(&self) -> usize {
        self.oh * self.ow
    }

    /// Input index minus `stride ×` output index for kernel position `k`.
    fn offset(&self, k: usize) -> isize {
        (k * self.dilation) as isize - self.padding as isize
    }

    /// The kernel positions `(kh, kw)` in row-major order, the order of an im2col matrix's rows for one channel.
    fn taps_in_order(&self) -> impl Iterator<Item = Tap> + '_ {
        (0..self.kh).flat_map(move |kh| {
            let oh_off = self.offset(kh);
            let oh = self.valid(self.oh, self.h, oh_off);
            (0..self.kw).map(move |kw| {
                let ow_off = self.offset(kw);
                Tap { oh_off, oh, ow_off, ow: self.valid(self.ow, self.w, ow_off) }
            })
        })
    }

    /// Output indices `o` in `0..out_len` whose input `o·stride + offset` lies in `0..in_len` (a range, maybe empty).
    fn valid(&self, out_len: usize, in_len: usize, offset: isize) -> (usize, usize) {
        let s = self.stride as isize;
        let lo = if offset < 0 { (-offset + s - 1) / s } else { 0 };
        let last = in_len as isize - 1 - offset; // o·s ≤ last
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let (lo, hi) = (lo.min(out_len as isize) as usize, hi.min(out_len as isize) as usize);
        (lo, hi.max(lo))
    }
}

/// One kernel position: the [`Geometry::offset`]s of its input row and column, and the [`Geometry::valid`] ranges
/// of output rows and columns whose input lies inside the image.
struct Tap {
    oh_off: isize,
    oh: (usize, usize),
    ow_off: isize,
    ow: (usize, usize),
}

/// Writes columns `n0..n0 + len` of item `b`'s im2col matrix into `col` (`K × len`, row-major): every element,
/// zeros where the window lies in the padding.
pub(super) fn im2col<T: Element>(x: &View<T, 4>, b: usize, g: &Geometry, n0: usize, col: &mut [T]) {
    let len = col.len() / (x.dims[1] * g.taps()).max(1);
    let (s, ow_count) = (g.stride, g.ow);
    let step = s * x.strides[3];
    let mut rows = col.chunks_exact_mut(len.max(1));
    for c in 0..x.dims[1] {
        for Tap { oh_off, oh: (oh_lo, oh_hi), ow_off, ow: (ow_lo, ow_hi) } in g.taps_in_order() {
            let Some(row) = rows.next() else { return };
            let mut n = n0;
            let mut rest = &mut row[..];
            while !rest.is_empty() {
                let (oh, ow_start) = (n / ow_count, n % ow_count);
                let ow_end = ow_count.min(ow_start + rest.len());
                let (seg, tail) = std::mem::take(&mut rest).split_at_mut(ow_end - ow_start);
                rest = tail;
                n += ow_end - ow_start;
                if oh < oh_lo || oh >= oh_hi {
                    seg.fill(T::default());
                    continue;
                }
                let a = ow_start.max(ow_lo).min(ow_end);
                let e = ow_end.min(ow_hi).max(a);
                seg[..a - ow_start].fill(T::default());
                seg[e - ow_start..].fill(T::default());
                let dst = &mut seg[a - ow_start..e - ow_start];
                if dst.is_empty() {
                    continue;
                }
                let ih = ((oh * s) as isize + oh_off) as usize;
                let iw = ((a * s) as isize + ow_off) as usize;
                let start = x.index([b, c, ih, iw]);
                if step == 0 {
                    dst.fill(x.data[start]);
                } else {
                    dst.iter_mut().zip(x.data[start..].iter().step_by(step)).for_each(|(d, v)| *d = *v);
                }
            }
        }
    }
}

/// Adds `dcol` (`channels·KH·KW × len`, row-major: columns `n0..n0 + len` of the im2col layout) into `planes`
/// (`channels × H × W`): the adjoint of [`im2col`] on those columns.
pub(super) fn col2im<T: Element>(dcol: &[T], g: &Geometry, n0: usize, planes: &mut [T]) {
    let (hw, s) = (g.h * g.w, g.stride);
    let len = dcol.len() / (planes.len() / hw.max(1) * g.taps()).max(1);
    if hw == 0 || len == 0 {
        return;
    }
    for (plane, rows) in planes.chunks_exact_mut(hw).zip(dcol.chunks_exact(g.taps() * len)) {
        let mut rows = rows.chunks_exact(len);
        for Tap { oh_off, oh: (oh_lo, oh_hi), ow_off, ow: (ow_lo, ow_hi) } in g.taps_in_order() {
            let Some(row) = rows.next() else { return };
            // Segments of one output row each, as in `im2col`.
            let mut n = n0;
            while n < n0 + len {
                let (oh, ow_start) = (n / g.ow, n % g.ow);
                let ow_end = g.ow.min(ow_start + (n0 + len - n));
                let seg = &row[n - n0..n - n0 + (ow_end - ow_start)];
                n += ow_end - ow_start;
                let a = ow_start.max(ow_lo);
                let e = ow_end.min(ow_hi);
                if oh < oh_lo || oh >= oh_hi || e <= a {
                    continue;
                }
                let ih = ((oh * s) as isize + oh_off) as usize;
                let iw = ((a * s) as isize + ow_off) as usize;
                let dst = plane[ih * g.w + iw..(ih + 1) * g.w].iter_mut().step_by(s);
                dst.zip(&seg[a - ow_start..e - ow_start]).for_each(|(d, v)| *d = *d + *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `valid` against a brute-force scan, for offsets on both sides of the input and strides 1..4.
    #[test]
    fn valid_output_ranges_match_a_scan() {
        for stride in 1..4 {
            let g = Geometry::new((3, 3), (9, 9), stride, 2, 2).unwrap();
            for in_len in [1, 5, 9] {
                for offset in -7..10 {
                    for out_len in [0, 1, 4, 12] {
                        let inside: Vec<usize> = (0..out_len)
                            .filter(|&o| (0..in_len as isize).contains(&((o * stride) as isize + offset)))
                            .collect();
                        let (lo, hi) = g.valid(out_len, in_len, offset);
                        let ours: Vec<usize> = (lo..hi).collect();
                        assert_eq!(ours, inside, "stride {stride} in {in_len} offset {offset} out {out_len}");
                    }
                }
            }
        }
    }
}
