//! VST3 through the `vst3` crate (raw COM bindings): discovery, parameter metadata, and a fresh component per render.
//!
//! Lifecycle of one render:
//! 1. [`Vst3World`] (one per thread) finds `.vst3` bundles and loads each library on first use
//!    ([`module::Module`]; calls that touch a library's globals are serialised process-wide).
//! 2. [`Vst3Backend::instantiate`] creates and initialises a new component (a kept one reset with `setActive` is
//!    not a reset for every plugin), calls
//!    `setupProcessing(offline, 32-bit, block, rate)`, `setActive(1)`, `setProcessing(1)`, and queues every
//!    parameter's normalised value at sample offset 0 of the first block (also telling the controller).
//! 3. `process` block by block, always with an output parameter changes object (DPF asserts without one).
//! 4. Dropping the instance calls `setProcessing(0)` and `setActive(0)`.
//!
//! Parameters are described in plain units through the edit controller (`normalizedParamToPlain`) and ids are
//! the VST3 `ParamID`s in decimal. The controller is never connected to the component: afx sends values to the
//! processor itself, so no messages travel between them at unpredictable times.

#[cfg(feature = "direct-render")]
pub(crate) mod direct;

pub(crate) mod com;
pub(crate) mod module;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::ptr;
use std::rc::Rc;

use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::BusTypes_::kAux;
use vst3::Steinberg::Vst::MediaTypes_::kAudio;
use vst3::Steinberg::Vst::ParameterInfo_::ParameterFlags_::{kIsBypass, kIsProgramChange, kIsReadOnly};
use vst3::Steinberg::Vst::ProcessModes_::kOffline;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirection, BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent,
    IComponentTrait, IEditController, IEditControllerTrait, IParameterChanges, ParamID, ParameterInfo, ProcessContext,
    ProcessData, ProcessSetup, String128,
};
use vst3::Steinberg::{IPluginBaseTrait, kResultOk};
use vst3::{ComPtr, ComWrapper};

use self::com::ParameterChanges;
use self::module::{AUDIO_MODULE_CLASS, Module, cid_hex, utf16_string};
use crate::param::{Choice, ParamKind, ParamSpec, Scale};
use crate::plugin::{AudioPort, Backend, Format, Instance, PluginInfo};
use crate::render::RenderError;

/// Parameters DPF adds to every plugin for its own bookkeeping; they are not part of the DSP.
const DPF_INTERNALS: [&str; 3] = ["Buffer Size", "Sample Rate", "Current Program"];

/// All VST3 plugins in the standard folders, with their libraries loaded on first use.
pub struct Vst3World {
    bundles: Vec<PathBuf>,
    /// Loaded libraries (or why loading failed), by bundle. `Rc` keeps them and their objects on this thread.
    modules: RefCell<HashMap<PathBuf, Result<Rc<Module>, String>>>,
}

impl Default for Vst3World {
    fn default() -> Self {
        Self::new()
    }
}

impl Vst3World {
    /// Finds the bundles in `VST3_PATH`, `~/.vst3`, `/usr/lib/vst3` and `/usr/local/lib/vst3` (and their
    /// subfolders).
    pub fn new() -> Vst3World {
        Self::with_dirs(&module::standard_dirs())
    }

    /// Finds the bundles under `dirs` instead of the standard folders.
    pub fn with_dirs(dirs: &[PathBuf]) -> Vst3World {
        Self::with_bundles(module::find_bundles(dirs))
    }

    /// These bundles (`Foo.vst3`) and no others: a worker that hosts one plugin loads only its library.
    pub fn with_bundles(bundles: Vec<PathBuf>) -> Vst3World {
        Vst3World { bundles, modules: RefCell::default() }
    }

