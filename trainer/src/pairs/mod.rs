//! Where training pairs come from: a [`PairSource`] gives batches of (input_A, reference_B, target_A), and the
//! training loop does not care how they were made.
//!
//! - [`synthetic`]: DeepAFx-ST's self-supervised pairs, rendered through the REAL chain at random θ* from any
//!   [`crate::ClipSource`] (a corpus, a `Vec<Audio>`); θ* is known, so the parameter error is reported.
//! - [`folder`]: a user's own raw/processed recordings ([`folder::PairFolder`], `afx train --pairs DIR`): aligned
//!   by cross-correlation ([`align`]), cropped at the same position; θ* is unknown.

pub mod align;
pub mod folder;
pub mod moving;
pub mod synthetic;

use afx_core::Audio;
use afx_spsa::{ItemError, Pool, item_seed};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub use folder::{PairFolder, PairInfo};
pub use synthetic::{Corruption, sample_pairs, uniform};

use crate::TrainError;

/// A batch of pairs; every vector has one entry per item that rendered. Failed items are dropped and counted.
#[derive(Debug, Clone, Default)]
pub struct PairBatch {
    pub input_a: Vec<Audio>,
    pub reference_b: Vec<Audio>,
    pub target_a: Vec<Audio>,
    /// Per item, the frames just before input_A that the chain renders first and the loss ignores, so the
    /// effects' state at the crop (a compressor's gain) is the one the processed file had there; empty when the
    /// source has none (synthetic pairs render their 2·L clip whole). See [`with_preroll`].
    pub preroll_a: Vec<Audio>,
    /// The parameters the targets were rendered with (synthetic pairs); `None` where they are unknown (a user's
    /// processed recordings), and then no parameter error is reported.
    pub theta_star: Option<Vec<Vec<f32>>>,
    /// Each item's name (the file of a user's pair); empty for synthetic pairs.
    pub names: Vec<String>,
    pub failed: usize,
    pub errors: Vec<ItemError>,
}

impl PairBatch {
    pub fn len(&self) -> usize {
        self.input_a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_a.is_empty()
    }

    /// The first failed item's error, or "no error": what the refusal of a batch where nothing rendered quotes.
    pub fn first_error(&self) -> String {
        self.errors.first().map_or("no error".into(), |e| e.to_string())
    }
}

/// A held-out set as validation and `afx compare`'s test set score it: the pairs `source` holds out for
/// `request` ([`PairSource::held_out`]) and, per pair, the uniform θ that the random baseline is scored at, drawn
/// from `request.seed`'s stream.
pub fn held_out_with_random_theta<S: PairSource + ?Sized>(
    source: &S,
    pool: &mut Pool,
    request: &PairRequest,
) -> Result<(PairBatch, Vec<Vec<f32>>), TrainError> {
    let pairs = source.held_out(pool, request)?;
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(request.seed, 1 << 30));
    let random_theta = (0..pairs.len()).map(|_| uniform(&mut rng, pool.num_params())).collect();
    Ok((pairs, random_theta))
}

/// `preroll` followed by `input`: what the chain renders for an item with a pre-roll.
pub fn with_preroll(preroll: &Audio, input: &Audio) -> Audio {
    let channels = preroll.channels().iter().zip(input.channels()).map(|(p, x)| [p.as_slice(), x].concat()).collect();
    Audio::new(input.sample_rate(), channels).expect("equal channel counts")
}

/// What the chain renders for each item: its input after its pre-roll, or the input alone when `preroll` is
/// empty (a source without one).
pub fn chain_inputs(inputs: &[Audio], preroll: &[Audio]) -> Vec<Audio> {
    match preroll {
        [] => inputs.to_vec(),
        preroll => inputs.iter().zip(preroll).map(|(x, p)| with_preroll(p, x)).collect(),
    }
}

/// The last `frames` frames of `audio` (what the loss scores of a render with a pre-roll).
pub fn tail(audio: &Audio, frames: usize) -> Audio {
    let skip = audio.frames().saturating_sub(frames);
    Audio::new(audio.sample_rate(), audio.channels().iter().map(|c| c[skip..].to_vec()).collect())
        .expect("equal lengths")
}

/// What a batch is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairRequest {
    /// L: frames of every input_A, reference_B and target_A, at the training rate.
    pub frames: usize,
    /// Items wanted (a held-out set of fixed pairs gives each of its pairs instead, see
    /// [`PairSource::held_out`]).
    pub batch: usize,
    /// What the synthetic input is before the target's processing (user pairs bring their own input, and refuse
    /// anything but [`Corruption::None`]).
    pub corruption: Corruption,
    /// Item `i` uses [`afx_spsa::item_seed`]`(seed, i)`, so a batch is the same whatever the worker count.
    pub seed: u64,
    /// Frames per row of a trajectory θ when the run has automation, else 0. A pair folder then takes the
    /// processed crop itself as the reference and a pre-roll of whole hops, so the trajectory extends over it
    /// (see [`crate::method::real_gradients`]).
    pub hop: usize,
}

/// Where training and validation pairs come from.
pub trait PairSource {
    /// A training batch.
    fn batch(&self, pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError>;

    /// The held-out set, made once per process and fixed for the run: by default a batch of `request.batch`
    /// items; a source of fixed pairs gives one crop of each of its pairs.
    fn held_out(&self, pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError> {
        self.batch(pool, request)
    }

    /// One line for logs and reports.
    fn describe(&self) -> String;

    /// The user's pairs, if this source has any: written to the run folder as `pairs.json`.
    fn pairs_manifest(&self) -> Option<Vec<PairInfo>> {
        None
    }
}
