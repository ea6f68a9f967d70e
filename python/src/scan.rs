//! Scanning installed plugins, as `afx scan` does: each plugin file is described by a child process (a plugin
//! that crashes or hangs while loading fails alone), unchanged files come from the scan cache the CLI shares.

use std::time::Duration;

use afx_host::Format;
use afx_host::scan::Scanner;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// `format` as given in Python (`"lv2"`, `"clap"`, `"vst3"` or `None`), or a `ValueError` listing those.
pub fn parse_format(format: Option<&str>) -> PyResult<Option<Format>> {
    format.map(|f| f.parse::<Format>().map_err(|e| PyValueError::new_err(format!("format={f:?}: {e}")))).transpose()
}

/// Seconds as a positive time limit, or a `ValueError` naming `what`.
pub fn time_limit(seconds: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| PyValueError::new_err(format!("{what}={s}: give a positive number of seconds")))
        })
        .transpose()
}

/// A scanner with this module as the describing program.
pub fn scanner(py: Python<'_>, format: Option<Format>, timeout: Option<Duration>, rescan: bool) -> PyResult<Scanner> {
    let (program, args) = crate::worker::child_program(py, "describe")?;
    let scanner = Scanner::new(program, args).format(format).rescan(rescan);
    Ok(match timeout {
        Some(limit) => scanner.timeout(limit),
        None => scanner,
    })
}

/// The catalogue as `afx scan --json` prints it: `{"plugins": [...], "failed": [...], "stats": {...}}`, the same
/// fields as the CLI's.
#[pyfunction]
#[pyo3(signature = (format=None, timeout=None, rescan=false))]
pub fn scan<'py>(
    py: Python<'py>,
    format: Option<&str>,
    timeout: Option<f64>,
    rescan: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let scanner = scanner(py, parse_format(format)?, time_limit(timeout, "timeout")?, rescan)?;
    let catalogue = py.detach(|| scanner.scan());
    crate::to_python(py, &catalogue)
}
