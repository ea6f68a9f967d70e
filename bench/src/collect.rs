//! Throughput of [`collect`](afx_proxy::collect::collect) through the real chain with 1 and 2 worker processes,
//! measured side by side in one run, so the ratio says how well collecting scales with cores (target >= 1.8 on
//! 2 cores) while machine noise hits both sides alike.
//!
//! Each timed run is a whole collection into a fresh folder, as `afx collect` does it: crops, parameter draws,
//! renders in the pool, shard files and the manifest. Corpus loading and worker start-up happen once, before
//! the clock runs: they do not grow with the number of examples.
//!
//! The reference beside it is the same work without the pool: 1 and 2 threads each making, rendering and
//! writing their share of the shards with a chain of their own. On a shared 2-core VM two copies of this work do
//! not run at twice the speed of one (memory traffic and the host's other tenants); the reference shows that
//! ceiling, measured in the same rounds.

use std::path::Path;
use std::time::Instant;

use afx_datasets::Corpus;
use afx_spsa::worker::Executor;
use afx_spsa::{Isolation, Pool, PoolConfig, PoolError, WorkerCommand, WorkerSpec};

use afx_proxy::collect::{self, CollectConfig, CollectError, ShardSlice, Sources, Uniform};

use crate::signal::test_signal;
use crate::stats::median;

/// Examples per shard in the bench: `afx collect`'s default.
pub const SHARD_SIZE: usize = 64;

/// What [`collect_throughput`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectBench {
    pub chain: String,
    /// Examples per timed collection, and seconds of audio per example.
    pub examples: usize,
    pub seconds: f64,
    pub sample_rate: u32,
    /// Timed collections per worker count (after one warm-up each).
    pub repeats: usize,
    /// Median examples per second with 1 and 2 worker processes.
    pub examples_per_s_1_worker: f64,
    pub examples_per_s_2_workers: f64,
    /// Slowest and fastest repeat, examples per second.
    pub range_1_worker: [f64; 2],
    pub range_2_workers: [f64; 2],
    /// Median over the rounds of 2-worker over 1-worker throughput (target >= 1.8 on 2 cores). Each round
    /// times both back to back, so the ratio of a round cancels the machine's slow drifts (other tenants of a
    /// shared host move both rates together by 10-20% here).
    pub speedup_2_workers: f64,
    /// Lowest and highest speedup of a round.
    pub speedup_range: [f64; 2],
    /// The reference: the same shards made, rendered and written by 1 and by 2 threads of one process, each
    /// with its own chain, no pool, no pipes, no parent. Median over the rounds of its 2-over-1 ratio: what
    /// this machine gives two copies of the work, the ceiling of `speedup_2_workers`.
    pub speedup_without_pool: f64,
    pub speedup_without_pool_range: [f64; 2],
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("cannot make a scratch folder for the shards: {0}")]
    Scratch(std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// What to collect and how often.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub examples: usize,
    /// Seconds of audio per example.
    pub seconds: f64,
    pub repeats: usize,
}

/// The corpus the bench crops when none is given: 30 s of the host bench's test signal (noise under a slow
/// envelope, so the compressor works), in memory. Crops cost the same whatever the audio; renders of EQ and
/// compressor barely depend on it.
pub fn test_corpus(sample_rate: u32) -> Result<Corpus, BenchError> {
    let signal = test_signal(sample_rate, 30 * sample_rate as usize);
    Corpus::from_clips(Path::new("(test signal)"), sample_rate, vec![("test-signal.wav".into(), signal)])
        .map_err(|e| BenchError::Config(e.to_string()))
}

fn range(v: &[f64]) -> [f64; 2] {
    [v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max)]
}

