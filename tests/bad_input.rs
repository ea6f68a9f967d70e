//! Every kind of bad input gets a clear error naming what is wrong and what would be valid, a non-zero exit,
//! and no output file.

mod common;

use std::path::PathBuf;

use common::*;

struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let input = amen_mono_wav(dir.path());
        let output = dir.path().join("out.wav");
        Case { dir, input, output }
    }

    fn render(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["render", "-i", self.input.to_str().unwrap(), "-o", self.output.to_str().unwrap()];
        args.extend(extra);
        afx(self.dir.path(), &args)
    }

    /// A WAV file `name` in the case's folder.
    fn wav(&self, name: &str, rate: u32, channels: &[Vec<f32>]) -> PathBuf {
        let path = self.path(name);
        write_wav(&path, rate, channels);
        path
    }

    /// `afx render --plugin PLUGIN` of another input file than the case's.
    fn render_file(&self, plugin: &str, input: &std::path::Path) -> std::process::Output {
        afx(self.dir.path(), &["render", "--plugin", plugin, "-i", arg(input), "-o", arg(&self.output)])
    }

    /// The run failed with every needle in its message and left nothing behind in the folder.
    fn assert_failed(&self, out: &std::process::Output, needles: &[&str]) {
        fails_with(out, needles);
        assert!(!self.output.exists(), "a failed render left {}", self.output.display());
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp") || n.starts_with(".afx"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn an_unknown_plugin_is_refused_with_the_nearest_names() {
    let c = Case::new();
    let out = c.render(&["--plugin", "urn:zamaudio:ZamCmop"]);
    c.assert_failed(&out, &["urn:zamaudio:ZamCmop", "did you mean", "urn:zamaudio:ZamComp"]);
    let out = c.render(&["--plugin", "ZamCop"]);
    c.assert_failed(&out, &["ZamCop", "ZamComp"]);
}

#[test]
fn a_time_limit_that_is_not_a_positive_number_is_refused_before_anything_is_scanned() {
    let c = Case::new();
    for bad in ["0", "-3"] {
        let out = c.render(&["--plugin", "urn:zamaudio:ZamComp", &format!("--timeout={bad}")]);
        c.assert_failed(&out, &[&format!("--timeout {bad}"), "positive number of seconds"]);
    }
    // Nothing was scanned with it (a zero limit would have cached every plugin file as timed out).
    let out = ok(c.render(&["--plugin", "urn:zamaudio:ZamComp"]));
    assert!(out.status.success());
}

#[test]
fn a_bad_sandbox_switch_or_memory_cap_is_refused_naming_what_is_valid() {
    let c = Case::new();
    let out = c.render(&["--plugin", ZAM_COMP, "--sandbox", "maybe"]);
    c.assert_failed(&out, &["--sandbox", "maybe", "on", "off"]);
    for (bad, needle) in [("1M", "at least 64M"), ("lots", "not a size"), ("2X", "suffix must be K, M, G or T")] {
        let out = c.render(&["--plugin", ZAM_COMP, "--worker-memory", bad]);
        c.assert_failed(&out, &["--worker-memory", bad, needle]);
    }
}

#[test]
fn a_plugin_that_is_not_an_effect_is_refused() {
    let c = Case::new();
    // mda EPiano is an instrument: no audio input.
    let out = c.render(&["--plugin", "http://drobilla.net/plugins/mda/EPiano"]);
    c.assert_failed(&out, &["is not an effect", "0 main audio inputs"]);
}

#[test]
fn an_unknown_parameter_is_refused_with_the_nearest_ids() {
    let c = Case::new();
    let out = c.render(&["--plugin", ZAM_COMP, "--set", "thresh=-20"]);
    c.assert_failed(&out, &["no parameter \"thresh\"", "did you mean", "thr"]);
}

#[test]
fn a_value_outside_the_range_is_refused_never_clamped() {
    let c = Case::new();
    let out = c.render(&["--plugin", ZAM_COMP, "--set", "thr=12"]);
    c.assert_failed(&out, &["thr", "12 is outside the range [-80, 0]"]);
    let out = c.render(&["--plugin", ZAM_COMP, "--normalized", "--set", "thr=1.5"]);
    c.assert_failed(&out, &["thr", "outside [0, 1]"]);
    let out = c.render(&["--plugin", ZAM_COMP, "--set", "thr=loud"]);
    c.assert_failed(&out, &["\"loud\" is not a number"]);
    let out = c.render(&["--plugin", ZAM_COMP, "--set", "sidech=0.5"]);
    c.assert_failed(&out, &["sidech", "not a toggle value"]);
}

