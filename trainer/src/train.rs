//! The training loop: [`Trainer`] (model, optimizer, one step, validation) and [`train`] / [`resume`], which add
//! the run folder (metrics, checkpoints, plot, report).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afx_core::RunFolder;
use afx_nn::checkpoint;
use afx_nn::loss::MrStftLoss;
use afx_nn::optim::{AdamW, AdamWConfig};
use afx_spsa::{Pool, item_seed};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::frontend::{Frontend, batch_tensor};
use crate::method::spsa::SpsaConfig;
use crate::method::{self, GradKind, GradMethod, Gradients, MethodBatch, theta_rows};
use crate::metrics::{Baselines, PairValidation, ParamErrors, Record, StepRecord, ValidationRecord};
use crate::model::{Model, ModelConfig, seeded_init};
use crate::pairs::{Corruption, PairBatch, PairInfo, PairRequest, PairSource, uniform};
use crate::run::{self, CheckpointMeta, OptimizerMeta, RngState};
use crate::timing::StepTiming;

/// Everything that shapes a run. Stored in the run folder and in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Training steps; also the horizon of the learning-rate decay.
    pub steps: u64,
    /// Stop earlier after this many minutes of training (wall clock of this process).
    pub minutes: Option<f64>,
    pub batch: usize,
    /// Learning rate at step 1, decayed along a cosine to `lr_final` at `steps`: SPSA with a constant rate
    /// climbed back up late in the measurement on this chain (notes/anchors.md).
    pub lr: f64,
    pub lr_final: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip of the network's update (SPSA estimates have heavy tails).
    pub grad_clip: f64,
    pub seed: u64,
    /// Length L of each half (input_A, reference_B) in seconds.
    pub clip_seconds: f64,
    /// The training and analysis rate.
    pub sample_rate: u32,
    pub corruption: Corruption,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    pub val_items: usize,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// The gradient method (`--grad`).
    #[serde(default)]
    pub grad: GradKind,
    /// The proxy run the proxy methods train through (`--proxy`).
    #[serde(default)]
    pub proxy: Option<PathBuf>,
    /// SPSA's settings; its MRSTFT settings are every method's training loss.
    pub spsa: SpsaConfig,
    /// The model's reference is silence (`--no-reference`, a pair folder of one fixed style): inference then
    /// needs no reference either.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_reference: bool,
    /// Pairs held out of a pair folder for validation (`--val-pairs`; `None` for synthetic pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_pairs: Option<usize>,
    /// The central-difference step of `--grad fd`, in normalised units.
    #[serde(default = "default_fd_step")]
    pub fd_step: f32,
    pub model: ModelConfig,
}

