//! Encoder (shared by input and reference) and controller: (input, reference) spectrograms → θ ∈ (0, 1)^P.
//!
//! Checkpoint names mirror the tree: `encoder.conv{i}.{weight,bias}`, `encoder.norm{i}.{weight,bias}`,
//! `encoder.act{i}.weight`, `controller.fc{i}.{weight,bias}`, `controller.act{i}.weight`.

use afx_nn::act::PRelu;
use afx_nn::conv::{Conv2d, Conv2dConfig};
use afx_nn::norm::GroupNorm;
use candle_core::{D, Module, Result, Tensor, bail};
use candle_nn::{Linear, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// Sizes of the model. The defaults (≈ 30 k weights) train at a few steps per second on 2 CPU cores: the
/// plugin renders, not the network, should dominate a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// STFT size and hop of the encoder's spectrogram (at the training rate).
    pub n_fft: usize,
    pub hop: usize,
    /// Output channels of each stride-2 3×3 conv of the encoder; the last is the embedding size.
    pub channels: Vec<usize>,
    /// GroupNorm groups (capped at each layer's channels, which must divide by it).
    pub groups: usize,
    /// Width of the controller's two hidden layers.
    pub hidden: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { n_fft: 512, hop: 256, channels: vec![8, 16, 32, 32], groups: 4, hidden: 64 }
    }
}

impl ModelConfig {
    pub fn embedding_size(&self) -> usize {
        self.channels.last().copied().unwrap_or(1)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels.is_empty() || self.channels.contains(&0) {
            return Err(format!("model.channels must be non-empty and positive, got {:?}", self.channels));
        }
        if self.n_fft < 16 || self.hop == 0 || self.hop > self.n_fft {
            return Err(format!(
                "model: need n_fft >= 16 and 0 < hop <= n_fft (n_fft {}, hop {})",
                self.n_fft, self.hop
            ));
        }
        for &c in &self.channels {
            let g = self.groups.min(c);
            if g == 0 || c % g != 0 {
                return Err(format!("model: {c} channels do not split into {} groups", self.groups));
            }
        }
        if self.hidden == 0 {
            return Err("model.hidden must be positive".into());
        }
        Ok(())
    }
}

/// The GroupNorms' epsilon.
pub const NORM_EPS: f64 = 1e-5;

/// Strided conv → GroupNorm → PReLU blocks, then the mean over frequency and time.
#[derive(Debug, Clone)]
pub struct Encoder {
    blocks: Vec<(Conv2d, GroupNorm, PRelu)>,
}

impl Encoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Encoder> {
        let mut blocks = vec![];
        let mut inputs = 1;
        for (i, &c) in config.channels.iter().enumerate() {
            let conv_config = Conv2dConfig { padding: 1, stride: 2, dilation: 1, groups: 1, cudnn_fwd_algo: None };
            let conv = Conv2d::new(inputs, c, 3, conv_config, true, vb.pp(format!("conv{i}")))?;
            let norm = GroupNorm::new(config.groups.min(c), c, NORM_EPS, vb.pp(format!("norm{i}")))?;
            let act = PRelu::new(Some(c), vb.pp(format!("act{i}")))?;
            blocks.push((conv, norm, act));
            inputs = c;
        }
        Ok(Encoder { blocks })
    }

    /// `(B, 1, bins, frames)` features → `(B, embedding)`.
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        self.maps(features)?.mean(D::Minus1)?.mean(D::Minus1)
    }

    /// `(B, 1, bins, frames)` features → `(B, embedding, T)`: the embedding along time (T = the frames after the
    /// convolutions' strides), the mean over frequency only.
    pub fn forward_frames(&self, features: &Tensor) -> Result<Tensor> {
        self.maps(features)?.mean(2)
    }

    fn maps(&self, features: &Tensor) -> Result<Tensor> {
        let mut x = features.clone();
        for (conv, norm, act) in &self.blocks {
            x = act.forward(&norm.forward(&conv.forward(&x)?)?)?;
        }
        Ok(x)
    }
}

