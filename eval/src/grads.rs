//! `afx eval-grads`: how close each gradient method's dL/dθ is to the true gradient of a real chain, and what
//! it costs.
//!
//! 1. M examples are drawn as training draws them ([`afx_trainer::pairs::sample_pairs`]: a corpus crop, a
//!    random θ*, the target = the real chain's render at θ*), each evaluated at a random θ.
//! 2. The reference gradient: the test effect's exact gradient where the chain is afx's test effect, else
//!    central finite differences with a small step, checked against finite differences at a 10× larger step
//!    (if the two disagree, so would any comparison with them).
//! 3. Every estimator is the trainer's own [`GradMethod`] (what is evaluated is what trains): SPSA over a grid
//!    of K and ε, FD at each step, the proxy methods when a proxy is given, exact when available.
//! 4. Per estimator: cosine similarity to the reference (mean, median, 10th percentile), relative L2 error,
//!    sign agreement overall and per parameter, renders and seconds per estimate, and the practical test: the
//!    fraction of examples where a small step along −ĝ lowers the real chain's loss.

use std::path::PathBuf;
use std::time::Instant;

use afx_nn::loss::{LossConfig, MrStftLoss};
use afx_spsa::estimator::Scoring;
use afx_spsa::{Pool, item_seed};
use afx_trainer::method::exact::TestFxTwin;
use afx_trainer::method::spsa::SpsaConfig;
use afx_trainer::method::{self, GradKind, GradMethod, Gradients, MethodBatch, MethodSettings};
use afx_trainer::pairs::{Corruption, sample_pairs, uniform};
use afx_trainer::{ChainInfo, ClipSource, frontend::batch_tensor};
use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::stats::{self, Summary};

/// A kind of estimator `--estimators` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Spsa,
    Fd,
    Exact,
    NpFh,
    /// Autodiff through the proxy's own output: the gradient `np-hh` and `proxy` train with.
    NpHh,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::Spsa, Family::Fd, Family::Exact, Family::NpFh, Family::NpHh];

    pub fn name(self) -> &'static str {
        match self {
            Family::Spsa => "spsa",
            Family::Fd => "fd",
            Family::Exact => "exact",
            Family::NpFh => "np-fh",
            Family::NpHh => "np-hh",
        }
    }

    fn grad_kind(self) -> GradKind {
        match self {
            Family::Spsa => GradKind::Spsa,
            Family::Fd => GradKind::Fd,
            Family::Exact => GradKind::Exact,
            Family::NpFh => GradKind::NpFh,
            Family::NpHh => GradKind::NpHh,
        }
    }

    fn needs_proxy(self) -> bool {
        matches!(self, Family::NpFh | Family::NpHh)
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Family, String> {
        if s == "proxy" {
            return Ok(Family::NpHh);
        }
        Family::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            format!("unknown estimator {s:?}: valid estimators are spsa, fd, exact, np-fh, np-hh (or proxy, the same gradient)")
        })
    }
}

/// What `eval-grads` measures and how.
#[derive(Debug, Clone)]
pub struct GradEvalConfig {
    /// M: examples drawn as training draws them.
    pub examples: usize,
    pub seed: u64,
    /// Length of each example (one half of a training pair) and the rate it is analysed at.
    pub clip_seconds: f64,
    pub sample_rate: u32,
    /// Which estimator families to run; `None`: every one available (exact on the test effect, the proxy
    /// methods with a proxy).
    pub families: Option<Vec<Family>>,
    pub spsa_k: Vec<u32>,
    pub spsa_epsilon: Vec<f32>,
    pub fd_steps: Vec<f32>,
    /// The finite-difference step of the reference where no exact gradient exists.
    pub reference_step: f32,
    /// Length (in normalised units, L2) of the step along −ĝ in the descent test.
    pub descent_step: f32,
    /// How SPSA scores a trajectory's rows: one estimator per scoring (with `hop`; see
    /// [`afx_spsa::estimator::Scoring`]).
    pub spsa_scoring: Vec<Scoring>,
    /// The training loss (SPSA's own ε and K are the grid's).
    pub loss: LossConfig,
    pub proxy: Option<PathBuf>,
    /// Gradients of trajectories: θ of each example holds one row of parameters per `hop` frames (drawn
    /// uniformly, row by row), rendered as automation. `None`: fixed parameters.
    pub hop: Option<usize>,
}

