//! What the pool computes: jobs, their outputs, and why an item failed.
//!
//! A new kind of job is added in one place per concern: its variant and what the pool asks of every job
//! ([`Job::theta`], [`Job::time_limits`], the audio it reads) here; its tag, encoding and decoding side by side
//! in `wire/job.rs` (bumping [`crate::wire::VERSION`]); its execution as one arm of the worker's match
//! ([`crate::worker::Executor::run_ref`]). A batch method on the [`Pool`](crate::Pool) (`pool/batch.rs`) is
//! optional: [`Pool::run`](crate::Pool::run) runs any job.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use afx_host::{Audio, Automation};

use crate::estimator::Scoring;

/// One unit of work for a worker, on one batch item.
///
/// Audio is shared ([`Arc`]): making jobs never copies it, and the jobs of one item (or items with the same
/// input) point at one buffer, which a batch sends to worker processes once (see [`crate::Pool::run`]).
#[derive(Debug, Clone, PartialEq)]
///
/// θ is normalised: one row of P values, or a trajectory of F rows (F·P values), row `f` in effect from input
/// frame `f·hop` (see `afx_host::automation`); `hop` is unused for one row.
pub enum Job {
    /// `y = f(x, θ)`.
    Render { input: Arc<Audio>, theta: Vec<f32>, hop: u32 },
    /// SPSA estimate of `(∂y/∂θ)ᵀ g` (see [`crate::estimator::spsa_vjp`]), a trajectory's rows scored as
    /// `scoring` says.
    Spsa {
        input: Arc<Audio>,
        theta: Vec<f32>,
        hop: u32,
        grad: Arc<Audio>,
        epsilon: f32,
        perturbations: u32,
        seed: u64,
        scoring: Scoring,
    },
    /// Perturbations `first..first + count` of a [`Job::Spsa`] seeded `seed`: their `⟨g, y₊ − y₋⟩` per output
    /// segment (one per row of θ), as [`JobOutput::SpsaDots`] (see [`crate::estimator::spsa_dots`]).
    /// [`crate::estimator::spsa_combine`] turns the dots of all K perturbations, in order, into the item's
    /// estimate, bit for bit what the whole job gives: how [`crate::Pool::run`] spreads one item over several
    /// workers.
    SpsaPart {
        input: Arc<Audio>,
        theta: Vec<f32>,
        hop: u32,
        grad: Arc<Audio>,
        epsilon: f32,
        first: u32,
        count: u32,
        seed: u64,
    },
    /// `y = f(x, values)` with every parameter of every stage in plain units, fixed or moving: one
    /// [`Automation`] per stage ([`Automation::constant`] of what [`afx_host::ChainLayout::plain_values`] or
    /// `values_with` give, for fixed values), `sidechain` fed to the plugins' key inputs (silence when `None`):
    /// what `afx render` and `afx infer` run on a whole file.
    RenderValues { input: Arc<Audio>, sidechain: Option<Arc<Audio>>, values: Vec<Automation> },
    /// Central finite differences of `(∂y/∂θ)ᵀ g` with step `step`.
    FiniteDifference { input: Arc<Audio>, theta: Vec<f32>, hop: u32, grad: Arc<Audio>, step: f32 },
    /// The worker's [`Task`](crate::Task) `name` on `request`, which holds up to `renders` renders: the job's
    /// time limit is the pool's per-render limit times `renders` (at least one).
    Task { name: String, request: Vec<u8>, renders: u32 },
}

impl Job {
    pub fn theta(&self) -> &[f32] {
        match self {
            Job::Render { theta, .. }
            | Job::Spsa { theta, .. }
            | Job::SpsaPart { theta, .. }
            | Job::FiniteDifference { theta, .. } => theta,
            Job::RenderValues { .. } | Job::Task { .. } => &[],
        }
    }

    /// The audio the job reads: what a batch writes to the pool's shared arena (see `crate::arena`).
    pub(crate) fn audio(&self) -> [Option<&Arc<Audio>>; 2] {
        match self {
            Job::Render { input, .. } => [Some(input), None],
            Job::RenderValues { input, sidechain, .. } => [Some(input), sidechain.as_ref()],
            Job::Spsa { input, grad, .. }
            | Job::SpsaPart { input, grad, .. }
            | Job::FiniteDifference { input, grad, .. } => [Some(input), Some(grad)],
            Job::Task { .. } => [None, None],
        }
    }