impl Default for TrainConfig {
    /// Sized for 2 CPU cores: 1 s halves at 22.05 kHz, batch 8, Adam at 1e-3 decaying to 1e-4 (DeepAFx-ST's 1e-5
    /// is for hundreds of thousands of GPU steps; here a run has hundreds to a few thousand).
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            minutes: None,
            batch: 8,
            lr: 1e-3,
            lr_final: 1e-4,
            weight_decay: 0.0,
            grad_clip: 1.0,
            seed: 0,
            clip_seconds: 1.0,
            sample_rate: 22_050,
            corruption: Corruption::None,
            val_every: 50,
            val_items: 16,
            checkpoint_every: 50,
            grad: GradKind::Spsa,
            proxy: None,
            spsa: SpsaConfig::default(),
            no_reference: false,
            val_pairs: None,
            fd_step: default_fd_step(),
            model: ModelConfig::default(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// 0.01: as SPSA's ε, a step that moves a real plugin's output measurably while staying local.
fn default_fd_step() -> f32 {
    0.01
}

impl TrainConfig {
    /// Frames per half (L).
    pub fn frames(&self) -> usize {
        (self.clip_seconds * f64::from(self.sample_rate)).round() as usize
    }

    /// The learning rate of step `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        afx_nn::optim::cosine_lr(step, self.steps, self.lr, self.lr_final)
    }

    /// The optimizer's settings at step 1.
    pub fn adam(&self) -> AdamWConfig {
        AdamWConfig { lr: self.lr, weight_decay: self.weight_decay, ..AdamWConfig::default() }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.batch == 0 || self.steps == 0 || self.val_items == 0 {
            return bad("steps, batch and val_items must be positive".into());
        }
        if self.val_every == 0 || self.checkpoint_every == 0 {
            return bad("val_every and checkpoint_every must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr_final > 0.0) {
            return bad(format!("learning rates must be positive (lr {}, lr_final {})", self.lr, self.lr_final));
        }
        if !(self.spsa.epsilon > 0.0 && self.spsa.epsilon < 0.5) || self.spsa.perturbations == 0 {
            return bad(format!(
                "spsa: need 0 < epsilon < 0.5 and K >= 1 (got {}, {})",
                self.spsa.epsilon, self.spsa.perturbations
            ));
        }
        if !(self.fd_step > 0.0 && self.fd_step < 0.5) {
            return bad(format!("fd: need 0 < step < 0.5 (got {})", self.fd_step));
        }
        if self.grad.needs_proxy() && self.proxy.is_none() {
            return bad(format!(
                "--grad {} needs --proxy DIR (a proxy trained with `afx train-proxy`)",
                self.grad.name()
            ));
        }
        if self.frames() < self.model.n_fft {
            return bad(format!(
                "clip_seconds {} gives {} frames at {} Hz, fewer than model.n_fft {}",
                self.clip_seconds,
                self.frames(),
                self.sample_rate,
                self.model.n_fft
            ));
        }
        self.model.validate().map_err(TrainError::Config)
    }
}

/// Seeds of the streams derived from the run's seed (distinct constants keep them independent).
const STEP_STREAM: u64 = 0x5354_4550; // "STEP"
const VALIDATION_STREAM: u64 = 0x5641_4c49; // "VALI"
const SPSA_STREAM: usize = 1 << 20;
/// A run gives up after this many batches in a row in which every item failed.
const MAX_FAILED_BATCHES: usize = 10;

/// Model, optimizer and gradient method; one [`Trainer::step`] is one update.
pub struct Trainer {
    config: TrainConfig,
    chain: ChainInfo,
    device: Device,
    varmap: VarMap,
    model: Model,
    frontend: Frontend,
    optimizer: AdamW,
    method: Box<dyn GradMethod>,
    step: u64,
    failed_batches: usize,
}

impl Trainer {
    /// A fresh model initialised from the config's seed.
    pub fn new(config: TrainConfig, chain: ChainInfo, device: Device) -> Result<Trainer, TrainError> {
        config.validate()?;
        if chain.num_params() == 0 {
            return Err(TrainError::Config(format!("chain {:?} has no trainable parameters", chain.name)));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let model = Model::new(&config.model, chain.num_params(), vb)?;
        seeded_init(&varmap, config.seed)?;
        let frontend = Frontend::new(config.model.n_fft, config.model.hop, &device)?;
        let optimizer = AdamW::new(&varmap, config.adam())?;
        let settings =
            method::MethodSettings { spsa: &config.spsa, fd_step: config.fd_step, proxy: config.proxy.as_ref() };
        let method = method::build(config.grad, &settings, &chain, config.sample_rate, &device)?;
        Ok(Trainer { config, chain, device, varmap, model, frontend, optimizer, method, step: 0, failed_batches: 0 })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn chain(&self) -> &ChainInfo {
        &self.chain
    }

    /// Steps completed.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Predicted θ `(B, P)` for mono clips at the training rate, all the same length.
    pub fn predict(&self, inputs: &[&afx_host::Audio], references: &[&afx_host::Audio]) -> Result<Tensor, TrainError> {
        let (x, r) = self.features(inputs, references)?;
        self.forward_features(&x, &r)
    }

    /// The encoder's inputs: the front end's log-STFT of the inputs and of the references (first part of
    /// [`Trainer::predict`]).
    pub fn features(
        &self,
        inputs: &[&afx_host::Audio],
        references: &[&afx_host::Audio],
    ) -> Result<(Tensor, Tensor), TrainError> {
        let x = self.frontend.features_of(inputs, &self.device)?;
        let r = self.frontend.features_of(references, &self.device)?;
        Ok((x, r))
    }

    /// θ `(B, P)` from [`Trainer::features`]: encoder and controller (second part of [`Trainer::predict`]).
    pub fn forward_features(&self, inputs: &Tensor, references: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.model.forward(inputs, references)?)
    }

    /// The update of a step from a method's gradients at the predicted θ: backward of the surrogate
    /// Σ θ·stopgrad(g) through controller and encoder, the gradient-norm clip, then AdamW at `lr`. False (no
    /// update) when no item gave a gradient.
    pub fn update(&mut self, gradients: &Gradients, theta: &Tensor, lr: f64) -> Result<bool, TrainError> {
        let Some(surrogate) = gradients.surrogate(theta)? else { return Ok(false) };
        let mut grads = surrogate.backward()?;
        self.optimizer.clip_grad_norm(&mut grads, self.config.grad_clip)?;
        self.optimizer.set_learning_rate(lr);
        self.optimizer.step(&grads)?;
        Ok(true)
    }

    /// The request for `batch` items with `seed` (the config's L and corruption).
    fn request(&self, batch: usize, seed: u64) -> PairRequest {
        PairRequest { frames: self.config.frames(), batch, corruption: self.config.corruption, seed }
    }

    /// One update on a fresh batch from `source` (a [`PairSource`]; any [`crate::ClipSource`] is one).
    pub fn step<S: PairSource + ?Sized>(&mut self, pool: &mut Pool, source: &S) -> Result<StepRecord, TrainError> {
        let started = Instant::now();
        let step = self.step + 1;
        let seed = item_seed(self.config.seed ^ STEP_STREAM, step as usize);
        let mut timing = StepTiming::default();

        let t = Instant::now();
        let pairs = source.batch(pool, &self.request(self.config.batch, seed))?;
        timing.data_s = t.elapsed().as_secs_f64();
        let (mut ok, mut failed, mut loss, mut param_error) = (0, pairs.failed, f64::NAN, f64::NAN);
        let mut last_error = pairs.errors.last().map(|e| e.to_string());
        let lr = self.config.lr_at(step);
        if !pairs.is_empty() {
            let t = Instant::now();
            let theta = self.predict(&refs(&pairs.input_a), &refs(&pairs.reference_b))?;
            timing.encoder_forward_s = t.elapsed().as_secs_f64();
            if let Some(theta_star) = &pairs.theta_star {
                param_error = mean_abs_diff(&theta_rows(&theta)?, theta_star);
            }

            let batch = MethodBatch { inputs: &pairs.input_a, targets: &pairs.target_a, preroll: &pairs.preroll_a };
            let out = self.method.gradients(pool, batch, &theta, item_seed(seed, SPSA_STREAM))?;
            timing.render_s = out.timing.render_s;
            timing.loss_s = out.timing.loss_s;
            timing.spsa_s = out.timing.spsa_s;
            timing.proxy_s = out.timing.proxy_s;
            (ok, loss) = (out.ok(), out.mean_loss());
            failed += out.items.len() - ok;
            if let Some(e) = out.errors().last() {
                last_error = Some(e.to_string());
            }
            let t = Instant::now();
            if self.update(&out, &theta, lr)? {
                timing.backward_s = t.elapsed().as_secs_f64();
            }
        }
        for e in pairs.errors.iter() {
            tracing::warn!(step, "item dropped: {e}");
        }
        self.failed_batches = if ok == 0 { self.failed_batches + 1 } else { 0 };
        if self.failed_batches >= MAX_FAILED_BATCHES {
            return Err(TrainError::AllFailed {
                consecutive: self.failed_batches,
                last: last_error.unwrap_or_else(|| "no error recorded".into()),
            });
        }
        self.step = step;
        timing.total_s = started.elapsed().as_secs_f64();
        Ok(StepRecord { step, loss, lr, ok, failed, param_error, timing })
    }

    /// MRSTFT of the trained prediction, the input, the defaults and random θ against target_A, on the REAL
    /// chain, and the parameter errors.
    ///
    /// The baselines (input, defaults, random θ) do not depend on the model: the first validation on `set`
    /// renders and scores them and later ones reuse them, so a later validation renders only the trained θ.
    /// Means are over the items in which every render succeeded; an item in which any failed is counted in
    /// `failed`. When every item failed the means are NaN (no score, not a perfect one) and a warning says so.
    pub fn validate(&self, pool: &mut Pool, set: &ValidationSet) -> Result<ValidationRecord, TrainError> {
        Ok(self.validate_pairs(pool, set)?.0)
    }

    /// [`Trainer::validate`], and for a set of named pairs (a pair folder's held-out pairs) each pair's scores
    /// and predicted parameters in plain units (empty for synthetic pairs).
    pub fn validate_pairs(
        &self,
        pool: &mut Pool,
        set: &ValidationSet,
    ) -> Result<(ValidationRecord, Vec<PairValidation>), TrainError> {
        let pairs = &set.pairs;
        let n = pairs.len();
        let predicted = self.predict(&refs(&pairs.input_a), &refs(&pairs.reference_b))?;
        let theta = theta_rows(&predicted)?;
        let defaults = vec![self.chain.default_theta(); n];
        let loss = MrStftLoss::new(&self.config.spsa.loss.mrstft_without_l1(), DType::F32, &Device::Cpu)?;
        let score = |outputs: &[Option<&afx_host::Audio>]| -> Result<Vec<Option<f64>>, TrainError> {
            outputs
                .iter()
                .zip(&pairs.target_a)
                .map(|(y, target)| match y {
                    Some(y) => {
                        let y = batch_tensor(&[y], &Device::Cpu)?;
                        let t = batch_tensor(&[target], &Device::Cpu)?;
                        Ok(Some(f64::from(loss.forward(&y, &t)?.to_scalar::<f32>()?)))
                    }
                    None => Ok(None),
                })
                .collect()
        };
        // Through the chain after each item's pre-roll, scored after it (a source without one: as they are).
        let prerolled =
            (!pairs.preroll_a.is_empty()).then(|| crate::pairs::chain_inputs(&pairs.input_a, &pairs.preroll_a));
        let render = |pool: &mut Pool, thetas: &[Vec<f32>]| -> Vec<Option<afx_host::Audio>> {
            let outputs = pool.render_batch(prerolled.as_deref().unwrap_or(&pairs.input_a), thetas);
            let scored = |(i, y): (usize, afx_host::Audio)| match prerolled {
                Some(_) => crate::pairs::tail(&y, pairs.input_a[i].frames()),
                None => y,
            };
            outputs.into_iter().enumerate().map(|(i, y)| y.ok().map(|y| scored((i, y)))).collect()
        };
        let rendered = |pool: &mut Pool, thetas: &[Vec<f32>]| -> Result<Vec<Option<f64>>, TrainError> {
            score(&render(pool, thetas).iter().map(Option::as_ref).collect::<Vec<_>>())
        };
        let trained_out = render(pool, &theta);
        let trained = score(&trained_out.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let proxy_score: Option<Vec<Option<f64>>> = match self.method.proxy() {
            Some(proxy) => {
                let x = batch_tensor(&refs(&pairs.input_a), &self.device)?;
                let y = proxy.forward(&x, &predicted)?.to_device(&Device::Cpu)?;
                let target = batch_tensor(&refs(&pairs.target_a), &Device::Cpu)?;
                let scores: Vec<f32> = loss.per_item(&y, &target)?.to_vec1()?;
                Some(scores.into_iter().map(|s| Some(f64::from(s))).collect())
            }
            None => None,
        };
        let baselines = match set.baselines.get() {
            Some(baselines) => baselines,
            None => {
                let baselines = BaselineScores {
                    input: score(&pairs.input_a.iter().map(Some).collect::<Vec<_>>())?,
                    default: rendered(pool, &defaults)?,
                    random: rendered(pool, &set.random_theta)?,
                };
                set.baselines.get_or_init(|| baselines)
            }
        };
        // Compare like with like: an item counts only where every variant rendered, and it failed where any did not.
        let variants = [&trained, &baselines.input, &baselines.default, &baselines.random];
        let usable: Vec<usize> = (0..n).filter(|&i| variants.iter().all(|v| v[i].is_some())).collect();
        let failed = n - usable.len();
        if usable.is_empty() {
            tracing::warn!(
                step = self.step,
                failed,
                "validation at step {}: every one of its {n} items failed to render, so it has no score (NaN)",
                self.step
            );
        }
        let mean = |v: &[Option<f64>]| match usable.len() {
            0 => f64::NAN,
            k => usable.iter().map(|&i| v[i].unwrap_or(f64::NAN)).sum::<f64>() / k as f64,
        };
        let mut per_pair = vec![];
        for (i, name) in pairs.names.iter().enumerate() {
            let target = &pairs.target_a[i];
            let lu = |y: &afx_host::Audio| crate::loudness::loudness_error(y, target);
            per_pair.push(PairValidation {
                name: name.clone(),
                mrstft_before: baselines.input[i],
                mrstft_after: trained[i],
                loudness_before_lu: lu(&pairs.input_a[i]),
                loudness_after_lu: trained_out[i].as_ref().map(lu),
                params: crate::infer::predicted_params(&self.chain, &theta[i])?,
            });
        }
        let record = ValidationRecord {
            step: self.step,
            items: usable.len(),
            failed,
            mrstft: Baselines {
                trained: mean(&trained),
                input: mean(&baselines.input),
                default: mean(&baselines.default),
                random: mean(&baselines.random),
            },
            proxy: proxy_score.as_deref().map(mean),
            param_error: pairs.theta_star.as_ref().map(|theta_star| ParamErrors {
                trained: mean_abs_diff(&theta, theta_star),
                default: mean_abs_diff(&defaults, theta_star),
                random: mean_abs_diff(&set.random_theta, theta_star),
            }),
        };
        Ok((record, per_pair))
    }

    /// Writes the checkpoint after the steps done so far, then prunes old ones.
    pub fn save_checkpoint(&self, run: &Path) -> Result<(), TrainError> {
        let dir = RunFolder::new(run).checkpoints();
        std::fs::create_dir_all(dir.path()).map_err(TrainError::io(dir.path()))?;
        let (weights, meta_path) = dir.paths(self.step);
        checkpoint::save(&weights, &self.varmap, Some(&self.optimizer), afx_core::atomic::write)?;
        let meta = CheckpointMeta {
            format_version: run::FORMAT_VERSION,
            chain: self.chain.clone(),
            sample_rate: self.config.sample_rate,
            model: self.config.model.clone(),
            config: self.config.clone(),
            step: self.step,
            rng: RngState { seed: self.config.seed, next_step: self.step + 1 },
            optimizer: OptimizerMeta { lr: self.optimizer.learning_rate(), updates: self.optimizer.steps() },
            weights: weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        afx_core::run_folder::write_json(&meta_path, &meta)?;
        dir.prune(run::KEEP).map_err(TrainError::io(dir.path()))
    }

    /// Rebuilds a trainer from a checkpoint (weights, optimizer moments, step).
    pub fn from_checkpoint(meta: &CheckpointMeta, weights: &Path, device: Device) -> Result<Trainer, TrainError> {
        let mut trainer = Trainer::new(meta.config.clone(), meta.chain.clone(), device)?;
        checkpoint::load(weights, &trainer.varmap, Some(&mut trainer.optimizer))?;
        trainer.optimizer.set_learning_rate(meta.optimizer.lr);
        trainer.step = meta.step;
        Ok(trainer)
    }
}

/// Held-out pairs and the random-θ baseline, fixed for the whole run (one set per process: a resumed run makes
/// it again, the same).
///
/// The baselines' per-item scores are kept from the first [`Trainer::validate`] on, so a set belongs to one run
/// (one chain and loss) and its pairs and `random_theta` must not change after its first validation.
pub struct ValidationSet {
    pub pairs: PairBatch,
    pub random_theta: Vec<Vec<f32>>,
    baselines: OnceCell<BaselineScores>,
}

/// Per-item MRSTFT against target_A of the rows that do not depend on the model: the input itself, the chain's
/// defaults and random θ (`None` where the render failed).
struct BaselineScores {
    input: Vec<Option<f64>>,
    default: Vec<Option<f64>>,
    random: Vec<Option<f64>>,
}

impl ValidationSet {
    /// The held-out pairs of `source` ([`PairSource::held_out`]): `config.val_items` synthetic ones, or each of a
    /// pair folder's held-out pairs.
    pub fn new<S: PairSource + ?Sized>(
        config: &TrainConfig,
        pool: &mut Pool,
        source: &S,
    ) -> Result<ValidationSet, TrainError> {
        let seed = item_seed(config.seed ^ VALIDATION_STREAM, 0);
        let request =
            PairRequest { frames: config.frames(), batch: config.val_items, corruption: config.corruption, seed };
        let pairs = source.held_out(pool, &request)?;
        if pairs.is_empty() {
            return Err(TrainError::NoData(format!(
                "no validation pair rendered: {}",
                pairs.errors.first().map_or("no error".into(), |e| e.to_string())
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, 1 << 30));
        let random_theta = (0..pairs.len()).map(|_| uniform(&mut rng, pool.num_params())).collect();
        Ok(ValidationSet { pairs, random_theta, baselines: OnceCell::new() })
    }
}

/// Training and validation pairs: a corpus (any [`crate::ClipSource`]: synthetic pairs) or a pair folder's two
/// sides ([`crate::pairs::PairFolder::training`] and `validation`).
#[derive(Clone, Copy)]
pub struct Data<'a> {
    pub train: &'a dyn PairSource,
    pub validation: &'a dyn PairSource,
}

/// Called after every step (progress bars).
pub type StepCallback<'a> = Box<dyn FnMut(&StepRecord) + 'a>;
/// Called after every validation.
pub type ValidationCallback<'a> = Box<dyn FnMut(&ValidationRecord) + 'a>;

/// What the caller can watch and change about a run.
pub struct TrainOptions<'a> {
    pub device: Device,
    /// Called after every step (progress bars).
    pub on_step: Option<StepCallback<'a>>,
    pub on_validation: Option<ValidationCallback<'a>>,
    /// Return after this many steps in total WITHOUT a final checkpoint, plot or report, as if the process had
    /// been killed there (tests of resume use it).
    pub stop_after: Option<u64>,
}

impl Default for TrainOptions<'_> {
    fn default() -> Self {
        TrainOptions { device: Device::Cpu, on_step: None, on_validation: None, stop_after: None }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps: u64,
    /// The last validation (at the end of the run).
    pub validation: Option<ValidationRecord>,
    /// Items dropped over the run (this process's part).
    pub failed_items: usize,
    /// True when the run stopped at `stop_after` (no final checkpoint).
    pub interrupted: bool,
    pub mean_step_s: f64,
}

/// Starts a run in `run_dir` (created; refused if it already holds checkpoints).
pub fn train(
    run_dir: &Path,
    config: &TrainConfig,
    chain: &ChainInfo,
    pool: &mut Pool,
    data: Data<'_>,
    options: TrainOptions<'_>,
) -> Result<TrainSummary, TrainError> {
    let folder = RunFolder::new(run_dir);
    if folder.latest_checkpoint::<CheckpointMeta>()?.is_some() {
        return Err(TrainError::RunExists { run: run_dir.to_path_buf() });
    }
    check_pool(pool, chain)?;
    std::fs::create_dir_all(run_dir).map_err(TrainError::io(run_dir))?;
    folder.write_config(&RunConfig { config: config.clone(), chain: chain.clone() })?;
    let metrics_path = folder.metrics_path();
    if metrics_path.exists() {
        std::fs::remove_file(&metrics_path).map_err(TrainError::io(&metrics_path))?;
    }
    let trainer = Trainer::new(config.clone(), chain.clone(), options.device.clone())?;
    run_loop(run_dir, trainer, pool, data, options, vec![])
}

/// Continues the run in `run_dir` from its newest checkpoint: the same batches, perturbations and learning rates
/// as if it had never stopped; only the steps after that checkpoint are redone. `chain` must have the run's
/// parameter list.
pub fn resume(
    run_dir: &Path,
    chain: &ChainInfo,
    pool: &mut Pool,
    data: Data<'_>,
    options: TrainOptions<'_>,
) -> Result<TrainSummary, TrainError> {
    resume_with(run_dir, None, chain, pool, data, options)
}

/// [`resume`], training for as long as `config` says: `config` may differ from the run's own only in `steps`
/// and `minutes`, so a finished run can go on to more steps. A longer `steps` stretches the learning-rate decay
/// from the checkpoint on (the run is then not the one that `steps` from the start would have made). Any other
/// setting that differs is refused, naming it: a run with another batch size, learning rate or gradient method
/// is another run.
pub fn resume_with(
    run_dir: &Path,
    config: Option<&TrainConfig>,
    chain: &ChainInfo,
    pool: &mut Pool,
    data: Data<'_>,
    options: TrainOptions<'_>,
) -> Result<TrainSummary, TrainError> {
    let folder = RunFolder::new(run_dir);
    let Some((mut meta, weights)) = folder.latest_checkpoint::<CheckpointMeta>()? else {
        return Err(TrainError::NoCheckpoint { run: run_dir.to_path_buf() });
    };
    run::check_chain(run_dir, &meta.chain, chain)?;
    check_pool(pool, chain)?;
    if let Some(config) = config.filter(|c| **c != meta.config) {
        let changed = changed_settings(&meta.config, config);
        if !changed.is_empty() {
            return Err(TrainError::Config(format!(
                "resuming {} keeps its settings, but {} (only steps and minutes may change; train another run \
                 in a new folder to change the rest)",
                run_dir.display(),
                changed.join(", ")
            )));
        }
        if config.steps < meta.step {
            return Err(TrainError::Config(format!(
                "steps {}: the run in {} has done {} steps already",
                config.steps,
                run_dir.display(),
                meta.step
            )));
        }
        meta.config = config.clone();
        folder.write_config(&RunConfig { config: config.clone(), chain: chain.clone() })?;
    }
    let trainer = Trainer::from_checkpoint(&meta, &weights, options.device.clone())?;
    let history = folder.truncate_metrics(meta.step)?;
    tracing::info!(run = %run_dir.display(), step = meta.step, "resuming");
    run_loop(run_dir, trainer, pool, data, options, history)
}

/// The settings of `new` that differ from `run`'s, as `name is new (the run's: old)`, leaving out how long it
/// trains (`steps`, `minutes`).
fn changed_settings(run: &TrainConfig, new: &TrainConfig) -> Vec<String> {
    let shape = |c: &TrainConfig| {
        let value =
            serde_json::to_value(TrainConfig { steps: 0, minutes: None, ..c.clone() }).expect("a config serialises");
        let mut flat = BTreeMap::new();
        flatten("", &value, &mut flat);
        flat
    };
    let (before, after) = (shape(run), shape(new));
    after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(value))
        .map(|(name, value)| format!("{name} is {value} (the run's: {})", before.get(name).unwrap_or(&"none".into())))
        .collect()
}

/// `value`'s leaves by dotted name (`spsa.epsilon`), as JSON text.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&name, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}

/// `config.json` of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub config: TrainConfig,
    pub chain: ChainInfo,
}

fn check_pool(pool: &Pool, chain: &ChainInfo) -> Result<(), TrainError> {
    if pool.num_params() != chain.num_params() {
        return Err(TrainError::Config(format!(
            "the worker pool hosts {} parameters but chain {:?} has {}",
            pool.num_params(),
            chain.name,
            chain.num_params()
        )));
    }
    Ok(())
}

fn run_loop(
    run_dir: &Path,
    mut trainer: Trainer,
    pool: &mut Pool,
    data: Data<'_>,
    mut options: TrainOptions<'_>,
    mut history: Vec<Record>,
) -> Result<TrainSummary, TrainError> {
    let config = trainer.config().clone();
    // Made once per process and kept: its baselines are rendered at the first validation only.
    let validation_set = ValidationSet::new(&config, pool, data.validation)?;
    if let Some(pairs) = data.train.pairs_manifest() {
        RunFolder::new(run_dir).write_json(PAIRS_FILE, &pairs)?;
    }
    let mut per_pair: Option<Vec<PairValidation>> = None;
    let mut log = RunFolder::new(run_dir).metrics_log::<Record>()?;
    let deadline = config.minutes.map(|m| Instant::now() + Duration::from_secs_f64(m * 60.0));
    let (mut failed_items, mut step_seconds, mut steps_run) = (0, 0.0, 0u64);
    let mut last_validation: Option<ValidationRecord> = None;
    while trainer.steps_done() < config.steps {
        let record = trainer.step(pool, data.train)?;
        failed_items += record.failed;
        step_seconds += record.timing.total_s;
        steps_run += 1;
        let step = record.step;
        if let Some(f) = options.on_step.as_mut() {
            f(&record);
        }
        let record = Record::Step(record);
        log.append(&record)?;
        history.push(record);
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        let last = step == config.steps || out_of_time;
        if step % config.val_every == 0 || last {
            let (v, pairs) = trainer.validate_pairs(pool, &validation_set)?;
            per_pair = Some(pairs);
            tracing::info!(
                step,
                items = v.items,
                failed = v.failed,
                trained = v.mrstft.trained,
                input = v.mrstft.input,
                default = v.mrstft.default,
                random = v.mrstft.random,
                "validation"
            );
            if let Some(f) = options.on_validation.as_mut() {
                f(&v);
            }
            log.append(&Record::Validation(v.clone()))?;
            history.push(Record::Validation(v.clone()));
            last_validation = Some(v);
        }
        if options.stop_after == Some(step) {
            return Ok(TrainSummary {
                steps: step,
                validation: last_validation,
                failed_items,
                interrupted: true,
                mean_step_s: step_seconds / steps_run as f64,
            });
        }
        if step % config.checkpoint_every == 0 || last {
            trainer.save_checkpoint(run_dir)?;
        }
        if out_of_time {
            break;
        }
    }
    let plot_path = run_dir.join("loss.png");
    if let Err(e) = crate::plot::loss_curve(&plot_path, &history) {
        tracing::warn!("{e}");
    }
    let validation = last_validation.or_else(|| {
        history.iter().rev().find_map(|r| match r {
            Record::Validation(v) => Some(v.clone()),
            _ => None,
        })
    });
    let summary = TrainSummary {
        steps: trainer.steps_done(),
        validation,
        failed_items,
        interrupted: false,
        mean_step_s: step_seconds / steps_run.max(1) as f64,
    };
    // A run resumed after its last step validated nothing in this process: its pairs are scored once here.
    let per_pair = match per_pair {
        Some(p) => p,
        None if !validation_set.pairs.names.is_empty() => trainer.validate_pairs(pool, &validation_set)?.1,
        None => vec![],
    };
    if !per_pair.is_empty() {
        RunFolder::new(run_dir).write_json(VALIDATION_PAIRS_FILE, &per_pair)?;
    }
    let pairs = data.train.pairs_manifest();
    let report = Report { data: data.train.describe(), pairs: pairs.as_deref(), per_pair: &per_pair };
    write_report(run_dir, &trainer, &summary, &report)?;
    Ok(summary)
}

/// `pairs.json`: a pair folder's pairs, their offsets and which are held out.
pub const PAIRS_FILE: &str = "pairs.json";
/// `validation_pairs.json`: the last validation of each held-out pair of a pair folder.
pub const VALIDATION_PAIRS_FILE: &str = "validation_pairs.json";

/// What the report says about the data.
struct Report<'a> {
    /// The training source's description.
    data: String,
    pairs: Option<&'a [PairInfo]>,
    /// The last validation of each held-out pair (empty for synthetic pairs).
    per_pair: &'a [PairValidation],
}

fn write_report(
    run_dir: &Path,
    trainer: &Trainer,
    summary: &TrainSummary,
    report: &Report<'_>,
) -> Result<(), TrainError> {
    let config = trainer.config();
    let mut text = format!(
        "# afx training report\n\nChain `{}` ({}), gradient method {}, {} steps of batch {}, \
         {:.2} s halves at {} Hz, lr {} → {} (cosine), mean {:.2} s per step, {} failed items.\n\nData: {}{}.\n\n",
        trainer.chain().name,
        trainer.chain().describe(),
        method_description(config),
        summary.steps,
        config.batch,
        config.clip_seconds,
        config.sample_rate,
        config.lr,
        config.lr_final,
        summary.mean_step_s,
        summary.failed_items,
        report.data,
        if config.no_reference { "; no style reference (the model's reference is silence)" } else { "" },
    );
    let target = if report.per_pair.is_empty() { "target_A" } else { "processed" };
    let dash = || "–".to_string();
    let pe = |v: &ValidationRecord, f: fn(&ParamErrors) -> f64| {
        v.param_error.as_ref().map_or_else(dash, |p| format!("{:.4}", f(p)))
    };
    match &summary.validation {
        Some(v) if v.items == 0 => text.push_str(&format!(
            "## Final validation (step {}, real chain): no score\n\nEvery one of its {} items failed: in each, the \
             trained model's, the default or the random parameters' render failed, so nothing was scored (its \
             means are NaN, `null` in `metrics.jsonl`).\n\n",
            v.step, v.failed,
        )),
        Some(v) => text.push_str(&format!(
            "## Final validation (step {}, {} held-out pairs{}, real chain)\n\n\
             | prediction | MRSTFT vs {target} | mean abs(θ − θ*) |\n| --- | --- | --- |\n\
             | trained model | {:.4} | {} |\n| input (unprocessed) | {:.4} | – |\n\
             | default parameters | {:.4} | {} |\n| random parameters | {:.4} | {} |\n\n\
             Trained vs input: {:+.1} %; vs default: {:+.1} %.{}\n\n",
            v.step,
            v.items,
            if v.failed > 0 {
                format!("; {} more left out, a render of theirs failed", v.failed)
            } else {
                String::new()
            },
            v.mrstft.trained,
            pe(v, |p| p.trained),
            v.mrstft.input,
            v.mrstft.default,
            pe(v, |p| p.default),
            v.mrstft.random,
            pe(v, |p| p.random),
            100.0 * (v.mrstft.trained / v.mrstft.input - 1.0),
            100.0 * (v.mrstft.trained / v.mrstft.default - 1.0),
            if v.param_error.is_none() { " θ* is unknown for a user's pairs: no parameter error." } else { "" },
        )),
        None => {}
    }
    if !report.per_pair.is_empty() {
        text.push_str(&pair_tables(report.per_pair));
    }
    if let Some(pairs) = report.pairs {
        text.push_str(&offset_table(pairs));
    }
    text.push_str(
        "`loss.png`: loss against step on a log y axis, with a legend: the training loss of every step and its \
         moving average over 20 steps, and the validation MRSTFT of the trained model, default parameters and \
         random parameters.\n",
    );
    Ok(RunFolder::new(run_dir).write_file("report.md", text.as_bytes())?)
}

/// Per held-out pair: MRSTFT and loudness error against the processed file, before (the raw input) and after
/// (the trained model's render), and the predicted parameters in plain units.
fn pair_tables(per_pair: &[PairValidation]) -> String {
    let opt = |v: Option<f64>, digits: usize| v.map_or_else(|| "failed".to_string(), |x| format!("{x:.digits$}"));
    let mut text = String::from(
        "## Held-out pairs (final validation, real chain)\n\nAgainst each pair's processed file, on its validation \
         crop (the loudest window of the raw file): before = the raw input, after = the trained model's render. \
         Loudness error = |loudness − the processed crop's| (EBU R128, LU).\n\n\
         | pair | MRSTFT before | MRSTFT after | loudness error before (LU) | loudness error after (LU) |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for p in per_pair {
        text.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} |\n",
            p.name,
            opt(p.mrstft_before, 4),
            opt(p.mrstft_after, 4),
            p.loudness_before_lu,
            opt(p.loudness_after_lu, 2)
        ));
    }
    text.push('\n');
    for p in per_pair {
        text.push_str(&format!(
            "Predicted parameters for `{}`:\n\n| parameter | value | unit |\n| --- | --- | --- |\n",
            p.name
        ));
        for q in &p.params {
            text.push_str(&format!(
                "| {}.{} ({}) | {:.4} | {} |\n",
                q.stage,
                q.id,
                q.name,
                q.plain,
                q.unit.as_deref().filter(|u| !u.is_empty()).unwrap_or("–")
            ));
        }
        text.push('\n');
    }
    text
}

