//! Validation on held-out pairs, always through the real chain: [`ValidationSet`] (the pairs and the baselines
//! that do not depend on the model) and [`Trainer::validate`].

use std::cell::OnceCell;

use afx_spsa::estimator::Scoring;
use afx_spsa::{Pool, item_seed};

use super::config::TrainConfig;
use super::trainer::{Trainer, mean_abs_diff, refs};
use crate::TrainError;
use crate::frontend::batch_tensor;
use crate::method::theta_rows;
use crate::metrics::{Baselines, PairValidation, ParamErrors, ValidationRecord};
use crate::pairs::{PairBatch, PairRequest, PairSource, held_out_with_random_theta};
use afx_nn::loss::MrStftLoss;
use candle_core::{DType, Device};

/// Seed of the validation stream derived from the run's seed (distinct from the step stream's).
const VALIDATION_STREAM: u64 = 0x5641_4c49; // "VALI"

impl Trainer {
    /// MRSTFT of the trained prediction, the input, the defaults and random θ against target_A, on the REAL
    /// chain, and the parameter errors.
    ///
    /// The baselines (input, defaults, random θ) do not depend on the model: the first validation on `set`
    /// renders and scores them and later ones reuse them, so a later validation renders only the trained θ.
    /// Means are over the items in which every render succeeded; an item in which any failed is counted in
    /// `failed`. When every item failed the means are NaN (no score, not a perfect one) and a warning says so.
    pub fn validate(&self, pool: &mut Pool, set: &ValidationSet) -> Result<ValidationRecord, TrainError> {
        Ok(self.validate_pairs(pool, set)?.0)
    }

