//! Nothing a plugin does can take afx down: afx's test effect, made to crash or hang while it loads (in each
//! format), fails `afx render`, `afx train` and `afx collect` with a clear error and exit code, never by a
//! signal, and leaves nothing half-written.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use afx_testfx_dsp::{CLAP_ID, LV2_URI, VST3_CLASS_ID};
use common::*;

const FORMATS: [(&str, &str); 3] = [("lv2", LV2_URI), ("clap", CLAP_ID), ("vst3", VST3_CLASS_ID)];

/// `afx args` in `dir` with the test effect installed beside the system's plugins and `fault` armed.
fn afx_with_fault(dir: &Path, fault: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env("AFX_TESTFX_FAULT", fault);
    // A scan cache per fault: the cache remembers a failed file until it changes, as DAWs' blocklists do.
    cmd.env("AFX_CACHE_DIR", dir.join(format!("cache-{fault}")));
    for (k, v) in testfx().env() {
        cmd.env(k, v);
    }
    // The test effect's LV2 bundle beside the system's (ZamComp and friends).
    cmd.env("LV2_PATH", format!("{}:/usr/lib/lv2", testfx().lv2.display()));
    cmd.args(args).output().expect("run afx")
}

/// A failure with exit code 1 (not a signal) whose message holds every needle.
fn fails_cleanly(what: &str, out: &Output, needles: &[&str]) {
    assert_eq!(out.status.signal(), None, "{what}: afx died by a signal: {:?}\n{}", out.status, stderr(out));
    assert_eq!(out.status.code(), Some(1), "{what}: {:?}\n{}", out.status, stderr(out));
    let err = stderr(out);
    for needle in needles {
        assert!(err.contains(needle), "{what}: the error lacks {needle:?}:\n{err}");
    }
}

/// `afx render`, `afx train` and `afx collect` of the test effect in `format` with `fault` armed and `extra`
/// flags, each of which must fail cleanly with every needle in its error and write no output. Returns the three
/// runs' outputs.
fn render_train_collect_fail(
    dir: &Path,
    (format, id): (&str, &str),
    fault: &str,
    extra: &[&str],
    needles: &[&str],
) -> [Output; 3] {
    let input = amen_mono_wav(dir);
    let corpus = demo_corpus().to_str().unwrap();
    let output = dir.join(format!("{format}-{fault}.wav"));
    let render = ["render", "--plugin", id, "--format", format, "-i", arg(&input), "-o", arg(&output)];
    let rendered = afx_with_fault(dir, fault, &[&render[..], extra].concat());
    fails_cleanly(&format!("render {format} {fault}"), &rendered, needles);
    assert!(!output.exists(), "render {format} {fault} wrote its output");

    let run = dir.join(format!("run-{format}-{fault}"));
    let train = ["train", "--chain", id, "--data", corpus, "--steps", "2", "--out", arg(&run)];
    let trained = afx_with_fault(dir, fault, &[&train[..], extra].concat());
    fails_cleanly(&format!("train {format} {fault}"), &trained, needles);

    let shards = dir.join(format!("shards-{format}-{fault}"));
    let collect = ["collect", "--chain", id, "--data", corpus, "--examples", "4", "--out", arg(&shards)];
    let collected = afx_with_fault(dir, fault, &[&collect[..], extra].concat());
    fails_cleanly(&format!("collect {format} {fault}"), &collected, needles);
    assert!(!shards.join("manifest.json").exists(), "collect {format} {fault} wrote a manifest");
    [rendered, trained, collected]
}

#[test]
fn a_plugin_that_crashes_while_loading_fails_render_train_and_collect_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        for (fault, needles) in [("load-segfault", ["signal 11", "SIGSEGV"]), ("load-abort", ["signal 6", "SIGABRT"])] {
            render_train_collect_fail(dir.path(), format, fault, &[], &needles);
        }
    }
}

#[test]
fn a_plugin_that_hangs_while_loading_fails_render_train_and_collect_after_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let [rendered, ..] =
            render_train_collect_fail(dir.path(), format, "load-hang", &["--timeout", "2"], &["timed out"]);
        assert!(stderr(&rendered).contains("timed out after 2"), "{}", stderr(&rendered));
    }
}
