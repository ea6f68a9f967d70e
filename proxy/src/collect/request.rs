//! What a shard's work is before rendering: the [`Plan`] every shard of a collection shares, each shard's
//! examples (corpus crops and θ, [`ShardInputs`]) and their encoding as one [`SHARD_TASK`] job for a worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use afx_core::Audio;
use afx_datasets::Corpus;
use afx_host::ChainLayout;
use afx_spsa::{Job, item_seed};
use safetensors::SafeTensors;

use super::config::{CollectConfig, Sampler, shard_range};
use super::shard::{FORMAT_VERSION, Rows, ShardMeta, rows, tensor, write_safetensors};

/// The name of the task a worker runs for [`collect`]: render one shard's examples and write its file.
pub const SHARD_TASK: &str = "collect-shard";

/// Keeps an example's parameter stream apart from its crop stream (both derive from the example's seed).
const THETA_STREAM: u64 = 0x0074_6865_7461; // "theta"

fn names(chain: &ChainLayout) -> (Vec<String>, Vec<String>) {
    let trained = chain.params().iter().map(|p| format!("{}.{}", p.stage, p.spec.id)).collect();
    let plain = chain
        .stages()
        .iter()
        .flat_map(|s| s.plugin().params.iter().map(move |p| format!("{}.{}", s.name(), p.id)))
        .collect();
    (trained, plain)
}

/// What every shard of a collection shares.
pub(super) struct Plan<'a> {
    /// The chain's name (the chain itself stays on the collecting thread: plugins are not `Sync`).
    pub(super) chain: String,
    pub(super) config: &'a CollectConfig,
    pub(super) sampler: &'a dyn Sampler,
    /// `stage.id` of the trainable parameters and of every parameter (see [`ShardMeta`]).
    pub(super) params: Vec<String>,
    pub(super) plain_params: Vec<String>,
}

impl<'a> Plan<'a> {
    pub(super) fn new(chain: &'a ChainLayout, config: &'a CollectConfig, sampler: &'a dyn Sampler) -> Plan<'a> {
        let (params, plain_params) = names(chain);
        Plan { chain: chain.name().to_string(), config, sampler, params, plain_params }
    }

    pub(super) fn meta(&self, shard: usize, excluded: BTreeMap<u64, String>) -> ShardMeta {
        ShardMeta {
            version: FORMAT_VERSION,
            chain: self.chain.clone(),
            params: self.params.clone(),
            plain_params: self.plain_params.clone(),
            config: self.config.clone(),
            shard,
            excluded,
        }
    }

    /// Shard `shard`'s examples: the corpus crop and θ of each, or why it has none.
    pub(super) fn inputs(&self, corpus: &Corpus, shard: usize) -> ShardInputs {
        let mut inputs =
            ShardInputs { shard, indices: vec![], inputs: vec![], thetas: vec![], excluded: BTreeMap::new() };
        for i in shard_range(self.config, shard) {
            let seed = item_seed(self.config.seed, i);
            match corpus.crop(seed, self.config.frames) {
                Some(clip) => {
                    inputs.inputs.push(clip);
                    inputs.indices.push(i as u64);
                    inputs.thetas.push(self.sampler.sample(seed ^ THETA_STREAM, self.params.len()));
                }
                None => {
                    inputs.excluded.insert(i as u64, "no corpus file is long and loud enough".into());
                }
            }
        }
        inputs
    }
}

/// A shard's examples before rendering.
pub(super) struct ShardInputs {
    pub(super) shard: usize,
    pub(super) indices: Vec<u64>,
    pub(super) inputs: Vec<Audio>,
    /// Normalised θ.
    pub(super) thetas: Vec<Vec<f32>>,
    /// Examples of the shard's range without an input, with why.
    pub(super) excluded: BTreeMap<u64, String>,
}

impl ShardInputs {
    /// The [`SHARD_TASK`] job that writes these examples' shard to `path`. Its request is a safetensors file in
    /// memory: tensors `input`, `params` and `index`, metadata `afx` (the shard's) and `path`.
    pub(super) fn task(self, path: &Path, plan: &Plan<'_>) -> Job {
        let (n, frames) = (self.indices.len(), plan.config.frames);
        let tensors = vec![
            Rows::f32("input", self.inputs.iter().map(|a| a.channel(0)), frames),
            Rows::f32("params", self.thetas.iter().map(Vec::as_slice), plan.params.len()),
            Rows::index(&self.indices),
        ];
        let meta = plan.meta(self.shard, self.excluded);
        let info = [
            ("afx".to_string(), serde_json::to_string(&meta).expect("metadata serialises")),
            ("path".to_string(), path.to_string_lossy().into_owned()),
        ];
        // The tensors' bytes and room for the header.
        let mut request = Vec::with_capacity(n * (frames + plan.params.len()) * 4 + n * 8 + 4096);
        write_safetensors(&mut request, tensors, info.into()).expect("tensor shapes match their data");
        Job::Task { name: SHARD_TASK.into(), request, renders: n as u32 }
    }

    /// Reads back a [`ShardInputs::task`] request: where the shard goes, its metadata, its examples.
    pub(super) fn from_request(request: &[u8]) -> Result<(PathBuf, ShardMeta, ShardInputs), String> {
        let tensors = SafeTensors::deserialize(request).map_err(|e| e.to_string())?;
        let (_, header) = SafeTensors::read_metadata(request).map_err(|e| e.to_string())?;
        let info = header.metadata().as_ref().ok_or("no metadata")?;
        let text = |key: &str| info.get(key).ok_or_else(|| format!("no {key} in the request"));
        let meta: ShardMeta = serde_json::from_str(text("afx")?).map_err(|e| e.to_string())?;
        let path = PathBuf::from(text("path")?);
        let (frames, p, rate) = (meta.config.frames, meta.params.len(), meta.config.sample_rate);
        let indices: Vec<u64> = tensor(&tensors, "index")?;
        let n = indices.len();
        let audio = |samples: Vec<f32>| Audio::new(rate, vec![samples]).expect("one channel");
        let inputs = ShardInputs {
            shard: meta.shard,
            inputs: rows(&tensors, "input", n, frames)?.into_iter().map(audio).collect(),
            thetas: rows(&tensors, "params", n, p)?,
            indices,
            excluded: BTreeMap::new(),
        };
        Ok((path, meta, inputs))
    }
}
