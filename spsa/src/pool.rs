//! The pool: N workers (processes or threads) each hosting the same chain, fed batches of jobs.
//!
//! A supervisor on a single-threaded tokio runtime (the caller's thread, inside `run`: on a machine whose cores
//! the workers need, more runtime threads only add wake-ups) gives each worker slot jobs from a shared feed and
//! waits for each answer
//! with a time limit, so it never hangs. A worker that crashes or overruns is killed and replaced, and its job
//! is retried once on the fresh worker, then reported as a failed item (signal or timeout, with the worker's
//! stderr); the rest of the batch completes. [`Pool::run`] returns the results in the batch's order;
//! [`Pool::run_each`] draws the jobs from an iterator as workers need them and hands over each result as it
//! arrives, so a long stream of large jobs never sits in memory at once.
//!
//! Each worker holds two jobs: a worker process reads its input on a thread of its own, so the next job's
//! frame goes through while the current job runs, whatever the sizes, and neither side waits on a full pipe.
//!
//! A batch ([`Pool::run`]) writes each distinct audio of its jobs once into the pool's shared arena (see
//! [`crate::arena`]), which worker processes inherit: job frames then carry references, not samples. A batch
//! of fewer items than two per worker splits its SPSA items into parts of their perturbations
//! ([`Job::SpsaPart`]), so that one item keeps every worker busy; the parts' results combine into exactly the
//! estimate the whole item gives.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use afx_host::{Audio, ChainLayout};

use crate::arena::{Arena, OUTPUT_BUFFERS, OUTPUTS_ENV, Outputs, Placements};
use crate::estimator::{Workspace, spsa_combine};
use crate::job::{FailureKind, ItemError, Job, JobOutput, item_seed};
use crate::task::TaskSet;
use crate::wire::{self, Message};
use crate::worker::{Executor, WorkerSpec};

/// How workers are isolated from the caller and from each other.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// One OS process per worker: a plugin that crashes or hangs takes only its worker down.
    Process(WorkerCommand),
    /// One thread per worker, in this process: cheaper, for trusted plugins. A crash takes the caller down;
    /// a hung thread is abandoned and replaced.
    Thread,
}

/// The program that serves as a worker process, the arguments before the [`WorkerSpec`]'s, and environment
/// variables to set for it (on top of this process's).
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, std::ffi::OsString)>,
}

impl WorkerCommand {
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand { program: program.into(), args: vec![], env: vec![] }
    }

    /// This executable's hidden subcommand (as `afx worker`).
    pub fn current_exe(subcommand: &str) -> std::io::Result<WorkerCommand> {
        Ok(WorkerCommand { args: vec![subcommand.to_string()], ..WorkerCommand::new(std::env::current_exe()?) })
    }

    /// Sets an environment variable for the workers.
    pub fn env(mut self, key: &str, value: impl Into<std::ffi::OsString>) -> WorkerCommand {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

/// Everything a pool needs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub spec: WorkerSpec,
    pub isolation: Isolation,
    pub workers: usize,
    /// The longest one job may take before its worker is killed.
    pub job_timeout: Duration,
    /// The longest a worker may take to load its chain and say hello.
    pub start_timeout: Duration,
    /// The [`Task`](crate::Task)s of worker threads ([`Isolation::Thread`]); worker processes know those their
    /// program passes to [`main_with_args`](crate::worker::main_with_args).
    pub tasks: TaskSet,
}

impl PoolConfig {
    /// Process isolation with one worker per core and generous limits.
    pub fn new(spec: WorkerSpec, isolation: Isolation) -> PoolConfig {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        PoolConfig {
            spec,
            isolation,
            workers,
            job_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(30),
            tasks: crate::task::no_tasks,
        }
    }
}

/// Why a pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot start a worker for {chain}: {message}{}", if .stderr.is_empty() { String::new() } else { format!("\nworker stderr:\n{}", .stderr) })]
    Start { chain: String, message: String, stderr: String },
    #[error("cannot start the pool's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("a pool needs at least one worker")]
    NoWorkers,
}

/// A running pool. Dropping it stops its workers.
pub struct Pool {
    runtime: tokio::runtime::Runtime,
    config: Arc<PoolConfig>,
    workers: Vec<Option<Worker>>,
    chain: ChainLayout,
    renders: u64,
    /// Where batches put their audio for worker processes; `None` for threads (or without memfd).
    arena: Option<Arena>,
}

