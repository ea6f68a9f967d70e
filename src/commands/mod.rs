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

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The plugins.toml in force: `--config`, else `$AFX_CONFIG`, else `./plugins.toml` if it exists.
pub fn config_path(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    afx_host::Config::path_in_force(explicit)
}

/// A flag's value, where given, over the default (or the resumed run's value): what the `apply` functions of
/// the training commands do field by field.
pub fn override_with<T>(field: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *field = v;
    }
}

/// The flags of a training run that `afx train` and `afx train-proxy` share: where it lives and how long it
/// trains.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Run folder (config.json, metrics.jsonl, checkpoints/, report.md; a controller's run adds loss.png)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from its newest checkpoint
    #[arg(long)]
    pub resume: bool,
    /// Training steps (also the horizon of the learning-rate decay) [with --resume: the run's; more trains it on]
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after this many minutes of training
    #[arg(long, value_name = "MINUTES")]
    pub minutes: Option<f64>,
    /// Examples per training step
    #[arg(long)]
    pub batch: Option<usize>,
    /// Initial learning rate (decays along a cosine: to a tenth in `train`; in `train-proxy` to 1e-4, or to a
    /// tenth when lower)
    #[arg(long, value_name = "RATE")]
    pub lr: Option<f64>,
    /// Seed of everything random in the run (weights, batches, perturbations): the same seed, the same run
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validate (and checkpoint) every this many steps
    #[arg(long, value_name = "STEPS")]
    pub val_every: Option<u64>,
}

/// Where a command that trains runs: its plugin workers and the network's device.
#[derive(clap::Args)]
pub struct ComputeArgs {
    /// Plugin worker processes [default: one per core]
    #[arg(long)]
    pub workers: Option<usize>,
    /// cpu, or cuda (needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `--format lv2|clap|vst3`.
pub fn parse_format(s: &str) -> Result<afx_host::Format, String> {
    s.parse()
}

/// The sandbox flags of this run (`--sandbox`, `--worker-memory`), set once by `main`.
#[derive(Debug, Clone, Copy)]
pub struct SandboxFlags {
    pub enabled: bool,
    pub memory: Option<u64>,
}

static SANDBOX: std::sync::OnceLock<SandboxFlags> = std::sync::OnceLock::new();

/// Sets the run's sandbox flags; with the sandbox off, says so once.
pub fn set_sandbox(flags: SandboxFlags) {
    if !flags.enabled {
        warn_unsandboxed("--sandbox off: plugins run with your rights (files, network, processes)");
    }
    let _ = SANDBOX.set(flags);
}

fn sandbox_flags() -> SandboxFlags {
    *SANDBOX.get_or_init(|| SandboxFlags { enabled: true, memory: None })
}

/// The one warning a run gives about running plugins without a sandbox.
fn warn_unsandboxed(why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| eprintln!("warning: {why}"));
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
    let isolation = Isolation::Process(WorkerCommand::current_exe("worker")?);
    let mut config =
        PoolConfig::new(worker_spec(request)?, isolation).with_limits(request.workers, time_limit(request.timeout)?);
    let flags = sandbox_flags();
    config.sandbox.enabled = flags.enabled;
    config.sandbox.memory = flags.memory;
    if flags.enabled
        && let Some(path) = request.config
    {
        let unsandboxed = afx_host::Config::load(path)?.unsandboxed(request.chain).join(", ");
        if !unsandboxed.is_empty() {
            warn_unsandboxed(&format!(
                "{unsandboxed}: sandbox = false in {}: its workers run with your rights",
                path.display()
            ));
            config.sandbox.enabled = false;
        }
    }
    let pool = Pool::new(config)?;
    if let Some(report) = pool.sandbox().filter(|r| !r.missing.is_empty()) {
        tracing::warn!("the workers' sandbox lacks: {}", report.missing.join("; "));
    }
    Ok(pool)
}

/// What a worker of `request` hosts (see [`afx_spsa::launch::scanned_spec`]): its plugins found by a fresh scan
/// with this program's `describe`, each file given `--timeout` to be described. Every command that starts
/// workers (benches included) builds their spec here.
pub fn worker_spec(request: &PoolRequest<'_>) -> anyhow::Result<afx_spsa::WorkerSpec> {
    // Checked here so a bad time limit is named before anything is scanned or started.
    let limit = time_limit(request.timeout)?;
    let mut scanner = scan::scanner()?;
    if let Some(limit) = limit {
        scanner = scanner.timeout(limit);
    }
    let (spec, catalogue) =
        afx_spsa::launch::scanned_spec(request.chain, request.config, request.format, request.block_size, &scanner)?;
    CATALOGUES.lock().expect("catalogue list").push(catalogue);
    Ok(spec)
}

/// Catalogue files this process wrote for its workers; removed by [`remove_catalogues`] when it ends.
static CATALOGUES: std::sync::Mutex<Vec<tempfile::TempPath>> = std::sync::Mutex::new(Vec::new());

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

/// `--chain` and `--data`: the chain a command drives and the corpus its inputs are cropped from.
#[derive(clap::Args)]
pub struct ChainCorpus {
    /// A chain or plugin named in plugins.toml, or any installed plugin's id
    #[arg(long)]
    pub chain: String,
    /// Corpus folder (see `afx dataset`): the inputs are cropped from its splits
    #[arg(long)]
    pub data: PathBuf,
}
