//! [`Trainer`]: the model, its optimizer and the gradient method; one [`Trainer::step`] is one update, and a
//! checkpoint saves or restores all of it.

use std::path::Path;
use std::time::Instant;

use afx_core::{Audio, RunFolder};
use afx_nn::checkpoint;
use afx_nn::optim::AdamW;
use afx_spsa::{Pool, item_seed};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::config::TrainConfig;
use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::frontend::Frontend;
use crate::method::{self, GradMethod, Gradients, MethodBatch, theta_rows};
use crate::metrics::StepRecord;
use crate::model::{Model, seeded_init};
use crate::pairs::{PairRequest, PairSource};
use crate::run::{self, CheckpointMeta, OptimizerMeta, RngState};
use crate::timing::StepTiming;

/// Seeds of the streams derived from the run's seed (distinct constants keep them independent).
const STEP_STREAM: u64 = 0x5354_4550; // "STEP"
const SPSA_STREAM: usize = 1 << 20;
/// A run gives up after this many batches in a row in which every item failed.
const MAX_FAILED_BATCHES: usize = 10;

/// Model, optimizer and gradient method; one [`Trainer::step`] is one update.
pub struct Trainer {
    // `validation.rs` reads the config, chain, device, method and step count; the rest is this module's.
    pub(super) config: TrainConfig,
    pub(super) chain: ChainInfo,
    pub(super) device: Device,
    varmap: VarMap,
    model: Model,
    frontend: Frontend,
    optimizer: AdamW,
    pub(super) method: Box<dyn GradMethod>,
    pub(super) step: u64,
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

    /// Predicted θ `(B, P)` for mono clips at the training rate, all the same length (L); with automation
    /// `(B, F·P)`, F rows of parameters (see [`TrainConfig::rows`]).
    pub fn predict(&self, inputs: &[&Audio], references: &[&Audio]) -> Result<Tensor, TrainError> {
        let (x, r) = self.features(inputs, references)?;
        self.forward_features(&x, &r)
    }

    /// The encoder's inputs: the front end's log-STFT of the inputs and of the references (first part of
    /// [`Trainer::predict`]).
    pub fn features(&self, inputs: &[&Audio], references: &[&Audio]) -> Result<(Tensor, Tensor), TrainError> {
        let x = self.frontend.features_of(inputs, &self.device)?;
        let r = self.frontend.features_of(references, &self.device)?;
        Ok((x, r))
    }

    /// θ `(B, P)` (or `(B, F·P)`) from [`Trainer::features`]: encoder and controller (second part of
    /// [`Trainer::predict`]).
    pub fn forward_features(&self, inputs: &Tensor, references: &Tensor) -> Result<Tensor, TrainError> {
        Ok(match self.config.automation_hop {
            None => self.model.forward(inputs, references)?,
            Some(_) => {
                self.model.forward_trajectory(inputs, references, self.config.rows(), self.config.fixed_parameters)?
            }
        })
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
        let hop = self.config.automation_hop.unwrap_or(0);
        PairRequest { frames: self.config.frames(), batch, corruption: self.config.corruption, seed, hop }
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

            let batch = MethodBatch {
                preroll: &pairs.preroll_a,
                hop: self.config.automation_hop.unwrap_or(0),
                ..MethodBatch::new(&pairs.input_a, &pairs.target_a, &theta, item_seed(seed, SPSA_STREAM))
            };
            let out = self.method.gradients(pool, batch)?;
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

pub(super) fn refs(v: &[Audio]) -> Vec<&Audio> {
    v.iter().collect()
}

pub(super) fn mean_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            sum += f64::from((p - q).abs());
            n += 1;
        }
    }
    sum / n.max(1) as f64
}