impl Default for GradEvalConfig {
    fn default() -> Self {
        GradEvalConfig {
            examples: 32,
            seed: 0,
            clip_seconds: 1.0,
            sample_rate: 22_050,
            families: None,
            spsa_k: vec![1, 4, 16, 64],
            spsa_epsilon: vec![0.001, 0.01, 0.05],
            fd_steps: vec![0.01, 0.001],
            reference_step: 0.001,
            descent_step: 0.01,
            spsa_scoring: vec![Scoring::Whole],
            loss: LossConfig::default(),
            proxy: None,
            hop: None,
        }
    }
}

impl GradEvalConfig {
    /// Checks every setting, naming the command-line flag of a bad one.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |flag: &str, message: String| Err(EvalError::Flag { flag: flag.into(), message });
        if self.examples == 0 {
            return bad("--examples", "give at least one example".into());
        }
        if self.spsa_k.is_empty() || self.spsa_k.contains(&0) {
            return bad("--k", format!("every K must be a positive whole number (got {:?})", self.spsa_k));
        }
        let unit = |v: &f32| *v > 0.0 && *v < 0.5;
        if self.spsa_epsilon.is_empty() || !self.spsa_epsilon.iter().all(unit) {
            return bad("--epsilon", format!("every ε must be in (0, 0.5) (got {:?})", self.spsa_epsilon));
        }
        if self.fd_steps.is_empty() || !self.fd_steps.iter().all(unit) {
            return bad("--fd-step", format!("every step h must be in (0, 0.5) (got {:?})", self.fd_steps));
        }
        if !unit(&self.reference_step) || !unit(&(self.reference_step * 10.0)) {
            return bad("--reference-step", format!("must be in (0, 0.05) (got {})", self.reference_step));
        }
        if !(self.descent_step > 0.0 && self.descent_step < 1.0) {
            return bad("--descent-step", format!("must be in (0, 1) (got {})", self.descent_step));
        }
        if !(self.clip_seconds > 0.0 && self.clip_seconds.is_finite()) {
            return bad("--clip-seconds", format!("must be a positive number of seconds (got {})", self.clip_seconds));
        }
        if self.spsa_scoring.is_empty() {
            return bad("--scoring", "name at least one scoring".into());
        }
        if let Some(hop) = self.hop {
            if hop == 0 || hop > self.frames() {
                let frames = self.frames();
                return bad("--hop", format!("must be from 1 to the clip's {frames} frames (got {hop})"));
            }
            let proxy = self.families.as_ref().is_some_and(|f| f.iter().any(|f| f.needs_proxy()));
            if proxy {
                return bad("--estimators", "the proxy methods take fixed parameters, not trajectories (--hop)".into());
            }
        }
        if let Some(families) = &self.families {
            if families.is_empty() {
                return bad("--estimators", "name at least one estimator".into());
            }
            if let Some(f) = families.iter().find(|f| f.needs_proxy()).filter(|_| self.proxy.is_none()) {
                return bad("--estimators", format!("{} needs --proxy DIR (a proxy of the chain)", f.name()));
            }
        }
        Ok(())
    }

    fn frames(&self) -> usize {
        (self.clip_seconds * f64::from(self.sample_rate)).round() as usize
    }

    /// Rows of θ per example: one, or one per started hop.
    fn rows(&self) -> usize {
        self.hop.map_or(1, |hop| afx_host::Automation::rows_for(self.frames(), hop))
    }
}

/// One estimator's settings.
#[derive(Debug, Clone, PartialEq)]
struct EstimatorSpec {
    family: Family,
    k: Option<u32>,
    epsilon: Option<f32>,
    h: Option<f32>,
    scoring: Scoring,
}

impl EstimatorSpec {
    fn plain(family: Family) -> EstimatorSpec {
        EstimatorSpec { family, k: None, epsilon: None, h: None, scoring: Scoring::Whole }
    }

    fn fd(h: f32) -> EstimatorSpec {
        EstimatorSpec { h: Some(h), ..EstimatorSpec::plain(Family::Fd) }
    }

    fn label(&self) -> String {
        match (self.family, self.k, self.epsilon, self.h) {
            (Family::Spsa, Some(k), Some(e), _) if self.scoring.is_whole() => format!("spsa K={k} ε={e}"),
            (Family::Spsa, Some(k), Some(e), _) => format!("spsa K={k} ε={e} {}", self.scoring),
            (Family::Fd, _, _, Some(h)) => format!("fd h={h}"),
            (f, ..) => f.name().to_string(),
        }
    }

