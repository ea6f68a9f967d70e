//! SPSA through the real chain (DeepAFx): forward renders in the pool, dL/dy from candle's backward of the
//! MRSTFT loss on the rendered audio (a leaf), then ĝ ≈ (∂y/∂θ)ᵀ dL/dy from the pool's perturbed double
//! renders, injected with the surrogate Σ θ · stopgrad(ĝ).

use std::time::Instant;

use afx_host::Audio;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_spsa::Pool;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::{GradMethod, MethodBatch, MethodStep, MethodTiming, theta_rows};
use crate::TrainError;
use crate::frontend::batch_tensor;

/// SPSA settings.
///
/// Defaults: ε = 0.01 and K = 2. DeepAFx-ST used ε = 1e-3 and K = 1 on its own float DSP; through real plugins a
/// step of 1e-3 in θ is often below what moves the output measurably against the loss's noise (frequencies and
/// time constants on log scales; compressors with knees), and the measurement on this chain (notes/anchors.md)
/// learned with ε = 0.02. 0.01 keeps the estimate local while measurable; K = 2 halves the variance for 2 more
/// renders per item, which two workers run in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpsaConfig {
    pub epsilon: f32,
    pub perturbations: u32,
    /// FFT sizes of the MRSTFT loss (hop = n/4).
    pub fft_sizes: Vec<usize>,
    /// Weight of the time-domain L1 term.
    pub time_l1_weight: f64,
}

impl Default for SpsaConfig {
    fn default() -> Self {
        SpsaConfig { epsilon: 0.01, perturbations: 2, fft_sizes: vec![256, 512, 1024], time_l1_weight: 0.0 }
    }
}

impl SpsaConfig {
    pub fn loss_config(&self) -> MrStftConfig {
        MrStftConfig { fft_sizes: self.fft_sizes.clone(), time_l1_weight: self.time_l1_weight }
    }
}

/// The `spsa` gradient method.
pub struct Spsa {
    config: SpsaConfig,
    loss: MrStftLoss,
}

impl Spsa {
    pub fn new(config: SpsaConfig) -> Result<Spsa, TrainError> {
        // The loss on rendered audio runs on the CPU: its input and gradient travel to and from the workers.
        let loss = MrStftLoss::new(&config.loss_config(), DType::F32, &Device::Cpu)?;
        Ok(Spsa { config, loss })
    }
}

impl GradMethod for Spsa {
    fn name(&self) -> &'static str {
        "spsa"
    }

    fn step(
        &mut self,
        pool: &mut Pool,
        batch: MethodBatch<'_>,
        theta: &Tensor,
        seed: u64,
    ) -> Result<MethodStep, TrainError> {
        let mut timing = MethodTiming::default();
        let thetas = theta_rows(theta)?;
        let started = Instant::now();
        let rendered = pool.render_batch(batch.inputs, &thetas);
        timing.render_s = started.elapsed().as_secs_f64();

        let mut errors = vec![];
        let mut kept: Vec<usize> = vec![];
        let mut outputs: Vec<Audio> = vec![];
        for (i, r) in rendered.into_iter().enumerate() {
            match r {
                Ok(y) => {
                    kept.push(i);
                    outputs.push(y);
                }
                Err(e) => errors.push(e),
            }
        }
        let failed_render = errors.len();
        if kept.is_empty() {
            return Ok(MethodStep {
                surrogate: None,
                loss: f64::NAN,
                ok: 0,
                failed: failed_render,
                errors,
                timing,
                output: None,
            });
        }

        // dL/dy with y as a leaf: the loss's own backward, no finite differences on the audio side.
        let started = Instant::now();
        let y = Var::from_tensor(&batch_tensor(&outputs.iter().collect::<Vec<_>>(), &Device::Cpu)?)?;
        let targets: Vec<&Audio> = kept.iter().map(|&i| &batch.targets[i]).collect();
        let target = batch_tensor(&targets, &Device::Cpu)?;
        let loss = self.loss.forward(y.as_tensor(), &target)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        let Some(g) = grads.get(y.as_tensor()) else {
            return Err(TrainError::Config("the loss does not depend on the rendered audio".into()));
        };
        let g_rows: Vec<Vec<f32>> = g.to_vec2()?;
        let rate = outputs[0].sample_rate();
        let g_audio: Vec<Audio> = g_rows
            .into_iter()
            .map(|row| Audio::new(rate, vec![row]))
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Config(format!("loss gradient: {e}")))?;
        timing.loss_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let inputs: Vec<Audio> = kept.iter().map(|&i| batch.inputs[i].clone()).collect();
        let kept_thetas: Vec<Vec<f32>> = kept.iter().map(|&i| thetas[i].clone()).collect();
        let estimates =
            pool.spsa_batch(&inputs, &kept_thetas, &g_audio, self.config.epsilon, self.config.perturbations, seed);
        timing.spsa_s = started.elapsed().as_secs_f64();

        // Rows of failed items stay zero: they contribute nothing to the update.
        let p = thetas.first().map_or(0, Vec::len);
        let mut ghat = vec![0f32; thetas.len() * p];
        let mut ok = 0;
        for (&i, estimate) in kept.iter().zip(estimates) {
            match estimate {
                Ok(g) if g.iter().all(|v| v.is_finite()) => {
                    ghat[i * p..(i + 1) * p].copy_from_slice(&g);
                    ok += 1;
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        let failed = thetas.len() - ok;
        if ok == 0 {
            return Ok(MethodStep { surrogate: None, loss: loss_value, ok, failed, errors, timing, output: None });
        }
        let ghat = Tensor::from_vec(ghat, (thetas.len(), p), theta.device())?.to_dtype(theta.dtype())?;
        let surrogate = (theta * ghat.detach())?.sum_all()?;
        let output = Some(y.as_tensor().detach());
        Ok(MethodStep { surrogate: Some(surrogate), loss: loss_value, ok, failed, errors, timing, output })
    }
}

impl SpsaConfig {
    /// The MRSTFT alone (validation reports it without the time-domain term).
    pub fn loss_config_without_l1(&self) -> MrStftConfig {
        MrStftConfig { fft_sizes: self.fft_sizes.clone(), time_l1_weight: 0.0 }
    }
}
