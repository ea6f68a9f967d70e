//! Why a chart could not be drawn.

use std::path::PathBuf;

/// A chart that could not be drawn or written: the PNG's path and plotters' (or the font's) reason.
#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// A plotters error as the message of a [`PlotError`].
pub(crate) fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}
