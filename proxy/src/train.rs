//! `afx train-proxy`: fit the conditional TCN to a collection of real-chain renders.
//!
//! ```text
//! PROXY/config.json                   ProxyRun: training config, what the proxy models, the dataset folder
//! PROXY/metrics.jsonl                 one JSON object per step and per validation
//! PROXY/checkpoints/step-N.{safetensors,json}   weights + AdamW moments, ProxyCheckpoint (two kept)
//! PROXY/report.md                     proxy vs identity on the held-out shards, at the end
//! ```
//! Each step draws `batch` examples and one patch of each: `patch` frames at a random offset, preceded by a
//! receptive field of context (zeros before the example's start, which is the plugin's fresh state). The loss is
//! MRSTFT + w·L1 on the patch. Every draw of step t derives from (seed, t), so a resumed run repeats exactly
//! what the uninterrupted run would have done.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afx_core::RunFolder;
use afx_core::run_folder::{self, CheckpointMeta, MetricsRecord};
use afx_nn::checkpoint;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_nn::optim::{AdamW, AdamWConfig};
use afx_report::Table;
use afx_spsa::item_seed;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ProxyError;
use crate::dataset::Dataset;
use crate::model::{Proxy, ProxyMeta};
use crate::quality::{self, Quality};
use crate::tcn::TcnConfig;

/// Version of the proxy run layout.
pub const FORMAT_VERSION: u32 = 1;
/// Checkpoints kept: the newest two.
const KEEP: usize = 2;
const STEP_STREAM: u64 = 0x5052_4f58; // "PROX"

/// Everything that shapes a proxy run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTrainConfig {
    pub steps: u64,
    /// Stop earlier after this many minutes (wall clock of this process).
    pub minutes: Option<f64>,
    pub batch: usize,
    /// Frames of each training patch the loss sees (after a receptive field of context).
    pub patch: usize,
    /// Learning rate at step 1, cosine-decayed to `lr_final` at `steps`.
    pub lr: f64,
    pub lr_final: f64,
    pub grad_clip: f64,
    pub seed: u64,
    /// Validate and checkpoint every this many steps (and at the end).
    pub val_every: u64,
    /// Held-out examples scored per validation (at most; all of the held-out shards when fewer).
    pub val_items: usize,
    pub fft_sizes: Vec<usize>,
    /// Weight of the time-domain L1 term. DeepAFx-ST used 100; here outputs span ±40 dB between settings and
    /// 100 · L1 of the loudest items drowned the MRSTFT (the held-out score stalled), so 1.
    pub time_l1_weight: f64,
    pub tcn: TcnConfig,
}

impl Default for ProxyTrainConfig {
    fn default() -> Self {
        ProxyTrainConfig {
            steps: 2000,
            minutes: None,
            batch: 8,
            patch: 8192,
            lr: 3e-3,
            lr_final: 1e-4,
            grad_clip: 1.0,
            seed: 0,
            val_every: 100,
            val_items: 64,
            // The trainer's MRSTFT resolutions, so proxy and controller scores are comparable.
            fft_sizes: vec![256, 512, 1024],
            time_l1_weight: 1.0,
            tcn: TcnConfig::default(),
        }
    }
}

impl ProxyTrainConfig {
    pub fn lr_at(&self, step: u64) -> f64 {
        afx_nn::optim::cosine_lr(step, self.steps, self.lr, self.lr_final)
    }

    /// The optimizer's settings at step 1 (no weight decay).
    pub fn adam(&self) -> AdamWConfig {
        AdamWConfig { lr: self.lr, weight_decay: 0.0, ..AdamWConfig::default() }
    }

    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |m: String| Err(ProxyError::Config(m));
        if self.steps == 0 || self.batch == 0 || self.patch == 0 || self.val_every == 0 || self.val_items == 0 {
            return bad("steps, batch, patch, val_every and val_items must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr_final > 0.0) {
            return bad(format!("learning rates must be positive (lr {}, lr_final {})", self.lr, self.lr_final));
        }
        if self.fft_sizes.iter().any(|&n| n < 4 || n > self.patch) || self.fft_sizes.is_empty() {
            return bad(format!("fft sizes {:?} must lie in 4..=patch ({})", self.fft_sizes, self.patch));
        }
        self.tcn.validate().map_err(ProxyError::Config)
    }
}

