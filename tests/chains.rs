//! plugins.toml chains, channel mapping and the render benchmark, through the CLI.

mod common;

use std::path::Path;

use common::*;

fn render(dir: &Path, plugin: &str, input: &Path, out: &str, sets: &[&str]) -> Vec<Vec<f32>> {
    let output = dir.join(out);
    let config = repo_config();
    let mut args =
        vec!["--config", config.to_str().unwrap(), "render", "--plugin", plugin, "-i", input.to_str().unwrap()];
    args.extend(["-o", output.to_str().unwrap()]);
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(afx(dir, &args));
    read_wav(&output).1
}

fn bits(x: &[Vec<f32>]) -> Vec<Vec<u32>> {
    x.iter().map(|c| c.iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn a_chain_renders_as_its_plugins_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let chained = render(dir.path(), "eq_comp", &input, "chain.wav", &["boost1=6", "f1=200", "thr=-30", "rat=6"]);
    let eq = render(dir.path(), "zam_eq", &input, "eq.wav", &["boost1=6", "f1=200"]);
    let eq_path = dir.path().join("eq.wav");
    let both = render(dir.path(), "zam_comp", &eq_path, "both.wav", &["thr=-30", "rat=6"]);
    assert_eq!(bits(&chained), bits(&both));
    assert_ne!(bits(&eq), bits(&both), "the compressor did nothing");
}

#[test]
fn fixed_values_from_plugins_toml_are_applied_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let output = dir.path().join("lim.wav");
    let config = repo_config();
    let args = ["--config", arg(&config), "render", "--plugin", "zam_limiter", "-i", arg(&input), "-o", arg(&output)];
    let out = ok(afx(dir.path(), &args));
    // plugins.toml fixes the ceiling at -0.5 dB; the default is 0.
    assert!(stdout(&out).contains("ceil = -0.5 dB"), "{}", stdout(&out));
}

#[test]
fn normalized_values_map_through_the_trained_range_and_scale() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let config = repo_config();
    let run = |sets: &[&str]| {
        let output = dir.path().join("n.wav");
        let mut args = vec!["--config", config.to_str().unwrap(), "render", "--plugin", "zam_comp"];
        args.extend(["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
        args.extend(sets);
        stdout(&ok(afx(dir.path(), &args)))
    };
    // thr is trained over [-60, 0] in plugins.toml: 0.5 -> -30 dB. att is log over [0.1, 100]: 0.5 -> 3.1623 ms.
    let printed = run(&["--normalized", "--set", "thr=0.5", "--set", "att=0.5"]);
    assert!(printed.contains("thr = -30 dB"), "{printed}");
    assert!(printed.contains("att = 3.1622"), "{printed}");
}

#[test]
fn a_stereo_file_through_a_mono_plugin_renders_each_channel_alone() {
    let dir = tempfile::tempdir().unwrap();
    let amen = recording("loop_amen.flac");
    let (rate, x) = (amen.sample_rate(), amen.channels().to_vec());
    let stereo = dir.path().join("stereo.wav");
    write_wav(&stereo, rate, &x);
    let both = render(dir.path(), ZAM_COMP, &stereo, "both.wav", &["thr=-30"]);
    for (c, channel) in x.iter().enumerate() {
        let mono = dir.path().join(format!("ch{c}.wav"));
        write_wav(&mono, rate, std::slice::from_ref(channel));
        let alone = render(dir.path(), ZAM_COMP, &mono, &format!("alone{c}.wav"), &["thr=-30"]);
        assert_eq!(bits(&both[c..c + 1]), bits(&alone), "channel {c}");
    }
}

#[test]
fn a_mono_file_through_a_stereo_plugin_feeds_both_inputs_and_averages_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let (rate, x) = read_wav(&input);
    let dual = dir.path().join("dual.wav");
    write_wav(&dual, rate, &[x[0].clone(), x[0].clone()]);
    let stereo_plugin = "http://gareus.org/oss/lv2/fil4#stereo";
    let mono_out = render(dir.path(), stereo_plugin, &input, "m.wav", &["gain1=6", "freq1=500"]);
    let stereo_out = render(dir.path(), stereo_plugin, &dual, "s.wav", &["gain1=6", "freq1=500"]);
    assert_eq!(mono_out.len(), 1);
    let mean: Vec<f32> = stereo_out[0].iter().zip(&stereo_out[1]).map(|(a, b)| (a + b) * 0.5).collect();
    assert!(max_abs_diff(&mono_out[0], &mean) <= 1e-7);
}

