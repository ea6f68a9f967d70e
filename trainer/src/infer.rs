//! Inference: a trained run applied to (input, reference) files of any length, rate and channel count.
//!
//! The encoder analyses both at the model's rate (mono, resampled), in windows of the training clip length L
//! (what it was trained on); the embeddings of up to [`MAX_WINDOWS`] evenly spread windows are averaged. The
//! chain then renders the WHOLE input at its own rate and channels.
//!
//! A run trained with automation (`automation_hop`) predicts a trajectory instead: the model runs on
//! consecutive windows of the whole input and its reference (the processed version of the same audio, aligned),
//! each window `hop·⌊L/hop⌋` frames, so the rows of all windows follow one another at the hop; the rows are
//! taken at the input's own rate (row `f` from the input frame nearest `f·hop` at the model's rate), rendered as
//! automation, and returned as [`Curves`].

use std::path::Path;

use afx_core::Audio;
use afx_host::{Automation, Curves, Preset};
use afx_spsa::Pool;
use candle_core::{Device, Tensor};

use crate::TrainError;
use crate::chain_info::ChainInfo;
use crate::frontend::{Frontend, batch_tensor};
use crate::model::Model;
use crate::run::{self, CheckpointMeta};

/// Windows analysed per file at most (a 3-minute file is summarised, not fed whole to the encoder).
pub const MAX_WINDOWS: usize = 32;

/// A trained model loaded from a run's newest checkpoint.
pub struct TrainedModel {
    pub meta: CheckpointMeta,
    model: Model,
    frontend: Frontend,
    device: Device,
    _varmap: candle_nn::VarMap,
}

/// One trained parameter's predicted value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictedParam {
    pub stage: String,
    pub id: String,
    pub name: String,
    pub unit: Option<String>,
    pub normalized: f32,
    pub plain: f32,
}

/// What [`infer`] returns.
#[derive(Debug, Clone)]
pub struct Inference {
    /// The whole input through the chain, at the input's rate and channels.
    pub output: Audio,
    pub theta: Vec<f32>,
    /// The trained parameters, in plain units.
    pub params: Vec<PredictedParam>,
    /// Every parameter of every stage (for `afx render --preset`); with automation, the values of the first row.
    pub preset: Preset,
    /// With automation: the trained parameters' curves, at the input's rate (for `afx render --automation`).
    pub curves: Option<Curves>,
}

