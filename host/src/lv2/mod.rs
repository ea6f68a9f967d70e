//! LV2 through livi (lilv): discovery, parameter metadata, and fresh instances for each render.
//!
//! Lifecycle of one render: [`Lv2World`] (one per thread: lilv worlds must not be shared between threads that
//! instantiate) → [`Lv2Backend::instantiate`] (a fresh `livi::Instance`, already activated, with every control
//! input set and checked) → `run` block by block with every port connected (atom sequences and CV ports get
//! empty buffers) → dropped. A fresh instance per render is the reset: livi has no deactivate/activate.

#[cfg(feature = "direct-render")]
pub(crate) mod direct;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use livi::event::LV2AtomSequence;
use livi::{PortIndex, PortType};

use crate::info::{AudioPort, Format, PluginInfo};
use crate::param::{Choice, ParamKind, ParamSpec, Scale};
use crate::render::{Backend, Block, Instance, RenderError, Setup};

const LV2_CORE: &str = "http://lv2plug.in/ns/lv2core#";
const PORT_PROPS: &str = "http://lv2plug.in/ns/ext/port-props#";
const UNITS: &str = "http://lv2plug.in/ns/extensions/units#";

/// The LV2 specification bundles whose statements afx reads when it describes a plugin (unit symbols).
const SPEC_BUNDLES: [&str; 2] = ["units.lv2", "core.lv2"];

/// The folders lilv searches: `LV2_PATH`, else Debian's lilv default (`~/.lv2`, the multiarch folder,
/// `/usr/lib/lv2`, `/usr/local/lib/lv2`).
pub(crate) fn search_folders() -> Vec<PathBuf> {
    if let Some(paths) = std::env::var_os("LV2_PATH") {
        return std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()).collect();
    }
    let mut folders = vec![];
    if let Some(home) = afx_sandbox::user_home() {
        folders.push(home.join(".lv2"));
    }
    folders.push(PathBuf::from(format!("/usr/lib/{}-linux-gnu/lv2", std::env::consts::ARCH)));
    folders.extend(["/usr/lib/lv2", "/usr/local/lib/lv2"].map(PathBuf::from));
    folders
}

