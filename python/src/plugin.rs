//! `afx.Plugin`: one plugin (or plugins.toml chain), its parameters in plain units, whole-file renders.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use afx_host::ChainLayout;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays;
use crate::errors::{self, AfxError};
use crate::pool::{self, PoolOptions, Started};

/// One plugin, hosted by a worker process of its own: a plugin that crashes or hangs raises `afx.ItemError`
/// here and the next render starts a fresh worker; this process never runs plugin code.
///
/// `Plugin(plugin, format=None, config=None, timeout=None, block_size=None)`: `plugin` is an installed plugin's
/// id (LV2 URI, CLAP id, VST3 class id) or name, a plugin file, or a plugin or chain named in plugins.toml;
/// `format` (`"lv2"`, `"clap"`, `"vst3"`) narrows a name found in several formats.
#[pyclass(module = "afx._afx", name = "Plugin")]
pub struct Plugin {
    started: Mutex<Started>,
    chain: ChainLayout,
}

#[pymethods]
impl Plugin {
    #[new]
    #[pyo3(signature = (plugin, format=None, config=None, timeout=None, block_size=None, sandbox=true))]
    fn new(
        py: Python<'_>,
        plugin: &str,
        format: Option<&str>,
        config: Option<PathBuf>,
        timeout: Option<f64>,
        block_size: Option<usize>,
        sandbox: bool,
    ) -> PyResult<Plugin> {
        let (workers, isolation, worker_memory) = (Some(1), "process", None);
        let options = PoolOptions {
            chain: plugin,
            config,
            format,
            workers,
            isolation,
            timeout,
            block_size,
            sandbox,
            worker_memory,
        };
        let started = pool::start(py, &options)?;
        let chain = started.pool.chain().clone();
        Ok(Plugin { started: Mutex::new(started), chain })
    }

    /// The plugin's name (for a plugins.toml chain, the chain's).
    #[getter]
    fn name(&self) -> String {
        match self.chain.stages() {
            [stage] => stage.plugin().name.clone(),
            _ => self.chain.name().to_string(),
        }
    }

    /// What `afx scan --json` says of each plugin: format, id, name, path, audio ports and parameters.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for stage in self.chain.stages() {
            list.append(crate::to_python(py, stage.plugin())?)?;
        }
        Ok(list)
    }

    /// Every parameter, in plain units: dicts with `id`, `name`, `unit`, `min`, `max`, `default`, `scale` and
    /// `kind` (and `stage` in a chain). These are the keywords `render` takes.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let qualify = self.chain.stages().len() > 1;
        for stage in self.chain.stages() {
            for spec in &stage.plugin().params {
                let dict = crate::to_python(py, spec)?.cast_into::<PyDict>()?;
                if qualify {
                    dict.set_item("stage", stage.name())?;
                }
                list.append(dict)?;
            }
        }
        Ok(list)
    }

    /// Renders `x` (`(frames,)` or `(channels, frames)`, float32, at `sample_rate` Hz) with parameters set by
    /// keyword in plain units (`threshold=-20.0`; in a chain `stage.param` through a dict: `**{"comp.thr": -20}`),
    /// every other parameter at its default (or its plugins.toml value). Latency is compensated; the output has
    /// the shape of `x`. Exactly what `afx render --plugin ... --set id=value` writes.
    #[pyo3(signature = (x, sample_rate, /, **values))]
    fn render<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        sample_rate: u32,
        values: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if sample_rate == 0 {
            return Err(PyValueError::new_err("sample_rate=0: give the rate of x in Hz"));
        }
        let array = arrays::float32(x, "x")?;
        let view = array.as_array();
        let mono = view.ndim() == 1;
        let input = Arc::new(arrays::audio(view, sample_rate, "x")?);
        let mut sets = vec![];
        for (key, value) in values.map(|v| v.iter().collect::<Vec<_>>()).unwrap_or_default() {
            let key: String = key.extract()?;
            let value: f32 = value.extract().map_err(|_| {
                errors::ParameterError::new_err(format!("{key}={value}: give a number in the parameter's plain units"))
            })?;
            sets.push((key, value));
        }
        let plain = self.chain.values_with(&sets, false).map_err(errors::chain_error)?;
        // Locked without the GIL: a second thread rendering meanwhile waits without holding what the first
        // needs back.
        let result = py.detach(|| {
            let mut guard = self.started.lock().map_err(|_| AfxError::new_err("the plugin was poisoned by a panic"))?;
            Ok::<_, PyErr>(guard.pool.render_values(&input, None, &plain))
        })?;
        let output = result.map_err(|e| errors::item_error(py, 0, &e).unwrap_or_else(|err| err))?;
        Ok(arrays::item_array(py, output, mono))
    }

    fn __repr__(&self) -> String {
        format!(
            "afx.Plugin({:?}, params={})",
            self.name(),
            self.chain.stages().iter().map(|s| s.plugin().params.len()).sum::<usize>()
        )
    }
}