impl TrainedModel {
    pub fn load(run_dir: &Path, device: &Device) -> Result<TrainedModel, TrainError> {
        let Some((meta, weights)) = afx_core::RunFolder::new(run_dir).latest_checkpoint::<CheckpointMeta>()? else {
            return Err(TrainError::NoCheckpoint { run: run_dir.to_path_buf() });
        };
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, device);
        let model = Model::new(&meta.model, meta.chain.num_params(), vb)?;
        afx_nn::checkpoint::load(&weights, &varmap, None)?;
        let frontend = Frontend::new(meta.model.n_fft, meta.model.hop, device)?;
        Ok(TrainedModel { meta, model, frontend, device: device.clone(), _varmap: varmap })
    }

    /// The analysis window: the training half length L, in frames at the model's rate.
    pub fn window_frames(&self) -> usize {
        self.meta.config.frames()
    }

    /// Predicted θ for (input, reference) at any rate and channel count.
    pub fn predict(&self, input: &Audio, reference: &Audio) -> Result<Vec<f32>, TrainError> {
        let x = self.embedding(input, "input", true)?;
        let r = self.embedding(reference, "reference", false)?;
        let theta = self.model.controller.forward(&x, &r)?;
        Ok(theta.flatten_all()?.to_vec1()?)
    }

    /// With automation: the whole input's trajectory at the model's rate, one row of P normalised values per
    /// `automation_hop` frames (row after row), from consecutive windows of input and reference (see the module
    /// docs). The reference must be as long as the input (it is its processed version).
    pub fn predict_trajectory(&self, input: &Audio, reference: &Audio) -> Result<Vec<f32>, TrainError> {
        let config = &self.meta.config;
        let Some(hop) = config.automation_hop else {
            return Err(TrainError::Config("the run predicts fixed parameters, not a trajectory".into()));
        };
        let rate = self.meta.sample_rate;
        let mono = |audio: &Audio| -> Result<Vec<f32>, TrainError> {
            Ok(crate::resample::to_rate(audio, rate)?.into_channels().swap_remove(0))
        };
        let (mut x, mut r) = (mono(input)?, mono(reference)?);
        let seconds = |a: &Audio| a.frames() as f64 / f64::from(a.sample_rate());
        if (seconds(input) - seconds(reference)).abs() > 1e-3 {
            return Err(TrainError::Config(format!(
                "the reference lasts {:.3} s and the input {:.3} s: a run trained with automation takes the \
                 processed version of the input itself as its reference",
                seconds(reference),
                seconds(input)
            )));
        }
        let total_rows = Automation::rows_for(x.len(), hop);
        let rows_per_window = (config.frames() / hop).max(1);
        let window = rows_per_window * hop;
        let windows = total_rows.div_ceil(rows_per_window);
        x.resize(windows * window, 0.0);
        r.resize(windows * window, 0.0);
        let mut rows = Vec::with_capacity(windows * rows_per_window * self.meta.chain.num_params());
        // A few windows per forward pass: the spectrograms of a long file are not all held at once.
        for first in (0..windows).step_by(8) {
            let clips = |samples: &[f32]| -> Vec<Audio> {
                (first..(first + 8).min(windows))
                    .map(|w| Audio::new(rate, vec![samples[w * window..(w + 1) * window].to_vec()]).expect("mono"))
                    .collect()
            };
            let (xs, rs) = (clips(&x), clips(&r));
            let xf = self.frontend.features(&batch_tensor(&xs.iter().collect::<Vec<_>>(), &self.device)?)?;
            let rf = self.frontend.features(&batch_tensor(&rs.iter().collect::<Vec<_>>(), &self.device)?)?;
            let theta = self.model.forward_trajectory(&xf, &rf, rows_per_window, config.fixed_parameters)?;
            rows.extend(theta.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
        }
        rows.truncate(total_rows * self.meta.chain.num_params());
        Ok(rows)
    }

    /// Mean embedding `(1, E)` over windows of `audio`. A too-short input is zero-padded to one window (its
    /// processing is still defined); a too-short reference is an error (it defines the style).
    fn embedding(&self, audio: &Audio, what: &'static str, pad: bool) -> Result<Tensor, TrainError> {
        let rate = self.meta.sample_rate;
        let window = self.window_frames();
        let mono = crate::resample::to_rate(audio, rate)?;
        let mut samples = mono.into_channels().swap_remove(0);
        if samples.len() < window {
            if !pad || samples.is_empty() {
                let in_rate = audio.sample_rate();
                return Err(TrainError::TooShort {
                    what,
                    frames: audio.frames(),
                    rate: in_rate,
                    seconds: audio.frames() as f64 / f64::from(in_rate),
                    window_seconds: window as f64 / f64::from(rate),
                });
            }
            samples.resize(window, 0.0);
        }
        let count = (samples.len() / window).clamp(1, MAX_WINDOWS);
        let span = samples.len() - window;
        let windows: Vec<Audio> = (0..count)
            .map(|i| {
                let start = if count == 1 { span / 2 } else { i * span / (count - 1) };
                Audio::new(rate, vec![samples[start..start + window].to_vec()]).expect("one channel")
            })
            .collect();
        let clips: Vec<&Audio> = windows.iter().collect();
        let features = self.frontend.features(&batch_tensor(&clips, &self.device)?)?;
        Ok(self.model.encoder.forward(&features)?.mean_keepdim(0)?)
    }
}

/// The reference of a run trained without one (`no_reference`, `afx train --pairs DIR --no-reference`): L
/// frames of silence at the model's rate, what it saw in training.
pub fn silent_reference(config: &crate::train::config::TrainConfig) -> Audio {
    Audio::silence(config.sample_rate, 1, config.frames())
}

/// How [`infer_with`] treats a prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InferOptions {
    /// With automation: low-pass the predicted curves at this many Hz before the render (DeepAFx's smoothing of
    /// its per-frame parameters: a 4th-order Butterworth, forward and backward, so without delay). `None`: as
    /// predicted.
    pub smooth_hz: Option<f64>,
}

/// Predicts θ for (input, reference), renders the whole input through the chain `pool` hosts (which must be the
/// run's chain), and returns the output, the values and a preset that replays it.
pub fn infer(model: &TrainedModel, pool: &mut Pool, input: &Audio, reference: &Audio) -> Result<Inference, TrainError> {
    infer_with(model, pool, input, reference, &InferOptions::default())
}