impl Pool {
    /// Starts every worker and waits for each to load the chain, so a bad chain fails here, not mid-batch.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let config = Arc::new(config);
        let arena = match &config.isolation {
            Isolation::Process(_) => {
                Arena::new().inspect_err(|e| tracing::warn!("no shared arena, audio goes through the pipes: {e}")).ok()
            }
            Isolation::Thread => None,
        };
        let arena_fd = arena.as_ref().map(Arena::fd);
        let workers = runtime.block_on(async {
            let mut workers = vec![];
            for _ in 0..config.workers {
                workers.push(Some(Worker::start(&config, arena_fd).await?));
            }
            Ok::<_, PoolError>(workers)
        })?;
        let chain = workers[0].as_ref().expect("every worker started").chain.clone();
        Ok(Pool { runtime, config, workers, chain, renders: 0, arena })
    }

    /// The chain the workers host, as the first worker described it: its stages, plugins and parameters. The
    /// caller learns it from here instead of loading the plugins itself.
    pub fn chain(&self) -> &ChainLayout {
        &self.chain
    }

    /// P: the chain's number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.chain.num_params()
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Renders item `i` of `inputs` at `thetas[i]`: the forward pass of a batch.
    ///
    /// Inputs are `Arc<Audio>` (shared as they are) or `Audio` (copied once, into an `Arc`); likewise in the other
    /// batch methods.
    pub fn render_batch<A: Shared>(&mut self, inputs: &[A], thetas: &[Vec<f32>]) -> Vec<Result<Audio, ItemError>> {
        let mut results: Vec<Option<Result<Audio, ItemError>>> = (0..inputs.len()).map(|_| None).collect();
        self.render_batch_each(inputs, thetas, |index, result| results[index] = Some(result));
        results.into_iter().map(|r| r.expect("every item gets a result")).collect()
    }

    /// [`Pool::render_batch`], handing each item's result to `done(index, result)` as soon as it arrives (on
    /// this thread, while the other items render): a caller that copies results into a buffer of its own does
    /// so behind the renders instead of after the batch. Every item gets exactly one call.
    pub fn render_batch_each<A: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        mut done: impl FnMut(usize, Result<Audio, ItemError>),
    ) {
        let jobs = inputs.iter().zip(thetas).map(|(x, t)| Job::Render { input: x.shared(), theta: t.clone() });
        let mut renders = 0;
        self.run_placed(jobs.collect(), |index, result| {
            let result = result.map(|o| o.into_audio().expect("render jobs give audio"));
            renders += u64::from(result.is_ok());
            done(index, result);
        });
        self.renders += renders;
    }

    /// One render of `input` with every parameter in plain units (one `Vec` per stage), `sidechain` fed to the
    /// plugins' key inputs (silence when `None`): a whole file, as `afx render` and `afx infer` do it, with the
    /// pool's crash, hang and NaN handling.
    pub fn render_values<A: Shared>(
        &mut self,
        input: &A,
        sidechain: Option<&A>,
        values: &[Vec<f32>],
    ) -> Result<Audio, ItemError> {
        let job = Job::RenderValues {
            input: input.shared(),
            sidechain: sidechain.map(Shared::shared),
            values: values.to_vec(),
        };
        let result = self.run(vec![job]).pop().expect("one result per job");
        result.map(|o| o.into_audio().expect("render jobs give audio"))
    }

    /// Successful [`Pool::render_batch`] items so far: how callers (and tests) see that the real chain ran.
    pub fn renders(&self) -> u64 {
        self.renders
    }

    /// SPSA estimates of `(∂y/∂θ)ᵀ g` for every item of a batch, K perturbations of size ε each; item `i` is
    /// seeded with [`item_seed`]`(seed, i)`, so results do not depend on the number of workers.
    pub fn spsa_batch<A: Shared, G: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        grads: &[G],
        epsilon: f32,
        perturbations: u32,
        seed: u64,
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let seeds: Vec<u64> = (0..inputs.len()).map(|i| item_seed(seed, i)).collect();
        self.spsa_batch_seeded(inputs, thetas, grads, epsilon, perturbations, &seeds)
    }

    /// [`Pool::spsa_batch`] with each item's own seed (a sub-batch keeps the seeds its items have in the batch).
    pub fn spsa_batch_seeded<A: Shared, G: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        grads: &[G],
        epsilon: f32,
        perturbations: u32,
        seeds: &[u64],
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let jobs = inputs.iter().zip(thetas).zip(grads).zip(seeds).map(|(((x, t), g), &seed)| Job::Spsa {
            input: x.shared(),
            theta: t.clone(),
            grad: g.shared(),
            epsilon,
            perturbations,
            seed,
        });
        self.gradients_of(jobs.collect())
    }

    /// Renders every item at its θ and at the K pairs θ± of SPSA's perturbations (seeded as
    /// [`Pool::spsa_batch_seeded`] seeds them) in one batch, before `g = ∂L/∂y` is known, as DeepAFx's layer
    /// renders its three instances in the forward pass. Each item's render at θ goes to `done(index, result)` as
    /// it arrives; its perturbed renders are kept, and [`PerturbedRenders::vjp`] later gives
    /// `spsa_batch_seeded`'s estimate for any `g`, bit for bit, without rendering.
    ///
    /// A training step then runs one batch instead of two (the workers start and drain once), and every job is
    /// one render, the smallest unit to share out: the last jobs leave less of a tail. The cost is memory: 2K
    /// renders per item are held until the gradient is taken. An item whose perturbed renders fail gets that
    /// error; its render at θ is reported to `done` on its own.
    pub fn render_perturbed_each<A: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        epsilon: f32,
        perturbations: u32,
        seeds: &[u64],
        mut done: impl FnMut(usize, Result<Audio, ItemError>),
    ) -> Vec<Result<PerturbedRenders, ItemError>> {
        let (items, pairs) = (inputs.len(), perturbations.max(1) as usize);
        let shared: Vec<Arc<Audio>> = inputs.iter().map(Shared::shared).collect();
        // The renders at θ first (the caller waits for those), then each item's pairs: θ₊ then θ₋ of k = 0, 1, ...
        let mut jobs: Vec<Job> =
            shared.iter().zip(thetas).map(|(x, t)| Job::Render { input: x.clone(), theta: t.clone() }).collect();
        for ((x, theta), &seed) in shared.iter().zip(thetas).zip(seeds) {
            for k in 0..pairs as u32 {
                let (plus, minus) = crate::estimator::spsa_perturbation(theta, epsilon, seed, k);
                jobs.push(Job::Render { input: x.clone(), theta: plus });
                jobs.push(Job::Render { input: x.clone(), theta: minus });
            }
        }
        let mut perturbed: Vec<Vec<Option<Audio>>> = (0..items).map(|_| vec![None; 2 * pairs]).collect();
        let mut failed: Vec<Option<ItemError>> = (0..items).map(|_| None).collect();
        let mut renders = 0;
        let chain = self.config.spec.chain.clone();
        self.run_placed(jobs, |index, result| {
            let result = result.map(|o| o.into_audio().expect("render jobs give audio"));
            if index < items {
                renders += u64::from(result.is_ok());
                return done(index, result);
            }
            let (item, render) = ((index - items) / (2 * pairs), (index - items) % (2 * pairs));
            let input = &shared[item];
            match result {
                Ok(y) if (y.num_channels(), y.frames()) == (input.num_channels(), input.frames()) => {
                    perturbed[item][render] = Some(y);
                }
                Ok(y) => {
                    let kind = FailureKind::Protocol(format!(
                        "a perturbed render gave {} channels of {} frames for an input of {} channels of {} frames",
                        y.num_channels(),
                        y.frames(),
                        input.num_channels(),
                        input.frames()
                    ));
                    let (chain, theta) = (chain.clone(), thetas[item].clone());
                    failed[item].get_or_insert(ItemError { chain, theta, kind, stderr: String::new() });
                }
                // Named by the item's θ, as `spsa_batch_seeded` names it, not the perturbed θ of the render.
                Err(e) => {
                    failed[item].get_or_insert(ItemError { theta: thetas[item].clone(), ..e });
                }
            }
        });
        self.renders += renders;
        perturbed
            .into_iter()
            .zip(failed)
            .zip(thetas.iter().zip(seeds))
            .map(|((renders, failed), (theta, &seed))| match failed {
                Some(e) => Err(e),
                None => {
                    let mut renders = renders.into_iter().map(|y| y.expect("every render of the item arrived"));
                    let pairs = std::iter::from_fn(|| Some((renders.next()?, renders.next()?))).collect();
                    Ok(PerturbedRenders { theta: theta.clone(), epsilon, seed, pairs })
                }
            })
            .collect()
    }

    /// Central finite-difference estimates of `(∂y/∂θ)ᵀ g` for every item of a batch, step `step` in the
    /// normalised space: 2P renders per item, the expensive reference.
    pub fn finite_difference_batch<A: Shared, G: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        grads: &[G],
        step: f32,
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let jobs = inputs.iter().zip(thetas).zip(grads).map(|((x, t), g)| Job::FiniteDifference {
            input: x.shared(),
            theta: t.clone(),
            grad: g.shared(),
            step,
        });
        self.gradients_of(jobs.collect())
    }

    fn gradients_of(&mut self, jobs: Vec<Job>) -> Vec<Result<Vec<f32>, ItemError>> {
        self.run(jobs)
            .into_iter()
            .map(|r| r.map(|o| o.into_gradient().expect("estimator jobs give gradients")))
            .collect()
    }

    /// Runs a batch: every job gets a result, in order.
    ///
    /// The batch's audio goes to worker processes once, through the shared arena. When the batch has fewer
    /// jobs than two per worker, each [`Job::Spsa`] of K ≥ 2 perturbations is split into
    /// `min(K, ⌈2·workers / jobs⌉)` [`Job::SpsaPart`]s of consecutive perturbations, spread over the workers
    /// like any jobs; the item's result is [`spsa_combine`] of their dots, bit for bit the whole job's, and the
    /// item fails (with the first failed part's error) if any part fails.
    pub fn run(&mut self, jobs: Vec<Job>) -> Vec<Result<JobOutput, ItemError>> {
        let (work, items) = split(jobs, self.workers.len());
        let mut results: Vec<Option<Result<JobOutput, ItemError>>> = (0..work.len()).map(|_| None).collect();
        self.run_placed(work, |index, result| results[index] = Some(result));
        let mut results = results.into_iter().map(|result| result.expect("every job gets a result"));
        let mut work = Workspace::default();
        items
            .into_iter()
            .map(|item| match item {
                Item::Whole => results.next().expect("a result per job"),
                Item::Split { parts, theta, epsilon, seed } => {
                    let mut dots = vec![];
                    let mut failed = None;
                    for result in results.by_ref().take(parts) {
                        match result {
                            Ok(JobOutput::SpsaDots(d)) => dots.extend(d),
                            Ok(other) => {
                                let kind = FailureKind::Protocol(format!("a part of an SPSA item gave {other:?}"));
                                let chain = self.config.spec.chain.clone();
                                let error = ItemError { chain, theta: theta.clone(), kind, stderr: String::new() };
                                failed.get_or_insert(error);
                            }
                            Err(e) => {
                                failed.get_or_insert(e);
                            }
                        }
                    }
                    match failed {
                        Some(e) => Err(e),
                        None => Ok(JobOutput::Gradient(spsa_combine(&theta, epsilon, seed, &dots, &mut work))),
                    }
                }
            })
            .collect()
    }

    /// Runs a batch of jobs as they are (no splitting), their audio written once to the shared arena, handing
    /// each result to `done` as it arrives; every job gets exactly one call.
    fn run_placed(&mut self, work: Vec<Job>, mut done: impl FnMut(usize, Result<JobOutput, ItemError>)) {
        let thetas: Vec<Vec<f32>> = work.iter().map(|job| job.theta().to_vec()).collect();
        let placements = match self.arena.as_mut().map(|arena| arena.write_batch(&work)) {
            Some(Ok(placements)) => placements,
            Some(Err(e)) => {
                tracing::warn!("cannot write the batch to the shared arena, sending it through the pipes: {e}");
                Placements::default()
            }
            None => Placements::default(),
        };
        let mut reported = vec![false; work.len()];
        self.run_jobs(work, std::iter::empty(), Arc::new(placements), |index, result| {
            reported[index] = true;
            done(index, result);
        });
        for (index, theta) in thetas.into_iter().enumerate().filter(|&(index, _)| !reported[index]) {
            let kind = FailureKind::Protocol("no result".into());
            done(index, Err(ItemError { chain: self.config.spec.chain.clone(), theta, kind, stderr: String::new() }));
        }
    }

    /// Runs the jobs `jobs` yields, taking each only when a worker is about to need it, and hands every result
    /// to `done` (with the job's position in `jobs`) as soon as it arrives, on this thread.
    ///
    /// `jobs` is drawn on a thread of its own, a few jobs ahead of the workers: making a job (reading or
    /// cutting its input) overlaps the renders, workers never wait for each other, and only about two jobs
    /// per worker are in memory at once, however many `jobs` yields.
    ///
    /// Unlike [`Pool::run`], the jobs' audio goes through the pipes in their frames, and no item is split.
    pub fn run_each<I>(&mut self, jobs: I, done: impl FnMut(usize, Result<JobOutput, ItemError>))
    where
        I: Iterator<Item = Job> + Send,
    {
        self.run_jobs(vec![], jobs, Arc::new(Placements::default()), done);
    }

    /// Runs `ready` (indices from 0), then what `jobs` yields (indices after them).
    fn run_jobs<I>(
        &mut self,
        ready: Vec<Job>,
        jobs: I,
        placements: Arc<Placements>,
        mut done: impl FnMut(usize, Result<JobOutput, ItemError>),
    ) where
        I: Iterator<Item = Job> + Send,
    {
        let config = self.config.clone();
        let batch = Arc::new(Batch { placements, arena_fd: self.arena.as_ref().map(Arena::fd) });
        let (feed, incoming) = tokio::sync::mpsc::channel::<(usize, Arc<Job>)>(self.workers.len().max(1));
        let first = ready.len();
        let returned = ready.into_iter().enumerate().map(|(index, job)| (index, Arc::new(job))).collect();
        let slots = self.workers.len();
        let feed_jobs = std::sync::Arc::new(Feed { returned: Mutex::new(returned), incoming: incoming.into(), slots });
        let (results, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let slots: Vec<Option<Worker>> = self.workers.drain(..).collect();
        let runtime = &self.runtime;
        let workers = std::thread::scope(|scope| {
            scope.spawn(move || {
                for (index, job) in (first..).zip(jobs) {
                    // The pool stopped taking jobs: it is shutting down.
                    if feed.blocking_send((index, Arc::new(job))).is_err() {
                        break;
                    }
                }
            });
            runtime.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for (slot, worker) in slots.into_iter().enumerate() {
                    let (feed, results, config, batch) =
                        (feed_jobs.clone(), results.clone(), config.clone(), batch.clone());
                    set.spawn(async move { (slot, serve_slot(worker, &config, &batch, &feed, &results).await) });
                }
                drop(results);
                while let Some((index, result)) = arrived.recv().await {
                    done(index, result);
                }
                let mut workers: Vec<Option<Worker>> = (0..set.len()).map(|_| None).collect();
                while let Some(joined) = set.join_next().await {
                    if let Ok((slot, worker)) = joined {
                        workers[slot] = worker;
                    }
                }
                workers
            })
        });
        self.workers = workers;
    }
}

