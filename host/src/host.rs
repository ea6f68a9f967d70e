//! The plugins installed on this machine, in every format: scanning and loading by id, name or file path.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::clap::ClapWorld;
use crate::info::{Format, PluginInfo};
use crate::lv2::Lv2World;
use crate::plugin::Effect;
use crate::render::Backend;
use crate::scan;
use crate::suggest;
use crate::vst3::Vst3World;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no installed {scope}plugin has the id or name {key:?}{}{}", suggest::did_you_mean(.suggestions), failed_files(.failed))]
    NotFound { key: String, scope: String, suggestions: Vec<String>, failed: Vec<scan::Failure> },
    #[error("{key:?} names several plugins: {}; give the format (--format) or the id", .matches.join(", "))]
    Ambiguous { key: String, matches: Vec<String> },
    #[error("{name} ({format} {id}) is not an effect: it has {inputs} main audio inputs and {outputs} audio outputs")]
    NotAnEffect { name: String, format: Format, id: String, inputs: usize, outputs: usize },
    #[error("{format} plugin {id} was listed but could not be loaded (see the log)")]
    Unloadable { format: Format, id: String },
    #[error(
        "{} does not exist (a plugin path is a .vst3 bundle, a .clap file or an LV2 bundle folder)",
        .path.display()
    )]
    NoSuchFile { path: PathBuf },
    #[error(
        "{} is not a plugin file: give a .vst3 bundle, a .clap file or an LV2 bundle folder (.lv2 with a manifest.ttl)",
        .path.display()
    )]
    NotAPluginFile { path: PathBuf },
    #[error("{} is a {file} plugin file, not {asked}", .path.display())]
    FormatMismatch { path: PathBuf, file: Format, asked: Format },
    #[error("the {format} plugin file {} holds no plugin afx can host", .path.display())]
    NoPluginInFile { format: Format, path: PathBuf },
    #[error(
        "the {format} plugin file {} holds {} plugins: {}; give the id of one instead of the path",
        .path.display(), .plugins.len(), .plugins.join(", ")
    )]
    SeveralInFile { format: Format, path: PathBuf, plugins: Vec<String> },
    #[error(transparent)]
    Describe(#[from] scan::DescribeError),
}

/// One format's plugins, discovered on first use.
struct FormatWorld<W> {
    world: OnceCell<W>,
    plugins: OnceCell<Vec<PluginInfo>>,
}

impl<W> Default for FormatWorld<W> {
    fn default() -> Self {
        FormatWorld { world: OnceCell::new(), plugins: OnceCell::new() }
    }
}

/// The world of ONE plugin file: what a host loads when it knows which file holds the plugin.
enum FileWorld {
    Lv2(Lv2World),
    Clap(ClapWorld),
    Vst3(Vst3World),
}

/// Every installed plugin afx can host. Create one per thread: plugin libraries and their worlds are not
/// shared between threads (a lilv world shared by two instantiating threads crashed in our measurements), and
/// the effects it loads stay on its thread.
///
/// [`Host::new`] discovers each format the first time it is needed (an LV2-only job never loads CLAP files),
/// and loads every file of that format to do so. [`Host::with_catalogue`] takes the plugins from a scan
/// ([`crate::scan::Scanner`]) instead and loads only the one file that holds the plugin asked for, so no other
/// installed plugin can take it down.
#[derive(Default)]
pub struct Host {
    lv2: FormatWorld<Lv2World>,
    clap: FormatWorld<ClapWorld>,
    vst3: FormatWorld<Vst3World>,
    /// Plugins come from a catalogue: load each from its own file, never through a format world.
    from_catalogue: bool,
    /// Single-file worlds, by format and path (catalogue plugins, and plugins named by path).
    files: RefCell<HashMap<(Format, PathBuf), FileWorld>>,
    /// Plugin files the catalogue's scan could not describe: named when a plugin is not found (it may be in one).
    failed: Vec<scan::Failure>,
    /// Plugins of files named by path and described here, by canonical path.
    described: RefCell<HashMap<PathBuf, (Format, Vec<PluginInfo>)>>,
}

