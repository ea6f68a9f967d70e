//! The pieces every afx crate shares, with no plugin SDK and no machine learning under them:
//!
//! 1. [`Audio`]: planar f32 audio at one sample rate, what plugins render and models train on ([`audio`]).
//! 2. Audio files ([`audio_file`]): [`audio_file::read_audio`] reads any file afx takes (WAV through hound, FLAC,
//!    OGG/Vorbis and MP3 through symphonia), [`Audio::write_wav`] writes 32-bit float WAV.
//! 3. Atomic files ([`atomic`]): written to a temporary name beside the target, synced, renamed, so a reader
//!    never sees half a file and a kill never leaves one.
//! 4. Run folders ([`run_folder`]): the config, the numbered checkpoints, the newest one, and the metrics log
//!    (truncated on resume) that every training run of afx keeps.
//!
//! ```no_run
//! use afx_core::Audio;
//! use afx_core::audio_file::read_audio;
//!
//! let input = read_audio("drums.flac".as_ref())?;
//! let quieter: Vec<Vec<f32>> =
//!     input.channels().iter().map(|c| c.iter().map(|s| s * 0.5).collect()).collect();
//! Audio::new(input.sample_rate(), quieter)?.write_wav("drums-quieter.wav".as_ref())?;
//! # Ok::<(), afx_core::AudioError>(())
//! ```

pub mod atomic;
pub mod audio;
pub mod audio_file;
pub mod file_error;
pub mod run_folder;

pub use audio::{Audio, AudioError};
pub use file_error::FileError;
pub use run_folder::RunFolder;
