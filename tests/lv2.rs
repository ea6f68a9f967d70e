//! LV2 hosting end to end through the `afx` CLI, against lilv's own tools and lv2file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;

/// What lilv's `lv2info` says about one plugin: bundle, audio port counts, control inputs with ranges.
struct LilvPlugin {
    bundle: String,
    audio_in: usize,
    audio_out: usize,
    controls: BTreeMap<String, (Option<f32>, Option<f32>)>,
}

fn lv2info(uri: &str) -> LilvPlugin {
    let out = Command::new("lv2info").arg(uri).output().expect("lv2info (Debian package lilv-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut p = LilvPlugin { bundle: String::new(), audio_in: 0, audio_out: 0, controls: BTreeMap::new() };
    for port in text.split("\n\tPort ").skip(1) {
        let audio = port.contains("lv2core#AudioPort");
        let control = port.contains("lv2core#ControlPort");
        let input = port.contains("lv2core#InputPort");
        let field = |name: &str| port.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()));
        match (audio, control, input) {
            (true, _, true) => p.audio_in += 1,
            (true, _, false) => p.audio_out += 1,
            (_, true, true) => {
                let num = |name| field(name).and_then(|v| v.parse::<f32>().ok());
                p.controls.insert(field("Symbol:").unwrap(), (num("Minimum:"), num("Maximum:")));
            }
            _ => {}
        }
    }
    p.bundle = text.lines().find_map(|l| l.trim().strip_prefix("Bundle:").map(|b| b.trim().to_string())).unwrap();
    p
}

#[test]
fn scan_json_lists_every_plugin_lilv_reports_with_parameters_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(afx(dir.path(), &["scan", "--format", "lv2", "--json"]));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("scan --json is one JSON object");
    let plugins = scan["plugins"].as_array().expect("a list of plugins");
    let by_id: BTreeMap<&str, &serde_json::Value> = plugins.iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    // A plugin whose library the dynamic loader refuses is a failed file naming it, not a plugin: no host can
    // load it (Debian 12's swh mbeq and pitch_scale lack an fftw symbol). Nothing else may fail.
    let mut refused = BTreeSet::new();
    for failure in scan["failed"].as_array().unwrap() {
        let reason = failure["reason"].as_str().unwrap();
        assert!(reason.contains("cannot load") && reason.contains("undefined symbol"), "{failure}");
        refused.insert(reason.split(": ").next().unwrap().to_string());
    }

    let lv2ls = Command::new("lv2ls").output().expect("lv2ls (Debian package lilv-utils)");
    let uris: BTreeSet<String> = String::from_utf8_lossy(&lv2ls.stdout)
        .lines()
        .map(str::to_string)
        .filter(|uri| !refused.contains(uri))
        .collect();
    assert_eq!(plugins.len(), uris.len(), "afx and lilv count different plugins");
    assert_eq!(by_id.keys().map(|k| k.to_string()).collect::<BTreeSet<_>>(), uris);

    // Every effect of these packages, with each control input and its range as lilv reports them.
    let packages = ["zam-plugins", "x42-plugins", "swh-lv2", "mda-lv2"];
    let mut bundles_of = BTreeMap::new();
    for package in packages {
        let files = Command::new("dpkg").args(["-L", package]).output().unwrap();
        let bundles: BTreeSet<String> = String::from_utf8_lossy(&files.stdout)
            .lines()
            .filter(|l| l.ends_with(".lv2") && l.starts_with("/usr/lib/lv2/"))
            .map(|l| format!("file://{l}/"))
            .collect();
        assert!(!bundles.is_empty(), "package {package} is not installed");
        bundles_of.insert(package, bundles);
    }
    let mut effects = BTreeMap::<&str, usize>::new();
    for uri in &uris {
        let lilv = lv2info(uri);
        let Some(package) = packages.iter().find(|p| bundles_of[*p].contains(&lilv.bundle)) else { continue };
        if lilv.audio_in == 0 || lilv.audio_out == 0 {
            continue;
        }
        *effects.entry(package).or_default() += 1;
        let p = by_id[uri.as_str()];
        for key in ["format", "id", "name", "path", "params"] {
            assert!(!p[key].is_null(), "{uri}: no {key}");
        }
        assert_eq!(p["format"], "lv2");
        let n_in = p["audio_inputs"].as_array().unwrap().len();
        let n_out = p["audio_outputs"].as_array().unwrap().len();
        assert_eq!((n_in, n_out), (lilv.audio_in, lilv.audio_out), "{uri}: audio ports");
        let params: BTreeMap<&str, &serde_json::Value> =
            p["params"].as_array().unwrap().iter().map(|q| (q["id"].as_str().unwrap(), q)).collect();
        assert_eq!(
            params.keys().map(|k| k.to_string()).collect::<BTreeSet<_>>(),
            lilv.controls.keys().cloned().collect(),
            "{uri}"
        );
        for (symbol, (min, max)) in &lilv.controls {
            let q = params[symbol.as_str()];
            for key in ["id", "name", "min", "max", "default"] {
                assert!(!q[key].is_null(), "{uri} {symbol}: no {key}");
            }
            // lv2info prints 6 decimals.
            let close = |a: f64, b: f32| (a - f64::from(b)).abs() <= 1e-5 * (1.0 + f64::from(b.abs()));
            if let (Some(min), Some(max)) = (min, max) {
                assert!(close(q["min"].as_f64().unwrap(), *min), "{uri} {symbol}: min {} vs lilv {min}", q["min"]);
                assert!(close(q["max"].as_f64().unwrap(), *max), "{uri} {symbol}: max {} vs lilv {max}", q["max"]);
            }
        }
    }
    for package in packages {
        assert!(effects.get(package).copied().unwrap_or(0) > 0, "no effects found from {package}");
    }
    eprintln!("effects checked per package: {effects:?}");
}

