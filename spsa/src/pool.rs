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
    renders: u64,
}

impl Pool {
    /// Starts every worker and waits for each to load the chain, so a bad chain fails here, not mid-batch.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let config = Arc::new(config);
        let workers = runtime.block_on(async {
            let mut workers = vec![];
            for _ in 0..config.workers {
                workers.push(Some(Worker::start(&config).await?));
            }
            Ok::<_, PoolError>(workers)
        })?;
        let num_params = workers[0].as_ref().map_or(0, |w| w.num_params);
        Ok(Pool { runtime, config, workers, num_params, renders: 0 })
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
        let results: Vec<Result<Audio, ItemError>> = self
            .run(jobs.collect())
            .into_iter()
            .map(|r| r.map(|o| o.into_audio().expect("render jobs give audio")))
            .collect();
        self.renders += results.iter().filter(|r| r.is_ok()).count() as u64;
        results
    }

    /// Successful [`Pool::render_batch`] items so far: how callers (and tests) see that the real chain ran.
    pub fn renders(&self) -> u64 {
        self.renders
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

/// Jobs a worker holds at once: the next job waits in its pipe while it renders the current one, so the
/// transfer and the wake-up of one hide behind the render of the other.
const DEPTH: usize = 2;

/// One worker slot's loop: keep its worker fed (up to [`DEPTH`] jobs) until the queue is empty; replace the
/// worker when it dies.
///
/// When a worker dies, the oldest job in flight is the one it was running: that job is retried once, first
/// thing on the fresh worker, then reported. Jobs sent after it never started: they go back to the queue as
/// they were.
async fn serve_slot(
    mut worker: Option<Worker>,
    config: &PoolConfig,
    jobs: &Arc<Vec<Job>>,
    queue: &Mutex<VecDeque<usize>>,
    results: &Results,
) -> Option<Worker> {
    let store = |index: usize, result: Result<JobOutput, ItemError>| {
        results.lock().expect("results lock")[index] = Some(result);
    };
    // (index, attempt) sent to the worker, oldest first; and this slot's retry, which goes before the queue.
    let mut in_flight: VecDeque<(usize, u32)> = VecDeque::new();
    let mut retry: Option<usize> = None;
    loop {
        while in_flight.len() < DEPTH {
            let next = match retry.take() {
                Some(index) => Some((index, 1)),
                None => queue.lock().expect("queue lock").pop_front().map(|index| (index, 0)),
            };
            let Some((index, attempt)) = next else { break };
            let current = match worker.as_mut() {
                Some(w) => w,
                None => match Worker::start(config).await {
                    Ok(w) => worker.insert(w),
                    Err(e) => {
                        store(index, Err(item_error(config, &jobs[index], FailureKind::Plugin(e.to_string()), "")));
                        continue;
                    }
                },
            };
            // Only small jobs share the pipe: two large frames could fill both pipes and deadlock.
            let pipelined = !in_flight.is_empty();
            if pipelined && !current.can_pipeline(&jobs[index]) {
                requeue(queue, index, attempt, &mut retry);
                break;
            }
            match current.send(jobs, index, config.job_timeout).await {
                Ok(()) => in_flight.push_back((index, attempt)),
                Err(_) if !in_flight.is_empty() => {
                    // The worker died on an earlier job: receiving that one reports how.
                    requeue(queue, index, attempt, &mut retry);
                    break;
                }
                Err((kind, stderr)) => {
                    worker = None;
                    if kind.is_retryable() && attempt == 0 {
                        retry = Some(index);
                    } else {
                        store(index, Err(item_error(config, &jobs[index], kind, &stderr)));
                    }
                }
            }
        }
        let Some((index, attempt)) = in_flight.pop_front() else { return worker };
        let current = worker.as_mut().expect("jobs in flight have a worker");
        match current.receive(index as u64, config.job_timeout).await {
            Ok(result) => store(index, result.map_err(|kind| item_error(config, &jobs[index], kind, ""))),
            Err((kind, stderr)) => {
                tracing::warn!(chain = %config.spec.chain, item = index, attempt, "{kind}");
                worker = None;
                for (later, later_attempt) in in_flight.drain(..).rev() {
                    requeue(queue, later, later_attempt, &mut None);
                }
                if kind.is_retryable() && attempt == 0 {
                    retry = Some(index);
                } else {
                    store(index, Err(item_error(config, &jobs[index], kind, &stderr)));
                }
            }
        }
    }
}

/// Puts a job that was not run back: as this slot's retry if it is one, else at the front of the queue.
fn requeue(queue: &Mutex<VecDeque<usize>>, index: usize, attempt: u32, retry: &mut Option<usize>) {
    if attempt > 0 {
        *retry = Some(index);
    } else {
        queue.lock().expect("queue lock").push_front(index);
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

    /// Hands `jobs[index]` to the worker (its id is its index).
    async fn send(&mut self, jobs: &Arc<Vec<Job>>, index: usize, limit: Duration) -> Result<(), Fatal> {
        match &mut self.kind {
            WorkerKind::Process(w) => w.send(index as u64, &jobs[index], limit).await,
            WorkerKind::Thread(w) => w.send(jobs.clone(), index).map_err(|k| (k, String::new())),
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

    /// Whether `job` may wait in the worker's input while another runs.
    fn can_pipeline(&self, job: &Job) -> bool {
        match &self.kind {
            WorkerKind::Process(w) => w.can_pipeline(job),
            WorkerKind::Thread(_) => true,
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
    /// Both pipes hold [`PIPE_BYTES`].
    big_pipes: bool,
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
        let big_pipes = grow_pipe(stdin.as_raw_fd()) && grow_pipe(stdout.as_raw_fd());
        let mut worker = ProcessWorker {
            big_pipes,
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

    /// Writes a job frame. It fits in the pipe when [`ProcessWorker::can_pipeline`] said so; otherwise
    /// this is the only job in flight and the worker is reading.
    async fn send(&mut self, id: u64, job: &Job, limit: Duration) -> Result<(), Fatal> {
        wire::encode_job(id, job, &mut self.frame);
        let write = async {
            self.stdin.write_all(&self.frame).await?;
            self.stdin.flush().await
        };
        // A worker that stops reading for a whole job time limit is stuck.
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
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

    /// A second job may wait in the pipe only if the pipes were grown and both its frame and its answer take
    /// at most a quarter of them: then neither side ever blocks on a full pipe.
    fn can_pipeline(&self, job: &Job) -> bool {
        let bytes = |a: &Audio| 4 * a.num_channels() * a.frames() + 64;
        let (job_bytes, answer_bytes) = match job {
            Job::Render { input, .. } => (bytes(input), bytes(input)),
            Job::Spsa { input, grad, .. } | Job::FiniteDifference { input, grad, .. } => {
                (bytes(input) + bytes(grad), 4 * job.theta().len() + 64)
            }
        };
        self.big_pipes && job_bytes.max(answer_bytes) <= PIPE_BYTES / 4
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
/// for unprivileged users). Failure only costs speed: jobs are then not pipelined.
fn grow_pipe(fd: std::os::fd::RawFd) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe behind a descriptor we own and
        // keep open for the call; it returns the new size, or -1 for a request the kernel refuses.
        let size = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        size >= PIPE_BYTES as libc::c_int
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        false
    }
}

/// A job and where to send its result.
type ThreadJob = (Arc<Vec<Job>>, usize, tokio::sync::oneshot::Sender<Result<JobOutput, FailureKind>>);

struct ThreadWorker {
    jobs: crossbeam_channel::Sender<ThreadJob>,
    /// Where the answers of the jobs sent come back, oldest first.
    replies: VecDeque<tokio::sync::oneshot::Receiver<Result<JobOutput, FailureKind>>>,
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
            Ok(Ok(Ok(num_params))) => Ok((ThreadWorker { jobs, replies: VecDeque::new() }, num_params)),
            Ok(Ok(Err(kind))) => Err(kind),
            Ok(Err(_)) => Err(FailureKind::Plugin("worker thread died while starting".into())),
            Err(_) => Err(FailureKind::TimedOut { after: config.start_timeout }),
        }
    }

    fn send(&mut self, jobs: Arc<Vec<Job>>, index: usize) -> Result<(), FailureKind> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send((jobs, index, reply)).map_err(|_| FailureKind::Crashed { signal: None, code: None })?;
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
