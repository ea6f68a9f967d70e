//! `afx eval-grads`: how close SPSA, finite-difference, proxy (and exact) gradients of a real chain are to a
//! reference, and what each costs.

use std::path::{Path, PathBuf};

use afx_datasets::{Corpus, Split};
use afx_eval::grads::{Family, GradEvalConfig, eval_grads};
use afx_spsa::estimator::Scoring;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: super::ChainCorpus,
    /// Proxy folder written by `afx train-proxy`: adds the np-fh and np-hh (= proxy) gradients
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Examples M
    #[arg(long, default_value_t = 32)]
    examples: usize,
    /// Report folder (report.json, report.md, cosine_vs_renders.png, per_param_sign_agreement.png)
    #[arg(long)]
    out: PathBuf,
    /// Also print the report as JSON on stdout
    #[arg(long)]
    json: bool,
    /// Estimators to run: spsa, fd, exact, np-fh, np-hh (proxy) [default: every one available]
    #[arg(long, value_delimiter = ',')]
    estimators: Option<Vec<Family>>,
    /// SPSA perturbation counts K
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 4, 16, 64])]
    k: Vec<u32>,
    /// SPSA perturbation sizes ε (normalised units)
    #[arg(long, value_delimiter = ',', default_values_t = [0.001f32, 0.01, 0.05])]
    epsilon: Vec<f32>,
    /// Finite-difference steps h of the fd estimator (normalised units)
    #[arg(long, value_delimiter = ',', default_values_t = [0.01f32, 0.001])]
    fd_step: Vec<f32>,
    /// Step of the finite-difference reference where no exact gradient exists (checked against 10x that)
    #[arg(long, default_value_t = 0.001)]
    reference_step: f32,
    /// Length of the step along -ĝ in the descent test (normalised units)
    #[arg(long, default_value_t = 0.01)]
    descent_step: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Gradients of trajectories: one row of parameters every HOP frames (at the analysis rate, 22.05 kHz),
    /// rendered as automation, each row drawn at random [default: fixed parameters]
    #[arg(long)]
    hop: Option<usize>,
    /// How SPSA scores a trajectory's rows: whole (every row against the whole output, as DeepAFx), causal (each
    /// row against the output from its frame on: unbiased), window:W (each row against W more rows of output);
    /// one SPSA estimator per scoring
    #[arg(long, value_delimiter = ',', default_value = "whole")]
    scoring: Vec<Scoring>,
    #[command(flatten)]
    compute: super::ComputeArgs,
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    let device = afx_trainer::device(&args.compute.device)?;
    let eval = GradEvalConfig {
        examples: args.examples,
        seed: args.seed,
        families: args.estimators.clone(),
        spsa_k: args.k.clone(),
        spsa_epsilon: args.epsilon.clone(),
        fd_steps: args.fd_step.clone(),
        reference_step: args.reference_step,
        descent_step: args.descent_step,
        proxy: args.proxy.clone(),
        hop: args.hop,
        spsa_scoring: args.scoring.clone(),
        ..GradEvalConfig::default()
    };
    eval.validate()?;
    if let Some(proxy) = args.proxy.as_ref().filter(|p| !p.is_dir()) {
        anyhow::bail!("--proxy {}: no such folder (train one with `afx train-proxy`)", proxy.display());
    }
    let corpus = Corpus::open(&args.source.data, Split::Train, eval.sample_rate).with_context(|| "--data")?;
    let config_path = super::config_path(config);
    let super::train::Setup { chain, mut pool } =
        super::train::setup(&args.source.chain, config_path.as_deref(), args.compute.workers, None)?;
    let report = eval_grads(&chain, &mut pool, &corpus, &eval, &device, |what| eprintln!("eval-grads: {what}"))?;
    afx_eval::report::write_grad_report(&args.out, &report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", afx_eval::report::grad_markdown(&report));
    }
    eprintln!("report: {}", args.out.display());
    Ok(())
}
