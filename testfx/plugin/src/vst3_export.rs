//! The VST3 face of the test effect (the `vst3` crate, after its `examples/gain.rs`): an audio processor
//! component and a separate edit controller, one mono in/out bus, parameter ids 0..N of [`PARAMS`].
//!
//! VST3 hosts send normalised [0, 1] values; [`ParamInfo::to_plain`] maps them the way afx's `ParamSpec` does
//! (linear, or log for `tone`; `fault` has `max - min` steps), so the plain values match CLAP's and LV2's.
//! The controller's parameter short title is the parameter's id (`drive`, `tone`, ...), the LV2 symbol.
//! Parameter points apply sample-accurately: the block is split at each point's offset. `getLatencySamples`
//! reports the latency `AFX_TESTFX_LATENCY` asked for when the processor was made.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};
use std::sync::Mutex;
use std::{ptr, slice};

use afx_testfx_dsp::{FAULT, FAULT_LABELS, PARAMS, ParamInfo, TestFx};
use vst3::Steinberg::Vst::*;
use vst3::Steinberg::*;
use vst3::{Class, ComRef, ComWrapper, uid};

use crate::{NAME, VENDOR};

/// The class id of the audio processor component (the "Audio Module Class").
pub const PROCESSOR_CID: TUID = uid(0x6166_7874, 0x6573_7466, 0x7876_7374, 0x3301_0001);
/// The class id of the edit controller.
pub const CONTROLLER_CID: TUID = uid(0x6166_7874, 0x6573_7466, 0x7876_7374, 0x3301_0002);

/// Writes `src` into a fixed-size C string buffer, truncated and NUL-terminated.
fn copy_cstring(src: &str, dst: &mut [c_char]) {
    let c_string = CString::new(src).unwrap_or_default();
    let bytes = c_string.as_bytes_with_nul();
    for (src, dst) in bytes.iter().zip(dst.iter_mut()) {
        *dst = *src as c_char;
    }
    if let Some(last) = dst.last_mut() {
        *last = 0;
    }
}

/// Writes `src` into a fixed-size UTF-16 string buffer, truncated and NUL-terminated.
fn copy_wstring(src: &str, dst: &mut [TChar]) {
    let mut len = 0;
    for (src, dst) in src.encode_utf16().zip(dst.iter_mut()) {
        *dst = src as TChar;
        len += 1;
    }
    if let Some(end) = dst.get_mut(len.min(dst.len().saturating_sub(1))) {
        *end = 0;
    }
}

/// The parameter with this VST3 id.
fn param(id: ParamID) -> Option<&'static ParamInfo> {
    PARAMS.get(id as usize)
}

/// A plain value as text: the fault's label, else the number and unit.
fn display(index: usize, plain: f64) -> String {
    if index == FAULT {
        return FAULT_LABELS.get(plain as usize).copied().unwrap_or("?").to_string();
    }
    format!("{plain:.2} {}", PARAMS[index].unit).trim_end().to_string()
}

/// What the processor keeps between calls, behind one lock: VST3 calls it through `&self`.
struct State {
    fx: TestFx,
    /// Plain values, so a new [`TestFx`] (at a new sample rate) starts from what the host set.
    values: [f32; PARAMS.len()],
    /// This block's parameter points (offset, index, plain value), kept to reuse the allocation.
    points: Vec<(usize, usize, f32)>,
}

impl State {
    fn set(&mut self, index: usize, plain: f32) {
        self.fx.set_param(index, plain);
        if let Some(v) = self.fx.param(index) {
            self.values[index] = v;
        }
    }

    /// Applies this block's points from index `first` on, all at once.
    fn apply_points_from(&mut self, first: usize) {
        for k in first..self.points.len() {
            let (_, index, value) = self.points[k];
            self.set(index, value);
        }
    }
}

struct Processor {
    state: Mutex<State>,
}

impl Class for Processor {
    type Interfaces = (IComponent, IAudioProcessor, IProcessContextRequirements);
}

