//! `afx train`: train an encoder/controller against a real plugin chain on a corpus (self-supervised pairs) or on
//! a folder of the user's raw/processed pairs, or resume a run.

use std::path::{Path, PathBuf};

use afx_datasets::{Corpus, Split};
use afx_spsa::Pool;
use afx_trainer::ChainInfo;
use afx_trainer::method::GradKind;
use afx_trainer::pairs::folder::{FolderOptions, PairFolder, TOLERANCE_S};
use afx_trainer::pairs::moving::MovingPairs;
use afx_trainer::train::{self, Data, RunConfig, TrainConfig, TrainOptions};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::override_with;

#[derive(clap::Args)]
pub struct Args {
    /// A chain or plugin named in plugins.toml, or any installed plugin's id (all its continuous parameters are
    /// then trained over their full ranges) [with --resume: the run's]
    #[arg(long)]
    chain: Option<String>,
    /// Corpus folder (see `afx dataset`): self-supervised pairs rendered through the chain at random parameters
    #[arg(long, required_unless_present = "pairs", conflicts_with = "pairs")]
    data: Option<PathBuf>,
    /// A folder of your own pairs instead: raw/NAME.wav and processed/NAME.wav (the same recording before and
    /// after the processing to learn; any rate, length and channels, matched by name)
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// With --pairs: shift processed files that are offset from their raw files by more than 2 ms back into line
    /// (cross-correlation) and crop each such pair to its overlap, instead of refusing them
    #[arg(long, requires = "pairs")]
    align: bool,
    /// With --pairs: learn one fixed style (raw → parameters) with no style reference; `afx infer` on the run
    /// then takes no --reference
    #[arg(long, requires = "pairs")]
    no_reference: bool,
    /// With --pairs: pairs held out for validation [default: about 20 %, at least 1; with --resume: the run's]
    #[arg(long, requires = "pairs")]
    val_pairs: Option<usize>,
    /// Gradient method through the plugins: spsa, fd (central finite differences, 2P renders per item: slow, a
    /// true baseline), exact (afx's test effect only: its true gradient), np-fh (real forward, proxy backward),
    /// np-hh (proxy in training, real chain at validation and inference), proxy (as np-hh; DeepAFx-ST's NP)
    /// [default: spsa, or the run's with --resume]
    #[arg(long)]
    grad: Option<GradKind>,
    /// Proxy folder written by `afx train-proxy` (for np-fh, np-hh and proxy)
    #[arg(long)]
    proxy: Option<PathBuf>,
    #[command(flatten)]
    run: super::RunArgs,
    /// SPSA perturbation size ε (normalised parameter units)
    #[arg(long)]
    epsilon: Option<f32>,
    /// SPSA perturbations K per item
    #[arg(long)]
    perturbations: Option<u32>,
    /// Central-difference step h of --grad fd (normalised parameter units)
    #[arg(long)]
    fd_step: Option<f32>,
    /// Seconds per half of a training pair
    #[arg(long)]
    clip_seconds: Option<f64>,
    /// Parameters that move: the controller predicts one row of parameters every N frames (at the training rate,
    /// 22.05 kHz; DeepAFx: 1024), rendered as automation, trained on clips afx renders along hidden random
    /// trajectories from --data, or on --pairs (the processed clip is the model's reference either way) [with
    /// --resume: the run's]
    #[arg(long, value_name = "N")]
    automation_hop: Option<usize>,
    /// With --automation-hop: predict one set of parameters per clip, held for all its rows: the fixed-parameter
    /// baseline on the same pairs
    #[arg(long, requires = "automation_hop")]
    fixed_parameters: bool,
    /// With --automation-hop: how SPSA scores each row's perturbation: whole, causal or window:W (see the README's
    /// "Gradients of trajectories") [default: window:1]
    #[arg(long)]
    scoring: Option<afx_spsa::estimator::Scoring>,
    #[command(flatten)]
    compute: super::ComputeArgs,
    /// Seconds a worker may take to load the chain, and one render, before it is killed [default: 30 to load,
    /// 60 per render]
    #[arg(long)]
    timeout: Option<f64>,
}

/// The training set-up shared by `afx train` and `afx bench train`.
pub struct Setup {
    pub chain: ChainInfo,
    pub pool: Pool,
}

