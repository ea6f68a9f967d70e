//! Where a training step's time goes: [`StepTiming`], filled by every step and logged with its metrics.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

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