/// One item's SPSA renders, made before its upstream gradient was known (see
/// [`Pool::render_perturbed_each`]): the K pairs (y₊, y₋) and what they were rendered at.
#[derive(Debug, Clone)]
pub struct PerturbedRenders {
    theta: Vec<f32>,
    epsilon: f32,
    seed: u64,
    pairs: Vec<(Audio, Audio)>,
}

impl PerturbedRenders {
    /// The SPSA estimate of `(∂y/∂θ)ᵀ g` for `g` given one slice per channel, of the renders' shape: what
    /// [`Pool::spsa_batch_seeded`] returns for this item, bit for bit. No render; a dot product per pair.
    ///
    /// # Panics
    /// When `g` does not have the renders' shape ([`PerturbedRenders::shape`]).
    pub fn vjp(&self, g: &[&[f32]]) -> Vec<f32> {
        let (channels, frames) = self.shape();
        assert!(
            g.len() == channels && g.iter().all(|c| c.len() == frames),
            "∂L/∂y must have the renders' {channels} channels of {frames} frames"
        );
        crate::estimator::spsa_from_renders(&self.theta, self.epsilon, self.seed, g, &self.pairs)
    }

    /// The renders' (channels, frames): the item's input's.
    pub fn shape(&self) -> (usize, usize) {
        let (plus, _) = &self.pairs[0];
        (plus.num_channels(), plus.frames())
    }
}

