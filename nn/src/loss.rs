//! Multi-resolution STFT loss (auraloss's `MultiResolutionSTFTLoss` with its default terms) plus an optional
//! weighted L1 in time, as DeepAFx-ST trains its proxy (MRSTFT + 100 · L1).
//!
//! Per resolution: spectral convergence `‖|Y| − |X|‖_F / ‖|Y|‖_F` (Frobenius norms over the whole batch) plus
//! log-magnitude L1 `mean |log|Y| − log|X||`; the MRSTFT value is the MEAN over resolutions (auraloss divides by
//! their count). Magnitudes use [`crate::stft::POWER_FLOOR`]. On CPU each resolution's sums are one fused op with
//! its own backward (`spectral_cpu`); elsewhere, or when the target itself takes a gradient, the same terms are a
//! differentiable candle expression (the reference the fused op is tested against).

use candle_core::{DType, Device, Result, Tensor, bail};
use serde::{Deserialize, Serialize};

use crate::spectral_cpu;
use crate::stft::Stft;

/// Settings of [`MrStftLoss`], and the loss afx trains and scores with, as a run stores it: every gradient
/// method and the trainer train on it; validation, `afx eval-grads`, `afx compare` and `afx match` score with its
/// MRSTFT alone ([`MrStftConfig::without_l1`]). Defaults: FFT sizes 256, 512, 1024 (hop n/4), no time-domain
/// term.
///
/// In a run's `config.json` it sits inside the `spsa` object (where these fields have always been stored), so
/// runs of every afx version read and write the same JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MrStftConfig {
    /// FFT sizes; each resolution uses a Hann window of that size and hop n_fft / 4.
    pub fft_sizes: Vec<usize>,
    /// Weight of the time-domain L1 term `mean |y − x|` (0 disables it).
    pub time_l1_weight: f64,
}

/// The loss of a run: [`MrStftConfig`] under the name the trainer, the methods and `afx match` use for it.
pub type LossConfig = MrStftConfig;

impl Default for MrStftConfig {
    fn default() -> Self {
        MrStftConfig { fft_sizes: vec![256, 512, 1024], time_l1_weight: 0.0 }
    }
}

impl MrStftConfig {
    /// The MRSTFT alone (validation reports it without the time-domain term).
    pub fn without_l1(&self) -> MrStftConfig {
        MrStftConfig { time_l1_weight: 0.0, ..self.clone() }
    }
}

/// Multi-resolution STFT loss between a prediction and a target of shape `(B, T)` (or `(B, 1, T)`).
#[derive(Debug, Clone)]
pub struct MrStftLoss {
    stfts: Vec<Stft>,
    time_l1_weight: f64,
}

impl MrStftLoss {
    pub fn new(config: &MrStftConfig, dtype: DType, device: &Device) -> Result<Self> {
        if config.fft_sizes.is_empty() {
            bail!("mrstft: at least one FFT size is needed")
        }
        let stfts = config
            .fft_sizes
            .iter()
            .map(|&n| Stft::new(n, (n / 4).max(1), dtype, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { stfts, time_l1_weight: config.time_l1_weight })
    }

    /// Scalar loss `mean_r(SC_r + LogMag_r) + w · mean|pred − target|`.
    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let pred = flatten_mono(pred)?;
        let target = flatten_mono(target)?;
        if pred.dims() != target.dims() {
            bail!("mrstft: prediction {:?} and target {:?} differ in shape", pred.dims(), target.dims())
        }
        let terms = self.stfts.iter().map(|stft| spectral_terms(stft, &pred, &target)).collect::<Result<Vec<_>>>()?;
        self.total(terms, || (&pred - &target)?.abs()?.mean_all())
    }

    /// The mean of the resolutions' `terms`, summed in order, plus the weighted time-domain term (`l1` is only
    /// computed when it weighs something).
    fn total(&self, terms: Vec<Tensor>, l1: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        let mut terms = terms.into_iter();
        let Some(first) = terms.next() else { bail!("mrstft: no resolutions") };
        let total = terms.try_fold(first, |total, term| total + term)?;
        let spectral = (total / self.stfts.len() as f64)?;
        if self.time_l1_weight == 0.0 {
            return Ok(spectral);
        }
        spectral + (l1()? * self.time_l1_weight)?
    }
}

impl MrStftLoss {
    /// The loss of each item alone, `(B,)`: what a per-item score (validation, a proxy's quality, a gradient's
    /// evaluation) reports and what a batch mean of it trains; [`MrStftLoss::forward`] over a batch instead pools
    /// the spectral convergence's norms, so its loudest items dominate. One batched pass: item `i`'s value
    /// equals `forward` of item `i` alone, and its gradient reaches item `i` only.
    pub fn per_item(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (pred, target) = (flatten_mono(pred)?, flatten_mono(target)?);
        if pred.dims() != target.dims() {
            bail!("mrstft: prediction {:?} and target {:?} differ in shape", pred.dims(), target.dims())
        }
        self.per_item_with(&pred, &target, None)
    }

    /// `target`'s spectra at every resolution, computed once to score many predictions against it
    /// ([`MrStftLoss::per_item_against`]; on the CPU, where the fused ops take spectra).
    pub fn prepare(&self, target: &Tensor) -> Result<PreparedTarget> {
        let wave = flatten_mono(target)?;
        let spectra = if fusable(&wave) && !wave.track_op() {
            Some(self.stfts.iter().map(|stft| stft.packed_fft(&wave)).collect::<Result<Vec<_>>>()?)
        } else {
            None
        };
        Ok(PreparedTarget { wave, spectra })
    }

