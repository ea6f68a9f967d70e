//! The format-independent render: channel mapping, zero padding, latency trimming and output checks.
//!
//! # Channel mapping
//! The output always has the input's channel count. With `C` file channels, `I` main (non-sidechain) plugin
//! inputs and `O` plugin outputs:
//! - `I == C`: channel `c` feeds input `c`.
//! - `I == 1 < C`: if `O == 1`, one instance per channel ("dual mono"); if `O == C`, the channels are averaged
//!   into the one input.
//! - `C == 1 < I`: the mono signal feeds every main input.
//! - outputs: `O == C` maps one to one; `O > C == 1` averages the outputs; `O == 1 < C` copies the one output.
//! - anything else is an error naming the counts.
//!
//! Sidechain inputs are fed silence unless a sidechain (key) signal is given. A key must have the input's
//! sample rate and length, and one channel (fed to every sidechain input) or as many channels as the input
//! (lane `c` of a per-channel render gets key channel `c`; otherwise sidechain input `s` gets key channel
//! `s mod C`).

use crate::automation::{Automation, AutomationError};
use crate::denormals::FlushDenormals;
use crate::info::PluginInfo;
use crate::param::ValueError;
use afx_core::Audio;

/// How to render: everything but the audio and the parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// Frames per `process` call. Every block is full (the tail is padded with silence), but for the first one
    /// when automation changes a value within it: that block ends at the change.
    pub block_size: usize,
    /// With automation, the shortest LV2 `run()` between two value changes, in frames: a change closer than this
    /// to the one before waits until this many frames after it (see [`crate::automation`]). CLAP and VST3 take
    /// changes as timed events and ignore it.
    pub min_split: usize,
}

impl RenderSettings {
    /// Blocks of `block_size` frames, the other settings at their defaults.
    pub const fn with_block_size(block_size: usize) -> RenderSettings {
        RenderSettings { block_size, min_split: 32 }
    }
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings::with_block_size(512)
    }
}

/// Why a render failed. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{plugin}: expected {expected} parameter values, got {got}")]
    ValueCount { plugin: String, expected: usize, got: usize },
    #[error("{plugin}: parameter {param:?}: {source}")]
    BadValue { plugin: String, param: String, source: ValueError },
    #[error("{plugin}: parameter {param:?} at automation row {row} (from input frame {frame}): {source}")]
    BadAutomatedValue { plugin: String, param: String, row: usize, frame: usize, source: ValueError },
    #[error("{plugin}: {source}")]
    Automation { plugin: String, source: AutomationError },
    #[error("{plugin}: cannot render {channels}-channel audio: {reason}")]
    Channels { plugin: String, channels: usize, reason: String },
    #[error("{plugin}: sidechain signal does not match the input: {reason}")]
    Sidechain { plugin: String, reason: String },
    #[error("{plugin}: block size must be at least 1")]
    BlockSize { plugin: String },
    #[error("{plugin}: {message}")]
    Plugin { plugin: String, message: String },
    #[error("{plugin}: reports a latency of {frames} frames, more than afx accepts ({max})")]
    Latency { plugin: String, frames: usize, max: usize },
    #[error("{plugin} produced {value} at frame {frame} of channel {channel} with parameters {params}")]
    NonFinite { plugin: String, value: f32, frame: usize, channel: usize, params: String },
}

/// What a plugin format provides: fresh, activated instances with parameters set before the first sample.
///
/// A format module (`lv2`, later `clap` and `vst3`) implements this; everything format-independent (channel
/// mapping, padding, latency trimming, checks) lives once in this module.
pub(crate) trait Backend {
    fn info(&self) -> &PluginInfo;
    /// An instance in its initial state, as `setup` says.
    fn instantiate<'a>(&'a mut self, setup: &Setup<'_>) -> Result<Box<dyn Instance + 'a>, RenderError>;

    /// A [`RenderError::Plugin`] naming this backend's plugin: how every format reports what its plugin or
    /// hosting crate answered.
    fn error(&self, message: String) -> RenderError {
        RenderError::Plugin { plugin: self.info().name.clone(), message }
    }
}

/// What a new instance is made for: `sample_rate`, blocks of up to `settings.block_size` frames, and every
/// parameter at `values` (plain units, checked) from sample 0 on.
#[derive(Clone, Copy)]
pub(crate) struct Setup<'a> {
    pub sample_rate: u32,
    pub settings: &'a RenderSettings,
    pub values: &'a [f32],
}

