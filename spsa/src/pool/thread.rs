//! Thread workers: an [`Executor`] on a thread of this process per worker, for trusted plugins; jobs go over a
//! channel, answers come back on a oneshot each, a panic is the job's error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use afx_host::ChainLayout;

use crate::job::{FailureKind, Job, JobOutput};
use crate::worker::Executor;

use super::PoolConfig;

/// A job and where to send its result.
type ThreadJob = (Arc<Job>, tokio::sync::oneshot::Sender<Result<JobOutput, FailureKind>>);

pub(super) struct ThreadWorker {
    jobs: crossbeam_channel::Sender<ThreadJob>,
    /// Where the answers of the jobs sent come back, oldest first.
    replies: VecDeque<tokio::sync::oneshot::Receiver<Result<JobOutput, FailureKind>>>,
}

impl ThreadWorker {
    pub(super) async fn start(config: &PoolConfig) -> Result<(ThreadWorker, ChainLayout), FailureKind> {
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

    pub(super) fn send(&mut self, job: Arc<Job>) -> Result<(), FailureKind> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send((job, reply)).map_err(|_| FailureKind::Crashed { signal: None, code: None })?;
        self.replies.push_back(answer);
        Ok(())
    }

    pub(super) async fn receive(&mut self, timeout: Duration) -> Result<Result<JobOutput, FailureKind>, FailureKind> {
        let answer = self.replies.pop_front().ok_or_else(|| FailureKind::Protocol("no job in flight".into()))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(FailureKind::Crashed { signal: None, code: None }),
            // A thread cannot be killed: it is abandoned (its channel dropped with this worker) and replaced.
            Err(_) => Err(FailureKind::TimedOut { after: timeout }),
        }
    }
}
