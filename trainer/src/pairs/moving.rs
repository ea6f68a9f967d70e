//! Pairs whose processing moves: each clip rendered through the REAL chain along a hidden random trajectory
//! θ*(t) (automation), for a controller that predicts a trajectory.
//!
//! A clip of L frames is rendered with θ* of one row per `hop` frames: each parameter holds its value for a
//! while, then jumps to a new uniform one (a row changes a parameter with probability [`SWITCH`], so a value
//! holds for four rows on average), as a mix's automation rides a gate's threshold or a compressor's ratio
//! between sections. The model sees the input and, as its reference, the processed clip itself: its task is to
//! find the automation that turns one into the other, which the held-out MRSTFT and the parameter error score.

use afx_host::Automation;
use afx_spsa::estimator::Scoring;
use afx_spsa::{Pool, item_seed};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::synthetic::{draw_clip, uniform};
use super::{PairBatch, PairRequest, PairSource};
use crate::{ClipSource, TrainError};

/// The chance that a row of θ* changes a given parameter.
pub const SWITCH: f64 = 0.25;

/// Pairs rendered along hidden trajectories from the clips of `source`, one row per `hop` frames.
pub struct MovingPairs<'a, S: ClipSource + ?Sized> {
    pub source: &'a S,
    pub hop: usize,
}

impl<S: ClipSource + ?Sized> PairSource for MovingPairs<'_, S> {
    fn batch(&self, pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError> {
        sample_moving_pairs(self.source, pool, request.frames, self.hop, request.batch, request.seed)
    }

    fn describe(&self) -> String {
        format!(
            "pairs rendered along hidden random trajectories (a row every {} frames) from {} recordings",
            self.hop,
            self.source.len()
        )
    }
}

/// A hidden trajectory of `rows` rows of `p` values in [0, 1], row after row: uniform at row 0, then each value
/// kept or, with probability [`SWITCH`], drawn anew.
pub fn random_trajectory(rng: &mut ChaCha8Rng, rows: usize, p: usize) -> Vec<f32> {
    let mut theta = uniform(rng, p);
    for f in 1..rows {
        let fresh = uniform(rng, p);
        for j in 0..p {
            let switch = (rng.next_u64() >> 11) as f64 / ((1u64 << 53) as f64) < SWITCH;
            let value = if switch { fresh[j] } else { theta[(f - 1) * p + j] };
            theta.push(value);
        }
    }
    theta
}

/// Samples `batch` pairs of `frames` frames rendered along hidden trajectories at `hop`. Item `i` uses
/// [`item_seed`]`(seed, i)` for its clip and trajectory, so a batch is the same whatever the pool's worker count.
pub fn sample_moving_pairs<S: ClipSource + ?Sized>(
    source: &S,
    pool: &mut Pool,
    frames: usize,
    hop: usize,
    batch: usize,
    seed: u64,
) -> Result<PairBatch, TrainError> {
    let (p, rows) = (pool.num_params(), Automation::rows_for(frames, hop));
    let mut clips = Vec::with_capacity(batch);
    let mut theta_star = Vec::with_capacity(batch);
    for i in 0..batch {
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, i));
        clips.push(draw_clip(source, &mut rng, frames)?);
        theta_star.push(random_trajectory(&mut rng, rows, p));
    }
    let targets = pool.trajectories(hop, Scoring::Whole).render_batch(&clips, &theta_star);
    let mut out = PairBatch::default();
    let mut kept = Vec::with_capacity(batch);
    for ((target, clip), theta) in targets.into_iter().zip(clips).zip(theta_star) {
        match target {
            Ok(target) => {
                out.input_a.push(clip);
                out.reference_b.push(target.clone());
                out.target_a.push(target);
                kept.push(theta);
            }
            Err(e) => {
                out.failed += 1;
                out.errors.push(e);
            }
        }
    }
    out.theta_star = Some(kept);
    Ok(out)
}
