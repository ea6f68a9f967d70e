//! The direct vst3-crate loop `afx bench render` measures the harness against (see `crate::direct`).

use std::ffi::c_char;
use std::ptr;

use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::MediaTypes_::kAudio;
use vst3::Steinberg::Vst::ProcessModes_::kOffline;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirection, BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent,
    IComponentTrait, IEditController, IEditControllerTrait, ParamID, ProcessSetup,
};
use vst3::Steinberg::{IPluginBaseTrait, kResultOk};
use vst3::{ComPtr, ComWrapper};

use crate::denormals::FlushDenormals;
use crate::direct::loops::{DirectError, DirectRender, Ports, direct_error};
use crate::plugin::Effect;
use crate::vst3::buffers::{changes_ptr, link_buses, offline_block};
use crate::vst3::com::ParameterChanges;
use crate::vst3::module::{self, AUDIO_MODULE_CLASS, Module, cid_hex};

/// The baseline for VST3: the vst3 crate's COM calls in the order the SDK's hosting examples make them. The
/// library is loaded through afx's [`Module`] (dlopen, `ModuleEntry`, factory) and its lock is taken around the
/// calls the harness serialises (setup and teardown touch DPF's process-wide globals); the component's lifecycle
/// and the block loop are written here on the vst3 crate alone.
pub(crate) struct DirectVst3 {
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
    ports: Ports,
    input_ptrs: Vec<*mut f32>,
    output_ptrs: Vec<*mut f32>,
    input_buses: Vec<AudioBusBuffers>,
    output_buses: Vec<AudioBusBuffers>,
}

impl DirectVst3 {
    pub(crate) fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectVst3, DirectError> {
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
            ports: Ports::new(info, block_size, sample_rate),
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
        })
    }
}

impl DirectRender for DirectVst3 {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError> {
        let _ftz = FlushDenormals::enable();
        let padded = self.ports.fill(signal, self.output_ptrs.len());
        let block = self.ports.block_size;
        if self.ports.inputs.len() != self.input_ptrs.len() {
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
            sampleRate: f64::from(self.ports.sample_rate),
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
        let changes = (changes_ptr(&self.changes_in), changes_ptr(&self.changes_out));
        let mut result = kResultOk;
        for start in (0..padded).step_by(block) {
            for (pointer, buffer) in self.input_ptrs.iter_mut().zip(&mut self.ports.inputs) {
                *pointer = buffer[start..].as_mut_ptr();
            }
            for (pointer, buffer) in self.output_ptrs.iter_mut().zip(&mut self.ports.outputs) {
                *pointer = buffer[start..].as_mut_ptr();
            }
            link_buses(&mut self.input_buses, &mut self.input_ptrs);
            link_buses(&mut self.output_buses, &mut self.output_ptrs);
            self.changes_out.clear();
            let mut data =
                offline_block(block, &mut self.input_buses, &mut self.output_buses, changes, ptr::null_mut());
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