impl Host {
    /// A host that discovers plugins the way other hosts do: LV2 in `LV2_PATH`, else `~/.lv2`,
    /// `/usr/local/lib/lv2`, `/usr/lib/lv2`; CLAP in `CLAP_PATH`, `~/.clap`, `/usr/lib/clap`,
    /// `/usr/local/lib/clap`; VST3 in `VST3_PATH` (afx's own), `~/.vst3`,
    /// `/usr/lib/vst3`, `/usr/local/lib/vst3`.
    pub fn new() -> Host {
        Host::default()
    }

    /// A host whose plugins are these (a scan's [`crate::scan::Catalogue::plugins`]): ids, names and paths
    /// resolve against them without loading anything, and [`Host::load`] loads only the file (or bundle) of
    /// the plugin it returns. A plugin named by the path of a file outside the catalogue is described from that
    /// file alone.
    pub fn with_catalogue(plugins: Vec<PluginInfo>) -> Host {
        let host = Host { from_catalogue: true, ..Host::default() };
        for format in Format::ALL {
            let mine: Vec<PluginInfo> = plugins.iter().filter(|p| p.format == format).cloned().collect();
            let cell = match format {
                Format::Lv2 => &host.lv2.plugins,
                Format::Clap => &host.clap.plugins,
                Format::Vst3 => &host.vst3.plugins,
            };
            let _ = cell.set(mine);
        }
        host
    }

    /// [`Host::with_catalogue`] of a whole scan: a plugin that is not found is reported with the files the scan
    /// could not load (a crash or a hang while loading: the plugin asked for may be in one of them).
    pub fn from_catalogue(catalogue: scan::Catalogue) -> Host {
        Host { failed: catalogue.failed, ..Host::with_catalogue(catalogue.plugins) }
    }

    fn lv2(&self) -> &Lv2World {
        self.lv2.world.get_or_init(Lv2World::new)
    }

    fn clap(&self) -> &ClapWorld {
        self.clap.world.get_or_init(ClapWorld::new)
    }

    fn vst3(&self) -> &Vst3World {
        self.vst3.world.get_or_init(Vst3World::new)
    }

    /// Descriptions of every installed plugin of one format.
    pub fn plugins(&self, format: Format) -> &[PluginInfo] {
        match format {
            Format::Lv2 => self.lv2.plugins.get_or_init(|| self.lv2().plugins()),
            Format::Clap => self.clap.plugins.get_or_init(|| self.clap().plugins()),
            Format::Vst3 => self.vst3.plugins.get_or_init(|| self.vst3().plugins()),
        }
    }

    /// Descriptions of every installed plugin of the given format (all formats when `None`), effects or not,
    /// sorted by format, name and id.
    pub fn scan(&self, format: Option<Format>) -> Vec<PluginInfo> {
        let mut plugins: Vec<PluginInfo> = Format::ALL
            .into_iter()
            .filter(|f| format.is_none_or(|wanted| wanted == *f))
            .flat_map(|f| self.plugins(f).iter().cloned())
            .collect();
        plugins.sort_by(|a, b| (a.format.as_str(), &a.name, &a.id).cmp(&(b.format.as_str(), &b.name, &b.id)));
        plugins
    }

    /// Loads an effect by its id (LV2 URI, CLAP id, VST3 class id), by its name when unique (case-insensitive), or
    /// by the path of the file that holds it (a `.vst3` bundle, a `.clap` file or an LV2 bundle folder, when
    /// that file holds one plugin), in one format or in all.
    pub fn load(&self, key: &str, format: Option<Format>) -> Result<Effect, LoadError> {
        let (info, from_file) = self.find(key, format)?;
        let (format, id) = (info.format, info.id.clone());
        let backend = if from_file { self.file_backend(&info) } else { self.world_backend(format, &id) };
        let effect = Effect::new(backend.ok_or(LoadError::Unloadable { format, id })?);
        let info = effect.info();
        if !info.is_effect() {
            return Err(LoadError::NotAnEffect {
                name: info.name.clone(),
                format: info.format,
                id: info.id.clone(),
                inputs: info.main_inputs(),
                outputs: info.audio_outputs.len(),
            });
        }
        Ok(effect)
    }

