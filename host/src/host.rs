//! The plugins installed on this machine, in every format: scanning and loading by id or name.

use std::cell::OnceCell;

use crate::clap::ClapWorld;
use crate::lv2::Lv2World;
use crate::plugin::{Backend, Effect, Format, PluginInfo};
use crate::suggest;
use crate::vst3::Vst3World;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no installed {scope}plugin has the id or name {key:?}{}", suggest::did_you_mean(.suggestions))]
    NotFound { key: String, scope: String, suggestions: Vec<String> },
    #[error("{key:?} names several plugins: {}; give the format (--format) or the id", .matches.join(", "))]
    Ambiguous { key: String, matches: Vec<String> },
    #[error("{name} ({format} {id}) is not an effect: it has {inputs} main audio inputs and {outputs} audio outputs")]
    NotAnEffect { name: String, format: Format, id: String, inputs: usize, outputs: usize },
    #[error("{format} plugin {id} was listed but could not be loaded (see the log)")]
    Unloadable { format: Format, id: String },
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

/// Every installed plugin afx can host. Create one per thread: plugin libraries and their worlds are not
/// shared between threads (a lilv world shared by two instantiating threads crashed in our measurements), and
/// the effects it loads stay on its thread.
///
/// Each format is discovered the first time it is needed, so an LV2-only job never loads CLAP files.
#[derive(Default)]
pub struct Host {
    lv2: FormatWorld<Lv2World>,
    clap: FormatWorld<ClapWorld>,
    vst3: FormatWorld<Vst3World>,
}

impl Host {
    /// A host that discovers plugins the way other hosts do: LV2 in `LV2_PATH`, else `~/.lv2`,
    /// `/usr/local/lib/lv2`, `/usr/lib/lv2`; CLAP in `CLAP_PATH`, `~/.clap`, `/usr/lib/clap`,
    /// `/usr/local/lib/clap`; VST3 in `VST3_PATH` (afx's own), `~/.vst3`,
    /// `/usr/lib/vst3`, `/usr/local/lib/vst3`.
    pub fn new() -> Host {
        Host::default()
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

    /// Loads an effect by its id (LV2 URI, CLAP id, VST3 class id) or, when unique, its name (case-insensitive), in one
    /// format or in all.
    pub fn load(&self, key: &str, format: Option<Format>) -> Result<Effect, LoadError> {
        let (format, id) = self.resolve(key, format)?;
        let backend: Option<Box<dyn Backend>> = match format {
            Format::Lv2 => self.lv2().backend(&id).map(|b| Box::new(b) as Box<dyn Backend>),
            Format::Clap => self.clap().backend(&id).map(|b| Box::new(b) as Box<dyn Backend>),
            Format::Vst3 => self.vst3().backend(&id).map(|b| Box::new(b) as Box<dyn Backend>),
        };
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

    fn resolve(&self, key: &str, format: Option<Format>) -> Result<(Format, String), LoadError> {
        let formats: Vec<Format> = Format::ALL.into_iter().filter(|f| format.is_none_or(|w| w == *f)).collect();
        // An id is looked up format by format, so an LV2 URI never makes afx load every CLAP file.
        if let Some(p) = formats.iter().find_map(|&f| self.plugins(f).iter().find(|p| p.id == key)) {
            return Ok((p.format, p.id.clone()));
        }
        let candidates = || formats.iter().flat_map(|&f| self.plugins(f).iter());
        let matches: Vec<&PluginInfo> = candidates().filter(|p| p.name.eq_ignore_ascii_case(key)).collect();
        match matches.as_slice() {
            [one] => Ok((one.format, one.id.clone())),
            [] => Err(LoadError::NotFound {
                key: key.into(),
                scope: format.map(|f| format!("{f} ")).unwrap_or_default(),
                suggestions: suggest::nearest(key, candidates().flat_map(|p| [p.id.as_str(), p.name.as_str()]), 5),
            }),
            many => Err(LoadError::Ambiguous {
                key: key.into(),
                matches: many.iter().map(|p| format!("{} {}", p.format, p.id)).collect(),
            }),
        }
    }
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
