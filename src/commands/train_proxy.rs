//! `afx train-proxy`: train a neural proxy of a chain on a collection made by `afx collect`, or resume one.

use std::path::PathBuf;

use afx_proxy::collect;
use afx_proxy::train::{self, ProxyRun, ProxyTrainConfig, ProxyTrainOptions};
use afx_proxy::{ProxyMeta, quality::Quality};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::override_with;

#[derive(clap::Args)]
pub struct Args {
    /// Dataset folder written by `afx collect` (its last shards are held out for validation)
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    run: super::RunArgs,
    /// Frames per training patch (a receptive field of context precedes it)
    #[arg(long)]
    patch: Option<usize>,
    /// TCN channels
    #[arg(long)]
    channels: Option<usize>,
    /// BatchNorm in the TCN blocks (DeepAFx-ST's; off by default)
    #[arg(long)]
    batch_norm: bool,
    /// Weight of the time-domain L1 term beside the MRSTFT
    #[arg(long)]
    l1_weight: Option<f64>,
    /// cpu, or cuda (needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: Args, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let device = afx_trainer::device(&args.device)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let progress = bar.clone();
    let on_step = Box::new(move |step: u64, loss: f64| {
        progress.set_position(step);
        progress.set_message(format!("loss {loss:.3}"));
    });
    let progress = bar.clone();
    let on_validation = Box::new(move |q: &Quality| {
        progress.println(format!(
            "step {:>5}  held-out MRSTFT: proxy {:.3}  identity {:.3} ({:.2}x)  SI-SDR: proxy {:.1} dB  identity {:.1} dB",
            q.step,
            q.mrstft,
            q.identity_mrstft,
            q.improvement(),
            q.si_sdr,
            q.identity_si_sdr
        ));
    });
    let options =
        ProxyTrainOptions { device, on_step: Some(on_step), on_validation: Some(on_validation), stop_after: None };
    let summary = if args.run.resume {
        if args.data.is_some() {
            bail!("--resume continues on the run's own dataset; leave out --data");
        }
        let run: ProxyRun =
            serde_json::from_str(&std::fs::read_to_string(args.run.out.join("config.json")).with_context(|| {
                format!("--resume: {} is not a proxy run (no config.json)", args.run.out.display())
            })?)?;
        bar.set_length(run.config.steps);
        train::resume_proxy(&args.run.out, options)?
    } else {
        let Some(data) = &args.data else { bail!("--data is required (a folder written by `afx collect`)") };
        let manifest = collect::scan(data)?;
        let config_path = super::config_path(config);
        // One worker process loads the chain and describes it: this process never runs plugin code.
        let setup = super::train::setup(&manifest.chain, config_path.as_deref(), Some(1), None).with_context(|| {
            format!(
                "{} was collected from chain {:?}, which {} does not resolve",
                data.display(),
                manifest.chain,
                config_path.map_or("(no plugins.toml)".into(), |p| p.display().to_string())
            )
        })?;
        let mut config = ProxyTrainConfig::default();
        apply(&args, &mut config);
        let meta = ProxyMeta {
            chain: manifest.chain.clone(),
            params: ProxyMeta::params_of(setup.pool.chain()),
            sample_rate: manifest.config.sample_rate,
            tcn: config.tcn.clone(),
        };
        bar.set_length(config.steps);
        train::train_proxy(&args.run.out, data, meta, &config, options)?
    };
    bar.finish_and_clear();
    println!("{} steps in {:.1} min, {:.2} s/step", summary.steps, summary.minutes, summary.mean_step_s);
    if let Some(q) = &summary.validation {
        println!(
            "held-out MRSTFT: proxy {:.3}, identity {:.3} ({:.2}x closer); SI-SDR: proxy {:.1} dB, identity {:.1} dB",
            q.mrstft,
            q.identity_mrstft,
            q.improvement(),
            q.si_sdr,
            q.identity_si_sdr
        );
    }
    println!("proxy: {} (report.md, metrics.jsonl, checkpoints/)", args.run.out.display());
    Ok(())
}

fn apply(args: &Args, c: &mut ProxyTrainConfig) {
    override_with(&mut c.steps, args.run.steps);
    c.minutes = args.run.minutes;
    override_with(&mut c.batch, args.run.batch);
    override_with(&mut c.patch, args.patch);
    if let Some(v) = args.run.lr {
        c.lr = v;
        c.lr_final = c.lr_final.min(v / 10.0);
    }
    override_with(&mut c.tcn.channels, args.channels);
    if args.batch_norm {
        c.tcn.batch_norm = true;
    }
    override_with(&mut c.time_l1_weight, args.l1_weight);
    override_with(&mut c.seed, args.run.seed);
    override_with(&mut c.val_every, args.run.val_every);
}
