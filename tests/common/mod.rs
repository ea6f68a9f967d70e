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

/// `afx` with the given arguments, run in `dir`, with no plugins.toml found by accident.
pub fn afx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afx"))
        .args(args)
        .current_dir(dir)
        .env_remove("AFX_CONFIG")
        .output()
        .expect("run afx")
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

/// The mono drum loop (left channel of loop_amen) as a float WAV in `dir`.
pub fn amen_mono_wav(dir: &Path) -> PathBuf {
    let amen = afx_testkit::amen_mono();
    let path = dir.join("amen-mono.wav");
    write_wav(&path, amen.sample_rate(), amen.channels());
    path
}
