//! Harness overhead: [`Effect::render`] against the plainest possible loop on the format's hosting crate (livi,
//! clack-host, vst3) on the same plugin, buffer and block size, measured side by side in one run.
//!
//! The direct loops do what any correct render must (a fresh instance, values applied from sample 0, every port
//! connected, full blocks) and nothing else: no checks, no channel mapping, no latency trimming, no input copies.
//! They reuse afx's plugin loading (a loaded library is a loaded library) but none of its render code, so the
//! ratio measures `render.rs` plus each backend's per-render work.

use std::ffi::{CString, c_char};
use std::ptr;
use std::time::{Duration, Instant};

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::MediaTypes_::kAudio;
use vst3::Steinberg::Vst::ProcessModes_::kOffline;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirection, BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent,
    IComponentTrait, IEditController, IEditControllerTrait, IParameterChanges, ParamID, ProcessData, ProcessSetup,
};
use vst3::Steinberg::{IPluginBaseTrait, kResultOk};
use vst3::{ComPtr, ComWrapper};

use crate::audio::Audio;
use crate::denormals::FlushDenormals;
use crate::host::{Host, LoadError};
use crate::plugin::{Effect, Format};
use crate::render::{RenderError, RenderSettings};
use crate::vst3::com::ParameterChanges;
use crate::vst3::module::{self, AUDIO_MODULE_CLASS, Module, cid_hex};

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
        Format::Lv2 => Box::new(DirectLv2::new(&effect, block_size, sample_rate)?),
        Format::Clap => Box::new(DirectClap::new(&effect, block_size, sample_rate)?),
        Format::Vst3 => Box::new(DirectVst3::new(&effect, block_size, sample_rate)?),
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
trait Direct {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError>;
}

/// Fills one buffer per input port (the signal on main inputs, silence on sidechains) and sizes one per output
/// port, all `padded` frames long. Shared by the direct loops: it is the same for every format.
fn fill_ports(
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

fn direct_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Direct(e.to_string())
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
            .map_err(direct_error)?;
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
}

impl Direct for DirectLv2 {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError> {
        // Every direct loop flushes denormals as the harness does: the two sides must run the DSP in the same
        // floating-point mode, or the ratio measures denormal handling instead of the host layer.
        let _ftz = FlushDenormals::enable();
        let block = self.block_size;
        let padded = signal.len().div_ceil(block) * block;
        fill_ports(&mut self.inputs_buf, &mut self.outputs_buf, &self.audio_in, self.outputs, signal, padded);
        // SAFETY: same contract as the harness's LV2 backend: installed plugin, positive sample rate.
        let mut instance = unsafe { self.plugin.instantiate(self.features.clone(), f64::from(self.sample_rate)) }
            .map_err(direct_error)?;
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
            unsafe { instance.run(block, ports) }.map_err(direct_error)?;
        }
        Ok(())
    }
}

/// The baseline for CLAP: clack-host as its examples show. The `PluginEntry` is the one afx loaded (clack-host
/// caches entries by path) and the host handlers are afx's (they only answer the latency callback), but the
/// instance lifecycle and the block loop are written here on clack-host alone.
struct DirectClap {
    entry: PluginEntry,
    id: CString,
    host: HostInfo,
    param_ids: Vec<ClapId>,
    /// Channels per audio port, in port order.
    input_channels: Vec<usize>,
    output_channels: Vec<usize>,
    /// Per input channel: a main input (gets the signal) or a sidechain (silence).
    audio_in: Vec<bool>,
    inputs_buf: Vec<Vec<f32>>,
    outputs_buf: Vec<Vec<f32>>,
    input_ports: AudioPorts,
    output_ports: AudioPorts,
    events: EventBuffer,
    block_size: usize,
    sample_rate: u32,
}

