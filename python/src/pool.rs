//! `afx.Pool`: the crash-proof worker pool on batches of NumPy arrays.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use afx_core::Audio;
use afx_host::ChainLayout;
use afx_spsa::estimator::Scoring;
use afx_spsa::{FailureKind, Isolation, ItemError, PoolConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{self, AudioBatch, BatchShape};
use crate::errors::{self, AfxError};
use crate::perturbed::PerturbedRenders;
use crate::scan;

/// What a pool hosts and how; the keyword arguments of `afx.Pool` and `afx.Plugin`.
pub struct PoolOptions<'a> {
    pub chain: &'a str,
    pub config: Option<PathBuf>,
    pub format: Option<&'a str>,
    pub workers: Option<usize>,
    pub isolation: &'a str,
    pub timeout: Option<f64>,
    pub block_size: Option<usize>,
    /// Confine the worker processes (and scan children): see `afx_sandbox`.
    pub sandbox: bool,
    /// Each worker's memory cap in bytes [default: `afx_sandbox::default_memory`].
    pub worker_memory: Option<u64>,
}

/// A started engine pool and the catalogue file its workers read (removed when the pool goes).
pub struct Started {
    pub pool: afx_spsa::Pool,
    _catalogue: tempfile::TempPath,
}

/// Starts the workers for `options` (see [`afx_spsa::launch`]), which load the chain: a bad name, a plugin
/// that crashes while loading or a bad plugins.toml fails here, with the CLI's message. Scans and starts without
/// the GIL.
pub fn start(py: Python<'_>, options: &PoolOptions<'_>) -> PyResult<Started> {
    // The plugins.toml in force, as the CLI decides it.
    let config = afx_host::Config::path_in_force(options.config.as_deref());
    let format = scan::parse_format(options.format)?;
    let limit = scan::time_limit(options.timeout, "timeout")?;
    let isolation = match options.isolation {
        "process" => Isolation::Process(crate::worker::worker_command(py)?),
        "thread" => Isolation::Thread,
        other => {
            return Err(PyValueError::new_err(format!(
                "isolation={other:?}: use \"process\" (a worker process each, crash-proof) or \"thread\" (worker \
                 threads in this process, for trusted plugins)"
            )));
        }
    };
    if options.workers == Some(0) {
        return Err(PyValueError::new_err("workers=0: a pool needs at least one worker"));
    }
    if options.block_size == Some(0) {
        return Err(PyValueError::new_err("block_size=0: give at least 1 frame per process call"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let caps = afx_sandbox::Caps::default_for(cores).with_memory(options.worker_memory);
    let scanner = scan::scanner(py, None, limit, false)?.sandbox(options.sandbox.then_some(caps));
    let (spec, catalogue) = py
        .detach(|| {
            afx_spsa::launch::scanned_spec(options.chain, config.as_deref(), format, options.block_size, &scanner)
        })
        .map_err(errors::afx_error)?;
    let mut pool_config = PoolConfig::new(spec, isolation).with_limits(options.workers, limit);
    pool_config.sandbox.enabled = options.sandbox;
    pool_config.sandbox.memory = options.worker_memory;
    let pool = py.detach(|| afx_spsa::Pool::new(pool_config)).map_err(errors::afx_error)?;
    Ok(Started { pool, _catalogue: catalogue })
}

/// `worker_memory=`: bytes as an int, or a size as `--worker-memory` takes it ("2G", "512M").
fn memory_cap(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let text = match value.extract::<u64>() {
        Ok(bytes) => bytes.to_string(),
        Err(_) => value.extract::<String>()?,
    };
    afx_sandbox::parse_bytes(&text).map_err(|e| PyValueError::new_err(format!("worker_memory={e}")))
}

/// A trainable parameter of `chain` as a dict: `stage`, then the fields of `afx scan --json`'s parameters.
pub fn param_dicts<'py>(py: Python<'py>, chain: &ChainLayout) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for param in chain.params() {
        let dict = crate::to_python(py, param.spec)?.cast_into::<PyDict>()?;
        dict.set_item("stage", param.stage)?;
        dict.set_item("output_gain", param.output_gain)?;
        list.append(dict)?;
    }
    Ok(list)
}

/// The error list of a batch: `None` for an item that succeeded, its [`ItemError`](errors::ItemError) otherwise.
fn error_list<'py>(py: Python<'py>, failures: &[Option<ItemError>]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (i, failure) in failures.iter().enumerate() {
        match failure {
            None => list.append(py.None())?,
            Some(e) => list.append(errors::item_error(py, i, e)?.value(py))?,
        }
    }
    Ok(list)
}

