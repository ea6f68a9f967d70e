//! Gradient methods: how dL/dθ is obtained when the chain has no gradient. Every method returns the gradient
//! as a VALUE, per item ([`Gradients`]): training injects it with the surrogate Σ θ·stopgrad(g)
//! ([`Gradients::surrogate`]), and gradient evaluation (`afx eval-grads`) compares the very same values
//! against a reference. One file per method behind one trait:
//! - [`spsa`]: the real chain forward, SPSA through the real chain backward (DeepAFx): 1 + 2K renders per item;
//! - [`fd`]: the real chain forward, central finite differences per parameter: 1 + 2P renders per item;
//! - [`exact`]: the real chain forward, the TRUE dy/dθ of afx's own test effect from its DSP twin (the
//!   "autodiff" row of DeepAFx-ST, for the one plugin whose insides afx knows);
//! - [`np_fh`]: the real chain forward, the neural proxy's gradient backward (the proxy's vector-Jacobian
//!   product at the REAL output's dL/dy);
//! - [`np_hh`]: the proxy forward and backward in training (no plugin renders in a step);
//! - [`proxy`]: the same training as `np-hh`, named for DeepAFx-ST's NP row.
//!
//! The methods that render the real chain share [`real_gradients`]: [`real_forward`] (render, keep or drop each
//! item, the per-item loss and dL/dy), then the method's own backward, timed. Validation always scores the REAL
//! chain's output, whatever the method; methods with a proxy also report the proxy's score of the same θ
//! (`proxy` in the validation record).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use afx_core::Audio;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_proxy::Proxy;
use afx_spsa::estimator::Scoring;
use afx_spsa::{ItemError, Pool};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::frontend::batch_tensor;

pub mod exact;
pub mod fd;
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
    Fd,
    Exact,
    NpFh,
    NpHh,
    Proxy,
}

impl GradKind {
    pub const ALL: [GradKind; 6] =
        [GradKind::Spsa, GradKind::Fd, GradKind::Exact, GradKind::NpFh, GradKind::NpHh, GradKind::Proxy];

    pub fn name(self) -> &'static str {
        match self {
            GradKind::Spsa => "spsa",
            GradKind::Fd => "fd",
            GradKind::Exact => "exact",
            GradKind::NpFh => "np-fh",
            GradKind::NpHh => "np-hh",
            GradKind::Proxy => "proxy",
        }
    }

    pub fn needs_proxy(self) -> bool {
        matches!(self, GradKind::NpFh | GradKind::NpHh | GradKind::Proxy)
    }

    /// Plugin renders per item of one gradient: the forward render plus the estimator's own.
    pub fn renders_per_item(self, num_params: usize, perturbations: u32) -> u64 {
        match self {
            GradKind::Spsa => 1 + 2 * u64::from(perturbations),
            GradKind::Fd => 1 + 2 * num_params as u64,
            GradKind::Exact | GradKind::NpFh => 1,
            GradKind::NpHh | GradKind::Proxy => 0,
        }
    }
}

impl std::fmt::Display for GradKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// The settings every method may read: the training loss, SPSA's ε and K, the finite-difference step.
#[derive(Debug, Clone)]
pub struct MethodSettings<'a> {
    pub spsa: &'a spsa::SpsaConfig,
    /// Central-difference step in normalised units (`fd`).
    pub fd_step: f32,
    pub proxy: Option<&'a PathBuf>,
}

/// Builds the method of `kind` for `chain` at `sample_rate`. Proxy methods load the proxy run and check that
/// it models `chain` at `sample_rate`; `exact` checks that `chain` is afx's test effect.
pub fn build(
    kind: GradKind,
    settings: &MethodSettings<'_>,
    chain: &ChainInfo,
    sample_rate: u32,
    device: &Device,
) -> Result<Box<dyn GradMethod>, TrainError> {
    let loss = settings.spsa.loss.clone();
    match kind {
        GradKind::Spsa => return Ok(Box::new(spsa::Spsa::new(settings.spsa.clone())?)),
        GradKind::Fd => return Ok(Box::new(fd::FiniteDifference::new(settings.fd_step, &loss)?)),
        GradKind::Exact => return Ok(Box::new(exact::Exact::new(chain, &loss)?)),
        GradKind::NpFh | GradKind::NpHh | GradKind::Proxy => {}
    }
    let Some(dir) = settings.proxy else {
        return Err(TrainError::Config(format!(
            "--grad {} needs a proxy: --proxy DIR (trained with `afx train-proxy`)",
            kind.name()
        )));
    };
    let proxy = Proxy::load(dir, device)?;
    let params: Vec<(&str, &afx_host::ParamSpec)> = chain.params.iter().map(|p| (p.stage.as_str(), &p.spec)).collect();
    proxy.check(&chain.name, &params, sample_rate)?;
    let path = ProxyPath::new(proxy, &loss, device)?;
    Ok(match kind {
        GradKind::NpFh => Box::new(np_fh::NpFh::new(path, &loss)?),
        GradKind::NpHh => Box::new(np_hh::NpHh::new(path, "np-hh")),
        _ => Box::new(proxy::proxy_method(path)),
    })
}

