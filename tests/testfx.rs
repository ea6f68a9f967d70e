//! afx's own test effect through afx in all three formats: bit-identical to its plain-Rust DSP core, and each
//! fault mode behaving as designed (crashes and hangs end the worker process, never afx).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use afx_testfx_dsp::{TestFx, param_index};
use common::*;

const FORMATS: [(&str, &str); 3] = [("lv2", "urn:afx:testfx"), ("clap", "org.afx.testfx"), ("vst3", "afx test effect")];

fn command(dir: &Path, format: &str, plugin: &str, input: &Path, output: &Path, sets: &[(&str, f32)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env_remove("AFX_TESTFX_FAULT");
    for (k, v) in testfx().env() {
        cmd.env(k, v);
    }
    cmd.args(["render", "--plugin", plugin, "--format", format, "-i", input.to_str().unwrap()]);
    cmd.args(["-o", output.to_str().unwrap()]);
    for (k, v) in sets {
        cmd.args(["--set", &format!("{k}={v}")]);
    }
    cmd
}

fn core(input: &[f32], rate: u32, sets: &[(&str, f32)]) -> Vec<f32> {
    let mut fx = TestFx::new(rate as f32);
    for (id, v) in sets {
        fx.set_param(param_index(id).unwrap(), *v);
    }
    let mut out = vec![0.0; input.len()];
    fx.process(input, &mut out);
    out
}

#[test]
fn the_test_effect_renders_bit_identically_in_every_format_and_equals_its_core() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let (rate, x) = read_wav(&input);
    let cases: [&[(&str, f32)]; 3] =
        [&[], &[("drive", 12.0), ("tone", 800.0)], &[("drive", 20.0), ("tone", 3000.0), ("gain", -6.0)]];
    for sets in cases {
        let expected = core(&x[0], rate, sets);
        for (format, plugin) in FORMATS {
            let output = dir.path().join(format!("{format}.wav"));
            let out = command(dir.path(), format, plugin, &input, &output, sets).output().unwrap();
            ok(out);
            let (_, y) = read_wav(&output);
            let same = y[0].iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{format} {sets:?}: max |afx - core| = {:e}", max_abs_diff(&y[0], &expected));
        }
    }
}

/// Runs `cmd` for at most `limit`; `None` when it was still running (then it is killed).
fn run_for(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn each_fault_mode_behaves_as_designed_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    for (format, plugin) in FORMATS {
        let output = dir.path().join(format!("{format}.wav"));
        let run = |fault: f32, limit| {
            run_for(command(dir.path(), format, plugin, &input, &output, &[("fault", fault)]), limit)
        };
        // The render runs in a worker process: the crash is reported, afx itself exits with an error.
        let abort = run(1.0, Duration::from_secs(30)).expect("abort returned");
        assert_eq!(abort.status.code(), Some(1), "{format} abort: {:?}", abort.status);
        fails_with(&abort, &["signal 6 (SIGABRT)"]);
        let segfault = run(2.0, Duration::from_secs(30)).expect("segfault returned");
        assert_eq!(segfault.status.code(), Some(1), "{format} segfault: {:?}", segfault.status);
        fails_with(&segfault, &["signal 11 (SIGSEGV)"]);
        let mut hang = command(dir.path(), format, plugin, &input, &output, &[("fault", 3.0)]);
        hang.args(["--timeout", "2"]);
        let hang = run_for(hang, Duration::from_secs(30)).expect("hang returned");
        fails_with(&hang, &["timed out after 2.0 s"]);
        let nan = run(4.0, Duration::from_secs(30)).expect("nan returned");
        let fault = if format == "lv2" { "fault=4" } else { "Fault=4" };
        fails_with(&nan, &["afx test effect produced NaN", fault]);
        assert!(!output.exists(), "{format}: a failed render left its output");
    }
}

#[test]
fn a_relative_lv2_path_finds_the_plugin_instead_of_crashing_lilv() {
    // lilv alone segfaults on a relative LV2_PATH entry; afx makes it absolute first.
    let lv2 = &testfx().lv2;
    let (parent, name) = (lv2.parent().unwrap(), lv2.file_name().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_afx"))
        .current_dir(parent)
        .env("LV2_PATH", name)
        .env_remove("AFX_CONFIG")
        .args(["scan", "--format", "lv2"])
        .output()
        .unwrap();
    let out = ok(out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("urn:afx:testfx"));
}
