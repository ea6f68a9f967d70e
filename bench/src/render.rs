//! Harness overhead: [`Effect::render`](afx_host::Effect::render) against the plainest possible loop on the
//! format's hosting crate (livi, clack-host, vst3) on the same plugin, buffer and block size, measured side by
//! side in one run.
//!
//! A third render prices moving parameters: every continuous parameter takes a new value every
//! [`AUTOMATION_HOP`] frames, against the static render (target <= 1.15x). The values alternate between the
//! default and a step of 0.1 % of the range above it: every change is a real one (events sent, LV2 runs split,
//! the plugin's coefficients recomputed), while the DSP stays in the static render's regime (a compressor's cost
//! depends on how hard it compresses; values across the range measured 0.93x, cheaper than one held value).
//!
//! The direct loops are afx-host's (`afx_host::direct`, feature `direct-render`): they do what any correct render
//! must and nothing else, so the ratio measures `render.rs` plus each backend's per-render work.

use std::time::{Duration, Instant};

use afx_host::direct::{DirectError, DirectRender, direct_loop};
use afx_host::{Audio, Automation, Format, Host, LoadError, ParamKind, PluginInfo, RenderError, RenderSettings};

use crate::signal::test_signal;
use crate::stats::median;

/// What [`render_overhead`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderBench {
    pub plugin: String,
    pub format: Format,
    pub block_size: usize,
    pub frames: usize,
    pub sample_rate: u32,
    pub repeats: usize,
    /// Median seconds per render through the harness.
    pub harness_s: f64,
    /// Median seconds per render through the direct loop.
    pub direct_s: f64,
    /// `harness_s / direct_s`: 1.03 means the harness costs 3% more.
    pub overhead: f64,
    /// Median seconds per render through the harness with every continuous parameter moving every
    /// [`AUTOMATION_HOP`] frames.
    pub automated_s: f64,
    /// `automated_s / harness_s`: what moving parameters cost over fixed ones.
    pub automation_cost: f64,
}

/// Frames between the automated render's value changes (DeepAFx's hop).
pub const AUTOMATION_HOP: usize = 1024;

/// A new value for every continuous parameter every `hop` frames: the default and 0.1 % of the range above it
/// (below it at the top of the range), in turn; other parameters at their defaults.
fn moving_values(info: &PluginInfo, frames: usize, hop: usize) -> Automation {
    let defaults = info.default_values();
    let rows = Automation::rows_for(frames, hop);
    let values = (0..rows)
        .flat_map(|f| {
            info.params.iter().zip(&defaults).map(move |(spec, &default)| match spec.kind {
                ParamKind::Continuous if f % 2 == 1 => {
                    let step = 1e-3 * (spec.max - spec.min);
                    if default + step <= spec.max { default + step } else { default - step }
                }
                _ => default,
            })
        })
        .collect();
    Automation::new(hop, info.params.len(), values).expect("one value per parameter per row")
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Direct(#[from] DirectError),
}

/// The plugin [`render_overhead`] measures by default in each format: ZamComp, which zam-plugins ships as LV2,
/// CLAP and VST3 from one DSP source, so the three ratios compare the hosting layers on identical work. VST3 is
/// looked up by name: its id is a class id.
pub fn default_plugin(format: Format) -> &'static str {
    match format {
        Format::Lv2 => "urn:zamaudio:ZamComp",
        Format::Clap => "com.zamaudio.ZamComp",
        Format::Vst3 => "ZamComp",
    }
}

/// Times `repeats` renders of `seconds` of mono audio at 48 kHz through the harness and through a direct loop on
/// the format's hosting crate (fresh instance, values set, blocks run, no checks), alternating the two so that
/// machine noise hits both alike, and reports the medians.
pub fn render_overhead(
    host: &Host,
    plugin: &str,
    format: Format,
    seconds: f64,
    block_size: usize,
    repeats: usize,
) -> Result<RenderBench, BenchError> {
    let mut effect = host.load(plugin, Some(format))?;
    let sample_rate = 48_000;
    let frames = (seconds * f64::from(sample_rate)).round().max(1.0) as usize;
    let input = test_signal(sample_rate, frames);
    let values = effect.info().default_values();
    let settings = RenderSettings::with_block_size(block_size);
    let moving = moving_values(effect.info(), frames, AUTOMATION_HOP);
    let mut direct: Box<dyn DirectRender> = direct_loop(&effect, format, block_size, sample_rate)?;
    // One untimed render each: libraries paged in, buffers grown, DPF's process-wide rate set.
    let mut output = effect.render(&input, &values, &settings)?;
    let mut automated = Audio::silence(sample_rate, 1, frames);
    effect.render_automated_into(&input, None, &moving, &settings, &mut automated)?;
    direct.render(input.channel(0), &values)?;

    let (mut harness_times, mut direct_times, mut automated_times) = (vec![], vec![], vec![]);
    for _ in 0..repeats.max(1) {
        harness_times.push(time(|| effect.render_into(&input, &values, &settings, &mut output))?);
        direct_times.push(time(|| direct.render(input.channel(0), &values))?);
        automated_times.push(time(|| effect.render_automated_into(&input, None, &moving, &settings, &mut automated))?);
    }
    let seconds = |times: Vec<Duration>| times.iter().map(Duration::as_secs_f64).collect();
    let (harness_s, direct_s) = (median(seconds(harness_times)), median(seconds(direct_times)));
    let automated_s = median(seconds(automated_times));
    Ok(RenderBench {
        plugin: effect.info().name.clone(),
        format,
        block_size,
        frames,
        sample_rate,
        repeats: repeats.max(1),
        harness_s,
        direct_s,
        overhead: harness_s / direct_s,
        automated_s,
        automation_cost: automated_s / harness_s,
    })
}

fn time<E>(f: impl FnOnce() -> Result<(), E>) -> Result<Duration, E> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// One line of `afx bench render`'s report.
pub fn report_line(r: &RenderBench) -> String {
    let direct = match r.format {
        Format::Lv2 => "livi",
        Format::Clap => "clack-host",
        Format::Vst3 => "vst3",
    };
    format!(
        "{} ({}), {} frames at {} Hz, block {}, median of {}: harness {:.3} ms  direct {direct} {:.3} ms  \
         overhead {:.3}x (target <= 1.05)  automated (every {AUTOMATION_HOP} frames) {:.3} ms  {:.3}x the \
         static render (target <= 1.15)",
        r.plugin,
        r.format,
        r.frames,
        r.sample_rate,
        r.block_size,
        r.repeats,
        r.harness_s * 1e3,
        r.direct_s * 1e3,
        r.overhead,
        r.automated_s * 1e3,
        r.automation_cost
    )
}