/// The `file://` URI of a bundle folder, with the trailing slash lilv wants and every byte outside the URI's
/// unreserved set percent-encoded (a bundle path may hold spaces).
fn file_uri(bundle: &Path) -> String {
    let absolute = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    let mut uri = String::from("file://");
    for &byte in absolute.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Bytes per atom sequence buffer: enough for the few events a plugin may emit per block.
const ATOM_CAPACITY: usize = 16 * 1024;

/// All LV2 plugins installed on this machine (`LV2_PATH` and the standard folders, as lilv finds them).
pub struct Lv2World {
    /// Shared with the backends made from it; `Rc` keeps all of them on this thread.
    world: Rc<livi::World>,
    uris: Uris,
}

/// lilv nodes for the properties afx reads.
struct Uris {
    sidechain: livi::lilv::node::Node,
    logarithmic: livi::lilv::node::Node,
    integer: livi::lilv::node::Node,
    toggled: livi::lilv::node::Node,
    enumeration: livi::lilv::node::Node,
    unit: livi::lilv::node::Node,
    unit_symbol: livi::lilv::node::Node,
}

impl Default for Lv2World {
    fn default() -> Self {
        Self::new()
    }
}

impl Lv2World {
    /// Loads every installed bundle (about 0.15 s for ~300 plugins).
    pub fn new() -> Lv2World {
        Self::from_livi(livi::World::new())
    }

    /// Loads one bundle folder (`Foo.lv2`) and none of the other installed ones, so a worker that hosts one plugin
    /// cannot be taken down by another bundle. The LV2 specification bundles whose data afx reads (unit
    /// symbols) are loaded too, from the LV2 search folders: they hold metadata only, no code.
    pub fn with_bundle(bundle: &Path) -> Lv2World {
        let world = livi::World::with_load_bundle(&file_uri(bundle));
        for spec in SPEC_BUNDLES {
            if let Some(found) =
                search_folders().iter().map(|f| f.join(spec)).find(|p| p.join("manifest.ttl").is_file())
            {
                world.raw().load_bundle(&world.raw().new_uri(&file_uri(&found)));
            }
        }
        // What `lilv_world_load_all` does after loading the bundles: read the specifications' data files.
        world.raw().load_specifications();
        Self::from_livi(world)
    }

    fn from_livi(world: livi::World) -> Lv2World {
        let world = Rc::new(world);
        let raw = world.raw();
        let uri = |base: &str, name: &str| raw.new_uri(&format!("{base}{name}"));
        let uris = Uris {
            sidechain: uri(LV2_CORE, "isSideChain"),
            logarithmic: uri(PORT_PROPS, "logarithmic"),
            integer: uri(LV2_CORE, "integer"),
            toggled: uri(LV2_CORE, "toggled"),
            enumeration: uri(LV2_CORE, "enumeration"),
            unit: uri(UNITS, "unit"),
            unit_symbol: uri(UNITS, "symbol"),
        };
        Lv2World { world, uris }
    }

    /// Every plugin livi can host, effects or not.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.world.iter_plugins().map(|p| self.describe(&p).0).collect()
    }

    /// The plugins of one bundle folder; an error when it is no LV2 bundle. A bundle of specifications or
    /// presets only holds no plugin, which is no error. Plugins livi cannot host (unsupported features or port
    /// types) are left out, as in [`Lv2World::new`].
    ///
    /// lilv reads a bundle's Turtle and runs none of its code; loading a plugin starts with its library's entry
    /// point (`lv2_descriptor`). That is run here too, for every plugin, so that a plugin that crashes or hangs
    /// there fails its scan (which runs this in a child process), as its CLAP or VST3 twin would; a plugin its
    /// library does not offer is left out with a problem saying so.
    pub(crate) fn describe_file(bundle: &Path) -> Result<(Vec<PluginInfo>, Vec<String>), String> {
        if !bundle.join("manifest.ttl").is_file() {
            return Err("not an LV2 bundle: it has no manifest.ttl".into());
        }
        let world = Self::with_bundle(bundle);
        let mut offered: std::collections::HashMap<PathBuf, Result<Option<Vec<String>>, String>> = Default::default();
        let (mut plugins, mut problems) = (vec![], vec![]);
        for plugin in world.world.iter_plugins() {
            let info = world.describe(&plugin).0;
            let library = plugin.raw().library_uri().and_then(|uri| uri.path()).map(|(_, p)| PathBuf::from(p));
            let Some(library) = library else {
                problems.push(format!("{}: its bundle names no library (lv2:binary)", info.id));
                continue;
            };
            match offered.entry(library.clone()).or_insert_with(|| entry_point_uris(&library)) {
                Ok(None) => plugins.push(info),
                Ok(Some(uris)) if uris.contains(&info.id) => plugins.push(info),
                Ok(Some(_)) => {
                    problems.push(format!("{}: {} does not offer it (lv2_descriptor)", info.id, library.display()))
                }
                Err(e) => problems.push(format!("{}: {e}", info.id)),
            }
        }
        Ok((plugins, problems))
    }

    /// A backend for the plugin with this URI, or `None` when no installed plugin has it.
    pub(crate) fn backend(&self, uri: &str) -> Option<Lv2Backend> {
        let plugin = self.world.plugin_by_uri(uri)?;
        let (info, param_ports) = self.describe(&plugin);
        let latency_port = plugin.raw().latency_port_index().map(PortIndex);
        Some(Lv2Backend {
            world: self.world.clone(),
            info,
            plugin,
            param_ports,
            latency_port,
            features: None,
            atoms: Atoms::default(),
        })
    }

    fn describe(&self, plugin: &livi::Plugin) -> (PluginInfo, Vec<PortIndex>) {
        let raw = plugin.raw();
        let path = raw.bundle_uri().path().map(|(_, p)| PathBuf::from(p)).unwrap_or_default();
        let mut info = PluginInfo {
            format: Format::Lv2,
            id: plugin.uri(),
            name: plugin.name(),
            path,
            audio_inputs: vec![],
            audio_outputs: vec![],
            params: vec![],
        };
        let mut param_ports = vec![];
        for port in plugin.ports() {
            let Some(lport) = raw.port_by_index(port.index.0) else {
                continue;
            };
            match port.port_type {
                PortType::AudioInput => info
                    .audio_inputs
                    .push(AudioPort { name: port.name.clone(), sidechain: lport.has_property(&self.uris.sidechain) }),
                PortType::AudioOutput => {
                    info.audio_outputs.push(AudioPort { name: port.name.clone(), sidechain: false })
                }
                PortType::ControlInput => {
                    param_ports.push(port.index);
                    info.params.push(self.param_spec(&port, &lport));
                }
                _ => {}
            }
        }
        (info, param_ports)
    }

    fn param_spec(&self, port: &livi::Port, lport: &livi::lilv::port::Port) -> ParamSpec {
        let u = &self.uris;
        let (min, max) = match (port.min_value, port.max_value) {
            (Some(min), Some(max)) if min <= max => (min, max),
            (Some(max), Some(min)) => (min, max),
            // A port with no declared range takes only its default: afx never guesses a range.
            _ => (port.default_value, port.default_value),
        };
        let kind = if lport.has_property(&u.toggled) {
            ParamKind::Toggle
        } else if lport.has_property(&u.enumeration) {
            let mut choices: Vec<Choice> = lport
                .scale_points()
                .iter()
                .filter_map(|sp| {
                    // Turtle writes `rdf:value 2` as an integer literal, `2.0` as a decimal: accept both.
                    let value = sp.value();
                    let value = value.as_float().or_else(|| value.as_int().map(|i| i as f32))?;
                    Some(Choice { value, label: sp.label().as_str().unwrap_or("").to_string() })
                })
                .collect();
            choices.sort_by(|a, b| a.value.total_cmp(&b.value));
            ParamKind::Enumeration(choices)
        } else if lport.has_property(&u.integer) {
            ParamKind::Integer
        } else {
            ParamKind::Continuous
        };
        let unit = lport.get(&u.unit).and_then(|unit| {
            self.world
                .raw()
                .get(Some(&unit), Some(&u.unit_symbol), None)
                .and_then(|s| s.as_str().map(str::to_string))
                .or_else(|| unit.as_uri().and_then(|uri| uri.rsplit('#').next()).map(str::to_string))
        });
        ParamSpec {
            id: port.symbol.clone(),
            name: port.name.clone(),
            unit,
            min,
            max,
            default: port.default_value.clamp(min, max),
            scale: if lport.has_property(&u.logarithmic) { Scale::Log } else { Scale::Linear },
            kind,
        }
    }
}

