//! CLAP through clack-host: discovery, parameter metadata, and fresh instances for each render.
//!
//! Lifecycle of one render: [`ClapWorld`] (one per thread; it loads every `.clap` file once) →
//! [`ClapBackend::instantiate`] (a fresh `PluginInstance`, activated for the render's rate and block size, its
//! parameters set with `params.flush` before processing starts) → `process` block by block, the
//! parameter values repeated as events at frame 0 of the first block → stopped, deactivated and destroyed. A
//! fresh instance per render is the reset: it cannot carry state over, whatever the plugin's `reset` does.

#[cfg(feature = "direct-render")]
pub(crate) mod direct;

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use clack_extensions::audio_ports::{AudioPortFlags, AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{ParamInfoBuffer, ParamInfoFlags, PluginParams};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;

use crate::info::{AudioPort, Format, PluginInfo};
use crate::param::{ParamKind, ParamSpec, Scale};
use crate::render::{Backend, Block, Instance, RenderError, Setup};

/// afx's side of the CLAP host interface. Offline rendering needs no callbacks, but a plugin may call one
/// anyway: DPF plugins that report latency (ZaMaximX2) call `clap_host_latency.changed` without checking that the
/// host offers it, and crashed on a null pointer when it did not. afx re-reads the latency after activation, so
/// `changed` has nothing to do.
pub(crate) struct Handlers;

pub(crate) struct MainThread;

impl MainThreadHandler<'_> for MainThread {}

impl HostLatencyImpl for MainThread {
    fn changed(&self) {}
}

impl HostHandlers for Handlers {
    type Shared<'a> = ();
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &()) {
        builder.register::<HostLatency>();
    }
}

/// Folders searched after those in `CLAP_PATH`, in the order the CLAP spec lists them for Linux.
const SYSTEM_FOLDERS: [&str; 2] = ["/usr/lib/clap", "/usr/local/lib/clap"];

/// One loaded `.clap` file and the ids of the plugins it holds.
struct ClapFile {
    path: PathBuf,
    entry: PluginEntry,
    ids: Vec<CString>,
}

/// All CLAP plugins installed on this machine: `CLAP_PATH`, `~/.clap`, `/usr/lib/clap`, `/usr/local/lib/clap`.
///
/// Create one per thread: the instances its backends make are `!Send`.
pub struct ClapWorld {
    files: Vec<ClapFile>,
    host: HostInfo,
}

impl Default for ClapWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl ClapWorld {
    /// Finds and loads every `.clap` file (a file that fails to load is logged and skipped).
    pub fn new() -> ClapWorld {
        Self::with_files(&find_clap_files(&search_folders()))
    }

    /// Loads only these `.clap` files (a file that fails to load is logged and skipped), so a worker that
    /// hosts one plugin cannot be taken down by another installed file.
    pub fn with_files(paths: &[PathBuf]) -> ClapWorld {
        let files = paths
            .iter()
            .filter_map(|path| {
                load(path).map_err(|e| tracing::warn!("skipping CLAP file {}: {e}", path.display())).ok()
            })
            .collect();
        ClapWorld { files, host: host_info() }
    }

    /// The plugins of one `.clap` file, and what went wrong with those that could not be described; an error
    /// when the file itself cannot be loaded.
    pub(crate) fn describe_file(path: &Path) -> Result<(Vec<PluginInfo>, Vec<String>), String> {
        let file = load(path)?;
        if file.entry.get_plugin_factory().is_none() {
            return Err("its entry offers no plugin factory".into());
        }
        let host = host_info();
        let (mut plugins, mut problems) = (vec![], vec![]);
        for id in &file.ids {
            match describe(&file, id, &host) {
                Ok(described) => plugins.push(described.info),
                Err(e) => problems.push(format!("plugin {id:?}: {e}")),
            }
        }
        Ok((plugins, problems))
    }

