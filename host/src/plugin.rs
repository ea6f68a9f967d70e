//! A loaded plugin that renders audio: the [`Effect`] handle around a format's [`Backend`].

use crate::automation::Automation;
use crate::info::PluginInfo;
use crate::render::{self, Backend, RenderError, RenderSettings, Scratch};
use afx_core::Audio;

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
        self.render_into(input, values, settings, &mut output).map(|()| output)
    }

    /// Like [`Effect::render`], reusing `output`'s buffers.
    pub fn render_into(
        &mut self,
        input: &Audio,
        values: &[f32],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), RenderError> {
        self.render_automated_into(input, None, &Automation::constant(values), settings, output)
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
        self.render_automated_into(input, Some(sidechain), &Automation::constant(values), settings, output)
    }

    /// Renders `input` with parameters that move: `automation` holds one row of plain values (one per
    /// [`PluginInfo::params`]) per hop, as [`crate::automation`] describes; a sidechain as in
    /// [`Effect::render_keyed_into`]. One row (or equal rows) renders bit-identically to the static render.
    pub fn render_automated_into(
        &mut self,
        input: &Audio,
        sidechain: Option<&Audio>,
        automation: &Automation,
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), RenderError> {
        render::render(self.backend.as_mut(), &mut self.scratch, input, sidechain, automation, settings, output)
    }
}