    /// [`Trainer::validate`], and for a set of named pairs (a pair folder's held-out pairs) each pair's scores
    /// and predicted parameters in plain units (empty for synthetic pairs).
    pub fn validate_pairs(
        &self,
        pool: &mut Pool,
        set: &ValidationSet,
    ) -> Result<(ValidationRecord, Vec<PairValidation>), TrainError> {
        let pairs = &set.pairs;
        let n = pairs.len();
        let predicted = self.predict(&refs(&pairs.input_a), &refs(&pairs.reference_b))?;
        let theta = theta_rows(&predicted)?;
        let defaults = vec![self.chain.default_theta(); n];
        let loss = MrStftLoss::new(&self.config.spsa.loss.without_l1(), DType::F32, &Device::Cpu)?;
        let score = |outputs: &[Option<&afx_core::Audio>]| -> Result<Vec<Option<f64>>, TrainError> {
            outputs
                .iter()
                .zip(&pairs.target_a)
                .map(|(y, target)| match y {
                    Some(y) => {
                        let y = batch_tensor(&[y], &Device::Cpu)?;
                        let t = batch_tensor(&[target], &Device::Cpu)?;
                        Ok(Some(f64::from(loss.forward(&y, &t)?.to_scalar::<f32>()?)))
                    }
                    None => Ok(None),
                })
                .collect()
        };
        // Through the chain after each item's pre-roll, scored after it (a source without one: as they are).
        let prerolled =
            (!pairs.preroll_a.is_empty()).then(|| crate::pairs::chain_inputs(&pairs.input_a, &pairs.preroll_a));
        // The trained θ may be a trajectory (with automation); the baselines are fixed parameters.
        let hop = self.config.automation_hop.unwrap_or(0);
        let p = self.chain.num_params();
        let render = |pool: &mut Pool, thetas: &[Vec<f32>]| -> Vec<Option<afx_core::Audio>> {
            let hop = if thetas.first().is_some_and(|t| t.len() > p) { hop } else { 0 };
            let lead =
                crate::method::lead_rows(&pairs.preroll_a, hop, thetas.first().map_or(0, Vec::len), p).unwrap_or(0);
            let thetas = crate::method::over_preroll(thetas, lead, p);
            let mut pool = pool.trajectories(hop, Scoring::Whole);
            let outputs = pool.render_batch(prerolled.as_deref().unwrap_or(&pairs.input_a), &thetas);
            let scored = |(i, y): (usize, afx_core::Audio)| match prerolled {
                Some(_) => crate::pairs::tail(&y, pairs.input_a[i].frames()),
                None => y,
            };
            outputs.into_iter().enumerate().map(|(i, y)| y.ok().map(|y| scored((i, y)))).collect()
        };
        let rendered = |pool: &mut Pool, thetas: &[Vec<f32>]| -> Result<Vec<Option<f64>>, TrainError> {
            score(&render(pool, thetas).iter().map(Option::as_ref).collect::<Vec<_>>())
        };
        let trained_out = render(pool, &theta);
        let trained = score(&trained_out.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let proxy_score: Option<Vec<Option<f64>>> = match self.method.proxy() {
            Some(proxy) => {
                let x = batch_tensor(&refs(&pairs.input_a), &self.device)?;
                let y = proxy.forward(&x, &predicted)?.to_device(&Device::Cpu)?;
                let target = batch_tensor(&refs(&pairs.target_a), &Device::Cpu)?;
                let scores: Vec<f32> = loss.per_item(&y, &target)?.to_vec1()?;
                Some(scores.into_iter().map(|s| Some(f64::from(s))).collect())
            }
            None => None,
        };
        let baselines = match set.baselines.get() {
            Some(baselines) => baselines,
            None => {
                let baselines = BaselineScores {
                    input: score(&pairs.input_a.iter().map(Some).collect::<Vec<_>>())?,
                    default: rendered(pool, &defaults)?,
                    random: rendered(pool, &set.random_theta)?,
                };
                set.baselines.get_or_init(|| baselines)
            }
        };
        // Compare like with like: an item counts only where every variant rendered, and it failed where any did not.
        let variants = [&trained, &baselines.input, &baselines.default, &baselines.random];
        let usable: Vec<usize> = (0..n).filter(|&i| variants.iter().all(|v| v[i].is_some())).collect();
        let failed = n - usable.len();
        if usable.is_empty() {
            tracing::warn!(
                step = self.step,
                failed,
                "validation at step {}: every one of its {n} items failed to render, so it has no score (NaN)",
                self.step
            );
        }
        let mean = |v: &[Option<f64>]| match usable.len() {
            0 => f64::NAN,
            k => usable.iter().map(|&i| v[i].unwrap_or(f64::NAN)).sum::<f64>() / k as f64,
        };
        let mut per_pair = vec![];
        for (i, name) in pairs.names.iter().enumerate() {
            let target = &pairs.target_a[i];
            let lu = |y: &afx_core::Audio| crate::loudness::loudness_error(y, target);
            per_pair.push(PairValidation {
                name: name.clone(),
                mrstft_before: baselines.input[i],
                mrstft_after: trained[i],
                loudness_before_lu: lu(&pairs.input_a[i]),
                loudness_after_lu: trained_out[i].as_ref().map(lu),
                params: crate::infer::predicted_params(&self.chain, &theta[i])?,
            });
        }
        let record = ValidationRecord {
            step: self.step,
            items: usable.len(),
            failed,
            mrstft: Baselines {
                trained: mean(&trained),
                input: mean(&baselines.input),
                default: mean(&baselines.default),
                random: mean(&baselines.random),
            },
            proxy: proxy_score.as_deref().map(mean),
            // Against a trajectory θ*, fixed parameters count as the same row at every frame.
            param_error: pairs.theta_star.as_ref().map(|theta_star| ParamErrors {
                trained: mean_abs_diff(&theta, theta_star),
                default: mean_abs_diff(&held(&defaults, self.config.rows()), theta_star),
                random: mean_abs_diff(&held(&set.random_theta, self.config.rows()), theta_star),
            }),
        };
        Ok((record, per_pair))
    }
}

/// Held-out pairs and the random-θ baseline, fixed for the whole run (one set per process: a resumed run makes
/// it again, the same).
///
/// The baselines' per-item scores are kept from the first [`Trainer::validate`] on, so a set belongs to one run
/// (one chain and loss) and its pairs and `random_theta` must not change after its first validation.
pub struct ValidationSet {
    pub pairs: PairBatch,
    pub random_theta: Vec<Vec<f32>>,
    baselines: OnceCell<BaselineScores>,
}

/// Per-item MRSTFT against target_A of the rows that do not depend on the model: the input itself, the chain's
/// defaults and random θ (`None` where the render failed).
struct BaselineScores {
    input: Vec<Option<f64>>,
    default: Vec<Option<f64>>,
    random: Vec<Option<f64>>,
}

impl ValidationSet {
    /// The held-out pairs of `source` ([`PairSource::held_out`]): `config.val_items` synthetic ones, or each of a
    /// pair folder's held-out pairs.
    pub fn new<S: PairSource + ?Sized>(
        config: &TrainConfig,
        pool: &mut Pool,
        source: &S,
    ) -> Result<ValidationSet, TrainError> {
        let seed = item_seed(config.seed ^ VALIDATION_STREAM, 0);
        let request = PairRequest {
            frames: config.frames(),
            batch: config.val_items,
            corruption: config.corruption,
            seed,
            hop: config.automation_hop.unwrap_or(0),
        };
        let (pairs, random_theta) = held_out_with_random_theta(source, pool, &request)?;
        if pairs.is_empty() {
            return Err(TrainError::NoData(format!("no validation pair rendered: {}", pairs.first_error())));
        }
        Ok(ValidationSet { pairs, random_theta, baselines: OnceCell::new() })
    }
}

/// Fixed θ rows held for `rows` rows each: what a trajectory of fixed parameters is.
fn held(thetas: &[Vec<f32>], rows: usize) -> Vec<Vec<f32>> {
    thetas.iter().map(|t| t.repeat(rows)).collect()
}
