//! Where a training step's time goes: data (pair sampling and target renders), encoder forward, plugin
//! renders, loss, SPSA, backward (+ optimizer), measured on real steps of a throwaway model.

use afx_spsa::Pool;
use afx_trainer::method::GradKind;
use afx_trainer::timing::StepTiming;
use afx_trainer::train::{TrainConfig, Trainer};
use afx_trainer::{ChainInfo, ClipSource, TrainError};
use candle_core::Device;
use serde::{Deserialize, Serialize};

/// Result of [`bench_train`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainBench {
    pub steps: usize,
    pub batch: usize,
    /// Mean over the measured steps (the first step, which warms caches, is not measured).
    pub mean: StepTiming,
}

/// Runs `steps` + 1 training steps of a fresh model (nothing written to disk) and returns the mean timing.
pub fn bench_train(
    config: &TrainConfig,
    chain: &ChainInfo,
    pool: &mut Pool,
    source: &dyn ClipSource,
    steps: usize,
    device: &Device,
) -> Result<TrainBench, TrainError> {
    let mut trainer = Trainer::new(config.clone(), chain.clone(), device.clone())?;
    trainer.step(pool, source)?;
    let mut total = StepTiming::default();
    for _ in 0..steps {
        total += trainer.step(pool, source)?.timing;
    }
    Ok(TrainBench { steps, batch: config.batch, mean: total.scaled(1.0 / steps.max(1) as f64) })
}

/// `afx bench train`'s report: the step's time and each part's share, for `chain` and the method `grad`.
pub fn report(r: &TrainBench, chain: &ChainInfo, grad: GradKind) -> String {
    let t = r.mean;
    let pct = |x: f64| 100.0 * x / t.total_s;
    let mut text = format!(
        "{} ({} parameters), --grad {}: batch {}, mean of {} steps: {:.3} s/step\n",
        chain.name,
        chain.num_params(),
        grad.name(),
        r.batch,
        r.steps,
        t.total_s
    );
    for (what, s) in [
        ("data (crops, pairs, targets)", t.data_s),
        ("encoder forward", t.encoder_forward_s),
        ("plugin renders", t.render_s),
        ("loss (MRSTFT + dL/dy)", t.loss_s),
        ("SPSA", t.spsa_s),
        ("proxy forward", t.proxy_s),
        ("backward + update", t.backward_s),
    ] {
        text.push_str(&format!("  {what:<30} {:>8.3} s  {:>5.1}%\n", s, pct(s)));
    }
    text
}
