//! AdamW whose state (first and second moments, step count) can be saved and restored, so a resumed run continues
//! exactly where it stopped. candle_nn's `AdamW` keeps its moments private; the update rule here is the same
//! (decoupled weight decay, bias-corrected moments).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var, bail};
use candle_nn::VarMap;

/// Hyper-parameters of [`AdamW`]; defaults as PyTorch's AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8, decay 0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// One trained variable with its moments.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW over every variable of a [`VarMap`], in name order. Variables that get no gradient in a step (e.g.
/// batch-norm running statistics) are left untouched, weight decay included, as candle_nn's AdamW does.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
    steps: u64,
}

/// Prefix of the optimizer's tensors in a state file: `adamw.m.<var>`, `adamw.v.<var>`, `adamw.step`.
pub const STATE_PREFIX: &str = "adamw.";

impl AdamW {
    /// Optimises all variables currently in `varmap` (build the model first).
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        let mut named: Vec<(String, Var)> = match varmap.data().lock() {
            Ok(data) => data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => bail!("adamw: the VarMap's lock is poisoned"),
        };
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, config, steps: 0 })
    }

    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    pub fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Number of updates applied so far (restored by [`AdamW::load_state`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Backpropagates `loss` and applies one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// Applies one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let AdamWConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        let exponent = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - beta1.powi(exponent));
        let scale_v = 1.0 / (1.0 - beta2.powi(exponent));
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let m = ((&slot.m * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((&slot.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + eps)?)?;
            let theta = ((slot.var.as_tensor() * (1.0 - lr * weight_decay))? - (update * lr)?)?;
            slot.var.set(&theta)?;
            // Gradients carry candle's op graph back into the step's forward pass; moments kept with it would
            // chain every step's graph to the next and hold them all in memory (a training run grew to 24 GB).
            slot.m = m.detach();
            slot.v = v.detach();
        }
        Ok(())
    }

    /// The optimizer state as named tensors (see [`STATE_PREFIX`]); the step count is an f64 scalar.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::new();
        for slot in &self.slots {
            state.insert(format!("{STATE_PREFIX}m.{}", slot.name), slot.m.clone());
            state.insert(format!("{STATE_PREFIX}v.{}", slot.name), slot.v.clone());
        }
        state.insert(format!("{STATE_PREFIX}step"), Tensor::new(self.steps as f64, &Device::Cpu)?);
        Ok(state)
    }

    /// Restores a state produced by [`AdamW::state`]. Every variable's moments must be present with the right shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String| match state.get(&key) {
            Some(t) => Ok(t),
            None => bail!("adamw state: missing tensor {key}"),
        };
        let steps = get(format!("{STATE_PREFIX}step"))?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let mut restored = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let moment = |which: &str| -> Result<Tensor> {
                let t = get(format!("{STATE_PREFIX}{which}.{}", slot.name))?;
                if t.dims() != slot.var.dims() {
                    bail!(
                        "adamw state: {which}.{} has shape {:?}, the variable {:?}",
                        slot.name,
                        t.dims(),
                        slot.var.dims()
                    )
                }
                t.to_dtype(slot.var.dtype())?.to_device(slot.var.device())
            };
            restored.push((moment("m")?, moment("v")?));
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(restored) {
            slot.m = m;
            slot.v = v;
        }
        self.steps = steps as u64;
        Ok(())
    }

    /// Global L2 norm of the gradients this optimizer would use from `grads`.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0.0;
        for slot in &self.slots {
            if let Some(g) = grads.get(slot.var.as_tensor()) {
                total += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
        }
        Ok(total.sqrt())
    }

    /// Scales the gradients in `grads` so their global norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&self, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        if norm > max_norm && norm.is_finite() {
            let scale = max_norm / norm;
            for slot in &self.slots {
                if let Some(g) = grads.remove(slot.var.as_tensor()) {
                    grads.insert(slot.var.as_tensor(), (g * scale)?);
                }
            }
        }
        Ok(norm)
    }
}

/// The learning rate of step `step` (1-based) of `steps` on a cosine from `lr` (step 1) to `lr_final` (step
/// `steps` and after): the schedule of both the trainer and the proxy.
///
/// ```
/// use afx_nn::optim::cosine_lr;
/// assert_eq!(cosine_lr(1, 100, 1e-3, 1e-4), 1e-3);
/// assert!((cosine_lr(100, 100, 1e-3, 1e-4) - 1e-4).abs() < 1e-12);
/// ```
pub fn cosine_lr(step: u64, steps: u64, lr: f64, lr_final: f64) -> f64 {
    let t = (step.saturating_sub(1) as f64 / steps.max(2).saturating_sub(1) as f64).min(1.0);
    lr_final + 0.5 * (lr - lr_final) * (1.0 + (std::f64::consts::PI * t).cos())
}
