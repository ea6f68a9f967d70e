//! Test support shared by the workspace's tests: real recordings (Debian's sonic-pi-samples, CC0), WAV
//! helpers and comparisons. Tests use real audio, never synthetic stand-ins for it.

use std::path::Path;

use afx_core::Audio;

/// Where Debian's sonic-pi-samples package puts its recordings.
pub const SAMPLES: &str = "/usr/share/sonic-pi/samples";

pub const ZAM_COMP: &str = "urn:zamaudio:ZamComp";
pub const ZAM_EQ2: &str = "urn:zamaudio:ZamEQ2";
pub const FIL4_MONO: &str = "http://gareus.org/oss/lv2/fil4#mono";
pub const DPL_MONO: &str = "http://gareus.org/oss/lv2/dpl#mono";

/// A recording from sonic-pi-samples (FLAC), decoded to planar f32 at its own rate.
pub fn recording(name: &str) -> Audio {
    let path = Path::new(SAMPLES).join(name);
    let mut reader = claxon::FlacReader::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (install Debian's sonic-pi-samples)", path.display()));
    let info = reader.streaminfo();
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
    let channels = info.channels as usize;
    let mut planar = vec![vec![]; channels];
    for (i, s) in reader.samples().enumerate() {
        planar[i % channels].push(s.expect("valid FLAC") as f32 * scale);
    }
    Audio::new(info.sample_rate, planar).expect("equal channel lengths")
}

/// The left channel of loop_amen, a real drum recording (44.1 kHz, 1.75 s).
pub fn amen_mono() -> Audio {
    let amen = recording("loop_amen.flac");
    Audio::new(amen.sample_rate(), vec![amen.channel(0).to_vec()]).expect("one channel")
}

/// The first `frames` frames of `audio`.
pub fn head(audio: &Audio, frames: usize) -> Audio {
    Audio::new(audio.sample_rate(), audio.channels().iter().map(|c| c[..frames.min(c.len())].to_vec()).collect())
        .expect("equal lengths")
}

/// Writes planar f32 as a 32-bit float WAV (with hound directly, independent of the code under test).
pub fn write_wav(path: &Path, rate: u32, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for f in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[f]).expect("write sample");
        }
    }
    w.finalize().expect("finalize WAV");
}

/// Reads a WAV (float or int) as planar f32 (with hound directly).
pub fn read_wav(path: &Path) -> (u32, Vec<Vec<f32>>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let n = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.expect("sample") as f32 * scale).collect()
        }
    };
    let mut planar = vec![Vec::with_capacity(samples.len() / n); n];
    for (i, s) in samples.into_iter().enumerate() {
        planar[i % n].push(s);
    }
    (spec.sample_rate, planar)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Every sample's bits, for exact comparisons that also tell -0.0 from 0.0.
pub fn bits(audio: &Audio) -> Vec<Vec<u32>> {
    audio.channels().iter().map(|c| c.iter().map(|v| v.to_bits()).collect()).collect()
}

/// Cosine similarity of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// plugins.toml entries for the test effect (LV2): `fx`, its three continuous parameters trained, and `fx_nan`, the
/// same parameters with the fault fixed at 4 (NaN): every render of it is non-finite, as a plugin that breaks on
/// some material would be.
pub const TESTFX_PLUGINS_TOML: &str = concat!(
    "\n[plugins.fx]\n",
    testfx_entry!(),
    "\n[plugins.fx_nan]\n",
    testfx_entry!(),
    "params.fault = { value = 4.0 }\n"
);

/// The body of a plugins.toml entry for the test effect (LV2) with its three continuous parameters trained.
macro_rules! testfx_entry {
    () => {
        r#"format = "lv2"
id = "urn:afx:testfx"
params.drive = { train = true }
params.tone = { train = true }
params.gain = { train = true }
"#
    };
}
use testfx_entry;

/// afx's own test effect, built and packaged for every format: put these folders in `LV2_PATH`, `CLAP_PATH`
/// and `VST3_PATH`.
#[derive(Debug, Clone)]
pub struct TestFxPaths {
    pub lv2: std::path::PathBuf,
    pub clap: std::path::PathBuf,
    pub vst3: std::path::PathBuf,
}

impl TestFxPaths {
    /// The environment variables that make a host (afx, lv2file, a worker) find the test effect.
    pub fn env(&self) -> [(&'static str, &std::path::Path); 3] {
        [("LV2_PATH", &self.lv2), ("CLAP_PATH", &self.clap), ("VST3_PATH", &self.vst3)]
    }
}

/// Builds the test effect's cdylib (`cargo build -p afx-testfx`, the tests' own profile and target folder) and
/// packages it under `<target>/testfx/`, once per test process.
pub fn testfx() -> &'static TestFxPaths {
    static PATHS: std::sync::OnceLock<TestFxPaths> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit sits in the workspace");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "afx-testfx", "--lib"])
            .current_dir(root)
            .status()
            .expect("run cargo to build the test effect");
        assert!(status.success(), "cargo build -p afx-testfx failed");
        let library = target.join("debug").join(afx_testfx::bundle::LIBRARY_FILE);
        let bundles = afx_testfx::bundle::package(&library, &target.join("testfx"))
            .unwrap_or_else(|e| panic!("packaging {}: {e}", library.display()));
        let parent = |p: &Path| p.parent().expect("bundles sit in a folder").to_path_buf();
        TestFxPaths { lv2: parent(&bundles.lv2), clap: parent(&bundles.clap), vst3: parent(&bundles.vst3) }
    })
}