    fn build(
        &self,
        config: &GradEvalConfig,
        chain: &ChainInfo,
        device: &Device,
    ) -> Result<Box<dyn GradMethod>, EvalError> {
        let defaults = SpsaConfig::default();
        let spsa = SpsaConfig {
            epsilon: self.epsilon.unwrap_or(defaults.epsilon),
            perturbations: self.k.unwrap_or(defaults.perturbations),
            scoring: self.scoring,
            loss: config.loss.clone(),
        };
        let settings = MethodSettings {
            spsa: &spsa,
            fd_step: self.h.unwrap_or(config.reference_step),
            proxy: config.proxy.as_ref(),
        };
        method::build(self.family.grad_kind(), &settings, chain, config.sample_rate, device).map_err(|e| {
            let flag = if self.family.needs_proxy() { "--proxy" } else { "--estimators" };
            EvalError::Flag { flag: flag.into(), message: e.to_string() }
        })
    }
}

/// The reference every estimator is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceReport {
    /// `exact` or `fd`.
    pub name: String,
    /// The finite-difference step, for an `fd` reference.
    pub h: Option<f32>,
    /// For an `fd` reference: the same finite differences at a 10× larger step, compared with the reference.
    pub check: Option<ReferenceCheck>,
    /// Examples whose reference gradient failed (left out everywhere).
    pub failed: usize,
}

/// How well two finite-difference step sizes agree: the trust one can put in an FD reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCheck {
    pub h: f32,
    pub cosine_mean: f64,
    pub cosine_p10: f64,
}

/// One estimator's agreement with the reference and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatorReport {
    /// The family (`spsa`, `fd`, `exact`, `np-fh`, `np-hh`).
    pub name: String,
    /// A label with the settings (`spsa K=4 ε=0.01`, `spsa K=4 ε=0.01 causal`).
    pub label: String,
    pub k: Option<u32>,
    /// SPSA's scoring of a trajectory's rows, where not `whole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<Scoring>,
    pub epsilon: Option<f32>,
    pub h: Option<f32>,
    /// This estimator is the reference (its agreement is 1 by construction; its descent rate is not).
    pub is_reference: bool,
    pub cosine_mean: f64,
    pub cosine_median: f64,
    pub cosine_p10: f64,
    /// Mean over examples of ‖ĝ − g‖ / ‖g‖.
    pub rel_err_mean: f64,
    /// Fraction of (example, parameter) pairs whose sign agrees with the reference.
    pub sign_agreement: f64,
    /// Per parameter (θ order): the fraction of examples whose sign agrees with the reference.
    pub per_param_sign_agreement: Vec<f64>,
    /// Per parameter: the mean of |ĝ_j − g_j| / ‖g‖ (how much of the error sits in that parameter).
    pub per_param_error: Vec<f64>,
    /// Fraction of examples where θ − s·ĝ/‖ĝ‖ (s = the descent step) lowers the real chain's loss.
    pub descent_rate: f64,
    /// Plugin renders per estimate (the forward render included).
    pub renders_per_estimate: u64,
    /// Wall-clock seconds per estimate: a batch of M through the pool's workers, divided by M.
    pub seconds_per_estimate: f64,
    /// Examples compared (reference and estimate both succeeded).
    pub examples: usize,
    pub failed: usize,
}

/// Everything `eval-grads` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradReport {
    pub chain: String,
    /// θ's parameters as `stage.id`.
    pub params: Vec<String>,
    pub examples: usize,
    pub sample_rate: u32,
    pub clip_seconds: f64,
    pub workers: usize,
    pub seed: u64,
    pub descent_step: f32,
    pub loss_fft_sizes: Vec<usize>,
    /// With trajectories: frames per row, and rows per example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    pub reference: ReferenceReport,
    pub estimators: Vec<EstimatorReport>,
}

