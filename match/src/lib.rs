//! Match one sound through a REAL plugin chain, without training: the chain's parameters θ for one
//! (input, target) pair, or for an input and a style reference, found by optimising through the installed
//! plugins (ST-ITO's inference-time optimisation, on afx's worker pool).
//!
//! 1. [`Objective`]: what "sounds like" means. An aligned target is scored with the training loss (MRSTFT, as
//!    validation scores a trained controller); a style reference of other material with [`style`] features.
//!    Both look at a [`crop`] of at most `max_seconds` of the input (the loudest), the target's same frames.
//! 2. An [`Optimizer`] proposes points θ in [0, 1]^P: [`spsa::SpsaDescent`] (pairs θ ± εΔ, an Adam step, a
//!    decaying rate) or [`cmaes::CmaEs`] (a population). The pool renders every proposal of a step as one batch
//!    over all its workers; a failed render scores +∞ and is counted, never fatal.
//! 3. [`optimise`] repeats until the render budget or the time is spent and keeps the best θ it scored, with
//!    its curve (best loss against renders). [`write_outputs`] saves the preset, the whole input rendered at the
//!    best θ, the curve as a PNG and a JSON summary.
//!
//! ```no_run
//! use afx_core::Audio;
//! use afx_match::{Budget, MatchConfig, MatchError, Method, Objective, Outcome, optimise};
//! use afx_spsa::Pool;
//!
//! /// Matches `target` (`input` processed, aligned) by CMA-ES in 2000 renders through `pool`'s chain,
//! /// from the chain's defaults.
//! fn match_target(pool: &mut Pool, input: &Audio, target: &Audio) -> Result<Outcome, MatchError> {
//!     let config = MatchConfig { method: Method::CmaEs, budget: Budget::renders(2000), ..MatchConfig::default() };
//!     let objective = Objective::target(input, target, config.max_seconds)?;
//!     let start = afx_trainer::ChainInfo::from_chain(pool.chain()).default_theta();
//!     optimise(pool, &objective, &start, &config, &mut |p| eprintln!("best {:.4} after {} renders", p.best, p.renders))
//! }
//! ```

pub mod cmaes;
mod error;
mod objective;
mod output;
pub mod spsa;
pub mod style;

use std::sync::Arc;
use std::time::Instant;

use afx_spsa::Pool;
use serde::{Deserialize, Serialize};

pub use error::MatchError;
pub use objective::{Objective, crop};
pub use output::{Summary, start_from_run, write_outputs};

/// The search method (`--method`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    Spsa,
    CmaEs,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::Spsa, Method::CmaEs];

    pub fn name(self) -> &'static str {
        match self {
            Method::Spsa => "spsa",
            Method::CmaEs => "cma-es",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        Method::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            format!("unknown method {s:?}: valid methods are {}", Method::ALL.map(Method::name).join(", "))
        })
    }
}

/// When to stop: after this many renders, or this many seconds, whichever comes first (at least one is set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub renders: Option<u64>,
    pub seconds: Option<f64>,
}

impl Budget {
    pub fn renders(n: u64) -> Budget {
        Budget { renders: Some(n), seconds: None }
    }

    /// How much of the budget `renders` and `seconds` have spent, in [0, 1] (the larger share).
    fn spent(&self, renders: u64, seconds: f64) -> f64 {
        let by_renders = self.renders.map_or(0.0, |n| renders as f64 / n.max(1) as f64);
        let by_time = self.seconds.map_or(0.0, |s| seconds / s);
        by_renders.max(by_time).min(1.0)
    }
}

/// Everything that shapes a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchConfig {
    pub method: Method,
    pub budget: Budget,
    pub seed: u64,
    /// The longest stretch of the input the objective looks at, in seconds (the loudest one).
    pub max_seconds: f64,
    pub spsa: spsa::SpsaSettings,
    pub cmaes: cmaes::CmaEsSettings,
}

impl Default for MatchConfig {
    /// SPSA, 2000 renders (about half of ST-ITO's 4 096 per example), crops of at most 10 s.
    fn default() -> Self {
        MatchConfig {
            method: Method::Spsa,
            budget: Budget::renders(2000),
            seed: 0,
            max_seconds: 10.0,
            spsa: spsa::SpsaSettings::default(),
            cmaes: cmaes::CmaEsSettings::default(),
        }
    }
}

impl MatchConfig {
    /// Refuses settings that cannot run, naming the flag.
    pub fn validate(&self) -> Result<(), MatchError> {
        let bad = |m: String| Err(MatchError::Config(m));
        match (self.budget.renders, self.budget.seconds) {
            (None, None) => return bad("give a budget: --renders N or --seconds S".into()),
            (Some(0), _) => return bad("--renders 0: at least one render is needed to match anything".into()),
            (_, Some(s)) if !s.is_finite() || s <= 0.0 => return bad(format!("--seconds {s}: must be positive")),
            _ => {}
        }
        if !self.max_seconds.is_finite() || self.max_seconds <= 0.0 {
            return bad(format!("--max-seconds {}: must be positive", self.max_seconds));
        }
        let s = &self.spsa;
        if !(s.epsilon > 0.0 && s.epsilon < 0.5) {
            return bad(format!("--epsilon {}: need 0 < ε < 0.5 (normalised units)", s.epsilon));
        }
        if !(s.lr > 0.0 && s.lr_final > 0.0) {
            return bad(format!("--lr {}: must be positive", s.lr));
        }
        if s.perturbations == Some(0) {
            return bad("--perturbations 0: SPSA needs at least one".into());
        }
        if !(self.cmaes.sigma > 0.0 && self.cmaes.sigma <= 1.0) {
            return bad(format!("--sigma {}: need 0 < σ ≤ 1 (normalised units)", self.cmaes.sigma));
        }
        if matches!(self.cmaes.population, Some(p) if p < 2) {
            return bad("--population: CMA-ES needs at least 2 points per generation".into());
        }
        Ok(())
    }
}