impl DirectClap {
    fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectClap, BenchError> {
        let info = effect.info();
        // SAFETY: the file is the one afx's CLAP world already loaded for this effect; clack-host returns its
        // cached entry, so no plugin code runs again.
        let entry = unsafe { PluginEntry::load(&info.path) }.map_err(direct_error)?;
        let id = CString::new(info.id.clone()).map_err(direct_error)?;
        let host = crate::clap::host_info();
        let param_ids = info
            .params
            .iter()
            .map(|p| p.id.parse().map(ClapId::new).map_err(|_| direct_error(format!("CLAP param id {:?}", p.id))))
            .collect::<Result<_, _>>()?;
        // Port layout, read once from an instance that is never activated.
        let mut instance = crate::clap::new_instance(&entry, &id, &host).map_err(direct_error)?;
        let ports = instance.plugin_shared_handle().get_extension::<PluginAudioPorts>();
        let handle = instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        let mut channels = |is_input| {
            let Some(ports) = ports else { return vec![] };
            (0..ports.count(&handle, is_input))
                .filter_map(|i| ports.get(&handle, i, is_input, &mut buffer).map(|p| p.channel_count as usize))
                .collect::<Vec<usize>>()
        };
        let (input_channels, output_channels) = (channels(true), channels(false));
        drop(instance);
        let (num_in, num_out): (usize, usize) = (input_channels.iter().sum(), output_channels.iter().sum());
        if num_in != info.audio_inputs.len() || num_out != info.audio_outputs.len() {
            return Err(direct_error(format!("{}: audio ports do not match the plugin's description", info.name)));
        }
        Ok(DirectClap {
            audio_in: info.audio_inputs.iter().map(|p| !p.sidechain).collect(),
            input_ports: AudioPorts::with_capacity(num_in, input_channels.len()),
            output_ports: AudioPorts::with_capacity(num_out, output_channels.len()),
            events: EventBuffer::with_capacity(info.params.len()),
            entry,
            id,
            host,
            param_ids,
            input_channels,
            output_channels,
            inputs_buf: vec![],
            outputs_buf: vec![],
            block_size,
            sample_rate,
        })
    }
}

impl Direct for DirectClap {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError> {
        let _ftz = FlushDenormals::enable();
        let block = self.block_size;
        let padded = signal.len().div_ceil(block) * block;
        let num_out = self.output_channels.iter().sum();
        fill_ports(&mut self.inputs_buf, &mut self.outputs_buf, &self.audio_in, num_out, signal, padded);

        let mut instance = crate::clap::new_instance(&self.entry, &self.id, &self.host).map_err(direct_error)?;
        let config = PluginAudioConfiguration {
            sample_rate: f64::from(self.sample_rate),
            min_frames_count: 1,
            max_frames_count: block as u32,
        };
        let stopped = instance.activate(|_, _| (), config).map_err(direct_error)?;
        let mut processor = stopped.start_processing().map_err(direct_error)?;
        self.events.clear();
        for (&id, &value) in self.param_ids.iter().zip(values) {
            self.events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), f64::from(value)));
        }
        for start in (0..padded).step_by(block) {
            let range = start..start + block;
            let inputs = self.input_ports.with_input_buffers(
                crate::clap::split_ports(&mut self.inputs_buf, &self.input_channels).map(|port| AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_input_only(
                        port.iter_mut().map(|c| InputChannel::variable(&mut c[range.clone()])),
                    ),
                }),
            );
            let mut outputs = self.output_ports.with_output_buffers(
                crate::clap::split_ports(&mut self.outputs_buf, &self.output_channels).map(|port| AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[range.clone()])),
                }),
            );
            processor
                .process(
                    &inputs,
                    &mut outputs,
                    &self.events.as_input(),
                    &mut OutputEvents::void(),
                    Some(start as u64),
                    None,
                )
                .map_err(direct_error)?;
            self.events.clear();
        }
        instance.deactivate(processor.stop_processing());
        Ok(())
    }
}

/// The baseline for VST3: the vst3 crate's COM calls in the order the SDK's hosting examples make them. The
/// library is loaded through afx's [`Module`] (dlopen, `ModuleEntry`, factory) and its lock is taken around the
/// calls the harness serialises (setup and teardown touch DPF's process-wide globals); the component's lifecycle
/// and the block loop are written here on the vst3 crate alone.
struct DirectVst3 {
    /// Declared first so it drops before `module`: COM objects go before their library.
    changes_in: ComWrapper<ParameterChanges>,
    /// DPF asserts on every block without an output parameter list.
    changes_out: ComWrapper<ParameterChanges>,
    controller: KeptController,
    module: Module,
    cid: [c_char; 16],
    param_ids: Vec<ParamID>,
    /// Channels per audio bus, in bus order.
    input_channels: Vec<usize>,
    output_channels: Vec<usize>,
    /// Per input channel: a main input (gets the signal) or a sidechain (silence).
    audio_in: Vec<bool>,
    inputs_buf: Vec<Vec<f32>>,
    outputs_buf: Vec<Vec<f32>>,
    input_ptrs: Vec<*mut f32>,
    output_ptrs: Vec<*mut f32>,
    input_buses: Vec<AudioBusBuffers>,
    output_buses: Vec<AudioBusBuffers>,
    block_size: usize,
    sample_rate: u32,
}

