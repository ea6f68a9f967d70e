//! Harness overhead: [`Effect::render`](afx_host::Effect::render) against the plainest possible loop on the
//! format's hosting crate (livi, clack-host, vst3) on the same plugin, buffer and block size, measured side by
//! side in one run.
//!
//! The direct loops are afx-host's (`afx_host::direct`, feature `direct-render`): they do what any correct render
//! must and nothing else, so the ratio measures `render.rs` plus each backend's per-render work.

use std::time::{Duration, Instant};

use afx_host::direct::{DirectError, DirectRender, direct_loop};
use afx_host::{Format, Host, LoadError, RenderError, RenderSettings};

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
    let mut direct: Box<dyn DirectRender> = direct_loop(&effect, format, block_size, sample_rate)?;
    // One untimed render each: libraries paged in, buffers grown, DPF's process-wide rate set.
    let mut output = effect.render(&input, &values, &settings)?;
    direct.render(input.channel(0), &values)?;

    let (mut harness_times, mut direct_times) = (vec![], vec![]);
    for _ in 0..repeats.max(1) {
        harness_times.push(time(|| effect.render_into(&input, &values, &settings, &mut output))?);
        direct_times.push(time(|| direct.render(input.channel(0), &values))?);
    }
    let seconds = |times: Vec<Duration>| times.iter().map(Duration::as_secs_f64).collect();
    let (harness_s, direct_s) = (median(seconds(harness_times)), median(seconds(direct_times)));
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
         overhead {:.3}x (target <= 1.05)",
        r.plugin,
        r.format,
        r.frames,
        r.sample_rate,
        r.block_size,
        r.repeats,
        r.harness_s * 1e3,
        r.direct_s * 1e3,
        r.overhead
    )
}