/// What a method sees of a step: the inputs the chain processes, the targets the output is scored against, and
/// the parameters θ to take the gradient at.
#[derive(Debug, Clone, Copy)]
pub struct MethodBatch<'a> {
    pub inputs: &'a [Audio],
    pub targets: &'a [Audio],
    /// Per item, audio the chain renders before its input and the loss ignores (a user pair's crop, see
    /// [`crate::pairs::PairBatch::preroll_a`]); empty: none. The real-chain methods honour it (their estimator
    /// renders include it, with dL/dy zero there); the proxy methods run the proxy on the inputs alone.
    pub preroll: &'a [Audio],
    /// θ in normalised units, only its values read: `(B, P)`, or `(B, F·P)` trajectories of F rows at `hop`.
    pub theta: &'a Tensor,
    /// Frames per row of a trajectory θ (row `f` from input frame `f·hop`, see `afx_host::automation`); 0 for
    /// one row of fixed values.
    pub hop: usize,
    /// Makes any randomness (perturbations) reproducible: item `i` uses `item_seed(seed, i)`.
    pub seed: u64,
}

impl<'a> MethodBatch<'a> {
    /// Inputs and targets without a pre-roll, at fixed θ `(B, P)`.
    pub fn new(inputs: &'a [Audio], targets: &'a [Audio], theta: &'a Tensor, seed: u64) -> MethodBatch<'a> {
        MethodBatch { inputs, targets, preroll: &[], theta, hop: 0, seed }
    }
}

/// Seconds spent in a method's parts of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodTiming {
    /// Forward renders of the real chain.
    pub render_s: f64,
    /// The audio loss and its gradient with respect to the rendered audio.
    pub loss_s: f64,
    /// The gradient estimate from dL/dy: SPSA or finite-difference renders, the test effect's exact
    /// sensitivities.
    pub spsa_s: f64,
    /// The neural proxy's forward and backward passes.
    #[serde(default)]
    pub proxy_s: f64,
}

/// One item's loss and gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemGradient {
    /// The item's own audio loss `L_i` (what the method scores: the real output, or the proxy's for np-hh).
    pub loss: f64,
    /// `dL_i/dθ_i`, P values in θ's normalised units.
    pub grad: Vec<f32>,
}

/// What a method returns for a batch: per item, its loss and dL/dθ, or why it failed.
#[derive(Debug)]
pub struct Gradients {
    pub items: Vec<Result<ItemGradient, ItemError>>,
    pub timing: MethodTiming,
    /// The audio each loss scored, one row per item that succeeded, in item order: the real chain's output for
    /// the methods that render, the proxy's for np-hh and proxy.
    pub output: Option<Tensor>,
}

impl Gradients {
    /// Items that gave a gradient.
    pub fn ok(&self) -> usize {
        self.items.iter().filter(|r| r.is_ok()).count()
    }

    /// The mean loss over the items that gave a gradient (NaN when none did).
    pub fn mean_loss(&self) -> f64 {
        let ok: Vec<f64> = self.items.iter().filter_map(|r| r.as_ref().ok().map(|g| g.loss)).collect();
        if ok.is_empty() { f64::NAN } else { ok.iter().sum::<f64>() / ok.len() as f64 }
    }

    /// Why items failed, in item order.
    pub fn errors(&self) -> impl Iterator<Item = &ItemError> {
        self.items.iter().filter_map(|r| r.as_ref().err())
    }

    /// The scalar whose backward puts the gradient of the batch's mean loss on θ `(B, P)`:
    /// `Σ_i θ_i · stopgrad(g_i) / n` over the n items that gave a gradient (failed items contribute nothing).
    /// `None` when no item did.
    pub fn surrogate(&self, theta: &Tensor) -> Result<Option<Tensor>, TrainError> {
        let ok = self.ok();
        if ok == 0 {
            return Ok(None);
        }
        let (batch, p) = theta.dims2()?;
        let mut rows = vec![0f32; batch * p];
        for (i, item) in self.items.iter().enumerate() {
            if let Ok(g) = item {
                for (dst, &v) in rows[i * p..(i + 1) * p].iter_mut().zip(&g.grad) {
                    *dst = v / ok as f32;
                }
            }
        }
        let g = Tensor::from_vec(rows, (batch, p), theta.device())?.to_dtype(theta.dtype())?;
        Ok(Some((theta * g.detach())?.sum_all()?))
    }
}

