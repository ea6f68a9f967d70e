//! [`TrainConfig`]: everything that shapes a run, stored in the run folder and in every checkpoint.

use std::path::PathBuf;

use afx_nn::optim::AdamWConfig;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::method::GradKind;
use crate::method::spsa::SpsaConfig;
use crate::model::ModelConfig;
use crate::pairs::Corruption;

/// Everything that shapes a run. Stored in the run folder and in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Training steps; also the horizon of the learning-rate decay.
    pub steps: u64,
    /// Stop earlier after this many minutes of training (wall clock of this process).
    pub minutes: Option<f64>,
    pub batch: usize,
    /// Learning rate at step 1, decayed along a cosine to `lr_final` at `steps`: SPSA with a constant rate
    /// climbed back up late in the measurement on this chain (notes/anchors.md).
    pub lr: f64,
    pub lr_final: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip of the network's update (SPSA estimates have heavy tails).
    pub grad_clip: f64,
    pub seed: u64,
    /// Length L of each half (input_A, reference_B) in seconds.
    pub clip_seconds: f64,
    /// The training and analysis rate.
    pub sample_rate: u32,
    pub corruption: Corruption,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    pub val_items: usize,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// The gradient method (`--grad`).
    #[serde(default)]
    pub grad: GradKind,
    /// The proxy run the proxy methods train through (`--proxy`).
    #[serde(default)]
    pub proxy: Option<PathBuf>,
    /// SPSA's settings; its MRSTFT settings are every method's training loss.
    pub spsa: SpsaConfig,
    /// The model's reference is silence (`--no-reference`, a pair folder of one fixed style): inference then
    /// needs no reference either.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_reference: bool,
    /// Pairs held out of a pair folder for validation (`--val-pairs`; `None` for synthetic pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_pairs: Option<usize>,
    /// The central-difference step of `--grad fd`, in normalised units.
    #[serde(default = "default_fd_step")]
    pub fd_step: f32,
    /// Parameters that move (`--automation-hop`): the controller predicts one row of parameters per this many
    /// frames (at `sample_rate`), rendered as automation, trained on pairs rendered along hidden trajectories
    /// ([`crate::pairs::moving`]). `None`: one set of fixed parameters per clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automation_hop: Option<usize>,
    /// With automation: the model predicts one row per clip, held through all its rows (`--fixed-parameters`):
    /// the fixed-parameter model trained on the same moving pairs, the baseline automation is measured against.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fixed_parameters: bool,
    pub model: ModelConfig,
}

impl Default for TrainConfig {
    /// Sized for 2 CPU cores: 1 s halves at 22.05 kHz, batch 8, Adam at 1e-3 decaying to 1e-4 (DeepAFx-ST's 1e-5
    /// is for hundreds of thousands of GPU steps; here a run has hundreds to a few thousand).
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            minutes: None,
            batch: 8,
            lr: 1e-3,
            lr_final: 1e-4,
            weight_decay: 0.0,
            grad_clip: 1.0,
            seed: 0,
            clip_seconds: 1.0,
            sample_rate: 22_050,
            corruption: Corruption::None,
            val_every: 50,
            val_items: 16,
            checkpoint_every: 50,
            grad: GradKind::Spsa,
            proxy: None,
            spsa: SpsaConfig::default(),
            no_reference: false,
            val_pairs: None,
            fd_step: default_fd_step(),
            automation_hop: None,
            fixed_parameters: false,
            model: ModelConfig::default(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// 0.01: as SPSA's ε, a step that moves a real plugin's output measurably while staying local.
fn default_fd_step() -> f32 {
    0.01
}

impl TrainConfig {
    /// Frames per half (L).
    pub fn frames(&self) -> usize {
        (self.clip_seconds * f64::from(self.sample_rate)).round() as usize
    }

    /// Rows of θ per clip: one, or one per started automation hop of L.
    pub fn rows(&self) -> usize {
        self.automation_hop.map_or(1, |hop| afx_host::Automation::rows_for(self.frames(), hop))
    }

    /// The learning rate of step `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        afx_nn::optim::cosine_lr(step, self.steps, self.lr, self.lr_final)
    }

    /// The optimizer's settings at step 1.
    pub fn adam(&self) -> AdamWConfig {
        AdamWConfig { lr: self.lr, weight_decay: self.weight_decay, ..AdamWConfig::default() }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.batch == 0 || self.steps == 0 || self.val_items == 0 {
            return bad("steps, batch and val_items must be positive".into());
        }
        if self.val_every == 0 || self.checkpoint_every == 0 {
            return bad("val_every and checkpoint_every must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr_final > 0.0) {
            return bad(format!("learning rates must be positive (lr {}, lr_final {})", self.lr, self.lr_final));
        }
        if !(self.spsa.epsilon > 0.0 && self.spsa.epsilon < 0.5) || self.spsa.perturbations == 0 {
            return bad(format!(
                "spsa: need 0 < epsilon < 0.5 and K >= 1 (got {}, {})",
                self.spsa.epsilon, self.spsa.perturbations
            ));
        }
        if !(self.fd_step > 0.0 && self.fd_step < 0.5) {
            return bad(format!("fd: need 0 < step < 0.5 (got {})", self.fd_step));
        }
        if self.grad.needs_proxy() && self.proxy.is_none() {
            return bad(format!(
                "--grad {} needs --proxy DIR (a proxy trained with `afx train-proxy`)",
                self.grad.name()
            ));
        }
        if let Some(hop) = self.automation_hop {
            let frames = self.frames();
            if hop == 0 || hop > frames {
                return bad(format!("--automation-hop must be from 1 to the clip's {frames} frames (got {hop})"));
            }
            if self.grad.needs_proxy() {
                return bad(format!(
                    "--grad {}: the proxy methods take fixed parameters; with --automation-hop use spsa, fd or exact",
                    self.grad.name()
                ));
            }
            if self.corruption != Corruption::None || self.no_reference {
                return bad("--automation-hop takes the processed clip as the model's reference: it takes no \
                            --no-reference or corruption"
                    .into());
            }
        }
        if self.fixed_parameters && self.automation_hop.is_none() {
            return bad("--fixed-parameters is the baseline of a run with --automation-hop: give the hop too".into());
        }
        if self.frames() < self.model.n_fft {
            return bad(format!(
                "clip_seconds {} gives {} frames at {} Hz, fewer than model.n_fft {}",
                self.clip_seconds,
                self.frames(),
                self.sample_rate,
                self.model.n_fft
            ));
        }
        self.model.validate().map_err(TrainError::Config)
    }
}
