//! Harness overhead: [`crate::Effect::render`] against the plainest possible loop on the format's hosting crate (livi,
//! clack-host, vst3) on the same plugin, buffer and block size, measured side by side in one run.
//!
//! The direct loops do what any correct render must (a fresh instance, values applied from sample 0, every port
//! connected, full blocks) and nothing else: no checks, no channel mapping, no latency trimming, no input copies.
//! They reuse afx's plugin loading (a loaded library is a loaded library) but none of its render code, so the
//! ratio measures `render.rs` plus each backend's per-render work.
//!
//! The direct loops live beside the backends they measure (`lv2/direct.rs`, `clap/direct.rs`, `vst3/direct.rs`),
//! so that all FFI stays in the format modules.

use std::time::{Duration, Instant};

use crate::host::{Host, LoadError};
use crate::plugin::Format;
use crate::render::{RenderError, RenderSettings};
use afx_core::Audio;

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
    #[error("{0}")]
    Direct(String),
}

/// Deterministic noise with a slow envelope, so dynamics processors do real work.
pub fn test_signal(sample_rate: u32, frames: usize) -> Audio {
    let mut state: u32 = 0x1234_5678;
    let samples = (0..frames)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = state as f32 / u32::MAX as f32 * 2.0 - 1.0;
            let envelope = 0.5 + 0.45 * (i as f32 * 2.0 * std::f32::consts::PI * 2.0 / sample_rate as f32).sin();
            noise * envelope * 0.5
        })
        .collect();
    Audio::new(sample_rate, vec![samples]).expect("one channel")
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
    let settings = RenderSettings { block_size };
    let mut direct: Box<dyn Direct> = match format {
        Format::Lv2 => Box::new(crate::lv2::direct::DirectLv2::new(&effect, block_size, sample_rate)?),
        Format::Clap => Box::new(crate::clap::direct::DirectClap::new(&effect, block_size, sample_rate)?),
        Format::Vst3 => Box::new(crate::vst3::direct::DirectVst3::new(&effect, block_size, sample_rate)?),
    };
    // One untimed render each: libraries paged in, buffers grown, DPF's process-wide rate set.
    let mut output = effect.render(&input, &values, &settings)?;
    direct.render(input.channel(0), &values)?;

    let (mut harness_times, mut direct_times) = (vec![], vec![]);
    for _ in 0..repeats.max(1) {
        harness_times.push(time(|| effect.render_into(&input, &values, &settings, &mut output))?);
        direct_times.push(time(|| direct.render(input.channel(0), &values))?);
    }
    let (harness_s, direct_s) = (median(&mut harness_times), median(&mut direct_times));
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

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// A direct loop: renders `signal` (mono, fed to every main input; sidechains get silence) with the plugin's
/// parameters at `values`, into buffers of its own.
pub(crate) trait Direct {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError>;
}

/// Fills one buffer per input port (the signal on main inputs, silence on sidechains) and sizes one per output
/// port, all `padded` frames long. Shared by the direct loops: it is the same for every format.
pub(crate) fn fill_ports(
    inputs: &mut Vec<Vec<f32>>,
    outputs: &mut Vec<Vec<f32>>,
    main: &[bool],
    num_outputs: usize,
    signal: &[f32],
    padded: usize,
) {
    inputs.resize_with(main.len(), Vec::new);
    for (buffer, &main) in inputs.iter_mut().zip(main) {
        buffer.clear();
        if main {
            buffer.extend_from_slice(signal);
        }
        buffer.resize(padded, 0.0);
    }
    outputs.resize_with(num_outputs, Vec::new);
    for buffer in outputs {
        buffer.resize(padded, 0.0);
    }
}

pub(crate) fn direct_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Direct(e.to_string())
}