/// One `process` call: frames `start..start + frames` of every port buffer, and the parameter changes due in
/// them.
pub(crate) struct Block<'a> {
    /// One buffer per audio input port (sidechains included); writable, see [`Instance::process`].
    pub inputs: &'a mut [Vec<f32>],
    /// One buffer per audio output port.
    pub outputs: &'a mut [Vec<f32>],
    pub start: usize,
    pub frames: usize,
    /// In order of offset (relative to `start`); each format applies them in its own way (see
    /// [`crate::automation`]).
    pub changes: &'a [ParamChange],
}

/// A parameter's new value, due at frame `offset` of a `process` call (relative to its `start`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ParamChange {
    pub offset: usize,
    /// Index into [`PluginInfo::params`].
    pub param: usize,
    /// Plain units, checked.
    pub value: f32,
}

/// One running plugin instance.
pub(crate) trait Instance {
    /// Processes `block`: its frames of every port buffer, its parameter changes from their offsets on.
    ///
    /// Inputs are writable because CLAP and VST3 hand plugins writable input pointers: they are the render's own
    /// scratch, refilled for every render and lane and never read again after the block that used them, so a
    /// plugin that writes to its input changes no signal, and the backends need no per-block copy (which cost
    /// ~3 % of a ZamComp render).
    fn process(&mut self, block: Block<'_>) -> Result<(), RenderError>;
    /// The latency the plugin reports now, in frames.
    fn latency(&self) -> Result<usize, RenderError>;
}

// Here rather than in `info`, beside the error it returns and the render that calls it, so that the
// descriptions need nothing from the render.
impl PluginInfo {
    /// Checks a full set of plain values against the parameters' ranges and kinds.
    pub fn check_values(&self, values: &[f32]) -> Result<(), RenderError> {
        if values.len() != self.params.len() {
            return Err(RenderError::ValueCount {
                plugin: self.name.clone(),
                expected: self.params.len(),
                got: values.len(),
            });
        }
        for (spec, &value) in self.params.iter().zip(values) {
            spec.check(value).map_err(|source: ValueError| RenderError::BadValue {
                plugin: self.name.clone(),
                param: spec.id.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Port buffers kept between renders so that rendering allocates only when the audio grows.
#[derive(Default)]
pub(crate) struct Scratch {
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    /// The latency the plugin reported in the latest render, in frames (trimmed from its output).
    pub(crate) latency: Option<usize>,
    /// With automation: every change of the render, at the plugin's own frame (the curve shifted by the latency).
    schedule: Vec<ParamChange>,
    /// The changes of one `process` call, at offsets within it.
    block_changes: Vec<ParamChange>,
}

/// How file channels reach plugin inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputMap {
    /// Channel `c` to main input `c`, one instance.
    Direct,
    /// One instance per channel, each with one main input.
    PerChannel,
    /// All channels averaged into the single main input.
    Downmix,
    /// The mono channel into every main input.
    Spread,
}

/// How plugin outputs (of one instance) become file channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputMap {
    Direct,
    Mean,
    Copy,
}

fn channel_map(info: &PluginInfo, channels: usize) -> Result<(InputMap, OutputMap), RenderError> {
    let (i, o, c) = (info.main_inputs(), info.audio_outputs.len(), channels);
    let err = |reason: String| RenderError::Channels { plugin: info.name.clone(), channels: c, reason };
    if i == 0 || o == 0 {
        return Err(err(format!("the plugin has {i} main audio inputs and {o} audio outputs; afx renders effects")));
    }
    let input = if i == c {
        InputMap::Direct
    } else if i == 1 && o == 1 {
        InputMap::PerChannel
    } else if i == 1 && o == c {
        InputMap::Downmix
    } else if c == 1 {
        InputMap::Spread
    } else {
        return Err(err(format!(
            "the plugin has {i} main inputs and {o} outputs; supported: as many inputs as channels, \
             a mono plugin (one instance per channel), or a mono file"
        )));
    };
    let lane_channels = if input == InputMap::PerChannel { 1 } else { c };
    let output = if o == lane_channels {
        OutputMap::Direct
    } else if lane_channels == 1 {
        OutputMap::Mean
    } else if o == 1 {
        OutputMap::Copy
    } else {
        return Err(err(format!("the plugin has {o} outputs, which do not map onto {c} channels")));
    };
    Ok((input, output))
}

/// The longest latency afx will compensate: ten seconds at the render's rate.
fn max_latency(sample_rate: u32) -> usize {
    10 * sample_rate as usize
}

/// Checks every row of `automation` against the parameters, and that it fits `input_frames`.
fn check_automation(info: &PluginInfo, automation: &Automation, input_frames: usize) -> Result<(), RenderError> {
    if automation.frames() == 1 {
        return info.check_values(automation.row(0));
    }
    if automation.num_params() != info.params.len() {
        let (expected, got) = (info.params.len(), automation.num_params());
        return Err(RenderError::ValueCount { plugin: info.name.clone(), expected, got });
    }
    automation
        .check_fits(input_frames)
        .map_err(|source| RenderError::Automation { plugin: info.name.clone(), source })?;
    for row in 0..automation.frames() {
        for (spec, &value) in info.params.iter().zip(automation.row(row)) {
            spec.check(value).map_err(|source| RenderError::BadAutomatedValue {
                plugin: info.name.clone(),
                param: spec.id.clone(),
                row,
                frame: row * automation.hop(),
                source,
            })?;
        }
    }
    Ok(())
}

pub(crate) fn render(
    backend: &mut dyn Backend,
    scratch: &mut Scratch,
    input: &Audio,
    sidechain: Option<&Audio>,
    automation: &Automation,
    settings: &RenderSettings,
    output: &mut Audio,
) -> Result<(), RenderError> {
    let _ftz = FlushDenormals::enable();
    let info = backend.info();
    check_automation(info, automation, input.frames())?;
    let values = automation.row(0);
    let block = settings.block_size;
    if block == 0 {
        return Err(RenderError::BlockSize { plugin: info.name.clone() });
    }
    let (input_map, output_map) = channel_map(info, input.num_channels())?;
    let (n, num_channels, rate) = (input.frames(), input.num_channels(), input.sample_rate());
    let num_inputs = info.audio_inputs.len();
    let num_outputs = info.audio_outputs.len();
    let main_inputs: Vec<usize> = (0..num_inputs).filter(|&p| !info.audio_inputs[p].sidechain).collect();
    let sidechain_inputs: Vec<usize> = (0..num_inputs).filter(|&p| info.audio_inputs[p].sidechain).collect();
    if let Some(key) = sidechain {
        check_sidechain(info, input, key)?;
    }
    let plugin_name = info.name.clone();
    output.reshape(rate, num_channels, n);
    scratch.inputs.resize_with(num_inputs, Vec::new);
    scratch.outputs.resize_with(num_outputs, Vec::new);

    let lanes = if input_map == InputMap::PerChannel { num_channels } else { 1 };
    let mut finite = true;
    for lane in 0..lanes {
        // Fill the port buffers with the signal, zero-padded to whole blocks.
        let padded = n.div_ceil(block) * block;
        for (port, buffer) in scratch.inputs.iter_mut().enumerate() {
            buffer.clear();
            if let (Some(key), Some(s)) = (sidechain, sidechain_inputs.iter().position(|&p| p == port)) {
                let channel = match key.num_channels() {
                    1 => 0,
                    _ if lanes > 1 => lane,
                    k => s % k,
                };
                buffer.extend_from_slice(key.channel(channel));
            }
            match main_inputs.iter().position(|&p| p == port) {
                None => {}
                Some(k) => match input_map {
                    InputMap::Direct => buffer.extend_from_slice(input.channel(k)),
                    InputMap::PerChannel => buffer.extend_from_slice(input.channel(lane)),
                    InputMap::Spread => buffer.extend_from_slice(input.channel(0)),
                    InputMap::Downmix => {
                        let scale = 1.0 / num_channels as f32;
                        buffer.extend((0..n).map(|f| input.channels().iter().map(|c| c[f]).sum::<f32>() * scale));
                    }
                },
            }
            buffer.resize(padded, 0.0);
        }
        // No need to zero: the plugin writes every frame of every output block.
        for buffer in &mut scratch.outputs {
            buffer.resize(padded, 0.0);
        }

        let mut instance = {
            // One instantiation at a time in a process. Plugins built with DPF (the zam plugins among them) take
            // their block size and sample rate at construction from process-wide variables that each
            // instantiation sets and then resets; two threads instantiating at once (worker threads, the collect
            // bench's reference) made DPF assert "bufferSize != 0" a few times per bench run. Worker processes
            // never contend for this lock.
            static INSTANTIATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = INSTANTIATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            backend.instantiate(&Setup { sample_rate: rate, settings, values })?
        };
        // The first block ends early at the first change, if that comes within it: the latency, which places the
        // later changes, is known only after the first block, and a change at input frame c reaches the plugin at
        // c + latency >= c.
        let first = automation.first_change().map_or(block, |c| c.min(block));
        let (inputs, outputs) = (&mut scratch.inputs, &mut scratch.outputs);
        instance.process(Block { inputs, outputs, start: 0, frames: first, changes: &[] })?;
        // Latency is read after the first block: LV2 plugins report it through a control output written in run().
        let latency = instance.latency()?;
        if latency > max_latency(rate) {
            return Err(RenderError::Latency { plugin: plugin_name, frames: latency, max: max_latency(rate) });
        }
        tracing::debug!(plugin = %plugin_name, latency, lane, "first block done");
        scratch.latency = Some(latency);
        let total = first + (n + latency).saturating_sub(first).div_ceil(block) * block;
        for buffer in scratch.inputs.iter_mut().chain(scratch.outputs.iter_mut()) {
            buffer.resize(total, 0.0);
        }
        scratch.schedule.clear();
        scratch.schedule.extend(automation.changes().map(|(frame, param, value)| ParamChange {
            offset: frame + latency,
            param,
            value,
        }));
        let (mut start, mut next) = (first, 0);
        while start < total {
            let end = start + block.min(total - start);
            let due = scratch.schedule[next..].iter().take_while(|c| c.offset < end).count();
            scratch.block_changes.clear();
            scratch.block_changes.extend(
                scratch.schedule[next..next + due].iter().map(|c| ParamChange { offset: c.offset - start, ..*c }),
            );
            next += due;
            let (inputs, outputs, changes) = (&mut scratch.inputs, &mut scratch.outputs, &scratch.block_changes);
            instance.process(Block { inputs, outputs, start, frames: end - start, changes })?;
            start = end;
        }
        drop(instance);

        let aligned = |port: usize| &scratch.outputs[port][latency..latency + n];
        let targets: &mut [Vec<f32>] =
            if lanes > 1 { &mut output.channels_mut()[lane..lane + 1] } else { output.channels_mut() };
        // The finiteness check rides along with the copy: one pass over the output instead of two.
        match output_map {
            OutputMap::Direct => {
                for (port, target) in targets.iter_mut().enumerate() {
                    finite &= copy_finite(target, aligned(port));
                }
            }
            OutputMap::Copy => {
                let (first, rest) = targets.split_first_mut().expect("at least one channel");
                finite &= copy_finite(first, aligned(0));
                for target in rest {
                    target.copy_from_slice(first);
                }
            }
            OutputMap::Mean => {
                let target = &mut targets[0];
                target.copy_from_slice(aligned(0));
                for port in 1..num_outputs {
                    for (t, s) in target.iter_mut().zip(aligned(port)) {
                        *t += s;
                    }
                }
                let scale = 1.0 / num_outputs as f32;
                target.iter_mut().for_each(|t| *t *= scale);
                finite &= all_finite(target);
            }
        }
    }
    if finite { Ok(()) } else { Err(non_finite(backend.info(), automation, output)) }
}

fn check_sidechain(info: &PluginInfo, input: &Audio, key: &Audio) -> Result<(), RenderError> {
    let reason = if key.sample_rate() != input.sample_rate() {
        format!("{} Hz against the input's {} Hz", key.sample_rate(), input.sample_rate())
    } else if key.frames() != input.frames() {
        format!("{} frames against the input's {}", key.frames(), input.frames())
    } else if key.num_channels() != 1 && key.num_channels() != input.num_channels() {
        format!("{} channels; expected 1 or {} (the input's)", key.num_channels(), input.num_channels())
    } else {
        return Ok(());
    };
    Err(RenderError::Sidechain { plugin: info.name.clone(), reason })
}

/// The exponent bits of an f32: all ones in NaN and the infinities, and in nothing else.
const EXPONENT_BITS: u32 = 0x7f80_0000;

/// Whether `sample` is NaN or infinite, as one mask and one compare: a loop of these ORed together vectorises
/// with baseline SSE2 (a max over the magnitude bits needs SSE4.1's `pmaxud` and ran scalar, at three times the
/// cost of the copy beside it).
fn non_finite_bit(sample: f32) -> u32 {
    u32::from(sample.to_bits() & EXPONENT_BITS == EXPONENT_BITS)
}

/// Copies `src` into `dst` and says whether every sample was finite. This runs on every render, so it has to
/// cost little more than the copy.
fn copy_finite(dst: &mut [f32], src: &[f32]) -> bool {
    let mut non_finite = 0u32;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s;
        non_finite |= non_finite_bit(s);
    }
    non_finite == 0
}

/// True when every sample is finite (see [`copy_finite`]).
fn all_finite(samples: &[f32]) -> bool {
    samples.iter().fold(0u32, |bits, &s| bits | non_finite_bit(s)) == 0
}

/// The error for a render whose output holds NaN or Inf: where, and with the parameters in effect there.
fn non_finite(info: &PluginInfo, automation: &Automation, output: &Audio) -> RenderError {
    let (channel, frame) = output
        .channels()
        .iter()
        .enumerate()
        .find_map(|(c, samples)| samples.iter().position(|s| !s.is_finite()).map(|f| (c, f)))
        .unwrap_or((0, 0));
    let values = automation.row(automation.row_at(frame));
    let params =
        info.params.iter().zip(values).map(|(p, v)| format!("{}={v}", p.label())).collect::<Vec<_>>().join(" ");
    RenderError::NonFinite { plugin: info.name.clone(), value: output.channel(channel)[frame], frame, channel, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{AudioPort, Format};

    fn info(inputs: usize, sidechains: usize, outputs: usize) -> PluginInfo {
        let port = |sidechain| AudioPort { name: "p".into(), sidechain };
        PluginInfo {
            format: Format::Lv2,
            id: "urn:test".into(),
            name: "Test".into(),
            path: "/".into(),
            audio_inputs: (0..inputs).map(|_| port(false)).chain((0..sidechains).map(|_| port(true))).collect(),
            audio_outputs: (0..outputs).map(|_| port(false)).collect(),
            params: vec![],
        }
    }

    #[test]
    fn copy_finite_copies_and_flags_a_bad_sample() {
        let src = [0.5f32, -1.0, f32::INFINITY, 0.0];
        let mut dst = [0.0f32; 4];
        assert!(!copy_finite(&mut dst, &src));
        assert_eq!(dst[..2], src[..2]);
        assert!(copy_finite(&mut dst[..2], &src[..2]));
    }

    #[test]
    fn all_finite_catches_nan_and_both_infinities_anywhere() {
        let mut x = vec![0.25f32; 1001];
        assert!(all_finite(&x));
        x[17] = f32::MAX;
        assert!(all_finite(&x));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
            x[999] = bad;
            assert!(!all_finite(&x), "{bad} passed");
            x[999] = 0.0;
        }
    }

    #[test]
    fn channel_mapping_follows_the_documented_rules() {
        use InputMap as I;
        use OutputMap as O;
        assert_eq!(channel_map(&info(1, 1, 1), 1).unwrap(), (I::Direct, O::Direct));
        assert_eq!(channel_map(&info(1, 1, 1), 2).unwrap(), (I::PerChannel, O::Direct));
        assert_eq!(channel_map(&info(2, 0, 2), 2).unwrap(), (I::Direct, O::Direct));
        assert_eq!(channel_map(&info(2, 0, 2), 1).unwrap(), (I::Spread, O::Mean));
        assert_eq!(channel_map(&info(1, 0, 2), 2).unwrap(), (I::Downmix, O::Direct));
        assert_eq!(channel_map(&info(1, 0, 2), 1).unwrap(), (I::Direct, O::Mean));
        assert_eq!(channel_map(&info(2, 0, 1), 2).unwrap(), (I::Direct, O::Copy));
        assert!(channel_map(&info(4, 0, 4), 2).is_err());
        assert!(channel_map(&info(0, 0, 2), 2).is_err());
    }
}