impl DirectVst3 {
    fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectVst3, BenchError> {
        let info = effect.info();
        let module = Module::load(&info.path).map_err(direct_error)?;
        let cid = module
            .classes()
            .into_iter()
            .find(|c| c.category == AUDIO_MODULE_CLASS && cid_hex(&c.cid).eq_ignore_ascii_case(&info.id))
            .ok_or_else(|| direct_error(format!("no class {} in {}", info.id, info.path.display())))?
            .cid;
        let param_ids = info
            .params
            .iter()
            .map(|p| p.id.parse().map_err(|_| direct_error(format!("VST3 param id {:?}", p.id))))
            .collect::<Result<_, _>>()?;
        // Bus layout, read once from a component that is never activated. Its edit controller stays for the
        // plain-to-normalised conversions (a pure function of the controller): creating one per render is work the
        // format does not require of a caller.
        let _serial = module::serial();
        let component: ComPtr<IComponent> = module.create(&cid).ok_or_else(|| direct_error("createInstance"))?;
        // SAFETY: our host context outlives the component (the module owns it, and `KeptController` drops first).
        if unsafe { component.initialize(module.host_context()) } != kResultOk {
            return Err(direct_error("IComponent::initialize failed"));
        }
        let mut controller = KeptController { controller: None, separate: false, component };
        let channels = |dir: BusDirection| {
            let component = &controller.component;
            // SAFETY: plain queries on an initialised component; BusInfo is plain data, so all zeros is valid, and
            // a failed getBusInfo leaves zero channels.
            unsafe {
                (0..component.getBusCount(kAudio as i32, dir))
                    .map(|index| {
                        let mut bus: BusInfo = std::mem::zeroed();
                        component.getBusInfo(kAudio as i32, dir, index, &mut bus);
                        usize::try_from(bus.channelCount).unwrap_or(0)
                    })
                    .collect::<Vec<usize>>()
            }
        };
        let (input_channels, output_channels) = (channels(kInput as BusDirection), channels(kOutput as BusDirection));
        if let Some(single) = controller.component.cast::<IEditController>() {
            controller.controller = Some(single);
        } else {
            let mut controller_cid = [0 as c_char; 16];
            // SAFETY: `controller_cid` is a writable TUID.
            if unsafe { controller.component.getControllerClassId(&mut controller_cid) } != kResultOk {
                return Err(direct_error("no edit controller"));
            }
            let separate: ComPtr<IEditController> =
                module.create(&controller_cid).ok_or_else(|| direct_error("cannot create the edit controller"))?;
            // SAFETY: as for the component above.
            if unsafe { separate.initialize(module.host_context()) } != kResultOk {
                return Err(direct_error("IEditController::initialize failed"));
            }
            controller.controller = Some(separate);
            controller.separate = true;
        }
        drop(_serial);
        let bus = |channels: &usize| AudioBusBuffers {
            numChannels: *channels as i32,
            silenceFlags: 0,
            __field0: AudioBusBuffers__type0 { channelBuffers32: ptr::null_mut() },
        };
        Ok(DirectVst3 {
            changes_in: ParameterChanges::new(),
            changes_out: ParameterChanges::new(),
            audio_in: info.audio_inputs.iter().map(|p| !p.sidechain).collect(),
            input_ptrs: vec![ptr::null_mut(); input_channels.iter().sum()],
            output_ptrs: vec![ptr::null_mut(); output_channels.iter().sum()],
            input_buses: input_channels.iter().map(bus).collect(),
            output_buses: output_channels.iter().map(bus).collect(),
            controller,
            module,
            cid,
            param_ids,
            input_channels,
            output_channels,
            inputs_buf: vec![],
            outputs_buf: vec![],
            block_size,
            sample_rate,
        })
    }
}

impl Direct for DirectVst3 {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), BenchError> {
        let _ftz = FlushDenormals::enable();
        let block = self.block_size;
        let padded = signal.len().div_ceil(block) * block;
        let num_out = self.output_ptrs.len();
        fill_ports(&mut self.inputs_buf, &mut self.outputs_buf, &self.audio_in, num_out, signal, padded);
        if self.inputs_buf.len() != self.input_ptrs.len() {
            return Err(direct_error("input channels do not match the buses"));
        }

