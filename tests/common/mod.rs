//! Shared helpers for the end-to-end tests: the `afx` binary, real recordings, WAV comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's sonic-pi-samples package puts its real recordings.
pub const SAMPLES: &str = "/usr/share/sonic-pi/samples";

pub const ZAM_COMP: &str = "urn:zamaudio:ZamComp";
pub const ZAM_EQ2: &str = "urn:zamaudio:ZamEQ2";
pub const FIL4_MONO: &str = "http://gareus.org/oss/lv2/fil4#mono";
pub const DPL_MONO: &str = "http://gareus.org/oss/lv2/dpl#mono";

/// The repository's plugins.toml.
pub fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins.toml")
}

/// `afx` with the given arguments, run in `dir`, with no plugins.toml found by accident.
pub fn afx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afx"))
        .args(args)
        .current_dir(dir)
        .env_remove("AFX_CONFIG")
        .output()
        .expect("run afx")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "afx failed ({}):\n{}", o.status, stderr(&o));
    o
}

/// Asserts failure with a message containing every one of `needles`.
pub fn fails_with(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "afx succeeded but should have failed; stdout:\n{}", stdout(o));
    let err = stderr(o);
    for needle in needles {
        assert!(err.contains(needle), "error message lacks {needle:?}:\n{err}");
    }
}

/// A real recording from sonic-pi-samples (FLAC), decoded to planar f32 at its own rate.
pub fn recording(name: &str) -> (u32, Vec<Vec<f32>>) {
    let path = Path::new(SAMPLES).join(name);
    let mut reader = claxon::FlacReader::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (install Debian's sonic-pi-samples)", path.display()));
    let info = reader.streaminfo();
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
    let channels = info.channels as usize;
    let mut planar = vec![vec![]; channels];
    for (i, s) in reader.samples().enumerate() {
        planar[i % channels].push(s.unwrap() as f32 * scale);
    }
    (info.sample_rate, planar)
}

/// Writes planar f32 audio as a 32-bit float WAV.
pub fn write_wav(path: &Path, rate: u32, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for f in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[f]).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Reads a WAV (float or int) as planar f32.
pub fn read_wav(path: &Path) -> (u32, Vec<Vec<f32>>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let n = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.unwrap() as f32 * scale).collect()
        }
    };
    let mut planar = vec![Vec::with_capacity(samples.len() / n); n];
    for (i, s) in samples.into_iter().enumerate() {
        planar[i % n].push(s);
    }
    (spec.sample_rate, planar)
}

/// The mono drum loop (left channel of loop_amen) as a float WAV in `dir`.
pub fn amen_mono(dir: &Path) -> PathBuf {
    let (rate, channels) = recording("loop_amen.flac");
    let path = dir.join("amen-mono.wav");
    write_wav(&path, rate, &channels[..1]);
    path
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}
