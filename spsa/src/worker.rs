//! A worker: one chain, hosted on one thread, executing jobs. The same [`Executor`] runs inside a worker
//! process ([`serve`], behind `afx worker` or the `afx-worker` binary) and inside a pool thread.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use afx_host::scan::Catalogue;
use afx_host::{Audio, Chain, ChainError, Config, Format, Host, RenderError, RenderSettings};

use crate::arena::{ArenaView, OutputWriter};
use crate::estimator::{Workspace, finite_difference_vjp, spsa_dots, spsa_vjp};
use crate::job::{FailureKind, Job, JobOutput};
use crate::render::{failure, render};
use crate::task::{Renderer, Task, TaskSet};
use crate::watchdog::Watchdog;
use crate::wire::{self, Message, OutputRef};

// How a worker's watchdog ends it is part of the worker process's interface, beside `main_with_args`.
pub use crate::watchdog::WATCHDOG_EXIT;

/// Which chain a worker hosts and how it renders. Travels to worker processes as command-line arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// plugins.toml; `None` when the chain is an installed plugin's id.
    pub config: Option<PathBuf>,
    /// A chain or plugin name from the config, or an installed plugin's id.
    pub chain: String,
    /// Narrows an installed plugin's id or name to one format.
    pub format: Option<Format>,
    /// A scan's catalogue (written by [`afx_host::scan::Catalogue::save`]): the worker finds its plugins there and
    /// loads only their files, so no other installed plugin runs in it. `None`: discover every installed plugin
    /// in the worker ([`Host::new`]), which loads every file of the formats it searches.
    pub catalogue: Option<PathBuf>,
    pub block_size: usize,
    /// The longest one render inside a [`Task`] may take before the worker process exits, so that the pool
    /// sees it die and can run the task's examples as jobs it times one by one (a task spans many renders:
    /// the pool's own limit on it is loose). The pool sets its job time limit here for worker processes; leave
    /// it `None` anywhere else: exiting ends the whole process, not one thread.
    pub task_render_limit: Option<Duration>,
}

impl WorkerSpec {
    pub fn new(config: Option<PathBuf>, chain: impl Into<String>) -> WorkerSpec {
        WorkerSpec {
            config,
            chain: chain.into(),
            format: None,
            catalogue: None,
            block_size: RenderSettings::default().block_size,
            task_render_limit: None,
        }
    }

    /// The arguments [`WorkerSpec::from_args`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--chain".to_string(), self.chain.clone()];
        if let Some(config) = &self.config {
            args.extend(["--config".to_string(), config.display().to_string()]);
        }
        if let Some(format) = self.format {
            args.extend(["--format".to_string(), format.to_string()]);
        }
        if let Some(catalogue) = &self.catalogue {
            args.extend(["--catalogue".to_string(), catalogue.display().to_string()]);
        }
        args.extend(["--block-size".to_string(), self.block_size.to_string()]);
        if let Some(limit) = self.task_render_limit {
            args.extend(["--task-render-limit-ms".to_string(), limit.as_millis().to_string()]);
        }
        args
    }

    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<WorkerSpec, String> {
        let mut spec = WorkerSpec::new(None, "");
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--chain" => spec.chain = value()?,
                "--config" => spec.config = Some(value()?.into()),
                "--format" => spec.format = Some(value()?.parse()?),
                "--catalogue" => spec.catalogue = Some(value()?.into()),
                "--block-size" => {
                    let v = value()?;
                    spec.block_size = v.parse().map_err(|_| format!("--block-size: {v:?} is not a number"))?;
                }
                "--task-render-limit-ms" => {
                    let v = value()?;
                    let ms = v.parse().map_err(|_| format!("--task-render-limit-ms: {v:?} is not a number"))?;
                    spec.task_render_limit = Some(Duration::from_millis(ms));
                }
                other => return Err(format!("unknown worker argument {other:?}")),
            }
        }
        if spec.chain.is_empty() {
            return Err("--chain is required".into());
        }
        Ok(spec)
    }
}

/// Hosts the chain and runs jobs on it. Not `Send`: create it on the thread that uses it.
pub struct Executor {
    chain: Chain,
    settings: RenderSettings,
    work: Workspace,
    output: Audio,
    gradient: Vec<f32>,
    tasks: Vec<Box<dyn Task>>,
    reply: Vec<u8>,
    watchdog: Option<Watchdog>,
}