/// [`infer`] with options.
pub fn infer_with(
    model: &TrainedModel,
    pool: &mut Pool,
    input: &Audio,
    reference: &Audio,
    options: &InferOptions,
) -> Result<Inference, TrainError> {
    let info = ChainInfo::from_chain(pool.chain());
    run::check_chain(Path::new("(loaded run)"), &model.meta.chain, &info)?;
    if let Some(hop) = model.meta.config.automation_hop {
        return infer_moving(model, pool, input, reference, hop, options);
    }
    if options.smooth_hz.is_some() {
        return Err(TrainError::Config(
            "--smooth smooths predicted automation: this run predicts fixed parameters".into(),
        ));
    }
    let theta = model.predict(input, reference)?;
    let values = pool.chain().plain_values(&theta)?;
    let output = render_whole(pool, input, &values)?;
    let params = predicted_params(&info, &theta)?;
    let preset = Preset::from_values(pool.chain(), &values);
    Ok(Inference { output, theta, params, preset, curves: None })
}

/// [`infer`] for a run trained with automation at `hop` (model-rate frames): the trajectory re-gridded to the
/// input's rate, rendered as automation.
fn infer_moving(
    model: &TrainedModel,
    pool: &mut Pool,
    input: &Audio,
    reference: &Audio,
    hop: usize,
    options: &InferOptions,
) -> Result<Inference, TrainError> {
    let p = model.meta.chain.num_params();
    let mut rows = model.predict_trajectory(input, reference)?;
    let model_rows = rows.len() / p;
    let (rate, in_rate) = (f64::from(model.meta.sample_rate), f64::from(input.sample_rate()));
    if let Some(cutoff) = options.smooth_hz {
        smooth_rows(&mut rows, p, rate / hop as f64, cutoff)?;
    }
    let hop_in = ((hop as f64 * in_rate / rate).round() as usize).max(1);
    let theta: Vec<f32> = (0..Automation::rows_for(input.frames(), hop_in))
        .flat_map(|f| {
            // The model's row in effect at this row's first frame.
            let at = ((f * hop_in) as f64 * rate / in_rate / hop as f64).floor() as usize;
            let row = at.min(model_rows - 1);
            rows[row * p..(row + 1) * p].iter().copied()
        })
        .collect();
    let automation = pool.chain().plain_automation(&theta, hop_in)?;
    let output = pool.render_automated(input, None, automation.clone()).map_err(|e| TrainError::Render(Box::new(e)))?;
    let curves = Curves::of_trained(pool.chain(), input.sample_rate(), &automation);
    let first: Vec<Vec<f32>> = automation.iter().map(|a| a.row(0).to_vec()).collect();
    let preset = Preset::from_values(pool.chain(), &first);
    Ok(Inference { output, theta, params: vec![], preset, curves: Some(curves) })
}

/// One render of a whole file by the pool's worker: a plugin that crashes or hangs fails this item, not the
/// caller.
fn render_whole(pool: &mut Pool, input: &Audio, values: &[Vec<f32>]) -> Result<Audio, TrainError> {
    pool.render_values(input, None, values).map_err(|e| TrainError::Render(Box::new(e)))
}

/// Like [`infer`] with the run read from `run_dir` (the error names the folder when the chain does not match).
pub fn infer_run(
    run_dir: &Path,
    device: &Device,
    pool: &mut Pool,
    input: &Audio,
    reference: &Audio,
    options: &InferOptions,
) -> Result<Inference, TrainError> {
    let model = TrainedModel::load(run_dir, device)?;
    run::check_chain(run_dir, &model.meta.chain, &ChainInfo::from_chain(pool.chain()))?;
    infer_with(&model, pool, input, reference, options)
}