    /// [`MrStftLoss::per_item`] of `pred` `(n·R, T)` against a prepared target of R rows, tiled: row `i` is
    /// scored against target row `i mod R`. Bit for bit the same values as `per_item` against the tiled target,
    /// without transforming the target again for every prediction (one-sound matching scores thousands).
    pub fn per_item_against(&self, pred: &Tensor, target: &PreparedTarget) -> Result<Tensor> {
        let pred = flatten_mono(pred)?;
        let (rows, frames) = target.wave.dims2()?;
        let (n, len) = pred.dims2()?;
        if len != frames || rows == 0 || n % rows != 0 {
            bail!(
                "mrstft: prediction {:?} is not a whole number of copies of the target's {:?}",
                pred.dims(),
                [rows, frames]
            )
        }
        let tile = |t: &Tensor| -> Result<Tensor> {
            let mut shape = vec![1; t.rank()];
            shape[0] = n / rows;
            t.repeat(shape)
        };
        let spectra = target.spectra.as_ref().map(|s| s.iter().map(tile).collect::<Result<Vec<_>>>()).transpose()?;
        self.per_item_with(&pred, &tile(&target.wave)?, spectra.as_deref())
    }

    /// [`MrStftLoss::per_item`] given the target's spectra when they are known.
    fn per_item_with(&self, pred: &Tensor, target: &Tensor, spectra: Option<&[Tensor]>) -> Result<Tensor> {
        let (pred, target) = (pred.clone(), target.clone());
        let batch = pred.dim(0)?;
        let mut terms = Vec::with_capacity(self.stfts.len());
        for (r, stft) in self.stfts.iter().enumerate() {
            if let Some(sums) = fused_sums(stft, &pred, &target, spectra.map(|s| &s[r]))? {
                // [Σ (|T| − |P|)², Σ |T|², Σ |ln|T| − ln|P||] per item
                let bins = (stft.frames(pred.dim(1)?) * stft.bins()) as f64;
                let convergence = (sums.narrow(1, 0, 1)?.sqrt()? / sums.narrow(1, 1, 1)?.sqrt()?)?;
                terms.push((convergence + (sums.narrow(1, 2, 1)? / bins)?)?.squeeze(1)?);
                continue;
            }
            let p = stft.magnitude(&pred)?.reshape((batch, ()))?;
            let t = stft.magnitude(&target)?.reshape((batch, ()))?;
            let convergence = ((&t - &p)?.sqr()?.sum(1)?.sqrt()? / t.sqr()?.sum(1)?.sqrt()?)?;
            let log_mag = (t.log()? - p.log()?)?.abs()?.mean(1)?;
            terms.push((convergence + log_mag)?);
        }
        self.total(terms, || (&pred - &target)?.abs()?.mean(1))
    }
}

/// Spectral convergence + log-magnitude L1 at one resolution.
fn spectral_terms(stft: &Stft, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if let Some(sums) = fused_sums(stft, pred, target, None)? {
        let sums = sums.sum(0)?; // the batch's norms pooled
        let bins = (pred.dim(0)? * stft.frames(pred.dim(1)?) * stft.bins()) as f64;
        let convergence = (sums.get(0)?.sqrt()? / sums.get(1)?.sqrt()?)?;
        return convergence + (sums.get(2)? / bins)?;
    }
    let p = stft.magnitude(pred)?;
    let t = stft.magnitude(target)?;
    let convergence = ((&t - &p)?.sqr()?.sum_all()?.sqrt()? / t.sqr()?.sum_all()?.sqrt()?)?;
    let log_mag = (t.log()? - p.log()?)?.abs()?.mean_all()?;
    convergence + log_mag
}

/// A target's waveform and, on the CPU, its packed spectra per resolution: see [`MrStftLoss::prepare`].
#[derive(Debug, Clone)]
pub struct PreparedTarget {
    wave: Tensor,
    spectra: Option<Vec<Tensor>>,
}

/// Whether the fused CPU ops can take `t`.
fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// On CPU, when the target takes no gradient: the fused per-item sums `(B, 3)` of `spectral_cpu` (one pass
/// forward and one backward instead of ~12 candle ops each way), from the target's spectrum when it is given.
/// `None`: use the composite expression.
fn fused_sums(stft: &Stft, pred: &Tensor, target: &Tensor, spectrum: Option<&Tensor>) -> Result<Option<Tensor>> {
    if !fusable(pred) || !fusable(target) || target.track_op() || pred.dtype() != target.dtype() {
        return Ok(None);
    }
    let prediction = stft.packed_fft(pred)?;
    let target = match spectrum {
        Some(s) => s.clone(),
        None => stft.packed_fft(target)?,
    };
    Ok(Some(spectral_cpu::spectral_sums(&prediction, &target)?))
}

/// `(B, T)` stays; `(B, 1, T)` becomes `(B, T)`.
fn flatten_mono(x: &Tensor) -> Result<Tensor> {
    match x.dims() {
        [_, _] => Ok(x.clone()),
        [b, 1, t] => x.reshape((*b, *t)),
        other => bail!("mrstft: expected (B, T) or (B, 1, T), got {other:?}"),
    }
}
