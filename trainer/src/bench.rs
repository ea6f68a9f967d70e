//! Where a training step's time goes: data (pair sampling and target renders), encoder forward, plugin
//! renders, loss, SPSA, backward (+ optimizer), measured on real steps of a throwaway model.

use std::ops::AddAssign;

use afx_spsa::Pool;
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::chain_info::ChainInfo;
use crate::train::{TrainConfig, Trainer};
use crate::{ClipSource, TrainError};

/// Seconds per part of one training step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Sampling clips and rendering their targets (and corruptions) through the chain.
    pub data_s: f64,
    /// Spectrograms + encoder + controller.
    pub encoder_forward_s: f64,
    /// Forward renders of the chain at the predicted θ.
    pub render_s: f64,
    /// MRSTFT loss and its gradient with respect to the rendered audio.
    pub loss_s: f64,
    /// SPSA renders (2K per item) and estimates.
    pub spsa_s: f64,
    /// The neural proxy's forward pass (proxy methods).
    #[serde(default)]
    pub proxy_s: f64,
    /// Backward through the network and the optimizer update.
    pub backward_s: f64,
    /// The whole step.
    pub total_s: f64,
}

impl AddAssign for StepTiming {
    fn add_assign(&mut self, o: StepTiming) {
        self.data_s += o.data_s;
        self.encoder_forward_s += o.encoder_forward_s;
        self.render_s += o.render_s;
        self.loss_s += o.loss_s;
        self.spsa_s += o.spsa_s;
        self.proxy_s += o.proxy_s;
        self.backward_s += o.backward_s;
        self.total_s += o.total_s;
    }
}

impl StepTiming {
    pub fn scaled(self, factor: f64) -> StepTiming {
        StepTiming {
            data_s: self.data_s * factor,
            encoder_forward_s: self.encoder_forward_s * factor,
            render_s: self.render_s * factor,
            loss_s: self.loss_s * factor,
            spsa_s: self.spsa_s * factor,
            proxy_s: self.proxy_s * factor,
            backward_s: self.backward_s * factor,
            total_s: self.total_s * factor,
        }
    }
}

/// Result of [`bench_train`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainBench {
    pub steps: usize,
    pub batch: usize,
    /// Mean over the measured steps (the first step, which warms caches, is not measured).
    pub mean: StepTiming,
}

/// Runs `steps` + 1 training steps of a fresh model (nothing written to disk) and returns the mean timing.
pub fn bench_train(
    config: &TrainConfig,
    chain: &ChainInfo,
    pool: &mut Pool,
    source: &dyn ClipSource,
    steps: usize,
    device: &Device,
) -> Result<TrainBench, TrainError> {
    let mut trainer = Trainer::new(config.clone(), chain.clone(), device.clone())?;
    trainer.step(pool, source)?;
    let mut total = StepTiming::default();
    for _ in 0..steps {
        total += trainer.step(pool, source)?.timing;
    }
    Ok(TrainBench { steps, batch: config.batch, mean: total.scaled(1.0 / steps.max(1) as f64) })
}
