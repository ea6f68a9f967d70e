//! `afx infer`: predict a chain's parameters for (input, style reference) with a trained run, process the whole
//! input, print the parameters and save them as a preset.

use std::io::Write;
use std::path::{Path, PathBuf};

use afx_trainer::train::RunConfig;
use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Run folder of `afx train`
    #[arg(long)]
    run: PathBuf,
    /// The recording to process (WAV, FLAC, OGG or MP3; any length, rate and channel count)
    #[arg(long, short)]
    input: PathBuf,
    /// The style reference: a recording that sounds the way the output should (required, except for a run
    /// trained with --no-reference, which refuses one: it applies the one style it learned)
    #[arg(long, short)]
    reference: Option<PathBuf>,
    #[arg(long, short)]
    output: PathBuf,
    /// Where to save the predicted parameters [default: the output path with .preset.toml]
    #[arg(long)]
    preset: Option<PathBuf>,
    /// A run trained with automation: low-pass its predicted curves at this many Hz before the render (DeepAFx's
    /// smoothing: a 4th-order Butterworth run forward and backward)
    #[arg(long, value_name = "HZ")]
    smooth: Option<f64>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seconds the plugin worker may take to load the chain, and to render the whole input, before it is
    /// killed [default: 60 s plus the input's duration]
    #[arg(long)]
    timeout: Option<f64>,
}

/// The default time limit of a whole-file render: a minute, plus real time (offline renders run many times
/// faster than real time; a plugin slower than that is treated as stuck).
pub fn whole_file_limit(input: &afx_core::Audio) -> f64 {
    60.0 + input.frames() as f64 / f64::from(input.sample_rate())
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    let device = afx_trainer::device(&args.device)?;
    let run_config_path = args.run.join("config.json");
    let text = std::fs::read_to_string(&run_config_path)
        .with_context(|| format!("{} is not a run folder (no config.json)", args.run.display()))?;
    let run: RunConfig =
        serde_json::from_str(&text).with_context(|| format!("reading {}", run_config_path.display()))?;
    let reference = match (&args.reference, run.config.no_reference) {
        (Some(path), true) => bail!(
            "--reference {}: run {} was trained without a reference (--no-reference): it applies the one style \
             it learned from its pairs; leave out --reference",
            path.display(),
            args.run.display()
        ),
        (None, true) => afx_trainer::infer::silent_reference(&run.config),
        (Some(path), false) => afx_core::audio_file::load_audio(path)?,
        (None, false) => bail!(
            "--reference is required: run {} transfers the style of a reference recording (only a run trained \
             with --no-reference needs none)",
            args.run.display()
        ),
    };
    let input = afx_core::audio_file::load_audio(&args.input)?;
    let config_path = super::config_path(config);
    let mut pool = super::start_pool(&super::PoolRequest {
        chain: &run.chain.name,
        config: config_path.as_deref(),
        workers: Some(1),
        timeout: Some(args.timeout.unwrap_or_else(|| whole_file_limit(&input))),
        ..Default::default()
    })?;
    let options = afx_trainer::infer::InferOptions { smooth_hz: args.smooth };
    let inference = afx_trainer::infer::infer_run(&args.run, &device, &mut pool, &input, &reference, &options)?;
    inference.output.write_wav(&args.output)?;
    let preset_path = args.preset.unwrap_or_else(|| args.output.with_extension("preset.toml"));
    inference.preset.save(&preset_path)?;
    if let Some(curves) = &inference.curves {
        let (json, png) = (args.output.with_extension("curves.json"), args.output.with_extension("curves.png"));
        curves.write(&json)?;
        let title = format!("{}: predicted automation", run.chain.name);
        afx_trainer::plot::curves_png(&png, &title, curves)?;
        let mut out = std::io::stdout().lock();
        for c in &curves.curves {
            let (lo, hi) = c.values.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let unit = c.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            writeln!(
                out,
                "{} = {lo} .. {hi}{unit}, {} values (one per {} frames)",
                c.param,
                c.values.len(),
                curves.hop
            )?;
        }
        eprintln!(
            "wrote {} and its automation: {} (replay: afx render --plugin {} --automation {}) and {}",
            args.output.display(),
            json.display(),
            run.chain.name,
            json.display(),
            png.display()
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for p in &inference.params {
        let unit = p.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
        writeln!(out, "{}.{} = {}{unit} ({}; normalised {:.4})", p.stage, p.id, p.plain, p.name, p.normalized)?;
    }
    eprintln!(
        "wrote {} ({} frames, {} Hz, {} channels) and {}",
        args.output.display(),
        inference.output.frames(),
        inference.output.sample_rate(),
        inference.output.num_channels(),
        preset_path.display()
    );
    Ok(())
}
