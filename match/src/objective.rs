//! What a match minimises: the MRSTFT to an aligned target, or the style distance to a reference.

use std::ops::Range;

use afx_core::Audio;
use afx_nn::loss::{LossConfig, MrStftLoss, PreparedTarget};
use candle_core::{DType, Device, Tensor};

use crate::MatchError;
use crate::style::StyleFeatures;

/// The fewest frames a loss can look at: the longest FFT of the MRSTFT and of the style features.
const MIN_FRAMES: usize = 2048;

/// The objective of one match, holding the (cropped) input it renders.
pub enum Objective {
    /// MRSTFT against the target's same frames: the training loss without its time-domain term, the score a
    /// trained controller's validation reports.
    /// (The target's spectra are computed once: scoring a render transforms the render only.)
    Target { input: Audio, target: PreparedTarget, channels: usize, frames: usize, loss: MrStftLoss },
    /// [`StyleFeatures`] distance to a reference of other material, in dB.
    Style { input: Audio, reference: StyleFeatures },
}

impl Objective {
    /// Match `target`, which must be `input` processed: the same rate, frame count (aligned) and, after the
    /// chain, channel count (checked at the first render). Looks at the loudest `max_seconds` of both.
    pub fn target(input: &Audio, target: &Audio, max_seconds: f64) -> Result<Objective, MatchError> {
        if input.sample_rate() != target.sample_rate() {
            return Err(MatchError::Mismatch(format!(
                "the target is at {} Hz but the input at {} Hz: an aligned pair shares its rate (resample one, or \
                 give it as --reference to match its style)",
                target.sample_rate(),
                input.sample_rate()
            )));
        }
        if input.frames() != target.frames() {
            return Err(MatchError::Mismatch(format!(
                "the target has {} frames ({:.3} s) but the input {} ({:.3} s): an aligned pair has the same length \
                 (trim or pad one, or give it as --reference to match its style)",
                target.frames(),
                seconds(target),
                input.frames(),
                seconds(input)
            )));
        }
        if input.frames() < MIN_FRAMES {
            return Err(MatchError::Mismatch(format!(
                "the input is {} frames long: the MRSTFT needs at least {MIN_FRAMES} (its longest FFT)",
                input.frames()
            )));
        }
        let range = crop(input, max_seconds);
        let target = slice(target, range.clone());
        let channels = target.num_channels();
        let rows: Vec<f32> = target.channels().iter().flatten().copied().collect();
        let frames = target.frames();
        let target = Tensor::from_vec(rows, (channels, frames), &Device::Cpu)?;
        let loss = MrStftLoss::new(&LossConfig::default().without_l1(), DType::F32, &Device::Cpu)?;
        let target = loss.prepare(&target)?;
        Ok(Objective::Target { input: slice(input, range), target, channels, frames, loss })
    }

    /// Match the style of `reference` (any rate and length).
    pub fn style(input: &Audio, reference: &Audio, max_seconds: f64) -> Result<Objective, MatchError> {
        if reference.frames() < MIN_FRAMES || input.frames() < MIN_FRAMES {
            return Err(MatchError::Mismatch(format!(
                "the reference is {} frames and the input {} frames long: give at least {MIN_FRAMES} of each (one \
                 analysis frame)",
                reference.frames(),
                input.frames()
            )));
        }
        Ok(Objective::Style { input: slice(input, crop(input, max_seconds)), reference: StyleFeatures::of(reference) })
    }

    /// What the chain renders: the input's crop.
    pub fn input(&self) -> &Audio {
        match self {
            Objective::Target { input, .. } | Objective::Style { input, .. } => input,
        }
    }

    /// "mrstft" or "style".
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Target { .. } => "mrstft",
            Objective::Style { .. } => "style distance (dB)",
        }
    }

    /// The loss of one rendered output (of [`Objective::input`]).
    pub fn score(&self, output: &Audio) -> Result<f64, MatchError> {
        Ok(self.score_batch(&[output])?[0])
    }

    /// The losses of several rendered outputs, in one batched pass of the loss (its FFTs run in parallel over
    /// the items and channels).
    pub fn score_batch(&self, outputs: &[&Audio]) -> Result<Vec<f64>, MatchError> {
        if outputs.is_empty() {
            // Every render of a step failed: nothing to score (the failures are counted, not fatal).
            return Ok(vec![]);
        }
        match self {
            Objective::Target { target, channels, frames, loss, .. } => {
                let frames = *frames;
                let mut rows: Vec<f32> = Vec::with_capacity(outputs.len() * channels * frames);
                for output in outputs {
                    if output.num_channels() != *channels {
                        return Err(MatchError::Mismatch(format!(
                            "the chain gives {} but the target has {}: give a target with the chain's channel \
                             count",
                            count(output.num_channels(), "channel"),
                            count(*channels, "channel"),
                        )));
                    }
                    if output.frames() != frames {
                        return Err(MatchError::Mismatch(format!(
                            "the chain gave {} frames for an input of {frames}",
                            output.frames()
                        )));
                    }
                    rows.extend(output.channels().iter().flatten());
                }
                let n = outputs.len() * channels;
                let y = Tensor::from_vec(rows, (n, frames), &Device::Cpu)?;
                let per_row: Vec<f32> = loss.per_item_against(&y, target)?.to_vec1()?;
                Ok(per_row
                    .chunks(*channels)
                    .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / *channels as f64)
                    .collect())
            }
            Objective::Style { reference, .. } => {
                Ok(outputs.iter().map(|y| StyleFeatures::of(y).distance(reference)).collect())
            }
        }
    }
}

/// The frames a match looks at: all of `audio` when it is at most `max_seconds` long, else the loudest
/// stretch of that length (starting on a multiple of a quarter of it).
pub fn crop(audio: &Audio, max_seconds: f64) -> Range<usize> {
    let len = ((max_seconds * f64::from(audio.sample_rate())).round() as usize).max(1);
    if audio.frames() <= len {
        return 0..audio.frames();
    }
    let step = (len / 4).max(1);
    let energy = |start: usize| -> f64 {
        audio.channels().iter().map(|c| c[start..start + len].iter().map(|&v| f64::from(v * v)).sum::<f64>()).sum()
    };
    // Each window's energy once, the earliest of equal ones kept.
    let (_, start) = (0..=(audio.frames() - len) / step)
        .map(|i| (energy(i * step), i * step))
        .max_by(|(ea, a), (eb, b)| ea.total_cmp(eb).then(b.cmp(a)))
        .unwrap_or((0.0, 0));
    start..start + len
}

fn slice(audio: &Audio, range: Range<usize>) -> Audio {
    Audio::new(audio.sample_rate(), audio.channels().iter().map(|c| c[range.clone()].to_vec()).collect())
        .expect("equal lengths")
}

fn seconds(audio: &Audio) -> f64 {
    audio.frames() as f64 / f64::from(audio.sample_rate())
}

/// "1 channel", "2 channels".
fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}
