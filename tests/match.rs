//! `afx match` end to end through the real zam `eq_comp` chain: a real drum loop and its render at one preset
//! are matched by SPSA and by CMA-ES (the preset written replays the matched audio exactly), the style of another
//! recording processed the same way is matched with `--reference`, `--init-run` starts from a trained controller
//! of the same chain and refuses one of another chain, and bad input is refused by name with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// The preset the targets are rendered with: a +9 dB peak at 1.5 kHz, a −9 dB low shelf, compression and
/// make-up gain (clearly audible, inside every range).
const PRESET: [&str; 6] =
    ["zam_eq.boost1=9", "zam_eq.f1=1500", "zam_eq.boostl=-9", "zam_comp.thr=-30", "zam_comp.rat=6", "zam_comp.mak=8"];

/// A controller of `chain` trained for two steps on the demo corpus into `run`: a run folder to start from.
fn train_two_steps(dir: &Path, chain: &str, run: &Path) {
    let data = demo_corpus().to_str().unwrap();
    let run = run.to_str().unwrap();
    let args =
        ["train", "--chain", chain, "--data", data, "--out", run, "--steps", "2", "--batch", "2", "--val-every", "2"];
    ok(afx_with_repo_config(dir, &args));
}

/// `input` rendered through eq_comp at [`PRESET`] into `output`.
fn render_preset(dir: &Path, input: &Path, output: &Path) {
    let mut args = vec!["render", "--plugin", "eq_comp", "--input", input.to_str().unwrap()];
    args.extend(["--output", output.to_str().unwrap()]);
    for set in PRESET {
        args.extend(["--set", set]);
    }
    ok(afx_with_repo_config(dir, &args));
}

/// 1 s of the amen loop (mono, 44.1 kHz) and its render at [`PRESET`], made once per test binary.
fn pair() -> &'static (PathBuf, PathBuf) {
    static PAIR: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
    &PAIR
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let amen = head(&amen_mono(), 44_100);
            let dry = dir.path().join("dry.wav");
            write_wav(&dry, amen.sample_rate(), amen.channels());
            let wet = dir.path().join("wet.wav");
            render_preset(dir.path(), &dry, &wet);
            let paths = (dry, wet);
            (dir, paths)
        })
        .1
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn match_args<'a>(input: &'a str, target: &'a str, method: &'a str, renders: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "match",
        "--chain",
        "eq_comp",
        "--input",
        input,
        "--target",
        target,
        "--method",
        method,
        "--renders",
        renders,
        "--out",
        out,
    ]
}

#[test]
fn both_methods_match_a_real_render_and_the_preset_replays_the_matched_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let (dry, wet) = pair();
    for method in ["spsa", "cma-es"] {
        let out = tmp.path().join(method);
        let o = ok(afx_with_repo_config(
            tmp.path(),
            &match_args(dry.to_str().unwrap(), wet.to_str().unwrap(), method, "240", out.to_str().unwrap()),
        ));
        eprintln!("{}", stdout(&o));
        let s = summary(&out);
        let (start, best) = (s["outcome"]["start_loss"].as_f64().unwrap(), s["outcome"]["best_loss"].as_f64().unwrap());
        // From the chain's defaults (no processing) the MRSTFT to the preset's render is large; 240 renders
        // must at least halve it (2000 renders take it to about a tenth: README).
        assert!(best < 0.5 * start, "{method}: {start} → {best}");
        let renders = s["outcome"]["renders"].as_u64().unwrap();
        assert!(renders <= 240 && renders > 200, "{method}: {renders} renders");
        assert_eq!(s["outcome"]["failed"], 0);
        let curve = s["outcome"]["curve"].as_array().unwrap();
        assert!(curve.windows(2).all(|w| w[1]["best"].as_f64() <= w[0]["best"].as_f64()), "best never rises");
        assert!(stdout(&o).contains("zam_eq.boost1 = "), "{}", stdout(&o));
        for file in ["preset.toml", "matched.wav", "loss.png", "summary.json"] {
            assert!(out.join(file).is_file(), "{method}: {file} missing");
        }
        // The preset replays the matched audio bit for bit through `afx render --preset`.
        let replay = tmp.path().join(format!("replay-{method}.wav"));
        let preset = out.join("preset.toml");
        let render = ["render", "--preset", arg(&preset), "--input", arg(dry), "--output", arg(&replay)];
        ok(afx_with_repo_config(tmp.path(), &render));
        assert_eq!(read_wav(&replay), read_wav(&out.join("matched.wav")), "{method}: the preset does not replay");
    }
}

