use std::path::PathBuf;

use afx_core::FileError;

use crate::collect::CollectError;

/// Why a proxy could not be trained, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Data(#[from] CollectError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file (of the proxy's run folder: config, checkpoint, metrics, report) could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Config(String),
    #[error("{proxy} is a proxy of chain {proxy_chain:?} ({proxy_params}), not of chain {chain:?} ({chain_params})")]
    WrongChain { proxy: PathBuf, proxy_chain: String, proxy_params: String, chain: String, chain_params: String },
    #[error("{path} holds no proxy checkpoint (train one with `afx train-proxy --out {path}`)")]
    NoCheckpoint { path: PathBuf },
    #[error("{path} already holds a proxy run; resume it with --resume or choose another folder")]
    RunExists { path: PathBuf },
}

impl ProxyError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ProxyError {
        let path = path.into();
        move |source| ProxyError::File(FileError::Io { path, source })
    }
}
