//! NP-FH (DeepAFx-ST): the REAL chain forward, the neural proxy's gradient backward. The forward value is the
//! real output bit for bit (`afx_nn::straight::straight_through`), so the loss, its gradient dL/dy and the
//! metrics are those of the real chain; dy/dθ comes from the proxy. DeepAFx-ST's released code never ran this
//! path (an always-true comparison turned it into plain NP); `tests/np_fh.rs` counts the renders.

use std::time::Instant;

use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_nn::straight::straight_through;
use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::{DType, Device, Tensor};

use super::{GradMethod, MethodBatch, MethodStep, MethodTiming, theta_rows};
use crate::TrainError;
use crate::frontend::batch_tensor;

/// The `np-fh` gradient method.
pub struct NpFh {
    proxy: Proxy,
    loss: MrStftLoss,
    device: Device,
}

impl NpFh {
    pub fn new(proxy: Proxy, loss: &MrStftConfig, device: &Device) -> Result<NpFh, TrainError> {
        Ok(NpFh { proxy, loss: MrStftLoss::new(loss, DType::F32, device)?, device: device.clone() })
    }
}

impl GradMethod for NpFh {
    fn name(&self) -> &'static str {
        "np-fh"
    }

    fn proxy(&self) -> Option<&Proxy> {
        Some(&self.proxy)
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

        let started = Instant::now();
        let y_proxy = self.proxy.forward_t(&batch_tensor(&inputs, &self.device)?, &theta, false)?;
        timing.proxy_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let y_real = batch_tensor(&outputs.iter().collect::<Vec<_>>(), &self.device)?;
        let y = straight_through(&y_real, &y_proxy)?;
        let loss = self.loss.forward(&y, &batch_tensor(&targets, &self.device)?)?;
        let value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        timing.loss_s = started.elapsed().as_secs_f64();
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