/// Audio the pool shares without copying: an owned `Audio` is moved into a new `Arc` (one copy of a borrowed
/// one), an `Arc<Audio>` is shared as it is.
pub trait Shared {
    fn shared(&self) -> Arc<Audio>;
}

impl Shared for Arc<Audio> {
    fn shared(&self) -> Arc<Audio> {
        self.clone()
    }
}

impl Shared for Audio {
    fn shared(&self) -> Arc<Audio> {
        Arc::new(self.clone())
    }
}

/// How a batch item's result is made from the results of the jobs that ran: one job, or `parts` consecutive
/// [`Job::SpsaPart`]s.
enum Item {
    Whole,
    Split { parts: usize, theta: Vec<f32>, epsilon: f32, seed: u64 },
}

/// The jobs to run for `jobs` on `workers` workers, and how to assemble each item's result (see [`Pool::run`]).
fn split(jobs: Vec<Job>, workers: usize) -> (Vec<Job>, Vec<Item>) {
    let want = 2 * workers.max(1);
    if jobs.is_empty() || jobs.len() >= want {
        let items = jobs.iter().map(|_| Item::Whole).collect();
        return (jobs, items);
    }
    let per_item = want.div_ceil(jobs.len()) as u32;
    let (mut work, mut items) = (vec![], vec![]);
    for job in jobs {
        match job {
            Job::Spsa { input, theta, grad, epsilon, perturbations, seed } if perturbations >= 2 => {
                let parts = per_item.min(perturbations);
                let mut first = 0;
                for part in 0..parts {
                    // Sizes differ by at most one, larger first.
                    let count = perturbations / parts + u32::from(part < perturbations % parts);
                    let (input, grad, theta) = (input.clone(), grad.clone(), theta.clone());
                    work.push(Job::SpsaPart { input, theta, grad, epsilon, first, count, seed });
                    first += count;
                }
                items.push(Item::Split { parts: parts as usize, theta, epsilon, seed });
            }
            job => {
                work.push(job);
                items.push(Item::Whole);
            }
        }
    }
    (work, items)
}

