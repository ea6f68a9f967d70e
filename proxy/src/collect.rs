//! Collecting (input, parameters, output) examples from a real plugin chain.
//!
//! Example `i` of a collection seeded `s` is fully determined by `(s, i)`: a crop of the corpus's training split
//! and parameters drawn uniformly in the normalised space (the [`Sampler`]), rendered through the chain by the
//! worker pool. Examples are grouped in shards of `shard_size`: shard `j` holds examples `j·K .. (j+1)·K`. A
//! shard is written whole, to a temporary name renamed into place, so a killed collect never leaves a torn
//! shard, and a resumed one skips the shards that exist: it never duplicates an example. `--shard I/N` takes
//! the shards with `j mod N == I`, so N machines (a Slurm array, Kubernetes indexed jobs) produce disjoint
//! shards into one folder; [`write_manifest`] lists whatever shards are there.
//!
//! # Shard format
//! `shard-JJJJJ.safetensors` with f32 tensors `input` (n, frames), `output` (n, frames), `params` (n, P, the
//! normalised θ), `plain` (n, Q, every parameter of every stage in plain units) and u64 `index` (n), plus
//! metadata `afx` (JSON: format version, chain, parameter list, sample rate, frames, seed, shard, excluded
//! examples with the reason). Items whose render crashes or is non-finite are excluded and listed there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use afx_core::Audio;
use afx_datasets::Corpus;
use afx_host::ChainLayout;
use afx_spsa::{FailureKind, Job, Pool, Renderer, Task, item_seed};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};
use serde::{Deserialize, Serialize};

/// Bumped when the shard layout changes.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

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

/// The description every shard carries (its `afx` metadata) and the manifest repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub version: u32,
    pub chain: String,
    /// `stage.id` of every trainable parameter, in θ order.
    pub params: Vec<String>,
    /// `stage.id` of every parameter of every stage, in `plain` order.
    pub plain_params: Vec<String>,
    pub config: CollectConfig,
    pub shard: usize,
    /// Examples of this shard's range that are not in it, with why.
    pub excluded: BTreeMap<u64, String>,
}

impl ShardMeta {
    /// Whether the shard belongs to the collection `config` of `chain` (a resume skips it; after a task, the
    /// file a worker wrote is this one).
    fn is_of(&self, chain: &ChainLayout, config: &CollectConfig) -> bool {
        self.config == *config && self.chain == chain.name()
    }
}

/// `manifest.json`: the collection and the shards present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub chain: String,
    pub params: Vec<String>,
    pub config: CollectConfig,
    pub shards: Vec<ManifestShard>,
    pub total_examples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestShard {
    pub file: String,
    pub examples: usize,
    pub excluded: usize,
}

/// Keeps an example's parameter stream apart from its crop stream (both derive from the example's seed).
const THETA_STREAM: u64 = 0x0074_6865_7461; // "theta"

/// What examples are made from.
pub struct Sources<'a> {
    pub chain: &'a ChainLayout,
    pub pool: &'a mut Pool,
    pub corpus: &'a Corpus,
    pub sampler: &'a dyn Sampler,
}

/// One example read back from a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub index: u64,
    pub input: Audio,
    /// Normalised θ.
    pub params: Vec<f32>,
    pub output: Audio,
}

pub fn shard_file(shard: usize) -> String {
    format!("shard-{shard:05}.safetensors")
}

fn names(chain: &ChainLayout) -> (Vec<String>, Vec<String>) {
    let trained = chain.params().iter().map(|p| format!("{}.{}", p.stage, p.spec.id)).collect();
    let plain = chain
        .stages()
        .iter()
        .flat_map(|s| s.plugin().params.iter().map(move |p| format!("{}.{}", s.name(), p.id)))
        .collect();
    (trained, plain)
}

