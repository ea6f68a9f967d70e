//! [`FileError`]: why a named file could not be read, parsed or written. Every crate's error type that deals
//! with files carries one, so each message names the file the same way: `{path}: {reason}`.

use std::path::{Path, PathBuf};

/// Why a file could not be used. The messages name the file, as `{path}: {reason}`.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file that does not parse, serialise or has another format version; or an atomic write that failed.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

impl FileError {
    /// For `map_err`: the I/O error of reading or writing `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.into();
        move |source| FileError::Io { path, source }
    }

    /// A file that exists but cannot be used: `message` says why.
    pub fn format(path: &Path, message: impl ToString) -> FileError {
        FileError::Format { path: path.to_path_buf(), message: message.to_string() }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. } | FileError::Format { path, .. } => path,
        }
    }
}