/// Starts a pool of worker processes hosting `name` (a chain or plugin in plugins.toml, or an installed plugin):
/// `workers` of them (default one per core), each render (or a task's render) killed after `timeout` seconds
/// (default: the pool's). The chain's description comes from the first worker: this process never loads a
/// plugin, so a plugin that crashes or hangs while loading fails the pool's start with a clear error.
pub fn setup(
    name: &str,
    config_path: Option<&Path>,
    workers: Option<usize>,
    timeout: Option<f64>,
) -> anyhow::Result<Setup> {
    let pool = super::start_pool(&super::PoolRequest {
        chain: name,
        config: config_path,
        workers,
        timeout,
        ..Default::default()
    })?;
    if pool.num_params() == 0 {
        bail!("{name} has no continuous parameter to train");
    }
    Ok(Setup { chain: ChainInfo::from_chain(pool.chain()), pool })
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    let device = afx_trainer::device(&args.compute.device)?;
    let config_path = super::config_path(config);
    let previous: Option<RunConfig> = if args.run.resume {
        let path = args.run.out.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--resume: {} is not a run folder (no config.json)", args.run.out.display()))?;
        Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)
    } else {
        None
    };
    let name = match (&args.chain, &previous) {
        (Some(name), _) => name.clone(),
        (None, Some(run)) => run.chain.name.clone(),
        (None, None) => bail!("--chain is required (a chain or plugin from plugins.toml, or an installed plugin's id)"),
    };
    let mut train_config = previous.as_ref().map(|r| r.config.clone()).unwrap_or_default();
    apply(&args, &mut train_config);
    train_config.validate()?;
    if let Some(run) = &previous
        && args.pairs.is_some() != run.config.val_pairs.is_some()
    {
        bail!(
            "--resume: the run in {} was trained on {}; resume it with {}",
            args.run.out.display(),
            if run.config.val_pairs.is_some() { "a pair folder" } else { "a corpus" },
            if run.config.val_pairs.is_some() { "--pairs DIR" } else { "--data DIR" }
        );
    }
    // Every input is read and checked before anything is written to --out.
    let sources = match (&args.data, &args.pairs) {
        (Some(data), _) => {
            let rate = train_config.sample_rate;
            let train_set = Corpus::open(data, Split::Train, rate)?;
            let val_set = Corpus::open(data, Split::Val, rate)?;
            for skipped in train_set.skipped().iter().chain(val_set.skipped()) {
                eprintln!("skipped {skipped}");
            }
            tracing::info!(train = train_set.len(), val = val_set.len(), "corpus");
            Sources::Corpus(Box::new(train_set), Box::new(val_set))
        }
        (None, Some(dir)) => {
            let folder = load_pairs(dir, &args, &mut train_config)?;
            Sources::Pairs(Box::new(folder))
        }
        (None, None) => bail!("give --data CORPUS or --pairs DIR"),
    };
    let Setup { chain, mut pool } = setup(&name, config_path.as_deref(), args.compute.workers, args.timeout)?;
    tracing::info!(chain = %chain.describe(), "training");

    let bar = ProgressBar::new(train_config.steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let renders_per_item = train_config.grad.renders_per_item(chain.num_params(), train_config.spsa.perturbations);
    let progress = bar.clone();
    let on_step = Box::new(move |r: &afx_trainer::metrics::StepRecord| {
        progress.set_position(r.step);
        let renders = (r.ok + r.failed) as f64 * renders_per_item as f64 / r.timing.total_s.max(1e-9);
        progress.set_message(format!("loss {:.3}  {:.0} renders/s  failed {}", r.loss, renders, r.failed));
    });
    let progress = bar.clone();
    let on_validation = Box::new(move |v: &afx_trainer::metrics::ValidationRecord| {
        let m = v.mrstft;
        if m.trained.is_nan() {
            progress.println(format!("step {:>5}  validation: no score, all {} items failed", v.step, v.failed));
            return;
        }
        progress.println(format!(
            "step {:>5}  validation MRSTFT: trained {:.3}  input {:.3}  default {:.3}  random {:.3}  ({} items, {} failed)",
            v.step, m.trained, m.input, m.default, m.random, v.items, v.failed
        ));
    });
    let options = TrainOptions { device, on_step: Some(on_step), on_validation: Some(on_validation), stop_after: None };
    let (folder_train, folder_val);
    let (moving_train, moving_val);
    let data = match &sources {
        Sources::Corpus(train_set, val_set) => match train_config.automation_hop {
            None => Data { train: &**train_set, validation: &**val_set },
            Some(hop) => {
                moving_train = MovingPairs { source: &**train_set, hop };
                moving_val = MovingPairs { source: &**val_set, hop };
                Data { train: &moving_train, validation: &moving_val }
            }
        },
        Sources::Pairs(folder) => {
            (folder_train, folder_val) = (folder.training(), folder.validation());
            Data { train: &folder_train, validation: &folder_val }
        }
    };
    let summary = if args.run.resume {
        train::resume_with(&args.run.out, Some(&train_config), &chain, &mut pool, data, options)?
    } else {
        train::train(&args.run.out, &train_config, &chain, &mut pool, data, options)?
    };
    bar.finish_and_clear();
    println!("{} steps, {:.2} s/step, {} failed items", summary.steps, summary.mean_step_s, summary.failed_items);
    if let Some(v) = summary.validation {
        let m = v.mrstft;
        println!(
            "validation MRSTFT: trained {:.3}, input {:.3} ({:+.0}%), default {:.3}, random {:.3}",
            m.trained,
            m.input,
            100.0 * (m.trained / m.input - 1.0),
            m.default,
            m.random
        );
    }
    println!("run: {} (report.md, metrics.jsonl, loss.png, checkpoints/)", args.run.out.display());
    Ok(())
}

