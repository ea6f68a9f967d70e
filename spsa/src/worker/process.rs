//! The worker process: its `main`, its pipes, and the protocol loop that decodes each job frame, runs it on
//! the [`Executor`] and sends the result back (audio through the output buffers where it can).

use std::io::{Read, Write};

use afx_sandbox::Report;

use crate::arena::{ArenaView, OutputWriter};
use crate::job::FailureKind;
use crate::task::TaskSet;
use crate::wire::{self, Message, OutputRef};

use super::{Executor, WorkerSpec};

/// The worker process's main loop: say hello (with `sandbox`, the protections in force, if any), then answer
/// each job frame on `output` until `input` closes.
pub fn serve(
    spec: &WorkerSpec,
    tasks: TaskSet,
    sandbox: Option<&Report>,
    input: impl Read + Send + 'static,
    output: &mut impl Write,
) -> Result<(), String> {
    let mut executor = Executor::new(spec).map_err(|e| e.to_string())?.with_tasks(tasks());
    afx_sandbox::check_threads();
    let mut frame = vec![];
    let layout = serde_json::to_string(executor.chain().layout()).map_err(|e| format!("describing the chain: {e}"))?;
    let sandbox = sandbox.map(|r| serde_json::to_string(r).expect("a report serialises")).unwrap_or_default();
    let hello = Message::Hello { version: wire::VERSION, layout, sandbox };
    // What one job may compute in its wall-clock limit: past that, CPU time spent between jobs ends the worker.
    let cpu_budget = spec.task_render_limit.filter(|_| spec.sandbox.is_some()).map(|limit| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        limit.as_secs().saturating_add(1).saturating_mul(cores).saturating_add(10)
    });
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
        if let Some(seconds) = cpu_budget {
            afx_sandbox::cpu_budget(seconds);
        }
        let result = executor.run_ref(&job);
        afx_sandbox::check_threads();
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
/// stdout, diagnostics on stderr (which the pool captures). `tasks` are the [`Task`](crate::Task)s jobs
/// may name.
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
    // Confined after the pipes and before any plugin library is opened (the shared buffers are inherited
    // descriptors: mapping them needs no path).
    let report = spec.sandbox.as_ref().map(afx_sandbox::apply);
    let input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut output = std::io::BufWriter::with_capacity(1 << 20, output);
    match serve(&spec, tasks, report.as_ref(), input, &mut output) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("afx worker ({}): {e}", spec.chain);
            std::process::ExitCode::FAILURE
        }
    }
}