/// `config.json` of a proxy run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRun {
    pub config: ProxyTrainConfig,
    pub meta: ProxyMeta,
    /// The collection it trains on (resume reads it again).
    pub dataset: PathBuf,
}

/// Beside each checkpoint's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyCheckpoint {
    pub format_version: u32,
    pub meta: ProxyMeta,
    pub config: ProxyTrainConfig,
    pub step: u64,
    pub lr: f64,
    pub updates: u64,
    /// The safetensors file beside this one.
    pub weights: String,
    pub validation: Option<Quality>,
}

impl CheckpointMeta for ProxyCheckpoint {
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    const FORMAT_NAME: &'static str = "proxy";

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn weights(&self) -> &str {
        &self.weights
    }
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Step { step: u64, loss: f64, lr: f64, seconds: f64 },
    Validation(Quality),
}

impl MetricsRecord for Record {
    fn step(&self) -> u64 {
        match self {
            Record::Step { step, .. } => *step,
            Record::Validation(q) => q.step,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct ProxySummary {
    pub steps: u64,
    pub validation: Option<Quality>,
    pub mean_step_s: f64,
    pub minutes: f64,
    /// Stopped at `stop_after` (no final checkpoint or report).
    pub interrupted: bool,
}

/// Called after every step with (step, loss).
pub type StepCallback<'a> = Box<dyn FnMut(u64, f64) + 'a>;
/// Called after every validation.
pub type ValidationCallback<'a> = Box<dyn FnMut(&Quality) + 'a>;

/// What the caller can watch and change.
pub struct ProxyTrainOptions<'a> {
    pub device: Device,
    pub on_step: Option<StepCallback<'a>>,
    pub on_validation: Option<ValidationCallback<'a>>,
    /// Return after this many steps in total without a final checkpoint, as if killed (resume tests).
    pub stop_after: Option<u64>,
}

impl Default for ProxyTrainOptions<'_> {
    fn default() -> Self {
        ProxyTrainOptions { device: Device::Cpu, on_step: None, on_validation: None, stop_after: None }
    }
}

/// The newest checkpoint of a proxy run and the path of its weights.
pub fn latest_checkpoint(run: &Path) -> Result<Option<(ProxyCheckpoint, PathBuf)>, ProxyError> {
    Ok(RunFolder::new(run).latest_checkpoint()?)
}

/// Starts a proxy run in `out` on the collection in `data`; `meta` says what it models (from the chain the
/// collection was rendered with) and must match the collection's parameter list.
pub fn train_proxy(
    out: &Path,
    data: &Path,
    meta: ProxyMeta,
    config: &ProxyTrainConfig,
    options: ProxyTrainOptions<'_>,
) -> Result<ProxySummary, ProxyError> {
    config.validate()?;
    let folder = RunFolder::new(out);
    if folder.latest_checkpoint::<ProxyCheckpoint>()?.is_some() {
        return Err(ProxyError::RunExists { path: out.to_path_buf() });
    }
    let dataset = Dataset::open(data)?;
    check_dataset(data, &dataset, &meta)?;
    std::fs::create_dir_all(out).map_err(ProxyError::io(out))?;
    let run = ProxyRun { config: config.clone(), meta, dataset: data.to_path_buf() };
    folder.write_config(&run)?;
    let metrics = folder.metrics_path();
    if metrics.exists() {
        std::fs::remove_file(&metrics).map_err(ProxyError::io(&metrics))?;
    }
    let state = ProxyTrainer::new(&run, &options.device, out)?;
    run_loop(out, &run, &dataset, state, options)
}

/// Continues the proxy run in `out` from its newest checkpoint, on the same collection.
pub fn resume_proxy(out: &Path, options: ProxyTrainOptions<'_>) -> Result<ProxySummary, ProxyError> {
    let folder = RunFolder::new(out);
    let run: ProxyRun = folder.read_config()?;
    let Some((checkpoint, weights)) = folder.latest_checkpoint::<ProxyCheckpoint>()? else {
        return Err(ProxyError::NoCheckpoint { path: out.to_path_buf() });
    };
    let dataset = Dataset::open(&run.dataset)?;
    check_dataset(&run.dataset, &dataset, &run.meta)?;
    let mut state = ProxyTrainer::new(&run, &options.device, out)?;
    checkpoint::load(&weights, &state.varmap, Some(&mut state.optimizer))?;
    state.optimizer.set_learning_rate(checkpoint.lr);
    state.step = checkpoint.step;
    folder.truncate_metrics::<Record>(checkpoint.step)?;
    tracing::info!(run = %out.display(), step = checkpoint.step, "resuming proxy training");
    run_loop(out, &run, &dataset, state, options)
}

fn check_dataset(data: &Path, dataset: &Dataset, meta: &ProxyMeta) -> Result<(), ProxyError> {
    let names = meta.param_names();
    let m = &dataset.manifest;
    if m.chain != meta.chain || m.params != names {
        return Err(ProxyError::Config(format!(
            "{} was collected from chain {:?} with parameters {:?}; the chain {:?} now has {:?} (re-collect, or \
             restore the plugins.toml it was collected with)",
            data.display(),
            m.chain,
            m.params,
            meta.chain,
            names
        )));
    }
    if m.config.sample_rate != meta.sample_rate {
        return Err(ProxyError::Config(format!(
            "{} is at {} Hz, the proxy at {} Hz",
            data.display(),
            m.config.sample_rate,
            meta.sample_rate
        )));
    }
    Ok(())
}

/// Model, optimizer, step: what `afx train-proxy` trains (`afx bench model` times its [`ProxyTrainer::update`]).
pub struct ProxyTrainer {
    varmap: VarMap,
    proxy: Proxy,
    optimizer: AdamW,
    loss: MrStftLoss,
    step: u64,
    device: Device,
}

impl ProxyTrainer {
    /// A fresh proxy for `run` (weights from its seed) with its optimizer and loss; `out` names it in messages.
    pub fn new(run: &ProxyRun, device: &Device, out: &Path) -> Result<ProxyTrainer, ProxyError> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let proxy = Proxy::new(run.meta.clone(), vb, out)?;
        // Weights reproducible from the seed, biases zero. With the input skip the output conv starts at zero, so
        // the untrained proxy is the identity (times the analytic gains) rather than the identity plus noise.
        let skip = run.config.tcn.input_skip;
        let gain = |name: &str| {
            if skip && (name.starts_with("output.") || name.starts_with("skip_gain.")) { 0.0 } else { 1.0 }
        };
        afx_nn::init::seeded_uniform(&varmap, run.config.seed, gain, |name| name.ends_with(".bias"))?;
        let optimizer = AdamW::new(&varmap, run.config.adam())?;
        let loss_config =
            MrStftConfig { fft_sizes: run.config.fft_sizes.clone(), time_l1_weight: run.config.time_l1_weight };
        let loss = MrStftLoss::new(&loss_config, DType::F32, device)?;
        Ok(ProxyTrainer { varmap, proxy, optimizer, loss, step: 0, device: device.clone() })
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// One update on a batch drawn from `train`; returns the loss.
    fn step(&mut self, config: &ProxyTrainConfig, train: &[crate::collect::Example]) -> Result<f64, ProxyError> {
        let step = self.step + 1;
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(config.seed ^ STEP_STREAM, step as usize));
        let context = config.tcn.receptive_field() - 1;
        let window = context + config.patch;
        let p = self.proxy.meta().params.len();
        let (mut x, mut target, mut theta) = (vec![0f32; config.batch * window], vec![], vec![]);
        for b in 0..config.batch {
            let e = &train[(rng.next_u64() % train.len() as u64) as usize];
            let (input, output) = (e.input.channel(0), e.output.channel(0));
            let frames = input.len();
            let start = (rng.next_u64() % (frames - config.patch + 1) as u64) as usize;
            // Window [start − context, start + patch) of the input; before the example's start stays zero.
            let from = start.saturating_sub(context);
            let row = &mut x[b * window..(b + 1) * window];
            row[window - (start + config.patch - from)..].copy_from_slice(&input[from..start + config.patch]);
            target.extend_from_slice(&output[start..start + config.patch]);
            theta.extend_from_slice(&e.params);
        }
        let x = Tensor::from_vec(x, (config.batch, window), &self.device)?;
        let target = Tensor::from_vec(target, (config.batch, config.patch), &self.device)?;
        let theta = Tensor::from_vec(theta, (config.batch, p), &self.device)?;
        self.update(config, &x, &target, &theta)
    }

