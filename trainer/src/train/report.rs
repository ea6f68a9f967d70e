//! `report.md`: what a finished run says about itself (the final validation, held-out pairs, pair offsets).

use std::path::Path;

use afx_core::RunFolder;

use super::TrainSummary;
use super::config::TrainConfig;
use super::trainer::Trainer;
use crate::TrainError;
use crate::method::GradKind;
use crate::metrics::{PairValidation, ParamErrors, ValidationRecord};
use crate::pairs::PairInfo;

/// What the report says about the data.
pub(super) struct Report<'a> {
    /// The training source's description.
    pub(super) data: String,
    pub(super) pairs: Option<&'a [PairInfo]>,
    /// The last validation of each held-out pair (empty for synthetic pairs).
    pub(super) per_pair: &'a [PairValidation],
}

pub(super) fn write_report(
    run_dir: &Path,
    trainer: &Trainer,
    summary: &TrainSummary,
    report: &Report<'_>,
) -> Result<(), TrainError> {
    let config = trainer.config();
    let mut text = format!(
        "# afx training report\n\nChain `{}` ({}), gradient method {}, {} steps of batch {}, \
         {:.2} s halves at {} Hz, lr {} → {} (cosine), mean {:.2} s per step, {} failed items.\n\nData: {}{}.\n\n",
        trainer.chain().name,
        trainer.chain().describe(),
        method_description(config),
        summary.steps,
        config.batch,
        config.clip_seconds,
        config.sample_rate,
        config.lr,
        config.lr_final,
        summary.mean_step_s,
        summary.failed_items,
        report.data,
        if config.no_reference { "; no style reference (the model's reference is silence)" } else { "" },
    );
    let target = if report.per_pair.is_empty() { "target_A" } else { "processed" };
    let dash = || "–".to_string();
    let pe = |v: &ValidationRecord, f: fn(&ParamErrors) -> f64| {
        v.param_error.as_ref().map_or_else(dash, |p| format!("{:.4}", f(p)))
    };
    match &summary.validation {
        Some(v) if v.items == 0 => text.push_str(&format!(
            "## Final validation (step {}, real chain): no score\n\nEvery one of its {} items failed: in each, the \
             trained model's, the default or the random parameters' render failed, so nothing was scored (its \
             means are NaN, `null` in `metrics.jsonl`).\n\n",
            v.step, v.failed,
        )),
        Some(v) => text.push_str(&format!(
            "## Final validation (step {}, {} held-out pairs{}, real chain)\n\n\
             | prediction | MRSTFT vs {target} | mean abs(θ − θ*) |\n| --- | --- | --- |\n\
             | trained model | {:.4} | {} |\n| input (unprocessed) | {:.4} | – |\n\
             | default parameters | {:.4} | {} |\n| random parameters | {:.4} | {} |\n\n\
             Trained vs input: {:+.1} %; vs default: {:+.1} %.{}\n\n",
            v.step,
            v.items,
            if v.failed > 0 {
                format!("; {} more left out, a render of theirs failed", v.failed)
            } else {
                String::new()
            },
            v.mrstft.trained,
            pe(v, |p| p.trained),
            v.mrstft.input,
            v.mrstft.default,
            pe(v, |p| p.default),
            v.mrstft.random,
            pe(v, |p| p.random),
            100.0 * (v.mrstft.trained / v.mrstft.input - 1.0),
            100.0 * (v.mrstft.trained / v.mrstft.default - 1.0),
            if v.param_error.is_none() { " θ* is unknown for a user's pairs: no parameter error." } else { "" },
        )),
        None => {}
    }
    if !report.per_pair.is_empty() {
        text.push_str(&pair_tables(report.per_pair));
    }
    if let Some(pairs) = report.pairs {
        text.push_str(&offset_table(pairs));
    }
    text.push_str(
        "`loss.png`: loss against step on a log y axis, with a legend: the training loss of every step and its \
         moving average over 20 steps, and the validation MRSTFT of the trained model, default parameters and \
         random parameters.\n",
    );
    Ok(RunFolder::new(run_dir).write_file("report.md", text.as_bytes())?)
}

/// Per held-out pair: MRSTFT and loudness error against the processed file, before (the raw input) and after
/// (the trained model's render), and the predicted parameters in plain units.
fn pair_tables(per_pair: &[PairValidation]) -> String {
    let opt = |v: Option<f64>, digits: usize| v.map_or_else(|| "failed".to_string(), |x| format!("{x:.digits$}"));
    let mut text = String::from(
        "## Held-out pairs (final validation, real chain)\n\nAgainst each pair's processed file, on its validation \
         crop (the loudest window of the raw file): before = the raw input, after = the trained model's render. \
         Loudness error = |loudness − the processed crop's| (EBU R128, LU).\n\n\
         | pair | MRSTFT before | MRSTFT after | loudness error before (LU) | loudness error after (LU) |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for p in per_pair {
        text.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} |\n",
            p.name,
            opt(p.mrstft_before, 4),
            opt(p.mrstft_after, 4),
            p.loudness_before_lu,
            opt(p.loudness_after_lu, 2)
        ));
    }
    text.push('\n');
    for p in per_pair {
        text.push_str(&format!(
            "Predicted parameters for `{}`:\n\n| parameter | value | unit |\n| --- | --- | --- |\n",
            p.name
        ));
        for q in &p.params {
            text.push_str(&format!(
                "| {}.{} ({}) | {:.4} | {} |\n",
                q.stage,
                q.id,
                q.name,
                q.plain,
                q.unit.as_deref().filter(|u| !u.is_empty()).unwrap_or("–")
            ));
        }
        text.push('\n');
    }
    text
}

