//! Differentiable STFT magnitude (candle has no FFT).
//!
//! On CPU, one custom op ([`crate::fft::RealStft`]) frames, windows and transforms with real FFTs
//! (`O(n_fft log n_fft)` per frame, threaded over batch × frames) and has its own backward: the adjoint of a real
//! FFT is an inverse real FFT of the halved spectrum. On other devices, frames are gathered with `index_select`
//! (backward: `index_add`) and multiplied by a precomputed Hann-windowed DFT basis with one 2-D matmul
//! (`O(n_fft²)` per frame, but one large GPU matmul), whose gradient is hand-written (a pass-through op) so that
//! no gradient is computed for the constant basis. Both give `(re, im)`; magnitudes are
//! `sqrt(max(re² + im², 1e-8))`.

use candle_core::{CustomOp2, DType, Device, Result, Tensor, bail};

use crate::fft::RealStft;
use crate::passthrough::passthrough_fwd;
pub use crate::spectral::{POWER_FLOOR, hann};

/// STFT magnitude with a periodic Hann window of `n_fft` samples, hop `hop`, and centred frames: the signal is
/// padded with `n_fft / 2` zeros on each side (torch's `center=True`, with zero rather than reflect padding).
#[derive(Debug, Clone)]
pub struct Stft {
    n_fft: usize,
    hop: usize,
    dtype: DType,
    device: Device,
    /// The DFT path's basis and its transpose, made on first use (the FFT path needs neither, and a 2048-point
    /// basis is 16 MiB in f32): see [`Stft::basis`].
    basis: std::sync::OnceLock<(Tensor, Tensor)>,
    /// The FFT path, used for CPU tensors.
    fft: RealStft,
}

impl Stft {
    /// An STFT whose DFT path (see [`Stft::complex_matmul`]) works in `dtype` on `device`.
    pub fn new(n_fft: usize, hop: usize, dtype: DType, device: &Device) -> Result<Self> {
        if n_fft < 2 || hop == 0 {
            bail!("stft: need n_fft >= 2 and hop >= 1 (got n_fft {n_fft}, hop {hop})")
        }
        let basis = std::sync::OnceLock::new();
        Ok(Self { n_fft, hop, dtype, device: device.clone(), basis, fft: RealStft::new(n_fft, hop) })
    }

    /// The windowed DFT basis `(n_fft, 2F)` (columns `0..F` give the real part, `F..2F` the imaginary part;
    /// F = n_fft/2 + 1) and its transpose `(2F, n_fft)`, contiguous, for the backward.
    fn basis(&self) -> Result<&(Tensor, Tensor)> {
        if let Some(basis) = self.basis.get() {
            return Ok(basis);
        }
        let (n_fft, bins) = (self.n_fft, self.bins());
        let mut basis = vec![0f64; n_fft * 2 * bins];
        for n in 0..n_fft {
            let window = hann(n, n_fft);
            for f in 0..bins {
                // Reduce n·f mod n_fft before scaling so large products keep full precision.
                let phase = 2.0 * std::f64::consts::PI * ((n * f) % n_fft) as f64 / n_fft as f64;
                basis[n * 2 * bins + f] = window * phase.cos();
                basis[n * 2 * bins + bins + f] = -window * phase.sin();
            }
        }
        let basis = Tensor::from_vec(basis, (n_fft, 2 * bins), &self.device)?.to_dtype(self.dtype)?;
        let basis_t = basis.t()?.contiguous()?;
        Ok(self.basis.get_or_init(|| (basis, basis_t)))
    }

    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Number of frequency bins: n_fft / 2 + 1.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Number of frames for a signal of `len` samples (centred framing): 1 + len / hop for even `n_fft`.
    pub fn frames(&self, len: usize) -> usize {
        1 + (len + 2 * (self.n_fft / 2) - self.n_fft) / self.hop
    }

    /// Real and imaginary parts `(B, frames, F)` each, of `x` `(B, T)`: by real FFTs on CPU, by a DFT matmul
    /// elsewhere.
    pub fn complex(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        if x.device().is_cpu() { self.complex_fft(x) } else { self.complex_matmul(x) }
    }

    /// [`Stft::complex`] by real FFTs (CPU only).
    pub fn complex_fft(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let spec = self.packed_fft(x)?;
        let bins = self.bins();
        Ok((spec.narrow(2, 0, bins)?, spec.narrow(2, bins, bins)?))
    }

    /// `(B, frames, 2·bins)`: the real parts, then the imaginary parts, of each frame, by real FFTs (CPU).
    pub(crate) fn packed_fft(&self, x: &Tensor) -> Result<Tensor> {
        x.dims2()?;
        let half = self.n_fft / 2;
        x.pad_with_zeros(1, half, half)?.contiguous()?.apply_op1(self.fft.clone())
    }

    /// [`Stft::complex`] by a windowed DFT basis and one matmul (any device).
    pub fn complex_matmul(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, len) = x.dims2()?;
        let half = self.n_fft / 2;
        let frames = self.frames(len);
        let padded = x.pad_with_zeros(1, half, half)?;
        let index: Vec<u32> =
            (0..frames).flat_map(|f| (0..self.n_fft).map(move |n| (f * self.hop + n) as u32)).collect();
        let index = Tensor::from_vec(index, frames * self.n_fft, x.device())?;
        let framed = padded.index_select(&index, 1)?.reshape((batch * frames, self.n_fft))?;
        let (basis, basis_t) = self.basis()?;
        let spec = framed.detach().matmul(basis)?;
        let spec =
            if framed.track_op() { spec.apply_op2(&framed, ConstMatmulGrad { rhs_t: basis_t.clone() })? } else { spec };
        let spec = spec.reshape((batch, frames, 2 * self.bins()))?;
        let bins = self.bins();
        Ok((spec.narrow(2, 0, bins)?, spec.narrow(2, bins, bins)?))
    }

    /// `(B, bins, frames)`: ln |X| of `(B, T)` audio, frequency-major, with no gradient (features). On CPU one
    /// fused pass over the FFT's output; elsewhere `magnitude`, `log` and a transpose.
    pub fn log_magnitude(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.detach();
        if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
            self.packed_fft(&x)?.apply_op1_no_bwd(&crate::spectral_cpu::LogMagnitudeT)
        } else {
            self.magnitude(&x)?.log()?.transpose(1, 2)?.contiguous()
        }
    }

    /// Magnitude `(B, frames, F)` of `x` `(B, T)`: `sqrt(max(re² + im², POWER_FLOOR))`.
    pub fn magnitude(&self, x: &Tensor) -> Result<Tensor> {
        let (re, im) = self.complex(x)?;
        (re.sqr()? + im.sqr()?)?.maximum(POWER_FLOOR)?.sqrt()
    }
}

/// Gradient of `lhs · B` for a constant `B`: `d lhs = grad · Bᵀ`, and nothing for `B`.
struct ConstMatmulGrad {
    rhs_t: Tensor,
}

impl CustomOp2 for ConstMatmulGrad {
    fn name(&self) -> &'static str {
        "afx-const-matmul"
    }

    passthrough_fwd!(op2);

    fn bwd(
        &self,
        _y: &Tensor,
        _lhs: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(grad.detach().contiguous()?.matmul(&self.rhs_t)?)))
    }
}
