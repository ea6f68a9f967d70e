//! The training loop: [`Trainer`] (model, optimizer, one step, validation) and [`train`] / [`resume`], which add
//! the run folder (metrics, checkpoints, plot, report).
//!
//! - [`config`]: [`TrainConfig`], everything that shapes a run;
//! - [`trainer`]: [`Trainer`], one step and checkpoints; [`validation`]: [`ValidationSet`] and
//!   [`Trainer::validate`];
//! - this module: starting and resuming a run in its folder; `run_loop`: the loop; `report`: `report.md`;
//!   `settings`: which settings a resume may change.

pub mod config;
mod report;
mod run_loop;
mod settings;
pub mod trainer;
pub mod validation;

use std::path::Path;

use afx_core::RunFolder;
use afx_spsa::Pool;
use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use config::TrainConfig;
pub use trainer::Trainer;
pub use validation::ValidationSet;

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::metrics::{StepRecord, ValidationRecord};
use crate::pairs::PairSource;
use crate::run::{self, CheckpointMeta};
use run_loop::run_loop;
use settings::changed_settings;

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

/// `pairs.json`: a pair folder's pairs, their offsets and which are held out.
pub const PAIRS_FILE: &str = "pairs.json";
/// `validation_pairs.json`: the last validation of each held-out pair of a pair folder.
pub const VALIDATION_PAIRS_FILE: &str = "validation_pairs.json";
