//! `afx render --automation`: curves files replayed through a worker process, bit for bit, and bad curves
//! refused with an error that names the file, the curve and the value, before anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use afx_testfx_dsp::{TestFx, param_index};
use common::*;

/// `afx render` of the test effect (LV2) with `extra` arguments, the test effect's bundles on the plugin paths.
fn render_testfx(dir: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env_remove("AFX_TESTFX_FAULT");
    for (k, v) in testfx().env() {
        cmd.env(k, v);
    }
    cmd.args(["render", "--plugin", "urn:afx:testfx", "--format", "lv2", "-i", arg(input), "-o", arg(output)]);
    cmd.args(extra).output().unwrap()
}

fn write_curves(dir: &Path, name: &str, json: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
    path
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
    let input = amen_mono_wav(dir.path());
    let (rate, x) = read_wav(&input);
    let hop = 3000;
    let frames = x[0].len().div_ceil(hop);
    let json = curves(rate, hop, frames);
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
    let input = amen_mono_wav(dir.path());
    let (rate, x) = read_wav(&input);
    let hop = 4096;
    let frames = x[0].len().div_ceil(hop);
    let good = curves(rate, hop, frames);
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
