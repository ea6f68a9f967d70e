//! The buffers and COM objects one `process` call needs (channel pointers, bus descriptions, parameter change
//! lists, the process context), reused between renders.

use std::ptr;

use vst3::ComWrapper;
use vst3::Steinberg::Vst::ProcessModes_::kOffline;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{AudioBusBuffers, AudioBusBuffers__type0, IParameterChanges, ProcessContext, ProcessData};

use super::class::Layout;
use super::com::ParameterChanges;

/// Buffers and COM objects for `process`, reused between renders.
pub(super) struct Buffers {
    /// One channel pointer per audio port, buses in order; each bus points into these. Inputs point straight into
    /// the render's buffers, which are writable scratch (see `Instance::process`).
    pub(super) input_ptrs: Vec<*mut f32>,
    pub(super) output_ptrs: Vec<*mut f32>,
    pub(super) input_buses: Vec<AudioBusBuffers>,
    pub(super) output_buses: Vec<AudioBusBuffers>,
    pub(super) changes_in: ComWrapper<ParameterChanges>,
    pub(super) changes_out: ComWrapper<ParameterChanges>,
    pub(super) context: ProcessContext,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            input_ptrs: vec![],
            output_ptrs: vec![],
            input_buses: vec![],
            output_buses: vec![],
            changes_in: ParameterChanges::new(),
            changes_out: ParameterChanges::new(),
            // SAFETY: ProcessContext is plain data (numbers and small structs of numbers): all zeros is valid and
            // means "no transport information".
            context: unsafe { std::mem::zeroed() },
        }
    }
}

impl Buffers {
    pub(super) fn prepare(&mut self, layout: &Layout, sample_rate: u32) {
        let in_ports: usize = layout.inputs.iter().sum();
        let out_ports: usize = layout.outputs.iter().sum();
        self.input_ptrs = vec![ptr::null_mut(); in_ports];
        self.output_ptrs = vec![ptr::null_mut(); out_ports];
        let bus = |channels: &usize| AudioBusBuffers {
            numChannels: *channels as i32,
            silenceFlags: 0,
            __field0: AudioBusBuffers__type0 { channelBuffers32: ptr::null_mut() },
        };
        self.input_buses = layout.inputs.iter().map(bus).collect();
        self.output_buses = layout.outputs.iter().map(bus).collect();
        self.changes_in.clear();
        self.changes_out.clear();
        self.context.sampleRate = f64::from(sample_rate);
    }
}

/// Points each bus at its run of channel pointers.
pub(super) fn link_buses(buses: &mut [AudioBusBuffers], pointers: &mut [*mut f32]) {
    let mut first = 0;
    for bus in buses {
        let channels = bus.numChannels as usize;
        bus.__field0.channelBuffers32 = pointers[first..].as_mut_ptr();
        first += channels;
    }
}

/// The interface pointer of a parameter change list, as `ProcessData` takes it (null if it has none).
pub(super) fn changes_ptr(changes: &ComWrapper<ParameterChanges>) -> *mut IParameterChanges {
    changes.as_com_ref::<IParameterChanges>().map_or(ptr::null_mut(), |r| r.as_ptr())
}

/// One offline block of `frames` 32-bit float samples through `inputs` and `outputs` (linked to their channel
/// pointers), with the change lists `changes` (in, out) and no events.
pub(super) fn offline_block(
    frames: usize,
    inputs: &mut [AudioBusBuffers],
    outputs: &mut [AudioBusBuffers],
    changes: (*mut IParameterChanges, *mut IParameterChanges),
    context: *mut ProcessContext,
) -> ProcessData {
    ProcessData {
        processMode: kOffline as i32,
        symbolicSampleSize: kSample32 as i32,
        numSamples: frames as i32,
        numInputs: inputs.len() as i32,
        numOutputs: outputs.len() as i32,
        inputs: inputs.as_mut_ptr(),
        outputs: outputs.as_mut_ptr(),
        inputParameterChanges: changes.0,
        outputParameterChanges: changes.1,
        inputEvents: ptr::null_mut(),
        outputEvents: ptr::null_mut(),
        processContext: context,
    }
}