    /// Every plugin in every file, effects or not (a plugin that fails to instantiate is logged and skipped).
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.files
            .iter()
            .flat_map(|file| file.ids.iter().map(move |id| (file, id)))
            .filter_map(|(file, id)| match describe(file, id, &self.host) {
                Ok(described) => Some(described.info),
                Err(e) => {
                    tracing::warn!("skipping CLAP plugin {id:?} in {}: {e}", file.path.display());
                    None
                }
            })
            .collect()
    }

    /// A backend for the plugin with this CLAP id, or `None` when no loaded file has it (or it fails to
    /// instantiate). With the same id in several files, the first in search order wins, as in other hosts.
    pub(crate) fn backend(&self, id: &str) -> Option<ClapBackend> {
        let (file, plugin_id) = self
            .files
            .iter()
            .find_map(|file| Some((file, file.ids.iter().find(|i| i.to_bytes() == id.as_bytes())?)))?;
        let described = describe(file, plugin_id, &self.host)
            .map_err(|e| tracing::warn!("cannot describe CLAP plugin {id:?} in {}: {e}", file.path.display()))
            .ok()?;
        Some(ClapBackend {
            entry: file.entry.clone(),
            host: self.host.clone(),
            plugin_id: plugin_id.clone(),
            info: described.info,
            param_ids: described.param_ids,
            input_channels: described.input_channels,
            output_channels: described.output_channels,
        })
    }
}

pub(crate) fn host_info() -> HostInfo {
    HostInfo::new("afx", "afx", "", env!("CARGO_PKG_VERSION")).expect("host info strings have no NUL bytes")
}

/// `CLAP_PATH` (colon-separated), then `~/.clap`, then the system folders.
pub(crate) fn search_folders() -> Vec<PathBuf> {
    crate::scan::files::search_path("CLAP_PATH", ".clap", &SYSTEM_FOLDERS)
}

/// Every `.clap` file under `folders`, recursively, in folder order and sorted within each folder so the order
/// is reproducible. A file or folder reached twice (listed twice, or through a symlink) counts once.
pub(crate) fn find_clap_files(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut found = vec![];
    for folder in folders {
        walk(folder, &mut seen, &mut found);
    }
    found
}

fn walk(folder: &Path, seen: &mut HashSet<PathBuf>, found: &mut Vec<PathBuf>) {
    // Canonical paths also stop symlink loops.
    if !folder.canonicalize().is_ok_and(|canonical| seen.insert(canonical)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, seen, found);
        } else if path.extension().is_some_and(|ext| ext == "clap")
            && path.canonicalize().is_ok_and(|canonical| seen.insert(canonical))
        {
            found.push(path);
        }
    }
}

fn load(path: &Path) -> Result<ClapFile, String> {
    // SAFETY: loading runs the library's initialisers and its CLAP entry's `init`. The file is one the user
    // installed or named as a plugin; native code is trusted here, as in every host (afx isolates untrusted
    // plugins in worker and scan processes, not in this call).
    let entry = unsafe { PluginEntry::load(path) }.map_err(|e| e.to_string())?;
    let ids = entry
        .get_plugin_factory()
        .map(|factory| factory.plugin_descriptors().filter_map(|d| Some(d.id()?.to_owned())).collect())
        .unwrap_or_default();
    Ok(ClapFile { path: path.to_path_buf(), entry, ids })
}

/// What one plugin exposes, read from an instance that was never activated.
struct Described {
    info: PluginInfo,
    /// The CLAP parameter behind each of `info.params`, in order.
    param_ids: Vec<ClapId>,
    /// Channels of each audio port, in port order; `info.audio_inputs` has one entry per channel.
    input_channels: Vec<usize>,
    output_channels: Vec<usize>,
}

fn describe(file: &ClapFile, id: &CStr, host: &HostInfo) -> Result<Described, String> {
    let mut instance = new_instance(&file.entry, id, host)?;
    let name = file
        .entry
        .get_plugin_factory()
        .and_then(|f| f.plugin_descriptors().find(|d| d.id() == Some(id)))
        .and_then(|d| d.name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.to_string_lossy().into_owned());
    let shared = instance.plugin_shared_handle();
    let ports = shared.get_extension::<PluginAudioPorts>();
    let params = shared.get_extension::<PluginParams>();
    let handle = instance.plugin_handle();

    let (audio_inputs, input_channels) = match ports {
        Some(ports) => audio_ports(&ports, &handle, true)?,
        None => (vec![], vec![]),
    };
    let (audio_outputs, output_channels) = match ports {
        Some(ports) => audio_ports(&ports, &handle, false)?,
        None => (vec![], vec![]),
    };
    let mut specs = vec![];
    let mut param_ids = vec![];
    if let Some(params) = params {
        let mut buffer = ParamInfoBuffer::new();
        for index in 0..params.count(&handle) {
            let info = params
                .get_info(&handle, index, &mut buffer)
                .ok_or_else(|| format!("params.get_info({index}) failed"))?;
            // Read-only parameters are meters; hidden ones are unused now. Neither is something to set.
            if info.flags.intersects(ParamInfoFlags::IS_READONLY | ParamInfoFlags::IS_HIDDEN) {
                continue;
            }
            param_ids.push(info.id);
            specs.push(param_spec(&info));
        }
    }
    Ok(Described {
        info: PluginInfo {
            format: Format::Clap,
            id: id.to_string_lossy().into_owned(),
            name,
            path: file.path.clone(),
            audio_inputs,
            audio_outputs,
            params: specs,
        },
        param_ids,
        input_channels,
        output_channels,
    })
}

