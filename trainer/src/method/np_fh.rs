//! NP-FH (DeepAFx-ST): the REAL chain forward, the neural proxy's gradient backward. The loss, its gradient
//! dL/dy and the metrics are those of the real chain's output; dy/dθ comes from the proxy, as the
//! vector-Jacobian product `(∂y_proxy/∂θ)ᵀ dL/dy` at the real output's dL/dy: the gradient of
//! `y = y_proxy + stopgrad(y_real − y_proxy)`. DeepAFx-ST's released code never ran this path (an always-true
//! comparison turned it into plain NP); `tests/methods.rs` counts the renders.

use afx_nn::loss::MrStftLoss;
use afx_proxy::Proxy;
use afx_spsa::Pool;
use candle_core::{DType, Device, Tensor};

use super::{Backward, GradMethod, Gradients, MethodBatch, ProxyPath, real_gradients, theta_leaf};
use crate::TrainError;
use crate::frontend::batch_tensor;

/// The `np-fh` gradient method.
pub struct NpFh {
    path: ProxyPath,
    /// The loss on the real output, on the CPU where the rendered audio is.
    loss: MrStftLoss,
}

impl NpFh {
    pub fn new(path: ProxyPath, loss: &afx_nn::loss::MrStftConfig) -> Result<NpFh, TrainError> {
        Ok(NpFh { path, loss: MrStftLoss::new(loss, DType::F32, &Device::Cpu)? })
    }
}

impl GradMethod for NpFh {
    fn name(&self) -> &'static str {
        "np-fh"
    }

    fn proxy(&self) -> Option<&Proxy> {
        Some(self.path.proxy())
    }

    fn gradients(&mut self, pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError> {
        let (path, theta) = (&self.path, batch.theta);
        real_gradients(pool, &self.loss, batch, Backward::Proxy, |_, forward, _| {
            if forward.kept.is_empty() {
                return Ok(vec![]);
            }
            let device = path.device();
            let index = Tensor::new(forward.kept.iter().map(|&i| i as u32).collect::<Vec<_>>().as_slice(), device)?;
            let leaf = theta_leaf(&theta.to_device(device)?.index_select(&index, 0)?, device)?;
            let inputs: Vec<_> = forward.inputs.iter().map(|x| &**x).collect();
            let y_proxy = path.forward(&inputs, leaf.as_tensor())?;
            let g_y = batch_tensor(&forward.grad_y.iter().map(|g| &**g).collect::<Vec<_>>(), device)?;
            let grads = (&y_proxy * g_y.detach())?.sum_all()?.backward()?;
            let g: Vec<Vec<f32>> = match grads.get(leaf.as_tensor()) {
                Some(g) => g.to_device(&Device::Cpu)?.to_vec2()?,
                None => vec![vec![0.0; theta.dim(1)?]; forward.kept.len()],
            };
            Ok(g.into_iter().map(Ok).collect())
        })
    }
}