    /// The audio processor classes of one bundle, and what went wrong with those that could not be described;
    /// an error when the bundle's library cannot be loaded.
    pub(crate) fn describe_file(bundle: &Path) -> Result<(Vec<PluginInfo>, Vec<String>), String> {
        let module = Rc::new(Module::load(bundle)?);
        let (mut plugins, mut problems) = (vec![], vec![]);
        for class in module.classes() {
            if class.category != AUDIO_MODULE_CLASS {
                continue;
            }
            match describe(&module, &class.cid, &class.name) {
                Ok((info, _)) => plugins.push(info),
                Err(e) => problems.push(format!("class {} ({}): {e}", class.name, cid_hex(&class.cid))),
            }
        }
        Ok((plugins, problems))
    }

    /// Every audio processor class of every bundle; bundles or classes that fail to load are logged and skipped.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut plugins = Vec::new();
        for bundle in &self.bundles {
            let module = match self.module(bundle) {
                Ok(module) => module,
                Err(e) => {
                    tracing::warn!("VST3 bundle {} skipped: {e}", bundle.display());
                    continue;
                }
            };
            for class in module.classes() {
                if class.category != AUDIO_MODULE_CLASS {
                    continue;
                }
                match describe(&module, &class.cid, &class.name) {
                    Ok((info, _)) => plugins.push(info),
                    Err(e) => tracing::warn!("VST3 class {} in {} skipped: {e}", class.name, bundle.display()),
                }
            }
        }
        plugins
    }

    /// A backend for the class with this id (32 hex digits), or `None` when no bundle offers it.
    pub(crate) fn backend(&self, id: &str) -> Option<Vst3Backend> {
        for bundle in &self.bundles {
            let Ok(module) = self.module(bundle) else {
                continue;
            };
            let Some(class) = module
                .classes()
                .into_iter()
                .find(|c| c.category == AUDIO_MODULE_CLASS && cid_hex(&c.cid).eq_ignore_ascii_case(id))
            else {
                continue;
            };
            return match describe(&module, &class.cid, &class.name) {
                Ok((info, layout)) => Some(Vst3Backend {
                    info,
                    cid: class.cid,
                    layout,
                    plugin: None,
                    buffers: Buffers::default(),
                    module,
                }),
                Err(e) => {
                    tracing::warn!("VST3 class {} in {} cannot be used: {e}", class.name, bundle.display());
                    None
                }
            };
        }
        None
    }

    fn module(&self, bundle: &Path) -> Result<Rc<Module>, String> {
        self.modules
            .borrow_mut()
            .entry(bundle.to_path_buf())
            .or_insert_with(|| Module::load(bundle).map(Rc::new))
            .clone()
    }
}

/// The audio buses of a class (channels per bus) and the parameters afx exposes.
#[derive(Debug, Clone, Default)]
struct Layout {
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// The `ParamID` behind each of `PluginInfo::params`, in order.
    param_ids: Vec<ParamID>,
}

/// Opens one instance of the class and reads its buses and parameters.
fn describe(module: &Rc<Module>, cid: &[c_char; 16], name: &str) -> Result<(PluginInfo, Layout), String> {
    let plugin = Plugin::open(module, cid, None)?;
    let mut info = PluginInfo {
        format: Format::Vst3,
        id: cid_hex(cid),
        name: name.to_string(),
        path: module.bundle.clone(),
        audio_inputs: vec![],
        audio_outputs: vec![],
        params: vec![],
    };
    let mut layout = Layout::default();
    for (dir, ports, channels) in
        [(kInput, &mut info.audio_inputs, &mut layout.inputs), (kOutput, &mut info.audio_outputs, &mut layout.outputs)]
    {
        for bus in plugin.buses(dir as BusDirection) {
            let count = usize::try_from(bus.channelCount).unwrap_or(0);
            let bus_name = utf16_string(&bus.name);
            channels.push(count);
            for c in 0..count {
                ports.push(AudioPort {
                    name: if count == 1 { bus_name.clone() } else { format!("{bus_name} {}", c + 1) },
                    // Only inputs can be sidechains; an aux output is just another output.
                    sidechain: dir == kInput && bus.busType == kAux as i32,
                });
            }
        }
    }
    for (id, spec) in plugin.params() {
        layout.param_ids.push(id);
        info.params.push(spec);
    }
    Ok((info, layout))
}

