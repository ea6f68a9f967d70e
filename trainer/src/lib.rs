//! Self-supervised training of an encoder/controller that drives a REAL plugin chain, and whole-file inference.
//!
//! One training step, as DeepAFx-ST does it but through installed plugins:
//! 1. [`pairs`]: a [`pairs::PairSource`] gives (input_A, reference_B, target_A): self-supervised pairs (a clip of
//!    2·L frames from a [`ClipSource`] rendered through the chain at random θ*, kept for the parameter error), or
//!    a user's raw/processed recordings ([`pairs::PairFolder`], aligned by cross-correlation; θ* unknown).
//! 2. [`model`]: a log-spectrogram front end, a 2-D CNN encoder shared by input and reference, and a controller
//!    MLP whose sigmoid outputs are the chain's normalised parameters θ.
//! 3. [`method`]: a [`method::GradMethod`] returns dL/dθ per item as a value ([`method::spsa`]: real renders,
//!    MRSTFT loss, SPSA vector-Jacobian product from the worker pool; also `fd`, `exact`, `np-fh`, `np-hh`), and
//!    the surrogate Σ θ·stopgrad(g) carries it into the network.
//! 4. [`train`]: the loop, validation against baselines (always the real chain), metrics JSONL, atomic
//!    checkpoints ([`run`]), exact resume, a loss plot and `report.md`.
//! 5. [`infer`]: load a run, predict θ for (input, reference) at the model's rate, render the whole input at
//!    its own rate, and save an [`afx_host::Preset`] that replays bit-identically.
//! 6. [`timing`]: where a step's time goes ([`timing::StepTiming`]); [`plot`]: the loss chart (drawn by
//!    `afx-report`).
//!
//! The data side is the [`pairs::PairSource`] trait; every [`ClipSource`] is one (the corpus implements it;
//! `Vec<Audio>` does for tests), and so are a [`pairs::PairFolder`]'s training and held-out sides.

pub mod chain_info;
mod error;
pub mod frontend;
pub mod infer;
pub mod loudness;
pub mod method;
pub mod metrics;
pub mod model;
pub mod pairs;
pub mod plot;
pub mod resample;
pub mod run;
pub mod source;
pub mod timing;
pub mod train;

pub use chain_info::{ChainInfo, TrainedParam};
pub use error::TrainError;
pub use source::ClipSource;

use candle_core::Device;

/// The compute device for `name` ("cpu" or "cuda"/"cuda:N"). CUDA needs this crate's `cuda` feature; without
/// it the error says how to rebuild rather than silently training on the CPU.
pub fn device(name: &str) -> Result<Device, TrainError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal: usize = match cuda.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| TrainError::Device(format!("{cuda:?}: expected cuda:N")))?,
                None => 0,
            };
            cuda_device(ordinal)
        }
        other => Err(TrainError::Device(format!("unknown device {other:?}: use cpu or cuda"))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device, TrainError> {
    Device::new_cuda(ordinal).map_err(|e| TrainError::Device(format!("cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device, TrainError> {
    Err(TrainError::Device(
        "this afx was built without CUDA support: rebuild with `--features cuda` (needs nvcc) or use --device cpu"
            .into(),
    ))
}
