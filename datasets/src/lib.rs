//! Audio corpora for afx: the folder format, the demo corpus, and a loader that turns a folder of recordings
//! into training crops.
//!
//! # Folder format
//! A corpus is a folder of audio files (WAV, FLAC, OGG/Vorbis, MP3; any sample rate, any channel count; nested
//! folders are fine, as in LibriTTS or MUSDB-style trees) with an optional `manifest.json`:
//!
//! ```json
//! { "version": 1, "files": [ { "path": "speech/s01.wav", "split": "train" }, ... ] }
//! ```
//!
//! Without a manifest, every audio file under the folder is used and split by file, deterministically from its
//! path: a tenth to validation, a tenth to test, the rest to training (see [`corpus::assign_splits`]).
//!
//! # Loading
//! [`Corpus::open`] decodes the files of one split ([`afx_core::audio_file::load_audio`]), mixes them to mono, resamples
//! them to the training rate ([`resample::resample`]) and keeps them in memory. A file that cannot be decoded
//! is reported by name ([`Corpus::skipped`]) and left out; it never stops a run. [`Corpus::crop`] draws a
//! deterministic random crop that is not near-silent, normalised to a fixed loudness.
//!
//! ```no_run
//! use afx_datasets::{Corpus, Split};
//! let corpus = Corpus::open("data/demo".as_ref(), Split::Train, 22_050)?;
//! let clip = corpus.crop(7, 44_100).expect("a long enough, non-silent file");
//! # Ok::<(), afx_datasets::DatasetError>(())
//! ```

pub mod corpus;
pub mod demo;
pub mod resample;

pub use corpus::{Corpus, Manifest, ManifestEntry, Split};

use std::path::PathBuf;

use afx_core::FileError;

/// Why a corpus or a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read or written, or a manifest is not valid.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{dir} holds no usable audio for the {split} split{}", if .skipped.is_empty() { String::new() } else { format!(" ({} files could not be decoded: {})", .skipped.len(), .skipped.join("; ")) })]
    Empty { dir: PathBuf, split: Split, skipped: Vec<String> },
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("{0}")]
    Demo(String),
    #[error(transparent)]
    Audio(#[from] afx_core::AudioError),
}