impl Processor {
    fn new() -> Processor {
        Processor {
            state: Mutex::new(State {
                fx: TestFx::new(44100.0),
                values: std::array::from_fn(|i| PARAMS[i].default),
                points: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-updated that matters for a test effect.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IPluginBaseTrait for Processor {
    unsafe fn initialize(&self, _context: *mut FUnknown) -> tresult {
        kResultOk
    }

    unsafe fn terminate(&self) -> tresult {
        kResultOk
    }
}

/// True for our one main audio bus in either direction.
fn is_main_audio_bus(media_type: MediaType, index: i32) -> bool {
    media_type == MediaTypes_::kAudio as MediaType && index == 0
}

impl IComponentTrait for Processor {
    unsafe fn getControllerClassId(&self, class_id: *mut TUID) -> tresult {
        if class_id.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable TUID (checked non-null above).
        unsafe { *class_id = CONTROLLER_CID };
        kResultOk
    }

    unsafe fn setIoMode(&self, _mode: IoMode) -> tresult {
        kResultOk
    }

    unsafe fn getBusCount(&self, media_type: MediaType, _dir: BusDirection) -> i32 {
        i32::from(media_type == MediaTypes_::kAudio as MediaType)
    }

    unsafe fn getBusInfo(&self, media_type: MediaType, dir: BusDirection, index: i32, bus: *mut BusInfo) -> tresult {
        if !is_main_audio_bus(media_type, index) || bus.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable BusInfo (checked non-null above).
        let bus = unsafe { &mut *bus };
        bus.mediaType = media_type;
        bus.direction = dir;
        bus.channelCount = 1;
        let name = if dir == BusDirections_::kInput as BusDirection { "Input" } else { "Output" };
        copy_wstring(name, &mut bus.name);
        bus.busType = BusTypes_::kMain as BusType;
        bus.flags = BusInfo_::BusFlags_::kDefaultActive;
        kResultOk
    }

    unsafe fn getRoutingInfo(&self, _in_info: *mut RoutingInfo, _out_info: *mut RoutingInfo) -> tresult {
        kNotImplemented
    }

    unsafe fn activateBus(&self, _media_type: MediaType, _dir: BusDirection, _index: i32, _state: TBool) -> tresult {
        kResultOk
    }

    unsafe fn setActive(&self, state: TBool) -> tresult {
        // Activation starts from silence: a render after setActive(1) equals one from a fresh instance.
        if state != 0 {
            self.state().fx.reset();
        }
        kResultOk
    }

    unsafe fn setState(&self, _state: *mut IBStream) -> tresult {
        kResultOk
    }

    unsafe fn getState(&self, _state: *mut IBStream) -> tresult {
        kResultOk
    }
}

impl IAudioProcessorTrait for Processor {
    unsafe fn setBusArrangements(
        &self,
        inputs: *mut SpeakerArrangement,
        num_ins: i32,
        outputs: *mut SpeakerArrangement,
        num_outs: i32,
    ) -> tresult {
        if num_ins != 1 || num_outs != 1 || inputs.is_null() || outputs.is_null() {
            return kResultFalse;
        }
        // SAFETY: the host passes one arrangement for each of the one input and one output (checked above).
        let (input, output) = unsafe { (*inputs, *outputs) };
        if input == SpeakerArr::kMono && output == SpeakerArr::kMono { kResultTrue } else { kResultFalse }
    }

    unsafe fn getBusArrangement(&self, _dir: BusDirection, index: i32, arr: *mut SpeakerArrangement) -> tresult {
        if index != 0 || arr.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable arrangement (checked non-null above).
        unsafe { *arr = SpeakerArr::kMono };
        kResultOk
    }

    unsafe fn canProcessSampleSize(&self, symbolic_sample_size: i32) -> tresult {
        match symbolic_sample_size as SymbolicSampleSizes {
            SymbolicSampleSizes_::kSample32 => kResultOk,
            _ => kResultFalse,
        }
    }

    unsafe fn getLatencySamples(&self) -> u32 {
        self.state().fx.latency() as u32
    }

    unsafe fn setupProcessing(&self, setup: *mut ProcessSetup) -> tresult {
        if setup.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid ProcessSetup (checked non-null above).
        let sample_rate = unsafe { (*setup).sampleRate };
        let mut state = self.state();
        // The latency read when the processor was made: what getLatencySamples has reported stays true.
        let mut fx = TestFx::with_latency(sample_rate as f32, state.fx.latency());
        for (index, value) in state.values.iter().enumerate() {
            fx.set_param(index, *value);
        }
        state.fx = fx;
        kResultOk
    }

    unsafe fn setProcessing(&self, _state: TBool) -> tresult {
        kResultOk
    }

    unsafe fn process(&self, data: *mut ProcessData) -> tresult {
        if data.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid ProcessData for the duration of the call (checked non-null above).
        let data = unsafe { &*data };
        let mut state = self.state();
        let state = &mut *state;

        state.points.clear();
        // SAFETY: the pointer is null or the host's valid IParameterChanges for this call.
        if let Some(changes) = unsafe { ComRef::from_raw(data.inputParameterChanges) } {
            // SAFETY: calls on the host's IParameterChanges and the queues it hands out, all valid for this
            // call; getPoint writes into our two locals.
            unsafe {
                for i in 0..changes.getParameterCount() {
                    let Some(queue) = ComRef::from_raw(changes.getParameterData(i)) else { continue };
                    let id = queue.getParameterId();
                    let Some(p) = param(id) else { continue };
                    for j in 0..queue.getPointCount() {
                        let (mut offset, mut value) = (0, 0.0);
                        if queue.getPoint(j, &mut offset, &mut value) == kResultOk {
                            state.points.push((offset.max(0) as usize, id as usize, p.to_plain(value) as f32));
                        }
                    }
                }
            }
        }
        // Stable: points of one queue keep their order at equal offsets.
        state.points.sort_by_key(|&(offset, _, _)| offset);

        let frames = data.numSamples.max(0) as usize;
        if data.numInputs < 1 || data.numOutputs < 1 || data.inputs.is_null() || data.outputs.is_null() || frames == 0 {
            // A parameter flush without audio.
            state.apply_points_from(0);
            return kResultOk;
        }
        if data.symbolicSampleSize != SymbolicSampleSizes_::kSample32 as i32 {
            return kInvalidArgument;
        }
        // SAFETY: the host passes numInputs/numOutputs (>= 1, checked) bus buffers; we use bus 0 of each.
        let (input_bus, output_bus) = unsafe { (&*data.inputs, &*data.outputs) };
        if input_bus.numChannels < 1 || output_bus.numChannels < 1 {
            return kResultOk;
        }
        // SAFETY: with 32-bit processing, channelBuffers32 points to numChannels (>= 1) channel pointers.
        let (input, output) = unsafe { (*input_bus.__field0.channelBuffers32, *output_bus.__field0.channelBuffers32) };
        if input.is_null() || output.is_null() {
            return kInvalidArgument;
        }

        let mut start = 0;
        let mut next_point = 0;
        while start < frames {
            while let Some(&(offset, index, value)) = state.points.get(next_point) {
                if offset > start {
                    break;
                }
                state.set(index, value);
                next_point += 1;
            }
            let end = state.points.get(next_point).map_or(frames, |&(offset, _, _)| offset.min(frames));
            if input == output {
                // SAFETY: one buffer of numSamples floats serves as input and output (in-place processing).
                let buffer = unsafe { slice::from_raw_parts_mut(output.add(start), end - start) };
                state.fx.process_in_place(buffer);
            } else {
                // SAFETY: distinct host buffers of numSamples floats each; [start, end) lies within them.
                let (i, o) = unsafe {
                    (
                        slice::from_raw_parts(input.add(start), end - start),
                        slice::from_raw_parts_mut(output.add(start), end - start),
                    )
                };
                state.fx.process(i, o);
            }
            start = end;
        }
        // Points past the block's end (a host bug) still take effect, for the next block.
        state.apply_points_from(next_point);
        kResultOk
    }

    unsafe fn getTailSamples(&self) -> u32 {
        0
    }
}

impl IProcessContextRequirementsTrait for Processor {
    unsafe fn getProcessContextRequirements(&self) -> u32 {
        0
    }
}

/// The edit controller: parameter metadata and the host-facing normalised values.
struct Controller {
    normalized: Cell<[f64; PARAMS.len()]>,
}

impl Class for Controller {
    type Interfaces = (IEditController,);
}

impl Controller {
    fn new() -> Controller {
        Controller {
            normalized: Cell::new(std::array::from_fn(|i| PARAMS[i].to_normalized(f64::from(PARAMS[i].default)))),
        }
    }
}

impl IPluginBaseTrait for Controller {
    unsafe fn initialize(&self, _context: *mut FUnknown) -> tresult {
        kResultOk
    }

    unsafe fn terminate(&self) -> tresult {
        kResultOk
    }
}

impl IEditControllerTrait for Controller {
    unsafe fn setComponentState(&self, _state: *mut IBStream) -> tresult {
        kResultOk
    }

    unsafe fn setState(&self, _state: *mut IBStream) -> tresult {
        kResultOk
    }

    unsafe fn getState(&self, _state: *mut IBStream) -> tresult {
        kResultOk
    }

    unsafe fn getParameterCount(&self) -> i32 {
        PARAMS.len() as i32
    }

    unsafe fn getParameterInfo(&self, param_index: i32, info: *mut ParameterInfo) -> tresult {
        let Some(p) = usize::try_from(param_index).ok().and_then(|i| PARAMS.get(i)) else { return kInvalidArgument };
        if info.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable ParameterInfo (checked non-null above).
        let info = unsafe { &mut *info };
        info.id = param_index as ParamID;
        copy_wstring(p.name, &mut info.title);
        copy_wstring(p.id, &mut info.shortTitle);
        copy_wstring(p.unit, &mut info.units);
        info.stepCount = if p.integer { (p.max - p.min) as i32 } else { 0 };
        info.defaultNormalizedValue = p.to_normalized(f64::from(p.default));
        info.unitId = 0;
        let mut flags = ParameterInfo_::ParameterFlags_::kCanAutomate;
        if param_index as usize == FAULT {
            flags |= ParameterInfo_::ParameterFlags_::kIsList;
        }
        info.flags = flags;
        kResultOk
    }

    unsafe fn getParamStringByValue(&self, id: ParamID, value_normalized: f64, string: *mut String128) -> tresult {
        let Some(p) = param(id) else { return kInvalidArgument };
        if string.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable String128 (checked non-null above).
        copy_wstring(&display(id as usize, p.to_plain(value_normalized)), unsafe { &mut *string });
        kResultOk
    }

    unsafe fn getParamValueByString(&self, id: ParamID, string: *mut TChar, value_normalized: *mut f64) -> tresult {
        let Some(p) = param(id) else { return kInvalidArgument };
        if string.is_null() || value_normalized.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a NUL-terminated UTF-16 string (checked non-null above); we read up to the NUL.
        let text = unsafe {
            let len = (0..).take_while(|&i| *string.add(i) != 0).count();
            String::from_utf16_lossy(slice::from_raw_parts(string as *const u16, len))
        };
        let word = text.split_whitespace().next().unwrap_or("");
        let plain = match FAULT_LABELS.iter().position(|l| *l == word) {
            Some(i) if id as usize == FAULT => i as f64,
            _ => match word.parse::<f64>() {
                Ok(v) => v,
                Err(_) => return kResultFalse,
            },
        };
        // SAFETY: the host passes a valid, writable f64 (checked non-null above).
        unsafe { *value_normalized = p.to_normalized(plain) };
        kResultOk
    }

    unsafe fn normalizedParamToPlain(&self, id: ParamID, value_normalized: f64) -> f64 {
        param(id).map_or(0.0, |p| p.to_plain(value_normalized))
    }

    unsafe fn plainParamToNormalized(&self, id: ParamID, plain_value: f64) -> f64 {
        param(id).map_or(0.0, |p| p.to_normalized(plain_value))
    }

    unsafe fn getParamNormalized(&self, id: ParamID) -> f64 {
        self.normalized.get().get(id as usize).copied().unwrap_or(0.0)
    }

    unsafe fn setParamNormalized(&self, id: ParamID, value: f64) -> tresult {
        let mut values = self.normalized.get();
        let Some(v) = values.get_mut(id as usize) else { return kInvalidArgument };
        *v = value.clamp(0.0, 1.0);
        self.normalized.set(values);
        kResultOk
    }

    unsafe fn setComponentHandler(&self, _handler: *mut IComponentHandler) -> tresult {
        kResultOk
    }

    unsafe fn createView(&self, _name: *const c_char) -> *mut IPlugView {
        ptr::null_mut()
    }
}

struct Factory;

impl Class for Factory {
    type Interfaces = (IPluginFactory,);
}

impl IPluginFactoryTrait for Factory {
    unsafe fn getFactoryInfo(&self, info: *mut PFactoryInfo) -> tresult {
        if info.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable PFactoryInfo (checked non-null above).
        let info = unsafe { &mut *info };
        copy_cstring(VENDOR, &mut info.vendor);
        copy_cstring("", &mut info.url);
        copy_cstring("", &mut info.email);
        info.flags = PFactoryInfo_::FactoryFlags_::kUnicode as int32;
        kResultOk
    }

    unsafe fn countClasses(&self) -> i32 {
        2
    }

    unsafe fn getClassInfo(&self, index: i32, info: *mut PClassInfo) -> tresult {
        let (cid, category) = match index {
            0 => (PROCESSOR_CID, "Audio Module Class"),
            1 => (CONTROLLER_CID, "Component Controller Class"),
            _ => return kInvalidArgument,
        };
        if info.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: the host passes a valid, writable PClassInfo (checked non-null above).
        let info = unsafe { &mut *info };
        info.cid = cid;
        info.cardinality = PClassInfo_::ClassCardinality_::kManyInstances as int32;
        copy_cstring(category, &mut info.category);
        copy_cstring(NAME, &mut info.name);
        kResultOk
    }

    unsafe fn createInstance(&self, cid: FIDString, iid: FIDString, obj: *mut *mut c_void) -> tresult {
        if cid.is_null() || iid.is_null() || obj.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: a class id is 16 bytes (checked non-null above).
        let cid = unsafe { *(cid as *const TUID) };
        let instance = match cid {
            PROCESSOR_CID => ComWrapper::new(Processor::new()).to_com_ptr::<FUnknown>(),
            CONTROLLER_CID => ComWrapper::new(Controller::new()).to_com_ptr::<FUnknown>(),
            _ => None,
        };
        let Some(instance) = instance else { return kInvalidArgument };
        let ptr = instance.as_ptr();
        // SAFETY: `ptr` is a live FUnknown (held by `instance` until the end of this call); queryInterface adds
        // the reference the host gets through `obj` when the interface is supported.
        unsafe { ((*(*ptr).vtbl).queryInterface)(ptr, iid as *mut TUID, obj) }
    }
}

/// Called by Linux VST3 hosts after dlopen; nothing to set up.
#[unsafe(no_mangle)]
extern "system" fn ModuleEntry(_library_handle: *mut c_void) -> bool {
    true
}

/// Called by Linux VST3 hosts before dlclose; nothing to tear down.
#[unsafe(no_mangle)]
extern "system" fn ModuleExit() -> bool {
    true
}

/// The VST3 entry point: a new factory, owned by the caller (one reference). `AFX_TESTFX_FAULT=load-*` breaks
/// it here.
#[unsafe(no_mangle)]
extern "system" fn GetPluginFactory() -> *mut IPluginFactory {
    afx_testfx_dsp::fire_load_fault();
    ComWrapper::new(Factory).to_com_ptr::<IPluginFactory>().map_or(ptr::null_mut(), |f| f.into_raw())
}