    /// One update on a batch: `x` `(B, context + patch)` input windows (a receptive field of context before
    /// each patch), `target` `(B, patch)` the real outputs of the patches, θ `(B, P)`. Forward, MRSTFT + L1 on
    /// the patch per item, backward, gradient-norm clip, AdamW at the next step's learning rate; returns the loss.
    pub fn update(
        &mut self,
        config: &ProxyTrainConfig,
        x: &Tensor,
        target: &Tensor,
        theta: &Tensor,
    ) -> Result<f64, ProxyError> {
        let step = self.step + 1;
        let context = config.tcn.receptive_field() - 1;
        let y = self.proxy.forward_t(x, theta, true)?.narrow(1, context, config.patch)?;
        // Per item, then averaged: the MRSTFT's spectral convergence over a whole batch is dominated by its
        // loudest items, while the quality report (and the trainer's validation) score every item alone.
        let loss = self.loss.per_item(&y, target)?.mean_all()?;
        let value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Err(ProxyError::Config(format!("step {step}: the loss is {value}; lower --lr")));
        }
        let mut grads = loss.backward()?;
        self.optimizer.clip_grad_norm(&mut grads, config.grad_clip)?;
        self.optimizer.set_learning_rate(config.lr_at(step));
        self.optimizer.step(&grads)?;
        self.step = step;
        Ok(value)
    }

    fn save(&self, out: &Path, config: &ProxyTrainConfig, validation: Option<&Quality>) -> Result<(), ProxyError> {
        let dir = RunFolder::new(out).checkpoints();
        std::fs::create_dir_all(dir.path()).map_err(ProxyError::io(dir.path()))?;
        let (weights, meta_path) = dir.paths(self.step);
        checkpoint::save(&weights, &self.varmap, Some(&self.optimizer), afx_core::atomic::write)?;
        let meta = ProxyCheckpoint {
            format_version: FORMAT_VERSION,
            meta: self.proxy.meta().clone(),
            config: config.clone(),
            step: self.step,
            lr: self.optimizer.learning_rate(),
            updates: self.optimizer.steps(),
            weights: weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            validation: validation.cloned(),
        };
        run_folder::write_json(&meta_path, &meta)?;
        dir.prune(KEEP).map_err(ProxyError::io(dir.path()))
    }
}