/// Collects this slice's missing shards into `out`; returns how many examples it wrote. `on_shard` is called
/// after each shard with (examples written so far, examples to write).
///
/// Each shard is one [`SHARD_TASK`] job: the worker renders the shard's examples and writes its file, so only
/// the inputs go through the pool's pipes and this process's share of the work stays small as workers are
/// added (it capped the scaling when every output came back here to be written). The jobs are made (crops, θ)
/// as the pool draws them, a few shards ahead of the workers, and no worker waits for another's shard. A shard
/// whose task fails (a plugin crashed or hung on one of its examples, or the worker program lacks the task) is
/// collected again here with one render job per example, so that the pool isolates the bad examples; the file
/// is the same either way.
pub fn collect(
    out: &Path,
    sources: Sources<'_>,
    config: &CollectConfig,
    slice: ShardSlice,
    mut on_shard: impl FnMut(usize, usize),
) -> Result<usize, CollectError> {
    let Sources { chain, pool, corpus, sampler } = sources;
    if config.shard_size == 0 || config.examples == 0 || config.frames == 0 {
        return Err(CollectError::Config("examples, shard size and frames must be positive".into()));
    }
    if corpus.sample_rate() != config.sample_rate {
        return Err(CollectError::Config(format!(
            "the corpus is loaded at {} Hz, the collection is at {} Hz",
            corpus.sample_rate(),
            config.sample_rate
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| CollectError::Write { path: out.into(), reason: e.to_string() })?;
    remove_stale_temporaries(out);
    let plan = Plan::new(chain, config, sampler);
    let shards = config.examples.div_ceil(config.shard_size);
    let todo: Vec<usize> = (0..shards)
        .filter(|j| j % slice.count == slice.index)
        .filter(|&j| !read_meta(&out.join(shard_file(j))).is_ok_and(|meta| meta.is_of(chain, config)))
        .collect();
    // Fail before rendering anything, not after an hour.
    for &j in &todo {
        refuse_foreign(&out.join(shard_file(j)))?;
    }
    let total: usize = todo.iter().map(|&j| shard_range(config, j).len()).sum();
    let mut written = 0;
    let mut failed = vec![];
    // The pool draws the jobs (crops, θ, packing) on a thread of its own, a few shards ahead of the workers.
    let plan = &plan;
    let jobs = todo.iter().map(|&j| plan.inputs(corpus, j).task(&out.join(shard_file(j)), plan));
    pool.run_each(jobs, |k, result| {
        let j = todo[k];
        let done = result.map_err(|e| e.to_string()).and_then(|_| match read_meta(&out.join(shard_file(j))) {
            Ok(meta) if meta.is_of(chain, config) => Ok(()),
            Ok(_) => Err("the worker wrote another collection's shard".to_string()),
            Err(e) => Err(e.to_string()),
        });
        match done {
            Ok(()) => {
                written += shard_range(config, j).len();
                on_shard(written, total);
            }
            Err(e) => failed.push((j, e)),
        }
    });
    for (j, e) in failed {
        tracing::info!(shard = j, "collecting it with one render job per example: {e}");
        collect_here(&out.join(shard_file(j)), (chain, plan), pool, corpus, j)?;
        written += shard_range(config, j).len();
        on_shard(written, total);
    }
    Ok(written)
}

/// Shard `j`'s [`SHARD_TASK`] job, writing into `out`: what [`collect`] sends a worker (for the bench's
/// pool-free reference).
pub fn shard_job(
    out: &Path,
    (chain, corpus, sampler): (&ChainLayout, &Corpus, &dyn Sampler),
    config: &CollectConfig,
    j: usize,
) -> Job {
    let plan = Plan::new(chain, config, sampler);
    plan.inputs(corpus, j).task(&out.join(shard_file(j)), &plan)
}

/// A shard file already there when this run is about to write it belongs to another collection (this
/// collection's own shards were skipped as done).
fn refuse_foreign(path: &Path) -> Result<(), CollectError> {
    match read_meta(path) {
        Ok(meta) => Err(CollectError::Foreign {
            path: path.into(),
            reason: format!("it was collected for chain {:?} with {:?}; use another folder", meta.chain, meta.config),
        }),
        Err(_) => Ok(()),
    }
}

/// Shard `j` through the pool's render jobs, written by this process.
fn collect_here(
    path: &Path,
    (chain, plan): (&ChainLayout, &Plan<'_>),
    pool: &mut Pool,
    corpus: &Corpus,
    j: usize,
) -> Result<(), CollectError> {
    let ShardInputs { shard, indices, inputs, thetas, mut excluded } = plan.inputs(corpus, j);
    let results = pool.render_batch(&inputs, &thetas);
    let mut data = ShardData::default();
    for (((index, input), theta), result) in indices.into_iter().zip(inputs).zip(thetas).zip(results) {
        data.keep(chain, index, input, theta, result.map_err(|e| e.kind), &mut excluded)?;
    }
    write_shard(path, &plan.meta(shard, excluded), data)
}

/// The name of the task a worker runs for [`collect`]: render one shard's examples and write its file.
pub const SHARD_TASK: &str = "collect-shard";

/// The tasks of `afx worker` (what it passes to [`main_with_args`](afx_spsa::worker::main_with_args)).
pub fn worker_tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(ShardTask)]
}

/// [`SHARD_TASK`]: the request is [`ShardInputs::task`]'s, the reply the shard's excluded examples (JSON).
struct ShardTask;

impl Task for ShardTask {
    fn name(&self) -> &'static str {
        SHARD_TASK
    }

    fn run(&mut self, request: &[u8], renderer: &mut Renderer<'_>) -> Result<Vec<u8>, FailureKind> {
        let bad = |e: String| FailureKind::Plugin(format!("{SHARD_TASK}: {e}"));
        let (path, mut meta, inputs) = ShardInputs::from_request(request).map_err(bad)?;
        let chain = renderer.chain().name();
        if meta.chain != chain {
            return Err(bad(format!("a shard of chain {:?} sent to a worker of chain {chain:?}", meta.chain)));
        }
        let mut data = ShardData::default();
        let ShardInputs { indices, inputs, thetas, .. } = inputs;
        for ((index, input), theta) in indices.into_iter().zip(inputs).zip(thetas) {
            let mut output = Audio::silence(input.sample_rate(), 1, 0);
            let rendered = renderer.render(&input, &theta, &mut output).map(|()| output);
            data.keep(renderer.chain().layout(), index, input, theta, rendered, &mut meta.excluded)
                .map_err(|e| bad(e.to_string()))?;
        }
        write_shard(&path, &meta, data).map_err(|e| bad(e.to_string()))?;
        Ok(serde_json::to_vec(&meta.excluded).expect("a map of strings serialises"))
    }
}

/// What every shard of a collection shares.
struct Plan<'a> {
    /// The chain's name (the chain itself stays on the collecting thread: plugins are not `Sync`).
    chain: String,
    config: &'a CollectConfig,
    sampler: &'a dyn Sampler,
    /// `stage.id` of the trainable parameters and of every parameter (see [`ShardMeta`]).
    params: Vec<String>,
    plain_params: Vec<String>,
}

