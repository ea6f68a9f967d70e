//! How close a proxy is to the real chain on held-out examples: MRSTFT and SI-SDR of the proxy's output against
//! the real output, next to the identity baseline (the unprocessed input against the real output).

use afx_nn::loss::{MrStftConfig, MrStftLoss};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::ProxyError;
use crate::collect::Example;
use crate::model::Proxy;

/// Examples the proxy processes at once when scoring (bounds memory for long examples).
const CHUNK: usize = 4;

/// Scores on held-out examples; MRSTFT lower is better, SI-SDR (dB) higher is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub step: u64,
    pub items: usize,
    pub mrstft: f64,
    pub identity_mrstft: f64,
    pub si_sdr: f64,
    pub identity_si_sdr: f64,
    /// Per parameter: the proxy's mean MRSTFT on items with θ_i < 0.5 and with θ_i ≥ 0.5 (where it is weak).
    pub by_param: Vec<ParamRegions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamRegions {
    pub param: String,
    pub low: f64,
    pub high: f64,
}

impl Quality {
    /// identity MRSTFT / proxy MRSTFT: how many times closer to the real output the proxy is than the input.
    pub fn improvement(&self) -> f64 {
        self.identity_mrstft / self.mrstft
    }
}

/// Scores `proxy` on `examples` (whole examples, from the start of the render: the proxy's zero history is the
/// plugin's fresh state). `names` labels θ's entries.
pub fn evaluate(
    proxy: &Proxy,
    examples: &[Example],
    names: &[String],
    fft_sizes: &[usize],
    step: u64,
    device: &Device,
) -> Result<Quality, ProxyError> {
    let loss = MrStftLoss::new(
        &MrStftConfig { fft_sizes: fft_sizes.to_vec(), time_l1_weight: 0.0 },
        DType::F32,
        &Device::Cpu,
    )?;
    let per_item = |y: &Tensor, t: &Tensor| -> Result<Vec<f64>, ProxyError> {
        Ok(loss.per_item(y, t)?.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
    };
    let mut proxy_scores = Vec::with_capacity(examples.len());
    let (mut identity, mut sdr, mut identity_sdr) = (0.0, 0.0, 0.0);
    for chunk in examples.chunks(CHUNK) {
        let frames = chunk[0].input.frames();
        let batch = |audio: fn(&Example) -> &[f32]| -> Vec<f32> { chunk.iter().flat_map(audio).copied().collect() };
        let input = Tensor::from_vec(batch(|e| e.input.channel(0)), (chunk.len(), frames), &Device::Cpu)?;
        let real = Tensor::from_vec(batch(|e| e.output.channel(0)), (chunk.len(), frames), &Device::Cpu)?;
        let theta = Tensor::from_vec(batch(|e| &e.params), (chunk.len(), names.len()), device)?;
        let y = proxy.forward(&input.to_device(device)?, &theta)?.to_device(&Device::Cpu)?;
        proxy_scores.extend(per_item(&y, &real)?);
        identity += per_item(&input, &real)?.iter().sum::<f64>();
        for (e, y) in chunk.iter().zip(y.to_vec2::<f32>()?) {
            sdr += si_sdr(&y, e.output.channel(0));
            identity_sdr += si_sdr(e.input.channel(0), e.output.channel(0));
        }
    }
    let n = proxy_scores.len().max(1) as f64;
    let by_param = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mean = |high: bool| {
                let v: Vec<f64> = examples
                    .iter()
                    .zip(&proxy_scores)
                    .filter(|(e, _)| (e.params[i] >= 0.5) == high)
                    .map(|(_, s)| *s)
                    .collect();
                if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
            };
            ParamRegions { param: name.clone(), low: mean(false), high: mean(true) }
        })
        .collect();
    Ok(Quality {
        step,
        items: proxy_scores.len(),
        mrstft: proxy_scores.iter().sum::<f64>() / n,
        identity_mrstft: identity / n,
        si_sdr: sdr / n,
        identity_si_sdr: identity_sdr / n,
        by_param,
    })
}

/// Scale-invariant SDR in dB of `estimate` against `reference` (Le Roux et al. 2019), computed in f64. Silent
/// references or perfect estimates are clamped to ±100 dB instead of ±∞.
pub fn si_sdr(estimate: &[f32], reference: &[f32]) -> f64 {
    let dot: f64 = estimate.iter().zip(reference).map(|(&e, &r)| f64::from(e) * f64::from(r)).sum();
    let energy: f64 = reference.iter().map(|&r| f64::from(r).powi(2)).sum();
    if energy == 0.0 {
        return -100.0;
    }
    let alpha = dot / energy;
    let (mut target, mut noise) = (0.0, 0.0);
    for (&e, &r) in estimate.iter().zip(reference) {
        let s = alpha * f64::from(r);
        target += s * s;
        noise += (f64::from(e) - s).powi(2);
    }
    if noise == 0.0 {
        return 100.0;
    }
    (10.0 * (target / noise).log10()).clamp(-100.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::si_sdr;

    #[test]
    fn si_sdr_ignores_scale_and_measures_noise() {
        let reference: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.05).sin()).collect();
        let scaled: Vec<f32> = reference.iter().map(|r| 0.3 * r).collect();
        assert!(si_sdr(&scaled, &reference) > 90.0);
        // Noise at a tenth of the amplitude, orthogonal-ish: about 20 dB.
        let noisy: Vec<f32> =
            reference.iter().enumerate().map(|(i, r)| r + 0.1 * (i as f32 * 1.7 + 0.3).sin()).collect();
        let v = si_sdr(&noisy, &reference);
        assert!((v - 20.0).abs() < 1.5, "{v}");
    }
}
