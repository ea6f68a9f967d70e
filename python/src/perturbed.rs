//! `afx.PerturbedRenders`: the SPSA renders `Pool.render_perturbed` made before ∂L/∂y was known, and the
//! estimate from them for any ∂L/∂y.

use afx_spsa::ItemError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::arrays::{self, BatchShape};
use crate::pool::gradients;

/// The SPSA renders of a batch, made by `Pool.render_perturbed` before ∂L/∂y was known. `vjp(grad_y)` returns
/// `(gradients (batch, P), errors)`: what `Pool.spsa` returns for the same batch and arguments, bit for bit. It
/// renders nothing (a few dot products per item) and may be called more than once.
#[pyclass(module = "afx._afx", name = "PerturbedRenders", frozen)]
pub struct PerturbedRenders {
    renders: Vec<Result<afx_spsa::PerturbedRenders, ItemError>>,
    shape: BatchShape,
    num_params: usize,
    /// F, for trajectories.
    frames: Option<usize>,
}

impl PerturbedRenders {
    pub(crate) fn new(
        renders: Vec<Result<afx_spsa::PerturbedRenders, ItemError>>,
        shape: BatchShape,
        num_params: usize,
        frames: Option<usize>,
    ) -> PerturbedRenders {
        PerturbedRenders { renders, shape, num_params, frames }
    }
}

#[pymethods]
impl PerturbedRenders {
    /// `(∂y/∂θ)ᵀ grad_y` of every item: `((batch, P) gradients, errors)`; `grad_y` has the shape of `x`. An item
    /// whose perturbed renders failed has its error and a NaN row.
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        grad_y: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
        let array = arrays::float32(grad_y, "grad_y")?;
        let view = array.as_array();
        if view.shape() != self.shape.dims().as_slice() {
            return Err(PyValueError::new_err(format!(
                "grad_y must have the shape of x, {:?}, got {:?}",
                self.shape.dims(),
                view.shape()
            )));
        }
        // A NaN or infinite ∂L/∂y is refused as `spsa` refuses it, naming the first such item. The dots find it
        // for free (a non-finite g makes its item's estimate non-finite: the renders are finite), so g is searched
        // only for an estimate that is not finite, or an item without renders.
        let estimate = |i: usize| -> Result<Result<Vec<f32>, ItemError>, arrays::NonFinite> {
            let owned = arrays::item_channels(&view, i);
            let g: Vec<&[f32]> = owned.iter().map(|c| c.as_ref()).collect();
            let estimate = self.renders[i].as_ref().map(|renders| renders.vjp(&g)).map_err(Clone::clone);
            let suspect = estimate.as_ref().map_or(true, |e| !e.iter().all(|v| v.is_finite()));
            match suspect.then(|| arrays::first_non_finite_sample(&g)).flatten() {
                Some(bad) => Err(bad),
                None => Ok(estimate),
            }
        };
        let batch = self.shape.batch;
        let results = py.detach(|| {
            let half = batch / 2;
            let run = |range: std::ops::Range<usize>| range.map(|i| estimate(i).map_err(|e| (i, e))).collect();
            if batch < 2 {
                return run(0..batch);
            }
            std::thread::scope(|scope| {
                let second = scope.spawn(|| run(half..batch));
                let first: Result<Vec<_>, _> = run(0..half);
                let second = second.join().expect("an estimate does not panic");
                Ok([first?, second?].concat())
            })
        });
        match results {
            Ok(results) => gradients(py, results, self.num_params, self.frames),
            Err((i, bad)) => Err(bad.error(&format!("grad_y[{i}]"))),
        }
    }

    fn __len__(&self) -> usize {
        self.shape.batch
    }

    fn __repr__(&self) -> String {
        let failed = self.renders.iter().filter(|r| r.is_err()).count();
        format!("afx.PerturbedRenders(batch={}, failed={failed})", self.shape.batch)
    }
}
