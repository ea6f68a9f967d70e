//! Gradients of black-box plugin chains: a crash-proof parallel worker pool and the estimators it runs.
//!
//! - [`estimator`]: SPSA (DeepAFx's perturbed double renders) and central finite differences, as
//!   vector-Jacobian products `ĝ ≈ (∂y/∂θ)ᵀ ∂L/∂y`: only P floats per item come back.
//! - [`Pool`]: N workers, each hosting the chain (processes by default, threads for trusted plugins), fed
//!   batches of [`Job`]s (or a lazy stream of them); results in order or as they arrive, per-item
//!   [`ItemError`]s for crashes, hangs and NaN.
//! - [`launch`]: the worker spec of a chain a user names, with a scan's catalogue so workers load only their
//!   plugins' files.
//! - [`Task`]: work a crate above defines and workers run beside their chain (a job named by the task).
//! - [`wire`]: the binary protocol between the pool and worker processes.
//!
//! ```no_run
//! use afx_spsa::estimator::Scoring;
//! use afx_spsa::{Isolation, Job, Pool, PoolConfig, WorkerCommand, WorkerSpec};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = WorkerSpec::new(Some("plugins.toml".into()), "eq_comp");
//! let mut pool = Pool::new(PoolConfig::new(spec, Isolation::Process(WorkerCommand::current_exe("worker")?)))?;
//! # let silence = || std::sync::Arc::new(afx_host::Audio::silence(44_100, 1, 44_100));
//! # let (input, grad) = (silence(), silence());
//! let theta = vec![0.5; pool.num_params()];
//! let (epsilon, perturbations, seed) = (1e-3, 4, afx_spsa::item_seed(7, 0));
//! let jobs = vec![Job::Spsa { input, theta, hop: 0, grad, epsilon, perturbations, seed, scoring: Scoring::Whole }];
//! for result in pool.run(jobs) {
//!     println!("{:?}", result?.into_gradient());
//! }
//! # Ok(()) }
//! ```

mod arena;
pub mod estimator;
mod job;
pub mod launch;
mod pool;
mod render;
pub mod task;
mod watchdog;
pub mod wire;
pub mod worker;

pub use job::{FailureKind, ItemError, Job, JobOutput, item_seed, item_seeds};
pub use pool::{Isolation, PerturbedRenders, Pool, PoolConfig, PoolError, Shared, Trajectories, WorkerCommand};
pub use task::{Renderer, Task, TaskSet};
pub use worker::WorkerSpec;