#[test]
fn unreadable_non_wav_and_empty_inputs_are_refused() {
    let c = Case::new();
    let missing = c.path("missing.wav");
    let out = c.render_file(ZAM_COMP, &missing);
    c.assert_failed(&out, &["missing.wav", "cannot open"]);

    let text = c.path("notes.wav");
    std::fs::write(&text, "this is not audio").unwrap();
    let out = c.render_file(ZAM_COMP, &text);
    c.assert_failed(&out, &["notes.wav", "is not a readable WAV file"]);

    let empty = c.wav("empty.wav", 44_100, &[vec![]]);
    let out = c.render_file(ZAM_COMP, &empty);
    c.assert_failed(&out, &["empty.wav", "holds no audio"]);

    let nan = c.wav("nan.wav", 44_100, &[vec![0.1, f32::NAN, 0.2]]);
    let out = c.render_file(ZAM_COMP, &nan);
    c.assert_failed(&out, &["nan.wav", "NaN", "frame 1"]);
}

#[test]
fn a_channel_layout_the_plugin_cannot_take_is_refused() {
    let c = Case::new();
    let amen = recording("loop_amen.flac");
    let (rate, x) = (amen.sample_rate(), amen.channels().to_vec());
    let three = c.wav("three.wav", rate, &[x[0].clone(), x[1].clone(), x[0].clone()]);
    let out = c.render_file("urn:zamaudio:ZaMaximX2", &three);
    c.assert_failed(&out, &["ZaMaximX2", "3-channel", "2 main inputs"]);
}

#[test]
fn nan_from_a_plugin_is_an_error_naming_the_plugin_and_the_parameters() {
    // x42 fil4's filters blow up at a 1 Hz sample rate: a real plugin producing NaN.
    let c = Case::new();
    let x = recording("loop_amen.flac").channels().to_vec();
    let odd = c.wav("one-hertz.wav", 1, &[x[0][..4000].to_vec()]);
    let out = c.render_file(FIL4_MONO, &odd);
    c.assert_failed(&out, &["x42-eq - Parametric Equalizer Mono produced NaN", "freq1=160", "gain1=0"]);
}

#[test]
fn a_malformed_plugins_toml_is_refused_with_file_line_and_expectation() {
    let c = Case::new();
    let config = c.path("plugins.toml");
    std::fs::write(
        &config,
        "[plugins.comp]\nformat = \"lv2\"\nid = \"urn:zamaudio:ZamComp\"\nparams.thr = { train = yes }\n",
    )
    .unwrap();
    let out = c.render(&["--config", arg(&config), "--plugin", "comp"]);
    c.assert_failed(&out, &["plugins.toml", "line 4"]);

    std::fs::write(&config, "[plugins.comp]\nformat = \"lv4\"\nid = \"urn:zamaudio:ZamComp\"\n").unwrap();
    let out = c.render(&["--config", arg(&config), "--plugin", "comp"]);
    c.assert_failed(&out, &["plugins.toml", "line 2", "lv2"]);

    std::fs::write(
        &config,
        "[plugins.comp]\nformat = \"lv2\"\nid = \"urn:zamaudio:ZamComp\"\nparams.thres = { train = true }\n",
    )
    .unwrap();
    let out = c.render(&["--config", arg(&config), "--plugin", "comp"]);
    c.assert_failed(&out, &["plugins.toml", "plugins.comp.params.thres", "did you mean thr"]);

    std::fs::write(&config, "[plugins.comp]\nformat = \"lv2\"\nid = \"urn:zamaudio:ZamComp\"\nparams.thr = { train = true, min = -100.0 }\n").unwrap();
    let out = c.render(&["--config", arg(&config), "--plugin", "comp"]);
    c.assert_failed(&out, &["plugins.comp.params.thr", "-100 is outside the range [-80, 0]"]);

    let missing = c.path("nowhere.toml");
    let out = c.render(&["--config", arg(&missing), "--plugin", "comp"]);
    c.assert_failed(&out, &["nowhere.toml"]);
}

#[test]
fn an_unknown_chain_name_lists_the_configured_names() {
    let c = Case::new();
    let out = c.render(&["--config", arg(&repo_config()), "--plugin", "eq_cmop"]);
    c.assert_failed(&out, &["eq_cmop", "did you mean", "eq_comp"]);
}

#[test]
fn an_output_folder_that_does_not_exist_is_an_error() {
    let c = Case::new();
    let out = afx(
        c.dir.path(),
        &["render", "--plugin", ZAM_COMP, "-i", arg(&c.input), "-o", arg(&c.path("no/such/dir/out.wav"))],
    );
    fails_with(&out, &["no/such/dir"]);
}

#[test]
fn a_failed_render_keeps_an_existing_output_file_intact() {
    let c = Case::new();
    std::fs::write(&c.output, b"precious").unwrap();
    let out = c.render(&["--plugin", ZAM_COMP, "--set", "thr=5"]);
    fails_with(&out, &["thr"]);
    assert_eq!(std::fs::read(&c.output).unwrap(), b"precious");
}

#[test]
fn every_command_has_help_and_a_bad_flag_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["scan", "--help"],
        &["render", "--help"],
        &["bench", "--help"],
        &["bench", "render", "--help"],
    ] {
        let out = ok(afx(dir.path(), args));
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
    fails_with(&afx(dir.path(), &["scan", "--format", "ladspa"]), &["ladspa", "lv2, clap, vst3"]);
    fails_with(&afx(dir.path(), &["render", "--plugin", ZAM_COMP]), &["--input"]);
}