/// What every slot of a batch shares: where the batch's audio lies in the arena, and the arena's descriptor
/// for replacement workers.
struct Batch {
    placements: Arc<Placements>,
    arena_fd: Option<RawFd>,
}

/// Where worker slots take jobs: first those at hand (a batch's, or handed back, not run), then new ones from
/// the caller's iterator.
struct Feed {
    returned: Mutex<VecDeque<(usize, Arc<Job>)>>,
    incoming: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(usize, Arc<Job>)>>,
    /// The slots taking from this feed.
    slots: usize,
}

impl Feed {
    /// The next job; with `wait` false, only one that is ready now. `None` once every job was taken.
    ///
    /// A slot asks without waiting for a second job to hold while it runs one: of the jobs at hand it gets one
    /// only while at least one per slot is left, so the last few go to slots that would otherwise sit idle (a
    /// batch of one item split in four parts runs two parts per worker, not three and one).
    async fn next(&self, wait: bool) -> Option<(usize, Arc<Job>)> {
        {
            let mut returned = self.returned.lock().expect("feed lock");
            if wait || returned.len() >= self.slots {
                if let Some(job) = returned.pop_front() {
                    return Some(job);
                }
            } else if !returned.is_empty() {
                return None;
            }
        }
        if wait { self.incoming.lock().await.recv().await } else { self.incoming.try_lock().ok()?.try_recv().ok() }
    }

    /// Puts a job that was not run back, to be taken first.
    fn hand_back(&self, job: (usize, Arc<Job>)) {
        self.returned.lock().expect("feed lock").push_front(job);
    }
}

type Results = tokio::sync::mpsc::UnboundedSender<(usize, Result<JobOutput, ItemError>)>;

/// Jobs a worker holds at once: the next job waits at the worker while it runs the current one, so the
/// transfer and the wake-up of one hide behind the work of the other.
const DEPTH: usize = 2;
// A worker writes its outputs into its buffers in turn: it must hold no more jobs than it has buffers, or it
// could overwrite an output the pool has not read yet (see `crate::arena`).
const _: () = assert!(DEPTH <= OUTPUT_BUFFERS);