/// Low-passes each parameter's column of `rows` (P values per row, `rows_per_second` rows a second) at `cutoff`
/// Hz: two Butterworth biquads (a 4th-order Butterworth) run forward, then backward over the result, so the
/// curve keeps its timing; the ends are held for the filters to settle. Values stay in [0, 1].
pub fn smooth_rows(rows: &mut [f32], p: usize, rows_per_second: f64, cutoff: f64) -> Result<(), TrainError> {
    let nyquist = rows_per_second / 2.0;
    if !(cutoff > 0.0 && cutoff < nyquist) {
        return Err(TrainError::Config(format!(
            "--smooth {cutoff} Hz: the curves have {rows_per_second:.2} rows a second, so give a cutoff between 0 and \
             {nyquist:.2} Hz"
        )));
    }
    let n = rows.len() / p.max(1);
    // Held ends: three time constants of the lowest cutoff, at least a few rows.
    let pad = ((3.0 * rows_per_second / cutoff).ceil() as usize).clamp(4, 4 * n.max(1));
    let sections: Vec<[f64; 5]> =
        [0.541_196_100_146_197, 1.306_562_964_876_377].iter().map(|&q| lowpass(cutoff, rows_per_second, q)).collect();
    for j in 0..p {
        let column: Vec<f64> = (0..n).map(|f| f64::from(rows[f * p + j])).collect();
        let (first, last) = (column[0], column[n - 1]);
        let mut x: Vec<f64> =
            std::iter::repeat_n(first, pad).chain(column).chain(std::iter::repeat_n(last, pad)).collect();
        // Forward, then backward over the result (each pass ends reversed, so two leave it the right way round).
        for _ in 0..2 {
            for section in &sections {
                biquad(section, &mut x);
            }
            x.reverse();
        }
        for f in 0..n {
            rows[f * p + j] = x[pad + f].clamp(0.0, 1.0) as f32;
        }
    }
    Ok(())
}

/// RBJ's low-pass biquad `[b0, b1, b2, a1, a2]` (normalised by a0) at `cutoff` Hz for `rate` samples a second.
fn lowpass(cutoff: f64, rate: f64, q: f64) -> [f64; 5] {
    let w = std::f64::consts::TAU * cutoff / rate;
    let (cos, alpha) = (w.cos(), w.sin() / (2.0 * q));
    let a0 = 1.0 + alpha;
    [(1.0 - cos) / 2.0 / a0, (1.0 - cos) / a0, (1.0 - cos) / 2.0 / a0, -2.0 * cos / a0, (1.0 - alpha) / a0]
}

/// Runs one biquad over `x` in place (direct form I), starting at rest on `x[0]`.
fn biquad(&[b0, b1, b2, a1, a2]: &[f64; 5], x: &mut [f64]) {
    let Some(&start) = x.first() else { return };
    let (mut x1, mut x2, mut y1, mut y2) = (start, start, start, start);
    for v in x.iter_mut() {
        let y = b0 * *v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
        (x2, x1, y2, y1) = (x1, *v, y1, y);
        *v = y;
    }
}

/// Renders `input` through the chain `pool` hosts with a preset's values (what `afx render --preset` does).
pub fn render_preset(pool: &mut Pool, preset: &Preset, input: &Audio) -> Result<Audio, TrainError> {
    let values = preset.values_for(pool.chain())?;
    render_whole(pool, input, &values)
}

/// The trained parameters of `info` at `theta`, in plain units.
pub fn predicted_params(info: &ChainInfo, theta: &[f32]) -> Result<Vec<PredictedParam>, TrainError> {
    info.params
        .iter()
        .zip(theta)
        .map(|(p, &n)| {
            let plain = p
                .spec
                .to_plain(n)
                .map_err(|e| TrainError::Config(format!("predicted {}.{} = {n}: {e}", p.stage, p.spec.id)))?;
            Ok(PredictedParam {
                stage: p.stage.clone(),
                id: p.spec.id.clone(),
                name: p.spec.name.clone(),
                unit: p.spec.unit.clone(),
                normalized: n,
                plain,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_keeps_constants_and_smooths_a_step_without_moving_it() {
        // One parameter, 200 rows at 20 rows a second: a step from 0.2 to 0.8 at row 100.
        let mut rows: Vec<f32> = (0..200).map(|f| if f < 100 { 0.2 } else { 0.8 }).collect();
        smooth_rows(&mut rows, 1, 20.0, 1.0).unwrap();
        // Zero phase: the smoothed step crosses its middle at the step, and is symmetric about it.
        assert!((rows[99] + rows[100] - 1.0).abs() < 1e-3, "{} {}", rows[99], rows[100]);
        assert!(rows[95] > 0.2 && rows[95] < 0.5 && rows[104] < 0.8 && rows[104] > 0.5, "{:?}", &rows[94..106]);
        assert!((rows[0] - 0.2).abs() < 1e-4 && (rows[199] - 0.8).abs() < 1e-4);
        let mut flat = vec![0.4f32, 0.7, 0.4, 0.7, 0.4, 0.7];
        smooth_rows(&mut flat, 2, 20.0, 2.0).unwrap();
        assert!(flat.chunks(2).all(|r| (r[0] - 0.4).abs() < 1e-5 && (r[1] - 0.7).abs() < 1e-5), "{flat:?}");
        assert!(smooth_rows(&mut flat, 2, 20.0, 10.0).is_err());
    }
}