/// One [`AudioPort`] per channel of every port, and each port's channel count.
fn audio_ports(
    ports: &PluginAudioPorts,
    handle: &PluginMainThreadHandle,
    is_input: bool,
) -> Result<(Vec<AudioPort>, Vec<usize>), String> {
    let mut buffer = AudioPortInfoBuffer::new();
    let count = ports.count(handle, is_input);
    let mut infos = vec![];
    for index in 0..count {
        let info = ports
            .get(handle, index, is_input, &mut buffer)
            .ok_or_else(|| format!("audio_ports.get({index}, input: {is_input}) failed"))?;
        infos.push((
            String::from_utf8_lossy(info.name).into_owned(),
            info.channel_count as usize,
            info.flags.contains(AudioPortFlags::IS_MAIN),
        ));
    }
    // The spec puts the main port at index 0; a plugin that flags none still gets its first port as the signal.
    let any_main = infos.iter().any(|(_, _, main)| *main);
    let mut channels = vec![];
    for (index, (name, count, main)) in infos.iter().enumerate() {
        let sidechain = is_input && !(*main || !any_main && index == 0);
        channels.extend((0..*count).map(|c| AudioPort {
            name: if *count == 1 { name.clone() } else { format!("{name} {}", c + 1) },
            sidechain,
        }));
    }
    Ok((channels, infos.iter().map(|(_, count, _)| *count).collect()))
}

fn param_spec(info: &clack_extensions::params::ParamInfo) -> ParamSpec {
    let (min, max) = (info.min_value as f32, info.max_value as f32);
    let (min, max) = if min <= max { (min, max) } else { (max, min) };
    // CLAP stepped values are whole numbers; a stepped 0/1 parameter is a switch, as LV2's toggled is.
    let kind = if !info.flags.contains(ParamInfoFlags::IS_STEPPED) {
        ParamKind::Continuous
    } else if min == 0.0 && max == 1.0 {
        ParamKind::Toggle
    } else {
        ParamKind::Integer
    };
    ParamSpec {
        id: info.id.get().to_string(),
        name: String::from_utf8_lossy(info.name).into_owned(),
        unit: None,
        min,
        max,
        default: (info.default_value as f32).clamp(min, max),
        scale: Scale::Linear,
        kind,
    }
}

pub(crate) fn new_instance(
    entry: &PluginEntry,
    id: &CStr,
    host: &HostInfo,
) -> Result<PluginInstance<Handlers>, String> {
    PluginInstance::<Handlers>::new(|_| (), |_| MainThread, entry, id, host)
        .map_err(|e| format!("instantiation failed: {e}"))
}

pub(crate) struct ClapBackend {
    entry: PluginEntry,
    host: HostInfo,
    plugin_id: CString,
    info: PluginInfo,
    /// The CLAP parameter behind each of `info.params`, in order.
    param_ids: Vec<ClapId>,
    input_channels: Vec<usize>,
    output_channels: Vec<usize>,
}