/// SPSA needs at least one perturbation and a step inside the normalised range.
fn check_spsa(k: u32, epsilon: f32) -> PyResult<()> {
    if k == 0 {
        return Err(PyValueError::new_err("k=0: SPSA needs at least one perturbation"));
    }
    if !(epsilon > 0.0 && epsilon <= 0.5) {
        return Err(PyValueError::new_err(format!(
            "epsilon={epsilon}: give a step in (0, 0.5] of the normalised range"
        )));
    }
    Ok(())
}

/// Each item's seed: `item_seed(seed, position)`, positions `0..n` or `items` (their places in a larger batch).
fn item_seeds(seed: u64, items: Option<Vec<usize>>, n: usize) -> PyResult<Vec<u64>> {
    let positions = items.unwrap_or_else(|| (0..n).collect());
    if positions.len() != n {
        return Err(PyValueError::new_err(format!(
            "items holds {} positions for a batch of {n}: give one per item",
            positions.len()
        )));
    }
    Ok(positions.iter().map(|&i| afx_spsa::item_seed(seed, i)).collect())
}

/// Per-item results as the values of the items that succeeded and the errors of those that failed (moved, not
/// copied: a render's audio goes on to the array returned).
fn split_results<T>(results: Vec<Result<T, ItemError>>) -> (Vec<Option<T>>, Vec<Option<ItemError>>) {
    results
        .into_iter()
        .map(|r| match r {
            Ok(value) => (Some(value), None),
            Err(e) => (None, Some(e)),
        })
        .unzip()
}

/// Gradients `((batch, P) array, errors)` from per-item results, `(batch, F, P)` for trajectories of F rows; a
/// failed item's row is NaN.
pub(crate) fn gradients<'py>(
    py: Python<'py>,
    results: Vec<Result<Vec<f32>, ItemError>>,
    num_params: usize,
    frames: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
    let (rows, failures) = split_results(results);
    let errors = error_list(py, &failures)?;
    Ok((arrays::gradient_array(py, &rows, num_params, frames).into_any(), errors))
}

/// How a call's θ is read: fixed rows (hop 0) or trajectories of `frames` rows at `hop`, and SPSA's scoring.
#[derive(Debug, Clone, Copy)]
struct Control {
    hop: usize,
    frames: Option<usize>,
    scoring: Scoring,
}

/// The scoring a Python caller names (`"whole"`, `"causal"`, `"window:W"`).
fn scoring(name: &str) -> PyResult<Scoring> {
    name.parse().map_err(|e: String| PyValueError::new_err(format!("scoring={name:?}: {e}")))
}