/// An initialised component with its audio processor and edit controller.
///
/// Field order is release order: DPF implements the processor and controller interfaces as sub-objects and
/// frees them with the component, so the component's reference must go last (else: a DPF warning, then a crash).
struct Plugin {
    processor: ComPtr<IAudioProcessor>,
    /// `None` for the rare plugin without a controller (it then exposes no parameters).
    controller: Option<ComPtr<IEditController>>,
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
    fn open(module: &Rc<Module>, cid: &[c_char; 16], render: Option<(u32, usize)>) -> Result<Plugin, String> {
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
    fn buses(&self, dir: BusDirection) -> Vec<BusInfo> {
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
    fn params(&self) -> Vec<(ParamID, ParamSpec)> {
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
    fn start(&mut self, sample_rate: u32, block_size: usize) -> Result<(), String> {
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
    fn stop(&mut self) {
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

/// One parameter in plain units, from the controller's own mapping.
fn param_spec(controller: &ComPtr<IEditController>, info: &ParameterInfo, name: String) -> ParamSpec {
    let plain = |normalized: f64| {
        // SAFETY: a pure conversion on an initialised controller, for a parameter id it reported.
        (unsafe { controller.normalizedParamToPlain(info.id, normalized) }) as f32
    };
    let (a, b) = (plain(0.0), plain(1.0));
    // Some parameters run backwards (plain falls as normalised rises); ranges are stored low to high.
    let (min, max) = if a <= b { (a, b) } else { (b, a) };
    let steps = info.stepCount;
    let kind = match steps {
        1 => ParamKind::Toggle,
        s if s > 1 && min.fract() == 0.0 && max.fract() == 0.0 && max - min == s as f32 => ParamKind::Integer,
        s if s > 1 => {
            // Stepped, but not as whole plain numbers: the steps themselves are the values it takes.
            let choices = (0..=s)
                .map(|k| {
                    let normalized = f64::from(k) / f64::from(s);
                    let mut label: String128 = [0; 128];
                    // SAFETY: `label` is a writable String128; a failed call leaves it empty.
                    unsafe { controller.getParamStringByValue(info.id, normalized, &mut label) };
                    Choice { value: plain(normalized), label: utf16_string(&label) }
                })
                .collect();
            ParamKind::Enumeration(choices)
        }
        _ => ParamKind::Continuous,
    };
    // DPF reports a blank unit as " ".
    let unit = utf16_string(&info.units).trim().to_string();
    ParamSpec {
        id: info.id.to_string(),
        name,
        unit: (!unit.is_empty()).then_some(unit),
        min,
        max,
        default: plain(info.defaultNormalizedValue).clamp(min, max),
        scale: Scale::Linear,
        kind,
    }
}

/// The normalised value whose plain value, by the plugin's own mapping, is exactly `plain` where one exists.
///
/// `plainParamToNormalized` then `normalizedParamToPlain` often misses by an ulp (700 Hz comes back as
/// 700.00006), and the plugin applies its own mapping to what it receives: the DSP would run at a value a hair
/// off the one asked for, and differ from the same plugin in other formats. The mapping is monotonic, so a
/// bisection finds an exact preimage when the direct conversion has none.
fn normalize_exactly(controller: &ComPtr<IEditController>, id: ParamID, plain: f32) -> f64 {
    // SAFETY: pure conversions on an initialised controller, for one of its parameter ids.
    let to_plain = |n: f64| (unsafe { controller.normalizedParamToPlain(id, n) }) as f32;
    // SAFETY: as above.
    let direct = unsafe { controller.plainParamToNormalized(id, f64::from(plain)) };
    if !(0.0..=1.0).contains(&direct) || to_plain(direct) == plain {
        return direct;
    }
    let rising = to_plain(1.0) >= to_plain(0.0);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // 64 halvings reach adjacent doubles, finer than any f32 plain value can resolve.
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        let value = to_plain(mid);
        if value == plain {
            return mid;
        }
        if (value < plain) == rising {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    direct
}

/// Buffers and COM objects for `process`, reused between renders.
struct Buffers {
    /// One channel pointer per audio port, buses in order; each bus points into these. Inputs point straight into
    /// the render's buffers, which are writable scratch (see `Instance::process`).
    input_ptrs: Vec<*mut f32>,
    output_ptrs: Vec<*mut f32>,
    input_buses: Vec<AudioBusBuffers>,
    output_buses: Vec<AudioBusBuffers>,
    changes_in: ComWrapper<ParameterChanges>,
    changes_out: ComWrapper<ParameterChanges>,
    context: ProcessContext,
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
    fn prepare(&mut self, layout: &Layout, sample_rate: u32) {
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
fn link_buses(buses: &mut [AudioBusBuffers], pointers: &mut [*mut f32]) {
    let mut first = 0;
    for bus in buses {
        let channels = bus.numChannels as usize;
        bus.__field0.channelBuffers32 = pointers[first..].as_mut_ptr();
        first += channels;
    }
}

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
    fn error(&self, message: String) -> RenderError {
        RenderError::Plugin { plugin: self.info.name.clone(), message }
    }
}

impl Backend for Vst3Backend {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate<'a>(
        &'a mut self,
        sample_rate: u32,
        block_size: usize,
        values: &[f32],
    ) -> Result<Box<dyn Instance + 'a>, RenderError> {
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
            }
        }
        Ok(Box::new(Vst3Instance {
            plugin: self.plugin.as_mut().expect("set just above"),
            buffers: &mut self.buffers,
            name: &self.info.name,
            block_size,
            first_block: true,
        }))
    }
}

struct Vst3Instance<'a> {
    plugin: &'a mut Plugin,
    buffers: &'a mut Buffers,
    name: &'a str,
    block_size: usize,
    /// The parameter changes go with the first block only.
    first_block: bool,
}

impl Vst3Instance<'_> {
    fn error(&self, message: String) -> RenderError {
        RenderError::Plugin { plugin: self.name.to_string(), message }
    }
}

impl Instance for Vst3Instance<'_> {
    fn process(
        &mut self,
        inputs: &mut [Vec<f32>],
        outputs: &mut [Vec<f32>],
        start: usize,
        frames: usize,
    ) -> Result<(), RenderError> {
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
        let changes = |c: &ComWrapper<ParameterChanges>| {
            c.as_com_ref::<IParameterChanges>().map_or(ptr::null_mut(), |r| r.as_ptr())
        };
        let mut data = ProcessData {
            processMode: kOffline as i32,
            symbolicSampleSize: kSample32 as i32,
            numSamples: frames as i32,
            numInputs: b.input_buses.len() as i32,
            numOutputs: b.output_buses.len() as i32,
            inputs: b.input_buses.as_mut_ptr(),
            outputs: b.output_buses.as_mut_ptr(),
            inputParameterChanges: changes(&b.changes_in),
            outputParameterChanges: changes(&b.changes_out),
            inputEvents: ptr::null_mut(),
            outputEvents: ptr::null_mut(),
            processContext: &mut b.context,
        };
        // SAFETY: the component is active and processing. Every bus has `numChannels` pointers to buffers of at
        // least `frames` (<= maxSamplesPerBlock) samples: input and output slices of `frames` checked above, taken
        // from distinct `Vec`s we hold exclusively for the call. The parameter change lists and the context outlive
        // the call.
        let result = unsafe { self.plugin.processor.process(&mut data) };
        if self.first_block {
            self.first_block = false;
            b.changes_in.clear();
        }
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

#[cfg(test)]
mod tests;