/// Atom and CV buffers for the ports afx does not drive, rebuilt when the features change.
#[derive(Default)]
struct Atoms {
    inputs: Vec<LV2AtomSequence>,
    outputs: Vec<LV2AtomSequence>,
    cv_inputs: Vec<Vec<f32>>,
    cv_outputs: Vec<Vec<f32>>,
}

pub(crate) struct Lv2Backend {
    world: Rc<livi::World>,
    info: PluginInfo,
    plugin: livi::Plugin,
    /// The control port behind each of `info.params`, in order.
    param_ports: Vec<PortIndex>,
    latency_port: Option<PortIndex>,
    /// Features for one block size (livi bakes the block bounds into them).
    features: Option<(usize, Arc<livi::Features>)>,
    atoms: Atoms,
}

impl Lv2Backend {
    fn features(&mut self, block_size: usize) -> Result<Arc<livi::Features>, RenderError> {
        if let Some((size, features)) = &self.features
            && *size == block_size
        {
            return Ok(features.clone());
        }
        let features = self
            .world
            .try_build_features(livi::FeaturesBuilder { min_block_length: 1, max_block_length: block_size })
            .map_err(|e| self.error(format!("cannot build LV2 features for block size {block_size}: {e}")))?;
        let counts = self.plugin.port_counts();
        self.atoms = Atoms {
            inputs: (0..counts.atom_sequence_inputs).map(|_| LV2AtomSequence::new(&features, ATOM_CAPACITY)).collect(),
            outputs: (0..counts.atom_sequence_outputs)
                .map(|_| LV2AtomSequence::new(&features, ATOM_CAPACITY))
                .collect(),
            cv_inputs: vec![vec![0.0; block_size]; counts.cv_inputs],
            cv_outputs: vec![vec![0.0; block_size]; counts.cv_outputs],
        };
        self.features = Some((block_size, features.clone()));
        Ok(features)
    }
}