/// N workers hosting one plugin or chain, rendering batches and estimating gradients through it.
///
/// `Pool(chain, workers=None, isolation="process", config=None, format=None, sample_rate=44100, timeout=None,
/// block_size=None)`:
/// - `chain`: a chain or plugin named in plugins.toml, an installed plugin's id or name, or a plugin file;
/// - `workers`: one per core by default;
/// - `isolation`: `"process"` (a plugin that crashes or hangs takes only its worker down; the item is reported
///   and the worker replaced) or `"thread"` (trusted plugins only: a crash ends this process);
/// - `config`: plugins.toml [default: `$AFX_CONFIG`, else `./plugins.toml` if there is one];
/// - `sample_rate`: the rate of the audio given to the batch methods;
/// - `timeout`: seconds a worker may take to load the chain, and one job, before it is killed [default 60].
///
/// Batch methods take audio `(batch, frames)` or `(batch, channels, frames)` and θ `(batch, P)`, all float32,
/// θ normalised to [0, 1] in the order of `params`. They return `(array, errors)`: `errors[i]` is `None`, or the
/// `afx.ItemError` of item `i`, whose row of the array is NaN. The GIL is released while the workers run.
#[pyclass(module = "afx._afx", name = "Pool")]
pub struct Pool {
    started: Mutex<Option<Started>>,
    chain: ChainLayout,
    sample_rate: u32,
    workers: usize,
    /// The items of the last call's `x`: the next call's items that are bit for bit the same are these (see
    /// [`AudioBatch::reusing`]).
    last_x: Mutex<Vec<Arc<Audio>>>,
}

impl Pool {
    /// Runs `work` on the engine's pool without the GIL (the workers render meanwhile; other Python threads run).
    /// The pool is locked without the GIL too: a second thread calling meanwhile waits for the first without
    /// holding the GIL that the first needs back.
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce(&mut afx_spsa::Pool) -> T + Send) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.started.lock().map_err(|_| poisoned())?;
            let started = guard
                .as_mut()
                .ok_or_else(|| AfxError::new_err(format!("the pool of {} is closed", self.chain.name())))?;
            Ok(work(&mut started.pool))
        })
    }

    /// `x`, checked and copied, except items bit for bit those of the last call's `x` (a forward pass and then
    /// its backward pass give the same input): those are shared, not copied again.
    fn inputs(&self, x: &Bound<'_, PyAny>) -> PyResult<AudioBatch> {
        // Cloned out, not held: the copy below runs without the GIL.
        let last = self.last_x.lock().map_err(|_| poisoned())?.clone();
        let inputs = AudioBatch::reusing(x, "x", self.sample_rate, &last)?;
        self.last_x.lock().map_err(|_| poisoned())?.clone_from(&inputs.items);
        Ok(inputs)
    }

    /// `x` (see [`Pool::inputs`]) and a θ row per item, checked: `(batch, P)`, or trajectories `(batch, F, P)`
    /// at `hop` frames per row, F one per started hop of `x`.
    fn inputs_and_thetas(
        &self,
        x: &Bound<'_, PyAny>,
        theta: &Bound<'_, PyAny>,
        hop: Option<usize>,
        scoring: Scoring,
    ) -> PyResult<(AudioBatch, Vec<Vec<f32>>, Control)> {
        let inputs = self.inputs(x)?;
        let thetas = arrays::theta_batch(theta, "theta", inputs.shape.batch, self.chain.num_params())?;
        let frames = inputs.shape.frames;
        let hop = match (thetas.frames, hop) {
            (None, None) => 0,
            (None, Some(hop)) => {
                return Err(PyValueError::new_err(format!(
                    "hop={hop} is for parameters that move: give theta of shape (batch, F, P), or no hop"
                )));
            }
            (Some(f), None) => {
                return Err(PyValueError::new_err(format!(
                    "theta has {f} rows per item (batch, F, P): give hop, the frames per row"
                )));
            }
            (Some(f), Some(hop)) => {
                let needed = afx_host::Automation::rows_for(frames, hop);
                if hop == 0 || f != needed {
                    return Err(PyValueError::new_err(format!(
                        "theta has {f} rows per item; x's {frames} frames at hop={hop} need {needed} (one per \
                         started hop, hop >= 1)"
                    )));
                }
                hop
            }
        };
        Ok((inputs, thetas.rows, Control { hop, frames: thetas.frames, scoring }))
    }

    /// The checked inputs of an estimator, one of each per item.
    fn estimator_batch(
        &self,
        x: &Bound<'_, PyAny>,
        theta: &Bound<'_, PyAny>,
        grad_y: &Bound<'_, PyAny>,
        hop: Option<usize>,
        scoring: Scoring,
    ) -> PyResult<EstimatorBatch> {
        let (inputs, thetas, control) = self.inputs_and_thetas(x, theta, hop, scoring)?;
        let grads = grads_like(grad_y, inputs.shape, self.sample_rate)?;
        Ok(EstimatorBatch { x: inputs.items, thetas, grads: grads.items, control })
    }
}

