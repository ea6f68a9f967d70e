//! The model bench's errors.

use std::path::PathBuf;

use afx_trainer::TrainError;

/// Why `afx bench model` failed: a step of the trainer's or the proxy's code, or a child (or the script) that did
/// not run or report.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("bench: {0}")]
    Bench(String),
}

/// An I/O error on `path`, as the trainer reports one.
pub(super) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::File(afx_core::FileError::Io { path, source })
}