/// One worker slot's loop: keep its worker fed (up to [`DEPTH`] jobs) until the feed runs dry; replace the
/// worker when it dies.
///
/// When a worker dies, the oldest job in flight is the one it was running: that job is retried once, first
/// thing on the fresh worker, then reported. Jobs sent after it never started: they go back to the feed as
/// they were.
async fn serve_slot(
    mut worker: Option<Worker>,
    config: &PoolConfig,
    batch: &Batch,
    feed: &Feed,
    results: &Results,
) -> Option<Worker> {
    let store = |index: usize, result: Result<JobOutput, ItemError>| {
        // The receiver lives until every slot has ended.
        let _ = results.send((index, result));
    };
    // (index, job, attempt) sent to the worker, oldest first; and this slot's retry, which goes before the feed.
    let mut in_flight: VecDeque<(usize, Arc<Job>, u32)> = VecDeque::new();
    let mut retry: Option<(usize, Arc<Job>)> = None;
    loop {
        while in_flight.len() < DEPTH {
            let next = match retry.take() {
                Some((index, job)) => Some((index, job, 1)),
                // With a job in flight, only take one that is ready: its answer must not wait for the next.
                None => feed.next(in_flight.is_empty()).await.map(|(index, job)| (index, job, 0)),
            };
            let Some((index, job, attempt)) = next else { break };
            let current = match worker.as_mut() {
                Some(w) => w,
                None => match Worker::start(config, batch.arena_fd).await {
                    Ok(w) => worker.insert(w),
                    Err(e) => {
                        store(index, Err(item_error(config, &job, FailureKind::Plugin(e.to_string()), "")));
                        continue;
                    }
                },
            };
            match current.send(&job, index as u64, config.job_timeout, &batch.placements).await {
                Ok(Ok(())) => in_flight.push_back((index, job, attempt)),
                // The job cannot be sent (too large for a frame): it fails alone, the worker carries on.
                Ok(Err(kind)) => store(index, Err(item_error(config, &job, kind, ""))),
                Err(_) if !in_flight.is_empty() => {
                    // The worker died on an earlier job: receiving that one reports how.
                    hand_back(feed, (index, job), attempt, &mut retry);
                    break;
                }
                Err((kind, stderr)) => {
                    worker = None;
                    if kind.is_retryable() && attempt == 0 {
                        retry = Some((index, job));
                    } else {
                        store(index, Err(item_error(config, &job, kind, &stderr)));
                    }
                }
            }
        }
        let Some((index, job, attempt)) = in_flight.pop_front() else { return worker };
        let current = worker.as_mut().expect("jobs in flight have a worker");
        match current.receive(index as u64, config.job_timeout * job.time_limits()).await {
            Ok(result) => store(index, result.map_err(|kind| item_error(config, &job, kind, ""))),
            Err((kind, stderr)) => {
                tracing::warn!(chain = %config.spec.chain, item = index, attempt, "{kind}");
                worker = None;
                for (later, later_job, later_attempt) in in_flight.drain(..).rev() {
                    hand_back(feed, (later, later_job), later_attempt, &mut None);
                }
                if kind.is_retryable() && attempt == 0 {
                    retry = Some((index, job));
                } else {
                    store(index, Err(item_error(config, &job, kind, &stderr)));
                }
            }
        }
    }
}

/// Puts a job that was not run back: as this slot's retry if it is one, else at the front of the feed.
fn hand_back(feed: &Feed, job: (usize, Arc<Job>), attempt: u32, retry: &mut Option<(usize, Arc<Job>)>) {
    if attempt > 0 {
        *retry = Some(job);
    } else {
        feed.hand_back(job);
    }
}

fn item_error(config: &PoolConfig, job: &Job, kind: FailureKind, stderr: &str) -> ItemError {
    ItemError { chain: config.spec.chain.clone(), theta: job.theta().to_vec(), kind, stderr: stderr.to_string() }
}

/// A live worker of either kind.
struct Worker {
    chain: ChainLayout,
    kind: WorkerKind,
}

enum WorkerKind {
    Process(Box<ProcessWorker>),
    Thread(ThreadWorker),
}

/// A failure that ended the worker: what happened and its last stderr lines.
type Fatal = (FailureKind, String);

impl Worker {
    async fn start(config: &PoolConfig, arena_fd: Option<RawFd>) -> Result<Worker, PoolError> {
        let start_error =
            |message: String, stderr: String| PoolError::Start { chain: config.spec.chain.clone(), message, stderr };
        match &config.isolation {
            Isolation::Process(command) => {
                let (worker, chain) = ProcessWorker::start(command, config, arena_fd)
                    .await
                    .map_err(|(kind, stderr)| start_error(kind.to_string(), stderr))?;
                Ok(Worker { chain, kind: WorkerKind::Process(Box::new(worker)) })
            }
            Isolation::Thread => {
                let (worker, chain) =
                    ThreadWorker::start(config).await.map_err(|kind| start_error(kind.to_string(), String::new()))?;
                Ok(Worker { chain, kind: WorkerKind::Thread(worker) })
            }
        }
    }

    /// Hands `job` to the worker under `id`. `Ok(Err)`: the job could not be sent, the worker is fine.
    async fn send(
        &mut self,
        job: &Arc<Job>,
        id: u64,
        limit: Duration,
        placements: &Placements,
    ) -> Result<Result<(), FailureKind>, Fatal> {
        match &mut self.kind {
            WorkerKind::Process(w) => w.send(id, job, limit, placements).await,
            WorkerKind::Thread(w) => w.send(job.clone()).map(Ok).map_err(|k| (k, String::new())),
        }
    }

