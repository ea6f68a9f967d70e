//! NumPy arrays in and out of the engine's [`Audio`], with the shape and dtype checks that name the argument.
//!
//! Each input item is copied once, into the `Audio` the engine shares with its jobs (an `Arc`, written once to
//! the pool's shared memory for worker processes), or not at all when it is bit for bit the last call's item;
//! each output is copied once, into the array returned. Those are the copies the engine needs: its buffers are
//! planar `Vec`s it owns.

use std::sync::Arc;

use afx_core::Audio;
use numpy::ndarray::{ArrayViewD, Axis};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// How a batch of audio was shaped: `(batch, frames)` (mono items) or `(batch, channels, frames)`. Outputs take
/// the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub batch: usize,
    /// `None` for `(batch, frames)`.
    pub channels: Option<usize>,
    pub frames: usize,
}

impl BatchShape {
    /// The array shape: `[batch, frames]` or `[batch, channels, frames]`.
    pub fn dims(&self) -> Vec<usize> {
        match self.channels {
            None => vec![self.batch, self.frames],
            Some(c) => vec![self.batch, c, self.frames],
        }
    }

    fn describe(&self) -> String {
        match self.channels {
            None => format!("({}, {})", self.batch, self.frames),
            Some(c) => format!("({}, {c}, {})", self.batch, self.frames),
        }
    }
}

/// A float32 array, or a `TypeError` that names `what` and says what it got and what to pass.
pub fn float32<'py>(value: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    if let Ok(array) = value.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        return Ok(array);
    }
    let type_name = value.get_type().name()?.to_string();
    let got = match value.getattr("dtype") {
        Ok(dtype) => format!("{type_name} of dtype {dtype}"),
        Err(_) => type_name.clone(),
    };
    let hint = if type_name == "Tensor" {
        "pass tensor.detach().cpu().numpy(), or use afx.torch.PluginLayer"
    } else {
        "convert with numpy.asarray(value, dtype=numpy.float32)"
    };
    Err(PyTypeError::new_err(format!("{what} must be a float32 NumPy array, got a {got}: {hint}")))
}

/// A batch of audio `(batch, frames)` or `(batch, channels, frames)`, checked and copied into the engine's
/// shared [`Audio`], one per item.
pub struct AudioBatch {
    pub items: Vec<Arc<Audio>>,
    pub shape: BatchShape,
}

impl AudioBatch {
    /// Checks dtype and shape, then copies every item (one `memcpy` per channel of a C-ordered array) and checks
    /// its samples on the fresh copy, while it is in cache: a NaN or infinite sample is refused, naming its item,
    /// frame and channel. The copying runs without the GIL, on two threads for large batches: the workers wait
    /// for it.
    pub fn new(value: &Bound<'_, PyAny>, what: &str, sample_rate: u32) -> PyResult<AudioBatch> {
        AudioBatch::reusing(value, what, sample_rate, &[])
    }

    /// [`AudioBatch::new`], where item `i` is `last[i]` itself (the same `Arc`, not a copy) when its samples are
    /// bit for bit `last[i]`'s: a backward pass over the forward pass's input then reads it instead of copying
    /// it, and the pool finds it already in its shared memory.
    pub fn reusing(
        value: &Bound<'_, PyAny>,
        what: &str,
        sample_rate: u32,
        last: &[Arc<Audio>],
    ) -> PyResult<AudioBatch> {
        let array = float32(value, what)?;
        let view = array.as_array();
        let shape = match *view.shape() {
            [batch, frames] => BatchShape { batch, channels: None, frames },
            [batch, channels, frames] => BatchShape { batch, channels: Some(channels), frames },
            _ => {
                return Err(PyValueError::new_err(format!(
                    "{what} must have shape (batch, frames) or (batch, channels, frames), got {:?}",
                    view.shape()
                )));
            }
        };
        if shape.batch == 0 || shape.frames == 0 || shape.channels == Some(0) {
            return Err(PyValueError::new_err(format!("{what} is empty: shape {}", shape.describe())));
        }
        let copy = |range: std::ops::Range<usize>| -> Result<Vec<Arc<Audio>>, (usize, NonFinite)> {
            range
                .map(|i| {
                    let item = view.index_axis(Axis(0), i);
                    match last.get(i) {
                        Some(last) if same_samples(&item, last, sample_rate) => Ok(last.clone()),
                        _ => copy_item(item, sample_rate).map(Arc::new).map_err(|e| (i, e)),
                    }
                })
                .collect()
        };
        // Two threads pay off once the copy takes longer than starting one (tens of microseconds).
        const PARALLEL_SAMPLES: usize = 1 << 18;
        let total = shape.batch * shape.channels.unwrap_or(1) * shape.frames;
        let py = value.py();
        let copied = py.detach(|| {
            if total < PARALLEL_SAMPLES || shape.batch < 2 {
                return copy(0..shape.batch);
            }
            let half = shape.batch / 2;
            std::thread::scope(|scope| {
                let second = scope.spawn(|| copy(half..shape.batch));
                let first = copy(0..half);
                let second = second.join().expect("copying a batch does not panic");
                Ok([first?, second?].concat())
            })
        });
        match copied {
            Ok(items) => Ok(AudioBatch { items, shape }),
            Err((i, bad)) => Err(bad.error(&format!("{what}[{i}]"))),
        }
    }
}