impl Executor {
    pub fn new(spec: &WorkerSpec) -> Result<Executor, ChainError> {
        let config = spec.config.as_deref().map(Config::load).transpose()?;
        let host = match &spec.catalogue {
            Some(path) => Host::from_catalogue(
                Catalogue::load(path).map_err(|e| ChainError::NotFound(format!("the worker's plugin list: {e}")))?,
            ),
            None => Host::new(),
        };
        let mut chain = Chain::resolve(&host, config.as_ref(), &spec.chain, spec.format)?;
        // Before the hello: a plugin that crashes or hangs when its first instance is made fails the worker's
        // start, not the first job of a batch (which would be reported as a failed item, again and again).
        chain.probe(&RenderSettings { block_size: spec.block_size })?;
        let watchdog = spec.task_render_limit.map(Watchdog::start).transpose().map_err(|e| {
            let message = format!("cannot start the worker's watchdog thread: {e}");
            ChainError::Render(RenderError::Plugin { plugin: spec.chain.clone(), message })
        })?;
        Ok(Executor {
            chain,
            settings: RenderSettings { block_size: spec.block_size },
            work: Workspace::default(),
            output: Audio::silence(1, 1, 0),
            gradient: vec![],
            tasks: vec![],
            reply: vec![],
            watchdog,
        })
    }

    /// The [`Task`]s that [`Job::Task`] may name.
    pub fn with_tasks(mut self, tasks: Vec<Box<dyn Task>>) -> Executor {
        self.tasks = tasks;
        self
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Runs one job. Plugin errors and NaN/Inf are returned, not panicked: the worker stays usable.
    pub fn run(&mut self, job: &Job) -> Result<JobOutput, FailureKind> {
        Ok(match self.run_ref(job)? {
            OutputRef::Audio(a) => JobOutput::Audio(a.clone()),
            OutputRef::Gradient(g) => JobOutput::Gradient(g.to_vec()),
            OutputRef::Bytes(b) => JobOutput::Bytes(b.to_vec()),
            OutputRef::SpsaDots(d) => JobOutput::SpsaDots(d.to_vec()),
        })
    }

    /// Like [`Executor::run`], leaving the output in the executor's own buffers, which the next job reuses:
    /// a worker process encodes from them without allocating per job.
    pub fn run_ref(&mut self, job: &Job) -> Result<OutputRef<'_>, FailureKind> {
        let Executor { chain, settings, work, output, gradient, tasks, reply, watchdog } = self;
        match job {
            Job::Render { input, theta } => {
                render(chain, settings, input, theta, output)?;
                Ok(OutputRef::Audio(output))
            }
            Job::RenderValues { input, sidechain, values } => {
                chain.render_values_into(input, sidechain.as_deref(), values, settings, output).map_err(failure)?;
                Ok(OutputRef::Audio(output))
            }
            Job::Spsa { input, theta, grad, epsilon, perturbations, seed } => {
                check_grad(input, grad)?;
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, out);
                *gradient = spsa_vjp(&mut f, theta, grad, *epsilon, *perturbations as usize, *seed, work)?;
                Ok(OutputRef::Gradient(gradient))
            }
            Job::SpsaPart { input, theta, grad, epsilon, first, count, seed } => {
                check_grad(input, grad)?;
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, out);
                work.dots = spsa_dots(&mut f, theta, grad, *epsilon, *first, *count, *seed, work)?;
                Ok(OutputRef::SpsaDots(&work.dots))
            }
            Job::FiniteDifference { input, theta, grad, step } => {
                check_grad(input, grad)?;
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, out);
                *gradient = finite_difference_vjp(&mut f, theta, grad, *step, work)?;
                Ok(OutputRef::Gradient(gradient))
            }
            Job::Task { name, request, .. } => {
                let Some(task) = tasks.iter_mut().find(|t| t.name() == name) else {
                    let known: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
                    return Err(FailureKind::Plugin(format!(
                        "this worker has no task {name:?} (it has {known:?}); is it an older afx?"
                    )));
                };
                *reply = task.run(request, &mut Renderer { chain, settings, watchdog: watchdog.as_ref() })?;
                Ok(OutputRef::Bytes(reply))
            }
        }
    }
}

fn check_grad(input: &Audio, grad: &Audio) -> Result<(), FailureKind> {
    if (grad.num_channels(), grad.frames()) != (input.num_channels(), input.frames()) {
        return Err(FailureKind::Plugin(format!(
            "upstream gradient is {}x{}, the output is {}x{}",
            grad.num_channels(),
            grad.frames(),
            input.num_channels(),
            input.frames()
        )));
    }
    Ok(())
}