/// A way to obtain dL/dθ through the chain.
pub trait GradMethod {
    fn name(&self) -> &'static str;

    /// Per item of `batch`, at its θ: the loss and `dL_i/dθ_i`.
    fn gradients(&mut self, pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError>;

    /// The neural proxy the method trains through, if any (validation reports its score beside the real one).
    fn proxy(&self) -> Option<&Proxy> {
        None
    }
}

/// The real chain's outputs for a batch, each item's loss and dL/dy: what spsa, fd, exact and np-fh share.
pub struct RealForward {
    /// Per item: `Ok(position among the rendered items)` or why its render failed.
    pub status: Vec<Result<usize, ItemError>>,
    /// Indices of the items that rendered, in order.
    pub kept: Vec<usize>,
    /// The inputs of the items that rendered (after their pre-roll, if any), shared: the estimator jobs that
    /// render them again hold them without another copy.
    pub inputs: Vec<Arc<Audio>>,
    /// The rendered outputs `(kept, T)` as a tensor on the CPU.
    pub output: Option<Tensor>,
    /// Per rendered item: its loss and dL_i/dy_i (shared: SPSA and FD jobs hold them without a copy), as long
    /// as `inputs` (zero over a pre-roll).
    pub losses: Vec<f64>,
    pub grad_y: Vec<Arc<Audio>>,
}

impl RealForward {
    /// The entries of `all` (one per batch item) that belong to items that rendered, in order.
    pub fn kept_of<T: Clone>(&self, all: &[T]) -> Vec<T> {
        self.kept.iter().map(|&i| all[i].clone()).collect()
    }

    /// Per item, the gradient from `estimate` (called with the kept position and the item index) for items
    /// that rendered, and the render's error for those that did not. A non-finite gradient fails its item.
    pub fn gradients(self, chain: &str, thetas: &[Vec<f32>], estimates: Estimates, timing: MethodTiming) -> Gradients {
        let mut estimates = estimates.into_iter();
        let items = self
            .status
            .into_iter()
            .enumerate()
            .map(|(i, status)| {
                let k = status?;
                let grad = estimates.next().expect("one estimate per rendered item")?;
                if grad.iter().any(|v| !v.is_finite()) {
                    return Err(ItemError {
                        chain: chain.to_string(),
                        theta: thetas[i].clone(),
                        kind: afx_spsa::FailureKind::NonFinite("the gradient estimate is not finite".into()),
                        stderr: String::new(),
                    });
                }
                Ok(ItemGradient { loss: self.losses[k], grad })
            })
            .collect();
        Gradients { items, timing, output: self.output }
    }
}

/// Per rendered item (in order of [`RealForward::kept`]): its gradient estimate, or why its estimate failed.
pub type Estimates = Vec<Result<Vec<f32>, ItemError>>;

/// Which part of [`MethodTiming`] the backward of a method that renders the real chain counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backward {
    /// Estimator renders or the test effect's exact sensitivities (`spsa_s`).
    Estimator,
    /// The neural proxy's passes (`proxy_s`).
    Proxy,
}

/// The step every method that renders the real chain takes: `batch`'s θ as rows, [`real_forward`], then `backward`
/// (given the pool, the forward and θ's rows) estimates dL/dθ for the items that rendered; its seconds count as
/// `part`. A non-finite estimate fails its item ([`RealForward::gradients`]).
pub fn real_gradients(
    pool: &mut Pool,
    loss: &MrStftLoss,
    batch: MethodBatch<'_>,
    part: Backward,
    backward: impl FnOnce(&mut Pool, &RealForward, &[Vec<f32>]) -> Result<Estimates, TrainError>,
) -> Result<Gradients, TrainError> {
    let mut timing = MethodTiming::default();
    let thetas = theta_rows(batch.theta)?;
    let p = pool.num_params();
    let lead = lead_rows(batch.preroll, batch.hop, thetas.first().map_or(0, Vec::len), p)?;
    let rendered = over_preroll(&thetas, lead, p);
    let forward = real_forward(pool, loss, batch, &rendered, &mut timing)?;
    let started = Instant::now();
    let estimates = backward(pool, &forward, &rendered)?;
    let estimates = estimates.into_iter().map(|e| e.map(|g| fold_preroll(g, lead, p))).collect();
    let seconds = started.elapsed().as_secs_f64();
    match part {
        Backward::Estimator => timing.spsa_s = seconds,
        Backward::Proxy => timing.proxy_s = seconds,
    }
    Ok(forward.gradients(&pool.config().spec.chain, &thetas, estimates, timing))
}

