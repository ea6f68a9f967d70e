//! `afx bench`: speed of the harness measured against direct loops, side by side in one run.

use afx_bench::render::{default_plugin, render_overhead};
use afx_host::{Format, Host};

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Render throughput of the harness over a direct loop on the format's hosting crate (livi, clack-host, vst3):
    /// same plugin, buffer and block size
    Render(RenderArgs),
    /// Worker pool throughput: isolated vs in-process vs direct renders, SPSA with 1 and 2 workers
    Spsa(SpsaArgs),
    /// Time per training step, split into data, encoder forward, plugin renders, loss, SPSA and backward
    Train(TrainArgs),
    /// `afx collect` throughput through the real chain with 1 and 2 worker processes, side by side
    Collect(CollectArgs),
    /// The network side of training (features, encoder forward, MRSTFT + dL/dy, backward + AdamW; the proxy
    /// TCN's step) in afx and in PyTorch, side by side, at 1 and 2 threads
    Model(ModelArgs),
    /// `afx match` (each method, from the chain's defaults) against a trained controller on the same held-out
    /// pairs: median MRSTFT, time, and the median curve of loss against renders
    Match(MatchArgs),
    /// One child of `bench model` (one workload at the thread count of its environment; JSON on stdout)
    #[command(hide = true)]
    ModelChild(ModelChildArgs),
}

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Steps timed per child process (medians over them), after one warm-up step
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Python interpreter for the PyTorch side [default: $AFX_PYTHON, else python3]; without torch its columns
    /// are skipped
    #[arg(long)]
    python: Option<String>,
    /// Chain whose trained parameters size θ (counted from plugins.toml; afx's own copy when none is found)
    #[arg(long, default_value = "eq_comp")]
    chain: String,
    /// Size of θ instead of counting the chain's parameters (no output gains)
    #[arg(long, conflicts_with = "chain")]
    params: Option<usize>,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
    /// Write the spec, inputs, script and afx's reference weights and values into DIR and keep them (to rerun
    /// or inspect a side by hand) instead of a temporary folder
    #[arg(long, hide = true)]
    keep_files: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct MatchArgs {
    /// Run folder of `afx train` (the controller; its chain is matched through)
    #[arg(long)]
    run: std::path::PathBuf,
    /// Corpus folder: the held-out pairs come from its validation split, drawn as training validates
    #[arg(long)]
    data: std::path::PathBuf,
    /// Held-out pairs
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Renders per match
    #[arg(long, default_value_t = 2000)]
    renders: u64,
    /// Methods to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "spsa,cma-es")]
    methods: Vec<afx_match::Method>,
    /// Folder for bench.json, report.md and curves.png
    #[arg(long)]
    out: std::path::PathBuf,
    /// Plugin worker processes [default: one per core]
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(clap::Args)]
pub struct ModelChildArgs {
    spec: std::path::PathBuf,
    #[arg(long)]
    workload: afx_bench::model::Workload,
}

/// The repository's plugins.toml, built in: `bench model` counts its chain's parameters here when no
/// plugins.toml is in force.
const BUILT_IN_CONFIG: &str = include_str!("../../plugins.toml");