        let serial = module::serial();
        let component: ComPtr<IComponent> =
            self.module.create(&self.cid).ok_or_else(|| direct_error("createInstance"))?;
        // SAFETY: our host context outlives the component (the module owns it).
        if unsafe { component.initialize(self.module.host_context()) } != kResultOk {
            return Err(direct_error("IComponent::initialize failed"));
        }
        let Some(processor) = component.cast::<IAudioProcessor>() else {
            // SAFETY: balances the initialize above.
            unsafe { component.terminate() };
            return Err(direct_error("the component is not an IAudioProcessor"));
        };
        let mut setup = ProcessSetup {
            processMode: kOffline as i32,
            symbolicSampleSize: kSample32 as i32,
            maxSamplesPerBlock: block as i32,
            sampleRate: f64::from(self.sample_rate),
        };
        // SAFETY: the component is initialised and inactive; bus indices are below the counts read in `new`;
        // `setup` outlives its call. setProcessing may answer kNotImplemented, which the spec allows.
        unsafe {
            for (dir, buses) in [(kInput, &self.input_channels), (kOutput, &self.output_channels)] {
                for index in 0..buses.len() {
                    component.activateBus(kAudio as i32, dir as BusDirection, index as i32, 1);
                }
            }
            if processor.setupProcessing(&mut setup) != kResultOk || component.setActive(1) != kResultOk {
                component.terminate();
                return Err(direct_error("setupProcessing or setActive(1) failed"));
            }
            processor.setProcessing(1);
        }
        drop(serial);
        self.changes_in.clear();
        let controller = self.controller.controller.as_ref().expect("set in new");
        for (&id, &value) in self.param_ids.iter().zip(values) {
            // SAFETY: a pure conversion on an initialised controller, for one of its parameter ids.
            let normalized = unsafe { controller.plainParamToNormalized(id, f64::from(value)) };
            self.changes_in.set_at_start(id, normalized);
        }
        let changes = |c: &ComWrapper<ParameterChanges>| {
            c.as_com_ref::<IParameterChanges>().map_or(ptr::null_mut(), |r| r.as_ptr())
        };
        let (changes_in, changes_out) = (changes(&self.changes_in), changes(&self.changes_out));
        let mut result = kResultOk;
        for start in (0..padded).step_by(block) {
            for (pointer, buffer) in self.input_ptrs.iter_mut().zip(&mut self.inputs_buf) {
                *pointer = buffer[start..].as_mut_ptr();
            }
            for (pointer, buffer) in self.output_ptrs.iter_mut().zip(&mut self.outputs_buf) {
                *pointer = buffer[start..].as_mut_ptr();
            }
            link_buses(&mut self.input_buses, &mut self.input_ptrs);
            link_buses(&mut self.output_buses, &mut self.output_ptrs);
            self.changes_out.clear();
            let mut data = ProcessData {
                processMode: kOffline as i32,
                symbolicSampleSize: kSample32 as i32,
                numSamples: block as i32,
                numInputs: self.input_buses.len() as i32,
                numOutputs: self.output_buses.len() as i32,
                inputs: self.input_buses.as_mut_ptr(),
                outputs: self.output_buses.as_mut_ptr(),
                inputParameterChanges: changes_in,
                outputParameterChanges: changes_out,
                inputEvents: ptr::null_mut(),
                outputEvents: ptr::null_mut(),
                processContext: ptr::null_mut(),
            };
            // SAFETY: the component is active and processing; every bus has `numChannels` pointers to distinct
            // buffers with at least `block` (= maxSamplesPerBlock) frames left; the change lists outlive the call.
            result = unsafe { processor.process(&mut data) };
            self.changes_in.clear();
            if result != kResultOk {
                break;
            }
        }
        let _serial = module::serial();
        // SAFETY: the reverse of the setup above, once. The processor reference is released just below, after
        // terminate and before the component's own: the order DPF needs (see the harness's Plugin).
        unsafe {
            processor.setProcessing(0);
            component.setActive(0);
            component.terminate();
        }
        drop(processor);
        drop(component);
        if result != kResultOk {
            return Err(direct_error(format!("process returned {result}")));
        }
        Ok(())
    }
}

/// The edit controller [`DirectVst3`] converts values with, and the component it came from.
struct KeptController {
    /// `None` only while `DirectVst3::new` builds it.
    controller: Option<ComPtr<IEditController>>,
    /// The controller is its own object, initialised and terminated apart from the component.
    separate: bool,
    component: ComPtr<IComponent>,
}

impl KeptController {
    /// Terminates both objects, once. The caller holds [`module::serial`].
    fn release(&mut self) {
        let Some(controller) = self.controller.take() else {
            return;
        };
        // SAFETY: both were initialised once in `DirectVst3::new` (`controller` is `Some` only then) and are
        // terminated once, controller first.
        unsafe {
            if self.separate {
                controller.terminate();
            }
            self.component.terminate();
        }
        // The controller reference goes here, before the component's (DPF frees its sub-objects with the component).
    }
}

impl Drop for KeptController {
    /// Without the lock: on `DirectVst3::new`'s error paths the caller already holds it; [`DirectVst3`]'s own drop
    /// takes it and releases first.
    fn drop(&mut self) {
        self.release();
    }
}

impl Drop for DirectVst3 {
    fn drop(&mut self) {
        let _serial = module::serial();
        self.controller.release();
    }
}

/// Points each bus at its run of channel pointers.
fn link_buses(buses: &mut [AudioBusBuffers], pointers: &mut [*mut f32]) {
    let mut first = 0;
    for bus in buses {
        bus.__field0.channelBuffers32 = pointers[first..].as_mut_ptr();
        first += bus.numChannels as usize;
    }
}