/// Rows a trajectory θ of `len` values (P = `p` per row) gains over a pre-roll: with automation (`hop` > 0) the
/// chain renders the pre-roll first, so θ must cover it too: its frames in whole hops, each row held at the first
/// row's values. 0 without a pre-roll or for fixed parameters.
pub fn lead_rows(preroll: &[Audio], hop: usize, len: usize, p: usize) -> Result<usize, TrainError> {
    let Some(first) = preroll.first() else { return Ok(0) };
    if hop == 0 || len <= p {
        return Ok(0);
    }
    if !first.frames().is_multiple_of(hop) || preroll.iter().any(|x| x.frames() != first.frames()) {
        return Err(TrainError::Config(format!(
            "a pre-roll of {} frames is not whole hops of {hop}: a trajectory cannot cover it",
            first.frames()
        )));
    }
    Ok(first.frames() / hop)
}

/// Each θ with `lead` rows of its first row's values in front (see [`lead_rows`]).
pub fn over_preroll(thetas: &[Vec<f32>], lead: usize, p: usize) -> Vec<Vec<f32>> {
    if lead == 0 {
        return thetas.to_vec();
    }
    thetas.iter().map(|t| t[..p].repeat(lead).into_iter().chain(t.iter().copied()).collect()).collect()
}

/// The gradient of θ from the gradient of [`over_preroll`]'s θ: the lead rows are the first row held, so their
/// gradients add to its.
fn fold_preroll(mut grad: Vec<f32>, lead: usize, p: usize) -> Vec<f32> {
    if lead == 0 {
        return grad;
    }
    let mut first: Vec<f32> = grad[lead * p..(lead + 1) * p].to_vec();
    for row in grad[..lead * p].chunks_exact(p) {
        for (f, g) in first.iter_mut().zip(row) {
            *f += g;
        }
    }
    grad.drain(..lead * p);
    grad[..p].copy_from_slice(&first);
    grad
}

/// Renders `batch` at `thetas` through the pool, then the loss of every item that rendered and its gradient
/// dL_i/dy_i (candle's backward of the per-item loss with the audio as a leaf). Times go to `timing`.
pub fn real_forward(
    pool: &mut Pool,
    loss: &MrStftLoss,
    batch: MethodBatch<'_>,
    thetas: &[Vec<f32>],
    timing: &mut MethodTiming,
) -> Result<RealForward, TrainError> {
    let started = Instant::now();
    // Each input copied once, into the `Arc` that this render and the estimator's renders share (after its
    // pre-roll, if any).
    let all_inputs: Vec<Arc<Audio>> =
        crate::pairs::chain_inputs(batch.inputs, batch.preroll).into_iter().map(Arc::new).collect();
    let rendered = pool.trajectories(batch.hop, Scoring::Whole).render_batch(&all_inputs, thetas);
    timing.render_s = started.elapsed().as_secs_f64();
    let (mut status, mut kept, mut inputs, mut outputs) = (vec![], vec![], vec![], vec![]);
    for ((i, r), x) in rendered.into_iter().enumerate().zip(all_inputs) {
        match r {
            Ok(y) => {
                status.push(Ok(kept.len()));
                kept.push(i);
                inputs.push(x);
                outputs.push(y);
            }
            Err(e) => status.push(Err(e)),
        }
    }
    if kept.is_empty() {
        return Ok(RealForward { status, kept, inputs, output: None, losses: vec![], grad_y: vec![] });
    }
    let started = Instant::now();
    let targets: Vec<&Audio> = kept.iter().map(|&i| &batch.targets[i]).collect();
    if !batch.preroll.is_empty() {
        // The loss scores what follows the pre-roll; dL/dy is zero over it.
        outputs = outputs.iter().zip(&targets).map(|(y, t)| crate::pairs::tail(y, t.frames())).collect();
    }
    let LossGradient { output, losses, mut grad_y } =
        loss_gradient(loss, &outputs.iter().collect::<Vec<_>>(), &targets)?;
    if !batch.preroll.is_empty() {
        grad_y = grad_y
            .iter()
            .zip(&inputs)
            .map(|(g, x)| {
                let silence = Audio::silence(g.sample_rate(), g.num_channels(), x.frames() - g.frames());
                Arc::new(crate::pairs::with_preroll(&silence, g))
            })
            .collect();
    }
    timing.loss_s = started.elapsed().as_secs_f64();
    Ok(RealForward { status, kept, inputs, output: Some(output), losses, grad_y })
}

