//! Throughput of the pool, measured side by side in one run: renders through isolated (process) workers vs
//! in-process (thread) workers vs a direct loop on this thread, and SPSA with 1 vs 2 workers.

use std::time::{Duration, Instant};

use crate::job::{Job, item_seed};
use crate::pool::{Isolation, Pool, PoolConfig, PoolError, WorkerCommand};
use crate::worker::{Executor, WorkerSpec};

/// What [`pool_throughput`] measured for one chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolBench {
    pub chain: String,
    /// Seconds of audio per render.
    pub seconds: f64,
    /// Median seconds per render: direct loop, thread worker, process worker (one worker each).
    pub direct_s: f64,
    pub inprocess_s: f64,
    pub isolated_s: f64,
    /// The cost of process isolation over threads (target <= 1.10).
    pub isolated_over_inprocess: f64,
    /// The cost of the pool's machinery over a plain loop.
    pub inprocess_over_direct: f64,
    /// SPSA (K = 1, two renders per item) items per second with 1 and 2 process workers.
    pub spsa_items_per_s_1_worker: f64,
    pub spsa_items_per_s_2_workers: f64,
    /// 2-worker over 1-worker SPSA throughput (target >= 1.8 on 2 cores).
    pub speedup_2_workers: f64,
    /// Plugin renders per second in the 2-worker SPSA run.
    pub renders_per_s: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("{0}")]
    Failed(String),
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn check<T, E: std::fmt::Display>(results: Vec<Result<T, E>>) -> Result<(), BenchError> {
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(BenchError::Failed(e.to_string())),
        None => Ok(()),
    }
}

/// Measures one chain: `renders` renders of `seconds` of 44.1 kHz mono per round, `rounds` rounds alternating
/// the three ways so machine noise hits all alike; then SPSA batches of `renders` items with 1 and 2 workers.
pub fn pool_throughput(
    spec: &WorkerSpec,
    worker: &WorkerCommand,
    seconds: f64,
    renders: usize,
    rounds: usize,
) -> Result<PoolBench, BenchError> {
    let rate = 44_100;
    let input = afx_host::bench::test_signal(rate, (seconds * f64::from(rate)).round().max(1.0) as usize);
    let mut direct = Executor::new(spec).map_err(|e| BenchError::Failed(e.to_string()))?;
    let p = direct.chain().num_params();
    let theta = vec![0.5f32; p];
    let config = |isolation, workers| PoolConfig { workers, ..PoolConfig::new(spec.clone(), isolation) };
    let mut threads = Pool::new(config(Isolation::Thread, 1))?;
    let mut processes = Pool::new(config(Isolation::Process(worker.clone()), 1))?;
    let render_jobs = || (0..renders).map(|_| Job::Render { input: input.clone(), theta: theta.clone() }).collect();

    let (mut d, mut t, mut i) = (vec![], vec![], vec![]);
    for round in 0..=rounds.max(1) {
        let start = Instant::now();
        for _ in 0..renders {
            direct
                .run(&Job::Render { input: input.clone(), theta: theta.clone() })
                .map_err(|e| BenchError::Failed(e.to_string()))?;
        }
        let direct_time = start.elapsed();
        let start = Instant::now();
        check(threads.run(render_jobs()))?;
        let thread_time = start.elapsed();
        let start = Instant::now();
        check(processes.run(render_jobs()))?;
        let process_time = start.elapsed();
        // Round 0 warms caches and page tables; it is not counted.
        if round > 0 {
            let per = |d: Duration| d.as_secs_f64() / renders as f64;
            d.push(per(direct_time));
            t.push(per(thread_time));
            i.push(per(process_time));
        }
    }
    drop(threads);
    let (direct_s, inprocess_s, isolated_s) = (median(d), median(t), median(i));

    let spsa_jobs = |round: usize| {
        (0..renders)
            .map(|k| Job::Spsa {
                input: input.clone(),
                theta: theta.clone(),
                grad: input.clone(),
                epsilon: 1e-2,
                perturbations: 1,
                seed: item_seed(round as u64, k),
            })
            .collect()
    };
    let mut two = Pool::new(config(Isolation::Process(worker.clone()), 2))?;
    let (mut one_rate, mut two_rate) = (vec![], vec![]);
    for round in 0..=rounds.max(1) {
        let start = Instant::now();
        check(processes.run(spsa_jobs(round)))?;
        let one_time = start.elapsed();
        let start = Instant::now();
        check(two.run(spsa_jobs(round)))?;
        let two_time = start.elapsed();
        if round > 0 {
            one_rate.push(renders as f64 / one_time.as_secs_f64());
            two_rate.push(renders as f64 / two_time.as_secs_f64());
        }
    }
    let (one, two) = (median(one_rate), median(two_rate));
    Ok(PoolBench {
        chain: spec.chain.clone(),
        seconds,
        direct_s,
        inprocess_s,
        isolated_s,
        isolated_over_inprocess: isolated_s / inprocess_s,
        inprocess_over_direct: inprocess_s / direct_s,
        spsa_items_per_s_1_worker: one,
        spsa_items_per_s_2_workers: two,
        speedup_2_workers: two / one,
        renders_per_s: 2.0 * two,
    })
}
