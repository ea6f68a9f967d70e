//! The lifecycle of one VST3 component: created and initialised ([`Plugin::open`]), its buses activated, set up
//! and started for a render ([`Plugin::start`]), stopped, and terminated on drop, every step that touches the
//! library's globals under [`module::serial`].

use std::ffi::c_char;
use std::rc::Rc;

use vst3::ComPtr;
use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::MediaTypes_::kAudio;
use vst3::Steinberg::Vst::ParameterInfo_::ParameterFlags_::{kIsBypass, kIsProgramChange, kIsReadOnly};
use vst3::Steinberg::Vst::ProcessModes_::kOffline;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{
    BusDirection, BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent, IComponentTrait, IEditController,
    IEditControllerTrait, ParamID, ParameterInfo, ProcessSetup,
};
use vst3::Steinberg::{IPluginBaseTrait, kResultOk};

use super::module::{self, Module, utf16_string};
use super::params::{DPF_INTERNALS, param_spec};
use crate::param::ParamSpec;

/// An initialised component with its audio processor and edit controller.
///
/// Field order is release order: DPF implements the processor and controller interfaces as sub-objects and
/// frees them with the component, so the component's reference must go last (else: a DPF warning, then a crash).
pub(super) struct Plugin {
    pub(super) processor: ComPtr<IAudioProcessor>,
    /// `None` for the rare plugin without a controller (it then exposes no parameters).
    pub(super) controller: Option<ComPtr<IEditController>>,
    component: ComPtr<IComponent>,
    /// The controller is its own object, initialised and terminated apart from the component.
    separate_controller: bool,
    /// Between `setActive(1)` and `setActive(0)`.
    active: bool,
    /// Dropped after the COM pointers above (fields drop in order), keeping the library loaded for them.
    module: Rc<Module>,
}

impl Plugin {
    /// An initialised component; for a render, one constructed at the render's sample rate.
    ///
    /// DPF builds a plugin at the rate of the last `setupProcessing` call into its library (a process-wide global,
    /// 44.1 kHz before any) and only tells it the real rate later; ZamHeadX2 never adapts, so its first render
    /// after a rate change differed from every later one (and from LV2). When the library's last rate is not
    /// the render's, a throwaway component is set up at the render's rate first (under the same lock, so no
    /// other thread moves the global in between).
    pub(super) fn open(
        module: &Rc<Module>,
        cid: &[c_char; 16],
        render: Option<(u32, usize)>,
    ) -> Result<Plugin, String> {
        let mut serial = module::serial();
        if let Some((sample_rate, block_size)) = render
            && serial.library(&module.binary).sample_rate != Some(sample_rate)
        {
            prime(module, cid, sample_rate, block_size)?;
            serial.library(&module.binary).sample_rate = Some(sample_rate);
        }
        let component: ComPtr<IComponent> = module.create(cid).ok_or("the factory cannot create the component")?;
        let context = module.host_context();
        // SAFETY: `context` points to our IHostApplication, which the module keeps alive longer than the
        // component.
        if unsafe { component.initialize(context) } != kResultOk {
            return Err("IComponent::initialize failed".into());
        }
        let Some(processor) = component.cast::<IAudioProcessor>() else {
            // SAFETY: balances the successful initialize above.
            unsafe { component.terminate() };
            return Err("the component is not an IAudioProcessor".into());
        };
        let mut plugin = Plugin {
            component,
            processor,
            controller: None,
            separate_controller: false,
            active: false,
            module: module.clone(),
        };
        // From here on, `plugin`'s Drop terminates what was initialised, on error paths too.
        if let Some(controller) = plugin.component.cast::<IEditController>() {
            plugin.controller = Some(controller);
        } else {
            let mut controller_cid = [0 as c_char; 16];
            // SAFETY: `controller_cid` is a writable TUID.
            if unsafe { plugin.component.getControllerClassId(&mut controller_cid) } == kResultOk
                && let Some(controller) = module.create::<IEditController>(&controller_cid)
            {
                // SAFETY: as for the component's initialize above.
                if unsafe { controller.initialize(context) } != kResultOk {
                    return Err("IEditController::initialize failed".into());
                }
                plugin.controller = Some(controller);
                plugin.separate_controller = true;
            }
        }
        // afx feeds every bus (silence into sidechains), so every audio bus is active.
        for dir in [kInput, kOutput] {
            for index in 0..plugin.buses(dir as BusDirection).len() {
                // SAFETY: the bus exists (index below getBusCount) and the component is inactive.
                let result =
                    unsafe { plugin.component.activateBus(kAudio as i32, dir as BusDirection, index as i32, 1) };
                if result != kResultOk {
                    return Err(format!("cannot activate audio bus {index} (direction {dir})"));
                }
            }
        }
        Ok(plugin)
    }

