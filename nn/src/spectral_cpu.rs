//! The per-item sums of the MRSTFT loss at one resolution, fused on CPU: from a prediction's packed spectrum
//! `(B, frames, 2·bins)` (real parts, then imaginary parts: what the FFT op returns) and the target's packed
//! spectrum of the same shape, one pass gives `(B, 3)` = [Σ (|T| − |P|)², Σ |T|², Σ |ln|T| − ln|P||] and the backward
//! one pass gives the spectrum's gradient.
//!
//! Why: written with candle ops the same sums are ~12 ops per resolution (magnitude, difference, square, sum,
//! log, abs, ...), each allocating a full-size temporary in forward and two more in backward, then a `narrow`
//! backward that pads the halves back together. Magnitudes follow `Stft::magnitude`: |P| = √max(re² + im²,
//! POWER_FLOOR), with candle's gradient conventions at the floor (zero below it, half on it).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType, bail};
use rayon::prelude::*;

use crate::custom_op::{Arg, by_dtype, cpu_fwd, data};
use crate::spectral::POWER_FLOOR;

/// `(B, 3)` sums of a prediction's spectrum against a target's magnitudes.
pub(crate) struct SpectralSums;

/// The sums of `spectrum` `(B, F, 2K)` against the `target`'s packed spectrum `(B, F, 2K)` (no gradient).
pub(crate) fn spectral_sums(spectrum: &Tensor, target: &Tensor) -> Result<Tensor> {
    spectrum.contiguous()?.apply_op2(&target.detach().contiguous()?, SpectralSums)
}

/// (B, F, K) from the spectrum's and the target's layouts, checked against each other.
fn dims(spectrum: &Layout, target: &Layout) -> Result<(usize, usize, usize)> {
    let (b, f, width) = spectrum.shape().dims3()?;
    if target.dims() != spectrum.dims() || width % 2 != 0 {
        bail!("spectral sums: spectrum {:?} does not pair with the target's {:?}", spectrum.dims(), target.dims())
    }
    Ok((b, f, width / 2))
}

/// The target's magnitude at bin `k` of packed row `row` (as `Stft::magnitude` rounds it).
#[inline]
fn target_magnitude<T: WithDType>(target: &[T], row: usize, bins: usize, k: usize) -> f64 {
    magnitude(target[2 * row * bins + k], target[(2 * row + 1) * bins + k]).0
}

/// ln v at `T`'s precision (f32's logarithm is several times cheaper than f64's, and what candle computes).
#[inline]
fn ln<T: WithDType>(v: f64) -> f64 {
    if T::DTYPE == DType::F32 { (v as f32).ln() as f64 } else { v.ln() }
}

/// Predicted magnitude and d|P|/d(power) · 2 (so that d|P|/d re = re · this) at one bin. The power, its floor
/// and the root are rounded to `T` as candle's `Stft::magnitude` rounds them: a bin near the floor then falls on
/// the same side of it as in the composite loss (whose log term's gradient, 1/|P|, is large there).
#[inline]
fn magnitude<T: WithDType>(re: T, im: T) -> (f64, f64) {
    let power = (re * re + im * im).to_f64();
    if power.is_nan() {
        // NaN audio stays NaN (as through candle's maximum), so a broken render or input is seen downstream.
        return (f64::NAN, f64::NAN);
    }
    let floor = T::from_f64(POWER_FLOOR).to_f64();
    let p = T::from_f64(power.max(floor).sqrt()).to_f64();
    if power > floor {
        (p, 1.0 / p)
    } else if power == floor {
        (p, 0.5 / p)
    } else {
        (p, 0.0)
    }
}

fn sums<T: WithDType>((s, sl): Arg, (t, tl): Arg) -> Result<(CpuStorage, Shape)> {
    let (spectrum, target) = (data::<T>(s, sl)?, data::<T>(t, tl)?);
    let (batch, frames, bins) = dims(sl, tl)?;
    let per_item: Vec<[f64; 3]> = (0..batch)
        .into_par_iter()
        .map(|b| {
            let mut acc = [0f64; 3];
            for f in 0..frames {
                let row = (b * frames + f) * bins;
                let (re, im) = spectrum[2 * row..2 * row + 2 * bins].split_at(bins);
                for k in 0..bins {
                    let (p, _) = magnitude(re[k], im[k]);
                    let t = target_magnitude(target, b * frames + f, bins, k);
                    acc[0] += (t - p) * (t - p);
                    acc[1] += t * t;
                    acc[2] += ln::<T>(t / p).abs(); // |ln|T| − ln|P||, one logarithm
                }
            }
            acc
        })
        .collect();
    let out: Vec<T> = per_item.iter().flatten().map(|&v| T::from_f64(v)).collect();
    Ok((T::to_cpu_storage_owned(out), Shape::from((batch, 3))))
}