#[test]
fn bench_render_json_reports_the_overhead_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(afx(dir.path(), &["bench", "render", "--seconds", "0.5", "--repeats", "3", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let overhead = v["overhead"].as_f64().unwrap();
    let (harness, direct) = (v["harness_s"].as_f64().unwrap(), v["direct_s"].as_f64().unwrap());
    assert!(overhead.is_finite() && overhead > 0.0);
    assert!((overhead - harness / direct).abs() < 1e-9);
    assert_eq!(v["frames"], 24_000);
}

#[test]
fn bench_render_all_formats_reports_one_ratio_per_format() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "render", "--all-formats", "--json", "--seconds", "0.2", "--repeats", "3"];
    let out = ok(afx(dir.path(), &args));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let runs = v.as_array().expect("an array");
    let formats: Vec<&str> = runs.iter().map(|r| r["format"].as_str().unwrap()).collect();
    assert_eq!(formats, ["lv2", "clap", "vst3"]);
    for r in runs {
        let overhead = r["overhead"].as_f64().unwrap();
        let (harness, direct) = (r["harness_s"].as_f64().unwrap(), r["direct_s"].as_f64().unwrap());
        assert!(overhead.is_finite() && overhead > 0.0, "{r}");
        assert!((overhead - harness / direct).abs() < 1e-9, "{r}");
        assert_eq!(r["frames"], 9_600, "{r}");
        assert_eq!(r["plugin"], "ZamComp", "{r}");
    }
}

#[test]
fn a_sidechain_signal_keys_the_compressor_and_a_mismatched_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let (rate, x) = read_wav(&input);
    let n = x[0].len();
    // A loud key: the compressor, listening to its sidechain, pulls the drums down.
    let key = dir.path().join("key.wav");
    let tone: Vec<f32> = (0..n).map(|i| 0.9 * (i as f32 * 0.05).sin()).collect();
    write_wav(&key, rate, std::slice::from_ref(&tone));
    let keyed = dir.path().join("keyed.wav");
    let sets = ["--set", "sidech=1", "--set", "thr=-30", "--set", "rat=10"];
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec!["render", "--plugin", ZAM_COMP, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(sets);
        args.extend(extra);
        afx(dir.path(), &args)
    };
    ok(run(&["--sidechain", key.to_str().unwrap()], &keyed));
    let silent = dir.path().join("silent.wav");
    ok(run(&[], &silent));
    let (k, s) = (read_wav(&keyed).1, read_wav(&silent).1);
    assert!(rms(&k[0]) < 0.5 * rms(&s[0]), "key had no effect: {} vs {}", rms(&k[0]), rms(&s[0]));

    let short = dir.path().join("short.wav");
    write_wav(&short, rate, &[tone[..n - 1].to_vec()]);
    let out = run(&["--sidechain", short.to_str().unwrap()], &dir.path().join("x.wav"));
    fails_with(&out, &["sidechain", &format!("{} frames against the input's {n}", n - 1)]);
    let other_rate = dir.path().join("rate.wav");
    write_wav(&other_rate, 48_000, &[tone]);
    let out = run(&["--sidechain", other_rate.to_str().unwrap()], &dir.path().join("x.wav"));
    fails_with(&out, &["sidechain", &format!("48000 Hz against the input's {rate} Hz")]);
    assert!(!dir.path().join("x.wav").exists());
}

#[test]
fn render_reads_flac_as_the_same_samples_as_wav() {
    let dir = tempfile::tempdir().unwrap();
    let flac = Path::new(SAMPLES).join("loop_amen.flac");
    let amen = recording("loop_amen.flac");
    let wav = dir.path().join("amen.wav");
    write_wav(&wav, amen.sample_rate(), amen.channels());
    let from_flac = render(dir.path(), ZAM_COMP, &flac, "flac.wav", &["thr=-25"]);
    let from_wav = render(dir.path(), ZAM_COMP, &wav, "wav.wav", &["thr=-25"]);
    assert_eq!(bits(&from_flac), bits(&from_wav));
}

#[test]
fn bench_render_names_an_unknown_plugin_and_a_bad_format() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        &afx(dir.path(), &["bench", "render", "--plugin", "urn:zamaudio:ZamCmop"]),
        &["ZamCmop", "did you mean"],
    );
    fails_with(&afx(dir.path(), &["bench", "render", "--format", "au"]), &["au", "lv2, clap, vst3"]);
}