/// MLP on `[emb_input, emb_reference]` with PReLU hidden layers and sigmoid outputs.
#[derive(Debug, Clone)]
pub struct Controller {
    fc: Vec<Linear>,
    act: Vec<PRelu>,
}

impl Controller {
    pub fn new(embedding: usize, hidden: usize, outputs: usize, vb: VarBuilder) -> Result<Controller> {
        let fc = vec![
            candle_nn::linear(2 * embedding, hidden, vb.pp("fc0"))?,
            candle_nn::linear(hidden, hidden, vb.pp("fc1"))?,
            candle_nn::linear(hidden, outputs, vb.pp("fc2"))?,
        ];
        let act = vec![PRelu::new(Some(hidden), vb.pp("act0"))?, PRelu::new(Some(hidden), vb.pp("act1"))?];
        Ok(Controller { fc, act })
    }

    /// `(B, E)`, `(B, E)` → θ `(B, P)`.
    pub fn forward(&self, input: &Tensor, reference: &Tensor) -> Result<Tensor> {
        let mut x = Tensor::cat(&[input, reference], 1)?;
        for (fc, act) in self.fc.iter().zip(&self.act) {
            x = act.forward(&fc.forward(&x)?)?;
        }
        let Some(last) = self.fc.last() else { bail!("controller without layers") };
        sigmoid(&last.forward(&x)?)
    }
}

/// `1 / (1 + e^−x)` from exp and recip, whose gradients candle computes correctly.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct Model {
    pub encoder: Encoder,
    pub controller: Controller,
}

impl Model {
    /// Builds the model under `vb` for a chain of `num_params` parameters.
    pub fn new(config: &ModelConfig, num_params: usize, vb: VarBuilder) -> Result<Model> {
        if let Err(e) = config.validate() {
            bail!("{e}")
        }
        let encoder = Encoder::new(config, vb.pp("encoder"))?;
        let controller = Controller::new(config.embedding_size(), config.hidden, num_params, vb.pp("controller"))?;
        Ok(Model { encoder, controller })
    }

    /// θ `(B, P)` from input and reference features `(B, 1, bins, frames)`.
    pub fn forward(&self, input: &Tensor, reference: &Tensor) -> Result<Tensor> {
        self.controller.forward(&self.encoder.forward(input)?, &self.encoder.forward(reference)?)
    }

    /// A trajectory θ `(B, rows·P)` (row after row, as the chain renders automation) from input and reference
    /// features `(B, 1, bins, frames)` of the same span.
    ///
    /// The temporal head: the encoder's embedding along time (input and reference alike), interpolated linearly
    /// to `rows` evenly spaced rows, then the same controller as [`Model::forward`] on each row's pair of
    /// embeddings. Every row sees the content around its own time, so the parameters can follow the audio (a gate
    /// that closes where the speech stops), and the weights are the fixed-parameter model's: one checkpoint
    /// format, and a run of either kind can start from the other.
    pub fn forward_rows(&self, input: &Tensor, reference: &Tensor, rows: usize) -> Result<Tensor> {
        let along = |features: &Tensor| -> Result<Tensor> {
            let frames = self.encoder.forward_frames(features)?;
            let (batch, embedding, steps) = frames.dims3()?;
            let weights = interpolation(steps, rows, frames.dtype(), frames.device())?;
            // (B, E, T) · (T, rows) → (B, E, rows) → (B·rows, E).
            frames.broadcast_matmul(&weights)?.transpose(1, 2)?.contiguous()?.reshape((batch * rows, embedding))
        };
        let batch = input.dim(0)?;
        let theta = self.controller.forward(&along(input)?, &along(reference)?)?;
        let p = theta.dim(1)?;
        theta.reshape((batch, rows * p))
    }
}