/// The worker process's main loop: say hello, then answer each job frame on `output` until `input` closes.
pub fn serve(
    spec: &WorkerSpec,
    tasks: TaskSet,
    input: impl Read + Send + 'static,
    output: &mut impl Write,
) -> Result<(), String> {
    let mut executor = Executor::new(spec).map_err(|e| e.to_string())?.with_tasks(tasks());
    let mut frame = vec![];
    let layout = serde_json::to_string(executor.chain().layout()).map_err(|e| format!("describing the chain: {e}"))?;
    let hello = Message::Hello { version: wire::VERSION, layout };
    wire::encode(&hello, &mut frame).map_err(|e| format!("encoding hello: {e}"))?;
    wire::write_frame(output, &frame).map_err(|e| format!("writing hello: {e}"))?;
    // The pool's shared arena, where a batch's audio lies, and this worker's output buffers (see `crate::arena`).
    let mut arena = ArenaView::from_env();
    let mut outputs = OutputWriter::from_env();
    let mut resolve = |at| match arena.as_mut() {
        Some(arena) => arena.resolve(at),
        None => Err(wire::WireError::Malformed("shared audio, but this worker was given no arena".into())),
    };
    for payload in read_frames(input)? {
        let Message::Job { id, job } = wire::decode_with(&payload?, &mut resolve).map_err(|e| e.to_string())? else {
            return Err("expected a job frame".into());
        };
        let result = executor.run_ref(&job);
        let in_buffer = match (&result, outputs.as_mut()) {
            (Ok(OutputRef::Audio(audio)), Some(outputs)) => outputs.write(audio),
            _ => None,
        };
        if let Some(at) = in_buffer {
            wire::encode_output_result(id, at, &mut frame);
        } else if let Err(e) = wire::encode_result(id, result.as_ref().copied(), &mut frame) {
            // An output too large for one frame fails its job, not the worker.
            let failure = FailureKind::TooLarge(format!("the job's result cannot go back to the pool: {e}"));
            wire::encode_result(id, Err(&failure), &mut frame).map_err(|e| format!("encoding an error: {e}"))?;
        }
        wire::write_frame(output, &frame).map_err(|e| format!("writing result: {e}"))?;
    }
    Ok(())
}

/// The frames of `input`, read on a thread of their own so that the pool's pipe is always drained: the pool
/// then sends the next job while this one runs, whatever their sizes, and neither side ever waits on the
/// other's full pipe. The pool has at most two jobs in flight, so at most one waits here.
fn read_frames(
    mut input: impl Read + Send + 'static,
) -> Result<std::sync::mpsc::Receiver<Result<Vec<u8>, String>>, String> {
    let (frames, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("afx-worker-input".into())
        .spawn(move || {
            loop {
                let mut payload = vec![];
                let frame = match wire::read_frame(&mut input, &mut payload) {
                    Ok(true) => Ok(payload),
                    Ok(false) => return,
                    Err(e) => Err(e.to_string()),
                };
                let last = frame.is_err();
                if frames.send(frame).is_err() || last {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the thread reading jobs: {e}"))?;
    Ok(receiver)
}

/// Every job decodes its audio into fresh buffers of a few hundred KiB (a collect shard: megabytes). glibc
/// serves blocks that large with mmap and returns them on free, so each job paid page faults and zeroing
/// again; raising the thresholds keeps freed blocks in the heap for the next job. Worker processes call it
/// first thing; a program feeding a pool (which makes such buffers too) should as well, before it starts any
/// thread.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// The protocol's own handles on stdin and stdout, with fd 1 then pointed at stderr: a plugin that prints to
/// stdout (some do) must not corrupt the frames, and Rust's stdout is line-buffered, which would split every
/// frame at each 0x0A byte of audio.
fn protocol_pipes() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::{AsFd, FromRawFd};
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    // SAFETY: dup(1) returns a new descriptor (or -1) that nothing else owns; dup2(2, 1) atomically makes fd 1
    // another name for stderr, which every process has open. Rust's `Stdout` keeps writing to fd 1, now stderr.
    let output = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::fs::File::from_raw_fd(fd)
    };
    Ok((input, output))
}

/// `main` of a worker process: arguments as [`WorkerSpec::to_args`] writes them, jobs on stdin, results on
/// stdout, diagnostics on stderr (which the pool captures). `tasks` are the [`Task`]s jobs may name.
pub fn main_with_args(args: impl IntoIterator<Item = String>, tasks: TaskSet) -> std::process::ExitCode {
    keep_freed_memory();
    let spec = match WorkerSpec::from_args(args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("afx worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (input, output) = match protocol_pipes() {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("afx worker: cannot set up its pipes: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut output = std::io::BufWriter::with_capacity(1 << 20, output);
    match serve(&spec, tasks, input, &mut output) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("afx worker ({}): {e}", spec.chain);
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_its_arguments_and_bad_values_are_named() {
        let spec = WorkerSpec {
            format: Some(Format::Clap),
            catalogue: Some("/tmp/afx catalogue.json".into()),
            block_size: 64,
            task_render_limit: Some(Duration::from_millis(2500)),
            ..WorkerSpec::new(Some("plugins.toml".into()), "eq_comp")
        };
        assert_eq!(WorkerSpec::from_args(spec.to_args()), Ok(spec));
        let plain = WorkerSpec::new(None, "urn:zamaudio:ZamComp");
        assert_eq!(WorkerSpec::from_args(plain.to_args()), Ok(plain));
        let args = ["--chain", "x", "--task-render-limit-ms", "soon"].map(String::from);
        assert!(WorkerSpec::from_args(args).unwrap_err().contains("--task-render-limit-ms"));
    }
}
