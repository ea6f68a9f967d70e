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
//!
//! Discovery ([`Vst3World`]) is here; [`class`] describes a class's buses and parameters, [`component`] holds the
//! lifecycle of one component, [`params`] the parameter mapping, [`buffers`] what `process` is handed and
//! [`instance`] the backend and instance the render drives.

#[cfg(feature = "direct-render")]
pub(crate) mod direct;

mod buffers;
mod class;
pub(crate) mod com;
mod component;
mod instance;
pub(crate) mod module;
mod params;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use self::class::describe;
pub(crate) use self::instance::Vst3Backend;
use self::module::{AUDIO_MODULE_CLASS, Module, cid_hex};
use crate::info::PluginInfo;

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
                Ok((info, layout)) => Some(Vst3Backend::new(info, class.cid, layout, module)),
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

#[cfg(test)]
mod tests;