/// A batch's renders at θ, each copied into its row of the output as it arrives (behind the renders of the
/// others), or its error kept.
struct RenderedRows {
    rows: arrays::RowsBuilder,
    failures: Vec<Option<ItemError>>,
    shape: BatchShape,
}

impl RenderedRows {
    fn new(shape: BatchShape) -> RenderedRows {
        let rows = arrays::RowsBuilder::new(shape.batch, shape.channels.unwrap_or(1) * shape.frames);
        RenderedRows { rows, failures: (0..shape.batch).map(|_| None).collect(), shape }
    }

    /// Item `index`'s render (of `chain` at `theta`) into its row, or its error: a render of another shape than
    /// the input's is one (never a silent NaN row).
    fn fill(&mut self, index: usize, result: Result<Audio, ItemError>, chain: &str, theta: &[f32]) {
        match result {
            Ok(audio) if self.rows.set(index, audio.channels()) => {}
            Ok(audio) => {
                let kind = FailureKind::Protocol(format!(
                    "the render gave {} channels of {} frames for an input of shape {:?}",
                    audio.num_channels(),
                    audio.frames(),
                    self.shape
                ));
                let (chain, theta) = (chain.to_string(), theta.to_vec());
                self.failures[index] = Some(ItemError { chain, theta, kind, stderr: String::new() });
            }
            Err(e) => self.failures[index] = Some(e),
        }
    }

    /// `(y, errors)`: `y` shaped as the input, a failed item's row NaN.
    fn finish(self, py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyList>)> {
        let errors = error_list(py, &self.failures)?;
        Ok((self.rows.into_array(py, self.shape.dims()).into_any(), errors))
    }
}

fn poisoned() -> PyErr {
    AfxError::new_err("the pool was poisoned by a panic")
}

/// What an estimator takes for each item: its audio, θ and ∂L/∂y.
struct EstimatorBatch {
    x: Vec<Arc<Audio>>,
    thetas: Vec<Vec<f32>>,
    grads: Vec<Arc<Audio>>,
    control: Control,
}