impl Backend for ClapBackend {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate<'a>(&'a mut self, setup: &Setup<'_>) -> Result<Box<dyn Instance + 'a>, RenderError> {
        let Setup { sample_rate, settings, values } = *setup;
        let block_size = settings.block_size;
        let mut instance = new_instance(&self.entry, &self.plugin_id, &self.host).map_err(|e| self.error(e))?;
        let max_frames = u32::try_from(block_size).map_err(|_| self.error(format!("block size {block_size}")))?;
        let mut events = EventBuffer::with_capacity(values.len());
        for (&id, &value) in self.param_ids.iter().zip(values) {
            events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), f64::from(value)));
        }

        let shared = instance.plugin_shared_handle();
        let params = shared.get_extension::<PluginParams>();
        let latency_ext = shared.get_extension::<PluginLatency>();
        let config = PluginAudioConfiguration {
            sample_rate: f64::from(sample_rate),
            min_frames_count: 1,
            max_frames_count: max_frames,
        };
        let mut stopped = instance
            .activate(|_, _| (), config)
            .map_err(|e| self.error(format!("activation at {sample_rate} Hz, {block_size} frames failed: {e}")))?;
        // Values are flushed once active, before processing starts, and repeated as events at frame 0 of the
        // first block; both reach the DSP before its first sample. Reading them back catches a plugin that
        // clamps or drops a value.
        if let Some(params) = params {
            params.flush_active(&mut stopped.plugin_handle(), &events.as_input(), &mut OutputEvents::void());
            let handle = instance.plugin_handle();
            for ((spec, &id), &value) in self.info.params.iter().zip(&self.param_ids).zip(values) {
                let got = params.get_value(&handle, id);
                if got != Some(f64::from(value)) {
                    let message = format!(
                        "parameter {} ({:?}) holds {got:?} instead of {value} after params.flush (range [{}, {}])",
                        spec.id, spec.name, spec.min, spec.max
                    );
                    instance.deactivate(stopped);
                    return Err(self.error(message));
                }
            }
        }
        // The latency extension may be read from activation on; the value is fixed until the next activation.
        let latency = latency_ext.map_or(0, |l| l.get(&instance.plugin_handle())) as usize;
        let processor = match stopped.start_processing() {
            Ok(processor) => processor,
            Err(e) => {
                let message = format!("start_processing failed: {e}");
                instance.deactivate(e.into_stopped_processor());
                return Err(self.error(message));
            }
        };
        let channels = self.input_channels.iter().sum();
        Ok(Box::new(ClapInstance {
            processor: Some(processor),
            instance,
            events,
            param_ids: &self.param_ids,
            input_channels: &self.input_channels,
            output_channels: &self.output_channels,
            input_ports: AudioPorts::with_capacity(channels, self.input_channels.len()),
            output_ports: AudioPorts::with_capacity(self.output_channels.iter().sum(), self.output_channels.len()),
            latency,
            name: self.info.name.clone(),
        }))
    }
}

struct ClapInstance<'a> {
    /// `None` only while dropping.
    processor: Option<StartedPluginAudioProcessor<Handlers>>,
    instance: PluginInstance<Handlers>,
    /// The block's parameter events: the values at frame 0 of the first block, then each block's changes.
    events: EventBuffer,
    param_ids: &'a [ClapId],
    input_channels: &'a [usize],
    output_channels: &'a [usize],
    input_ports: AudioPorts,
    output_ports: AudioPorts,
    latency: usize,
    name: String,
}

/// Splits a flat list of channels into consecutive groups of the given sizes (one group per port).
pub(crate) fn split_ports<'s, T>(
    mut rest: &'s mut [T],
    sizes: &'s [usize],
) -> impl ExactSizeIterator<Item = &'s mut [T]> {
    sizes.iter().map(move |&n| {
        let (port, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        port
    })
}

impl Instance for ClapInstance<'_> {
    fn process(&mut self, block: Block<'_>) -> Result<(), RenderError> {
        let Block { inputs, outputs, start, frames, changes } = block;
        let range = start..start + frames;
        for change in changes {
            let (time, id) = (change.offset as u32, self.param_ids[change.param]);
            self.events.push(&ParamValueEvent::new(time, id, Pckn::match_all(), f64::from(change.value)));
        }
        // The render's own input buffers, handed over writable (see `Instance::process`): no copy.
        let input_audio =
            self.input_ports.with_input_buffers(split_ports(inputs, self.input_channels).map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    port.iter_mut().map(|c| InputChannel::variable(&mut c[range.clone()])),
                ),
            }));
        let mut output_audio =
            self.output_ports.with_output_buffers(split_ports(outputs, self.output_channels).map(|port| {
                AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[range.clone()])),
                }
            }));
        let processor = self.processor.as_mut().expect("the processor lives until drop");
        let result = processor.process(
            &input_audio,
            &mut output_audio,
            &self.events.as_input(),
            &mut OutputEvents::void(),
            Some(start as u64),
            None,
        );
        self.events.clear();
        result.map(|_| ()).map_err(|e| RenderError::Plugin {
            plugin: self.name.clone(),
            message: format!("process failed at frame {start}: {e}"),
        })
    }

    fn latency(&self) -> Result<usize, RenderError> {
        Ok(self.latency)
    }
}

impl Drop for ClapInstance<'_> {
    fn drop(&mut self) {
        // CLAP wants processing stopped and the plugin deactivated before it is destroyed.
        if let Some(processor) = self.processor.take() {
            self.instance.deactivate(processor.stop_processing());
        }
    }
}

#[cfg(test)]
mod tests;