    /// The audio buses in one direction.
    pub(super) fn buses(&self, dir: BusDirection) -> Vec<BusInfo> {
        // SAFETY: plain queries on an initialised component.
        let count = unsafe { self.component.getBusCount(kAudio as i32, dir) };
        (0..count)
            .map(|index| {
                // SAFETY: BusInfo is plain data (integers and a UTF-16 array), so all zeros is valid.
                let mut bus: BusInfo = unsafe { std::mem::zeroed() };
                // SAFETY: `index` is below getBusCount and `bus` is writable. A failed call leaves zero channels.
                unsafe { self.component.getBusInfo(kAudio as i32, dir, index, &mut bus) };
                bus
            })
            .collect()
    }

    /// The parameters afx exposes, in the controller's order, with plain ranges.
    pub(super) fn params(&self) -> Vec<(ParamID, ParamSpec)> {
        let Some(controller) = &self.controller else {
            return vec![];
        };
        // SAFETY: plain queries on an initialised controller.
        let count = unsafe { controller.getParameterCount() };
        let mut params = Vec::new();
        for index in 0..count {
            // SAFETY: ParameterInfo is plain data, so all zeros is valid.
            let mut info: ParameterInfo = unsafe { std::mem::zeroed() };
            // SAFETY: `index` is below getParameterCount and `info` is writable.
            if unsafe { controller.getParameterInfo(index, &mut info) } != kResultOk {
                continue;
            }
            let name = utf16_string(&info.title);
            // Read-only values are meters, program changes and bypass are host controls: none is a DSP setting.
            if info.flags & (kIsReadOnly | kIsProgramChange | kIsBypass) != 0 || DPF_INTERNALS.contains(&name.as_str())
            {
                continue;
            }
            params.push((info.id, param_spec(controller, &info, name)));
        }
        params
    }

    /// Puts the component into processing state for a render; restarts it when it already is.
    pub(super) fn start(&mut self, sample_rate: u32, block_size: usize) -> Result<(), String> {
        let mut serial = module::serial();
        self.deactivate();
        let mut setup = process_setup(sample_rate, block_size)?;
        // SAFETY: the component is initialised and inactive (stop above); `setup` outlives the call.
        let result = unsafe { self.processor.setupProcessing(&mut setup) };
        serial.library(&self.module.binary).sample_rate = Some(sample_rate);
        if result != kResultOk {
            return Err(format!("setupProcessing at {sample_rate} Hz, {block_size}-frame blocks failed"));
        }
        // SAFETY: set up above, buses activated at open.
        if unsafe { self.component.setActive(1) } != kResultOk {
            return Err("setActive(1) failed".into());
        }
        self.active = true;
        // SAFETY: the component is active. Many plugins answer kNotImplemented here, which the spec allows.
        unsafe { self.processor.setProcessing(1) };
        Ok(())
    }

    /// Leaves processing state; resets the plugin's history (`setActive(0)`).
    pub(super) fn stop(&mut self) {
        let _serial = module::serial();
        self.deactivate();
    }

    /// [`Plugin::stop`] for callers that hold [`module::serial`].
    fn deactivate(&mut self) {
        if self.active {
            // SAFETY: the component is active; the calls mirror `start` in reverse.
            unsafe {
                self.processor.setProcessing(0);
                self.component.setActive(0);
            }
            self.active = false;
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _serial = module::serial();
        self.deactivate();
        // SAFETY: both objects were initialised in `open` and are terminated once, controller first, as hosts do.
        unsafe {
            if let Some(controller) = &self.controller
                && self.separate_controller
            {
                controller.terminate();
            }
            self.component.terminate();
        }
    }
}

/// Offline, 32-bit processing at `sample_rate` in blocks of at most `block_size` frames.
fn process_setup(sample_rate: u32, block_size: usize) -> Result<ProcessSetup, String> {
    Ok(ProcessSetup {
        processMode: kOffline as i32,
        symbolicSampleSize: kSample32 as i32,
        maxSamplesPerBlock: i32::try_from(block_size).map_err(|_| format!("block size {block_size} too large"))?,
        sampleRate: f64::from(sample_rate),
    })
}

/// Calls `setupProcessing(sample_rate)` on a throwaway component of the class, for its library's side effects
/// (see [`Plugin::open`]). The caller holds [`module::serial`].
fn prime(module: &Module, cid: &[c_char; 16], sample_rate: u32, block_size: usize) -> Result<(), String> {
    let mut setup = process_setup(sample_rate, block_size)?;
    let component: ComPtr<IComponent> = module.create(cid).ok_or("the factory cannot create the component")?;
    // SAFETY: as in `Plugin::open`: our host context outlives the component, which is initialised, set up while
    // inactive and terminated once. The processor reference is released (end of the `if let`) before the
    // component's, the order DPF needs.
    unsafe {
        if component.initialize(module.host_context()) != kResultOk {
            return Err("IComponent::initialize failed".into());
        }
        if let Some(processor) = component.cast::<IAudioProcessor>() {
            processor.setupProcessing(&mut setup);
        }
        component.terminate();
    }
    Ok(())
}
