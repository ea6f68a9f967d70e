//! Why a match could not run: each error names the flag, file or run involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error("{0}")]
    Config(String),
    /// The input and the target (or reference) cannot be compared; the message names both files' shapes.
    #[error("{0}")]
    Mismatch(String),
    /// The chain could not render the input at the start: a rate or channel count it cannot take, or a plugin
    /// that crashed or hung.
    #[error("the chain cannot render the input: {0}")]
    Start(Box<afx_spsa::ItemError>),
    #[error(transparent)]
    Train(Box<afx_trainer::TrainError>),
    #[error(transparent)]
    Plot(#[from] afx_report::PlotError),
    #[error("loss: {0}")]
    Loss(#[from] candle_core::Error),
    #[error(transparent)]
    Chain(#[from] afx_host::ChainError),
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl From<afx_trainer::TrainError> for MatchError {
    fn from(e: afx_trainer::TrainError) -> MatchError {
        MatchError::Train(Box::new(e))
    }
}