/// `grad_y`, checked to have the shape of the batch's `x`.
fn grads_like(grad_y: &Bound<'_, PyAny>, shape: BatchShape, sample_rate: u32) -> PyResult<AudioBatch> {
    let grads = AudioBatch::new(grad_y, "grad_y", sample_rate)?;
    if grads.shape != shape {
        return Err(PyValueError::new_err(format!(
            "grad_y must have the shape of x, {shape:?}, got {:?}",
            grads.shape
        )));
    }
    Ok(grads)
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (chain, workers=None, isolation="process", config=None, format=None, sample_rate=44_100, timeout=None, block_size=None, sandbox=true, worker_memory=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        chain: &str,
        workers: Option<usize>,
        isolation: &str,
        config: Option<PathBuf>,
        format: Option<&str>,
        sample_rate: u32,
        timeout: Option<f64>,
        block_size: Option<usize>,
        sandbox: bool,
        worker_memory: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Pool> {
        if sample_rate == 0 {
            return Err(PyValueError::new_err("sample_rate=0: give the rate of the audio in Hz"));
        }
        let worker_memory = worker_memory.map(memory_cap).transpose()?;
        let options =
            PoolOptions { chain, config, format, workers, isolation, timeout, block_size, sandbox, worker_memory };
        let started = start(py, &options)?;
        let chain = started.pool.chain().clone();
        let workers = started.pool.config().workers;
        Ok(Pool { started: Mutex::new(Some(started)), chain, sample_rate, workers, last_x: Mutex::default() })
    }

    /// The chain's name.
    #[getter]
    fn chain(&self) -> &str {
        self.chain.name()
    }

    /// P: the number of normalised parameters θ has.
    #[getter]
    fn num_params(&self) -> usize {
        self.chain.num_params()
    }

    /// The trainable parameters in θ order: dicts with `stage`, `id`, `name`, `unit`, `min`, `max`, `default`,
    /// `scale` and `kind` (θ = 0 is `min` and θ = 1 is `max`, through `scale`).
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        param_dicts(py, &self.chain)
    }

    #[getter]
    fn workers(&self) -> usize {
        self.workers
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Plain values of every parameter of every stage at θ (one row): `{"param": value}`, or `{"stage.param":
    /// value}` in a chain of several stages.
    fn plain_values<'py>(&self, py: Python<'py>, theta: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let theta = arrays::theta_row(theta, "theta", self.chain.num_params())?;
        let values = self.chain.plain_values(&theta).map_err(errors::chain_error)?;
        let dict = PyDict::new(py);
        let qualify = self.chain.stages().len() > 1;
        for (stage, stage_values) in self.chain.stages().iter().zip(values) {
            for (spec, value) in stage.plugin().params.iter().zip(stage_values) {
                let key = if qualify { format!("{}.{}", stage.name(), spec.id) } else { spec.id.clone() };
                dict.set_item(key, value)?;
            }
        }
        Ok(dict)
    }

    /// `y = f(x, θ)` for every item: `(y, errors)`, `y` shaped as `x`. θ `(batch, F, P)` with `hop` moves the
    /// parameters: row `f` from frame `f·hop` (afx's automation, sample-accurate in every format).
    #[pyo3(signature = (x, theta, hop=None))]
    fn render<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        theta: &Bound<'py, PyAny>,
        hop: Option<usize>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
        let (inputs, thetas, control) = self.inputs_and_thetas(x, theta, hop, Scoring::Whole)?;
        let mut rendered = RenderedRows::new(inputs.shape);
        let chain = self.chain.name();
        self.run(py, |pool| {
            pool.trajectories(control.hop, control.scoring)
                .render_batch_each(&inputs.items, &thetas, |i, result| rendered.fill(i, result, chain, &thetas[i]))
        })?;
        rendered.finish(py)
    }

    /// SPSA estimates of `(∂y/∂θ)ᵀ grad_y` for every item (DeepAFx's estimator): K Rademacher perturbations of
    /// size ε, two renders each; item `i` is seeded with `item_seed(seed, i)`, so the result does not depend on
    /// the number of workers. `items`: the items' positions in a larger batch seeded `seed` (row `r` then draws
    /// the perturbations item `items[r]` draws there). Returns `((batch, P) gradients, errors)`.
    ///
    /// θ `(batch, F, P)` with `hop`: gradients of every row, `(batch, F, P)`, each row's perturbation scored as
    /// `scoring` says: `"whole"` (against the whole output, DeepAFx), `"causal"` (against the output from the
    /// row's frame on: unbiased, less noise) or `"window:W"` (W more rows of output: less noise again, biased by
    /// effects longer than W hops).
    #[pyo3(signature = (x, theta, grad_y, k=1, epsilon=0.01, seed=0, items=None, hop=None, scoring="whole"))]
    #[allow(clippy::too_many_arguments)]
    fn spsa<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        theta: &Bound<'py, PyAny>,
        grad_y: &Bound<'py, PyAny>,
        k: u32,
        epsilon: f32,
        seed: u64,
        items: Option<Vec<usize>>,
        hop: Option<usize>,
        scoring: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
        check_spsa(k, epsilon)?;
        let scoring = self::scoring(scoring)?;
        let EstimatorBatch { x, thetas, grads, control } = self.estimator_batch(x, theta, grad_y, hop, scoring)?;
        let seeds = item_seeds(seed, items, x.len())?;
        let results = self.run(py, |pool| {
            let mut pool = pool.trajectories(control.hop, control.scoring);
            pool.spsa_batch(&x, &thetas, &grads, epsilon, k, &seeds)
        })?;
        gradients(py, results, self.chain.num_params(), control.frames)
    }

    /// `render` and the renders of `spsa` in one batch, before ∂L/∂y is known (DeepAFx's layer renders its three
    /// instances in the forward pass): returns `(y, errors, renders)`, `y` and `errors` as `render` gives them;
    /// `renders.vjp(grad_y)` then returns what `spsa(x, theta, grad_y, k, epsilon, seed, items)` would, bit for
    /// bit, without rendering again. A training step so starts and drains the workers once instead of twice; the
    /// cost is memory: `renders` holds 2K renders per item until it goes.
    #[pyo3(signature = (x, theta, k=1, epsilon=0.01, seed=0, items=None, hop=None, scoring="whole"))]
    #[allow(clippy::too_many_arguments)]
    fn render_perturbed<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        theta: &Bound<'py, PyAny>,
        k: u32,
        epsilon: f32,
        seed: u64,
        items: Option<Vec<usize>>,
        hop: Option<usize>,
        scoring: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>, PerturbedRenders)> {
        check_spsa(k, epsilon)?;
        let scoring = self::scoring(scoring)?;
        let (inputs, thetas, control) = self.inputs_and_thetas(x, theta, hop, scoring)?;
        let seeds = item_seeds(seed, items, inputs.shape.batch)?;
        let mut rendered = RenderedRows::new(inputs.shape);
        let chain = self.chain.name();
        let renders = self.run(py, |pool| {
            let mut pool = pool.trajectories(control.hop, control.scoring);
            pool.render_perturbed_each(&inputs.items, &thetas, epsilon, k, &seeds, |i, result| {
                rendered.fill(i, result, chain, &thetas[i])
            })
        })?;
        let num_params = self.chain.num_params();
        let renders = PerturbedRenders::new(renders, inputs.shape, num_params, control.frames);
        let (y, errors) = rendered.finish(py)?;
        Ok((y, errors, renders))
    }

    /// Central finite-difference estimates of `(∂y/∂θ)ᵀ grad_y`, step `step` in the normalised space: 2P renders
    /// per item, the expensive reference. Returns `((batch, P) gradients, errors)`; θ `(batch, F, P)` with `hop`:
    /// 2·F·P renders per item, `(batch, F, P)` gradients.
    #[pyo3(signature = (x, theta, grad_y, step=0.01, hop=None))]
    fn finite_difference<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        theta: &Bound<'py, PyAny>,
        grad_y: &Bound<'py, PyAny>,
        step: f32,
        hop: Option<usize>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyList>)> {
        if !(step > 0.0 && step <= 0.5) {
            return Err(PyValueError::new_err(format!("step={step}: give a step in (0, 0.5] of the normalised range")));
        }
        let EstimatorBatch { x, thetas, grads, control } =
            self.estimator_batch(x, theta, grad_y, hop, Scoring::Whole)?;
        let results = self.run(py, |pool| {
            pool.trajectories(control.hop, control.scoring).finite_difference_batch(&x, &thetas, &grads, step)
        })?;
        gradients(py, results, self.chain.num_params(), control.frames)
    }

    /// Stops the workers. The pool cannot be used afterwards; closing twice is harmless.
    fn close(&self, py: Python<'_>) {
        if let Ok(mut last) = self.last_x.lock() {
            last.clear();
        }
        py.detach(|| {
            let started = self.started.lock().ok().and_then(|mut g| g.take());
            drop(started)
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        let open = self.started.lock().map(|g| g.is_some()).unwrap_or(false);
        format!(
            "afx.Pool({:?}, workers={}, params={}, sample_rate={}{})",
            self.chain.name(),
            self.workers,
            self.chain.num_params(),
            self.sample_rate,
            if open { "" } else { ", closed" }
        )
    }
}
