//! One plugin, three formats: Debian's zam-plugins ship the same DSP as LV2, CLAP and VST3, so afx must list
//! the same parameters and render the same audio through all three.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

const FORMATS: [&str; 3] = ["lv2", "clap", "vst3"];

fn scan(dir: &Path, format: &str) -> Vec<serde_json::Value> {
    let out = ok(afx(dir, &["scan", "--format", format, "--json"]));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    scan["plugins"].as_array().expect("a list of plugins").clone()
}

fn zam(plugins: &[serde_json::Value]) -> BTreeMap<String, &serde_json::Value> {
    plugins
        .iter()
        .filter(|p| p["path"].as_str().unwrap().contains("/Zam") || p["name"].as_str().unwrap().starts_with("Za"))
        .map(|p| (p["name"].as_str().unwrap().to_string(), p))
        .collect()
}

/// name -> (min, max) of every parameter.
fn ranges(plugin: &serde_json::Value) -> BTreeMap<String, (f64, f64)> {
    plugin["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["name"].as_str().unwrap().to_string(), (q["min"].as_f64().unwrap(), q["max"].as_f64().unwrap())))
        .collect()
}

#[test]
fn clap_and_vst3_scans_list_all_17_zam_plugins_with_the_lv2_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let lv2 = scan(dir.path(), "lv2");
    let lv2 = zam(&lv2);
    assert_eq!(lv2.len(), 17, "LV2 zam plugins: {:?}", lv2.keys());
    for format in ["clap", "vst3"] {
        let plugins = scan(dir.path(), format);
        let other = zam(&plugins);
        assert_eq!(other.keys().collect::<Vec<_>>(), lv2.keys().collect::<Vec<_>>(), "{format}");
        for (name, p) in &other {
            assert_eq!(p["format"], format);
            let (theirs, ours) = (ranges(p), ranges(lv2[name]));
            assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>(), "{format} {name}");
            for (param, (min, max)) in &theirs {
                let (lmin, lmax) = ours[param];
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
                assert!(
                    close(*min, lmin) && close(*max, lmax),
                    "{format} {name} {param}: [{min}, {max}] vs [{lmin}, {lmax}]"
                );
            }
        }
    }
}

/// Renders `plugin` (by name) in `format` with `sets` (by parameter name) and returns the output.
fn render(dir: &Path, input: &Path, plugin: &str, format: &str, sets: &[(&str, f32)]) -> Vec<Vec<f32>> {
    let output = dir.join(format!("{plugin}-{format}.wav"));
    let mut args = vec!["render".to_string(), "--plugin".into(), plugin.into(), "--format".into(), format.into()];
    args.extend(["-i".into(), input.display().to_string(), "-o".into(), output.display().to_string()]);
    for (k, v) in sets {
        args.extend(["--set".into(), format!("{k}={v}")]);
    }
    ok(afx(dir, &args.iter().map(String::as_str).collect::<Vec<_>>()));
    read_wav(&output).1
}

/// A plugin name, the file it renders, and parameter values by name.
type Case<'a> = (&'a str, &'a Path, &'a [(&'a str, f32)]);

#[test]
fn four_zam_effects_render_the_same_recording_alike_in_lv2_clap_and_vst3() {
    let dir = tempfile::tempdir().unwrap();
    let amen = recording("loop_amen.flac");
    let stereo = dir.path().join("amen.wav");
    write_wav(&stereo, amen.sample_rate(), amen.channels());
    let mono = amen_mono_wav(dir.path());
    let cases: [Case; 4] = [
        ("ZamComp", &mono, &[("Threshold", -30.0), ("Ratio", 6.0), ("Attack", 5.0), ("Release", 120.0)]),
        ("ZamEQ2", &mono, &[("Boost/Cut 1", 9.0), ("Frequency 1", 800.0), ("Bandwidth 1", 2.0), ("Boost/Cut H", -6.0)]),
        // Reports 480 frames of latency at 44.1 kHz in every format.
        ("ZaMaximX2", &stereo, &[("Threshold", -12.0), ("Release", 40.0)]),
        ("ZamTube", &mono, &[("Tube Drive", 6.5), ("Bass", 7.0), ("Tone Stack Model", 3.0)]),
    ];
    for (plugin, input, sets) in cases {
        let outputs: Vec<Vec<Vec<f32>>> = FORMATS.iter().map(|f| render(dir.path(), input, plugin, f, sets)).collect();
        assert!(rms(&outputs[0][0]) > 1e-3, "{plugin} rendered silence");
        for (format, output) in FORMATS.iter().zip(&outputs).skip(1) {
            assert_eq!(output.len(), outputs[0].len());
            let diff = output.iter().zip(&outputs[0]).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);
            eprintln!("{plugin}: max |{format} - lv2| = {diff:e}");
            assert!(diff <= 1e-5, "{plugin}: {format} differs from lv2 by {diff}");
        }
    }
}

#[test]
fn an_impulse_comes_out_at_its_input_index_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 44_100;
    let (n, at) = (8_000, 3_000);
    let input = impulse_wav(dir.path(), rate, 2, n, (at, 0.25));
    for format in FORMATS {
        let y = render(dir.path(), &input, "ZaMaximX2", format, &[]);
        for channel in &y {
            assert_eq!(channel.len(), n);
            let peak = peak_index(channel);
            assert_eq!(peak, at, "{format}: impulse moved to {peak}");
        }
    }
}
