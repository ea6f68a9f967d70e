//! `afx render --automation`: curves files replayed through a worker process, bit for bit, and bad curves
//! refused with an error that names the file, the curve and the value, before anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use afx_testfx_dsp::{TestFx, param_index};
use common::*;

/// `afx ARGS` in `dir`, the test effect's bundles on the plugin paths.
fn afx_testfx(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env_remove("AFX_TESTFX_FAULT");
    for (k, v) in testfx().env() {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

/// `afx --config DIR/plugins.toml ARGS` in `dir`, that plugins.toml naming the test effect `fx` (and `fx_nan`).
fn afx_with_testfx_config(dir: &Path) -> impl Fn(&[&str]) -> Output + '_ {
    let config = dir.join("plugins.toml");
    std::fs::write(&config, TESTFX_PLUGINS_TOML).unwrap();
    move |args| afx_testfx(dir, &[&["--config", arg(&config)][..], args].concat())
}

/// `afx render` of the test effect (LV2) with `extra` arguments.
fn render_testfx(dir: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let render = ["render", "--plugin", "urn:afx:testfx", "--format", "lv2", "-i", arg(input), "-o", arg(output)];
    afx_testfx(dir, &[&render[..], extra].concat())
}

fn write_curves(dir: &Path, name: &str, json: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
    path
}

/// The amen loop (mono) written into a test's folder, its samples, and [`curves`] over it at a hop.
struct Clip {
    input: PathBuf,
    rate: u32,
    x: Vec<Vec<f32>>,
    frames: usize,
    curves: serde_json::Value,
}

fn clip(dir: &Path, hop: usize) -> Clip {
    let input = amen_mono_wav(dir);
    let (rate, x) = read_wav(&input);
    let frames = x[0].len().div_ceil(hop);
    Clip { input, rate, x, frames, curves: curves(rate, hop, frames) }
}

/// Steps for the test effect: `drive` and `gain` move, one value per hop.
fn curves(rate: u32, hop: usize, frames: usize) -> serde_json::Value {
    let drive: Vec<f32> = (0..frames).map(|f| [3.0, 18.0, 9.0][f % 3]).collect();
    let gain: Vec<f32> = (0..frames).map(|f| -(f as f32 % 5.0) * 2.0).collect();
    serde_json::json!({
        "version": 1,
        "sample_rate": rate,
        "hop": hop,
        "curves": [
            { "param": "drive", "unit": "dB", "values": drive },
            { "param": "gain", "unit": "dB", "values": gain },
        ]
    })
}

#[test]
fn render_replays_a_curves_file_bit_for_bit_against_the_effects_core() {
    let dir = tempfile::tempdir().unwrap();
    let hop = 3000;
    let Clip { input, rate, x, frames, curves: json } = clip(dir.path(), hop);
    let file = write_curves(dir.path(), "curves.json", &json);
    let output = dir.path().join("out.wav");
    let out = ok(render_testfx(dir.path(), &input, &output, &["--automation", arg(&file), "--set", "tone=900"]));
    assert!(stdout(&out).contains("drive = 3"), "{}", stdout(&out));

    let mut fx = TestFx::new(rate as f32);
    fx.set_param(param_index("tone").unwrap(), 900.0);
    let mut expected = vec![0.0; x[0].len()];
    for f in 0..frames {
        for name in ["drive", "gain"] {
            let values = json["curves"].as_array().unwrap().iter().find(|c| c["param"] == name).unwrap();
            fx.set_param(param_index(name).unwrap(), values["values"][f].as_f64().unwrap() as f32);
        }
        let range = f * hop..((f + 1) * hop).min(x[0].len());
        fx.process(&x[0][range.clone()], &mut expected[range]);
    }
    let (_, y) = read_wav(&output);
    let first = y[0].iter().zip(&expected).position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first, None, "afx render --automation and the core differ first at frame {first:?}");
}

