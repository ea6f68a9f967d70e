//! The executor: the worker's chain and the buffers its jobs reuse, and every kind of job run on them in one
//! match ([`Executor::run_ref`]).

use afx_host::scan::Catalogue;
use afx_host::{Audio, Chain, ChainError, Config, Host, RenderError, RenderSettings};

use crate::estimator::{Frames, Workspace, finite_difference_vjp, spsa_dots, spsa_vjp};
use crate::job::{FailureKind, Job, JobOutput};
use crate::render::{failure, render};
use crate::task::{Renderer, Task};
use crate::watchdog::Watchdog;
use crate::wire::OutputRef;

use super::WorkerSpec;

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
        chain.probe(&RenderSettings::with_block_size(spec.block_size))?;
        let watchdog = spec.task_render_limit.map(Watchdog::start).transpose().map_err(|e| {
            let message = format!("cannot start the worker's watchdog thread: {e}");
            ChainError::Render(RenderError::Plugin { plugin: spec.chain.clone(), message })
        })?;
        Ok(Executor {
            chain,
            settings: RenderSettings::with_block_size(spec.block_size),
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
            Job::Render { input, theta, hop } => {
                render(chain, settings, input, theta, *hop, output)?;
                Ok(OutputRef::Audio(output))
            }
            Job::RenderValues { input, sidechain, values } => {
                chain.render_automated_into(input, sidechain.as_deref(), values, settings, output).map_err(failure)?;
                Ok(OutputRef::Audio(output))
            }
            Job::Spsa { input, theta, hop, grad, epsilon, perturbations, seed, scoring } => {
                check_grad(input, grad)?;
                let frames = Frames::of(theta.len(), chain.num_params(), *hop as usize);
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, *hop, out);
                let k = *perturbations as usize;
                *gradient = spsa_vjp(&mut f, theta, frames, *scoring, grad, *epsilon, k, *seed, work)?;
                Ok(OutputRef::Gradient(gradient))
            }
            Job::SpsaPart { input, theta, hop, grad, epsilon, first, count, seed } => {
                check_grad(input, grad)?;
                let frames = Frames::of(theta.len(), chain.num_params(), *hop as usize);
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, *hop, out);
                work.dots = spsa_dots(&mut f, theta, frames, grad, *epsilon, *first, *count, *seed, work)?;
                Ok(OutputRef::SpsaDots(&work.dots))
            }
            Job::FiniteDifference { input, theta, hop, grad, step } => {
                check_grad(input, grad)?;
                let mut f = |t: &[f32], out: &mut Audio| render(chain, settings, input, t, *hop, out);
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