#[derive(clap::Args)]
pub struct CollectArgs {
    /// Chain or plugin to collect from (plugins.toml name or installed plugin id)
    #[arg(long, default_value = "eq_comp")]
    chain: String,
    /// Corpus folder to crop (its training split) [default: 30 s of the render bench's test signal, in memory]
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Examples per timed collection (16 shards: fewer leave a worker idle at the end of each collection)
    #[arg(long, default_value_t = 1024)]
    examples: usize,
    /// Seconds per example
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    #[arg(long, default_value_t = 22_050)]
    sample_rate: u32,
    /// Rounds timed (after one warm-up): each collects once with 1 and once with 2 workers, in alternating order
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Chain or plugin to train against
    #[arg(long, default_value = "eq_comp")]
    chain: String,
    /// Corpus folder
    #[arg(long)]
    data: std::path::PathBuf,
    /// Steps to time (after one warm-up step)
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long)]
    batch: Option<usize>,
    /// Gradient method to time (np-fh, np-hh and proxy need --proxy)
    #[arg(long, default_value = "spsa")]
    grad: afx_trainer::method::GradKind,
    /// Proxy folder written by `afx train-proxy`
    #[arg(long)]
    proxy: Option<std::path::PathBuf>,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SpsaArgs {
    /// Chains or plugins to measure (plugins.toml names or installed plugin ids); a light and a heavy one
    #[arg(long = "chain", default_values_t = ["urn:zamaudio:ZamComp".to_string(), "urn:zamaudio:ZamVerb".to_string()])]
    chains: Vec<String>,
    /// Seconds of audio per render
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Renders (or SPSA items) per batch
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed rounds (after one warm-up round)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// One JSON object on stdout: the first chain's ratios at the top level, every chain under `chains`
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Plugin id or name [default: ZamComp in the chosen format]
    #[arg(long)]
    plugin: Option<String>,
    /// Plugin format to measure
    #[arg(long, value_parser = super::parse_format, default_value = "lv2", conflicts_with = "all_formats")]
    format: Format,
    /// Measure LV2, CLAP and VST3 one after the other (one line each; with --json, an array)
    #[arg(long)]
    all_formats: bool,
    /// Seconds of audio per render (48 kHz mono)
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 512)]
    block_size: usize,
    /// Renders per side
    #[arg(long, default_value_t = 15)]
    repeats: usize,
    /// JSON on stdout: one object, or an array of one per format with --all-formats
    #[arg(long)]
    json: bool,
}

pub fn run(bench: Bench, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    match bench {
        Bench::Spsa(args) => spsa(args, config),
        Bench::Train(args) => train(args, config),
        Bench::Collect(args) => collect(args, config),
        Bench::Model(args) => model(args, config),
        Bench::Match(args) => bench_match(args, config),
        Bench::ModelChild(args) => Ok(afx_bench::model::child_main(&args.spec, args.workload)?),
        Bench::Render(args) => {
            let host = Host::new();
            let formats = if args.all_formats { Format::ALL.to_vec() } else { vec![args.format] };
            let mut results = vec![];
            for format in formats {
                let plugin = args.plugin.as_deref().unwrap_or(default_plugin(format));
                let r = render_overhead(&host, plugin, format, args.seconds, args.block_size, args.repeats)?;
                if !args.json {
                    println!("{}", afx_bench::render::report_line(&r));
                }
                results.push(r);
            }
            if args.json {
                if args.all_formats {
                    println!("{}", serde_json::to_string(&results)?);
                } else {
                    println!("{}", serde_json::to_string(&results[0])?);
                }
            }
            Ok(())
        }
    }
}

fn spsa(args: SpsaArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = super::config_path(config);
    let worker = afx_spsa::WorkerCommand::current_exe("worker")?;
    let mut results = vec![];
    for chain in &args.chains {
        let spec = super::worker_spec(&super::PoolRequest { chain, config: config.as_deref(), ..Default::default() })?;
        let r = afx_bench::spsa::pool_throughput(&spec, &worker, args.seconds, args.batch, args.rounds)?;
        if !args.json {
            println!("{}", afx_bench::spsa::report(&r, args.rounds));
        }
        results.push(r);
    }
    if args.json {
        let json = afx_bench::spsa::json_summary(&results).ok_or_else(|| anyhow::anyhow!("no chain to measure"))?;
        println!("{json}");
    }
    Ok(())
}

fn train(args: TrainArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config_path = super::config_path(config);
    let mut train_config = afx_trainer::train::TrainConfig::default();
    if let Some(b) = args.batch {
        train_config.batch = b;
    }
    train_config.grad = args.grad;
    train_config.proxy = args.proxy.clone();
    train_config.validate()?;
    let corpus = afx_datasets::Corpus::open(&args.data, afx_datasets::Split::Train, train_config.sample_rate)?;
    let super::train::Setup { chain, mut pool } = super::train::setup(&args.chain, config_path.as_deref(), None, None)?;
    let device = afx_trainer::device("cpu")?;
    let r = afx_bench::train::bench_train(&train_config, &chain, &mut pool, &corpus, args.steps, &device)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    print!("{}", afx_bench::train::report(&r, &chain, args.grad));
    Ok(())
}

