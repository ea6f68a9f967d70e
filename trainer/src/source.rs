//! Where training clips come from. The corpus implements [`ClipSource`]; `Vec<Audio>` does for tests.

use afx_core::Audio;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Where training clips come from (the corpus implements this; tests can use a Vec of real recordings).
/// A clip is mono, at the training rate, and the same for the same `(seed, frames)`.
pub trait ClipSource {
    /// Number of underlying recordings (0: the source can give nothing).
    fn len(&self) -> usize;
    /// A clip of exactly `frames` frames, or `None` when no recording is long (and loud) enough.
    fn clip(&self, seed: u64, frames: usize) -> Option<Audio>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Crops whose RMS is below this are near-silence: the loss says nothing useful about them.
const SILENCE_RMS: f32 = 1e-3;
/// How many random crops to try before giving up on near-silence.
const TRIES: usize = 16;

/// Random crops of the recordings, which must already be at the training rate (see
/// [`crate::resample::to_rate`]); multi-channel recordings are averaged to mono.
impl ClipSource for Vec<Audio> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn clip(&self, seed: u64, frames: usize) -> Option<Audio> {
        let long: Vec<&Audio> = self.iter().filter(|a| a.frames() >= frames).collect();
        if long.is_empty() || frames == 0 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..TRIES {
            let audio = long[(rng.next_u64() % long.len() as u64) as usize];
            let start = (rng.next_u64() % (audio.frames() - frames + 1) as u64) as usize;
            let mono = crate::resample::mono_range(audio, start, frames);
            let rms = (mono.iter().map(|x| x * x).sum::<f32>() / frames as f32).sqrt();
            if rms >= SILENCE_RMS {
                return Audio::new(audio.sample_rate(), vec![mono]).ok();
            }
        }
        None
    }
}

/// A corpus split (see `afx_datasets`): its own crops, which skip near-silence and normalise loudness.
impl ClipSource for afx_datasets::Corpus {
    fn len(&self) -> usize {
        afx_datasets::Corpus::len(self)
    }

    fn clip(&self, seed: u64, frames: usize) -> Option<Audio> {
        self.crop(seed, frames)
    }
}
