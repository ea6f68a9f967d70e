//! Process workers: a child process per worker (see [`crate::worker::main_with_args`]), spoken to over its
//! stdin and stdout in the worker protocol ([`crate::wire`]), its stderr kept for error reports; it inherits
//! the pool's arena and gets output buffers of its own ([`crate::arena`]).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use afx_host::ChainLayout;
use afx_sandbox::{Caps, Folder, Policy, Report};

use crate::arena::{OUTPUT_BUFFERS, OUTPUTS_ENV, Outputs, Placements};
use crate::job::{FailureKind, Job, JobOutput};
use crate::wire::{self, Message};
use crate::worker::WorkerSpec;

use super::{PoolConfig, WorkerCommand};

/// A failure that ended the worker: what happened and its last stderr lines.
pub(super) type Fatal = (FailureKind, String);

/// The last lines a worker process wrote to stderr, each cut at [`StderrTail::LINE`] bytes: what error reports
/// show, bounded however much a plugin prints.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    const KEEP: usize = 40;
    const LINE: usize = 1000;

    /// Reads `stderr` to its end into `tail`, a line at a time, never holding more than one cut line.
    async fn follow(mut stderr: BufReader<tokio::process::ChildStderr>, tail: Arc<Mutex<StderrTail>>) {
        let mut line = Vec::with_capacity(Self::LINE);
        while let Ok(buf) = stderr.fill_buf().await {
            if buf.is_empty() {
                break;
            }
            let (used, ends) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = Self::LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..(used - usize::from(ends)).min(room)]);
            stderr.consume(used);
            if ends {
                tail.lock().expect("stderr lock").push(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        }
        if !line.is_empty() {
            tail.lock().expect("stderr lock").push(String::from_utf8_lossy(&line).into_owned());
        }
    }

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

pub(super) struct ProcessWorker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    frame: Vec<u8>,
    payload: Vec<u8>,
    /// Where the worker writes rendered audio (see [`crate::arena`]); `None`: it comes in the frames.
    outputs: Option<Outputs>,
    /// The sandboxed worker's folder, removed when this drops (after `child`, whose drop kills the process),
    /// and its caps, which name the exit codes of [`afx_sandbox`].
    #[expect(dead_code, reason = "held for its drop: the folder goes with the worker")]
    folder: Option<Folder>,
    caps: Option<Policy>,
}

impl ProcessWorker {
    pub(super) async fn start(
        command: &WorkerCommand,
        config: &PoolConfig,
        arena_fd: Option<RawFd>,
    ) -> Result<(ProcessWorker, ChainLayout, Option<Report>), Fatal> {
        let mut spawn = Command::new(&command.program);
        // The sandbox: a folder of the worker's own (its HOME, XDG folders and TMPDIR), and its caps.
        let folder = match config.sandbox.enabled {
            true => Some(Folder::new("afx-worker-").map_err(|e| {
                (FailureKind::Plugin(format!("cannot make the worker's sandbox folder: {e}")), String::new())
            })?),
            false => None,
        };
        let caps = folder.as_ref().map(|folder| {
            Caps { memory: Some(config.worker_memory()), threads: Some(config.sandbox.threads) }.policy(folder)
        });

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
            .args(
                WorkerSpec {
                    task_render_limit: Some(config.job_timeout),
                    sandbox: caps.clone(),
                    ..config.spec.clone()
                }
                .to_args(),
            )
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            // After the command's own: the sandbox's HOME, XDG folders and TMPDIR win.
            .envs(folder.iter().flat_map(Folder::env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                (FailureKind::Plugin(format!("cannot run {}: {e}", command.program.display())), String::new())
            })?;
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        let pipe = BufReader::new(child.stderr.take().expect("piped"));
        let stderr_task = tokio::spawn(StderrTail::follow(pipe, stderr.clone()));
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
            folder,
            caps,
        };
        let hello = tokio::time::timeout(config.start_timeout, worker.read_message()).await;
        match hello {
            Ok(Ok(Message::Hello { version, layout, sandbox })) if version == wire::VERSION => {
                let sandbox = (!sandbox.is_empty()).then(|| serde_json::from_str(&sandbox)).transpose();
                match (serde_json::from_str(&layout), sandbox) {
                    (Ok(layout), Ok(sandbox)) => Ok((worker, layout, sandbox)),
                    (_, Err(e)) => Err(worker
                        .fail(FailureKind::Protocol(format!("the worker's sandbox report is not valid: {e}")))
                        .await),
                    (Err(e), _) => Err(worker
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
    pub(super) async fn send(
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

    pub(super) async fn receive(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> Result<Result<JobOutput, FailureKind>, Fatal> {
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
                let caps = self.caps.as_ref();
                let cap = status
                    .code()
                    .zip(caps)
                    .and_then(|(code, caps)| afx_sandbox::exit_reason(code, caps.memory, caps.threads));
                match cap {
                    Some(reason) => FailureKind::Sandbox(reason),
                    None => FailureKind::Crashed { signal: status.signal(), code: status.code() },
                }
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
