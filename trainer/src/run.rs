//! What the trainer keeps in its run folder ([`afx_core::RunFolder`], which writes and finds the files):
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
//! usable. The two newest checkpoints are kept ([`KEEP`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::model::ModelConfig;
use crate::train::config::TrainConfig;

/// Version of the run-folder layout.
pub const FORMAT_VERSION: u32 = 1;
/// Checkpoints kept: the newest two.
pub const KEEP: usize = 2;

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

impl afx_core::run_folder::CheckpointMeta for CheckpointMeta {
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    const FORMAT_NAME: &'static str = "run";

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn weights(&self) -> &str {
        &self.weights
    }
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
