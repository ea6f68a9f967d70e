//! NP-HH (DeepAFx-ST): the neural proxy forward and backward in training, so a step renders no plugin; the
//! real chain only at validation and inference. Fast, and as good as the proxy is.

use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::Tensor;

use super::{GradMethod, MethodBatch, MethodStep, MethodTiming, ProxyPath};
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

    fn step(
        &mut self,
        _pool: &mut Pool,
        batch: MethodBatch<'_>,
        theta: &Tensor,
        _seed: u64,
    ) -> Result<MethodStep, TrainError> {
        let mut timing = MethodTiming::default();
        let y = self.path.forward(&batch.inputs.iter().collect::<Vec<_>>(), theta, &mut timing)?;
        let (loss, value) = self.path.loss(&y, &batch.targets.iter().collect::<Vec<_>>(), &mut timing)?;
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