#[test]
fn a_style_reference_of_other_material_is_matched_by_its_features() {
    let tmp = tempfile::tempdir().unwrap();
    let (dry, _) = pair();
    // The style: another recording (a breakbeat) through the same preset.
    let other = recording("loop_breakbeat.flac");
    let other_dry = tmp.path().join("breakbeat.wav");
    write_wav(&other_dry, other.sample_rate(), other.channels());
    let reference = tmp.path().join("breakbeat-styled.wav");
    render_preset(tmp.path(), &other_dry, &reference);
    let out = tmp.path().join("style");
    let matching = ["match", "--chain", "eq_comp", "--input", arg(dry), "--reference", arg(&reference)];
    let budget = ["--method", "cma-es", "--renders", "240", "--out", arg(&out)];
    let o = ok(afx_with_repo_config(tmp.path(), &[&matching[..], &budget].concat()));
    let s = summary(&out);
    assert_eq!(s["objective"], "style distance (dB)", "{}", stdout(&o));
    let (start, best) = (s["outcome"]["start_loss"].as_f64().unwrap(), s["outcome"]["best_loss"].as_f64().unwrap());
    assert!(best < 0.6 * start, "style distance {start} → {best} dB");
}

#[test]
fn init_run_starts_from_a_controller_of_the_chain_and_refuses_one_of_another() {
    let tmp = tempfile::tempdir().unwrap();
    let (dry, wet) = pair();
    let train = |chain: &str, run: &Path| train_two_steps(tmp.path(), chain, run);
    let eq_comp_run = tmp.path().join("eq_comp-run");
    train("eq_comp", &eq_comp_run);
    let out = tmp.path().join("from-run");
    let mut args = match_args(dry.to_str().unwrap(), wet.to_str().unwrap(), "spsa", "21", out.to_str().unwrap());
    args.extend(["--init-run", eq_comp_run.to_str().unwrap()]);
    ok(afx_with_repo_config(tmp.path(), &args));
    let s = summary(&out);
    assert_eq!(s["start_from"], format!("run {}", eq_comp_run.display()));
    // The controller's θ (a barely trained one predicts near the middle of each range), not the defaults.
    let start: Vec<f64> = s["outcome"]["start_theta"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let defaults = tmp.path().join("defaults");
    let args = match_args(dry.to_str().unwrap(), wet.to_str().unwrap(), "spsa", "1", defaults.to_str().unwrap());
    ok(afx_with_repo_config(tmp.path(), &args));
    let default_theta = summary(&defaults)["outcome"]["start_theta"].clone();
    assert_ne!(serde_json::json!(start), default_theta);

    let zam_comp_run = tmp.path().join("zam_comp-run");
    train("zam_comp", &zam_comp_run);
    let refused = tmp.path().join("refused");
    let mut args = match_args(dry.to_str().unwrap(), wet.to_str().unwrap(), "spsa", "8", refused.to_str().unwrap());
    args.extend(["--init-run", zam_comp_run.to_str().unwrap()]);
    fails_with(&afx_with_repo_config(tmp.path(), &args), &["--init-run", "zam_comp-run", "zam_comp", "eq_comp"]);
    assert!(!refused.exists(), "a refused match wrote {}", refused.display());
}

#[test]
fn bad_input_is_refused_naming_the_flag_or_file_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (dry, wet) = pair();
    let out = tmp.path().join("out");
    let path = |p: &Path| p.display().to_string();
    // `afx match` of `input` against `target` with `extra` flags into `out`.
    let with = |input: &str, target: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["match", "--chain", "eq_comp", "--input", input, "--target", target];
        args.extend(if extra.contains(&"--renders") { extra.to_vec() } else { [extra, &["--renders", "8"]].concat() });
        args.extend(["--out", out.to_str().unwrap()]);
        args.into_iter().map(String::from).collect()
    };
    let refuse = |args: Vec<String>, needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&afx_with_repo_config(tmp.path(), &args), needles);
        assert!(!out.exists(), "a refused match ({args:?}) wrote {}", out.display());
    };
    let (dry, wet) = (path(dry), path(wet));
    // Missing files, named with their flag.
    refuse(with("nowhere/dry.wav", &wet, &[]), &["--input", "nowhere/dry.wav"]);
    refuse(with(&dry, "nowhere/wet.wav", &[]), &["--target", "nowhere/wet.wav"]);
    // No budget to spend; settings that cannot run.
    refuse(with(&dry, &wet, &["--renders", "0"]), &["--renders 0"]);
    refuse(with(&dry, &wet, &["--seconds", "0"]), &["--seconds 0"]);
    refuse(with(&dry, &wet, &["--method", "annealing"]), &["annealing", "spsa", "cma-es"]);
    refuse(with(&dry, &wet, &["--population", "1"]), &["--population"]);
    // A target at another rate, of another length, or with another channel count than the chain gives.
    let amen = head(&amen_mono(), 44_100);
    let at_48k = tmp.path().join("wet-48k.wav");
    write_wav(&at_48k, 48_000, amen.channels());
    refuse(with(&dry, &path(&at_48k), &[]), &["--target", "wet-48k.wav", "48000 Hz", "44100 Hz"]);
    let shorter = tmp.path().join("wet-short.wav");
    write_wav(&shorter, 44_100, &[amen.channel(0)[..40_000].to_vec()]);
    refuse(with(&dry, &path(&shorter), &[]), &["wet-short.wav", "40000 frames", "44100"]);
    let stereo = tmp.path().join("wet-stereo.wav");
    write_wav(&stereo, 44_100, &[amen.channel(0).to_vec(), amen.channel(0).to_vec()]);
    refuse(with(&dry, &path(&stereo), &[]), &["wet-stereo.wav", "gives 1 channel", "target has 2 channels"]);
    // An unknown chain, with a suggestion.
    let mut args = with(&dry, &wet, &[]);
    args[2] = "eq_cmop".into();
    refuse(args, &["eq_cmop", "eq_comp"]);
    // A folder that is not empty is refused and left as it was.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let mut args = with(&dry, &wet, &[]);
    *args.last_mut().unwrap() = path(&full);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_with(&afx_with_repo_config(tmp.path(), &args), &["--out", "full", "not empty"]);
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
}

