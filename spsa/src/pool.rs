//! The pool: N workers (processes or threads) each hosting the same chain, fed batches of jobs.
//!
//! A supervisor on a tokio runtime gives each worker slot jobs from a shared queue and waits for each answer
//! with a time limit, so it never hangs. A worker that crashes or overruns is killed and replaced, and its job
//! is retried once on the fresh worker, then reported as a failed item (signal or timeout, with the worker's
//! stderr); the rest of the batch completes. Results come back in the batch's order.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use afx_host::Audio;

use crate::job::{FailureKind, ItemError, Job, JobOutput, item_seed};
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
    num_params: usize,
}

impl Pool {
    /// Starts every worker and waits for each to load the chain, so a bad chain fails here, not mid-batch.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let config = Arc::new(config);
        let workers = runtime.block_on(async {
            let mut workers = vec![];
            for _ in 0..config.workers {
                workers.push(Some(Worker::start(&config).await?));
            }
            Ok::<_, PoolError>(workers)
        })?;
        let num_params = workers[0].as_ref().map_or(0, |w| w.num_params);
        Ok(Pool { runtime, config, workers, num_params })
    }

    /// P: the chain's number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Renders item `i` of `inputs` at `thetas[i]`: the forward pass of a batch.
    pub fn render_batch(&mut self, inputs: &[Audio], thetas: &[Vec<f32>]) -> Vec<Result<Audio, ItemError>> {
        let jobs = inputs.iter().zip(thetas).map(|(x, t)| Job::Render { input: x.clone(), theta: t.clone() });
        self.run(jobs.collect())
            .into_iter()
            .map(|r| r.map(|o| o.into_audio().expect("render jobs give audio")))
            .collect()
    }

    /// SPSA estimates of `(∂y/∂θ)ᵀ g` for every item of a batch, K perturbations of size ε each; item `i` is
    /// seeded with [`item_seed`]`(seed, i)`, so results do not depend on the number of workers.
    pub fn spsa_batch(
        &mut self,
        inputs: &[Audio],
        thetas: &[Vec<f32>],
        grads: &[Audio],
        epsilon: f32,
        perturbations: u32,
        seed: u64,
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let jobs = inputs.iter().zip(thetas).zip(grads).enumerate().map(|(i, ((x, t), g))| Job::Spsa {
            input: x.clone(),
            theta: t.clone(),
            grad: g.clone(),
            epsilon,
            perturbations,
            seed: item_seed(seed, i),
        });
        self.run(jobs.collect())
            .into_iter()
            .map(|r| r.map(|o| o.into_gradient().expect("SPSA gives gradients")))
            .collect()
    }

    /// Runs a batch: every job gets a result, in order.
    pub fn run(&mut self, jobs: Vec<Job>) -> Vec<Result<JobOutput, ItemError>> {
        let jobs = Arc::new(jobs);
        let queue = Arc::new(Mutex::new((0..jobs.len()).collect::<VecDeque<usize>>()));
        let results = Arc::new(Mutex::new(vec![None; jobs.len()]));
        let config = self.config.clone();
        let slots: Vec<Option<Worker>> = self.workers.drain(..).collect();
        let workers = self.runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (slot, worker) in slots.into_iter().enumerate() {
                let (jobs, queue, results, config) = (jobs.clone(), queue.clone(), results.clone(), config.clone());
                set.spawn(async move { (slot, serve_slot(worker, &config, &jobs, &queue, &results).await) });
            }
            let mut workers: Vec<Option<Worker>> = (0..set.len()).map(|_| None).collect();
            while let Some(joined) = set.join_next().await {
                if let Ok((slot, worker)) = joined {
                    workers[slot] = worker;
                }
            }
            workers
        });
        self.workers = workers;
        let mut results = results.lock().expect("no task panics while holding the lock");
        results
            .iter_mut()
            .zip(jobs.iter())
            .map(|(r, job)| {
                r.take().unwrap_or_else(|| Err(item_error(&config, job, FailureKind::Protocol("no result".into()), "")))
            })
            .collect()
    }
}

type Results = Mutex<Vec<Option<Result<JobOutput, ItemError>>>>;

/// One worker slot's loop: take jobs until the queue is empty; replace the worker when it dies.
async fn serve_slot(
    mut worker: Option<Worker>,
    config: &PoolConfig,
    jobs: &Arc<Vec<Job>>,
    queue: &Mutex<VecDeque<usize>>,
    results: &Results,
) -> Option<Worker> {
    loop {
        let Some(index) = queue.lock().expect("queue lock").pop_front() else { return worker };
        let job = &jobs[index];
        let mut attempt = 0;
        let outcome = loop {
            let current = match worker.take() {
                Some(w) => w,
                None => match Worker::start(config).await {
                    Ok(w) => w,
                    Err(e) => break Err((FailureKind::Plugin(e.to_string()), String::new())),
                },
            };
            let mut current = current;
            match current.call(index as u64, jobs, index, config.job_timeout).await {
                Ok(result) => {
                    worker = Some(current);
                    break result.map_err(|kind| (kind, String::new()));
                }
                Err((kind, stderr)) => {
                    // The worker is gone (killed or crashed); a fresh one starts on the next attempt.
                    tracing::warn!(chain = %config.spec.chain, item = index, attempt, "{kind}");
                    if kind.is_retryable() && attempt == 0 {
                        attempt += 1;
                        continue;
                    }
                    break Err((kind, stderr));
                }
            }
        };
        let result = outcome.map_err(|(kind, stderr)| item_error(config, job, kind, &stderr));
        results.lock().expect("results lock")[index] = Some(result);
    }
}

