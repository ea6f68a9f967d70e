//! Throughput of the pool, measured side by side in one run: renders through isolated (process) workers vs
//! in-process (thread) workers vs a direct loop on this thread; SPSA with 1 vs 2 workers against two threads
//! rendering directly (the machine's limit); one SPSA item of K = 16 on 1 vs 2 workers; and the sandbox's cost:
//! 2-worker SPSA and a worker's start with the sandbox on (the default, as in every other measure) and off.
//! Every measure is taken once per round, the rounds interleaved, so machine noise hits all alike.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use afx_spsa::estimator::Scoring;
use afx_spsa::worker::{Executor, WorkerSpec};
use afx_spsa::{Isolation, Job, Pool, PoolConfig, PoolError, WorkerCommand, item_seed};

use crate::signal::test_signal;
use crate::stats::median;

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
    /// Renders per second of two threads rendering directly, each with its own chain: what 2 cores can do.
    pub direct_2_threads_renders_per_s: f64,
    /// 2-worker SPSA renders/s over the two direct threads' (target >= 0.9).
    pub over_direct_limit: f64,
    /// Seconds for one SPSA item of K = 16 (32 renders) with 1 and 2 process workers.
    pub one_item_k16_1_worker_s: f64,
    pub one_item_k16_2_workers_s: f64,
    /// 1-worker over 2-worker time of that one item (target >= 1.8 on 2 cores).
    pub one_item_k16_speedup: f64,
    /// Renders per second of the 2-worker SPSA run without the sandbox, and the sandboxed run's over it (target
    /// >= 0.97).
    pub renders_per_s_unsandboxed: f64,
    pub sandboxed_over_unsandboxed: f64,
    /// Seconds from starting one worker to its hello (the chain loaded), with and without the sandbox.
    pub worker_start_s: f64,
    pub worker_start_unsandboxed_s: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("{0}")]
    Failed(String),
}

fn check<T, E: std::fmt::Display>(results: Vec<Result<T, E>>) -> Result<(), BenchError> {
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(BenchError::Failed(e.to_string())),
        None => Ok(()),
    }
}

/// Two threads rendering directly, each with its own [`Executor`], driven round by round.
struct DirectThreads {
    go: Vec<mpsc::Sender<usize>>,
    done: mpsc::Receiver<Result<(), String>>,
}

impl DirectThreads {
    fn start(
        spec: &WorkerSpec,
        input: &Arc<afx_core::Audio>,
        theta: &[f32],
        threads: usize,
    ) -> Result<Self, BenchError> {
        let (done_tx, done) = mpsc::channel();
        let mut go = vec![];
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel::<usize>();
            let (spec, input, theta, done) = (spec.clone(), input.clone(), theta.to_vec(), done_tx.clone());
            std::thread::spawn(move || {
                let mut executor = match Executor::new(&spec) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = done.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = done.send(Ok(()));
                let job = Job::Render { input, theta, hop: 0 };
                for renders in rx {
                    let result = (0..renders).try_for_each(|_| executor.run_ref(&job).map(|_| ()));
                    let _ = done.send(result.map_err(|e| e.to_string()));
                }
            });
            go.push(tx);
        }
        let threads = DirectThreads { go, done };
        threads.wait()?;
        Ok(threads)
    }

    fn wait(&self) -> Result<(), BenchError> {
        for _ in 0..self.go.len() {
            self.done.recv().map_err(|e| BenchError::Failed(e.to_string()))?.map_err(BenchError::Failed)?;
        }
        Ok(())
    }

    /// `renders` renders on each thread at once; the wall time.
    fn run(&self, renders: usize) -> Result<Duration, BenchError> {
        let start = Instant::now();
        for go in &self.go {
            go.send(renders).map_err(|e| BenchError::Failed(e.to_string()))?;
        }
        self.wait()?;
        Ok(start.elapsed())
    }
}

