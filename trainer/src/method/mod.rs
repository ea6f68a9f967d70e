//! Gradient methods: how dL/dθ reaches the network when the chain has no gradient. One file per method behind
//! one trait, so the loop never changes:
//! - [`spsa`]: the real chain forward, SPSA through the real chain backward (DeepAFx);
//! - [`np_fh`]: the real chain forward, the neural proxy's gradient backward (`y = y_proxy + stopgrad(y_real −
//!   y_proxy)`, its value exactly the real output);
//! - [`np_hh`]: the proxy forward and backward in training (no plugin renders in a step);
//! - [`proxy`]: the same training as `np-hh`, named for DeepAFx-ST's NP row.
//!
//! Validation always scores the REAL chain's output, whatever the method; methods with a proxy also report the
//! proxy's score of the same θ (`proxy` in the validation record) to show the gap between the two.

use std::path::PathBuf;

use afx_host::Audio;
use afx_proxy::Proxy;
use afx_spsa::{ItemError, Pool};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::chain_info::ChainInfo;

pub mod np_fh;
pub mod np_hh;
pub mod proxy;
pub mod spsa;

/// Which gradient method a run trains with (`--grad`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradKind {
    #[default]
    Spsa,
    NpFh,
    NpHh,
    Proxy,
}

impl GradKind {
    pub const ALL: [GradKind; 4] = [GradKind::Spsa, GradKind::NpFh, GradKind::NpHh, GradKind::Proxy];

    pub fn name(self) -> &'static str {
        match self {
            GradKind::Spsa => "spsa",
            GradKind::NpFh => "np-fh",
            GradKind::NpHh => "np-hh",
            GradKind::Proxy => "proxy",
        }
    }

    pub fn needs_proxy(self) -> bool {
        self != GradKind::Spsa
    }
}

impl std::str::FromStr for GradKind {
    type Err = String;
    fn from_str(s: &str) -> Result<GradKind, String> {
        GradKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let valid: Vec<&str> = GradKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown gradient method {s:?}: valid methods are {}", valid.join(", "))
        })
    }
}

/// Builds the method of `kind`; proxy methods load the proxy run in `proxy` and check it models `chain` at
/// `sample_rate`.
pub fn build(
    kind: GradKind,
    spsa_config: &spsa::SpsaConfig,
    proxy_dir: Option<&PathBuf>,
    chain: &ChainInfo,
    sample_rate: u32,
    device: &Device,
) -> Result<Box<dyn GradMethod>, TrainError> {
    if kind == GradKind::Spsa {
        return Ok(Box::new(spsa::Spsa::new(spsa_config.clone())?));
    }
    let Some(dir) = proxy_dir else {
        return Err(TrainError::Config(format!(
            "--grad {} needs a proxy: --proxy DIR (trained with `afx train-proxy`)",
            kind.name()
        )));
    };
    let proxy = Proxy::load(dir, device)?;
    let params: Vec<(&str, &afx_host::ParamSpec)> = chain.params.iter().map(|p| (p.stage.as_str(), &p.spec)).collect();
    proxy.check(&chain.name, &params, sample_rate)?;
    let loss = spsa_config.loss_config();
    Ok(match kind {
        GradKind::NpFh => Box::new(np_fh::NpFh::new(ProxyPath::new(proxy, &loss, device)?)),
        GradKind::NpHh => Box::new(np_hh::NpHh::new(ProxyPath::new(proxy, &loss, device)?, "np-hh")),
        GradKind::Proxy => Box::new(proxy::proxy_method(ProxyPath::new(proxy, &loss, device)?)),
        GradKind::Spsa => unreachable!("handled above"),
    })
}

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
    /// The neural proxy's forward pass (its backward is part of the network's).
    #[serde(default)]
    pub proxy_s: f64,
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
    /// The audio the loss scored `(items that rendered, T)`: the real chain's output for spsa and np-fh, the
    /// proxy's for np-hh and proxy.
    pub output: Option<Tensor>,
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

    /// The neural proxy the method trains through, if any (validation reports its score beside the real one).
    fn proxy(&self) -> Option<&Proxy> {
        None
    }
}

/// What the proxy methods share: the proxy's forward pass on a batch and the audio loss on what they score.
pub struct ProxyPath {
    proxy: Proxy,
    loss: afx_nn::loss::MrStftLoss,
    device: Device,
}

impl ProxyPath {
    pub fn new(proxy: Proxy, loss: &afx_nn::loss::MrStftConfig, device: &Device) -> Result<ProxyPath, TrainError> {
        let loss = afx_nn::loss::MrStftLoss::new(loss, candle_core::DType::F32, device)?;
        Ok(ProxyPath { proxy, loss, device: device.clone() })
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The proxy's output `(B, T)` for `inputs` at θ (inference statistics; differentiable in θ); its time goes
    /// to `timing.proxy_s`.
    pub fn forward(&self, inputs: &[&Audio], theta: &Tensor, timing: &mut MethodTiming) -> Result<Tensor, TrainError> {
        let started = std::time::Instant::now();
        let y = self.proxy.forward_t(&crate::frontend::batch_tensor(inputs, &self.device)?, theta, false)?;
        timing.proxy_s = started.elapsed().as_secs_f64();
        Ok(y)
    }

    /// The loss of `y` against `targets` and its value; its time goes to `timing.loss_s`.
    pub fn loss(&self, y: &Tensor, targets: &[&Audio], timing: &mut MethodTiming) -> Result<(Tensor, f64), TrainError> {
        let started = std::time::Instant::now();
        let loss = self.loss.forward(y, &crate::frontend::batch_tensor(targets, &self.device)?)?;
        let value = f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
        timing.loss_s = started.elapsed().as_secs_f64();
        Ok((loss, value))
    }

    /// The device the proxy runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// θ `(B, P)` as one `Vec` per item.
pub fn theta_rows(theta: &Tensor) -> Result<Vec<Vec<f32>>, TrainError> {
    Ok(theta.detach().to_dtype(candle_core::DType::F32)?.to_device(&candle_core::Device::Cpu)?.to_vec2()?)
}
