//! Central finite differences through the real chain: the forward render and dL/dy as for SPSA, then
//! `ĝ_j = ⟨dL/dy, f(θ + h e_j) − f(θ − h e_j)⟩ / 2h` for every parameter j (2P renders per item). Slow, but with
//! a small enough step it is the true gradient of the chain as rendered: the baseline the other methods are
//! measured against where no exact gradient exists.

use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_spsa::Pool;
use afx_spsa::estimator::Scoring;
use candle_core::{DType, Device};

use super::{Backward, GradMethod, Gradients, MethodBatch, real_gradients};
use crate::TrainError;

/// The `fd` gradient method.
pub struct FiniteDifference {
    step: f32,
    loss: MrStftLoss,
}

impl FiniteDifference {
    /// Central differences with step `step` in normalised units (0 < step < 0.5).
    pub fn new(step: f32, loss: &MrStftConfig) -> Result<FiniteDifference, TrainError> {
        if !(step > 0.0 && step < 0.5) {
            return Err(TrainError::Config(format!("fd: the step h must be in (0, 0.5), got {step}")));
        }
        Ok(FiniteDifference { step, loss: MrStftLoss::new(loss, DType::F32, &Device::Cpu)? })
    }
}

impl GradMethod for FiniteDifference {
    fn name(&self) -> &'static str {
        "fd"
    }

    fn gradients(&mut self, pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError> {
        let (step, hop) = (self.step, batch.hop);
        real_gradients(pool, &self.loss, batch, Backward::Estimator, |pool, forward, thetas| {
            let kept_thetas = forward.kept_of(thetas);
            let mut pool = pool.trajectories(hop, Scoring::Whole);
            Ok(pool.finite_difference_batch(&forward.inputs, &kept_thetas, &forward.grad_y, step))
        })
    }
}