impl Backend for Lv2Backend {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate<'a>(&'a mut self, setup: &Setup<'_>) -> Result<Box<dyn Instance + 'a>, RenderError> {
        let Setup { sample_rate, settings, values } = *setup;
        let features = self.features(settings.block_size)?;
        // SAFETY: the sample rate is positive and finite (Audio refuses 0); the plugin's library and metadata
        // come from an installed bundle that lilv validated. Native code is trusted here: afx isolates
        // untrusted plugins in worker processes, not in this call.
        let mut instance = unsafe { self.plugin.instantiate(features, f64::from(sample_rate)) }
            .map_err(|e| self.error(format!("instantiation at {sample_rate} Hz failed: {e}")))?;
        for ((spec, &port), &value) in self.info.params.iter().zip(&self.param_ports).zip(values) {
            // livi clamps to the port's range and returns what it set: a difference is an error, never a clamp.
            match instance.set_control_input(port, value) {
                Some(set) if set == value => {}
                set => {
                    return Err(self.error(format!(
                        "control port {:?} took {set:?} instead of {value} (range [{}, {}])",
                        spec.id, spec.min, spec.max
                    )));
                }
            }
        }
        Ok(Box::new(Lv2Instance {
            instance,
            atoms: &mut self.atoms,
            latency_port: self.latency_port,
            name: self.info.name.clone(),
            params: &self.info.params,
            param_ports: &self.param_ports,
            min_split: settings.min_split.max(1),
            last_change: 0,
            pending: VecDeque::new(),
        }))
    }
}

struct Lv2Instance<'a> {
    instance: livi::Instance,
    atoms: &'a mut Atoms,
    latency_port: Option<PortIndex>,
    name: String,
    params: &'a [ParamSpec],
    param_ports: &'a [PortIndex],
    /// The shortest run() between two value changes (see [`crate::automation`]).
    min_split: usize,
    /// The frame at which control values last changed (0: the values set at instantiation).
    last_change: usize,
    /// Changes not applied yet, at absolute frames, in order: (frame, parameter, value).
    pending: VecDeque<(usize, usize, f32)>,
}

impl Lv2Instance<'_> {
    /// Sets one control port, refusing a clamp.
    fn set(&mut self, param: usize, value: f32) -> Result<(), RenderError> {
        match self.instance.set_control_input(self.param_ports[param], value) {
            Some(set) if set == value => Ok(()),
            set => {
                let spec = &self.params[param];
                Err(RenderError::Plugin {
                    plugin: self.name.clone(),
                    message: format!(
                        "control port {:?} took {set:?} instead of {value} (range [{}, {}])",
                        spec.id, spec.min, spec.max
                    ),
                })
            }
        }
    }

    /// One run() over `frames` frames from `start`, with the control values as they are.
    fn run(
        &mut self,
        inputs: &[Vec<f32>],
        outputs: &mut [Vec<f32>],
        start: usize,
        frames: usize,
    ) -> Result<(), RenderError> {
        let range = start..start + frames;
        let Atoms { inputs: atom_in, outputs: atom_out, cv_inputs, cv_outputs } = &mut *self.atoms;
        let ports = livi::EmptyPortConnections::new()
            .with_audio_inputs(inputs.iter().map(|b| &b[range.clone()]))
            .with_audio_outputs(outputs.iter_mut().map(|b| &mut b[range.clone()]))
            .with_atom_sequence_inputs(atom_in.iter())
            .with_atom_sequence_outputs(atom_out.iter_mut())
            .with_cv_inputs(cv_inputs.iter().map(|b| &b[..frames]))
            .with_cv_outputs(cv_outputs.iter_mut().map(|b| &mut b[..frames]));
        // SAFETY: every port gets a buffer of at least `frames` frames in ascending port order (the iterators
        // follow livi's own port order), atom sequences were made with this instance's features, and the
        // buffers outlive the call. `frames` is within the block bounds the features were built with.
        unsafe { self.instance.run(frames, ports) }
            .map_err(|e| RenderError::Plugin { plugin: self.name.clone(), message: format!("run failed: {e}") })
    }
}

