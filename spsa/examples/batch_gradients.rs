//! Renders a batch through a chain and estimates its gradients with the pool: SPSA and finite differences.
//!
//! ```text
//! cargo run -p afx-spsa --example batch_gradients -- DIR --chain NAME [--format lv2|clap|vst3]
//!     [--config plugins.toml] [--workers N] [--k K] [--epsilon E] [--seed S] [--fd-step H]
//! ```
//!
//! `DIR` holds the batch: `x0.wav`, `x1.wav`, ... (the inputs), `g0.wav`, ... (∂L/∂y of each item, shaped as its
//! input) and `theta.json` (one row of normalised parameters per item). The example writes `y0.wav`, ... (the
//! renders), `spsa.json` and `fd.json` (one gradient row per item) into `DIR`, and prints failed items. The
//! Python module's tests use it as the Rust side of their comparisons.
//!
//! The program is also its own worker process (`batch_gradients worker ...`), the way the `afx` CLI is: a pool
//! starts workers from a program that calls [`afx_spsa::worker::main_with_args`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use afx_host::Audio;
use afx_spsa::{Isolation, Pool, PoolConfig, WorkerCommand, WorkerSpec, item_seeds};

struct Args {
    dir: PathBuf,
    spec: WorkerSpec,
    workers: Option<usize>,
    k: u32,
    epsilon: f32,
    seed: u64,
    fd_step: f32,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let dir = args.next().ok_or("give the batch folder first")?.into();
    let mut parsed =
        Args { dir, spec: WorkerSpec::new(None, ""), workers: None, k: 1, epsilon: 0.01, seed: 0, fd_step: 0.01 };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--chain" => parsed.spec.chain = value,
            "--format" => parsed.spec.format = Some(value.parse()?),
            "--config" => parsed.spec.config = Some(value.into()),
            "--workers" => parsed.workers = Some(number(&value)? as usize),
            "--k" => parsed.k = number(&value)? as u32,
            "--epsilon" => parsed.epsilon = number(&value)? as f32,
            "--seed" => parsed.seed = value.parse().map_err(|_| format!("--seed: {value:?} is not a whole number"))?,
            "--fd-step" => parsed.fd_step = number(&value)? as f32,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if parsed.spec.chain.is_empty() {
        return Err("--chain is required".into());
    }
    Ok(parsed)
}

/// `DIR/{prefix}0.wav`, `DIR/{prefix}1.wav`, ... up to the first that does not exist.
fn read_items(dir: &Path, prefix: &str) -> Result<Vec<Arc<Audio>>, String> {
    let mut items = vec![];
    loop {
        let path = dir.join(format!("{prefix}{}.wav", items.len()));
        if !path.exists() {
            return Ok(items);
        }
        items.push(Arc::new(Audio::read_wav(&path).map_err(|e| e.to_string())?));
    }
}

fn run(args: Args) -> Result<(), String> {
    let inputs = read_items(&args.dir, "x")?;
    let grads = read_items(&args.dir, "g")?;
    let theta_file = args.dir.join("theta.json");
    let text = std::fs::read_to_string(&theta_file).map_err(|e| format!("{}: {e}", theta_file.display()))?;
    let thetas: Vec<Vec<f32>> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", theta_file.display()))?;
    if inputs.is_empty() || inputs.len() != grads.len() || inputs.len() != thetas.len() {
        return Err(format!("{} inputs, {} gradients and {} θ rows", inputs.len(), grads.len(), thetas.len()));
    }
    let command = WorkerCommand::current_exe("worker").map_err(|e| e.to_string())?;
    let mut config = PoolConfig::new(args.spec, Isolation::Process(command));
    if let Some(n) = args.workers {
        config.workers = n;
    }
    let mut pool = Pool::new(config).map_err(|e| e.to_string())?;

    let report = |what: &str, i: usize, e: &afx_spsa::ItemError| eprintln!("{what} item {i} failed: {e}");
    for (i, result) in pool.render_batch(&inputs, &thetas).iter().enumerate() {
        match result {
            Ok(y) => y.write_wav(&args.dir.join(format!("y{i}.wav"))).map_err(|e| e.to_string())?,
            Err(e) => report("render", i, e),
        }
    }
    let gradients = [
        (
            "spsa.json",
            pool.spsa_batch(&inputs, &thetas, &grads, args.epsilon, args.k, &item_seeds(args.seed, inputs.len())),
        ),
        ("fd.json", pool.finite_difference_batch(&inputs, &thetas, &grads, args.fd_step)),
    ];
    for (file, results) in gradients {
        // A failed item's row is null.
        let rows: Vec<Option<Vec<f32>>> =
            results.into_iter().enumerate().map(|(i, r)| r.inspect_err(|e| report(file, i, e)).ok()).collect();
        let text = serde_json::to_string(&rows).expect("gradients serialise");
        std::fs::write(args.dir.join(file), text).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("worker") {
        return afx_spsa::worker::main_with_args(args.skip(1), afx_spsa::task::no_tasks);
    }
    match parse(args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batch_gradients: {e}");
            ExitCode::FAILURE
        }
    }
}
