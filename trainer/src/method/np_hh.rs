//! NP-HH (DeepAFx-ST): the neural proxy forward and backward in training, so a step renders no plugin; the
//! real chain only at validation and inference. Fast, and as good as the proxy is.

use std::time::Instant;

use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::{DType, Device, Tensor};

use super::{GradMethod, MethodBatch, MethodStep, MethodTiming};
use crate::TrainError;
use crate::frontend::batch_tensor;

/// The `np-hh` gradient method (and, under another name, `proxy`).
pub struct NpHh {
    proxy: Proxy,
    loss: MrStftLoss,
    device: Device,
    name: &'static str,
}

impl NpHh {
    pub fn new(proxy: Proxy, loss: &MrStftConfig, device: &Device, name: &'static str) -> Result<NpHh, TrainError> {
        Ok(NpHh { proxy, loss: MrStftLoss::new(loss, DType::F32, device)?, device: device.clone(), name })
    }
}

impl GradMethod for NpHh {
    fn name(&self) -> &'static str {
        self.name
    }

    fn proxy(&self) -> Option<&Proxy> {
        Some(&self.proxy)
    }

    fn step(
        &mut self,
        _pool: &mut Pool,
        batch: MethodBatch<'_>,
        theta: &Tensor,
        _seed: u64,
    ) -> Result<MethodStep, TrainError> {
        let mut timing = MethodTiming::default();
        let started = Instant::now();
        let x = batch_tensor(&batch.inputs.iter().collect::<Vec<_>>(), &self.device)?;
        let y = self.proxy.forward_t(&x, theta, false)?;
        timing.proxy_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let target = batch_tensor(&batch.targets.iter().collect::<Vec<_>>(), &self.device)?;
        let loss = self.loss.forward(&y, &target)?;
        let value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        timing.loss_s = started.elapsed().as_secs_f64();
        if !value.is_finite() {
            // The proxy has no failure of its own; a non-finite loss means the proxy itself is broken.
            return Err(TrainError::Config(format!("the proxy's output gives a {value} loss")));
        }
        let ok = batch.inputs.len();
        Ok(MethodStep {
            surrogate: Some(loss),
            loss: value,
            ok,
            failed: 0,
            errors: vec![],
            timing,
            output: Some(y.detach()),
        })
    }
}
