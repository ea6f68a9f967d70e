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

mod config;
mod manifest;
mod request;
mod shard;
mod worker;

use std::path::Path;

use afx_datasets::Corpus;
use afx_host::ChainLayout;
use afx_spsa::{Job, Pool};

use self::config::shard_range;
pub use self::config::{CollectConfig, CollectError, Sampler, ShardSlice, Uniform};
pub use self::manifest::{MANIFEST, Manifest, ManifestShard, scan, write_manifest};
pub use self::request::SHARD_TASK;
use self::request::{Plan, ShardInputs};
pub use self::shard::{Example, FORMAT_VERSION, ShardMeta, read_examples, read_meta, shard_file};
use self::shard::{ShardData, write_shard};
pub use self::worker::worker_tasks;

/// What examples are made from.
pub struct Sources<'a> {
    pub chain: &'a ChainLayout,
    pub pool: &'a mut Pool,
    pub corpus: &'a Corpus,
    pub sampler: &'a dyn Sampler,
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
