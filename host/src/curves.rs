//! Curves files: parameter automation as JSON a person can read, edit and replay.
//!
//! `afx infer` writes one beside the audio it renders with predicted automation; `afx render --automation FILE`
//! replays one bit for bit. The format, version 1:
//!
//! ```json
//! {
//!   "version": 1,
//!   "sample_rate": 44100,
//!   "hop": 1024,
//!   "chain": "gate",
//!   "curves": [
//!     { "param": "thr", "unit": "dB", "values": [-40.0, -40.0, -22.5, -22.5] }
//!   ]
//! }
//! ```
//!
//! - `values` are plain units (what `--set` takes), one per hop: value `f` holds from frame `f·hop` of the audio
//!   at `sample_rate` (steps, as [`crate::automation`] renders them). Every curve has one value per started hop
//!   of the audio it is rendered with.
//! - `param` names a parameter as `--set` does: its id, `stage.id` in a chain, or its name when unique.
//!   Parameters without a curve keep their fixed values (`--set`, plugins.toml, the plugin's default).
//! - `chain` and `unit` are informational: afx writes them, and reads the file without them.

use std::path::{Path, PathBuf};

use afx_core::FileError;
use serde::{Deserialize, Serialize};

use crate::automation::Automation;
use crate::chain::{ChainError, ChainLayout};

/// The version of the format this module reads and writes.
pub const VERSION: u32 = 1;

/// A curves file (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    pub version: u32,
    pub sample_rate: u32,
    /// Frames per value.
    pub hop: usize,
    /// The chain the curves were written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    pub curves: Vec<Curve>,
}

/// One parameter's values over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    /// The parameter, as `--set` names it.
    pub param: String,
    /// Its unit, for a reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Plain values, one per hop. `null` stands for a value JSON cannot hold (NaN, ±inf): an error on reading.
    #[serde(with = "finite_or_null")]
    pub values: Vec<f32>,
}

/// Why a curves file could not be read, written or applied. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    /// The file could not be read or written, or is not a curves file.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Chain { path: PathBuf, source: Box<ChainError> },
}

impl Curves {
    /// Reads and checks the file's own shape (version, hop, equal lengths, finite values). Whether it fits a
    /// chain and an input is [`Curves::automation`]'s check.
    pub fn read(path: &Path) -> Result<Curves, CurvesError> {
        let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
        let curves: Curves =
            serde_json::from_str(&text).map_err(|e| FileError::format(path, format!("not a curves file: {e}")))?;
        curves.check().map_err(|message| CurvesError::Invalid { path: path.into(), message })?;
        Ok(curves)
    }

    /// Writes the file atomically (a temporary name, then a rename).
    pub fn write(&self, path: &Path) -> Result<(), CurvesError> {
        let mut json = serde_json::to_string_pretty(self).expect("curves serialise");
        json.push('\n');
        Ok(afx_core::atomic::write(path, json.as_bytes()).map_err(|e| FileError::format(path, e))?)
    }

    /// The curves of `chain`'s trainable parameters in `automations` (one per stage, as a render takes them),
    /// for audio at `sample_rate`: what `afx infer` writes beside a render with predicted automation.
    pub fn of_trained(chain: &ChainLayout, sample_rate: u32, automations: &[Automation]) -> Curves {
        let qualify = chain.stages().len() > 1;
        let mut curves = vec![];
        let mut hop = 1;
        for (stage, automation) in chain.stages().iter().zip(automations) {
            hop = automation.hop();
            for (index, spec) in stage.trainable() {
                let values = (0..automation.frames()).map(|f| automation.row(f)[*index]).collect();
                let param = if qualify { format!("{}.{}", stage.name(), spec.id) } else { spec.id.clone() };
                curves.push(Curve { param, unit: spec.unit.clone(), values });
            }
        }
        Curves { version: VERSION, sample_rate, hop, chain: Some(chain.name().to_string()), curves }
    }

    /// How many values each curve holds.
    pub fn frames(&self) -> usize {
        self.curves.first().map_or(0, |c| c.values.len())
    }