/// Measures `afx collect` of the chain `spec` names (hosted in worker processes run by `worker`) on `corpus`
/// with a 1-worker and a 2-worker pool, alternating which goes first each round; round 0 warms up and is not
/// counted.
pub fn collect_throughput(
    corpus: &Corpus,
    spec: &WorkerSpec,
    worker: &WorkerCommand,
    bench: &BenchConfig,
) -> Result<CollectBench, BenchError> {
    if bench.examples == 0 || bench.repeats == 0 || bench.seconds.is_nan() || bench.seconds <= 0.0 {
        return Err(BenchError::Config("--examples, --seconds and --repeats must be positive".into()));
    }
    let sample_rate = corpus.sample_rate();
    let config = CollectConfig {
        examples: bench.examples,
        shard_size: SHARD_SIZE,
        seed: 0,
        sample_rate,
        frames: (bench.seconds * f64::from(sample_rate)).round().max(1.0) as usize,
    };
    let pool = |workers| {
        Pool::new(PoolConfig { workers, ..PoolConfig::new(spec.clone(), Isolation::Process(worker.clone())) })
    };
    let mut pools = [pool(1)?, pool(2)?];
    let chain = &pools[0].chain().clone();
    let scratch = tempfile::tempdir().map_err(BenchError::Scratch)?;
    let mut rates = [vec![], vec![]];
    let mut references = [vec![], vec![]];
    for round in 0..=bench.repeats {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let out = scratch.path().join(format!("round-{round}-threads-{}", side + 1));
            let rate = without_pool(spec, corpus, &config, &out, side + 1)?;
            let _ = std::fs::remove_dir_all(&out);
            if round > 0 {
                references[side].push(rate);
            }
        }
        for side in order {
            let out = scratch.path().join(format!("round-{round}-workers-{}", side + 1));
            let sources = Sources { chain, pool: &mut pools[side], corpus, sampler: &Uniform };
            let start = Instant::now();
            collect::collect(&out, sources, &config, ShardSlice { index: 0, count: 1 }, |_, _| {})?;
            let collected = collect::write_manifest(&out)?.total_examples;
            let elapsed = start.elapsed().as_secs_f64();
            // Only the timing is wanted: keep the scratch folder small over many repeats.
            let _ = std::fs::remove_dir_all(&out);
            // Excluded examples cost no render: counting them would flatter the throughput.
            if collected != config.examples {
                return Err(BenchError::Config(format!(
                    "only {collected} of {} examples were collected: the corpus has too few loud {} s stretches, \
                     or renders failed",
                    config.examples, bench.seconds
                )));
            }
            if round > 0 {
                rates[side].push(collected as f64 / elapsed);
            }
        }
    }
    let (one, two) = (median(rates[0].clone()), median(rates[1].clone()));
    let speedups: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(one, two)| two / one).collect();
    let reference: Vec<f64> = references[0].iter().zip(&references[1]).map(|(one, two)| two / one).collect();
    Ok(CollectBench {
        chain: chain.name().to_string(),
        examples: config.examples,
        seconds: bench.seconds,
        sample_rate,
        repeats: bench.repeats,
        examples_per_s_1_worker: one,
        examples_per_s_2_workers: two,
        range_1_worker: range(&rates[0]),
        range_2_workers: range(&rates[1]),
        speedup_2_workers: median(speedups.clone()),
        speedup_range: range(&speedups),
        speedup_without_pool: median(reference.clone()),
        speedup_without_pool_range: range(&reference),
    })
}

/// Examples per second when `threads` threads each make, render and write every `threads`-th shard with a chain
/// of their own: a worker's work, without the pool.
fn without_pool(
    spec: &WorkerSpec,
    corpus: &Corpus,
    config: &CollectConfig,
    out: &Path,
    threads: usize,
) -> Result<f64, BenchError> {
    std::fs::create_dir_all(out).map_err(BenchError::Scratch)?;
    let shards = config.examples.div_ceil(config.shard_size);
    // Chains load before the clock starts, as the pool's workers do.
    let ready = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let ready = &ready;
                scope.spawn(move || -> Result<(), String> {
                    let executor = Executor::new(spec).map(|e| e.with_tasks(collect::worker_tasks()));
                    ready.wait();
                    let mut executor = executor.map_err(|e| e.to_string())?;
                    for j in (t..shards).step_by(threads) {
                        let job = collect::shard_job(out, (executor.chain().layout(), corpus, &Uniform), config, j);
                        executor.run(&job).map_err(|e| format!("shard {j}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("a bench thread panicked").map_err(BenchError::Config)?;
        }
        Ok(config.examples as f64 / start.elapsed().as_secs_f64())
    })
}

/// `afx bench collect`'s report: both rates, their ratio and the reference's, with their ranges.
pub fn report(r: &CollectBench) -> String {
    format!(
        "{}: {} examples of {} s at {} Hz per collection, median of {} (range):\n  \
         1 worker  {:.1} examples/s ({:.1}-{:.1})\n  2 workers {:.1} examples/s ({:.1}-{:.1})\n  \
         speedup {:.2}x ({:.2}-{:.2}, target >= 1.8); without the pool (2 threads over 1, same work) {:.2}x \
         ({:.2}-{:.2})",
        r.chain,
        r.examples,
        r.seconds,
        r.sample_rate,
        r.repeats,
        r.examples_per_s_1_worker,
        r.range_1_worker[0],
        r.range_1_worker[1],
        r.examples_per_s_2_workers,
        r.range_2_workers[0],
        r.range_2_workers[1],
        r.speedup_2_workers,
        r.speedup_range[0],
        r.speedup_range[1],
        r.speedup_without_pool,
        r.speedup_without_pool_range[0],
        r.speedup_without_pool_range[1]
    )
}
