//! Tasks: jobs that a crate above the pool defines and that workers run beside their chain.
//!
//! The pool's own jobs move audio between the caller and the workers; some work is cheaper where the chain is.
//! Collecting a proxy's training data is the case in point: a worker that renders a whole shard and writes its
//! file sends back a few bytes instead of every output, so the caller's process stops being the bottleneck as
//! workers are added. A [`Task`] is named; a [`Job::Task`](crate::Job::Task) carries its name and an opaque
//! request, and the worker answers with the task's opaque reply. Crashes, hangs and the retry are the pool's,
//! as for any job.
//!
//! Workers know the tasks compiled into their program: a worker process gets them from
//! [`main_with_args`](crate::worker::main_with_args), a worker thread from
//! [`PoolConfig::tasks`](crate::PoolConfig::tasks). A worker without the task answers an error naming it, so a caller can fall back
//! to plain render jobs.

use afx_host::{Audio, Chain, RenderSettings};

use crate::job::FailureKind;

/// Work a worker runs on request, with its chain.
pub trait Task {
    /// The name [`Job::Task`](crate::Job::Task) addresses it by.
    fn name(&self) -> &'static str;

    /// Answers one request. Errors are the job's result (the worker stays up); a panic or crash ends the
    /// worker like any job's.
    fn run(&mut self, request: &[u8], renderer: &mut Renderer<'_>) -> Result<Vec<u8>, FailureKind>;
}

/// The tasks a worker knows, made fresh for each worker (a task may keep state, such as buffers).
pub type TaskSet = fn() -> Vec<Box<dyn Task>>;

/// A worker that knows no task.
pub fn no_tasks() -> Vec<Box<dyn Task>> {
    vec![]
}

/// A worker's chain, as a task sees it: renders exactly as a [`Job::Render`](crate::Job::Render) would.
pub struct Renderer<'a> {
    pub(crate) chain: &'a mut Chain,
    pub(crate) settings: &'a RenderSettings,
    pub(crate) watchdog: Option<&'a crate::watchdog::Watchdog>,
}

impl Renderer<'_> {
    pub fn chain(&self) -> &Chain {
        self.chain
    }

    /// `output = f(input, θ)`; non-finite output and plugin errors as a render job reports them. In a worker
    /// process, a render that runs past the pool's job time limit ends the worker, as a render job's would.
    pub fn render(&mut self, input: &Audio, theta: &[f32], output: &mut Audio) -> Result<(), FailureKind> {
        self.watchdog.inspect(|w| w.arm());
        let rendered = crate::render::render(self.chain, self.settings, input, theta, 0, output);
        self.watchdog.inspect(|w| w.disarm());
        rendered
    }
}