fn run_loop(
    out: &Path,
    run: &ProxyRun,
    dataset: &Dataset,
    mut state: ProxyTrainer,
    mut options: ProxyTrainOptions<'_>,
) -> Result<ProxySummary, ProxyError> {
    let config = &run.config;
    let frames = dataset.manifest.config.frames;
    if frames < config.patch {
        return Err(ProxyError::Config(format!(
            "patch {} is longer than the collection's examples ({frames} frames); lower --patch",
            config.patch
        )));
    }
    let names = run.meta.param_names();
    let held_out = &dataset.validation[..dataset.validation.len().min(config.val_items)];
    let folder = RunFolder::new(out);
    let mut metrics = folder.metrics_log::<Record>()?;
    let started = Instant::now();
    let deadline = config.minutes.map(|m| started + Duration::from_secs_f64(m * 60.0));
    let (mut seconds, mut steps_run, mut last) = (0.0, 0u64, None);
    while state.step < config.steps {
        let t = Instant::now();
        let loss = state.step(config, &dataset.train)?;
        let elapsed = t.elapsed().as_secs_f64();
        seconds += elapsed;
        steps_run += 1;
        let step = state.step;
        let lr = config.lr_at(step);
        metrics.append(&Record::Step { step, loss, lr, seconds: elapsed })?;
        if let Some(f) = options.on_step.as_mut() {
            f(step, loss);
        }
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        let end = step == config.steps || out_of_time;
        if step.is_multiple_of(config.val_every) || end {
            let q = quality::evaluate(&state.proxy, held_out, &names, &config.fft_sizes, step, &state.device)?;
            tracing::info!(step, mrstft = q.mrstft, identity = q.identity_mrstft, si_sdr = q.si_sdr, "validation");
            metrics.append(&Record::Validation(q.clone()))?;
            if let Some(f) = options.on_validation.as_mut() {
                f(&q);
            }
            if options.stop_after == Some(step) {
                return Ok(summary(step, Some(q), seconds, steps_run, started, true));
            }
            state.save(out, config, Some(&q))?;
            last = Some(q);
        } else if options.stop_after == Some(step) {
            return Ok(summary(step, last, seconds, steps_run, started, true));
        }
        if out_of_time {
            break;
        }
    }
    // The report scores every held-out example, not only the validations' first `val_items`.
    let all =
        quality::evaluate(&state.proxy, &dataset.validation, &names, &config.fft_sizes, state.step, &state.device)?;
    let summary = summary(state.step, Some(all), seconds, steps_run, started, false);
    let step_minutes = step_seconds(&folder)? / 60.0;
    write_report(out, run, dataset, &summary, step_minutes)?;
    Ok(summary)
}

