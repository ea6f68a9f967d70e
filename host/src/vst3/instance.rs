//! The VST3 [`Backend`]: a fresh component per render with every parameter queued at the first sample, and the
//! [`Instance`] that processes it block by block.

use std::ffi::c_char;
use std::rc::Rc;

use vst3::Steinberg::Vst::{IAudioProcessorTrait, IEditControllerTrait, ParamID};
use vst3::Steinberg::kResultOk;

use super::buffers::{Buffers, changes_ptr, link_buses, offline_block};
use super::class::Layout;
use super::component::Plugin;
use super::module::Module;
use super::params::normalize_exactly;
use crate::info::PluginInfo;
use crate::param::ParamSpec;
use crate::render::{Backend, Block, Instance, ParamChange, RenderError, Setup};

pub(crate) struct Vst3Backend {
    info: PluginInfo,
    cid: [c_char; 16],
    layout: Layout,
    /// The component of the current (or last) render.
    plugin: Option<Plugin>,
    buffers: Buffers,
    module: Rc<Module>,
}

impl Vst3Backend {
    pub(super) fn new(info: PluginInfo, cid: [c_char; 16], layout: Layout, module: Rc<Module>) -> Vst3Backend {
        Vst3Backend { info, cid, layout, plugin: None, buffers: Buffers::default(), module }
    }
}

impl Backend for Vst3Backend {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate<'a>(&'a mut self, setup: &Setup<'_>) -> Result<Box<dyn Instance + 'a>, RenderError> {
        let Setup { sample_rate, settings, values } = *setup;
        let block_size = settings.block_size;
        // A new component per render, never a kept one reset with setActive(0)/setActive(1): that was ~3 % faster
        // on ZamComp but not a reset for 4 of the 17 zam plugins (ZamEQ2, ZamTube, ZamDynamicEQ, ZamGrains render
        // differently after a render with other values). The old one goes first, so at most one exists.
        self.plugin = None;
        let mut plugin =
            Plugin::open(&self.module, &self.cid, Some((sample_rate, block_size))).map_err(|e| self.error(e))?;
        plugin.start(sample_rate, block_size).map_err(|e| self.error(e))?;
        self.plugin = Some(plugin);
        self.buffers.prepare(&self.layout, sample_rate);

        let plugin = self.plugin.as_ref().expect("set just above");
        let mut current = Vec::with_capacity(values.len());
        if let Some(controller) = &plugin.controller {
            for ((spec, &id), &value) in self.info.params.iter().zip(&self.layout.param_ids).zip(values) {
                let normalized = normalize_exactly(controller, id, value);
                if !(0.0..=1.0).contains(&normalized) {
                    return Err(self.error(format!(
                        "parameter {:?}: plain value {value} maps to {normalized}, outside [0, 1]",
                        spec.id
                    )));
                }
                // SAFETY: as above; the controller only stores the value (it is not connected to the component).
                unsafe { controller.setParamNormalized(id, normalized) };
                self.buffers.changes_in.set_at_start(id, normalized);
                current.push(normalized);
            }
        }
        Ok(Box::new(Vst3Instance {
            plugin: self.plugin.as_mut().expect("set just above"),
            buffers: &mut self.buffers,
            name: &self.info.name,
            params: &self.info.params,
            param_ids: &self.layout.param_ids,
            current,
            block_size,
        }))
    }
}

struct Vst3Instance<'a> {
    plugin: &'a mut Plugin,
    buffers: &'a mut Buffers,
    name: &'a str,
    params: &'a [ParamSpec],
    param_ids: &'a [ParamID],
    /// Each parameter's normalised value now (the end of the latest queue sent).
    current: Vec<f64>,
    block_size: usize,
}

impl Vst3Instance<'_> {
    fn error(&self, message: String) -> RenderError {
        RenderError::Plugin { plugin: self.name.to_string(), message }
    }

    /// Queues `changes` for the next block: VST3 reads a queue as a piecewise-linear segment, so a jump at
    /// offset `o > 0` is the old value at `o - 1` and the new one at `o` (see [`crate::automation`]).
    fn queue_changes(&mut self, changes: &[ParamChange]) -> Result<(), RenderError> {
        let Some(controller) = &self.plugin.controller else {
            return Err(self.error("cannot automate parameters: the plugin has no edit controller".into()));
        };
        for change in changes {
            let id = self.param_ids[change.param];
            let normalized = normalize_exactly(controller, id, change.value);
            if !(0.0..=1.0).contains(&normalized) {
                let id = &self.params[change.param].id;
                let value = change.value;
                return Err(
                    self.error(format!("parameter {id:?}: plain value {value} maps to {normalized}, outside [0, 1]"))
                );
            }
            let offset = change.offset as i32;
            if offset > 0 {
                self.buffers.changes_in.add_point(id, offset - 1, self.current[change.param]);
            }
            self.buffers.changes_in.add_point(id, offset, normalized);
            self.current[change.param] = normalized;
        }
        Ok(())
    }
}

impl Instance for Vst3Instance<'_> {
    fn process(&mut self, block: Block<'_>) -> Result<(), RenderError> {
        let Block { inputs, outputs, start, frames, changes } = block;
        self.queue_changes(changes)?;
        let b = &mut *self.buffers;
        if inputs.len() != b.input_ptrs.len() || outputs.len() != b.output_ptrs.len() {
            let (i, o) = (b.input_ptrs.len(), b.output_ptrs.len());
            return Err(self.error(format!(
                "process got {} inputs and {} outputs; the plugin has {i} and {o}",
                inputs.len(),
                outputs.len()
            )));
        }
        if frames > self.block_size {
            return Err(self.error(format!("{frames} frames exceed the block size {}", self.block_size)));
        }
        let range = start..start + frames;
        if inputs.iter().chain(outputs.iter()).any(|buffer| buffer.len() < range.end) {
            return Err(self.error(format!("a port buffer is shorter than frame {}", range.end)));
        }
        for (pointer, input) in b.input_ptrs.iter_mut().zip(inputs.iter_mut()) {
            *pointer = input[range.clone()].as_mut_ptr();
        }
        for (pointer, output) in b.output_ptrs.iter_mut().zip(outputs.iter_mut()) {
            *pointer = output[range.clone()].as_mut_ptr();
        }
        link_buses(&mut b.input_buses, &mut b.input_ptrs);
        link_buses(&mut b.output_buses, &mut b.output_ptrs);
        b.context.projectTimeSamples = start as i64;
        b.context.continousTimeSamples = start as i64;
        b.changes_out.clear();
        let changes = (changes_ptr(&b.changes_in), changes_ptr(&b.changes_out));
        let mut data = offline_block(frames, &mut b.input_buses, &mut b.output_buses, changes, &mut b.context);
        // SAFETY: the component is active and processing. Every bus has `numChannels` pointers to buffers of at
        // least `frames` (<= maxSamplesPerBlock) samples: input and output slices of `frames` checked above, taken
        // from distinct `Vec`s we hold exclusively for the call. The parameter change lists and the context outlive
        // the call.
        let result = unsafe { self.plugin.processor.process(&mut data) };
        // Each block's changes (the first block's: every value at its start) go with that block only.
        b.changes_in.clear();
        if result != kResultOk {
            return Err(self.error(format!("process returned {result}")));
        }
        Ok(())
    }

    fn latency(&self) -> Result<usize, RenderError> {
        // SAFETY: a plain query on an active processor.
        Ok(unsafe { self.plugin.processor.getLatencySamples() } as usize)
    }
}

impl Drop for Vst3Instance<'_> {
    fn drop(&mut self) {
        self.plugin.stop();
    }
}
