//! What a plugin is to afx: a description ([`PluginInfo`]) and an [`Effect`] that renders audio with it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::param::{ParamSpec, ValueError};
use crate::render::{self, RenderError, RenderSettings, Scratch};
use afx_core::Audio;

/// A plugin standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Lv2,
    Clap,
    Vst3,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Lv2, Format::Clap, Format::Vst3];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Lv2 => "lv2",
            Format::Clap => "clap",
            Format::Vst3 => "vst3",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown plugin format {s:?}; valid: lv2, clap, vst3"))
    }
}

/// One audio port of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioPort {
    pub name: String,
    /// A sidechain (key) input: fed silence, since afx renders one signal through the effect.
    pub sidechain: bool,
}

/// Everything afx knows about a plugin without running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub format: Format,
    /// LV2 URI, CLAP id or VST3 class id.
    pub id: String,
    pub name: String,
    /// The bundle or file the plugin was found in.
    pub path: PathBuf,
    pub audio_inputs: Vec<AudioPort>,
    pub audio_outputs: Vec<AudioPort>,
    /// Control inputs, in the order [`Effect::render`] takes their values.
    pub params: Vec<ParamSpec>,
}

impl PluginInfo {
    /// Audio inputs that carry the signal (not sidechains).
    pub fn main_inputs(&self) -> usize {
        self.audio_inputs.iter().filter(|p| !p.sidechain).count()
    }

    /// An effect has at least one main audio input and one audio output.
    pub fn is_effect(&self) -> bool {
        self.main_inputs() > 0 && !self.audio_outputs.is_empty()
    }

    /// The parameter with this id.
    pub fn param_index(&self, id: &str) -> Option<usize> {
        self.params.iter().position(|p| p.id == id)
    }

    /// The parameter with this id or, failing that, the one parameter with this name (case-insensitive).
    /// CLAP and VST3 ids are numbers; their names match the LV2 versions' port names.
    pub fn find_param(&self, key: &str) -> Option<usize> {
        self.param_index(key).or_else(|| {
            let mut named = self.params.iter().enumerate().filter(|(_, p)| p.name.eq_ignore_ascii_case(key));
            match (named.next(), named.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
    }

    /// Default plain values of every parameter.
    pub fn default_values(&self) -> Vec<f32> {
        self.params.iter().map(|p| p.default).collect()
    }

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

/// What a plugin format provides: fresh, activated instances with parameters set before the first sample.
///
/// A format module (`lv2`, later `clap` and `vst3`) implements this; everything format-independent (channel
/// mapping, padding, latency trimming, checks) lives once in [`crate::render`].
pub(crate) trait Backend {
    fn info(&self) -> &PluginInfo;
    /// An instance in its initial state, at `sample_rate`, accepting blocks of `block_size` frames, with
    /// every parameter at `values` (plain units, checked) from sample 0 on.
    fn instantiate<'a>(
        &'a mut self,
        sample_rate: u32,
        block_size: usize,
        values: &[f32],
    ) -> Result<Box<dyn Instance + 'a>, RenderError>;
}

/// One running plugin instance.
pub(crate) trait Instance {
    /// Processes `frames` frames starting at `start` of every port buffer. `inputs` has one buffer per audio
    /// input port (sidechains included), `outputs` one per audio output port.
    ///
    /// Inputs are writable because CLAP and VST3 hand plugins writable input pointers: they are the render's own
    /// scratch, refilled for every render and lane and never read again after the block that used them, so a
    /// plugin that writes to its input changes no signal, and the backends need no per-block copy (which cost
    /// ~3 % of a ZamComp render).
    fn process(
        &mut self,
        inputs: &mut [Vec<f32>],
        outputs: &mut [Vec<f32>],
        start: usize,
        frames: usize,
    ) -> Result<(), RenderError>;
    /// The latency the plugin reports now, in frames.
    fn latency(&self) -> Result<usize, RenderError>;
}

/// A loaded plugin that renders audio: `y = f(x, params)`, deterministic and latency compensated.
///
/// Each render starts from a fresh state, applies the parameters from sample 0, pads the input's tail by the
/// plugin's latency and trims the latency from the front, so output frame `n` lines up with input frame `n` and
/// the output has exactly as many frames and channels as the input.
pub struct Effect {
    backend: Box<dyn Backend>,
    scratch: Scratch,
}

impl Effect {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Effect {
        Effect { backend, scratch: Scratch::default() }
    }

    pub fn info(&self) -> &PluginInfo {
        self.backend.info()
    }

    /// The latency the plugin reported in its latest render (after the first block), in frames: what afx
    /// trimmed from that output. `None` before the first render. It may change with the rate and the values.
    pub fn latency(&self) -> Option<usize> {
        self.scratch.latency
    }

    /// Renders `input` with every parameter at the given plain value (one per [`PluginInfo::params`]).
    pub fn render(&mut self, input: &Audio, values: &[f32], settings: &RenderSettings) -> Result<Audio, RenderError> {
        let mut output = Audio::silence(input.sample_rate(), input.num_channels(), input.frames());
        self.render_into(input, values, settings, &mut output)?;
        Ok(output)
    }

    /// Like [`Effect::render`], reusing `output`'s buffers.
    pub fn render_into(
        &mut self,
        input: &Audio,
        values: &[f32],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), RenderError> {
        render::render(self.backend.as_mut(), &mut self.scratch, input, None, values, settings, output)
    }

    /// Like [`Effect::render_into`], feeding `sidechain` to the plugin's sidechain (key) inputs instead of
    /// silence. It must match the input's rate and length (see [`crate::render`] for the channel rules).
    pub fn render_keyed_into(
        &mut self,
        input: &Audio,
        sidechain: &Audio,
        values: &[f32],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), RenderError> {
        render::render(self.backend.as_mut(), &mut self.scratch, input, Some(sidechain), values, settings, output)
    }
}
