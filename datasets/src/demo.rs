//! The demo corpus: real recordings from Debian packages, built the same way on every machine.
//!
//! - music and sound: every recording of `sonic-pi-samples` (CC0, from freesound.org) at least 2.4 s long:
//!   drum loops, tabla, guitar, bass, ambiences;
//! - speech: sentences spoken by `espeak-ng` in a few voices.
//!
//! The files keep their own formats (FLAC for the samples, WAV for speech), so the corpus also exercises the
//! loader. `manifest.json` lists every file with its split.

use std::path::{Path, PathBuf};
use std::process::Command;

use afx_core::FileError;
use afx_core::audio_file::load_audio;

use crate::DatasetError;
use crate::corpus::{Manifest, assign_splits};

/// Where Debian's sonic-pi-samples package puts its recordings.
pub const SONIC_PI_SAMPLES: &str = "/usr/share/sonic-pi/samples";

/// Recordings shorter than this are left out: training crops are up to twice a couple of seconds.
const MIN_SECONDS: f64 = 2.4;

const SENTENCES: [&str; 12] = [
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Every morning the fishermen bring their boats back to the quiet harbour.",
    "A compressor reduces the dynamic range of a signal above its threshold.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Turn the volume down a little and listen to the room again.",
    "Rain fell softly on the roof as the old radio played a forgotten song.",
    "Engineers measured the response of the equaliser at every frequency.",
    "Please record one more take, a bit slower and with more feeling.",
    "The train to the north leaves at seven and arrives before noon.",
    "Bright sounds cut through the mix, while warm sounds sit underneath it.",
    "Nobody noticed the clock had stopped until the guests began to leave.",
    "Speak clearly into the microphone and keep a steady distance from it.",
];

const VOICES: [&str; 3] = ["en", "en-us", "en+f3"];

/// Builds the demo corpus in `out` (created if needed): copies the long sonic-pi recordings, speaks the
/// sentences with espeak-ng, and writes `manifest.json`. Running it again gives the same files and split.
pub fn build(out: &Path) -> Result<Manifest, DatasetError> {
    let samples = Path::new(SONIC_PI_SAMPLES);
    if !samples.is_dir() {
        return Err(DatasetError::Demo(format!(
            "{SONIC_PI_SAMPLES} is missing: install Debian's sonic-pi-samples (scripts/setup-debian.sh does)"
        )));
    }
    let io = |path: &Path, source| DatasetError::File(FileError::Io { path: path.into(), source });
    for sub in ["music", "speech"] {
        std::fs::create_dir_all(out.join(sub)).map_err(|e| io(&out.join(sub), e))?;
    }
    let mut files: Vec<(PathBuf, String)> = vec![];
    let mut names: Vec<PathBuf> = std::fs::read_dir(samples)
        .map_err(|e| io(samples, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "flac"))
        .collect();
    names.sort();
    for path in names {
        let audio = load_audio(&path)?;
        if (audio.frames() as f64) < MIN_SECONDS * f64::from(audio.sample_rate()) {
            continue;
        }
        let name = PathBuf::from("music").join(path.file_name().expect("a file"));
        std::fs::copy(&path, out.join(&name)).map_err(|e| io(&out.join(&name), e))?;
        files.push((name, "sonic-pi-samples (CC0)".into()));
    }
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let voice = VOICES[i % VOICES.len()];
        let name = PathBuf::from("speech").join(format!("s{i:02}.wav"));
        let status = Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(out.join(&name))
            .arg(sentence)
            .status()
            .map_err(|e| DatasetError::Demo(format!("cannot run espeak-ng (install Debian's espeak-ng): {e}")))?;
        if !status.success() {
            return Err(DatasetError::Demo(format!("espeak-ng failed ({status}) on sentence {i}")));
        }
        files.push((name, format!("espeak-ng, voice {voice}")));
    }
    let mut entries = assign_splits(files.iter().map(|(p, _)| p.clone()).collect());
    for entry in &mut entries {
        entry.source = files.iter().find(|(p, _)| *p == entry.path).map(|(_, s)| s.clone());
    }
    let manifest = Manifest { version: 1, files: entries };
    manifest.write(out)?;
    Ok(manifest)
}