fn item_error(config: &PoolConfig, job: &Job, kind: FailureKind, stderr: &str) -> ItemError {
    ItemError { chain: config.spec.chain.clone(), theta: job.theta().to_vec(), kind, stderr: stderr.to_string() }
}

/// A live worker of either kind.
struct Worker {
    num_params: usize,
    kind: WorkerKind,
}

enum WorkerKind {
    Process(Box<ProcessWorker>),
    Thread(ThreadWorker),
}

/// A failure that ended the worker: what happened and its last stderr lines.
type Fatal = (FailureKind, String);

impl Worker {
    async fn start(config: &PoolConfig) -> Result<Worker, PoolError> {
        let start_error =
            |message: String, stderr: String| PoolError::Start { chain: config.spec.chain.clone(), message, stderr };
        match &config.isolation {
            Isolation::Process(command) => {
                let (worker, num_params) = ProcessWorker::start(command, config)
                    .await
                    .map_err(|(kind, stderr)| start_error(kind.to_string(), stderr))?;
                Ok(Worker { num_params, kind: WorkerKind::Process(Box::new(worker)) })
            }
            Isolation::Thread => {
                let (worker, num_params) =
                    ThreadWorker::start(config).await.map_err(|kind| start_error(kind.to_string(), String::new()))?;
                Ok(Worker { num_params, kind: WorkerKind::Thread(worker) })
            }
        }
    }

    /// Runs `jobs[index]`. `Ok` holds the job's own result (the worker is still healthy); `Err` means the
    /// worker died or was killed.
    async fn call(
        &mut self,
        id: u64,
        jobs: &Arc<Vec<Job>>,
        index: usize,
        timeout: Duration,
    ) -> Result<Result<JobOutput, FailureKind>, Fatal> {
        match &mut self.kind {
            WorkerKind::Process(w) => w.call(id, &jobs[index], timeout).await,
            WorkerKind::Thread(w) => w.call(jobs.clone(), index, timeout).await.map_err(|k| (k, String::new())),
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
}

impl ProcessWorker {
    async fn start(command: &WorkerCommand, config: &PoolConfig) -> Result<(ProcessWorker, usize), Fatal> {
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .args(config.spec.to_args())
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
        };
        let hello = tokio::time::timeout(config.start_timeout, worker.read_message()).await;
        match hello {
            Ok(Ok(Message::Hello { version, num_params, .. })) if version == wire::VERSION => {
                Ok((worker, num_params as usize))
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
        wire::decode(&self.payload)
    }

    async fn call(&mut self, id: u64, job: &Job, timeout: Duration) -> Result<Result<JobOutput, FailureKind>, Fatal> {
        wire::encode_job(id, job, &mut self.frame);
        let exchange = async {
            self.stdin.write_all(&self.frame).await?;
            self.stdin.flush().await?;
            self.read_message().await
        };
        match tokio::time::timeout(timeout, exchange).await {
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

/// Grows a pipe to [`PIPE_BYTES`] where the kernel allows (Linux; up to /proc/sys/fs/pipe-max-size for
/// unprivileged users). Failure only costs speed.
fn grow_pipe(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe behind a descriptor we own and keep
    // open for the call; an invalid request returns an error, which is ignored.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// A job and where to send its result.
type ThreadJob = (Arc<Vec<Job>>, usize, tokio::sync::oneshot::Sender<Result<JobOutput, FailureKind>>);

struct ThreadWorker {
    jobs: crossbeam_channel::Sender<ThreadJob>,
}

impl ThreadWorker {
    async fn start(config: &PoolConfig) -> Result<(ThreadWorker, usize), FailureKind> {
        let (jobs, receive) = crossbeam_channel::unbounded::<ThreadJob>();
        let (hello, hello_rx) = tokio::sync::oneshot::channel();
        let spec = config.spec.clone();
        std::thread::Builder::new()
            .name(format!("afx-worker-{}", spec.chain))
            .spawn(move || {
                // The executor (and its plugin host) lives and dies on this thread.
                let mut executor = match Executor::new(&spec) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = hello.send(Err(FailureKind::Plugin(e.to_string())));
                        return;
                    }
                };
                let _ = hello.send(Ok(executor.chain().num_params()));
                for (jobs, index, reply) in receive {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.run(&jobs[index])))
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
            Ok(Ok(Ok(num_params))) => Ok((ThreadWorker { jobs }, num_params)),
            Ok(Ok(Err(kind))) => Err(kind),
            Ok(Err(_)) => Err(FailureKind::Plugin("worker thread died while starting".into())),
            Err(_) => Err(FailureKind::TimedOut { after: config.start_timeout }),
        }
    }

    async fn call(
        &mut self,
        jobs: Arc<Vec<Job>>,
        index: usize,
        timeout: Duration,
    ) -> Result<Result<JobOutput, FailureKind>, FailureKind> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.jobs.send((jobs, index, reply)).is_err() {
            return Err(FailureKind::Crashed { signal: None, code: None });
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(FailureKind::Crashed { signal: None, code: None }),
            // A thread cannot be killed: it is abandoned (its channel dropped with this worker) and replaced.
            Err(_) => Err(FailureKind::TimedOut { after: timeout }),
        }
    }
}