/// Whether `item` (`(frames,)` or `(channels, frames)`, C-ordered) holds exactly `audio`'s samples, bit for bit
/// (so NaN and -0.0 count as themselves), at its rate: a read of both, about half what a copy costs.
fn same_samples(item: &ArrayViewD<'_, f32>, audio: &Audio, sample_rate: u32) -> bool {
    let rows = channel_rows(item.view());
    audio.sample_rate() == sample_rate
        && rows.len() == audio.num_channels()
        && rows.iter().zip(audio.channels()).all(|(row, channel)| match row.as_slice() {
            Some(samples) => bytemuck::cast_slice::<f32, u8>(samples) == bytemuck::cast_slice::<f32, u8>(channel),
            None => false,
        })
}

/// One item `(frames,)` or `(channels, frames)` as `Audio`; `what` names it in errors.
pub fn audio(item: ArrayViewD<'_, f32>, sample_rate: u32, what: &str) -> PyResult<Audio> {
    if !matches!(item.ndim(), 1 | 2) {
        return Err(PyValueError::new_err(format!(
            "{what} must have shape (frames,) or (channels, frames), got {:?}",
            item.shape()
        )));
    }
    if item.is_empty() {
        return Err(PyValueError::new_err(format!("{what} is empty: shape {:?}", item.shape())));
    }
    copy_item(item, sample_rate).map_err(|bad| bad.error(what))
}

/// A NaN or infinite sample of an item: its channel, frame and value.
pub struct NonFinite {
    channel: usize,
    frame: usize,
    value: f32,
}

impl NonFinite {
    pub fn error(&self, what: &str) -> PyErr {
        let NonFinite { channel, frame, value } = self;
        PyValueError::new_err(format!("{what}: sample {value} (NaN or infinite) at frame {frame} of channel {channel}"))
    }
}

/// A non-empty item `(frames,)` or `(channels, frames)` copied into `Audio` (one `memcpy` per channel of a
/// C-ordered array), its samples checked on the fresh copy, while it is in cache.
fn copy_item(item: ArrayViewD<'_, f32>, sample_rate: u32) -> Result<Audio, NonFinite> {
    let rows = channel_rows(item);
    let mut channels = Vec::with_capacity(rows.len());
    for (channel, row) in rows.into_iter().enumerate() {
        let samples = samples(row);
        if let Some(frame) = first_non_finite(&samples) {
            return Err(NonFinite { channel, frame, value: samples[frame] });
        }
        channels.push(samples);
    }
    Ok(Audio::new(sample_rate, channels).expect("a non-empty item of equal rows is valid audio"))
}

/// The first NaN or infinite sample of an item's channels.
pub fn first_non_finite_sample(channels: &[&[f32]]) -> Option<NonFinite> {
    channels.iter().enumerate().find_map(|(channel, samples)| {
        first_non_finite(samples).map(|frame| NonFinite { channel, frame, value: samples[frame] })
    })
}