/// Renders `uri` with `sets` through afx and lv2file, same file and values, and returns the max abs difference.
fn afx_vs_lv2file(dir: &Path, input: &Path, uri: &str, sets: &[(&str, f32)], connect: &[&str]) -> f32 {
    let ours = dir.join("afx.wav");
    let theirs = dir.join("lv2file.wav");
    let mut args = vec!["render".to_string(), "--plugin".into(), uri.into(), "-i".into(), input.display().to_string()];
    args.extend(["-o".into(), ours.display().to_string()]);
    for (k, v) in sets {
        args.extend(["--set".into(), format!("{k}={v}")]);
    }
    ok(afx(dir, &args.iter().map(String::as_str).collect::<Vec<_>>()));
    let mut cmd = Command::new("lv2file");
    cmd.args(["-i", input.to_str().unwrap(), "-o", theirs.to_str().unwrap(), "-b", "512"]);
    for (k, v) in sets {
        cmd.args(["-p", &format!("{k}:{v}")]);
    }
    for c in connect {
        cmd.args(["-c", c]);
    }
    let status = cmd.arg(uri).output().expect("lv2file (Debian package lv2file)");
    assert!(status.status.success(), "lv2file failed: {}", String::from_utf8_lossy(&status.stderr));
    let (_, a) = read_wav(&ours);
    let (_, b) = read_wav(&theirs);
    assert_eq!(a.len(), 1);
    assert!(rms(&a[0]) > 1e-3, "{uri} rendered silence");
    max_abs_diff(&a[0], &b[0])
}

/// A plugin, the values to set, and lv2file's `-c` connections.
type Reference = (&'static str, &'static [(&'static str, f32)], &'static [&'static str]);

#[test]
fn renders_match_lv2file_sample_for_sample_on_a_real_recording() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let cases: [Reference; 3] = [
        (
            ZAM_COMP,
            &[("thr", -30.0), ("rat", 6.0), ("att", 5.0), ("rel", 120.0)],
            &["1:lv2_audio_in_1", "1:lv2_sidechain_in"],
        ),
        (ZAM_EQ2, &[("boost1", 9.0), ("f1", 800.0), ("bw1", 2.0), ("boosth", -6.0)], &[]),
        (FIL4_MONO, &[("gain", -6.0), ("sec1", 1.0), ("freq1", 1000.0), ("gain1", 6.0)], &[]),
    ];
    for (uri, sets, connect) in cases {
        // lv2file feeds the file to the sidechain too where we ask it to; ZamComp's sidechain toggle is off,
        // so the key input is ignored by the DSP either way.
        let diff = afx_vs_lv2file(dir.path(), &input, uri, sets, connect);
        eprintln!("{uri}: max |afx - lv2file| = {diff:e}");
        assert!(diff <= 1e-6, "{uri}: afx and lv2file differ by {diff}");
    }
}

#[test]
fn an_impulse_comes_out_at_its_input_index_through_a_plugin_with_latency() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 48_000;
    let (n, at) = (4800, 1000);
    let input = impulse_wav(dir.path(), rate, 1, n, (at, 0.5));
    let output = dir.path().join("out.wav");
    ok(afx(
        dir.path(),
        &["render", "--plugin", DPL_MONO, "-i", arg(&input), "-o", arg(&output), "--set", "threshold=0"],
    ));
    let (_, y) = read_wav(&output);
    assert_eq!(y[0].len(), n, "output length must equal input length");
    let peak = peak_index(&y[0]);
    assert_eq!(peak, at, "impulse moved from {at} to {peak}");
    assert!(y[0][at].abs() > 0.25, "impulse lost: {}", y[0][at]);
}

#[test]
fn rendering_a_then_b_then_a_gives_a_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let render = |sets: &[&str], out: &str| {
        let out = dir.path().join(out);
        let mut args = vec!["render", "--plugin", ZAM_COMP, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        ok(afx(dir.path(), &args));
        read_wav(&out).1
    };
    let a1 = render(&["thr=-35", "rat=8", "rel=300"], "a1.wav");
    let b = render(&["thr=-10", "rat=2", "att=50"], "b.wav");
    let a2 = render(&["thr=-35", "rat=8", "rel=300"], "a2.wav");
    assert_ne!(a1, b, "different parameters must change the output");
    assert!(a1[0].iter().zip(&a2[0]).all(|(x, y)| x.to_bits() == y.to_bits()), "A then B then A differ");
}
