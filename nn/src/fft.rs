//! The STFT by real FFTs on CPU, as one candle op with its own backward.
//!
//! [`RealStft`] takes a zero-padded signal `(B, T')` and returns `(B, frames, 2F)`: for each frame of `n_fft`
//! samples at a multiple of the hop, Hann-windowed, its real FFT's real parts (`0..F`) then imaginary parts
//! (`F..2F`), F = n_fft/2 + 1: the same numbers as the windowed DFT basis of [`crate::stft::Stft`], in
//! `O(n_fft log n_fft)` per frame instead of `O(n_fft²)`, threaded over batch × frames.
//!
//! Its backward is the adjoint, by an inverse real FFT: with `X_k = Σ_n x_n e^{-2πikn/N}`,
//! `∂L/∂x_n = Σ_k (g_re,k cos θ − g_im,k sin θ)`, θ = 2πkn/N, which is the unnormalised complex-to-real FFT of
//! `Z` with `Z_0 = g_re,0`, `Z_{N/2} = g_re,N/2` (even N) and `Z_k = g_k / 2` otherwise (the transform counts every
//! other bin twice, through its conjugate). Each frame's result is windowed and overlap-added into `∂L/∂x`.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, FftNum, RealFftPlanner, RealToComplex};

use crate::spectral::hann;

/// The forward and inverse real FFTs of one size and the Hann window, in one precision.
struct Plans<T: FftNum> {
    forward: Arc<dyn RealToComplex<T>>,
    inverse: Arc<dyn ComplexToReal<T>>,
    window: Vec<T>,
}

impl<T: FftNum> Plans<T> {
    fn new(n_fft: usize, cast: fn(f64) -> T) -> Plans<T> {
        let mut planner = RealFftPlanner::<T>::new();
        let window = (0..n_fft).map(|n| cast(hann(n, n_fft))).collect();
        Plans { forward: planner.plan_fft_forward(n_fft), inverse: planner.plan_fft_inverse(n_fft), window }
    }
}

/// The framed, windowed real FFT of a padded signal `(B, T')` → `(B, frames, 2F)` (see the module docs).
#[derive(Clone)]
pub(crate) struct RealStft {
    n_fft: usize,
    hop: usize,
    f32: Arc<Plans<f32>>,
    f64: Arc<Plans<f64>>,
}

impl std::fmt::Debug for RealStft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealStft {{ n_fft: {}, hop: {} }}", self.n_fft, self.hop)
    }
}

impl RealStft {
    pub(crate) fn new(n_fft: usize, hop: usize) -> RealStft {
        RealStft { n_fft, hop, f32: Arc::new(Plans::new(n_fft, |v| v as f32)), f64: Arc::new(Plans::new(n_fft, |v| v)) }
    }

    fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames of a padded signal of `len` samples.
    fn frames(&self, len: usize) -> Result<usize> {
        if len < self.n_fft {
            bail!("stft: {len} padded samples are fewer than one frame of {}", self.n_fft)
        }
        Ok(1 + (len - self.n_fft) / self.hop)
    }

    fn forward<T: FftNum>(&self, plans: &Plans<T>, x: &[T], batch: usize, len: usize) -> Result<Vec<T>> {
        let (frames, bins, n_fft, hop) = (self.frames(len)?, self.bins(), self.n_fft, self.hop);
        let mut out = vec![T::zero(); batch * frames * 2 * bins];
        let fft = &plans.forward;
        out.par_chunks_mut(2 * bins).enumerate().try_for_each_init(
            || (fft.make_input_vec(), fft.make_output_vec(), fft.make_scratch_vec()),
            |(frame, spectrum, scratch), (i, row)| {
                let start = (i / frames) * len + (i % frames) * hop;
                for ((f, &s), &w) in frame.iter_mut().zip(&x[start..start + n_fft]).zip(&plans.window) {
                    *f = s * w;
                }
                fft.process_with_scratch(frame, spectrum, scratch).map_err(candle_core::Error::wrap)?;
                let (re, im) = row.split_at_mut(bins);
                for ((r, i), c) in re.iter_mut().zip(im.iter_mut()).zip(spectrum.iter()) {
                    (*r, *i) = (c.re, c.im);
                }
                Ok::<(), candle_core::Error>(())
            },
        )?;
        Ok(out)
    }

