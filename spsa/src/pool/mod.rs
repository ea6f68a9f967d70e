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
//!
//! The pool's parts: [`batch`] its batch methods for each kind of job, [`split`] spreading an SPSA item over
//! workers, [`schedule`] each worker slot's loop (feeding, time limits, the retry), [`handle`] one live
//! worker of either kind, [`process`] and [`thread`] the two kinds.

mod batch;
mod handle;
mod process;
mod schedule;
mod split;
mod thread;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use afx_host::ChainLayout;

use crate::arena::{Arena, Placements};
use crate::estimator::Scoring;
use crate::job::{FailureKind, ItemError, Job, JobOutput};
use crate::task::TaskSet;
use crate::worker::WorkerSpec;

pub use batch::{PerturbedRenders, Shared};
use handle::Worker;
use schedule::{Batch, Feed, serve_slot};

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
    /// How worker processes are confined; worker threads ([`Isolation::Thread`]) cannot be.
    pub sandbox: Sandbox,
}

/// How a pool confines its worker processes ([`afx_sandbox`]): each in a folder of its own (its only writable
/// place, removed when the worker ends), with no network, no new processes, and caps on memory, threads and
/// CPU time. On by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// `false`: workers run with the user's rights (a plugin that must write outside, say a licensed one).
    pub enabled: bool,
    /// Each worker's memory cap in bytes [default: [`afx_sandbox::default_memory`] of the worker count].
    pub memory: Option<u64>,
    /// Each worker's thread cap.
    pub threads: usize,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox { enabled: true, memory: None, threads: afx_sandbox::DEFAULT_THREADS }
    }
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
            sandbox: Sandbox::default(),
        }
    }

    /// The memory cap each worker process gets: the configured one, or the default for the worker count.
    pub fn worker_memory(&self) -> u64 {
        self.sandbox.memory.unwrap_or_else(|| afx_sandbox::default_memory(self.workers))
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
    /// The protections in force in the workers, as the first one said in its hello (`None`: threads).
    sandbox: Option<afx_sandbox::Report>,
    renders: u64,
    /// Where batches put their audio for worker processes; `None` for threads (or without memfd).
    arena: Option<Arena>,
    /// What the batch methods' θ rows are: one row of fixed values (hop 0), or trajectories (see
    /// [`Pool::trajectories`]).
    control: Control,
}

/// How the batch methods read θ: its hop, and how SPSA scores a trajectory's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Control {
    pub hop: u32,
    pub scoring: Scoring,
}

/// A pool whose batch methods take trajectories: each θ holds F rows of P values, row `f` in effect from input
/// frame `f·hop`, and SPSA scores the rows as `scoring` says (see [`crate::estimator`]). Back to fixed values
/// when dropped. Made by [`Pool::trajectories`].
pub struct Trajectories<'p> {
    pool: &'p mut Pool,
}

impl std::ops::Deref for Trajectories<'_> {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        self.pool
    }
}

impl std::ops::DerefMut for Trajectories<'_> {
    fn deref_mut(&mut self) -> &mut Pool {
        self.pool
    }
}

impl Drop for Trajectories<'_> {
    fn drop(&mut self) {
        self.pool.control = Control::default();
    }
}

impl Pool {
    /// Starts every worker and waits for each to load the chain, so a bad chain fails here, not mid-batch.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // The default memory cap read once, so every worker of the pool (replacements too) gets the same one.
        let mut config = config;
        config.sandbox.memory = Some(config.worker_memory());
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
        let first = workers[0].as_ref().expect("every worker started");
        let (chain, sandbox) = (first.chain.clone(), first.sandbox.clone());
        Ok(Pool { runtime, config, workers, chain, sandbox, renders: 0, arena, control: Control::default() })
    }

    /// This pool with batch methods that take trajectories at `hop` frames per row (each θ F·P values, F ≥ 1),
    /// SPSA scoring each row's perturbation as `scoring` says. A θ of one row is fixed values, as without it.
    ///
    /// ```no_run
    /// # fn demo(pool: &mut afx_spsa::Pool, inputs: &[afx_host::Audio], thetas: &[Vec<f32>]) {
    /// use afx_spsa::estimator::Scoring;
    /// let outputs = pool.trajectories(1024, Scoring::Causal).render_batch(inputs, thetas);
    /// # }
    /// ```
    pub fn trajectories(&mut self, hop: usize, scoring: Scoring) -> Trajectories<'_> {
        self.control = Control { hop: u32::try_from(hop).unwrap_or(u32::MAX), scoring };
        Trajectories { pool: self }
    }

    /// The chain the workers host, as the first worker described it: its stages, plugins and parameters. The
    /// caller learns it from here instead of loading the plugins itself.
    pub fn chain(&self) -> &ChainLayout {
        &self.chain
    }

    /// The protections in force in the worker processes, as the first worker reported them (what the kernel
    /// gave; see [`afx_sandbox::Report`]); `None` for worker threads.
    pub fn sandbox(&self) -> Option<&afx_sandbox::Report> {
        self.sandbox.as_ref()
    }

    /// P: the chain's number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.chain.num_params()
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }
    /// Successful [`Pool::render_batch`] items so far: how callers (and tests) see that the real chain ran.
    pub fn renders(&self) -> u64 {
        self.renders
    }

    /// Runs a batch: every job gets a result, in order.
    ///
    /// The batch's audio goes to worker processes once, through the shared arena. When the batch has fewer
    /// jobs than two per worker, each [`Job::Spsa`] of K ≥ 2 perturbations is split into
    /// `min(K, ⌈2·workers / jobs⌉)` [`Job::SpsaPart`]s of consecutive perturbations, spread over the workers
    /// like any jobs; the item's result is [`spsa_combine`](crate::estimator::spsa_combine) of their dots, bit
    /// for bit the whole job's, and the item fails (with the first failed part's error) if any part fails.
    pub fn run(&mut self, jobs: Vec<Job>) -> Vec<Result<JobOutput, ItemError>> {
        let (work, items) = split::split(jobs, self.workers.len(), self.num_params());
        let mut results: Vec<Option<Result<JobOutput, ItemError>>> = (0..work.len()).map(|_| None).collect();
        self.run_placed(work, |index, result| results[index] = Some(result));
        let results = results.into_iter().map(|result| result.expect("every job gets a result"));
        split::assemble(items, results, &self.config.spec.chain)
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
