//! Audio files, read and written as the CLI does.

use pyo3::prelude::*;
use std::path::PathBuf;

use crate::arrays;
use crate::errors;

/// Reads WAV, FLAC, OGG or MP3, whole and at its own rate, as `afx render` reads its input: `(audio, rate)`,
/// `audio` float32 `(channels, frames)`.
#[pyfunction]
pub fn load<'py>(py: Python<'py>, path: PathBuf) -> PyResult<(Bound<'py, PyAny>, u32)> {
    let audio = py.detach(|| afx_core::audio_file::read_audio(&path)).map_err(errors::afx_error)?;
    let rate = audio.sample_rate();
    Ok((arrays::item_array(py, audio, false), rate))
}

/// Writes `audio` (`(frames,)` or `(channels, frames)`, float32) as a 32-bit float WAV at `sample_rate`, to a
/// temporary name first and then renamed: a file is never left half-written.
#[pyfunction]
pub fn save(py: Python<'_>, path: PathBuf, audio: &Bound<'_, PyAny>, sample_rate: u32) -> PyResult<()> {
    if sample_rate == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err("sample_rate=0: give the rate of the audio in Hz"));
    }
    let array = arrays::float32(audio, "audio")?;
    let audio = arrays::audio(array.as_array(), sample_rate, "audio")?;
    py.detach(|| audio.write_wav(&path)).map_err(errors::afx_error)
}
