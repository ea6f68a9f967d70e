//! Harness overhead: [`Effect::render`] against the plainest possible livi loop on the same plugin, buffer and
//! block size, measured side by side in one run.

use std::time::{Duration, Instant};

use crate::audio::Audio;
use crate::host::{Host, LoadError};
use crate::plugin::{Effect, Format};
use crate::render::{RenderError, RenderSettings};

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

/// Times `repeats` renders of `seconds` of mono audio at 48 kHz through the harness and through a direct livi
/// loop (fresh instance, controls set, blocks run, no checks), alternating the two so that machine noise hits
/// both alike, and reports the medians.
pub fn render_overhead(
    host: &Host,
    plugin: &str,
    seconds: f64,
    block_size: usize,
    repeats: usize,
) -> Result<RenderBench, BenchError> {
    let mut effect = host.load(plugin, Some(Format::Lv2))?;
    let sample_rate = 48_000;
    let frames = (seconds * f64::from(sample_rate)).round().max(1.0) as usize;
    let input = test_signal(sample_rate, frames);
    let values = effect.info().default_values();
    let settings = RenderSettings { block_size };
    let mut direct = DirectLv2::new(&effect, block_size, sample_rate)?;
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
        format: Format::Lv2,
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

/// The baseline: livi used as its README shows, with only what a correct render needs (all ports connected).
struct DirectLv2 {
    plugin: livi::Plugin,
    features: std::sync::Arc<livi::Features>,
    controls: Vec<livi::PortIndex>,
    audio_in: Vec<bool>,
    outputs: usize,
    atoms_in: Vec<livi::event::LV2AtomSequence>,
    atoms_out: Vec<livi::event::LV2AtomSequence>,
    inputs_buf: Vec<Vec<f32>>,
    outputs_buf: Vec<Vec<f32>>,
    block_size: usize,
    sample_rate: u32,
}

impl DirectLv2 {
    fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectLv2, BenchError> {
        let world = livi::World::new();
        let plugin = world
            .plugin_by_uri(&effect.info().id)
            .ok_or_else(|| BenchError::Direct(format!("livi does not find {}", effect.info().id)))?;
        let features = world
            .try_build_features(livi::FeaturesBuilder { min_block_length: 1, max_block_length: block_size })
            .map_err(|e| BenchError::Direct(e.to_string()))?;
        let controls = plugin.ports_with_type(livi::PortType::ControlInput).map(|p| p.index).collect();
        let audio_in = effect.info().audio_inputs.iter().map(|p| !p.sidechain).collect();
        let counts = *plugin.port_counts();
        let atoms = |n| (0..n).map(|_| livi::event::LV2AtomSequence::new(&features, 16 * 1024)).collect();
        Ok(DirectLv2 {
            atoms_in: atoms(counts.atom_sequence_inputs),
            atoms_out: atoms(counts.atom_sequence_outputs),
            plugin,
            features,
            controls,
            audio_in,
            outputs: counts.audio_outputs,
            inputs_buf: vec![],
            outputs_buf: vec![],
            block_size,
            sample_rate,
        })
    }

    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError> {
        let block = self.block_size;
        let padded = signal.len().div_ceil(block) * block;
        self.inputs_buf.resize_with(self.audio_in.len(), Vec::new);
        for (buffer, &main) in self.inputs_buf.iter_mut().zip(&self.audio_in) {
            buffer.clear();
            if main {
                buffer.extend_from_slice(signal);
            }
            buffer.resize(padded, 0.0);
        }
        self.outputs_buf.resize_with(self.outputs, Vec::new);
        for buffer in &mut self.outputs_buf {
            buffer.resize(padded, 0.0);
        }
        // SAFETY: same contract as the harness's LV2 backend: installed plugin, positive sample rate.
        let mut instance = unsafe { self.plugin.instantiate(self.features.clone(), f64::from(self.sample_rate)) }
            .map_err(|e| BenchError::Direct(e.to_string()))?;
        for (&port, &value) in self.controls.iter().zip(values) {
            instance.set_control_input(port, value);
        }
        for start in (0..padded).step_by(block) {
            let ports = livi::EmptyPortConnections::new()
                .with_audio_inputs(self.inputs_buf.iter().map(|b| &b[start..start + block]))
                .with_audio_outputs(self.outputs_buf.iter_mut().map(|b| &mut b[start..start + block]))
                .with_atom_sequence_inputs(self.atoms_in.iter())
                .with_atom_sequence_outputs(self.atoms_out.iter_mut());
            // SAFETY: every audio and atom port is connected to a buffer of at least `block` frames, in port order.
            unsafe { instance.run(block, ports) }.map_err(|e| BenchError::Direct(e.to_string()))?;
        }
        Ok(())
    }
}