/// Runs the evaluation on `chain` hosted by `pool`, drawing examples from `source`. `progress` hears each
/// estimator's label as it starts.
pub fn eval_grads(
    chain: &ChainInfo,
    pool: &mut Pool,
    source: &dyn ClipSource,
    config: &GradEvalConfig,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Result<GradReport, EvalError> {
    config.validate()?;
    let exact = TestFxTwin::for_chain(chain);
    let families = match &config.families {
        Some(f) => f.clone(),
        None => Family::ALL
            .into_iter()
            .filter(|f| match f {
                Family::Exact => exact.is_ok(),
                f if f.needs_proxy() => config.proxy.is_some(),
                _ => true,
            })
            .collect(),
    };
    if let (true, Err(e)) = (families.contains(&Family::Exact), &exact) {
        return Err(EvalError::Flag { flag: "--estimators".into(), message: format!("exact: {e}") });
    }

    // Every method is built (and every proxy checked) before anything renders.
    let reference_spec =
        if exact.is_ok() { EstimatorSpec::plain(Family::Exact) } else { EstimatorSpec::fd(config.reference_step) };
    let mut specs = vec![reference_spec.clone()];
    for &family in &families {
        match family {
            Family::Spsa => {
                for &epsilon in &config.spsa_epsilon {
                    for &k in &config.spsa_k {
                        for &scoring in &config.spsa_scoring {
                            let (k, epsilon) = (Some(k), Some(epsilon));
                            specs.push(EstimatorSpec { family, k, epsilon, h: None, scoring });
                        }
                    }
                }
            }
            Family::Fd => specs.extend(config.fd_steps.iter().map(|&h| EstimatorSpec::fd(h))),
            f => specs.push(EstimatorSpec::plain(f)),
        }
    }
    let mut unique: Vec<EstimatorSpec> = vec![];
    for s in specs {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    let mut methods = unique
        .iter()
        .map(|s| Ok((s.clone(), s.build(config, chain, device)?)))
        .collect::<Result<Vec<_>, EvalError>>()?;

    let pairs = sample_pairs(source, pool, config.frames(), Corruption::None, config.examples, config.seed)?;
    if pairs.is_empty() {
        return Err(EvalError::NoData(format!(
            "no example rendered: {}",
            pairs.errors.first().map_or("no error".into(), |e| e.to_string())
        )));
    }
    let p = chain.num_params();
    // A trajectory's rows are θ's entries too: everything below compares F·P values per example.
    let width = p * config.rows();
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(config.seed, 1 << 30));
    let thetas: Vec<Vec<f32>> = (0..pairs.len()).map(|_| uniform(&mut rng, width)).collect();
    let theta = Tensor::from_vec(thetas.concat(), (pairs.len(), width), &Device::Cpu)?;
    let hop = config.hop.unwrap_or(0);
    let batch = MethodBatch { hop, ..MethodBatch::new(&pairs.input_a, &pairs.target_a, &theta, 0) };
    let loss = MrStftLoss::new(&config.loss, DType::F32, &Device::Cpu)?;

    let mut runs: Vec<(EstimatorSpec, Gradients, f64)> = vec![];
    for (index, (spec, method)) in methods.iter_mut().enumerate() {
        progress(&spec.label());
        let started = Instant::now();
        let gradients = method.gradients(pool, MethodBatch { seed: item_seed(config.seed, index), ..batch })?;
        let seconds = started.elapsed().as_secs_f64() / pairs.len() as f64;
        runs.push((spec.clone(), gradients, seconds));
    }
    let reference: Vec<Option<(f64, Vec<f32>)>> =
        runs[0].1.items.iter().map(|r| r.as_ref().ok().map(|g| (g.loss, g.grad.clone()))).collect();

    let check = match reference_spec.family {
        Family::Fd => {
            // Rounded in decimal, so that 10 × 0.001 is 0.01 and not 0.010000001 (f32 steps are decimal inputs).
            let h = ((f64::from(config.reference_step) * 1e10).round() / 1e9) as f32;
            progress(&format!("fd h={h} (reference check)"));
            let mut method = EstimatorSpec::fd(h).build(config, chain, device)?;
            let other = method.gradients(pool, batch)?;
            let cosines: Vec<f64> = compared(&reference, &other).map(|(_, r, g)| stats::cosine(g, r)).collect();
            Summary::of(&cosines).map(|s| ReferenceCheck { h, cosine_mean: s.mean, cosine_p10: s.p10 })
        }
        _ => None,
    };

    let mut estimators = vec![];
    for (spec, gradients, seconds) in &runs {
        progress(&format!("{} (descent test)", spec.label()));
        let descent = descent_test(pool, &loss, batch, &thetas, &reference, gradients, config.descent_step)?;
        estimators.push(summarise(spec, spec == &reference_spec, &reference, gradients, descent, p, width, *seconds));
    }
    Ok(GradReport {
        chain: chain.name.clone(),
        params: chain.params.iter().map(|p| format!("{}.{}", p.stage, p.spec.id)).collect(),
        examples: pairs.len(),
        sample_rate: config.sample_rate,
        clip_seconds: config.clip_seconds,
        workers: pool.config().workers,
        seed: config.seed,
        descent_step: config.descent_step,
        loss_fft_sizes: config.loss.fft_sizes.clone(),
        hop: config.hop,
        rows: config.hop.map(|_| config.rows()),
        reference: ReferenceReport {
            name: reference_spec.family.name().into(),
            h: reference_spec.h,
            check,
            failed: reference.iter().filter(|r| r.is_none()).count(),
        },
        estimators,
    })
}

/// (example, reference gradient, estimate) for every example where both succeeded.
fn compared<'a>(
    reference: &'a [Option<(f64, Vec<f32>)>],
    gradients: &'a Gradients,
) -> impl Iterator<Item = (usize, &'a [f32], &'a [f32])> {
    reference.iter().zip(&gradients.items).enumerate().filter_map(|(i, (r, g))| match (r, g) {
        (Some((_, r)), Ok(g)) => Some((i, r.as_slice(), g.grad.as_slice())),
        _ => None,
    })
}