/// What [`loss_gradient`] gives.
pub struct LossGradient {
    /// The scored outputs `(B, T)` as a tensor on the CPU (detached).
    pub output: Tensor,
    /// Per item: its loss L_i.
    pub losses: Vec<f64>,
    /// Per item: dL_i/dy_i (shared: SPSA and FD jobs hold them without a copy).
    pub grad_y: Vec<Arc<Audio>>,
}

/// The loss of each output against its target and its gradient dL_i/dy_i: candle's backward of the per-item
/// loss with the audio as a leaf. The part of [`real_forward`] after the renders (all outputs the same length).
pub fn loss_gradient(loss: &MrStftLoss, outputs: &[&Audio], targets: &[&Audio]) -> Result<LossGradient, TrainError> {
    let Some(rate) = outputs.first().map(|y| y.sample_rate()) else {
        return Err(TrainError::Config("the loss needs at least one output".into()));
    };
    let y = Var::from_tensor(&batch_tensor(outputs, &Device::Cpu)?)?;
    let per_item = loss.per_item(y.as_tensor(), &batch_tensor(targets, &Device::Cpu)?)?;
    let losses: Vec<f64> = per_item.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
    // The items are independent, so the backward of the SUM gives each item the gradient of its own loss.
    let grads = per_item.sum_all()?.backward()?;
    let Some(g) = grads.get(y.as_tensor()) else {
        return Err(TrainError::Config("the loss does not depend on the rendered audio".into()));
    };
    let grad_y = g
        .to_vec2::<f32>()?
        .into_iter()
        .map(|row| Audio::new(rate, vec![row]).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Config(format!("loss gradient: {e}")))?;
    Ok(LossGradient { output: y.as_tensor().detach(), losses, grad_y })
}

/// What the proxy methods share: the proxy's forward pass on a batch and the audio loss on what they score.
pub struct ProxyPath {
    proxy: Proxy,
    loss: MrStftLoss,
    device: Device,
}

impl ProxyPath {
    pub fn new(proxy: Proxy, loss: &MrStftConfig, device: &Device) -> Result<ProxyPath, TrainError> {
        let loss = MrStftLoss::new(loss, DType::F32, device)?;
        Ok(ProxyPath { proxy, loss, device: device.clone() })
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The proxy's output `(B, T)` for `inputs` at θ (inference statistics; differentiable in θ).
    pub fn forward(&self, inputs: &[&Audio], theta: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.proxy.forward_t(&batch_tensor(inputs, &self.device)?, theta, false)?)
    }

    /// The per-item loss `(B,)` of `y` against `targets`.
    pub fn per_item_loss(&self, y: &Tensor, targets: &[&Audio]) -> Result<Tensor, TrainError> {
        Ok(self.loss.per_item(y, &batch_tensor(targets, &self.device)?)?)
    }

    /// The device the proxy runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A fresh leaf holding θ's values on `device` (f32), so a backward stops at θ and gives dL/dθ as a value.
pub(crate) fn theta_leaf(theta: &Tensor, device: &Device) -> Result<Var, TrainError> {
    Ok(Var::from_tensor(&theta.detach().to_dtype(DType::F32)?.to_device(device)?)?)
}

/// θ `(B, P)` as one `Vec` per item.
pub fn theta_rows(theta: &Tensor) -> Result<Vec<Vec<f32>>, TrainError> {
    Ok(theta.detach().to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trajectory_extends_over_a_preroll_and_its_gradient_folds_back() {
        let preroll = vec![Audio::silence(8000, 1, 300)];
        // P = 2, 3 rows at a hop of 100: the pre-roll adds 3 rows held at row 0.
        assert_eq!(lead_rows(&preroll, 100, 6, 2).unwrap(), 3);
        assert_eq!(lead_rows(&preroll, 100, 2, 2).unwrap(), 0, "fixed parameters render as they are");
        assert_eq!(lead_rows(&[], 100, 6, 2).unwrap(), 0);
        assert!(lead_rows(&preroll, 128, 6, 2).is_err(), "300 frames are not whole hops of 128");
        let theta = vec![vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]];
        let extended = over_preroll(&theta, 3, 2);
        assert_eq!(extended[0], vec![0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        let grad: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        // Row 0 gets the three lead rows' gradients too: (1 + 3 + 5 + 7, 2 + 4 + 6 + 8).
        assert_eq!(fold_preroll(grad, 3, 2), vec![16.0, 20.0, 9.0, 10.0, 11.0, 12.0]);
    }
}
