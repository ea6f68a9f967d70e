//! NP-HH (DeepAFx-ST): the neural proxy forward and backward in training, so a step renders no plugin; the
//! real chain only at validation and inference. Fast, and as good as the proxy is.

use std::time::Instant;

use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::Device;

use super::{GradMethod, Gradients, ItemGradient, MethodBatch, MethodTiming, ProxyPath, theta_leaf};
use crate::TrainError;

/// The `np-hh` gradient method (and, under another name, `proxy`).
pub struct NpHh {
    path: ProxyPath,
    name: &'static str,
}

impl NpHh {
    pub fn new(path: ProxyPath, name: &'static str) -> NpHh {
        NpHh { path, name }
    }
}

impl GradMethod for NpHh {
    fn name(&self) -> &'static str {
        self.name
    }

    fn proxy(&self) -> Option<&Proxy> {
        Some(self.path.proxy())
    }

    fn gradients(&mut self, _pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError> {
        let mut timing = MethodTiming::default();
        let started = Instant::now();
        let theta = batch.theta;
        let leaf = theta_leaf(theta, self.path.device())?;
        let y = self.path.forward(&batch.inputs.iter().collect::<Vec<_>>(), leaf.as_tensor())?;
        timing.proxy_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let per_item = self.path.per_item_loss(&y, &batch.targets.iter().collect::<Vec<_>>())?;
        let losses: Vec<f32> = per_item.to_device(&Device::Cpu)?.to_vec1()?;
        if let Some(bad) = losses.iter().find(|l| !l.is_finite()) {
            // The proxy has no failure of its own; a non-finite loss means the proxy itself is broken.
            return Err(TrainError::Config(format!("the proxy's output gives a {bad} loss")));
        }
        let grads = per_item.sum_all()?.backward()?;
        timing.loss_s = started.elapsed().as_secs_f64();
        let g: Vec<Vec<f32>> = match grads.get(leaf.as_tensor()) {
            Some(g) => g.to_device(&Device::Cpu)?.to_vec2()?,
            None => vec![vec![0.0; theta.dim(1)?]; losses.len()],
        };
        let items =
            losses.iter().zip(g).map(|(&loss, grad)| Ok(ItemGradient { loss: f64::from(loss), grad })).collect();
        Ok(Gradients { items, timing, output: Some(y.detach()) })
    }
}