/// Item `i` of a batch `(batch, frames)` or `(batch, channels, frames)`, one slice per channel: borrowed where
/// the rows are contiguous (a C-ordered array's are), copied where not.
pub fn item_channels<'a>(batch: &'a ArrayViewD<'_, f32>, i: usize) -> Vec<std::borrow::Cow<'a, [f32]>> {
    channel_rows(batch.index_axis(Axis(0), i))
        .into_iter()
        .map(|row| match row.to_slice() {
            Some(samples) => std::borrow::Cow::Borrowed(samples),
            None => std::borrow::Cow::Owned(row.iter().copied().collect()),
        })
        .collect()
}

/// An item's channels: `(frames,)` is one, `(channels, frames)` one per row.
fn channel_rows(item: ArrayViewD<'_, f32>) -> Vec<ArrayViewD<'_, f32>> {
    match item.ndim() {
        1 => vec![item],
        _ => (0..item.shape()[0]).map(|c| item.clone().index_axis_move(Axis(0), c)).collect(),
    }
}

/// A 1-D view's samples: one `memcpy` when they are contiguous (a C-ordered array's rows are), else one by one.
fn samples(row: ArrayViewD<'_, f32>) -> Vec<f32> {
    match row.as_slice() {
        Some(slice) => slice.to_vec(),
        None => row.iter().copied().collect(),
    }
}

/// The index of the first NaN or infinite sample, at memory speed: `s * 0` is 0 for a finite sample and NaN
/// otherwise, so 16 running sums of it (which the compiler keeps in SIMD registers) stay 0 over a block of
/// finite samples; only a block that fails is searched sample by sample.
fn first_non_finite(samples: &[f32]) -> Option<usize> {
    const BLOCK: usize = 1024;
    samples.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let mut sums = [0.0f32; 16];
        let mut lanes = block.chunks_exact(16);
        for lane in &mut lanes {
            for (sum, s) in sums.iter_mut().zip(lane) {
                *sum += s * 0.0;
            }
        }
        let finite = sums.iter().all(|s| *s == 0.0) && lanes.remainder().iter().all(|s| s.is_finite());
        if finite { None } else { block.iter().position(|s| !s.is_finite()).map(|i| b * BLOCK + i) }
    })
}

/// Normalised parameters, one item per row: `(batch, P)`, or trajectories `(batch, F, P)` (F rows of P
/// values per item, flattened row after row). Every value checked to lie in [0, 1].
pub struct Thetas {
    pub rows: Vec<Vec<f32>>,
    /// F, for trajectories.
    pub frames: Option<usize>,
}

/// θ of `batch` items of `params` parameters: `(batch, P)` or `(batch, F, P)`, values in [0, 1].
pub fn theta_batch(value: &Bound<'_, PyAny>, what: &str, batch: usize, params: usize) -> PyResult<Thetas> {
    let array = float32(value, what)?;
    let view = array.as_array();
    let frames = match view.shape() {
        [b, p] if (*b, *p) == (batch, params) => None,
        [b, f, p] if (*b, *p) == (batch, params) && *f > 0 => Some(*f),
        shape => {
            return Err(PyValueError::new_err(format!(
                "{what} must have shape (batch, parameters) = ({batch}, {params}), or (batch, frames, parameters) \
                 = ({batch}, F, {params}) for parameters that move, got {shape:?}"
            )));
        }
    };
    let rows: Vec<Vec<f32>> = view.axis_iter(Axis(0)).map(|r| r.iter().copied().collect()).collect();
    for (i, row) in rows.iter().enumerate() {
        if let Some(bad) = row.iter().position(|t| !(0.0..=1.0).contains(t)) {
            let index = match frames {
                None => format!("{i}, {bad}"),
                Some(_) => format!("{i}, {}, {}", bad / params, bad % params),
            };
            return Err(PyValueError::new_err(format!(
                "{what}[{index}] = {} is outside the normalised range [0, 1]",
                row[bad]
            )));
        }
    }
    Ok(Thetas { rows, frames })
}

/// One θ row `(P,)` of normalised parameters, checked to lie in [0, 1].
pub fn theta_row(value: &Bound<'_, PyAny>, what: &str, params: usize) -> PyResult<Vec<f32>> {
    let array = float32(value, what)?;
    let view = array.as_array();
    if view.shape() != [params] {
        return Err(PyValueError::new_err(format!(
            "{what} must have shape (parameters,) = ({params},), got {:?}",
            view.shape()
        )));
    }
    let row: Vec<f32> = view.iter().copied().collect();
    check_normalised(&row, &format!("{what}["))?;
    Ok(row)
}