/// The training data: a corpus's two splits or a pair folder.
enum Sources {
    Corpus(Box<Corpus>, Box<Corpus>),
    Pairs(Box<PairFolder>),
}

/// Loads, checks and aligns the pair folder `dir` (the run's --val-pairs and --no-reference on resume), records
/// its settings in `config`, and prints every pair's offset and the held-out pairs.
fn load_pairs(dir: &Path, args: &Args, config: &mut TrainConfig) -> anyhow::Result<PairFolder> {
    if args.no_reference {
        config.no_reference = true;
    }
    let options = FolderOptions {
        sample_rate: config.sample_rate,
        frames: config.frames(),
        align: args.align,
        reference: !config.no_reference,
        val_pairs: args.val_pairs.or(config.val_pairs),
        seed: config.seed,
    };
    let folder = PairFolder::load(dir, &options)?;
    let pairs = folder.pairs();
    config.val_pairs = Some(pairs.iter().filter(|p| p.held_out).count());
    for p in pairs {
        let what = if p.shifted {
            "aligned"
        } else if p.offset_frames == 0 {
            continue;
        } else {
            "within tolerance"
        };
        println!("{what} {}: {}", p.name, p.describe_offset());
    }
    let within = pairs.iter().filter(|p| p.offset_frames == 0).count();
    if within > 0 {
        println!("{within} pair(s) offset by 0 samples");
    }
    let held: Vec<&str> = pairs.iter().filter(|p| p.held_out).map(|p| p.name.as_str()).collect();
    println!(
        "{} pairs: {} for training, held out for validation: {} (offsets within {:.0} ms kept as they are; \
         every offset in pairs.json)",
        pairs.len(),
        pairs.len() - held.len(),
        held.join(", "),
        TOLERANCE_S * 1000.0
    );
    Ok(folder)
}

/// Command-line values over the defaults (or, on resume, over the run's own config).
fn apply(args: &Args, c: &mut TrainConfig) {
    override_with(&mut c.grad, args.grad);
    if let Some(p) = &args.proxy {
        // Absolute, so that --resume from another folder finds it.
        c.proxy = Some(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    }
    override_with(&mut c.steps, args.run.steps);
    if args.run.minutes.is_some() {
        c.minutes = args.run.minutes;
    }
    override_with(&mut c.batch, args.run.batch);
    if let Some(v) = args.run.lr {
        c.lr = v;
        c.lr_final = v / 10.0;
    }
    override_with(&mut c.seed, args.run.seed);
    override_with(&mut c.spsa.epsilon, args.epsilon);
    override_with(&mut c.spsa.perturbations, args.perturbations);
    override_with(&mut c.fd_step, args.fd_step);
    override_with(&mut c.clip_seconds, args.clip_seconds);
    if args.automation_hop.is_some() {
        c.automation_hop = args.automation_hop;
        c.fixed_parameters = args.fixed_parameters;
        // Each row against its own and the next row's output: far less noise than whole scoring at a hop
        // longer than the chain's memory (README, "Gradients of trajectories").
        c.spsa.scoring = afx_spsa::estimator::Scoring::Window(1);
    }
    override_with(&mut c.spsa.scoring, args.scoring);
    if let Some(v) = args.run.val_every {
        c.val_every = v;
        c.checkpoint_every = v;
    }
}
