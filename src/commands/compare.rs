//! `afx compare`: every gradient method trained with the same budget, then scored on the same held-out
//! examples through the real chain.

use std::path::{Path, PathBuf};

use afx_datasets::{Corpus, Split};
use afx_eval::compare::{CompareConfig, ProxyBuild, build_proxy, compare};
use afx_trainer::method::GradKind;
use afx_trainer::train::{Data, TrainConfig};
use anyhow::Context;

use super::override_with;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: super::ChainCorpus,
    /// Methods to train: spsa, fd, exact, np-fh, np-hh, proxy
    #[arg(long, value_delimiter = ',', default_values_t = [GradKind::Spsa, GradKind::Fd, GradKind::NpFh, GradKind::NpHh, GradKind::Proxy])]
    methods: Vec<GradKind>,
    /// Training budget of EACH method, in minutes
    #[arg(long)]
    minutes: f64,
    /// Report folder (report.json, report.md, validation_vs_time.png, runs/<method>/)
    #[arg(long)]
    out: PathBuf,
    /// Proxy folder written by `afx train-proxy`; without it, compare collects examples and trains one
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Examples to collect for a proxy built here
    #[arg(long, default_value_t = 4096)]
    proxy_examples: usize,
    /// Training budget of a proxy built here, in minutes
    #[arg(long, default_value_t = 10.0)]
    proxy_minutes: f64,
    /// Held-out examples every method is scored on
    #[arg(long, default_value_t = 32)]
    test_items: usize,
    /// Learning-rate horizon of every run (training stops at the budget first)
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate every this many steps (the points of the plot)
    #[arg(long)]
    val_every: Option<u64>,
    #[command(flatten)]
    compute: super::ComputeArgs,
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    let device = afx_trainer::device(&args.compute.device)?;
    let mut train = TrainConfig { seed: args.seed, ..TrainConfig::default() };
    override_with(&mut train.steps, args.steps);
    override_with(&mut train.batch, args.batch);
    if let Some(v) = args.val_every {
        train.val_every = v;
        train.checkpoint_every = v;
    }
    let mut compare_config = CompareConfig {
        methods: args.methods.clone(),
        minutes: args.minutes,
        train,
        test_items: args.test_items,
        proxy: None,
        proxy_cost: None,
    };
    compare_config.validate()?;
    if let Some(proxy) = args.proxy.as_ref().filter(|p| !p.is_dir()) {
        anyhow::bail!(
            "--proxy {}: no such folder (train one with `afx train-proxy`, or leave --proxy out)",
            proxy.display()
        );
    }
    let rate = compare_config.train.sample_rate;
    let train_set = Corpus::open(&args.source.data, Split::Train, rate).context("--data")?;
    let val_set = Corpus::open(&args.source.data, Split::Val, rate).context("--data")?;
    let config_path = super::config_path(config);
    let super::train::Setup { chain, mut pool } =
        super::train::setup(&args.source.chain, config_path.as_deref(), args.compute.workers, None)?;
    let needs_proxy = args.methods.iter().any(|m| m.needs_proxy());
    match (&args.proxy, needs_proxy) {
        (Some(p), true) => compare_config.proxy = Some(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        (None, true) => {
            let host_chain = pool.chain().clone();
            let build = ProxyBuild {
                examples: args.proxy_examples,
                minutes: args.proxy_minutes,
                seed: args.seed,
                sample_rate: rate,
                seconds: 1.5,
            };
            let cost =
                build_proxy(&args.out.join("proxy"), &host_chain, &mut pool, &train_set, &build, &device, |w| {
                    eprintln!("compare: {w}")
                })?;
            compare_config.proxy = Some(std::fs::canonicalize(&cost.path).unwrap_or_else(|_| cost.path.clone()));
            compare_config.proxy_cost = Some(cost);
        }
        _ => {}
    }
    let data = Data { train: &train_set, validation: &val_set };
    let report = compare(&args.out, &chain, &mut pool, data, &compare_config, &device, |w| eprintln!("compare: {w}"))?;
    afx_eval::report::write_compare_report(&args.out, &report)?;
    print!("{}", afx_eval::compare::markdown(&report));
    eprintln!("report: {}", args.out.display());
    Ok(())
}
