//! What a collection is ([`CollectConfig`], the [`Sampler`] of its parameters, the shards' ranges), which part
//! of it this process does ([`ShardSlice`]), and why collecting fails ([`CollectError`]).

use std::path::PathBuf;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Why a collection failed, or a shard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("shard {path} is torn or not a shard: {reason}")]
    BadShard { path: PathBuf, reason: String },
    #[error("shard {path} belongs to another collection: {reason}")]
    Foreign { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// Which part of the work this process does: shards `j` with `j mod count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSlice {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSlice {
    type Err = String;
    fn from_str(s: &str) -> Result<ShardSlice, String> {
        let bad = || format!("{s:?}: expected I/N with 0 <= I < N (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(ShardSlice { index, count })
    }
}

/// How the parameters of an example are drawn. Uniform in the normalised space by default; other samplers
/// (around presets, biased to extremes) plug in here.
pub trait Sampler: Sync {
    fn sample(&self, seed: u64, num_params: usize) -> Vec<f32>;
}

/// θ ~ U(0, 1)^P.
pub struct Uniform;

impl Sampler for Uniform {
    fn sample(&self, seed: u64, num_params: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..num_params).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32).collect()
    }
}

/// What a collection is: the same settings give the same examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectConfig {
    pub examples: usize,
    pub shard_size: usize,
    pub seed: u64,
    pub sample_rate: u32,
    /// Frames per example.
    pub frames: usize,
}

/// The example indices of shard `shard`.
pub(super) fn shard_range(config: &CollectConfig, shard: usize) -> std::ops::Range<usize> {
    shard * config.shard_size..((shard + 1) * config.shard_size).min(config.examples)
}