impl<'a> Plan<'a> {
    fn new(chain: &'a ChainLayout, config: &'a CollectConfig, sampler: &'a dyn Sampler) -> Plan<'a> {
        let (params, plain_params) = names(chain);
        Plan { chain: chain.name().to_string(), config, sampler, params, plain_params }
    }

    fn meta(&self, shard: usize, excluded: BTreeMap<u64, String>) -> ShardMeta {
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
    fn inputs(&self, corpus: &Corpus, shard: usize) -> ShardInputs {
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
struct ShardInputs {
    shard: usize,
    indices: Vec<u64>,
    inputs: Vec<Audio>,
    /// Normalised θ.
    thetas: Vec<Vec<f32>>,
    /// Examples of the shard's range without an input, with why.
    excluded: BTreeMap<u64, String>,
}

impl ShardInputs {
    /// The [`SHARD_TASK`] job that writes these examples' shard to `path`. Its request is a safetensors file in
    /// memory: tensors `input`, `params` and `index`, metadata `afx` (the shard's) and `path`.
    fn task(self, path: &Path, plan: &Plan<'_>) -> Job {
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
    fn from_request(request: &[u8]) -> Result<(PathBuf, ShardMeta, ShardInputs), String> {
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

/// The examples of one shard that rendered, in index order.
#[derive(Default)]
struct ShardData {
    inputs: Vec<Audio>,
    outputs: Vec<Audio>,
    /// Normalised θ, and every parameter in plain units.
    thetas: Vec<Vec<f32>>,
    plain: Vec<Vec<f32>>,
    kept: Vec<u64>,
}

impl ShardData {
    /// Keeps an example that rendered; lists (and logs) one that did not.
    fn keep(
        &mut self,
        chain: &ChainLayout,
        index: u64,
        input: Audio,
        theta: Vec<f32>,
        rendered: Result<Audio, FailureKind>,
        excluded: &mut BTreeMap<u64, String>,
    ) -> Result<(), CollectError> {
        match rendered {
            Ok(output) => {
                let plain = chain.plain_values(&theta).map_err(|e| CollectError::Config(e.to_string()))?;
                self.plain.push(plain.into_iter().flatten().collect());
                self.inputs.push(input);
                self.outputs.push(output);
                self.thetas.push(theta);
                self.kept.push(index);
            }
            Err(kind) => {
                tracing::warn!(example = index, "excluded: {kind}");
                excluded.insert(index, kind.to_string());
            }
        }
        Ok(())
    }
}

/// One tensor to write: a 2-d tensor's rows (or a 1-d tensor as one row), laid end to end in the file from
/// wherever they are.
struct Rows<'a> {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    rows: Vec<&'a [u8]>,
}

impl<'a> Rows<'a> {
    /// An f32 tensor (rows, `width`).
    fn f32(name: &'static str, rows: impl Iterator<Item = &'a [f32]>, width: usize) -> Rows<'a> {
        let rows: Vec<&[u8]> = rows.map(bytemuck::cast_slice).collect();
        Rows { name, dtype: Dtype::F32, shape: vec![rows.len(), width], rows }
    }

    /// The u64 `index` tensor.
    fn index(indices: &'a [u64]) -> Rows<'a> {
        Rows { name: "index", dtype: Dtype::U64, shape: vec![indices.len()], rows: vec![bytemuck::cast_slice(indices)] }
    }
}

/// Writes `tensors` and the metadata `info` to `out` as a safetensors file, each row straight from where it
/// lies.
///
/// The bytes are `safetensors::serialize`'s: the header is the format crate's own [`Metadata`], the tensors
/// come in its order (falling dtype alignment, then name). What this saves is the copies: `serialize` wants
/// each tensor in one buffer and returns the whole file in another, so a shard's megabytes were copied three
/// times before the file got them; here they are copied once, into `out`.
fn write_safetensors(
    out: &mut impl Write,
    mut tensors: Vec<Rows<'_>>,
    info: std::collections::HashMap<String, String>,
) -> Result<(), String> {
    tensors.sort_by(|a, b| b.dtype.cmp(&a.dtype).then(a.name.cmp(b.name)));
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0;
    for t in &tensors {
        let len: usize = t.rows.iter().map(|r| r.len()).sum();
        if len != t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8 {
            return Err(format!("tensor {}: {len} bytes for shape {:?} of {:?}", t.name, t.shape, t.dtype));
        }
        let info = TensorInfo { dtype: t.dtype, shape: t.shape.clone(), data_offsets: (offset, offset + len) };
        infos.push((t.name.to_string(), info));
        offset += len;
    }
    let header = Metadata::new(Some(info), infos).map_err(|e| e.to_string())?;
    let mut header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // The format pads the header with spaces to a multiple of 8 bytes, so the data that follows is aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = |e: std::io::Error| e.to_string();
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for row in tensors.iter().flat_map(|t| &t.rows) {
        out.write_all(row).map_err(io)?;
    }
    Ok(())
}

/// A tensor's elements, copied out (the file's bytes have no alignment guarantee).
fn tensor<T: bytemuck::Pod>(tensors: &SafeTensors<'_>, name: &str) -> Result<Vec<T>, String> {
    let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let size = std::mem::size_of::<T>();
    if view.data().len() % size != 0 {
        return Err(format!("{name}: {} bytes", view.data().len()));
    }
    Ok(bytemuck::pod_collect_to_vec(view.data()))
}

/// The `n` rows of `width` f32 of a 2-d tensor, each copied once from the file's bytes into a row of its own.
fn rows(tensors: &SafeTensors<'_>, name: &str, n: usize, width: usize) -> Result<Vec<Vec<f32>>, String> {
    let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let bytes = view.data();
    if view.dtype() != Dtype::F32 || bytes.len() != n * width * 4 {
        return Err(format!("{name}: {} bytes of {:?}, expected {n} rows of {width} f32", bytes.len(), view.dtype()));
    }
    if width == 0 {
        return Ok(vec![vec![]; n]);
    }
    Ok(bytes.chunks_exact(width * 4).map(bytemuck::pod_collect_to_vec).collect())
}

/// Packs a shard's examples into tensors and writes the file atomically.
fn write_shard(path: &Path, meta: &ShardMeta, shard: ShardData) -> Result<(), CollectError> {
    let frames = meta.config.frames;
    let tensors = vec![
        Rows::f32("input", shard.inputs.iter().map(|a| a.channel(0)), frames),
        Rows::f32("output", shard.outputs.iter().map(|a| a.channel(0)), frames),
        Rows::f32("params", shard.thetas.iter().map(Vec::as_slice), meta.params.len()),
        Rows::f32("plain", shard.plain.iter().map(Vec::as_slice), meta.plain_params.len()),
        Rows::index(&shard.kept),
    ];
    let info = [("afx".to_string(), serde_json::to_string(meta).expect("metadata serialises"))].into();
    // A collection is written once and read by training later: its gigabytes should not crowd the page cache.
    afx_core::atomic::write_uncached_with(path, |file| {
        // Rows of audio (longer than the buffer) go straight to the file; the parameters' short rows are gathered.
        let mut file = std::io::BufWriter::with_capacity(64 << 10, file);
        write_safetensors(&mut file, tensors, info)?;
        file.flush().map_err(|e| e.to_string())
    })
    .map_err(|reason| CollectError::Write { path: path.into(), reason })
}

/// Temporary files a killed collect left behind (its shards are written as `.afx-*.tmp`, then renamed).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".afx-") && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn shard_range(config: &CollectConfig, shard: usize) -> std::ops::Range<usize> {
    shard * config.shard_size..((shard + 1) * config.shard_size).min(config.examples)
}

/// The metadata of a shard file, checking that the file is whole.
///
/// Reads only the safetensors header: the file is whole when its length is exactly what the header's tensor
/// offsets need (every shard is checked on each resume and manifest, so reading whole files would repeat the
/// collection's I/O).
pub fn read_meta(path: &Path) -> Result<ShardMeta, CollectError> {
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let unreadable = |e: std::io::Error| CollectError::Read { path: path.into(), reason: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let file_len = file.metadata().map_err(unreadable)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| torn(format!("no header: {e}")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(torn(format!("header of {header_len} bytes in a {file_len}-byte file")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| torn(format!("header: {e}")))?;
    let header: Metadata = serde_json::from_slice(&header).map_err(|e| torn(e.to_string()))?;
    let data_len = header.tensors().values().map(|t| t.data_offsets.1).max().unwrap_or(0) as u64;
    if 8 + header_len + data_len != file_len {
        return Err(torn(format!("{file_len} bytes, its header describes {}", 8 + header_len + data_len)));
    }
    check_header(path, &header)
}

/// Headers larger than this are not shards (a shard's header is a few kilobytes).
const MAX_HEADER: u64 = 100 << 20;

/// A shard file's metadata and tensors, checking that the file is whole.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(ShardMeta, SafeTensors<'a>), CollectError> {
    let torn = |e: safetensors::SafeTensorError| CollectError::BadShard { path: path.into(), reason: e.to_string() };
    let tensors = SafeTensors::deserialize(bytes).map_err(torn)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(torn)?;
    Ok((check_header(path, &header)?, tensors))
}

/// The `afx` metadata of a shard's header, checking its version and that every tensor is there.
fn check_header(path: &Path, header: &Metadata) -> Result<ShardMeta, CollectError> {
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let text = header.metadata().as_ref().and_then(|m| m.get("afx")).ok_or_else(|| torn("no afx metadata".into()))?;
    let meta: ShardMeta = serde_json::from_str(text).map_err(|e| torn(e.to_string()))?;
    if meta.version != FORMAT_VERSION {
        return Err(torn(format!("format version {} (this afx reads {FORMAT_VERSION})", meta.version)));
    }
    let tensors = header.tensors();
    for name in ["input", "output", "params", "plain", "index"] {
        if !tensors.contains_key(name) {
            return Err(torn(format!("no tensor {name}")));
        }
    }
    Ok(meta)
}

/// Lists the shards in `dir` into `manifest.json` (atomically). Every shard must be whole and of the same
/// collection; a torn or foreign one is an error naming it.
pub fn write_manifest(dir: &Path) -> Result<Manifest, CollectError> {
    let manifest = scan(dir)?;
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    let path = dir.join(MANIFEST);
    afx_core::atomic::write(&path, text.as_bytes()).map_err(|reason| CollectError::Write { path, reason })?;
    Ok(manifest)
}

/// The manifest of the shards in `dir` (sorted by file name), without writing it: every shard must be whole
/// and of the same collection; a torn or foreign one is an error naming it.
pub fn scan(dir: &Path) -> Result<Manifest, CollectError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CollectError::Read { path: dir.into(), reason: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    let mut manifest: Option<Manifest> = None;
    for path in files {
        let meta = read_meta(&path)?;
        let examples = shard_range(&meta.config, meta.shard).len() - meta.excluded.len();
        let entry = ManifestShard {
            file: path.file_name().expect("a file").to_string_lossy().into_owned(),
            examples,
            excluded: meta.excluded.len(),
        };
        match &mut manifest {
            None => {
                manifest = Some(Manifest {
                    version: FORMAT_VERSION,
                    chain: meta.chain,
                    params: meta.params,
                    config: meta.config,
                    total_examples: examples,
                    shards: vec![entry],
                })
            }
            Some(m) => {
                if m.chain != meta.chain || m.params != meta.params || m.config != meta.config {
                    return Err(CollectError::Foreign {
                        path,
                        reason: format!(
                            "chain {:?} {:?}, while the others are chain {:?} {:?}",
                            meta.chain, meta.config, m.chain, m.config
                        ),
                    });
                }
                m.total_examples += examples;
                m.shards.push(entry);
            }
        }
    }
    manifest.ok_or_else(|| CollectError::Read {
        path: dir.into(),
        reason: "no shard-*.safetensors (collect examples with `afx collect --out` first)".into(),
    })
}

/// The examples of a shard, for checks and for the proxy's training.
pub fn read_examples(path: &Path) -> Result<Vec<Example>, CollectError> {
    let bytes = std::fs::read(path).map_err(|e| CollectError::Read { path: path.into(), reason: e.to_string() })?;
    let (meta, tensors) = parse(path, &bytes)?;
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let index: Vec<u64> = tensor(&tensors, "index").map_err(torn)?;
    let (n, frames, p, rate) = (index.len(), meta.config.frames, meta.params.len(), meta.config.sample_rate);
    let floats = |name: &str, width: usize| rows(&tensors, name, n, width).map_err(torn);
    let (input, output, params) = (floats("input", frames)?, floats("output", frames)?, floats("params", p)?);
    let audio = |samples: Vec<f32>| Audio::new(rate, vec![samples]).expect("one channel");
    Ok(index
        .into_iter()
        .zip(input.into_iter().zip(output).zip(params))
        .map(|(index, ((input, output), params))| Example { index, input: audio(input), params, output: audio(output) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// `write_safetensors` writes exactly the bytes of the format crate's `serialize` (header, padding, tensor
    /// order), and a row layout or shape mismatch is refused.
    #[test]
    fn write_safetensors_writes_the_bytes_of_safetensors_serialize() {
        // Odd sizes, so the header's padding and a u64 tensor after f32 rows of odd length are exercised.
        let (n, frames, p) = (3, 7, 5);
        let audio: Vec<Vec<f32>> = (0..n).map(|k| (0..frames).map(|i| (k * 31 + i) as f32 * 0.37).collect()).collect();
        let theta: Vec<Vec<f32>> = (0..n).map(|k| (0..p).map(|i| (k + i) as f32 / 9.0).collect()).collect();
        let index: Vec<u64> = vec![10, 11, 13];
        let info: std::collections::HashMap<String, String> = [("afx".to_string(), "{\"v\":1}".to_string())].into();

        let mut ours = vec![];
        let tensors = vec![
            Rows::f32("output", audio.iter().map(Vec::as_slice), frames),
            Rows::f32("params", theta.iter().map(Vec::as_slice), p),
            Rows::index(&index),
        ];
        write_safetensors(&mut ours, tensors, info.clone()).unwrap();

        let flat = |rows: &[Vec<f32>]| rows.concat();
        let (audio_flat, theta_flat) = (flat(&audio), flat(&theta));
        let views = vec![
            ("output", TensorView::new(Dtype::F32, vec![n, frames], bytemuck::cast_slice(&audio_flat)).unwrap()),
            ("params", TensorView::new(Dtype::F32, vec![n, p], bytemuck::cast_slice(&theta_flat)).unwrap()),
            ("index", TensorView::new(Dtype::U64, vec![n], bytemuck::cast_slice(&index)).unwrap()),
        ];
        let theirs = safetensors::tensor::serialize(views, Some(info.clone())).unwrap();
        assert_eq!(ours, theirs);

        let tensors = SafeTensors::deserialize(&ours).unwrap();
        assert_eq!(rows(&tensors, "output", n, frames).unwrap(), audio);
        assert_eq!(rows(&tensors, "params", n, p).unwrap(), theta);
        assert!(rows(&tensors, "params", n, p + 1).unwrap_err().contains("params"));

        let short = [&audio[0][..frames - 1]];
        let bad = vec![Rows::f32("output", short.into_iter(), frames)];
        let err = write_safetensors(&mut vec![], bad, info).unwrap_err();
        assert!(err.contains("output"), "{err}");
    }
}