/// Measures one chain: `renders` renders of `seconds` of 44.1 kHz mono per round, `rounds` rounds alternating
/// the three ways so machine noise hits all alike; then, interleaved by rounds, SPSA batches of `renders` items
/// (K = 1) with 1 and 2 workers, `renders` renders on each of two direct threads, and one item of K = 16 with 1
/// and 2 workers.
pub fn pool_throughput(
    spec: &WorkerSpec,
    worker: &WorkerCommand,
    seconds: f64,
    renders: usize,
    rounds: usize,
) -> Result<PoolBench, BenchError> {
    let rate = 44_100;
    let input = test_signal(rate, (seconds * f64::from(rate)).round().max(1.0) as usize);
    let input = Arc::new(input);
    let mut direct = Executor::new(spec).map_err(|e| BenchError::Failed(e.to_string()))?;
    let p = direct.chain().num_params();
    let theta = vec![0.5f32; p];
    let config = |isolation, workers| PoolConfig { workers, ..PoolConfig::new(spec.clone(), isolation) };
    let mut threads = Pool::new(config(Isolation::Thread, 1))?;
    let mut processes = Pool::new(config(Isolation::Process(worker.clone()), 1))?;
    let render_jobs =
        || (0..renders).map(|_| Job::Render { hop: 0, input: input.clone(), theta: theta.clone() }).collect();

    let (mut d, mut t, mut i) = (vec![], vec![], vec![]);
    for round in 0..=rounds.max(1) {
        let start = Instant::now();
        let job = Job::Render { hop: 0, input: input.clone(), theta: theta.clone() };
        for _ in 0..renders {
            direct.run_ref(&job).map_err(|e| BenchError::Failed(e.to_string()))?;
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
    drop(direct);
    let (direct_s, inprocess_s, isolated_s) = (median(d), median(t), median(i));

    let spsa_job = |perturbations: u32, seed: u64| Job::Spsa {
        hop: 0,
        scoring: Scoring::Whole,
        input: input.clone(),
        theta: theta.clone(),
        grad: input.clone(),
        epsilon: 1e-2,
        perturbations,
        seed,
    };
    let spsa_jobs = |round: usize| (0..renders).map(|k| spsa_job(1, item_seed(round as u64, k))).collect();
    let mut two = Pool::new(config(Isolation::Process(worker.clone()), 2))?;
    let unsandboxed = |workers| {
        let mut config = config(Isolation::Process(worker.clone()), workers);
        config.sandbox.enabled = false;
        config
    };
    let mut two_open = Pool::new(unsandboxed(2))?;
    let pair = DirectThreads::start(spec, &input, &theta, 2)?;
    let (mut one_rate, mut two_rate, mut pair_rate, mut k16_one, mut k16_two) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut open_rate, mut starts, mut starts_open) = (vec![], vec![], vec![]);
    for round in 0..=rounds.max(1) {
        let start = Instant::now();
        check(processes.run(spsa_jobs(round)))?;
        let one_time = start.elapsed();
        let started = Instant::now();
        check(two.run(spsa_jobs(round)))?;
        let two_time = started.elapsed();
        let started = Instant::now();
        check(two_open.run(spsa_jobs(round)))?;
        let open_time = started.elapsed();
        let started = Instant::now();
        drop(Pool::new(config(Isolation::Process(worker.clone()), 1))?);
        let start_time = started.elapsed();
        let started = Instant::now();
        drop(Pool::new(unsandboxed(1))?);
        let start_open_time = started.elapsed();
        let pair_time = pair.run(renders)?;
        let start = Instant::now();
        check(processes.run(vec![spsa_job(16, round as u64)]))?;
        let k16_one_time = start.elapsed();
        let start = Instant::now();
        check(two.run(vec![spsa_job(16, round as u64)]))?;
        let k16_two_time = start.elapsed();
        if round > 0 {
            one_rate.push(renders as f64 / one_time.as_secs_f64());
            two_rate.push(renders as f64 / two_time.as_secs_f64());
            pair_rate.push(2.0 * renders as f64 / pair_time.as_secs_f64());
            k16_one.push(k16_one_time.as_secs_f64());
            k16_two.push(k16_two_time.as_secs_f64());
            open_rate.push(renders as f64 / open_time.as_secs_f64());
            starts.push(start_time.as_secs_f64());
            starts_open.push(start_open_time.as_secs_f64());
        }
    }
    let open = median(open_rate);
    let (one, two, pair) = (median(one_rate), median(two_rate), median(pair_rate));
    let (k16_one, k16_two) = (median(k16_one), median(k16_two));
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
        direct_2_threads_renders_per_s: pair,
        over_direct_limit: 2.0 * two / pair,
        one_item_k16_1_worker_s: k16_one,
        one_item_k16_2_workers_s: k16_two,
        one_item_k16_speedup: k16_one / k16_two,
        renders_per_s_unsandboxed: 2.0 * open,
        sandboxed_over_unsandboxed: two / open,
        worker_start_s: median(starts),
        worker_start_unsandboxed_s: median(starts_open),
    })
}

/// `afx bench spsa`'s report of one chain, measured over `rounds` rounds.
pub fn report(r: &PoolBench, rounds: usize) -> String {
    format!(
        "{}: {} s renders, median of {} rounds\n  per render: direct {:.2} ms, thread worker {:.2} ms, process worker {:.2} ms\n  isolated/in-process {:.3}x (target <= 1.10), in-process/direct {:.3}x\n  SPSA items/s: 1 worker {:.1}, 2 workers {:.1}: speedup {:.2}x (target >= 1.8), {:.0} renders/s\n  two direct threads {:.0} renders/s: 2-worker SPSA over that limit {:.3}x (target >= 0.9)\n  one SPSA item, K = 16: 1 worker {:.1} ms, 2 workers {:.1} ms: speedup {:.2}x (target >= 1.8)\n  sandbox: 2-worker SPSA {:.0} renders/s, {:.0} without: {:.3}x (target >= 0.97); a worker starts in {:.1} ms, {:.1} ms without",
        r.chain,
        r.seconds,
        rounds,
        r.direct_s * 1e3,
        r.inprocess_s * 1e3,
        r.isolated_s * 1e3,
        r.isolated_over_inprocess,
        r.inprocess_over_direct,
        r.spsa_items_per_s_1_worker,
        r.spsa_items_per_s_2_workers,
        r.speedup_2_workers,
        r.renders_per_s,
        r.direct_2_threads_renders_per_s,
        r.over_direct_limit,
        r.one_item_k16_1_worker_s * 1e3,
        r.one_item_k16_2_workers_s * 1e3,
        r.one_item_k16_speedup,
        r.renders_per_s,
        r.renders_per_s_unsandboxed,
        r.sandboxed_over_unsandboxed,
        r.worker_start_s * 1e3,
        r.worker_start_unsandboxed_s * 1e3
    )
}

/// `afx bench spsa --json`: the first chain's ratios at the top level, every chain under `chains`; `None` without
/// a chain.
pub fn json_summary(results: &[PoolBench]) -> Option<serde_json::Value> {
    let first = results.first()?;
    Some(serde_json::json!({
        "isolated_over_inprocess": first.isolated_over_inprocess,
        "inprocess_over_direct": first.inprocess_over_direct,
        "speedup_2_workers": first.speedup_2_workers,
        "renders_per_s": first.renders_per_s,
        "over_direct_limit": first.over_direct_limit,
        "one_item_k16_speedup": first.one_item_k16_speedup,
        "sandboxed_over_unsandboxed": first.sandboxed_over_unsandboxed,
        "worker_start_s": first.worker_start_s,
        "chains": results,
    }))
}
