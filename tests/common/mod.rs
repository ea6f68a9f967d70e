//! Shared helpers for the end-to-end tests: the `afx` binary and its output; recordings and WAV helpers come
//! from `afx-testkit`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use afx_testkit::*;

/// The repository's plugins.toml.
pub fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins.toml")
}

/// The `afx` command run in `dir`, with no plugins.toml found by accident: for a test that sets more (its
/// environment, say) before running it.
pub fn afx_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_afx"));
    command.current_dir(dir).env_remove("AFX_CONFIG");
    command
}

/// `afx` with the given arguments, run in `dir`, with no plugins.toml found by accident.
pub fn afx(dir: &Path, args: &[&str]) -> Output {
    afx_command(dir).args(args).output().expect("run afx")
}

/// [`afx`] with `--config` the repository's plugins.toml.
pub fn afx_with_repo_config(dir: &Path, args: &[&str]) -> Output {
    let config = repo_config().display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    afx(dir, &all)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `p` as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
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

/// The flags of a short `afx train` run in a test: `--steps`, `--batch`, 0.5 s clips, `--val-every` and two
/// workers (after the chain, data and run folder).
pub fn short_run<'a>(steps: &'a str, batch: &'a str, val_every: &'a str) -> [&'a str; 10] {
    ["--steps", steps, "--batch", batch, "--clip-seconds", "0.5", "--val-every", val_every, "--workers", "2"]
}

/// The demo corpus (`afx dataset build-demo`: real recordings and espeak-ng speech), built once per test binary.
pub fn demo_corpus() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        ok(afx(dir.path(), &["dataset", "build-demo", "--out", corpus.to_str().unwrap()]));
        (dir, corpus)
    })
    .1
}

/// `impulse.wav` in `dir`: `frames` frames of silence but `amplitude` at frame `at`, on each of `channels`
/// channels (float WAV).
pub fn impulse_wav(dir: &Path, rate: u32, channels: usize, frames: usize, (at, amplitude): (usize, f32)) -> PathBuf {
    let mut x = vec![0.0f32; frames];
    x[at] = amplitude;
    let path = dir.join("impulse.wav");
    write_wav(&path, rate, &vec![x; channels]);
    path
}

/// The index of the sample of largest magnitude (the last of equals).
pub fn peak_index(channel: &[f32]) -> usize {
    (0..channel.len()).max_by(|&a, &b| channel[a].abs().total_cmp(&channel[b].abs())).unwrap()
}

/// The mono drum loop (left channel of loop_amen) as a float WAV in `dir`.
pub fn amen_mono_wav(dir: &Path) -> PathBuf {
    let amen = afx_testkit::amen_mono();
    let path = dir.join("amen-mono.wav");
    write_wav(&path, amen.sample_rate(), amen.channels());
    path
}