    /// `∂L/∂x` `(B, len)` from `∂L/∂spectrum` `(B, frames, 2F)`, threaded over the batch (frames overlap).
    fn adjoint<T: FftNum>(&self, plans: &Plans<T>, grad: &[T], batch: usize, len: usize) -> Result<Vec<T>> {
        let (frames, bins, n_fft, hop) = (self.frames(len)?, self.bins(), self.n_fft, self.hop);
        let half = T::from_f64(0.5).expect("0.5 is representable");
        // With even N the last bin (Nyquist) is its own conjugate, like bin 0; with odd N there is none.
        let own_conjugate = |k: usize| k == 0 || (n_fft % 2 == 0 && k == n_fft / 2);
        let ifft = &plans.inverse;
        let mut dx = vec![T::zero(); batch * len];
        dx.par_chunks_mut(len).enumerate().try_for_each_init(
            || (ifft.make_input_vec(), ifft.make_output_vec(), ifft.make_scratch_vec()),
            |(spectrum, frame, scratch), (b, dx_row)| {
                for f in 0..frames {
                    let g = &grad[(b * frames + f) * 2 * bins..][..2 * bins];
                    for (k, z) in spectrum.iter_mut().enumerate() {
                        *z = if own_conjugate(k) {
                            Complex::new(g[k], T::zero())
                        } else {
                            Complex::new(g[k] * half, g[bins + k] * half)
                        };
                    }
                    ifft.process_with_scratch(spectrum, frame, scratch).map_err(candle_core::Error::wrap)?;
                    let out = &mut dx_row[f * hop..f * hop + n_fft];
                    for ((o, &v), &w) in out.iter_mut().zip(frame.iter()).zip(&plans.window) {
                        *o = *o + v * w;
                    }
                }
                Ok::<(), candle_core::Error>(())
            },
        )?;
        Ok(dx)
    }
}

/// The contiguous slice of a CPU tensor's storage.
fn contiguous<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("stft: the {what} must be contiguous (layout {layout:?})"),
    }
}

impl CustomOp1 for RealStft {
    fn name(&self) -> &'static str {
        "afx-real-stft"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, len) = layout.shape().dims2()?;
        let shape = Shape::from((batch, self.frames(len)?, 2 * self.bins()));
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(self.forward(&self.f32, contiguous(v, layout, "signal")?, batch, len)?)
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(self.forward(&self.f64, contiguous(v, layout, "signal")?, batch, len)?)
            }
            _ => bail!("stft: the FFT path takes f32 or f64"),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, len) = arg.dims2()?;
        let adjoint = RealStftAdjoint { stft: self.clone(), len };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&adjoint)?))
    }
}

/// The backward of [`RealStft`] for a signal of `len` padded samples, as an op on the spectrum's gradient.
struct RealStftAdjoint {
    stft: RealStft,
    len: usize,
}

impl CustomOp1 for RealStftAdjoint {
    fn name(&self) -> &'static str {
        "afx-real-stft-adjoint"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, frames, width) = layout.shape().dims3()?;
        let stft = &self.stft;
        if (frames, width) != (stft.frames(self.len)?, 2 * stft.bins()) {
            bail!("stft backward: gradient {:?} does not match {} padded samples", layout.shape(), self.len)
        }
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(stft.adjoint(&stft.f32, contiguous(v, layout, "gradient")?, batch, self.len)?)
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(stft.adjoint(&stft.f64, contiguous(v, layout, "gradient")?, batch, self.len)?)
            }
            _ => bail!("stft: the FFT path takes f32 or f64"),
        };
        Ok((out, Shape::from((batch, self.len))))
    }
}
