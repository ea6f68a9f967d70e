//! The trainer's errors: each names the file, run, chain or parameter involved.

use std::path::PathBuf;

use afx_core::FileError;

/// Why training, resuming or inference failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// A file (of the run folder: config, checkpoint, metrics, report) could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Chain(#[from] afx_host::ChainError),
    #[error(transparent)]
    Pool(#[from] afx_spsa::PoolError),
    #[error(transparent)]
    Preset(#[from] afx_host::PresetError),
    /// A whole-file render failed in its worker (a crash, a hang past the time limit, NaN, a plugin error).
    #[error("rendering: {0}")]
    Render(Box<afx_spsa::ItemError>),
    #[error(transparent)]
    Proxy(Box<afx_proxy::ProxyError>),
    #[error("device: {0}")]
    Device(String),
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error(
        "run {run} was trained for chain {run_chain:?} ({run_params}), not for chain {chain:?} ({chain_params}): \
         use a run of this chain or start a new run"
    )]
    WrongChain { run: PathBuf, run_chain: String, run_params: String, chain: String, chain_params: String },
    #[error("run {run} has no checkpoint to resume from (looked in {run}/checkpoints)")]
    NoCheckpoint { run: PathBuf },
    #[error("run {run} already holds checkpoints: resume it or choose a new folder")]
    RunExists { run: PathBuf },
    #[error(
        "the {what} is {seconds:.3} s ({frames} frames at {rate} Hz) long; the model analyses windows of \
         {window_seconds:.3} s: give at least that much"
    )]
    TooShort { what: &'static str, frames: usize, rate: u32, seconds: f64, window_seconds: f64 },
    /// A pair folder (`--pairs`) that cannot be trained on; the message names the file.
    #[error("--pairs {dir}: {message}")]
    Pairs { dir: PathBuf, message: String },
    #[error("no usable training clip: {0}")]
    NoData(String),
    #[error("every item of {consecutive} batches in a row failed; the last error: {last}")]
    AllFailed { consecutive: usize, last: String },
    #[error("resampling {from} Hz to {to} Hz: {message}")]
    Resample { from: u32, to: u32, message: String },
}

impl From<afx_proxy::ProxyError> for TrainError {
    fn from(e: afx_proxy::ProxyError) -> TrainError {
        TrainError::Proxy(Box::new(e))
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::File(FileError::Io { path, source })
    }
}