#[test]
fn bad_curves_are_refused_naming_the_curve_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let hop = 4096;
    let Clip { input, rate, frames, curves: good, .. } = clip(dir.path(), hop);
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        ("unknown", Box::new(|j| j["curves"][0]["param"] = "driv".into()), vec!["no parameter \"driv\"".into()]),
        (
            "range",
            Box::new(|j| j["curves"][1]["values"][4] = 40.0.into()),
            vec!["curve \"gain\", value 4".into(), "40 is outside the range".into()],
        ),
        ("nan", Box::new(|j| j["curves"][0]["values"][2] = serde_json::Value::Null), vec!["\"drive\": value 2".into()]),
        (
            "short",
            Box::new(|j| {
                for c in j["curves"].as_array_mut().unwrap() {
                    c["values"].as_array_mut().unwrap().pop();
                }
            }),
            vec![format!("needs {frames}")],
        ),
        ("rate", Box::new(|j| j["sample_rate"] = 48_000.into()), vec!["48000 Hz".into(), format!("{rate} Hz")]),
        ("hop", Box::new(|j| j["hop"] = 0.into()), vec!["hop 0".into()]),
    ];
    for (name, edit, needles) in cases {
        let mut json = good.clone();
        edit(&mut json);
        let file = write_curves(dir.path(), &format!("{name}.json"), &json);
        let output = dir.path().join(format!("{name}.wav"));
        let out = render_testfx(dir.path(), &input, &output, &["--automation", arg(&file)]);
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let file_name = file.display().to_string();
        needles.push(&file_name);
        fails_with(&out, &needles);
        assert!(!output.exists(), "{name}: {} was written", output.display());
    }
}

/// `afx train --automation-hop` on the test effect with its exact gradient, `afx infer` writing the predicted
/// curves (JSON and PNG) beside the audio, and `afx render --automation` replaying them bit for bit.
#[test]
fn a_run_trained_with_automation_writes_curves_that_render_replays_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let afx_in = afx_with_testfx_config(dir.path());
    let (data, run) = (demo_corpus(), dir.path().join("run"));
    let train = ["train", "--chain", "fx", "--data", arg(data), "--out", arg(&run), "--automation-hop", "1024"];
    let out =
        ok(afx_in(&[&train[..], &["--grad", "exact", "--steps", "6", "--batch", "2", "--val-every", "3"]].concat()));
    assert!(stdout(&out).contains("6 steps"), "{}", stdout(&out));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["config"]["automation_hop"], 1024);
    assert_eq!(saved["config"]["spsa"]["scoring"], serde_json::json!({ "window": 1 }));

    // The reference of a run with automation is the processed version of the input itself.
    let input = amen_mono_wav(dir.path());
    let processed = dir.path().join("processed.wav");
    ok(afx_in(&["render", "--plugin", "fx", "-i", arg(&input), "-o", arg(&processed), "--set", "drive=15"]));
    let output = dir.path().join("out.wav");
    let out = ok(afx_in(&[
        "infer",
        "--run",
        arg(&run),
        "-i",
        arg(&input),
        "--reference",
        arg(&processed),
        "-o",
        arg(&output),
    ]));
    assert!(
        stdout(&out).contains("drive = ") && stdout(&out).contains("values (one per 2048 frames)"),
        "{}",
        stdout(&out)
    );
    let (curves_json, curves_png) = (dir.path().join("out.curves.json"), dir.path().join("out.curves.png"));
    let curves: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&curves_json).unwrap()).unwrap();
    let (rate, x) = read_wav(&input);
    assert_eq!((curves["sample_rate"].as_u64(), curves["hop"].as_u64()), (Some(u64::from(rate)), Some(2048)));
    for c in curves["curves"].as_array().unwrap() {
        assert_eq!(c["values"].as_array().unwrap().len(), x[0].len().div_ceil(2048), "{}", c["param"]);
    }
    let png = std::fs::read(&curves_png).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "no chart in {}", curves_png.display());
    let replay = dir.path().join("replay.wav");
    ok(afx_in(&["render", "--plugin", "fx", "-i", arg(&input), "-o", arg(&replay), "--automation", arg(&curves_json)]));
    assert_eq!(std::fs::read(&replay).unwrap(), std::fs::read(&output).unwrap(), "the replay differs");

    // Smoothed curves (DeepAFx's low-pass) replay as well; a cutoff above the curves' Nyquist is refused.
    let smoothed = dir.path().join("smooth.wav");
    let infer = ["infer", "--run", arg(&run), "-i", arg(&input), "--reference", arg(&processed)];
    ok(afx_in(&[&infer[..], &["-o", arg(&smoothed), "--smooth", "2"]].concat()));
    let smooth_json = dir.path().join("smooth.curves.json");
    let smoothed_curves: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&smooth_json).unwrap()).unwrap();
    assert_ne!(smoothed_curves["curves"], curves["curves"], "--smooth changed nothing");
    ok(afx_in(&["render", "--plugin", "fx", "-i", arg(&input), "-o", arg(&replay), "--automation", arg(&smooth_json)]));
    assert_eq!(std::fs::read(&replay).unwrap(), std::fs::read(&smoothed).unwrap(), "the smoothed replay differs");
    let too_high = afx_in(&[&infer[..], &["-o", arg(&smoothed), "--smooth", "20"]].concat());
    fails_with(&too_high, &["--smooth 20 Hz", "rows a second"]);

    // Automation trains on pairs afx renders: no proxy method, no --pairs.
    let bad = afx_in(&[&train[..], &["--grad", "np-hh", "--proxy", arg(dir.path())]].concat());
    fails_with(&bad, &["--automation-hop", "spsa, fd or exact"]);
}