fn summary(
    steps: u64,
    validation: Option<Quality>,
    seconds: f64,
    steps_run: u64,
    started: Instant,
    interrupted: bool,
) -> ProxySummary {
    ProxySummary {
        steps,
        validation,
        mean_step_s: seconds / steps_run.max(1) as f64,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        interrupted,
    }
}

/// Seconds of all training steps in `metrics.jsonl` (this process's and any earlier one's before a resume).
fn step_seconds(folder: &RunFolder) -> Result<f64, ProxyError> {
    let records = folder.read_metrics::<Record>()?;
    Ok(records
        .iter()
        .filter_map(|r| match r {
            Record::Step { seconds, .. } => Some(seconds),
            Record::Validation(_) => None,
        })
        .sum())
}

fn write_report(
    out: &Path,
    run: &ProxyRun,
    dataset: &Dataset,
    summary: &ProxySummary,
    step_minutes: f64,
) -> Result<(), ProxyError> {
    let c = &run.config;
    let gains: Vec<String> =
        run.meta.params.iter().filter(|p| p.output_gain).map(|p| format!("{}.{}", p.stage, p.spec.id)).collect();
    let mut text = format!(
        "# afx proxy report\n\nProxy of chain `{}` at {} Hz: conditional TCN, {} channels, kernel {}, dilations \
         {:?} (receptive field {} samples), input skip {}; output gains applied analytically: {}.\n\n\
         Trained {} steps of batch {} × {} frames: {:.1} min of training steps ({:.2} s/step; this process ran \
         {:.1} min including validations) on {} examples; loss MRSTFT {:?} + {} · L1 (per item); lr {} → {} \
         (cosine).\n\n",
        run.meta.chain,
        run.meta.sample_rate,
        c.tcn.channels,
        c.tcn.kernel,
        c.tcn.dilations,
        c.tcn.receptive_field(),
        c.tcn.input_skip,
        if gains.is_empty() { "none".into() } else { gains.join(", ") },
        summary.steps,
        c.batch,
        c.patch,
        step_minutes,
        step_minutes * 60.0 / summary.steps.max(1) as f64,
        summary.minutes,
        dataset.train.len(),
        c.fft_sizes,
        c.time_l1_weight,
        c.lr,
        c.lr_final,
    );
    if let Some(q) = &summary.validation {
        let mut outputs = Table::new(["output", "MRSTFT ↓", "SI-SDR (dB) ↑"]);
        outputs.row(["proxy".to_string(), format!("{:.4}", q.mrstft), format!("{:.2}", q.si_sdr)]);
        outputs.row([
            "identity (input)".to_string(),
            format!("{:.4}", q.identity_mrstft),
            format!("{:.2}", q.identity_si_sdr),
        ]);
        let mut regions = Table::new(["parameter", "θ < 0.5", "θ ≥ 0.5"]);
        for r in &q.by_param {
            regions.row([r.param.clone(), format!("{:.4}", r.low), format!("{:.4}", r.high)]);
        }
        text.push_str(&format!(
            "## Held-out quality (step {}, all {} examples of {}, whole {}-frame examples vs the real chain)\n\n\
             {outputs}\nThe proxy is {:.2}× closer than the identity (MRSTFT).\n\n\
             ### Proxy MRSTFT by parameter region\n\n{regions}",
            q.step,
            q.items,
            dataset.validation_shards.join(", "),
            dataset.manifest.config.frames,
            q.improvement(),
        ));
    }
    Ok(RunFolder::new(out).write_file("report.md", text.as_bytes())?)
}