    /// The plugin `key` names, as [`Host::load`] takes it (id, unique name or file path), without making an
    /// instance. With a catalogue, nothing is loaded; a path outside it is described from that file alone.
    pub fn resolve(&self, key: &str, format: Option<Format>) -> Result<PluginInfo, LoadError> {
        self.find(key, format).map(|(info, _)| info)
    }

    fn world_backend(&self, format: Format, id: &str) -> Option<Box<dyn Backend>> {
        match format {
            Format::Lv2 => self.lv2().backend(id).map(|b| Box::new(b) as Box<dyn Backend>),
            Format::Clap => self.clap().backend(id).map(|b| Box::new(b) as Box<dyn Backend>),
            Format::Vst3 => self.vst3().backend(id).map(|b| Box::new(b) as Box<dyn Backend>),
        }
    }

    /// A backend for `info` from a world of its file alone (made once per file).
    fn file_backend(&self, info: &PluginInfo) -> Option<Box<dyn Backend>> {
        let mut files = self.files.borrow_mut();
        let world = files.entry((info.format, info.path.clone())).or_insert_with(|| match info.format {
            Format::Lv2 => FileWorld::Lv2(Lv2World::with_bundle(&info.path)),
            Format::Clap => FileWorld::Clap(ClapWorld::with_files(std::slice::from_ref(&info.path))),
            Format::Vst3 => FileWorld::Vst3(Vst3World::with_bundles(vec![info.path.clone()])),
        });
        match world {
            FileWorld::Lv2(w) => w.backend(&info.id).map(|b| Box::new(b) as Box<dyn Backend>),
            FileWorld::Clap(w) => w.backend(&info.id).map(|b| Box::new(b) as Box<dyn Backend>),
            FileWorld::Vst3(w) => w.backend(&info.id).map(|b| Box::new(b) as Box<dyn Backend>),
        }
    }

    /// The plugin `key` names, and whether to load it from its own file rather than through its format's world.
    fn find(&self, key: &str, format: Option<Format>) -> Result<(PluginInfo, bool), LoadError> {
        if let Some(path) = plugin_path(key) {
            return self.find_by_path(&path, format).map(|info| (info, true));
        }
        let formats: Vec<Format> = Format::ALL.into_iter().filter(|f| format.is_none_or(|w| w == *f)).collect();
        // An id is looked up format by format, so an LV2 URI never makes afx load every CLAP file.
        if let Some(p) = formats.iter().find_map(|&f| self.plugins(f).iter().find(|p| p.id == key)) {
            return Ok((p.clone(), self.from_catalogue));
        }
        let candidates = || formats.iter().flat_map(|&f| self.plugins(f).iter());
        let matches: Vec<&PluginInfo> = candidates().filter(|p| p.name.eq_ignore_ascii_case(key)).collect();
        match matches.as_slice() {
            [one] => Ok(((*one).clone(), self.from_catalogue)),
            [] => Err(LoadError::NotFound {
                key: key.into(),
                scope: format.map(|f| format!("{f} ")).unwrap_or_default(),
                suggestions: suggest::nearest(key, candidates().flat_map(|p| [p.id.as_str(), p.name.as_str()]), 5),
                failed: self.failed.iter().filter(|f| formats.contains(&f.format)).cloned().collect(),
            }),
            many => Err(LoadError::Ambiguous {
                key: key.into(),
                matches: many.iter().map(|p| format!("{} {}", p.format, p.id)).collect(),
            }),
        }
    }

