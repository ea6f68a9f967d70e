//! The loop of a run: steps, validations, metrics, checkpoints, and at the end the plot and the report.

use std::path::Path;
use std::time::{Duration, Instant};

use afx_core::RunFolder;
use afx_spsa::Pool;

use super::report::{Report, write_report};
use super::trainer::Trainer;
use super::validation::ValidationSet;
use super::{Data, PAIRS_FILE, TrainOptions, TrainSummary, VALIDATION_PAIRS_FILE};
use crate::TrainError;
use crate::metrics::{PairValidation, Record, ValidationRecord};

pub(super) fn run_loop(
    run_dir: &Path,
    mut trainer: Trainer,
    pool: &mut Pool,
    data: Data<'_>,
    mut options: TrainOptions<'_>,
    mut history: Vec<Record>,
) -> Result<TrainSummary, TrainError> {
    let config = trainer.config().clone();
    // Made once per process and kept: its baselines are rendered at the first validation only.
    let validation_set = ValidationSet::new(&config, pool, data.validation)?;
    let folder = RunFolder::new(run_dir);
    if let Some(pairs) = data.train.pairs_manifest() {
        folder.write_json(PAIRS_FILE, &pairs)?;
    }
    let mut per_pair: Option<Vec<PairValidation>> = None;
    let mut log = folder.metrics_log::<Record>()?;
    let deadline = config.minutes.map(|m| Instant::now() + Duration::from_secs_f64(m * 60.0));
    let (mut failed_items, mut step_seconds, mut steps_run) = (0, 0.0, 0u64);
    let mut last_validation: Option<ValidationRecord> = None;
    while trainer.steps_done() < config.steps {
        let record = trainer.step(pool, data.train)?;
        failed_items += record.failed;
        step_seconds += record.timing.total_s;
        steps_run += 1;
        let step = record.step;
        if let Some(f) = options.on_step.as_mut() {
            f(&record);
        }
        let record = Record::Step(record);
        log.append(&record)?;
        history.push(record);
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        let last = step == config.steps || out_of_time;
        if step % config.val_every == 0 || last {
            let (v, pairs) = trainer.validate_pairs(pool, &validation_set)?;
            per_pair = Some(pairs);
            tracing::info!(
                step,
                items = v.items,
                failed = v.failed,
                trained = v.mrstft.trained,
                input = v.mrstft.input,
                default = v.mrstft.default,
                random = v.mrstft.random,
                "validation"
            );
            if let Some(f) = options.on_validation.as_mut() {
                f(&v);
            }
            log.append(&Record::Validation(v.clone()))?;
            history.push(Record::Validation(v.clone()));
            last_validation = Some(v);
        }
        if options.stop_after == Some(step) {
            return Ok(TrainSummary {
                steps: step,
                validation: last_validation,
                failed_items,
                interrupted: true,
                mean_step_s: step_seconds / steps_run as f64,
            });
        }
        if step % config.checkpoint_every == 0 || last {
            trainer.save_checkpoint(run_dir)?;
        }
        if out_of_time {
            break;
        }
    }
    let plot_path = run_dir.join("loss.png");
    if let Err(e) = crate::plot::loss_curve(&plot_path, &history) {
        tracing::warn!("{e}");
    }
    let validation = last_validation.or_else(|| {
        history.iter().rev().find_map(|r| match r {
            Record::Validation(v) => Some(v.clone()),
            _ => None,
        })
    });
    let summary = TrainSummary {
        steps: trainer.steps_done(),
        validation,
        failed_items,
        interrupted: false,
        mean_step_s: step_seconds / steps_run.max(1) as f64,
    };
    // A run resumed after its last step validated nothing in this process: its pairs are scored once here.
    let per_pair = match per_pair {
        Some(p) => p,
        None if !validation_set.pairs.names.is_empty() => trainer.validate_pairs(pool, &validation_set)?.1,
        None => vec![],
    };
    if !per_pair.is_empty() {
        folder.write_json(VALIDATION_PAIRS_FILE, &per_pair)?;
    }
    let pairs = data.train.pairs_manifest();
    let report = Report { data: data.train.describe(), pairs: pairs.as_deref(), per_pair: &per_pair };
    write_report(run_dir, &trainer, &summary, &report)?;
    Ok(summary)
}