#[test]
fn bench_match_scores_both_methods_beside_a_controller_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_corpus().to_str().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    train_two_steps(tmp.path(), "eq_comp", &run);
    let out = tmp.path().join("bench");
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "match", "--data", data, "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        afx_with_repo_config(tmp.path(), &args)
    };
    let o = ok(bench(&["--run", run_s, "--pairs", "2", "--renders", "25"]));
    assert!(stdout(&o).contains("match, cma-es"), "{}", stdout(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    for pair in pairs {
        // One outcome per method, each within its budget and scored.
        let matched = pair["matched"].as_array().unwrap();
        assert_eq!(matched.len(), 2);
        for outcome in matched {
            let renders = outcome["renders"].as_u64().unwrap();
            assert!((13..=25).contains(&renders), "{outcome}");
            assert!(outcome["best_loss"].as_f64().unwrap().is_finite(), "{outcome}");
        }
        assert!(pair["controller"].as_f64().unwrap().is_finite());
    }
    assert!(out.join("curves.png").is_file() && out.join("report.md").is_file());

    let refused = tmp.path().join("refused");
    let out_r = refused.to_str().unwrap();
    let refuse = |args: &[&str], needles: &[&str]| {
        let mut all = vec!["bench", "match", "--data", data, "--out", out_r];
        all.extend_from_slice(args);
        fails_with(&afx_with_repo_config(tmp.path(), &all), needles);
        assert!(!refused.exists(), "a refused bench ({args:?}) wrote {out_r}");
    };
    refuse(&["--run", run_s, "--pairs", "0"], &["--pairs 0"]);
    refuse(&["--run", run_s, "--renders", "0"], &["--renders 0"]);
    refuse(&["--run", "nowhere"], &["--run nowhere", "not a run folder"]);
    refuse(&["--run", run_s, "--methods", "annealing"], &["annealing", "cma-es"]);
}