    /// How many of the pool's per-job time limits this job may take.
    pub fn time_limits(&self) -> u32 {
        match self {
            Job::Task { renders, .. } => (*renders).max(1),
            _ => 1,
        }
    }
}

/// A job's result.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    Audio(Audio),
    Gradient(Vec<f32>),
    /// A [`Job::SpsaPart`]'s `⟨g, y₊ − y₋⟩`, one per output segment per perturbation.
    SpsaDots(Vec<f64>),
    /// A task's reply.
    Bytes(Vec<u8>),
}

impl JobOutput {
    pub fn into_audio(self) -> Option<Audio> {
        match self {
            JobOutput::Audio(a) => Some(a),
            _ => None,
        }
    }

    pub fn into_gradient(self) -> Option<Vec<f32>> {
        match self {
            JobOutput::Gradient(g) => Some(g),
            _ => None,
        }
    }

    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            JobOutput::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// How an item failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// The worker process died (a signal such as SIGSEGV or SIGABRT, or an exit code).
    Crashed { signal: Option<i32>, code: Option<i32> },
    /// The job ran past the pool's time limit; the worker was killed.
    TimedOut { after: Duration },
    /// The plugin produced NaN or Inf.
    NonFinite(String),
    /// The plugin or chain reported an error (bad value, instantiation failure, ...).
    Plugin(String),
    /// The worker answered something the pool did not expect.
    Protocol(String),
    /// A job or its result does not fit in one frame of the worker protocol (see [`crate::wire`]).
    TooLarge(String),
    /// The worker ran into a cap of its sandbox (memory, threads, CPU time) and was ended ([`afx_sandbox`]).
    Sandbox(String),
}

impl FailureKind {
    /// Crashes and timeouts may be the machine's fault and are retried once on a fresh worker; the others are
    /// deterministic.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FailureKind::Crashed { .. } | FailureKind::TimedOut { .. } | FailureKind::Protocol(_))
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Crashed { signal: Some(s), .. } => {
                write!(f, "worker crashed with signal {s} ({})", signal_name(*s))
            }
            FailureKind::Crashed { code: Some(c), .. } => write!(f, "worker exited with code {c}"),
            FailureKind::Crashed { .. } => write!(f, "worker died"),
            FailureKind::TimedOut { after } => write!(f, "timed out after {:.1} s; worker killed", after.as_secs_f64()),
            FailureKind::NonFinite(m) => write!(f, "non-finite output: {m}"),
            FailureKind::Plugin(m) => write!(f, "{m}"),
            FailureKind::Protocol(m) => write!(f, "worker protocol error: {m}"),
            FailureKind::TooLarge(m) => write!(f, "{m}"),
            FailureKind::Sandbox(m) => write!(f, "sandbox: {m}"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// One failed batch item: which chain, at which parameters, why, and what the worker printed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ItemError {
    pub chain: String,
    pub theta: Vec<f32>,
    pub kind: FailureKind,
    /// The last lines the worker wrote to stderr (process isolation only).
    pub stderr: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.theta.is_empty() {
            // A task, or a render with plain values: there is no θ to show.
            write!(f, "chain {}: {}", self.chain, self.kind)?;
        } else {
            let theta: Vec<String> = self.theta.iter().map(|t| format!("{t:.4}")).collect();
            write!(f, "chain {} at θ = [{}]: {}", self.chain, theta.join(", "), self.kind)?;
        }
        if !self.stderr.trim().is_empty() {
            write!(f, "\nworker stderr:\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// The seeds of the `n` items of a batch seeded with `seed`: [`item_seed`] of each index.
pub fn item_seeds(seed: u64, n: usize) -> Vec<u64> {
    (0..n).map(|i| item_seed(seed, i)).collect()
}

/// The seed of item `index` of a batch seeded with `seed`: independent of how items are spread over workers.
pub fn item_seed(seed: u64, index: usize) -> u64 {
    // SplitMix64's finaliser: nearby (seed, index) pairs give unrelated streams.
    let mut z = seed ^ (index as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
