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
        let mut x = features.clone();
        for (conv, norm, act) in &self.blocks {
            x = act.forward(&norm.forward(&conv.forward(&x)?)?)?;
        }
        x.mean(D::Minus1)?.mean(D::Minus1)
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
}

/// Re-initialises the weights of `varmap` from `seed` (candle's CPU generator cannot be seeded): every weight
/// matrix/kernel uniform in ±1/√fan_in as PyTorch, conv and linear biases zero, the last layer scaled by 0.1 so
/// the untrained controller starts near θ = 0.5 instead of at the ends. Norm and PReLU constants are kept.
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let gain = |name: &str| if name.starts_with("controller.fc2.") { 0.1 } else { 1.0 };
    let is_bias = |name: &str| name.ends_with(".bias") && (name.contains(".conv") || name.contains(".fc"));
    afx_nn::init::seeded_uniform(varmap, seed, gain, is_bias)
}