    /// The result of the oldest job sent. `Ok` holds the job's own result (the worker is still healthy); `Err`
    /// means the worker died or was killed.
    async fn receive(&mut self, id: u64, timeout: Duration) -> Result<Result<JobOutput, FailureKind>, Fatal> {
        match &mut self.kind {
            WorkerKind::Process(w) => w.receive(id, timeout).await,
            WorkerKind::Thread(w) => w.receive(timeout).await.map_err(|k| (k, String::new())),
        }
    }
}

/// The last lines a worker process wrote to stderr.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    const KEEP: usize = 40;

    fn push(&mut self, line: String) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

struct ProcessWorker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    frame: Vec<u8>,
    payload: Vec<u8>,
    /// Where the worker writes rendered audio (see [`crate::arena`]); `None`: it comes in the frames.
    outputs: Option<Outputs>,
}

impl ProcessWorker {
    async fn start(
        command: &WorkerCommand,
        config: &PoolConfig,
        arena_fd: Option<RawFd>,
    ) -> Result<(ProcessWorker, ChainLayout), Fatal> {
        let mut spawn = Command::new(&command.program);
        // The descriptors the worker inherits: the pool's arena (inputs) and its own output buffers.
        let mut inherited = [None; 1 + OUTPUT_BUFFERS];
        if let Some(fd) = arena_fd {
            spawn.env(crate::arena::ENV, fd.to_string());
            inherited[0] = Some(fd);
        }
        let outputs = Outputs::new()
            .inspect_err(|e| tracing::warn!("no output buffers, outputs come through the pipe: {e}"))
            .ok();
        if let Some(outputs) = &outputs {
            let fds = outputs.fds();
            spawn.env(OUTPUTS_ENV, fds.map(|fd| fd.to_string()).join(","));
            for (slot, fd) in inherited[1..].iter_mut().zip(fds) {
                *slot = Some(fd);
            }
        }
        // SAFETY: the closure runs in the child between fork and exec and only calls `inherit`, which is
        // async-signal-safe (one fcntl) and allocates nothing; `inherited` is copied into the closure.
        unsafe {
            spawn.pre_exec(move || inherited.iter().flatten().try_for_each(|&fd| crate::arena::inherit(fd)));
        }
        let mut child = spawn
            .args(&command.args)
            // A task's renders are timed inside the worker (see `WorkerSpec::task_render_limit`).
            .args(WorkerSpec { task_render_limit: Some(config.job_timeout), ..config.spec.clone() }.to_args())
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                (FailureKind::Plugin(format!("cannot run {}: {e}", command.program.display())), String::new())
            })?;
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let tail = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tail.lock().expect("stderr lock").push(line);
            }
        });
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        grow_pipe(stdin.as_raw_fd());
        grow_pipe(stdout.as_raw_fd());
        let mut worker = ProcessWorker {
            stdin,
            stdout: BufReader::with_capacity(PIPE_BYTES, stdout),
            child,
            stderr,
            stderr_task: Some(stderr_task),
            frame: vec![],
            payload: vec![],
            outputs,
        };
        let hello = tokio::time::timeout(config.start_timeout, worker.read_message()).await;
        match hello {
            Ok(Ok(Message::Hello { version, layout })) if version == wire::VERSION => {
                match serde_json::from_str(&layout) {
                    Ok(layout) => Ok((worker, layout)),
                    Err(e) => Err(worker
                        .fail(FailureKind::Protocol(format!("the worker's chain description is not valid: {e}")))
                        .await),
                }
            }
            Ok(Ok(Message::Hello { version, .. })) => Err(worker
                .fail(FailureKind::Protocol(format!("worker speaks protocol {version}, the pool {}", wire::VERSION)))
                .await),
            Ok(Ok(_)) => Err(worker.fail(FailureKind::Protocol("expected hello".into())).await),
            Ok(Err(_)) => Err(worker.died().await),
            Err(_) => Err(worker.fail(FailureKind::TimedOut { after: config.start_timeout }).await),
        }
    }

    async fn read_message(&mut self) -> Result<Message, wire::WireError> {
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await?;
        let len = wire::frame_len(len)?;
        self.payload.resize(len, 0);
        self.stdout.read_exact(&mut self.payload).await?;
        // An output in a buffer is copied out now, before the next job goes to the worker: it may write that
        // buffer again only after this.
        let outputs = &mut self.outputs;
        wire::decode_from_worker(&self.payload, &mut |at| match outputs.as_mut() {
            Some(outputs) => outputs.read(at),
            None => Err(wire::WireError::Malformed("output audio, but this worker was given no buffers".into())),
        })
    }

    /// Writes a job frame. The worker reads its input on a thread of its own (see [`serve`](crate::worker::serve)),
    /// so this returns once the frame is through, even while the worker runs an earlier job.
    async fn send(
        &mut self,
        id: u64,
        job: &Job,
        limit: Duration,
        placements: &Placements,
    ) -> Result<Result<(), FailureKind>, Fatal> {
        let bulk = match wire::encode_job(id, job, &mut self.frame, &|audio| placements.get(audio)) {
            Ok(bulk) => bulk,
            Err(e) => return Ok(Err(FailureKind::TooLarge(format!("the job cannot go to a worker: {e}")))),
        };
        let write = async {
            self.stdin.write_all(&self.frame).await?;
            self.stdin.write_all(bulk).await?;
            self.stdin.flush().await
        };
        // A worker that stops reading for a whole job time limit is stuck.
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(_)) => Err(self.died().await),
            Err(_) => Err(self.fail(FailureKind::TimedOut { after: limit }).await),
        }
    }

    async fn receive(&mut self, id: u64, timeout: Duration) -> Result<Result<JobOutput, FailureKind>, Fatal> {
        match tokio::time::timeout(timeout, self.read_message()).await {
            Ok(Ok(Message::Result { id: got, result })) if got == id => Ok(result),
            Ok(Ok(other)) => Err(self.fail(FailureKind::Protocol(format!("unexpected answer {other:?}"))).await),
            Ok(Err(_)) => Err(self.died().await),
            Err(_) => Err(self.fail(FailureKind::TimedOut { after: timeout }).await),
        }
    }

    /// The worker broke the pipe: wait for it and say how it ended.
    async fn died(&mut self) -> Fatal {
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let kind = match status {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                FailureKind::Crashed { signal: status.signal(), code: status.code() }
            }
            _ => {
                let _ = self.child.kill().await;
                FailureKind::Crashed { signal: None, code: None }
            }
        };
        (kind, self.stderr_text().await)
    }

    /// Kills the worker for `kind`.
    async fn fail(&mut self, kind: FailureKind) -> Fatal {
        let _ = self.child.kill().await;
        (kind, self.stderr_text().await)
    }

    /// Stderr up to the worker's end: the reader finishes once the dead process's pipe closes.
    async fn stderr_text(&mut self) -> String {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.stderr.lock().expect("stderr lock").text()
    }
}

