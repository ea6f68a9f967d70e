//! The exceptions: engine errors keep the CLI's messages word for word (the same `Display`), so a message in a
//! notebook reads as it does in a terminal.

use afx_host::ChainError;
use afx_spsa::FailureKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    afx,
    AfxError,
    PyException,
    "An error of the afx engine: a plugin or chain that cannot be found or loaded, a worker that cannot start, a \
     render that failed."
);
create_exception!(
    afx,
    ParameterError,
    AfxError,
    "A parameter that the plugin does not have, or a value outside its range (the message lists what is valid)."
);
create_exception!(
    afx,
    ItemError,
    AfxError,
    "Why one item of a batch failed. Attributes: `index` (the item), `kind` (\"crashed\", \"timed_out\", \
     \"non_finite\", \"plugin\", \"protocol\", \"too_large\" or \"sandbox\"), `signal` (the worker's signal number when it \
     crashed, else None), `theta` (the item's parameters, [] for plain-value renders), `chain` and `stderr` (the \
     worker's last lines). Pool methods return these in their error list; they are raised only by single renders."
);

/// An engine error as an [`AfxError`] with the error's own message (as the CLI prints it: without the trailing
/// newline of a worker's stderr).
pub fn afx_error(error: impl std::fmt::Display) -> PyErr {
    AfxError::new_err(error.to_string().trim_end().to_string())
}

/// A chain error: a [`ParameterError`] for an unknown parameter or a bad value, an [`AfxError`] otherwise.
pub fn chain_error(error: ChainError) -> PyErr {
    match error {
        ChainError::UnknownParam(_) | ChainError::BadValue { .. } | ChainError::ThetaLength { .. } => {
            ParameterError::new_err(error.to_string())
        }
        other => afx_error(other),
    }
}

/// Item `index`'s failure as an [`ItemError`] instance, its message the CLI's.
pub fn item_error(py: Python<'_>, index: usize, error: &afx_spsa::ItemError) -> PyResult<PyErr> {
    let err = ItemError::new_err(error.to_string());
    let value = err.value(py);
    let (kind, signal) = match &error.kind {
        FailureKind::Crashed { signal, .. } => ("crashed", *signal),
        FailureKind::TimedOut { .. } => ("timed_out", None),
        FailureKind::NonFinite(_) => ("non_finite", None),
        FailureKind::Plugin(_) => ("plugin", None),
        FailureKind::Protocol(_) => ("protocol", None),
        FailureKind::TooLarge(_) => ("too_large", None),
        FailureKind::Sandbox(_) => ("sandbox", None),
    };
    value.setattr("index", index)?;
    value.setattr("kind", kind)?;
    value.setattr("signal", signal)?;
    value.setattr("theta", error.theta.clone())?;
    value.setattr("chain", error.chain.clone())?;
    value.setattr("stderr", error.stderr.clone())?;
    Ok(err)
}