impl CustomOp2 for SpectralSums {
    fn name(&self) -> &'static str {
        "afx-spectral-sums"
    }

    cpu_fwd!(|self, s, t| by_dtype!("spectral sums", s.0, |T| sums::<T>(s, t)));

    fn bwd(&self, s: &Tensor, t: &Tensor, _sums: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ds = if s.track_op() { Some(s.apply_op3_no_bwd(t, &grad.contiguous()?, &SpectralSumsGrad)?) } else { None };
        Ok((ds, None))
    }
}

/// d/d spectrum of Σ_j g_j · sums_j: per bin, g0 · 2(|P| − |T|) + g2 · sign(ln|P| − ln|T|) / |P|, times
/// d|P|/d(re, im) = (re, im) / |P| above the floor.
struct SpectralSumsGrad;

fn sums_grad<T: WithDType>((s, sl): Arg, (t, tl): Arg, (g, gl): Arg) -> Result<(CpuStorage, Shape)> {
    let (spectrum, target, grad) = (data::<T>(s, sl)?, data::<T>(t, tl)?, data::<T>(g, gl)?);
    let (batch, frames, bins) = dims(sl, tl)?;
    if grad.len() != 3 * batch {
        bail!("spectral sums backward: gradient of {} values for {batch} items", grad.len())
    }
    let mut ds = vec![T::zero(); spectrum.len()];
    ds.par_chunks_mut(2 * bins).enumerate().for_each(|(row, out)| {
        let b = row / frames;
        let (g0, g2) = (grad[3 * b].to_f64(), grad[3 * b + 2].to_f64());
        let (re, im) = spectrum[2 * row * bins..2 * (row + 1) * bins].split_at(bins);
        let (out_re, out_im) = out.split_at_mut(bins);
        for k in 0..bins {
            let (p, slope) = magnitude(re[k], im[k]);
            let (re, im) = (re[k].to_f64(), im[k].to_f64());
            if slope == 0.0 {
                continue;
            }
            let t = target_magnitude(target, row, bins, k);
            // sign(ln|P| − ln|T|) = sign(|P| − |T|); candle's abs gradient is +1 at 0, so a tie pulls |P| down.
            let sign = if p > t { 1.0 } else { -1.0 };
            let d_p = g0 * 2.0 * (p - t) + g2 * sign / p;
            out_re[k] = T::from_f64(d_p * slope * re);
            out_im[k] = T::from_f64(d_p * slope * im);
        }
    });
    Ok((T::to_cpu_storage_owned(ds), sl.shape().clone()))
}

impl candle_core::CustomOp3 for SpectralSumsGrad {
    fn name(&self) -> &'static str {
        "afx-spectral-sums-grad"
    }

    cpu_fwd!(|self, s, t, g| by_dtype!("spectral sums backward", s.0, |T| sums_grad::<T>(s, t, g)));
}

/// `(B, bins, frames)`: ln |X| of a packed spectrum `(B, frames, 2·bins)`, transposed to frequency-major (a
/// spectrogram image), magnitudes rounded as `Stft::magnitude` rounds them. No gradient: features of audio.
pub(crate) struct LogMagnitudeT;

fn log_magnitude_t<T: WithDType>((s, sl): Arg) -> Result<(CpuStorage, Shape)> {
    let spectrum = data::<T>(s, sl)?;
    let (batch, frames, bins) = dims(sl, sl)?;
    let mut out = vec![T::zero(); batch * bins * frames];
    out.par_chunks_mut(bins * frames).enumerate().for_each(|(b, image)| {
        for f in 0..frames {
            let row = b * frames + f;
            for k in 0..bins {
                let (p, _) = magnitude(spectrum[2 * row * bins + k], spectrum[(2 * row + 1) * bins + k]);
                image[k * frames + f] = T::from_f64(ln::<T>(p));
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), Shape::from((batch, bins, frames))))
}

impl candle_core::CustomOp1 for LogMagnitudeT {
    fn name(&self) -> &'static str {
        "afx-log-magnitude-t"
    }

    cpu_fwd!(|self, s| by_dtype!("log magnitude", s.0, |T| log_magnitude_t::<T>(s)));
}
