//! Evaluation: how good each way of getting a gradient through a black-box plugin chain is, and which
//! training method wins. Everything here calls the trainer's own gradient methods and training loop, so what
//! is evaluated is what trains; nothing in the trainer calls back into this crate.
//!
//! - [`grads`] (`afx eval-grads`): per estimator (SPSA over K and ε, finite differences, the proxy methods,
//!   the test effect's exact gradient) its agreement with a reference gradient on examples drawn as training
//!   draws them, its cost in renders and seconds, and whether a small step along it lowers the real loss.
//! - [`compare`] (`afx compare`): every method trained with the same seed, data, model and wall-clock budget,
//!   then scored on the same held-out examples through the real chain (MRSTFT, L1, loudness, parameter error)
//!   beside the corrupt input, default and random parameters, as DeepAFx-ST's table.
//! - [`report`]: the JSON, Markdown and PNG plots each writes, whole or not at all.
//! - [`stats`]: cosine, relative error, sign agreement, quantiles; [`loudness`]: EBU R128 integrated loudness (the
//!   trainer's, re-exported).

pub mod compare;
pub mod grads;
pub mod report;
pub mod stats;

pub use afx_trainer::loudness;

use std::path::PathBuf;

/// Why an evaluation failed; a bad setting names its command-line flag.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error(transparent)]
    Train(Box<afx_trainer::TrainError>),
    #[error(transparent)]
    Plot(#[from] afx_report::PlotError),
    #[error(transparent)]
    Proxy(#[from] Box<afx_proxy::ProxyError>),
    #[error(transparent)]
    Collect(#[from] afx_proxy::collect::CollectError),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("no data: {0}")]
    NoData(String),
    /// A report or a run folder's file could not be read or written.
    #[error(transparent)]
    File(#[from] afx_core::FileError),
}

impl From<afx_trainer::TrainError> for EvalError {
    fn from(e: afx_trainer::TrainError) -> EvalError {
        EvalError::Train(Box::new(e))
    }
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::File(afx_core::FileError::Io { path, source })
    }
}
