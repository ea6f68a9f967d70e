//! Starting workers for a chain named the way a user names it (a plugins.toml entry, an installed plugin's id
//! or name, a plugin file): what the `afx` CLI and the Python module both do before [`Pool::new`].
//!
//! The installed plugins are scanned first (each file in a child process, unchanged files from the scan cache:
//! see [`afx_host::scan`]) and their catalogue is written to a file the workers read, so that a worker loads
//! only its own chain's plugin files.
//!
//! [`Pool::new`]: crate::Pool::new

use std::path::{Path, PathBuf};
use std::time::Duration;

use afx_host::scan::Scanner;
use afx_host::{Config, ConfigError, Format};

use crate::pool::PoolConfig;
use crate::worker::WorkerSpec;

/// Why workers could not be described.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("writing the plugin catalogue {path}: {message}")]
    Catalogue { path: PathBuf, message: String },
}

/// What a worker of `chain` hosts: `config` (read and checked here, so a bad plugins.toml is named before
/// anything is scanned or started), `format` to narrow an installed plugin's name, the plugins `scanner` finds
/// (written to a temporary catalogue file, removed when the returned guard drops: keep it while the workers
/// run), and `block_size` frames per process call [default: the host's].
pub fn scanned_spec(
    chain: &str,
    config: Option<&Path>,
    format: Option<Format>,
    block_size: Option<usize>,
    scanner: &Scanner,
) -> Result<(WorkerSpec, tempfile::TempPath), LaunchError> {
    config.map(Config::load).transpose()?;
    let catalogue = scanner.scan();
    let file = tempfile::Builder::new()
        .prefix("afx-catalogue-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| LaunchError::Catalogue { path: std::env::temp_dir(), message: e.to_string() })?
        .into_temp_path();
    catalogue.save(&file).map_err(|e| LaunchError::Catalogue { path: file.to_path_buf(), message: e.to_string() })?;
    let mut spec = WorkerSpec::new(config.map(Path::to_path_buf), chain);
    spec.format = format;
    spec.catalogue = Some(file.to_path_buf());
    if let Some(block_size) = block_size {
        spec.block_size = block_size;
    }
    Ok((spec, file))
}

impl PoolConfig {
    /// `workers` workers [default: one per core], and `timeout` as the limit both for a worker to start and for
    /// one job [default: [`PoolConfig::new`]'s].
    pub fn with_limits(mut self, workers: Option<usize>, timeout: Option<Duration>) -> PoolConfig {
        if let Some(n) = workers {
            self.workers = n;
        }
        if let Some(limit) = timeout {
            self.job_timeout = limit;
            self.start_timeout = limit;
        }
        self
    }
}