/// Every pair's measured offset (positive: processed lags raw) and role.
fn offset_table(pairs: &[PairInfo]) -> String {
    let mut text = String::from(
        "## Pairs (`pairs.json`)\n\nOffset of each processed file against its raw file, by cross-correlation \
         (positive: processed lags raw); shifted = moved back by it and cropped to the overlap (`--align`).\n\n\
         | pair | offset (ms) | offset (samples) | shifted | held out |\n| --- | --- | --- | --- | --- |\n",
    );
    for p in pairs {
        text.push_str(&format!(
            "| {} | {:.2} | {} at {} Hz | {} | {} |\n",
            p.name,
            p.offset_ms,
            p.offset_frames,
            p.sample_rate,
            if p.shifted { "yes" } else { "no" },
            if p.held_out { "yes" } else { "no" }
        ));
    }
    text.push('\n');
    text
}

fn method_description(config: &TrainConfig) -> String {
    match (config.grad, &config.proxy) {
        (GradKind::Spsa, _) => format!("spsa (ε = {}, K = {})", config.spsa.epsilon, config.spsa.perturbations),
        (GradKind::Fd, _) => format!("fd (h = {})", config.fd_step),
        (kind, Some(proxy)) => format!("{} (proxy {})", kind.name(), proxy.display()),
        (kind, None) => kind.name().to_string(),
    }
}