/// Pipe capacity asked of the kernel: a second of stereo audio at 48 kHz fits, so a job or result frame goes
/// through in one write instead of 16 context switches of 64 KiB (Linux's default).
const PIPE_BYTES: usize = 1 << 20;

/// Grows a pipe to at least [`PIPE_BYTES`] where the kernel allows (Linux; up to /proc/sys/fs/pipe-max-size
/// for unprivileged users). Failure only costs speed.
fn grow_pipe(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe behind a descriptor we own and keep
    // open for the call; it returns the new size, or -1 for a request the kernel refuses (ignored: see above).
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// A job and where to send its result.
type ThreadJob = (Arc<Job>, tokio::sync::oneshot::Sender<Result<JobOutput, FailureKind>>);

struct ThreadWorker {
    jobs: crossbeam_channel::Sender<ThreadJob>,
    /// Where the answers of the jobs sent come back, oldest first.
    replies: VecDeque<tokio::sync::oneshot::Receiver<Result<JobOutput, FailureKind>>>,
}

impl ThreadWorker {
    async fn start(config: &PoolConfig) -> Result<(ThreadWorker, ChainLayout), FailureKind> {
        let (jobs, receive) = crossbeam_channel::unbounded::<ThreadJob>();
        let (hello, hello_rx) = tokio::sync::oneshot::channel();
        let (spec, tasks) = (config.spec.clone(), config.tasks);
        std::thread::Builder::new()
            .name(format!("afx-worker-{}", spec.chain))
            .spawn(move || {
                // The executor (and its plugin host) lives and dies on this thread.
                let mut executor = match Executor::new(&spec) {
                    Ok(e) => e.with_tasks(tasks()),
                    Err(e) => {
                        let _ = hello.send(Err(FailureKind::Plugin(e.to_string())));
                        return;
                    }
                };
                let _ = hello.send(Ok(executor.chain().layout().clone()));
                for (job, reply) in receive {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.run(&job)))
                        .unwrap_or_else(|panic| {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(FailureKind::Plugin(format!("worker thread panicked: {message}")))
                        });
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| FailureKind::Plugin(format!("cannot spawn a worker thread: {e}")))?;
        match tokio::time::timeout(config.start_timeout, hello_rx).await {
            Ok(Ok(Ok(layout))) => Ok((ThreadWorker { jobs, replies: VecDeque::new() }, layout)),
            Ok(Ok(Err(kind))) => Err(kind),
            Ok(Err(_)) => Err(FailureKind::Plugin("worker thread died while starting".into())),
            Err(_) => Err(FailureKind::TimedOut { after: config.start_timeout }),
        }
    }

    fn send(&mut self, job: Arc<Job>) -> Result<(), FailureKind> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send((job, reply)).map_err(|_| FailureKind::Crashed { signal: None, code: None })?;
        self.replies.push_back(answer);
        Ok(())
    }

    async fn receive(&mut self, timeout: Duration) -> Result<Result<JobOutput, FailureKind>, FailureKind> {
        let answer = self.replies.pop_front().ok_or_else(|| FailureKind::Protocol("no job in flight".into()))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(FailureKind::Crashed { signal: None, code: None }),
            // A thread cannot be killed: it is abandoned (its channel dropped with this worker) and replaced.
            Err(_) => Err(FailureKind::TimedOut { after: timeout }),
        }
    }
}