    /// The one plugin in the file at `path`: from the catalogue when it lists that file, else described here
    /// from that file alone.
    fn find_by_path(&self, path: &Path, format: Option<Format>) -> Result<PluginInfo, LoadError> {
        if !path.exists() {
            return Err(LoadError::NoSuchFile { path: path.into() });
        }
        let file_format = scan::format_of_path(path).ok_or_else(|| LoadError::NotAPluginFile { path: path.into() })?;
        if let Some(asked) = format.filter(|f| *f != file_format) {
            return Err(LoadError::FormatMismatch { path: path.into(), file: file_format, asked });
        }
        let canonical = path.canonicalize().map_err(|_| LoadError::NoSuchFile { path: path.into() })?;
        let same_file = |p: &PluginInfo| p.path.canonicalize().is_ok_and(|c| c == canonical);
        let mut plugins: Vec<PluginInfo> = if self.from_catalogue {
            self.plugins(file_format).iter().filter(|p| same_file(p)).cloned().collect()
        } else {
            vec![]
        };
        if plugins.is_empty() {
            let mut described = self.described.borrow_mut();
            if !described.contains_key(&canonical) {
                let description = scan::describe_file(file_format, path)?;
                for problem in &description.problems {
                    tracing::warn!("{file_format} plugin file {}: {problem}", path.display());
                }
                described.insert(canonical.clone(), (file_format, description.plugins));
            }
            plugins = described[&canonical].1.clone();
        }
        match plugins.len() {
            1 => Ok(plugins.remove(0)),
            0 => Err(LoadError::NoPluginInFile { format: file_format, path: path.into() }),
            _ => Err(LoadError::SeveralInFile {
                format: file_format,
                path: path.into(),
                plugins: plugins.iter().map(|p| format!("{} ({})", p.id, p.name)).collect(),
            }),
        }
    }
}

/// `key` as a plugin file path: one that ends in `.lv2`, `.clap` or `.vst3` (any case, a trailing `/` allowed)
/// and exists or holds a `/`, or any existing path with a `/` in it. URIs (`scheme://...`) are never paths.
fn plugin_path(key: &str) -> Option<PathBuf> {
    if key.contains("://") || key.is_empty() {
        return None;
    }
    let path = PathBuf::from(key);
    let has_slash = key.contains('/');
    let plugin_extension = Path::new(key.trim_end_matches('/'))
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["lv2", "clap", "vst3"].iter().any(|x| e.eq_ignore_ascii_case(x)));
    let is_path = if plugin_extension { has_slash || path.exists() } else { has_slash && path.exists() };
    is_path.then_some(path)
}

/// Makes every entry of `LV2_PATH` absolute (relative entries are taken from the current folder).
///
/// lilv cannot map a relative folder to a URI: with `LV2_PATH=target/testfx/lv2` it prints "attempt to map
/// invalid URI" and then crashes the process (SIGSEGV, seen with Debian 12's lilv), so a host that hands the
/// user's `LV2_PATH` to lilv must make it absolute first. Worker processes inherit the fixed variable.
///
/// # Safety
///
/// It changes the process environment, which is only sound while no other thread may read it: call it first
/// thing in `main`, before any thread starts (see [`std::env::set_var`]).
pub unsafe fn make_lv2_path_absolute() {
    let Some(path) = std::env::var_os("LV2_PATH") else { return };
    let Ok(here) = std::env::current_dir() else { return };
    let entries: Vec<std::path::PathBuf> =
        std::env::split_paths(&path).map(|p| if p.is_relative() { here.join(p) } else { p }).collect();
    if let Ok(joined) = std::env::join_paths(entries)
        && joined != path
    {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var("LV2_PATH", joined) };
    }
}

/// `; these plugin files failed to load when scanned: PATH (FORMAT): REASON; ...`, or nothing.
pub(crate) fn failed_files(failed: &[scan::Failure]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let list: Vec<String> =
        failed.iter().map(|f| format!("{} ({}): {}", f.path.display(), f.format, f.reason)).collect();
    format!("; these plugin files failed to load when scanned (see `afx scan`): {}", list.join("; "))
}
