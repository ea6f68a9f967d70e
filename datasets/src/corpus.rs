//! A corpus on disk: its files, their train/validation/test split, and crops for training.

use std::fmt;
use std::path::{Path, PathBuf};

use afx_core::audio_file::{is_audio, load_audio};
use afx_core::run_folder::read_json;
use afx_core::{Audio, FileError};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::DatasetError;
use crate::resample::resample;

/// Which part of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

/// `manifest.json`: every file of the corpus (relative to the corpus folder) and its split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: PathBuf,
    pub split: Split,
    /// Where the file came from (for the demo corpus: the Debian package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

pub const MANIFEST: &str = "manifest.json";

impl Manifest {
    /// Reads `dir/manifest.json`, or builds one from the files under `dir` when there is none.
    pub fn for_folder(dir: &Path) -> Result<Manifest, DatasetError> {
        let path = dir.join(MANIFEST);
        if path.exists() {
            let manifest: Manifest = read_json(&path)?;
            if manifest.version != 1 {
                let reason = format!("version {} is not supported (expected 1)", manifest.version);
                return Err(FileError::format(&path, reason).into());
            }
            return Ok(manifest);
        }
        let mut files = vec![];
        walk(dir, dir, &mut files)?;
        Ok(Manifest { version: 1, files: assign_splits(files) })
    }

    /// Writes the manifest to `dir/manifest.json` (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), DatasetError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        Ok(afx_core::atomic::write(&path, text.as_bytes()).map_err(|reason| FileError::format(&path, reason))?)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(FileError::io(dir))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if is_audio(&path) {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    Ok(())
}

/// FNV-1a of the path: a split that depends on the file's name alone, not on the other files or the machine.
fn path_hash(path: &Path) -> u64 {
    path.to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Splits files by file (never a file across splits), deterministically: ordered by a hash of their path, the
/// first tenth (at least one when there are three or more files) goes to validation, the next to test.
pub fn assign_splits(mut files: Vec<PathBuf>) -> Vec<ManifestEntry> {
    files.sort_by_key(|p| (path_hash(p), p.clone()));
    let n = files.len();
    let tenth = if n >= 3 { n.div_ceil(10) } else { 0 };
    let mut entries: Vec<ManifestEntry> = files
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let split = if i < tenth {
                Split::Val
            } else if i < 2 * tenth {
                Split::Test
            } else {
                Split::Train
            };
            ManifestEntry { path, split, source: None }
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// Below this RMS (about -45 dBFS) a crop counts as silence and is drawn again.
const SILENCE_RMS: f32 = 0.005_6;
/// Crops are scaled to this RMS (-20 dBFS), then pulled down if that would clip.
const TARGET_RMS: f32 = 0.1;

/// One split of a corpus, decoded, mono, at one sample rate, in memory.
#[derive(Debug, Clone)]
pub struct Corpus {
    dir: PathBuf,
    sample_rate: u32,
    clips: Vec<(PathBuf, Audio)>,
    skipped: Vec<String>,
}

impl Corpus {
    /// Loads the files of `split` from the corpus in `dir` at `sample_rate`. Files that fail to decode are
    /// skipped and listed in [`Corpus::skipped`] (and logged); a split with no usable file is an error.
    pub fn open(dir: &Path, split: Split, sample_rate: u32) -> Result<Corpus, DatasetError> {
        if !dir.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder");
            return Err(FileError::Io { path: dir.into(), source }.into());
        }
        let manifest = Manifest::for_folder(dir)?;
        let (mut clips, mut skipped) = (vec![], vec![]);
        for entry in manifest.files.iter().filter(|e| e.split == split) {
            let path = dir.join(&entry.path);
            match load_audio(&path).map_err(DatasetError::from).and_then(|a| resample(&a.mono(), sample_rate)) {
                Ok(audio) => clips.push((entry.path.clone(), audio)),
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    skipped.push(e.to_string());
                }
            }
        }
        if clips.is_empty() {
            return Err(DatasetError::Empty { dir: dir.into(), split, skipped });
        }
        Ok(Corpus { dir: dir.into(), sample_rate, clips, skipped })
    }

    /// A corpus of audio already in memory (mixed to mono and resampled to `sample_rate` like a loaded one),
    /// so a benchmark or a tool can crop its own signals without writing them to a folder first. `dir` only
    /// names the corpus in messages.
    pub fn from_clips(dir: &Path, sample_rate: u32, clips: Vec<(PathBuf, Audio)>) -> Result<Corpus, DatasetError> {
        if clips.is_empty() {
            return Err(DatasetError::Empty { dir: dir.into(), split: Split::Train, skipped: vec![] });
        }
        let clips = clips
            .into_iter()
            .map(|(path, audio)| Ok((path, resample(&audio.mono(), sample_rate)?)))
            .collect::<Result<_, DatasetError>>()?;
        Ok(Corpus { dir: dir.into(), sample_rate, clips, skipped: vec![] })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// The files loaded (relative to the corpus folder) and their audio.
    pub fn clips(&self) -> &[(PathBuf, Audio)] {
        &self.clips
    }

    /// The files that could not be decoded, each with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// A crop of `frames` frames, the same for the same `seed`: a file drawn in proportion to its length
    /// among those long enough, a random offset, redrawn when the crop is near-silent, then scaled to a fixed
    /// loudness. `None` when no file is long enough or 64 draws all came up silent.
    pub fn crop(&self, seed: u64, frames: usize) -> Option<Audio> {
        let long: Vec<&Audio> = self.clips.iter().map(|(_, a)| a).filter(|a| a.frames() >= frames).collect();
        let total: u64 = long.iter().map(|a| (a.frames() - frames + 1) as u64).sum();
        if total == 0 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..64 {
            let mut at = rng.next_u64() % total;
            for audio in &long {
                let starts = (audio.frames() - frames + 1) as u64;
                if at >= starts {
                    at -= starts;
                    continue;
                }
                let crop = &audio.channel(0)[at as usize..at as usize + frames];
                // One pass for both (the crop is read once). The energy is summed in order, sample by sample,
                // as it always was: a different order would change the gain's last bits, and so every example
                // a resumed or extended collection made by an older afx shares with this one.
                let (energy, peak) = crop.iter().fold((0.0f32, 0.0f32), |(e, p), s| (e + s * s, p.max(s.abs())));
                let rms = (energy / frames as f32).sqrt();
                if rms < SILENCE_RMS {
                    break;
                }
                let gain = (TARGET_RMS / rms).min(0.95 / peak);
                let samples = crop.iter().map(|s| s * gain).collect();
                return Some(Audio::new(self.sample_rate, vec![samples]).expect("one channel"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_by_file_deterministic_and_never_empty() {
        let files: Vec<PathBuf> = (0..25).map(|i| PathBuf::from(format!("f{i}.wav"))).collect();
        let a = assign_splits(files.clone());
        let mut reversed = files.clone();
        reversed.reverse();
        assert_eq!(a, assign_splits(reversed), "the split must not depend on the listing order");
        let count = |s| a.iter().filter(|e| e.split == s).count();
        assert_eq!((count(Split::Val), count(Split::Test), count(Split::Train)), (3, 3, 19));
        let few = assign_splits(files[..3].to_vec());
        assert!([Split::Train, Split::Val, Split::Test].iter().all(|s| few.iter().any(|e| e.split == *s)));
    }
}