    fn check(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("version {} (this afx reads version {VERSION})", self.version));
        }
        if self.hop == 0 {
            return Err("hop 0: the hop is the number of frames each value holds, at least 1".into());
        }
        if self.sample_rate == 0 {
            return Err("sample_rate 0".into());
        }
        let frames = self.frames();
        for curve in &self.curves {
            if curve.values.is_empty() {
                return Err(format!("curve {:?} has no values", curve.param));
            }
            if curve.values.len() != frames {
                return Err(format!(
                    "curve {:?} has {} values, curve {:?} {frames}: every curve needs one value per hop",
                    curve.param,
                    curve.values.len(),
                    self.curves[0].param
                ));
            }
            if let Some(f) = curve.values.iter().position(|v| !v.is_finite()) {
                let seconds = (f * self.hop) as f64 / f64::from(self.sample_rate);
                return Err(format!("curve {:?}: value {f} (at {seconds:.3} s) is not a finite number", curve.param));
            }
        }
        Ok(())
    }

    /// One [`Automation`] per stage of `chain` for an input of `input_frames` frames at `sample_rate`: `base`
    /// (plain values per stage) with the curves' parameters moving. `path` names the file in errors.
    pub fn automation(
        &self,
        path: &Path,
        chain: &ChainLayout,
        base: &[Vec<f32>],
        sample_rate: u32,
        input_frames: usize,
    ) -> Result<Vec<Automation>, CurvesError> {
        let invalid = |message: String| CurvesError::Invalid { path: path.into(), message };
        self.check().map_err(invalid)?;
        if self.sample_rate != sample_rate {
            return Err(invalid(format!(
                "the curves are for audio at {} Hz, the input is at {sample_rate} Hz",
                self.sample_rate
            )));
        }
        let (frames, needed) = (self.frames(), Automation::rows_for(input_frames, self.hop));
        if !self.curves.is_empty() && frames != needed {
            let seconds = input_frames as f64 / f64::from(sample_rate);
            return Err(invalid(format!(
                "the curves hold {frames} values each; the input ({input_frames} frames, {seconds:.3} s) at a hop \
                 of {} needs {needed}",
                self.hop
            )));
        }
        let frames = if self.curves.is_empty() { 1 } else { frames };
        let mut rows: Vec<Vec<f32>> = base.iter().map(|values| values.repeat(frames)).collect();
        let mut seen: Vec<(usize, usize, &str)> = vec![];
        for curve in &self.curves {
            let (stage, index) = chain
                .find_param(&curve.param)
                .map_err(|e| CurvesError::Chain { path: path.into(), source: Box::new(e) })?;
            if let Some((_, _, other)) = seen.iter().find(|(s, i, _)| (*s, *i) == (stage, index)) {
                return Err(invalid(format!("curves {other:?} and {:?} are the same parameter", curve.param)));
            }
            seen.push((stage, index, &curve.param));
            let spec = &chain.stages()[stage].plugin().params[index];
            let p = base[stage].len();
            for (f, &value) in curve.values.iter().enumerate() {
                spec.check(value).map_err(|e| {
                    let seconds = (f * self.hop) as f64 / f64::from(sample_rate);
                    invalid(format!("curve {:?}, value {f} (at {seconds:.3} s): {e}", curve.param))
                })?;
                rows[stage][f * p + index] = value;
            }
        }
        let hop = if frames == 1 { usize::MAX } else { self.hop };
        Ok(base
            .iter()
            .zip(rows)
            .map(|(values, rows)| Automation::new(hop, values.len(), rows).expect("rows of the stage's width"))
            .collect())
    }
}

/// `values` as JSON numbers, with `null` read as NaN (JSON has no NaN: a file that needs one says `null`, and
/// [`Curves::read`] then names the curve and the value).
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(|v| v.is_finite().then_some(*v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let values: Vec<Option<f32>> = Vec::deserialize(deserializer)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect())
    }
}
