//! `afx._afx`: the extension module behind the `afx` Python package (see `afx/__init__.py`).
//!
//! - [`scan`](scan::scan): installed plugins, as `afx scan --json` lists them.
//! - [`load`](files::load) and [`save`](files::save): audio files, as the CLI reads and writes them.
//! - [`Plugin`](plugin::Plugin): one plugin, its parameters in plain units, whole-file renders.
//! - [`Pool`](pool::Pool): the crash-proof worker pool on batches of NumPy arrays (renders, SPSA, finite
//!   differences), with a per-item error list; the GIL is released while workers render.
//! - [`errors`]: the exceptions, carrying the CLI's messages.
//! - [`worker`]: this module as the pool's worker program, run by the Python interpreter.
//!
//! Plugin code never runs in the Python process: every render happens in a worker process (or, with
//! `isolation="thread"`, on a pool thread of this process, for trusted plugins).

mod arrays;
mod errors;
mod files;
mod perturbed;
mod plugin;
mod pool;
mod scan;
mod worker;

use pyo3::prelude::*;

/// `value` as Python objects (dicts, lists, numbers, strings), through its serde JSON: the fields and names
/// `afx scan --json` prints.
pub(crate) fn to_python<'py, T: serde::Serialize + ?Sized>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(errors::afx_error)?;
    py.import("json")?.call_method1("loads", (text,))
}

#[pymodule]
fn _afx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Batches are converted into fresh buffers of hundreds of KiB each call; with glibc's default thresholds
    // each was an mmap, paid for again in page faults and zeroing on every batch (the parent's copies ran at a
    // fraction of memory speed, while the workers waited for them). Kept in the heap instead: up to 256 MiB of
    // freed memory stays with the process.
    afx_spsa::worker::keep_freed_memory();
    let py = m.py();
    m.add("AfxError", py.get_type::<errors::AfxError>())?;
    m.add("ParameterError", py.get_type::<errors::ParameterError>())?;
    m.add("ItemError", py.get_type::<errors::ItemError>())?;
    m.add_function(wrap_pyfunction!(scan::scan, m)?)?;
    m.add_function(wrap_pyfunction!(files::load, m)?)?;
    m.add_function(wrap_pyfunction!(files::save, m)?)?;
    m.add_function(wrap_pyfunction!(worker::worker_main, m)?)?;
    m.add_class::<plugin::Plugin>()?;
    m.add_class::<pool::Pool>()?;
    m.add_class::<perturbed::PerturbedRenders>()?;
    Ok(())
}
