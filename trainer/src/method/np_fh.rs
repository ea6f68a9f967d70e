//! NP-FH (DeepAFx-ST): the REAL chain forward, the neural proxy's gradient backward. The forward value is the
//! real output bit for bit (`afx_nn::straight::straight_through`), so the loss, its gradient dL/dy and the
//! metrics are those of the real chain; dy/dθ comes from the proxy. DeepAFx-ST's released code never ran this
//! path (an always-true comparison turned it into plain NP); `tests/np_fh.rs` counts the renders.

use std::time::Instant;

use afx_nn::straight::straight_through;
use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::Tensor;

use super::{GradMethod, MethodBatch, MethodStep, MethodTiming, ProxyPath, theta_rows};
use crate::TrainError;
use crate::frontend::batch_tensor;

/// The `np-fh` gradient method.
pub struct NpFh {
    path: ProxyPath,
}

impl NpFh {
    pub fn new(path: ProxyPath) -> NpFh {
        NpFh { path }
    }
}

impl GradMethod for NpFh {
    fn name(&self) -> &'static str {
        "np-fh"
    }

    fn proxy(&self) -> Option<&Proxy> {
        Some(self.path.proxy())
    }

    fn step(
        &mut self,
        pool: &mut Pool,
        batch: MethodBatch<'_>,
        theta: &Tensor,
        _seed: u64,
    ) -> Result<MethodStep, TrainError> {
        let mut timing = MethodTiming::default();
        let started = Instant::now();
        let rendered = pool.render_batch(batch.inputs, &theta_rows(theta)?);
        timing.render_s = started.elapsed().as_secs_f64();
        let (mut kept, mut outputs, mut errors) = (vec![], vec![], vec![]);
        for (i, r) in rendered.into_iter().enumerate() {
            match r {
                Ok(y) => {
                    kept.push(i as u32);
                    outputs.push(y);
                }
                Err(e) => errors.push(e),
            }
        }
        let failed = errors.len();
        if kept.is_empty() {
            return Ok(MethodStep { surrogate: None, loss: f64::NAN, ok: 0, failed, errors, timing, output: None });
        }
        let index = Tensor::new(kept.as_slice(), theta.device())?;
        let theta = theta.index_select(&index, 0)?;
        let inputs: Vec<_> = kept.iter().map(|&i| &batch.inputs[i as usize]).collect();
        let targets: Vec<_> = kept.iter().map(|&i| &batch.targets[i as usize]).collect();

        let y_proxy = self.path.forward(&inputs, &theta, &mut timing)?;
        let y_real = batch_tensor(&outputs.iter().collect::<Vec<_>>(), self.path.device())?;
        let y = straight_through(&y_real, &y_proxy)?;
        let (loss, value) = self.path.loss(&y, &targets, &mut timing)?;
        Ok(MethodStep {
            surrogate: Some(loss),
            loss: value,
            ok: kept.len(),
            failed,
            errors,
            timing,
            output: Some(y.detach()),
        })
    }
}