impl Model {
    /// θ `(B, rows·P)` for `rows` rows or one row held through all of them (`held`: the fixed-parameter model's
    /// output, as a trajectory), from input and reference features.
    pub fn forward_trajectory(&self, input: &Tensor, reference: &Tensor, rows: usize, held: bool) -> Result<Tensor> {
        if held { self.forward(input, reference)?.repeat((1, rows)) } else { self.forward_rows(input, reference, rows) }
    }
}

/// `(steps, rows)` weights that interpolate `steps` evenly spaced values linearly at `rows` evenly spaced points
/// (each the centre of its span; the ends held).
fn interpolation(steps: usize, rows: usize, dtype: candle_core::DType, device: &candle_core::Device) -> Result<Tensor> {
    let mut w = vec![0f64; steps * rows];
    for f in 0..rows {
        let u = ((f as f64 + 0.5) * steps as f64 / rows as f64 - 0.5).clamp(0.0, (steps - 1) as f64);
        let (i0, frac) = (u.floor() as usize, u - u.floor());
        let i1 = (i0 + 1).min(steps - 1);
        w[i0 * rows + f] += 1.0 - frac;
        w[i1 * rows + f] += frac;
    }
    Tensor::from_vec(w, (steps, rows), device)?.to_dtype(dtype)
}

/// Re-initialises the weights of `varmap` from `seed` (candle's CPU generator cannot be seeded): every weight
/// matrix/kernel uniform in ±1/√fan_in as PyTorch, conv and linear biases zero, the last layer scaled by 0.1 so
/// the untrained controller starts near θ = 0.5 instead of at the ends. Norm and PReLU constants are kept.
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let gain = |name: &str| if name.starts_with("controller.fc2.") { 0.1 } else { 1.0 };
    let is_bias = |name: &str| name.ends_with(".bias") && (name.contains(".conv") || name.contains(".fc"));
    afx_nn::init::seeded_uniform(varmap, seed, gain, is_bias)
}

#[cfg(test)]
mod tests {
    use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
    use candle_core::{DType, Device, Var};

    use super::*;

    /// The temporal head in f64 at batch 2 against central finite differences: both inputs and every weight.
    #[test]
    fn forward_rows_gradients_match_finite_differences() {
        let config = ModelConfig { n_fft: 64, hop: 32, channels: vec![4, 8], groups: 2, hidden: 8 };
        let varmap = VarMap::new();
        let model = Model::new(&config, 3, VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu)).unwrap();
        // candle's own initialisation, not `seeded_init`'s small last layer: gradients well above the differences'
        // rounding.
        let features = |seed| Var::from_tensor(&pseudo_random((2, 1, 16, 24), seed, &Device::Cpu).unwrap()).unwrap();
        let (x, r) = (features(1), features(2));
        let rows = 5;
        let f = || project(&model.forward_rows(x.as_tensor(), r.as_tensor(), rows)?, 9);
        let theta = model.forward_rows(x.as_tensor(), r.as_tensor(), rows).unwrap();
        assert_eq!(theta.dims(), [2, rows * 3]);
        let weights: Vec<(String, Var)> =
            varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut vars: Vec<(&str, &Var)> = vec![("input", &x), ("reference", &r)];
        vars.extend(weights.iter().map(|(n, v)| (n.as_str(), v)));
        for report in GradCheck::default().run(f, &vars).unwrap() {
            assert!(report.max_abs_grad > 0.0, "{}: an all-zero gradient proves nothing", report.name);
            assert!(report.rel_err < 1e-6, "{report}");
        }
    }

    #[test]
    fn interpolation_weights_sum_to_one_per_row_and_hold_the_ends() {
        let w = interpolation(4, 10, DType::F64, &Device::Cpu).unwrap().to_vec2::<f64>().unwrap();
        for f in 0..10 {
            let sum: f64 = w.iter().map(|steps| steps[f]).sum();
            assert!((sum - 1.0).abs() < 1e-12, "row {f}: {sum}");
        }
        assert_eq!((w[0][0], w[3][9]), (1.0, 1.0));
        // Equal counts: each row is its own step.
        let same = interpolation(3, 3, DType::F64, &Device::Cpu).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(same, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]);
    }
}
