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

/// The batch schedulers' variables that give an array job's index: Slurm's (counted from the array's first
/// index, `SLURM_ARRAY_TASK_MIN`, so `--array=1-4` works too) and a Kubernetes Indexed Job's.
pub const SLURM_INDEX: &str = "SLURM_ARRAY_TASK_ID";
pub const SLURM_FIRST: &str = "SLURM_ARRAY_TASK_MIN";
pub const KUBERNETES_INDEX: &str = "JOB_COMPLETION_INDEX";

impl ShardSlice {
    /// The slice `env/N` names: this array job's index (from `var`, the environment, by [`SLURM_INDEX`] or
    /// [`KUBERNETES_INDEX`]) of `count`.
    pub fn from_env(count: usize, var: impl Fn(&str) -> Option<String>) -> Result<ShardSlice, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--shard env/{count}: ${name} is {v:?}, not an index"))
                })
                .transpose()
        };
        let first = number(SLURM_FIRST)?.unwrap_or(0);
        let slurm = match number(SLURM_INDEX)? {
            Some(id) => Some(
                id.checked_sub(first)
                    .ok_or_else(|| format!("--shard env/{count}: ${SLURM_INDEX} is below ${SLURM_FIRST}"))?,
            ),
            None => None,
        };
        let index = match (slurm, number(KUBERNETES_INDEX)?) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("--shard env/{count}: ${SLURM_INDEX} and ${KUBERNETES_INDEX} disagree ({a}, {b})"));
            }
            (Some(i), _) | (None, Some(i)) => i,
            (None, None) => {
                return Err(format!(
                    "--shard env/{count}: neither ${SLURM_INDEX} (a Slurm array job) nor ${KUBERNETES_INDEX} (a \
                     Kubernetes Indexed Job) is set; give the index as --shard I/{count}"
                ));
            }
        };
        if index >= count {
            return Err(format!("--shard env/{count}: the array job's index {index} is not below {count}"));
        }
        Ok(ShardSlice { index, count })
    }
}

impl std::str::FromStr for ShardSlice {
    type Err = String;
    /// `I/N`, or `env/N` (the index from a Slurm array job's or a Kubernetes Indexed Job's environment).
    fn from_str(s: &str) -> Result<ShardSlice, String> {
        let bad = || format!("{s:?}: expected I/N with 0 <= I < N (e.g. 0/4), or env/N");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        if i.trim() == "env" {
            return ShardSlice::from_env(count, |name| std::env::var(name).ok());
        }
        let index = i.trim().parse().map_err(|_| bad())?;
        if index >= count {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn an_array_jobs_index_comes_from_slurm_or_kubernetes() {
        let slice = |index, count| Ok(ShardSlice { index, count });
        assert_eq!(ShardSlice::from_env(4, env(&[(SLURM_INDEX, "2")])), slice(2, 4));
        assert_eq!(ShardSlice::from_env(4, env(&[(SLURM_INDEX, "3"), (SLURM_FIRST, "1")])), slice(2, 4));
        assert_eq!(ShardSlice::from_env(4, env(&[(KUBERNETES_INDEX, "0")])), slice(0, 4));
        assert_eq!(ShardSlice::from_env(4, env(&[(SLURM_INDEX, "1"), (KUBERNETES_INDEX, "1")])), slice(1, 4));
        let error = |vars: &[(&str, &str)]| ShardSlice::from_env(4, env(vars)).unwrap_err();
        assert!(error(&[]).contains("neither $SLURM_ARRAY_TASK_ID"), "{}", error(&[]));
        assert!(error(&[(SLURM_INDEX, "4")]).contains("not below 4"));
        assert!(error(&[(SLURM_INDEX, "x")]).contains("not an index"));
        assert!(error(&[(SLURM_INDEX, "0"), (SLURM_FIRST, "1")]).contains("below"));
        assert!(error(&[(SLURM_INDEX, "1"), (KUBERNETES_INDEX, "2")]).contains("disagree"));
        assert_eq!("1/3".parse::<ShardSlice>(), slice(1, 3));
        assert!("3/3".parse::<ShardSlice>().is_err() && "env/0".parse::<ShardSlice>().is_err());
    }
}