fn refs(v: &[afx_host::Audio]) -> Vec<&afx_host::Audio> {
    v.iter().collect()
}

fn mean_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            sum += f64::from((p - q).abs());
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of one parameter (no plugin is loaded: the report only names it).
    fn one_param() -> ChainInfo {
        let spec = afx_host::ParamSpec {
            id: "gain".into(),
            name: "Gain".into(),
            unit: Some("dB".into()),
            min: -24.0,
            max: 12.0,
            default: 0.0,
            scale: afx_host::Scale::Linear,
            kind: afx_host::ParamKind::Continuous,
        };
        let param = crate::chain_info::TrainedParam { stage: "fx".into(), default_normalized: 2.0 / 3.0, spec };
        ChainInfo { name: "fx".into(), params: vec![param], stages: vec![] }
    }

    #[test]
    fn the_report_of_a_validation_in_which_every_item_failed_gives_no_score() {
        let trainer = Trainer::new(TrainConfig::default(), one_param(), Device::Cpu).unwrap();
        let nan = f64::NAN;
        let v = ValidationRecord {
            step: 7,
            items: 0,
            failed: 8,
            mrstft: Baselines { trained: nan, input: nan, default: nan, random: nan },
            proxy: None,
            param_error: Some(ParamErrors { trained: 0.3, default: 0.2, random: 0.4 }),
        };
        let summary =
            TrainSummary { steps: 7, validation: Some(v), failed_items: 0, interrupted: false, mean_step_s: 1.0 };
        let dir = tempfile::tempdir().unwrap();
        let report = Report { data: "test".into(), pairs: None, per_pair: &[] };
        write_report(dir.path(), &trainer, &summary, &report).unwrap();
        let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        // No table of means (NaN on main before this fix: 0.0000, a perfect-looking score), and why.
        assert!(!report.contains("| trained model |") && !report.contains("| NaN"), "{report}");
        assert!(report.contains("no score") && report.contains("Every one of its 8 items failed"), "{report}");
    }

    #[test]
    fn the_report_of_a_pair_folder_run_has_a_table_per_held_out_pair_and_no_parameter_error() {
        let trainer =
            Trainer::new(TrainConfig { no_reference: true, ..TrainConfig::default() }, one_param(), Device::Cpu)
                .unwrap();
        let v = ValidationRecord {
            step: 60,
            items: 1,
            failed: 0,
            mrstft: Baselines { trained: 0.8, input: 4.0, default: 2.0, random: 3.0 },
            proxy: None,
            param_error: None,
        };
        let summary =
            TrainSummary { steps: 60, validation: Some(v), failed_items: 0, interrupted: false, mean_step_s: 1.0 };
        let per_pair = vec![PairValidation {
            name: "drums_03.wav".into(),
            mrstft_before: Some(4.0),
            mrstft_after: Some(0.8),
            loudness_before_lu: 9.5,
            loudness_after_lu: Some(0.4),
            params: crate::infer::predicted_params(trainer.chain(), &[0.75]).unwrap(),
        }];
        let pairs = vec![PairInfo {
            name: "drums_03.wav".into(),
            sample_rate: 22_050,
            frames: 44_100,
            offset_frames: 154,
            offset_ms: 6.984,
            shifted: true,
            held_out: true,
        }];
        let report = Report { data: "pairs".into(), pairs: Some(&pairs), per_pair: &per_pair };
        let dir = tempfile::tempdir().unwrap();
        write_report(dir.path(), &trainer, &summary, &report).unwrap();
        let text = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(text.contains("| trained model | 0.8000 | – |"), "{text}");
        assert!(text.contains("| drums_03.wav | 4.0000 | 0.8000 | 9.50 | 0.40 |"), "{text}");
        // 0.75 of −24..12 dB is 3 dB.
        assert!(text.contains("| fx.gain (Gain) | 3.0000 | dB |"), "{text}");
        assert!(text.contains("| drums_03.wav | 6.98 | 154 at 22050 Hz | yes | yes |"), "{text}");
        assert!(text.contains("no style reference"), "{text}");
    }
}
