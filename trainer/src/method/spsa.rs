//! SPSA through the real chain (DeepAFx): forward renders in the pool, dL/dy from candle's backward of the
//! MRSTFT loss on the rendered audio (a leaf), then ĝ ≈ (∂y/∂θ)ᵀ dL/dy from the pool's perturbed double
//! renders (2K per item).

use afx_nn::loss::{LossConfig, MrStftLoss};
use afx_spsa::Pool;
use afx_spsa::estimator::Scoring;
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::{Backward, GradMethod, Gradients, MethodBatch, real_gradients};
use crate::TrainError;

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
    /// Every method's training loss, not SPSA's own: it is stored here, its fields beside ε and K in the `spsa`
    /// object of a run's config.json, as runs have always stored them (the JSON is unchanged).
    /// How a trajectory's rows are scored (see [`afx_spsa::estimator::Scoring`]); fixed parameters have one row
    /// and ignore it. Left out of config.json at its default (the file of a run without automation is unchanged).
    #[serde(default, skip_serializing_if = "Scoring::is_whole")]
    pub scoring: Scoring,
    #[serde(flatten)]
    pub loss: LossConfig,
}

impl Default for SpsaConfig {
    fn default() -> Self {
        SpsaConfig { epsilon: 0.01, perturbations: 2, scoring: Scoring::Whole, loss: LossConfig::default() }
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
        let loss = MrStftLoss::new(&config.loss, DType::F32, &Device::Cpu)?;
        Ok(Spsa { config, loss })
    }

    /// The training loss it scores rendered audio with (on the CPU).
    pub fn loss(&self) -> &MrStftLoss {
        &self.loss
    }
}

impl GradMethod for Spsa {
    fn name(&self) -> &'static str {
        "spsa"
    }

    fn gradients(&mut self, pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError> {
        let (epsilon, k, seed, hop) = (self.config.epsilon, self.config.perturbations, batch.seed, batch.hop);
        let scoring = self.config.scoring;
        real_gradients(pool, &self.loss, batch, Backward::Estimator, |pool, forward, thetas| {
            let kept_thetas = forward.kept_of(thetas);
            // Item i keeps the seed it would have in the whole batch, whichever items failed before it.
            let seeds: Vec<u64> = forward.kept.iter().map(|&i| afx_spsa::item_seed(seed, i)).collect();
            let mut pool = pool.trajectories(hop, scoring);
            Ok(pool.spsa_batch(&forward.inputs, &kept_thetas, &forward.grad_y, epsilon, k, &seeds))
        })
    }
}