impl Instance for Lv2Instance<'_> {
    /// Control ports hold for a whole run(), so the call is split where a change is due: at its frame, but no
    /// sooner than `min_split` frames after the previous change (see [`crate::automation`]).
    fn process(&mut self, block: Block<'_>) -> Result<(), RenderError> {
        let Block { inputs, outputs, start, frames, changes } = block;
        self.pending.extend(changes.iter().map(|c| (start + c.offset, c.param, c.value)));
        let (mut pos, end) = (start, start + frames);
        while pos < end {
            let due = self.pending.front().map(|&(frame, _, _)| frame.max(self.last_change + self.min_split));
            match due {
                Some(due) if due <= pos => {
                    while let Some(&(frame, param, value)) = self.pending.front()
                        && frame <= pos
                    {
                        self.set(param, value)?;
                        self.pending.pop_front();
                    }
                    self.last_change = pos;
                }
                Some(due) if due < end => {
                    self.run(inputs, outputs, pos, due - pos)?;
                    pos = due;
                }
                _ => {
                    self.run(inputs, outputs, pos, end - pos)?;
                    pos = end;
                }
            }
        }
        Ok(())
    }

    fn latency(&self) -> Result<usize, RenderError> {
        let Some(port) = self.latency_port else {
            return Ok(0);
        };
        let value = self.instance.control_output(port).unwrap_or(0.0);
        if !value.is_finite() || value < 0.0 {
            return Err(RenderError::Plugin {
                plugin: self.name.clone(),
                message: format!("reports an invalid latency of {value} frames"),
            });
        }
        Ok(value.round() as usize)
    }
}

/// The URIs a plugin library's `lv2_descriptor` offers: the entry point every host calls first (`None` for a
/// library with only the newer `lv2_lib_descriptor`, which needs host features to call; lilv calls it when an
/// instance is made). Loading the library runs its initialisers, and the entry point runs plugin code: call it
/// only where a crash or a hang is contained (the scanner's child process).
fn entry_point_uris(library: &Path) -> Result<Option<Vec<String>>, String> {
    /// The head of `LV2_Descriptor` (lv2core/lv2.h): its first field is the plugin's URI.
    #[repr(C)]
    struct DescriptorHead {
        uri: *const std::ffi::c_char,
    }
    type Entry = unsafe extern "C" fn(index: u32) -> *const DescriptorHead;
    // SAFETY: loading a plugin library runs its initialisers; that is what describing it means, and the caller
    // runs this in a process of its own. The library stays loaded while `entry` is used below.
    let lib =
        unsafe { libloading::Library::new(library) }.map_err(|e| format!("cannot load {}: {e}", library.display()))?;
    // SAFETY: `lv2_descriptor` has this signature in every LV2 library (lv2core/lv2.h).
    let entry = match unsafe { lib.get::<Entry>(b"lv2_descriptor\0") } {
        Ok(entry) => entry,
        Err(e) => {
            // SAFETY: only looked up, never called (its signature differs: see lv2core/lv2.h).
            let newer = unsafe { lib.get::<*const ()>(b"lv2_lib_descriptor\0") }.is_ok();
            return if newer { Ok(None) } else { Err(format!("{} has no lv2_descriptor: {e}", library.display())) };
        }
    };
    let mut uris = vec![];
    // A library offers its plugins at indices 0, 1, ... until the entry point returns null.
    for index in 0..4096 {
        // SAFETY: the entry point takes any index and returns null past the last plugin.
        let descriptor = unsafe { entry(index) };
        if descriptor.is_null() {
            break;
        }
        // SAFETY: a non-null descriptor points at a static LV2_Descriptor whose URI is a NUL-terminated string.
        let uri = unsafe { (*descriptor).uri };
        if !uri.is_null() {
            // SAFETY: as above: a NUL-terminated string that lives as long as the library.
            uris.push(unsafe { std::ffi::CStr::from_ptr(uri) }.to_string_lossy().into_owned());
        }
    }
    Ok(Some(uris))
}
