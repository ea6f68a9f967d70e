//! The plugins installed on this machine, by format: scanning and loading by id or name.

use crate::lv2::Lv2World;
use crate::plugin::{Effect, Format, PluginInfo};
use crate::suggest;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no installed {scope}plugin has the id or name {key:?}{}", suggest::did_you_mean(.suggestions))]
    NotFound { key: String, scope: String, suggestions: Vec<String> },
    #[error("{key:?} names several plugins ({}); use the id", .matches.join(", "))]
    Ambiguous { key: String, matches: Vec<String> },
    #[error("{name} ({id}) is not an effect: it has {inputs} main audio inputs and {outputs} audio outputs")]
    NotAnEffect { name: String, id: String, inputs: usize, outputs: usize },
    #[error("{format} plugins are not supported yet")]
    Unsupported { format: Format },
}

/// Every installed plugin afx can host. Create one per thread: plugin libraries and their worlds are not
/// shared between threads (see `../shared/notes/hosting.md`: a shared lilv world crashed under concurrency).
pub struct Host {
    lv2: Lv2World,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// Discovers installed plugins the way hosts do (LV2: `LV2_PATH`, else `~/.lv2`, `/usr/local/lib/lv2`,
    /// `/usr/lib/lv2`).
    pub fn new() -> Host {
        Host { lv2: Lv2World::new() }
    }

    /// Descriptions of every installed plugin of the given format (all formats when `None`), effects or not.
    pub fn scan(&self, format: Option<Format>) -> Vec<PluginInfo> {
        let mut plugins = vec![];
        if format.is_none_or(|f| f == Format::Lv2) {
            plugins.extend(self.lv2.plugins());
        }
        plugins.sort_by(|a, b| (a.format.as_str(), &a.name, &a.id).cmp(&(b.format.as_str(), &b.name, &b.id)));
        plugins
    }

    /// Loads an effect by its id (LV2 URI) or, when unique, its name (case-insensitive).
    pub fn load(&self, key: &str, format: Option<Format>) -> Result<Effect, LoadError> {
        if let Some(f @ (Format::Clap | Format::Vst3)) = format {
            return Err(LoadError::Unsupported { format: f });
        }
        let id = self.resolve(key, format)?;
        let backend = self.lv2.backend(&id).expect("resolve returned an installed id");
        let effect = Effect::new(Box::new(backend));
        let info = effect.info();
        if !info.is_effect() {
            return Err(LoadError::NotAnEffect {
                name: info.name.clone(),
                id: info.id.clone(),
                inputs: info.main_inputs(),
                outputs: info.audio_outputs.len(),
            });
        }
        Ok(effect)
    }

    fn resolve(&self, key: &str, format: Option<Format>) -> Result<String, LoadError> {
        let plugins = self.scan(format);
        if let Some(p) = plugins.iter().find(|p| p.id == key) {
            return Ok(p.id.clone());
        }
        let by_name: Vec<&PluginInfo> = plugins.iter().filter(|p| p.name.eq_ignore_ascii_case(key)).collect();
        match by_name.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(LoadError::NotFound {
                key: key.into(),
                scope: format.map(|f| format!("{f} ")).unwrap_or_default(),
                suggestions: suggest::nearest(key, plugins.iter().flat_map(|p| [p.id.as_str(), p.name.as_str()]), 5),
            }),
            many => Err(LoadError::Ambiguous {
                key: key.into(),
                matches: many.iter().map(|p| format!("{} {}", p.format, p.id)).collect(),
            }),
        }
    }
}