/// A search over θ in [0, 1]^P by asking for points and being told their losses.
pub trait Optimizer {
    /// The points to render next; `progress` is the share of the budget spent so far, in [0, 1].
    fn ask(&mut self, progress: f64) -> Vec<Vec<f32>>;
    /// One loss per point of the last [`Optimizer::ask`], in order; NaN or ∞ for a point that failed.
    fn tell(&mut self, losses: &[f64]);
    /// The optimizer's own estimate of the minimum now (SPSA's θ, CMA-ES's mean).
    fn estimate(&self) -> Vec<f32>;
}

/// One point of the curve: after `renders` renders (and `seconds`), the best loss so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub renders: u64,
    pub seconds: f64,
    pub best: f64,
}

/// What [`optimise`] reports after every step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub renders: u64,
    pub seconds: f64,
    pub best: f64,
    pub failed: u64,
    /// Share of the budget spent, in [0, 1].
    pub spent: f64,
}

/// How a match went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The loss at the starting θ (the chain's defaults, or a trained controller's prediction).
    pub start_loss: f64,
    pub start_theta: Vec<f32>,
    /// The best θ scored, and its loss.
    pub best_theta: Vec<f32>,
    pub best_loss: f64,
    /// Renders spent, the start's included.
    pub renders: u64,
    /// Renders that failed (a crash, a hang, NaN: scored +∞).
    pub failed: u64,
    pub seconds: f64,
    /// Of `seconds`: waiting for the pool's renders, and scoring their outputs (in this process).
    pub render_s: f64,
    pub score_s: f64,
    pub curve: Vec<CurvePoint>,
}

/// Optimises θ from `start` until `config.budget` is spent, rendering through `pool`'s chain. The start is
/// rendered first: if that render fails (a rate or channel count the chain cannot take) or cannot be scored,
/// the match stops there with the reason, before any search.
pub fn optimise(
    pool: &mut Pool,
    objective: &Objective,
    start: &[f32],
    config: &MatchConfig,
    on_step: &mut dyn FnMut(&Progress),
) -> Result<Outcome, MatchError> {
    config.validate()?;
    if start.len() != pool.num_params() {
        return Err(MatchError::Config(format!(
            "the start has {} values but chain {:?} has {} parameters",
            start.len(),
            pool.chain().name(),
            pool.num_params()
        )));
    }
    let started = Instant::now();
    let input = Arc::new(objective.input().clone());
    let first = pool.render_batch(std::slice::from_ref(&input), &[start.to_vec()]).pop().expect("one result");
    let first = first.map_err(|e| MatchError::Start(Box::new(e)))?;
    let start_loss = objective.score(&first)?;
    if !start_loss.is_finite() {
        return Err(MatchError::Config(format!("the loss at the start is {start_loss}: nothing to descend from")));
    }
    let workers = pool.config().workers.max(1);
    let p = pool.num_params();
    let mut optimizer: Box<dyn Optimizer> = match config.method {
        Method::Spsa => {
            let k = config.spsa.perturbations.unwrap_or(workers);
            Box::new(spsa::SpsaDescent::new(start, &config.spsa, k, config.seed))
        }
        Method::CmaEs => {
            let lambda = config.cmaes.population_for(p, workers);
            Box::new(cmaes::CmaEs::new(start, &config.cmaes, lambda, config.seed))
        }
    };
    let (mut renders, mut failed) = (1u64, 0u64);
    let (mut render_s, mut score_s) = (0.0, 0.0);
    let (mut best_theta, mut best_loss) = (start.to_vec(), start_loss);
    let mut curve = vec![CurvePoint { renders, seconds: started.elapsed().as_secs_f64(), best: best_loss }];
    loop {
        let spent = config.budget.spent(renders, started.elapsed().as_secs_f64());
        if spent >= 1.0 {
            break;
        }
        let points = optimizer.ask(spent);
        if let Some(limit) = config.budget.renders
            && renders + points.len() as u64 > limit
        {
            // A step is all or nothing (an SPSA pair, a CMA-ES generation): the budget is never overspent.
            break;
        }
        let t = Instant::now();
        let outputs = pool.render_batch(&vec![input.clone(); points.len()], &points);
        render_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rendered: Vec<&afx_core::Audio> = outputs.iter().filter_map(|o| o.as_ref().ok()).collect();
        let mut scores = objective.score_batch(&rendered)?.into_iter();
        let mut losses = Vec::with_capacity(points.len());
        for (output, point) in outputs.iter().zip(&points) {
            let loss = match output {
                Ok(_) => scores.next().expect("one score per rendered output"),
                Err(e) => {
                    tracing::warn!("render failed, scored +inf: {e}");
                    f64::INFINITY
                }
            };
            if !loss.is_finite() {
                failed += 1;
            } else if loss < best_loss {
                (best_theta, best_loss) = (point.clone(), loss);
            }
            losses.push(loss);
        }
        score_s += t.elapsed().as_secs_f64();
        renders += points.len() as u64;
        optimizer.tell(&losses);
        let seconds = started.elapsed().as_secs_f64();
        curve.push(CurvePoint { renders, seconds, best: best_loss });
        on_step(&Progress { renders, seconds, best: best_loss, failed, spent: config.budget.spent(renders, seconds) });
    }
    Ok(Outcome {
        start_loss,
        start_theta: start.to_vec(),
        best_theta,
        best_loss,
        renders,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        render_s,
        score_s,
        curve,
    })
}
