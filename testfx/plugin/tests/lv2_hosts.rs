//! The LV2 build of the test effect in third-party hosts: lilv's `lv2info` sees the metadata of `PARAMS`,
//! and `lv2file` renders bit-identically to the DSP core called directly. The faults crash or hang lv2file.
//!
//! Needs Debian's `lv2file` and `lilv-utils` (scripts/setup-debian.sh installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use afx_testfx::bundle;
use afx_testfx_dsp::{PARAMS, TestFx, param_index};

const RATE: u32 = 48000;

/// The cdylib cargo built for this test run: `<target>/<profile>/libafx_testfx.so`, two levels above
/// `<target>/<profile>/deps/<this test>`.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().and_then(Path::parent).unwrap().join(bundle::LIBRARY_FILE);
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// The three bundles, packaged into a fresh temporary directory, whose `lv2/` folder is the LV2_PATH for lilv,
/// and a directory for audio files.
fn packaged() -> (PathBuf, tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    bundle::package(&library(), dir.path()).unwrap();
    (dir.path().join("lv2"), dir, tempfile::tempdir().unwrap())
}

/// A real recording: the left channel of sonic-pi-samples' drum loop.
fn signal() -> Vec<f32> {
    afx_testkit::amen_mono().channel(0).to_vec()
}

fn write_wav(path: &Path, samples: &[f32]) {
    afx_testkit::write_wav(path, RATE, &[samples.to_vec()]);
}

fn read_wav(path: &Path) -> Vec<f32> {
    let (_, mut channels) = afx_testkit::read_wav(path);
    assert_eq!(channels.len(), 1, "{} is not mono", path.display());
    channels.remove(0)
}

/// The DSP core called directly, with `sets` applied to a fresh instance.
fn core(input: &[f32], sets: &[(&str, f32)]) -> Vec<f32> {
    let mut fx = TestFx::new(RATE as f32);
    for (id, v) in sets {
        fx.set_param(param_index(id).unwrap(), *v);
    }
    let mut out = vec![0.0; input.len()];
    fx.process(input, &mut out);
    out
}

fn lv2file(lv2_path: &Path, input: &Path, output: &Path, sets: &[(&str, f32)], block: usize) -> Command {
    let mut cmd = Command::new("lv2file");
    cmd.env("LV2_PATH", lv2_path).env_remove("AFX_TESTFX_FAULT");
    cmd.args(["--ignore-clipping", "-b", &block.to_string(), "-i", input.to_str().unwrap(), "-o"]);
    cmd.arg(output);
    for (id, v) in sets {
        cmd.args(["-p", &format!("{id}:{v}")]);
    }
    cmd.arg(afx_testfx::LV2_URI);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("lv2file (Debian package lv2file)")
}

#[test]
fn lv2info_reports_the_parameters_of_the_core() {
    let (lv2_path, _dir, _) = packaged();
    let out = Command::new("lv2info")
        .env("LV2_PATH", &lv2_path)
        .arg(afx_testfx::LV2_URI)
        .output()
        .expect("lv2info (Debian package lilv-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(afx_testfx::NAME), "{text}");
    for p in PARAMS {
        let port = text.split("\n\tPort ").find(|port| port.contains(&format!("Symbol:      {}\n", p.id)));
        let port = port.unwrap_or_else(|| panic!("no port {}:\n{text}", p.id));
        for (field, value) in [("Minimum", p.min), ("Maximum", p.max), ("Default", p.default)] {
            assert!(port.contains(&format!("{field}:     {value:.6}")), "{}: {field} {value}:\n{port}", p.id);
        }
    }
    // The latency is a control output after the parameters, not a parameter.
    let latency_port = afx_testfx::lv2_export::PORT_LATENCY;
    assert!(text.contains(&format!("Has latency:       yes, reported by port {latency_port}\n")), "{text}");
    assert_eq!(latency_port as usize, 2 + PARAMS.len());
}

#[test]
fn lv2file_renders_bit_identically_to_the_core() {
    let (lv2_path, _dir, wavs) = packaged();
    let input_path = wavs.path().join("in.wav");
    let input = signal();
    write_wav(&input_path, &input);
    let cases: &[&[(&str, f32)]] = &[
        &[],
        &[("drive", 12.0)],
        &[("drive", 24.0), ("tone", 800.0), ("gain", -6.0)],
        &[("drive", 0.0), ("tone", 20000.0), ("gain", 12.0)],
    ];
    for sets in cases {
        for block in [64, 512, 4096] {
            let output = wavs.path().join("out.wav");
            let out = run(lv2file(&lv2_path, &input_path, &output, sets, block));
            assert!(out.status.success(), "lv2file failed: {}", String::from_utf8_lossy(&out.stderr));
            let theirs = read_wav(&output);
            let ours = core(&input, sets);
            assert!(ours.iter().zip(&input).any(|(y, x)| y != x), "the effect did nothing");
            assert_eq!(theirs.len(), ours.len());
            let max_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let identical = ours.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits());
            eprintln!("{sets:?}, block {block}: max abs difference {max_diff:e}, bit-identical {identical}");
            assert!(identical, "{sets:?} block {block}: max abs difference {max_diff:e}");
        }
    }
}

#[test]
fn faults_crash_or_hang_the_host() {
    use std::os::unix::process::ExitStatusExt;

    let (lv2_path, _dir, wavs) = packaged();
    let input_path = wavs.path().join("in.wav");
    write_wav(&input_path, &signal());
    let output = wavs.path().join("out.wav");
    // Armed by the environment but below the drive threshold: no fault.
    let mut cmd = lv2file(&lv2_path, &input_path, &output, &[("drive", 12.0)], 512);
    let out = run({
        cmd.env("AFX_TESTFX_FAULT", "segfault");
        cmd
    });
    assert!(out.status.success(), "an armed fault fired below the drive threshold: {:?}", out.status);
    // SIGABRT = 6, SIGSEGV = 11, by parameter and by environment variable.
    for (name, value, signal) in [("abort", 1.0, 6), ("segfault", 2.0, 11)] {
        let out = run(lv2file(&lv2_path, &input_path, &output, &[("fault", value)], 512));
        assert_eq!(out.status.signal(), Some(signal), "fault {value}: {:?}", out.status);
        // An armed fault fires only at the top of the drive range.
        let mut cmd = lv2file(&lv2_path, &input_path, &output, &[("drive", 24.0)], 512);
        let out = run({
            cmd.env("AFX_TESTFX_FAULT", name);
            cmd
        });
        assert_eq!(out.status.signal(), Some(signal), "AFX_TESTFX_FAULT={name}: {:?}", out.status);
    }
    let mut hang = lv2file(&lv2_path, &input_path, &output, &[("fault", 3.0)], 512).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(hang.try_wait().unwrap().is_none(), "fault 3 (hang) returned");
    hang.kill().unwrap();
    hang.wait().unwrap();
}