/// Every pair's measured offset (positive: processed lags raw) and role.
fn offset_table(pairs: &[PairInfo]) -> String {
    let mut text = String::from(
        "## Pairs (`pairs.json`)\n\nOffset of each processed file against its raw file, by cross-correlation \
         (positive: processed lags raw); shifted = moved back by it and cropped to the overlap (`--align`).\n\n\
         | pair | offset (ms) | offset (samples) | shifted | held out |\n| --- | --- | --- | --- | --- |\n",
    );
    for p in pairs {
        text.push_str(&format!(
            "| {} | {:.2} | {} at {} Hz | {} | {} |\n",
            p.name,
            p.offset_ms,
            p.offset_frames,
            p.sample_rate,
            if p.shifted { "yes" } else { "no" },
            if p.held_out { "yes" } else { "no" }
        ));
    }
    text.push('\n');
    text
}

fn method_description(config: &TrainConfig) -> String {
    match (config.grad, &config.proxy) {
        (GradKind::Spsa, _) => format!("spsa (ε = {}, K = {})", config.spsa.epsilon, config.spsa.perturbations),
        (GradKind::Fd, _) => format!("fd (h = {})", config.fd_step),
        (kind, Some(proxy)) => format!("{} (proxy {})", kind.name(), proxy.display()),
        (kind, None) => kind.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_info::ChainInfo;
    use crate::metrics::Baselines;
    use candle_core::Device;

    /// A chain of one parameter (no plugin is loaded: the report only names it).
    fn one_param() -> ChainInfo {
        let spec = afx_host::ParamSpec {
            id: "gain".into(),
            name: "Gain".into(),
            unit: Some("dB".into()),
            min: -24.0,
            max: 12.0,
            default: 0.0,
            scale: afx_host::Scale::Linear,
            kind: afx_host::ParamKind::Continuous,
        };
        let param = crate::chain_info::TrainedParam { stage: "fx".into(), default_normalized: 2.0 / 3.0, spec };
        ChainInfo { name: "fx".into(), params: vec![param], stages: vec![] }
    }

    #[test]
    fn the_report_of_a_validation_in_which_every_item_failed_gives_no_score() {
        let trainer = Trainer::new(TrainConfig::default(), one_param(), Device::Cpu).unwrap();
        let nan = f64::NAN;
        let v = ValidationRecord {
            step: 7,
            items: 0,
            failed: 8,
            mrstft: Baselines { trained: nan, input: nan, default: nan, random: nan },
            proxy: None,
            param_error: Some(ParamErrors { trained: 0.3, default: 0.2, random: 0.4 }),
        };
        let summary =
            TrainSummary { steps: 7, validation: Some(v), failed_items: 0, interrupted: false, mean_step_s: 1.0 };
        let dir = tempfile::tempdir().unwrap();
        let report = Report { data: "test".into(), pairs: None, per_pair: &[] };
        write_report(dir.path(), &trainer, &summary, &report).unwrap();
        let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        // No table of means (NaN on main before this fix: 0.0000, a perfect-looking score), and why.
        assert!(!report.contains("| trained model |") && !report.contains("| NaN"), "{report}");
        assert!(report.contains("no score") && report.contains("Every one of its 8 items failed"), "{report}");
    }

    #[test]
    fn the_report_of_a_pair_folder_run_has_a_table_per_held_out_pair_and_no_parameter_error() {
        let trainer =
            Trainer::new(TrainConfig { no_reference: true, ..TrainConfig::default() }, one_param(), Device::Cpu)
                .unwrap();
        let v = ValidationRecord {
            step: 60,
            items: 1,
            failed: 0,
            mrstft: Baselines { trained: 0.8, input: 4.0, default: 2.0, random: 3.0 },
            proxy: None,
            param_error: None,
        };
        let summary =
            TrainSummary { steps: 60, validation: Some(v), failed_items: 0, interrupted: false, mean_step_s: 1.0 };
        let per_pair = vec![PairValidation {
            name: "drums_03.wav".into(),
            mrstft_before: Some(4.0),
            mrstft_after: Some(0.8),
            loudness_before_lu: 9.5,
            loudness_after_lu: Some(0.4),
            params: crate::infer::predicted_params(trainer.chain(), &[0.75]).unwrap(),
        }];
        let pairs = vec![PairInfo {
            name: "drums_03.wav".into(),
            sample_rate: 22_050,
            frames: 44_100,
            offset_frames: 154,
            offset_ms: 6.984,
            shifted: true,
            held_out: true,
        }];
        let report = Report { data: "pairs".into(), pairs: Some(&pairs), per_pair: &per_pair };
        let dir = tempfile::tempdir().unwrap();
        write_report(dir.path(), &trainer, &summary, &report).unwrap();
        let text = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(text.contains("| trained model | 0.8000 | – |"), "{text}");
        assert!(text.contains("| drums_03.wav | 4.0000 | 0.8000 | 9.50 | 0.40 |"), "{text}");
        // 0.75 of −24..12 dB is 3 dB.
        assert!(text.contains("| fx.gain (Gain) | 3.0000 | dB |"), "{text}");
        assert!(text.contains("| drums_03.wav | 6.98 | 154 at 22050 Hz | yes | yes |"), "{text}");
        assert!(text.contains("no style reference"), "{text}");
    }
}