fn bench_match(args: MatchArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    if args.pairs == 0 {
        anyhow::bail!("--pairs 0: give at least one held-out pair");
    }
    let run: afx_trainer::train::RunConfig = afx_core::RunFolder::new(&args.run)
        .read_config()
        .map_err(|e| anyhow::anyhow!("--run {} is not a run folder: {e}", args.run.display()))?;
    let base = afx_match::MatchConfig { budget: afx_match::Budget::renders(args.renders), ..Default::default() };
    base.validate()?;
    let source = afx_datasets::Corpus::open(&args.data, afx_datasets::Split::Val, run.config.sample_rate)?;
    let config_path = super::config_path(config);
    let mut pool = super::start_pool(&super::PoolRequest {
        chain: &run.chain.name,
        config: config_path.as_deref(),
        workers: args.workers,
        ..Default::default()
    })?;
    let methods = args.methods.clone();
    let mut on_pair = |i: usize, p: &afx_bench::matching::PairScores| {
        let matched: Vec<String> = methods
            .iter()
            .zip(&p.matched)
            .map(|(m, o)| format!("{m} {:.4} ({:.1} s)", o.best_loss, o.seconds))
            .collect();
        eprintln!("pair {:>2}: input {:.4}  controller {:.4}  {}", i + 1, p.input, p.controller, matched.join("  "));
    };
    let report =
        afx_bench::matching::bench(&mut pool, &args.run, &source, args.pairs, &args.methods, &base, &mut on_pair)?;
    afx_bench::matching::write_report(&args.out, &report)?;
    print!("{}", afx_bench::matching::markdown(&report));
    println!("wrote {} (bench.json, report.md, curves.png)", args.out.display());
    Ok(())
}

fn collect(args: CollectArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config_path = super::config_path(config);
    let corpus = match &args.data {
        Some(dir) => afx_datasets::Corpus::open(dir, afx_datasets::Split::Train, args.sample_rate)?,
        None => afx_bench::collect::test_corpus(args.sample_rate)?,
    };
    let spec = super::worker_spec(&super::PoolRequest {
        chain: &args.chain,
        config: config_path.as_deref(),
        ..Default::default()
    })?;
    let worker = afx_spsa::WorkerCommand::current_exe("worker")?;
    let bench =
        afx_bench::collect::BenchConfig { examples: args.examples, seconds: args.seconds, repeats: args.repeats };
    let r = afx_bench::collect::collect_throughput(&corpus, &spec, &worker, &bench)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("{}", afx_bench::collect::report(&r));
    Ok(())
}

fn model(args: ModelArgs, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    use afx_bench::model::{ModelBenchOptions, ParamShape, bench_model};
    let params = match args.params {
        Some(n) => ParamShape::plain(n, "--params"),
        None => {
            let config = match super::config_path(config) {
                Some(path) => afx_host::Config::load(&path)?,
                None => afx_host::Config::parse(BUILT_IN_CONFIG, std::path::Path::new("afx's built-in plugins.toml"))?,
            };
            ParamShape::from_config(&config, &args.chain).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no chain or plugin {:?} with trained parameters (or pass --params N)",
                    config.path.display(),
                    args.chain
                )
            })?
        }
    };
    let python = args.python.or_else(|| std::env::var("AFX_PYTHON").ok()).unwrap_or_else(|| "python3".into());
    let temporary = tempfile::tempdir()?;
    let scratch = match &args.keep_files {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.as_path()
        }
        None => temporary.path(),
    };
    let exe = std::env::current_exe()?;
    let options = ModelBenchOptions {
        params,
        steps: args.steps,
        afx: &exe,
        afx_args: &["bench", "model-child"],
        python: &python,
        scratch,
    };
    let r = bench_model(&options)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", r.table());
    }
    Ok(())
}
