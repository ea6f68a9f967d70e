//! `afx match`: find the chain's parameters that make one input sound like a target (or like a style
//! reference), by optimising through the real plugins; no training.

use std::io::Write;
use std::path::{Path, PathBuf};

use afx_host::Preset;
use afx_match::{Budget, MatchConfig, Method, Objective, Summary};
use afx_trainer::ChainInfo;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// A chain or plugin named in plugins.toml, or any installed plugin's id
    #[arg(long)]
    chain: String,
    /// The recording to process (WAV, FLAC, OGG or MP3)
    #[arg(long, short)]
    input: PathBuf,
    /// The input as it should sound: the same recording, processed and aligned (same rate and length), scored
    /// with MRSTFT
    #[arg(long, required_unless_present = "reference", conflicts_with = "reference")]
    target: Option<PathBuf>,
    /// Instead of --target: a recording of other material whose style to match (spectral balance and dynamics)
    #[arg(long)]
    reference: Option<PathBuf>,
    /// spsa (pairs θ ± εΔ, Adam, decaying rate) or cma-es (a population per generation)
    #[arg(long, default_value = "spsa")]
    method: Method,
    /// Stop after this many renders [default: 2000, unless --seconds is given]
    #[arg(long)]
    renders: Option<u64>,
    /// Stop after this many seconds (with --renders: whichever comes first)
    #[arg(long)]
    seconds: Option<f64>,
    /// Start from a trained controller's prediction (a run folder of `afx train` for this chain) instead of
    /// the chain's defaults
    #[arg(long, value_name = "RUN")]
    init_run: Option<PathBuf>,
    /// Folder for preset.toml, matched.wav, loss.png and summary.json (new, or empty)
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The longest stretch of the input the loss looks at, in seconds (the loudest one); the whole input is
    /// rendered at the end
    #[arg(long, default_value_t = 10.0)]
    max_seconds: f64,
    /// SPSA: Adam's initial learning rate (decays along a cosine to a tenth over the budget) [default: 0.05]
    #[arg(long)]
    lr: Option<f64>,
    /// SPSA: perturbation size ε (normalised units) [default: 0.02]
    #[arg(long)]
    epsilon: Option<f64>,
    /// SPSA: perturbations per step [default: one per worker]
    #[arg(long)]
    perturbations: Option<usize>,
    /// CMA-ES: points per generation [default: 4 + 3 ln P, rounded up to a multiple of the workers]
    #[arg(long)]
    population: Option<usize>,
    /// CMA-ES: initial step size σ₀ (normalised units) [default: 0.25]
    #[arg(long)]
    sigma: Option<f64>,
    /// Plugin worker processes [default: one per core]
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds a worker may take to load the chain, and one render, before it is killed [default: 60 s plus
    /// the input's duration]
    #[arg(long)]
    timeout: Option<f64>,
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    let match_config = match_config(&args);
    match_config.validate()?;
    check_out(&args.out)?;
    let input = super::render::read_audio(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let (against, objective) = match (&args.target, &args.reference) {
        (Some(target), _) => {
            let audio = super::render::read_audio(target).with_context(|| format!("--target {}", target.display()))?;
            let objective = Objective::target(&input, &audio, match_config.max_seconds)
                .with_context(|| format!("--target {} against --input {}", target.display(), args.input.display()))?;
            ((target, audio), objective)
        }
        (None, Some(reference)) => {
            let audio =
                super::render::read_audio(reference).with_context(|| format!("--reference {}", reference.display()))?;
            let objective = Objective::style(&input, &audio, match_config.max_seconds)
                .with_context(|| format!("--reference {}", reference.display()))?;
            ((reference, audio), objective)
        }
        (None, None) => unreachable!("clap requires --target or --reference"),
    };
    let config_path = super::config_path(config);
    let mut pool = super::start_pool(&super::PoolRequest {
        chain: &args.chain,
        config: config_path.as_deref(),
        workers: args.workers,
        timeout: Some(args.timeout.unwrap_or_else(|| super::infer::whole_file_limit(&input))),
        ..Default::default()
    })?;
    let chain = ChainInfo::from_chain(pool.chain());
    if chain.num_params() == 0 {
        bail!("{} has no continuous parameter to match", args.chain);
    }
    let (start, start_from) = match &args.init_run {
        Some(run) => (
            afx_match::start_from_run(run, &pool, &input, &against.1)
                .with_context(|| format!("--init-run {}", run.display()))?,
            format!("run {}", run.display()),
        ),
        None => (chain.default_theta(), "defaults".to_string()),
    };

    let bar = match match_config.budget.renders {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(1000),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let progress = bar.clone();
    let by_renders = match_config.budget.renders.is_some();
    let mut on_step = move |p: &afx_match::Progress| {
        progress.set_position(if by_renders { p.renders } else { (p.spent * 1000.0) as u64 });
        progress.set_message(format!(
            "{} renders  best {:.4}  {:.0} renders/s  failed {}",
            p.renders,
            p.best,
            p.renders as f64 / p.seconds.max(1e-9),
            p.failed
        ));
    };
    let outcome = afx_match::optimise(&mut pool, &objective, &start, &match_config, &mut on_step)
        .with_context(|| format!("matching --input {} to {}", args.input.display(), against.0.display()))?;
    bar.finish_and_clear();

    let values = pool.chain().plain_values(&outcome.best_theta)?;
    let matched = pool
        .render_values(&input, None, &values)
        .with_context(|| format!("rendering {} at the matched parameters", args.input.display()))?;
    let preset = Preset::from_values(pool.chain(), &values);
    let crop = afx_match::crop(&input, match_config.max_seconds);
    let rate = f64::from(input.sample_rate());
    let summary = Summary {
        chain: chain.name.clone(),
        objective: objective.name().to_string(),
        input: args.input.display().to_string(),
        against: against.0.display().to_string(),
        start_from,
        crop_start_s: crop.start as f64 / rate,
        crop_seconds: crop.len() as f64 / rate,
        params: afx_trainer::infer::predicted_params(&chain, &outcome.best_theta)?,
        renders_per_second: outcome.renders as f64 / outcome.seconds.max(1e-9),
        config: match_config,
        outcome,
    };
    afx_match::write_outputs(&args.out, &summary, &preset, &matched)?;
    let o = &summary.outcome;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {}: {:.4} → {:.4} ({:+.1}%) in {} renders, {:.1} s ({:.0} renders/s; rendering {:.1} s, scoring {:.1} s), \
         {} failed",
        summary.config.method,
        summary.objective,
        o.start_loss,
        o.best_loss,
        100.0 * (o.best_loss / o.start_loss - 1.0),
        o.renders,
        o.seconds,
        summary.renders_per_second,
        o.render_s,
        o.score_s,
        o.failed
    )?;
    for p in &summary.params {
        let unit = p.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
        writeln!(out, "{}.{} = {}{unit} ({}; normalised {:.4})", p.stage, p.id, p.plain, p.name, p.normalized)?;
    }
    writeln!(out, "wrote {} (preset.toml, matched.wav, loss.png, summary.json)", args.out.display())?;
    Ok(())
}

fn match_config(args: &Args) -> MatchConfig {
    let mut c = MatchConfig {
        method: args.method,
        budget: Budget {
            renders: args.renders.or(if args.seconds.is_some() { None } else { Some(2000) }),
            seconds: args.seconds,
        },
        seed: args.seed,
        max_seconds: args.max_seconds,
        ..MatchConfig::default()
    };
    if let Some(lr) = args.lr {
        c.spsa.lr = lr;
        c.spsa.lr_final = lr / 10.0;
    }
    if let Some(v) = args.epsilon {
        c.spsa.epsilon = v;
    }
    if args.perturbations.is_some() {
        c.spsa.perturbations = args.perturbations;
    }
    if args.population.is_some() {
        c.cmaes.population = args.population;
    }
    if let Some(v) = args.sigma {
        c.cmaes.sigma = v;
    }
    c
}

/// Refuses an --out that holds files already: a match's four files belong together.
fn check_out(out: &Path) -> anyhow::Result<()> {
    if out.is_file() {
        bail!("--out {} is a file: give a folder (new, or empty)", out.display());
    }
    if let Ok(mut entries) = std::fs::read_dir(out)
        && entries.next().is_some()
    {
        bail!("--out {} is not empty: give a new or empty folder (a match's files belong together)", out.display());
    }
    Ok(())
}
