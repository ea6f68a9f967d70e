//! Gradient methods: how dL/dθ reaches the network when the chain has no gradient. One file per method
//! (`spsa` now; proxy-based methods go beside it) behind one trait, so the loop never changes.

use afx_host::Audio;
use afx_spsa::{ItemError, Pool};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;

pub mod spsa;

/// What a method sees of a batch: the inputs the chain processes and the targets the output is scored against.
#[derive(Debug, Clone, Copy)]
pub struct MethodBatch<'a> {
    pub inputs: &'a [Audio],
    pub targets: &'a [Audio],
}

/// Seconds spent in a method's parts of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodTiming {
    /// Forward renders of the real chain.
    pub render_s: f64,
    /// The audio loss and its gradient with respect to the rendered audio.
    pub loss_s: f64,
    /// The gradient estimate (SPSA renders).
    pub spsa_s: f64,
}

/// One step's outcome.
#[derive(Debug)]
pub struct MethodStep {
    /// A scalar whose backward puts dL/dθ on θ (and so on the network); `None` when every item failed.
    pub surrogate: Option<Tensor>,
    /// The audio loss over the items that rendered.
    pub loss: f64,
    /// Items that took part / failed (dropped from the batch).
    pub ok: usize,
    pub failed: usize,
    pub errors: Vec<ItemError>,
    pub timing: MethodTiming,
}

/// A way to train through the chain.
pub trait GradMethod {
    fn name(&self) -> &'static str;

    /// Given the batch and the predicted θ `(B, P)` (part of the network's graph), returns the step's
    /// surrogate loss. `seed` makes any randomness (perturbations) reproducible.
    fn step(
        &mut self,
        pool: &mut Pool,
        batch: MethodBatch<'_>,
        theta: &Tensor,
        seed: u64,
    ) -> Result<MethodStep, TrainError>;
}

/// θ `(B, P)` as one `Vec` per item.
pub fn theta_rows(theta: &Tensor) -> Result<Vec<Vec<f32>>, TrainError> {
    Ok(theta.detach().to_dtype(candle_core::DType::F32)?.to_device(&candle_core::Device::Cpu)?.to_vec2()?)
}
