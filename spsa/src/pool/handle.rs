//! The pool's handle on one live worker, a process or a thread: starting it, sending it a job, receiving the
//! oldest job's result.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use afx_host::ChainLayout;

use crate::arena::Placements;
use crate::job::{FailureKind, Job, JobOutput};

use super::process::{Fatal, ProcessWorker};
use super::thread::ThreadWorker;
use super::{Isolation, PoolConfig, PoolError};

/// A live worker of either kind.
pub(super) struct Worker {
    pub(super) chain: ChainLayout,
    pub(super) sandbox: Option<afx_sandbox::Report>,
    kind: WorkerKind,
}

enum WorkerKind {
    Process(Box<ProcessWorker>),
    Thread(ThreadWorker),
}

impl Worker {
    pub(super) async fn start(config: &PoolConfig, arena_fd: Option<RawFd>) -> Result<Worker, PoolError> {
        let start_error =
            |message: String, stderr: String| PoolError::Start { chain: config.spec.chain.clone(), message, stderr };
        match &config.isolation {
            Isolation::Process(command) => {
                let (worker, chain, sandbox) = ProcessWorker::start(command, config, arena_fd)
                    .await
                    .map_err(|(kind, stderr)| start_error(kind.to_string(), stderr))?;
                Ok(Worker { chain, sandbox, kind: WorkerKind::Process(Box::new(worker)) })
            }
            Isolation::Thread => {
                let (worker, chain) =
                    ThreadWorker::start(config).await.map_err(|kind| start_error(kind.to_string(), String::new()))?;
                Ok(Worker { chain, sandbox: None, kind: WorkerKind::Thread(worker) })
            }
        }
    }

    /// Hands `job` to the worker under `id`. `Ok(Err)`: the job could not be sent, the worker is fine.
    pub(super) async fn send(
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
    pub(super) async fn receive(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> Result<Result<JobOutput, FailureKind>, Fatal> {
        match &mut self.kind {
            WorkerKind::Process(w) => w.receive(id, timeout).await,
            WorkerKind::Thread(w) => w.receive(timeout).await.map_err(|k| (k, String::new())),
        }
    }
}
