//! What `afx match` leaves in its folder, and where it starts from.

use std::path::Path;

use afx_core::Audio;
use afx_host::Preset;
use afx_report::{LineChart, Series, line_chart};
use afx_spsa::Pool;
use afx_trainer::ChainInfo;
use afx_trainer::infer::{PredictedParam, TrainedModel};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::{MatchConfig, MatchError, Outcome};

/// `summary.json`: what was matched, how, and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub chain: String,
    /// "mrstft" (an aligned target) or "style distance (dB)" (a reference).
    pub objective: String,
    pub input: String,
    /// The target's or the reference's path.
    pub against: String,
    /// "defaults", or "run DIR" (a trained controller's prediction).
    pub start_from: String,
    /// The stretch of the input the loss looked at.
    pub crop_start_s: f64,
    pub crop_seconds: f64,
    pub config: MatchConfig,
    pub outcome: Outcome,
    /// The best θ in plain units.
    pub params: Vec<PredictedParam>,
    pub renders_per_second: f64,
}

/// A trained controller's θ for (input, reference), from the run in `run_dir`, which must be a run of the chain
/// `pool` hosts (else refused, naming the run and both chains). A run trained without a reference
/// (`--no-reference`) predicts from the input alone, as it was trained.
pub fn start_from_run(run_dir: &Path, pool: &Pool, input: &Audio, reference: &Audio) -> Result<Vec<f32>, MatchError> {
    let model = TrainedModel::load(run_dir, &Device::Cpu)?;
    afx_trainer::run::check_chain(run_dir, &model.meta.chain, &ChainInfo::from_chain(pool.chain()))?;
    if model.meta.config.no_reference {
        return Ok(model.predict(input, &afx_trainer::infer::silent_reference(&model.meta.config))?);
    }
    Ok(model.predict(input, reference)?)
}

/// Writes `preset.toml` (replayable with `afx render --preset`), `matched.wav`, `loss.png` (best loss against
/// renders) and `summary.json` into `dir`, which must not exist or be empty. They are written into a sibling
/// folder first and renamed into place together: a failure leaves no partial set under `dir`.
pub fn write_outputs(dir: &Path, summary: &Summary, preset: &Preset, matched: &Audio) -> Result<(), MatchError> {
    let fail = |path: &Path, message: String| MatchError::Write { path: path.to_path_buf(), message };
    let name = dir.file_name().map_or("match".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| fail(parent, e.to_string()))?;
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let written = write_files(&staging, summary, preset, matched).and_then(|()| {
        if dir.exists() {
            // An empty folder (the caller checked): replaced by the complete one.
            std::fs::remove_dir(dir).map_err(|e| fail(dir, e.to_string()))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| fail(dir, e.to_string()))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

fn write_files(dir: &Path, summary: &Summary, preset: &Preset, matched: &Audio) -> Result<(), MatchError> {
    let fail = |path: &Path, message: String| MatchError::Write { path: path.to_path_buf(), message };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let path = dir.join("preset.toml");
    preset.save(&path).map_err(|e| fail(&path, e.to_string()))?;
    let path = dir.join("matched.wav");
    matched.write_wav(&path).map_err(|e| fail(&path, e.to_string()))?;
    let path = dir.join("loss.png");
    let points: Vec<(f64, f64)> = summary.outcome.curve.iter().map(|c| (c.renders as f64, c.best)).collect();
    let title = format!("afx match: {} through {}", summary.config.method, summary.chain);
    let y_label = format!("best {} so far", summary.objective);
    let chart = LineChart {
        title: &title,
        x_label: "renders",
        y_label: &y_label,
        log_x: false,
        log_y: true,
        series: vec![Series::new(summary.config.method.name(), points)],
        markers: false,
    };
    line_chart(&path, &chart)?;
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(summary).map_err(|e| fail(&path, e.to_string()))?;
    afx_core::atomic::write(&path, text.as_bytes()).map_err(|e| fail(&path, e))
}
