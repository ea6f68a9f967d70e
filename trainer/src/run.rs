//! A run folder: what is in it and how it is written.
//!
//! ```text
//! RUN/config.json                     TrainConfig + ChainInfo, written when the run starts
//! RUN/metrics.jsonl                   one JSON object per step and per validation (flushed each line)
//! RUN/checkpoints/step-NNNNNNNN.safetensors   model + AdamW moments (afx_nn::checkpoint)
//! RUN/checkpoints/step-NNNNNNNN.json          CheckpointMeta naming that file; written after it
//! RUN/loss.png, RUN/report.md         at the end
//! ```
//! Every file is written to a temporary name and renamed. A checkpoint counts once its JSON exists, and the JSON
//! is renamed into place only after its weights are, so a kill at any moment leaves the previous checkpoint
//! usable. The two newest checkpoints are kept.

use std::path::{Path, PathBuf};

use afx_nn::checkpoint::CheckpointDir;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::model::ModelConfig;
use crate::train::TrainConfig;

/// Version of the run-folder layout.
pub const FORMAT_VERSION: u32 = 1;
const KEEP: usize = 2;

/// Where the random streams stand. Every random draw of step `t` derives from `(seed, t)`, so this is the whole
/// RNG state: a resumed run draws exactly what the uninterrupted run would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub next_step: u64,
}

/// The optimizer's scalars (its moments are in the safetensors file under `adamw.`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerMeta {
    pub lr: f64,
    pub updates: u64,
}

/// Everything needed to rebuild and continue a run from a checkpoint, beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub chain: ChainInfo,
    /// The model's analysis rate (the training rate).
    pub sample_rate: u32,
    pub model: ModelConfig,
    pub config: TrainConfig,
    /// Steps completed.
    pub step: u64,
    pub rng: RngState,
    pub optimizer: OptimizerMeta,
    /// The safetensors file beside this one.
    pub weights: String,
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn metrics_path(run: &Path) -> PathBuf {
    run.join("metrics.jsonl")
}

fn checkpoint_dir(run: &Path) -> CheckpointDir {
    CheckpointDir::new(checkpoints_dir(run))
}

/// Paths of the weights and metadata of the checkpoint after `step` steps.
pub fn checkpoint_paths(run: &Path, step: u64) -> (PathBuf, PathBuf) {
    checkpoint_dir(run).paths(step)
}

/// The newest complete checkpoint: its metadata and the path of its weights.
pub fn latest_checkpoint(run: &Path) -> Result<Option<(CheckpointMeta, PathBuf)>, TrainError> {
    let dir = checkpoint_dir(run);
    let Some(path) = dir.latest().map_err(TrainError::io(dir.path()))? else { return Ok(None) };
    let meta: CheckpointMeta = read_json(&path)?;
    if meta.format_version != FORMAT_VERSION {
        return Err(TrainError::Format {
            path,
            message: format!("run format {} (this afx reads {FORMAT_VERSION})", meta.format_version),
        });
    }
    let weights = dir.path().join(&meta.weights);
    Ok(Some((meta, weights)))
}

/// Removes all but the newest [`KEEP`] checkpoints.
pub fn prune_checkpoints(run: &Path) -> Result<(), TrainError> {
    let dir = checkpoint_dir(run);
    dir.prune(KEEP).map_err(TrainError::io(dir.path()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced, then renamed
/// ([`afx_host::atomic::write`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    afx_host::atomic::write(path, bytes).map_err(|message| TrainError::Format { path: path.to_path_buf(), message })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Format { path: path.to_path_buf(), message: e.to_string() })
}

/// Refuses a run made for another chain (a different parameter list would make θ mean other values).
pub fn check_chain(run: &Path, run_chain: &ChainInfo, chain: &ChainInfo) -> Result<(), TrainError> {
    if run_chain.same_parameters(chain) {
        return Ok(());
    }
    Err(TrainError::WrongChain {
        run: run.to_path_buf(),
        run_chain: run_chain.name.clone(),
        run_params: run_chain.describe(),
        chain: chain.name.clone(),
        chain_params: chain.describe(),
    })
}
