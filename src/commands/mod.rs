//! One module per subcommand.

pub mod bench;
pub mod collect;
pub mod compare;
pub mod dataset;
pub mod eval_grads;
pub mod infer;
pub mod r#match;
pub mod render;
pub mod scan;
pub mod train;
pub mod train_proxy;

use std::path::Path;

use anyhow::Context;

/// The plugins.toml in force: `--config`, else `$AFX_CONFIG`, else `./plugins.toml` if it exists.
pub fn config_path(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    afx_host::Config::path_in_force(explicit)
}

/// `--format lv2|clap|vst3`.
pub fn parse_format(s: &str) -> Result<afx_host::Format, String> {
    s.parse()
}

/// Which chain a command's worker pool hosts, and how.
#[derive(Default)]
pub struct PoolRequest<'a> {
    /// A chain or plugin in plugins.toml, an installed plugin's id or name, or a plugin file.
    pub chain: &'a str,
    pub config: Option<&'a Path>,
    /// Narrows an installed plugin's name to one format.
    pub format: Option<afx_host::Format>,
    /// Worker processes [default: one per core].
    pub workers: Option<usize>,
    /// Seconds a worker may take to load the chain, and one render (or a task's render) before its worker is
    /// killed [default: the pool's].
    pub timeout: Option<f64>,
    /// Frames per process call [default: the host's].
    pub block_size: Option<usize>,
}

/// Starts worker processes hosting a chain. This process never loads a plugin: the chain's description comes
/// from the first worker's hello, so a plugin that crashes or hangs while loading fails here with a clear error
/// (the signal or the time-out and the worker's stderr), never with this process.
pub fn start_pool(request: &PoolRequest<'_>) -> anyhow::Result<afx_spsa::Pool> {
    use afx_spsa::{Isolation, Pool, PoolConfig, WorkerCommand};
    let mut config = PoolConfig::new(worker_spec(request)?, Isolation::Process(WorkerCommand::current_exe("worker")?));
    if let Some(n) = request.workers {
        config.workers = n;
    }
    if let Some(limit) = time_limit(request.timeout)? {
        config.job_timeout = limit;
        config.start_timeout = limit;
    }
    Ok(Pool::new(config)?)
}

/// What a worker of `request` hosts: the chain, its plugins found in a fresh scan's catalogue (see
/// [`catalogue_file`]) so that the worker loads only their files, and the render settings. Every command that
/// starts workers (benches included) builds their spec here.
pub fn worker_spec(request: &PoolRequest<'_>) -> anyhow::Result<afx_spsa::WorkerSpec> {
    // Checked here so a bad plugins.toml or time limit is named before anything is scanned or started.
    request.config.map(afx_host::Config::load).transpose()?;
    let limit = time_limit(request.timeout)?;
    let mut spec = afx_spsa::WorkerSpec::new(request.config.map(Path::to_path_buf), request.chain);
    spec.format = request.format;
    spec.catalogue = Some(catalogue_file(limit)?);
    if let Some(block_size) = request.block_size {
        spec.block_size = block_size;
    }
    Ok(spec)
}

/// Catalogue files this process wrote for its workers; removed by [`remove_catalogues`] when it ends.
static CATALOGUES: std::sync::Mutex<Vec<tempfile::TempPath>> = std::sync::Mutex::new(Vec::new());

/// Scans the installed plugins (each file in a child process, unchanged files from the scan cache, see
/// `afx scan`) and writes the catalogue for worker processes, which then load only their own plugins' files.
/// `timeout`: the time each file may take to be described [default: the scanner's].
fn catalogue_file(timeout: Option<std::time::Duration>) -> anyhow::Result<std::path::PathBuf> {
    let mut scanner = scan::scanner()?;
    if let Some(limit) = timeout {
        scanner = scanner.timeout(limit);
    }
    let catalogue = scanner.scan();
    let file = tempfile::Builder::new().prefix("afx-catalogue-").suffix(".json").tempfile()?.into_temp_path();
    catalogue.save(&file).with_context(|| format!("writing the plugin catalogue {}", file.display()))?;
    let path = file.to_path_buf();
    CATALOGUES.lock().expect("catalogue list").push(file);
    Ok(path)
}

/// Removes the catalogue files of [`start_pool`]: call when the command is done (its workers are gone).
pub fn remove_catalogues() {
    CATALOGUES.lock().expect("catalogue list").clear();
}

/// `--timeout` seconds as a duration: a positive, finite number, or an error naming the flag.
fn time_limit(seconds: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    let Some(seconds) = seconds else { return Ok(None) };
    let limit = std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|t| !t.is_zero())
        .with_context(|| format!("--timeout {seconds}: give a positive number of seconds"))?;
    Ok(Some(limit))
}
