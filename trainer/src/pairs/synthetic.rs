//! DeepAFx-ST's self-supervised pairs, rendered through the REAL chain.
//!
//! A clip of 2·L frames is rendered whole at random θ* (so the compressor's state runs on across the halves, as
//! in DeepAFx-ST) and split into halves A and B. The model sees (input_A, target_B): it must find the θ that
//! turns input_A into target_A, knowing only how the same processing sounds on other material (B). The input is
//! the raw clip, or the clip through the chain at other random θ ([`Corruption::RandomChain`]).

use afx_core::Audio;
use afx_spsa::{ItemError, Pool, item_seed};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{PairBatch, PairRequest, PairSource};
use crate::{ClipSource, TrainError};

/// What the model's input is, before the target's processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// The raw recording.
    #[default]
    None,
    /// The recording through the chain at random parameters (independent of θ*).
    RandomChain,
}

/// How often a source may say "no clip" for one item before the batch fails (a source that is empty or holds
/// only recordings shorter than 2·L).
const CLIP_TRIES: usize = 8;

/// Samples `batch` pairs of halves of `frames` frames. Item `i` uses [`item_seed`]`(seed, i)` for its clip,
/// θ* and corruption, so a batch is the same whatever the pool's worker count.
pub fn sample_pairs<S: ClipSource + ?Sized>(
    source: &S,
    pool: &mut Pool,
    frames: usize,
    corruption: Corruption,
    batch: usize,
    seed: u64,
) -> Result<PairBatch, TrainError> {
    let p = pool.num_params();
    let mut clips = Vec::with_capacity(batch);
    let mut theta_star = Vec::with_capacity(batch);
    let mut theta_corrupt = Vec::with_capacity(batch);
    for i in 0..batch {
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, i));
        clips.push(draw_clip(source, &mut rng, 2 * frames)?);
        theta_star.push(uniform(&mut rng, p));
        theta_corrupt.push(uniform(&mut rng, p));
    }
    let targets = pool.render_batch(&clips, &theta_star);
    let inputs: Vec<Result<Audio, ItemError>> = match corruption {
        Corruption::None => clips.into_iter().map(Ok).collect(),
        Corruption::RandomChain => pool.render_batch(&clips, &theta_corrupt),
    };
    let mut out = PairBatch::default();
    let mut theta_out = Vec::with_capacity(batch);
    for ((target, input), theta) in targets.into_iter().zip(inputs).zip(theta_star) {
        match (target, input) {
            (Ok(target), Ok(input)) => {
                let (target_a, _) = halves(&target, frames);
                let (input_a, _) = halves(&input, frames);
                let (_, reference_b) = halves(&target, frames);
                out.input_a.push(input_a);
                out.target_a.push(target_a);
                out.reference_b.push(reference_b);
                theta_out.push(theta);
            }
            (Err(e), _) | (_, Err(e)) => {
                out.failed += 1;
                out.errors.push(e);
            }
        }
    }
    out.theta_star = Some(theta_out);
    Ok(out)
}

/// Every clip source is a source of synthetic pairs: [`sample_pairs`] behind the [`PairSource`] trait.
impl<T: ClipSource + ?Sized> PairSource for T {
    fn batch(&self, pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError> {
        sample_pairs(self, pool, request.frames, request.corruption, request.batch, request.seed)
    }

    fn describe(&self) -> String {
        format!("self-supervised pairs rendered at random parameters from {} recordings", self.len())
    }
}

/// A clip of `frames` frames from `source`, drawn with `rng`: up to [`CLIP_TRIES`] tries, then an error saying the
/// source has none that long.
pub(super) fn draw_clip<S: ClipSource + ?Sized>(
    source: &S,
    rng: &mut ChaCha8Rng,
    frames: usize,
) -> Result<Audio, TrainError> {
    (0..CLIP_TRIES).find_map(|_| source.clip(rng.next_u64(), frames)).ok_or_else(|| {
        TrainError::NoData(format!(
            "the source ({} recordings) gave no clip of {frames} frames in {CLIP_TRIES} tries",
            source.len()
        ))
    })
}

/// P values uniform in [0, 1].
pub fn uniform(rng: &mut ChaCha8Rng, p: usize) -> Vec<f32> {
    (0..p).map(|_| ((rng.next_u64() >> 40) as f64 / (1u64 << 24) as f64) as f32).collect()
}

/// The first `frames` frames and the rest.
fn halves(audio: &Audio, frames: usize) -> (Audio, Audio) {
    let split = |range: std::ops::Range<usize>| {
        Audio::new(audio.sample_rate(), audio.channels().iter().map(|c| c[range.clone()].to_vec()).collect())
            .expect("equal lengths")
    };
    (split(0..frames), split(frames..audio.frames()))
}