/// Per example compared: does a step of length `step` along −ĝ lower the real chain's loss (`None` where
/// the estimate or the reference failed, or the step's render did).
fn descent_test(
    pool: &mut Pool,
    loss: &MrStftLoss,
    batch: MethodBatch<'_>,
    thetas: &[Vec<f32>],
    reference: &[Option<(f64, Vec<f32>)>],
    gradients: &Gradients,
    step: f32,
) -> Result<Vec<Option<bool>>, EvalError> {
    let examples: Vec<(usize, Vec<f32>)> = compared(reference, gradients)
        .map(|(i, _, g)| {
            let n = stats::norm(g).max(f64::MIN_POSITIVE);
            let moved = thetas[i]
                .iter()
                .zip(g)
                .map(|(t, g)| (f64::from(*t) - f64::from(step) * f64::from(*g) / n).clamp(0.0, 1.0) as f32)
                .collect();
            (i, moved)
        })
        .collect();
    let inputs: Vec<_> = examples.iter().map(|(i, _)| batch.inputs[*i].clone()).collect();
    let moved: Vec<Vec<f32>> = examples.iter().map(|(_, t)| t.clone()).collect();
    let rendered = pool.trajectories(batch.hop, Scoring::Whole).render_batch(&inputs, &moved);
    let mut out = vec![None; reference.len()];
    for ((i, _), y) in examples.iter().zip(rendered) {
        let Ok(y) = y else { continue };
        let y = batch_tensor(&[&y], &Device::Cpu)?;
        let target = batch_tensor(&[&batch.targets[*i]], &Device::Cpu)?;
        let after = f64::from(loss.per_item(&y, &target)?.to_vec1::<f32>()?[0]);
        let before = reference[*i].as_ref().map_or(f64::NAN, |r| r.0);
        out[*i] = Some(after < before);
    }
    Ok(out)
}

/// One estimator's report. `p` parameters, `width` values per example (`p` times the rows of a trajectory): the
/// per-parameter figures gather every row's value of a parameter.
#[allow(clippy::too_many_arguments)]
fn summarise(
    spec: &EstimatorSpec,
    is_reference: bool,
    reference: &[Option<(f64, Vec<f32>)>],
    gradients: &Gradients,
    descent: Vec<Option<bool>>,
    p: usize,
    width: usize,
    seconds: f64,
) -> EstimatorReport {
    let (mut cosines, mut errors, mut signs) = (vec![], vec![], vec![]);
    let mut per_param_signs = vec![vec![]; p];
    let mut per_param_error = vec![0.0; p];
    for (_, r, g) in compared(reference, gradients) {
        cosines.push(stats::cosine(g, r));
        errors.push(stats::relative_error(g, r));
        let scale = stats::norm(r).max(f64::MIN_POSITIVE);
        for (j, agree) in stats::signs_agree(g, r).into_iter().enumerate() {
            signs.push(agree);
            per_param_signs[j % p].push(agree);
            per_param_error[j % p] += (f64::from(g[j]) - f64::from(r[j])).abs() / scale;
        }
    }
    let n = cosines.len();
    let summary = Summary::of(&cosines).unwrap_or(Summary { mean: f64::NAN, median: f64::NAN, p10: f64::NAN });
    EstimatorReport {
        name: spec.family.name().into(),
        label: spec.label(),
        k: spec.k,
        epsilon: spec.epsilon,
        h: spec.h,
        is_reference,
        cosine_mean: summary.mean,
        cosine_median: summary.median,
        cosine_p10: summary.p10,
        rel_err_mean: errors.iter().sum::<f64>() / n.max(1) as f64,
        sign_agreement: stats::rate(signs),
        per_param_sign_agreement: per_param_signs.into_iter().map(stats::rate).collect(),
        per_param_error: per_param_error.into_iter().map(|e| e / n.max(1) as f64).collect(),
        scoring: (!spec.scoring.is_whole()).then_some(spec.scoring),
        descent_rate: stats::rate(descent.into_iter().flatten()),
        renders_per_estimate: spec.family.grad_kind().renders_per_item(width, spec.k.unwrap_or(0)),
        seconds_per_estimate: seconds,
        examples: n,
        failed: gradients.items.len() - gradients.ok(),
    }
}
