//! `afx collect`: (input, parameters, output) examples from a real chain, as shards, for training a proxy.

use std::path::PathBuf;

use afx_datasets::{Corpus, Split};

use afx_proxy::collect::{self, CollectConfig, ShardSlice, Sources, Uniform};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: super::ChainCorpus,
    /// Dataset folder: shard-*.safetensors and manifest.json
    #[arg(long)]
    out: PathBuf,
    /// Examples in the whole collection (all shards of all machines)
    #[arg(long)]
    examples: usize,
    /// This machine's part: shards j with j mod N == I; env/N takes I from a Slurm array job
    /// ($SLURM_ARRAY_TASK_ID, counted from $SLURM_ARRAY_TASK_MIN) or a Kubernetes Indexed Job
    /// ($JOB_COMPLETION_INDEX)
    #[arg(long, default_value = "0/1")]
    shard: ShardSlice,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Examples per shard file
    #[arg(long, default_value_t = 64)]
    shard_size: usize,
    /// Seconds per example
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    #[arg(long, default_value_t = 22_050)]
    sample_rate: u32,
    /// Plugin worker processes [default: one per core]
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds one render may take before its worker is killed; an example that hangs twice is excluded
    /// [default: 60]
    #[arg(long)]
    timeout: Option<f64>,
}

pub fn run(args: Args, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config_path = super::config_path(config);
    let corpus = Corpus::open(&args.source.data, Split::Train, args.sample_rate)?;
    for skipped in corpus.skipped() {
        eprintln!("skipped {skipped}");
    }
    let super::train::Setup { mut pool, .. } =
        super::train::setup(&args.source.chain, config_path.as_deref(), args.workers, args.timeout)?;
    let chain = pool.chain().clone();
    let config = CollectConfig {
        examples: args.examples,
        shard_size: args.shard_size,
        seed: args.seed,
        sample_rate: args.sample_rate,
        frames: (args.seconds * f64::from(args.sample_rate)).round() as usize,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} examples {per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let sources = Sources { chain: &chain, pool: &mut pool, corpus: &corpus, sampler: &Uniform };
    let written = collect::collect(&args.out, sources, &config, args.shard, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let manifest = collect::write_manifest(&args.out)?;
    println!(
        "wrote {written} examples; {} holds {} shards, {} examples of chain {}",
        args.out.display(),
        manifest.shards.len(),
        manifest.total_examples,
        manifest.chain
    );
    Ok(())
}