/// `afx train --pairs DIR --automation-hop`: a user's folder of recordings processed with moving settings (here
/// the test effect along curves files), the trajectory extended over each crop's pre-roll.
#[test]
fn a_pair_folder_processed_with_moving_settings_trains_a_controller_with_automation() {
    let dir = tempfile::tempdir().unwrap();
    let afx_in = afx_with_testfx_config(dir.path());
    let pairs = dir.path().join("pairs");
    std::fs::create_dir_all(pairs.join("raw")).unwrap();
    std::fs::create_dir_all(pairs.join("processed")).unwrap();
    for (k, name) in ["loop_amen", "loop_breakbeat", "loop_electric", "guit_e_slide"].iter().enumerate() {
        let audio = recording(&format!("{name}.flac"));
        let raw = pairs.join("raw").join(format!("{name}.wav"));
        write_wav(&raw, audio.sample_rate(), audio.channels());
        let hop = 4410;
        let frames = audio.frames().div_ceil(hop);
        let mut json = curves(audio.sample_rate(), hop, frames);
        json["curves"][0]["values"] = (0..frames).map(|f| [2.0, 20.0, 10.0][(f + k) % 3]).collect();
        let file = write_curves(dir.path(), &format!("{name}.json"), &json);
        let processed = pairs.join("processed").join(format!("{name}.wav"));
        ok(afx_in(&["render", "--plugin", "fx", "-i", arg(&raw), "-o", arg(&processed), "--automation", arg(&file)]));
    }
    let run = dir.path().join("run");
    let train = ["train", "--chain", "fx", "--pairs", arg(&pairs), "--out", arg(&run), "--automation-hop", "1024"];
    let extra = ["--grad", "exact", "--steps", "4", "--batch", "2", "--val-every", "2", "--val-pairs", "1"];
    let out = ok(afx_in(&[&train[..], &extra[..]].concat()));
    assert!(stdout(&out).contains("4 steps"), "{}", stdout(&out));
    let validations: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "validation")
        .collect();
    assert!(!validations.is_empty());
    for v in &validations {
        assert!(v["mrstft"]["trained"].as_f64().unwrap().is_finite() && v["failed"] == 0, "{v}");
    }
}
