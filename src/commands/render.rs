//! `afx render`: one render of a WAV file through a plugin or chain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use afx_core::Audio;
use afx_host::Format;
use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// A chain or plugin named in plugins.toml, or an installed plugin's id (LV2 URI) or name
    /// [default with --preset: the preset's chain]
    #[arg(long, value_name = "NAME|URI", required_unless_present = "preset")]
    plugin: Option<String>,
    /// Replay a preset (from `afx infer`): every parameter of every stage, exactly
    #[arg(long, conflicts_with_all = ["sets", "normalized"])]
    preset: Option<PathBuf>,
    /// Only look among installed plugins of this format
    #[arg(long, value_parser = super::parse_format)]
    format: Option<Format>,
    /// Input file: WAV, or FLAC, OGG or MP3
    #[arg(long, short)]
    input: PathBuf,
    /// Output WAV file (32-bit float; written to a temporary name and renamed)
    #[arg(long, short)]
    output: PathBuf,
    /// WAV fed to the plugins' sidechain (key) inputs [default: silence]
    #[arg(long, value_name = "WAV")]
    sidechain: Option<PathBuf>,
    /// Set a parameter: `id=value`, or `plugin.id=value` in a chain (repeatable)
    #[arg(long = "set", value_name = "ID=VALUE", value_parser = parse_set)]
    sets: Vec<(String, f32)>,
    /// `--set` values are normalised to [0, 1] instead of plain units
    #[arg(long)]
    normalized: bool,
    /// Parameters that move: a curves file (JSON, plain units per hop, as `afx infer` writes it; see the
    /// README). Parameters without a curve keep their --set, preset or default values
    #[arg(long, value_name = "JSON")]
    automation: Option<PathBuf>,
    /// Frames per process call
    #[arg(long, default_value_t = 512)]
    block_size: usize,
    /// Seconds the plugin worker may take to load the chain, and to render the file, before it is killed
    /// [default: 60 s plus the input's duration]
    #[arg(long)]
    timeout: Option<f64>,
}

fn parse_set(s: &str) -> Result<(String, f32), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("expected ID=VALUE, got {s:?}"))?;
    let value: f32 = value.trim().parse().map_err(|_| format!("{value:?} is not a number (in {s:?})"))?;
    Ok((key.trim().to_string(), value))
}

pub fn run(args: Args, config: Option<&Path>) -> anyhow::Result<()> {
    if args.block_size == 0 {
        bail!("--block-size must be at least 1");
    }
    let config_path = super::config_path(config);
    // Shared with the job as they are: a whole file is not copied on its way to the worker.
    let input = Arc::new(read_audio(&args.input)?);
    let sidechain = args.sidechain.as_deref().map(read_audio).transpose()?.map(Arc::new);
    let preset = args.preset.as_deref().map(afx_host::Preset::load).transpose()?;
    let curves = args.automation.as_deref().map(afx_host::Curves::read).transpose()?;
    let name = match (&args.plugin, &preset) {
        (Some(name), _) => name.clone(),
        (None, Some(p)) => p.chain.clone(),
        (None, None) => unreachable!("clap requires --plugin or --preset"),
    };
    // One worker process loads the plugins and renders: a plugin that crashes or hangs fails this command with
    // an error naming it, and nothing is written.
    let mut pool = super::start_pool(&super::PoolRequest {
        chain: &name,
        config: config_path.as_deref(),
        format: args.format,
        workers: Some(1),
        timeout: Some(args.timeout.unwrap_or_else(|| super::infer::whole_file_limit(&input))),
        block_size: Some(args.block_size),
    })?;
    let chain = pool.chain().clone();
    let values = match &preset {
        Some(p) => p.values_for(&chain)?,
        None => chain.values_with(&args.sets, args.normalized)?,
    };
    let output = match (&curves, &args.automation) {
        (Some(curves), Some(path)) => {
            let automation = curves.automation(path, &chain, &values, input.sample_rate(), input.frames())?;
            pool.render_automated(&input, sidechain.as_ref(), automation)
        }
        _ => pool.render_values(&input, sidechain.as_ref(), &values),
    }
    .with_context(|| format!("rendering {}", args.input.display()))?;
    output.write_wav(&args.output)?;
    let qualify = chain.stages().len() > 1;
    let mut out = std::io::stdout().lock();
    for (stage, stage_values) in chain.stages().iter().zip(&values) {
        for (spec, &value) in stage.plugin().params.iter().zip(stage_values) {
            let prefix = if qualify { format!("{}.", stage.name()) } else { String::new() };
            let key = format!("{prefix}{}", spec.id);
            match curves.as_ref().and_then(|c| c.curves.iter().find(|c| c.param == key || c.param == spec.id)) {
                Some(curve) => {
                    let (lo, hi) = curve.values.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                    let (lo, hi) = (spec.display_value(lo), spec.display_value(hi));
                    writeln!(out, "{key} = {lo} .. {hi}, {} values ({})", curve.values.len(), spec.name)?;
                }
                None => writeln!(out, "{key} = {} ({})", spec.display_value(value), spec.name)?,
            }
        }
    }
    eprintln!("wrote {} ({} frames, {} Hz)", args.output.display(), output.frames(), output.sample_rate());
    Ok(())
}

/// Any audio file afx reads (see [`afx_core::audio_file::read_audio`]).
pub fn read_audio(path: &Path) -> anyhow::Result<Audio> {
    Ok(afx_core::audio_file::read_audio(path)?)
}