/// A `ValueError` for the first value outside [0, 1] (or NaN), named `{prefix}{index}]`.
fn check_normalised(row: &[f32], prefix: &str) -> PyResult<()> {
    match row.iter().position(|t| !(0.0..=1.0).contains(t)) {
        Some(p) => {
            Err(PyValueError::new_err(format!("{prefix}{p}] = {} is outside the normalised range [0, 1]", row[p])))
        }
        None => Ok(()),
    }
}

/// Gradients `(batch, P)`, or `(batch, F, P)` for trajectories of F rows; a failed item's row (`None`) is NaN.
pub fn gradient_array<'py>(
    py: Python<'py>,
    rows: &[Option<Vec<f32>>],
    params: usize,
    frames: Option<usize>,
) -> Bound<'py, PyArrayDyn<f32>> {
    let mut builder = RowsBuilder::new(rows.len(), params * frames.unwrap_or(1));
    for (index, row) in rows.iter().enumerate() {
        if let Some(row) = row {
            let set = builder.set(index, std::slice::from_ref(row));
            debug_assert!(set, "a gradient has one value per parameter");
        }
    }
    let dims = match frames {
        None => vec![rows.len(), params],
        Some(f) => vec![rows.len(), f, params],
    };
    builder.into_array(py, dims)
}

/// The data of an array of `rows` rows of `row_len` floats, filled row by row in any order (each row from its
/// parts, as the planar channels of a rendered item): one copy per row, no zeroing first. A row never set is NaN,
/// so a failed item cannot pass for audio.
pub struct RowsBuilder {
    data: Vec<f32>,
    set: Vec<bool>,
    row_len: usize,
}

impl RowsBuilder {
    pub fn new(rows: usize, row_len: usize) -> RowsBuilder {
        RowsBuilder { data: Vec::with_capacity(rows * row_len), set: vec![false; rows], row_len }
    }

    /// Row `index` from `parts`; false (the row left NaN) unless they hold `row_len` floats in all.
    #[must_use]
    pub fn set(&mut self, index: usize, parts: &[Vec<f32>]) -> bool {
        if parts.iter().map(Vec::len).sum::<usize>() != self.row_len {
            return false;
        }
        let mut row = &mut self.data.spare_capacity_mut()[index * self.row_len..(index + 1) * self.row_len];
        for part in parts {
            let (head, rest) = row.split_at_mut(part.len());
            head.write_copy_of_slice(part);
            row = rest;
        }
        self.set[index] = true;
        true
    }

    /// The array of shape `dims` (`rows * row_len` elements).
    pub fn into_array(mut self, py: Python<'_>, dims: Vec<usize>) -> Bound<'_, PyArrayDyn<f32>> {
        let len = self.set.len() * self.row_len;
        let spare = &mut self.data.spare_capacity_mut()[..len];
        for (row, _) in spare.chunks_mut(self.row_len.max(1)).zip(&self.set).filter(|(_, set)| !**set) {
            row.fill(std::mem::MaybeUninit::new(f32::NAN));
        }
        // SAFETY: every row of the first `len` elements was written: by `set` (whose whole row was copied), or
        // with NaN just above; the capacity is `len` (reserved in `new`).
        unsafe { self.data.set_len(len) };
        numpy::PyArray1::from_vec(py, self.data)
            .reshape(dims)
            .expect("the rows fill the shape")
            .into_any()
            .cast_into()
            .expect("a reshaped float32 array")
    }
}

/// One rendered or loaded item as an array `(channels, frames)`, or `(frames,)` for `mono_shape` (one channel):
/// a mono buffer becomes the array without a copy.
pub fn item_array(py: Python<'_>, audio: Audio, mono_shape: bool) -> Bound<'_, PyAny> {
    let (channels, frames) = (audio.num_channels(), audio.frames());
    let mut planar = audio.into_channels();
    if mono_shape && channels == 1 {
        return numpy::PyArray1::from_vec(py, planar.remove(0)).into_any();
    }
    numpy::PyArray1::from_vec(py, planar.concat())
        .reshape([channels, frames])
        .expect("the channels fill the shape")
        .into_any()
}
