//! `afx train --pairs DIR` end to end: a folder of real recordings (sonic-pi-samples, the demo corpus's music)
//! and the same recordings rendered through ONE fixed preset of the real zam `eq_comp` chain, two of them
//! shifted by 7 ms as a late export would be. Training learns the preset with no reference; the shifted pairs'
//! offsets are measured and aligned; bad folders are refused by name with nothing written to --out.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// Recordings of the folder (44.1 kHz, stereo and mono, 1.75 to 4.9 s).
const NAMES: [&str; 8] = [
    "loop_amen",
    "loop_breakbeat",
    "loop_electric",
    "loop_mehackit1",
    "loop_perc2",
    "guit_e_slide",
    "guit_harmonics",
    "loop_weirdo",
];
/// Processed files delayed by [`SHIFT_S`] (prepended zeros, tail dropped: the same length).
const SHIFTED: [&str; 2] = ["loop_breakbeat", "guit_e_slide"];
const SHIFT_S: f64 = 0.007;
/// One clearly audible preset: a +12 dB peak at 2 kHz, a −12 dB low shelf at 200 Hz, a +6 dB high shelf,
/// then heavy compression and 12 dB of make-up gain.
const PRESET: [&str; 9] = [
    "zam_eq.boost1=12",
    "zam_eq.f1=2000",
    "zam_eq.boostl=-12",
    "zam_eq.fl=200",
    "zam_eq.boosth=6",
    "zam_eq.fh=5000",
    "zam_comp.thr=-36",
    "zam_comp.rat=8",
    "zam_comp.mak=12",
];

/// The pair folder, built once per test binary: raw/NAME.wav is the recording, processed/NAME.wav its render
/// through the preset (shifted for [`SHIFTED`]).
fn pair_folder() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pairs");
        std::fs::create_dir_all(dir.join("raw")).unwrap();
        std::fs::create_dir_all(dir.join("processed")).unwrap();
        for name in NAMES {
            let audio = recording(&format!("{name}.flac"));
            let raw = dir.join("raw").join(format!("{name}.wav"));
            let processed = dir.join("processed").join(format!("{name}.wav"));
            write_wav(&raw, audio.sample_rate(), audio.channels());
            let mut args = vec!["render", "--plugin", "eq_comp", "--input", raw.to_str().unwrap()];
            args.extend(["--output", processed.to_str().unwrap()]);
            for set in PRESET {
                args.extend(["--set", set]);
            }
            ok(afx_with_repo_config(tmp.path(), &args));
            if SHIFTED.contains(&name) {
                let (rate, channels) = read_wav(&processed);
                let shift = (SHIFT_S * f64::from(rate)).round() as usize;
                let delayed: Vec<Vec<f32>> = channels
                    .iter()
                    .map(|c| std::iter::repeat_n(0.0, shift).chain(c[..c.len() - shift].iter().copied()).collect())
                    .collect();
                write_wav(&processed, rate, &delayed);
            }
        }
        (tmp, dir)
    })
    .1
}

/// A copy of the pair folder to break.
fn copy_of_folder(into: &Path) -> PathBuf {
    let dir = into.join("pairs");
    for sub in ["raw", "processed"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for name in NAMES {
            let file = format!("{name}.wav");
            std::fs::copy(pair_folder().join(sub).join(&file), dir.join(sub).join(&file)).unwrap();
        }
    }
    dir
}

fn train_args<'a>(pairs: &'a str, run: &'a str, steps: &'a str) -> Vec<&'a str> {
    let train = ["train", "--chain", "eq_comp", "--pairs", pairs, "--out", run];
    [&train[..], &short_run(steps, "4", steps), &["--lr", "0.003"]].concat()
}

fn validations(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "validation")
        .collect()
}

#[test]
fn training_on_a_pair_folder_learns_a_fixed_preset_and_aligns_the_shifted_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pair_folder().to_str().unwrap();
    let run = tmp.path().join("run");
    let mut args = train_args(pairs, run.to_str().unwrap(), "400");
    args.extend(["--no-reference", "--align"]);
    let started = std::time::Instant::now();
    let out = ok(afx_with_repo_config(tmp.path(), &args));
    let seconds = started.elapsed().as_secs_f64();
    let text = stdout(&out);
    eprintln!("{text}\n(train: {seconds:.1} s)");

    // Every pair's offset is in pairs.json; the shifted pairs' (≈ 7 ms: 309 samples at 44.1 kHz, give or take
    // the few samples the EQ moves the correlation peak by) also in the output, by name.
    let manifest: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("pairs.json")).unwrap()).unwrap();
    assert_eq!(manifest.len(), NAMES.len());
    for p in &manifest {
        let name = p["name"].as_str().unwrap();
        let ms = p["offset_ms"].as_f64().unwrap();
        eprintln!("{name}: {ms:.3} ms ({} samples)", p["offset_frames"]);
        if SHIFTED.contains(&name.trim_end_matches(".wav")) {
            assert!((ms - 7.0).abs() < 0.1 && p["shifted"] == true, "{p}");
            let line = format!(
                "aligned {name}: processed lags raw by {ms:.2} ms ({} samples at 44100 Hz)",
                p["offset_frames"]
            );
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        } else {
            // Rendered through the EQ/compressor with no shift: well within the 2 ms tolerance (the filters move
            // the correlation peak a little by themselves), and kept as they are.
            assert!(ms.abs() < 0.5 && p["shifted"] == false, "{p}");
        }
    }
    let held_out = manifest.iter().filter(|p| p["held_out"] == true).count();
    assert_eq!(held_out, 2, "20 % of 8 pairs");

    // Learnt: the held-out pairs through the real chain at the predicted parameters are at least 50 % closer
    // (MRSTFT) to the processed files than the raw inputs are.
    let v = validations(&run);
    let last = v.last().unwrap();
    let (trained, input) = (last["mrstft"]["trained"].as_f64().unwrap(), last["mrstft"]["input"].as_f64().unwrap());
    eprintln!("held-out MRSTFT: trained {trained:.4}, input {input:.4} ({:+.1} %)", 100.0 * (trained / input - 1.0));
    assert!(trained <= 0.5 * input, "trained {trained} vs input {input}");
    assert!(last.get("param_error").is_none(), "θ* is unknown for real pairs: {last}");
    let per_pair: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("validation_pairs.json")).unwrap()).unwrap();
    assert_eq!(per_pair.len(), 2);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Held-out pairs") && report.contains("zam_comp.mak"), "{report}");
    assert!(report.contains("dB"), "plain values with units: {report}");

    // A run without a reference processes a file with no --reference, and refuses one.
    let input = pair_folder().join("raw/loop_amen.wav");
    let output = tmp.path().join("out.wav");
    let infer = ["infer", "--run", run.to_str().unwrap(), "--input", input.to_str().unwrap()];
    let mut args = infer.to_vec();
    args.extend(["--output", output.to_str().unwrap()]);
    ok(afx_with_repo_config(tmp.path(), &args));
    assert!(output.exists());
    args.extend(["--reference", input.to_str().unwrap()]);
    fails_with(&afx_with_repo_config(tmp.path(), &args), &["trained without a reference", "leave out --reference"]);
    // `afx match --init-run` starts from the same prediction (from the input alone): with a budget of one
    // render its preset is the start, which equals infer's.
    let matched = tmp.path().join("match");
    let target = pair_folder().join("processed/loop_amen.wav");
    let matching = ["match", "--chain", "eq_comp", "--input", arg(&input), "--target", arg(&target)];
    let start = ["--init-run", arg(&run), "--renders", "1", "--out", arg(&matched)];
    ok(afx_with_repo_config(tmp.path(), &[&matching[..], &start].concat()));
    let preset = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(preset(&matched.join("preset.toml")), preset(&output.with_extension("preset.toml")));

    // --resume with --pairs trains on (the run's --no-reference and held-out pairs); without it, refused.
    let mut args = train_args(pairs, run.to_str().unwrap(), "400");
    args[8] = "404";
    args.extend(["--align", "--resume"]);
    ok(afx_with_repo_config(tmp.path(), &args));
    let steps = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().matches(r#""kind":"step""#).count();
    assert_eq!(steps, 404);
    let resume = ["train", "--data", "corpus", "--out", run.to_str().unwrap(), "--resume"];
    fails_with(&afx_with_repo_config(tmp.path(), &resume), &["trained on a pair folder", "--pairs DIR"]);
}

#[test]
fn bad_pair_folders_are_refused_by_name_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let refused = |pairs: &Path, extra: &[&str], needles: &[&str]| {
        let mut args = train_args(pairs.to_str().unwrap(), run_s, "2");
        args.extend_from_slice(extra);
        fails_with(&afx_with_repo_config(tmp.path(), &args), needles);
        assert!(!run.exists(), "a refused run left {}", run.display());
    };

    // Shifted pairs without --align: refused, naming them and their offset.
    refused(
        pair_folder(),
        &["--no-reference"],
        &["loop_breakbeat.wav", "guit_e_slide.wav", "processed lags raw by", "--align"],
    );

    // A processed file of another length: refused even with --align, with both lengths.
    let short = copy_of_folder(&tmp.path().join("short"));
    let file = short.join("processed/loop_perc2.wav");
    let (rate, channels) = read_wav(&file);
    write_wav(&file, rate, &channels.iter().map(|c| c[..c.len() - 4410].to_vec()).collect::<Vec<_>>());
    let frames = channels[0].len();
    refused(
        &short,
        &["--align"],
        &["loop_perc2.wav", &format!("({frames} frames)"), &format!("({} frames)", frames - 4410), "trim or pad"],
    );

    // A processed file at another rate than its raw file.
    let rates = copy_of_folder(&tmp.path().join("rates"));
    let file = rates.join("processed/loop_perc2.wav");
    let (_, channels) = read_wav(&file);
    write_wav(&file, 48_000, &channels);
    refused(&rates, &["--align"], &["loop_perc2.wav", "44100 Hz", "48000 Hz"]);

    // A raw file without its processed counterpart.
    let lone = copy_of_folder(&tmp.path().join("lone"));
    std::fs::remove_file(lone.join("processed/loop_electric.wav")).unwrap();
    refused(&lone, &["--align"], &["raw/loop_electric.wav has no counterpart processed/loop_electric.*"]);

    // Something that is not audio; two files of one name.
    let notes = copy_of_folder(&tmp.path().join("notes"));
    std::fs::write(notes.join("raw/notes.txt"), "take 3 was the good one").unwrap();
    refused(&notes, &["--align"], &["raw/notes.txt", "only audio files"]);
    let twice = copy_of_folder(&tmp.path().join("twice"));
    std::fs::copy(twice.join("raw/loop_amen.wav"), twice.join("raw/loop_amen.flac")).unwrap();
    refused(&twice, &["--align"], &["loop_amen.flac", "loop_amen.wav", "share a name"]);

    // Too few pairs for a reference, and --val-pairs leaving nothing to train on.
    let two = tmp.path().join("two");
    for sub in ["raw", "processed"] {
        std::fs::create_dir_all(two.join(sub)).unwrap();
        for name in ["loop_amen", "loop_perc2"] {
            let file = format!("{name}.wav");
            std::fs::copy(pair_folder().join(sub).join(&file), two.join(sub).join(&file)).unwrap();
        }
    }
    refused(&two, &[], &["2 pair(s)", "at least 3", "--no-reference"]);
    refused(pair_folder(), &["--align", "--val-pairs", "8"], &["--val-pairs 8"]);

    // Formats mix within a pair (matched by name without the extension): the recording's own FLAC as raw.
    let flac = copy_of_folder(&tmp.path().join("flac"));
    std::fs::remove_file(flac.join("raw/loop_amen.wav")).unwrap();
    std::fs::copy(Path::new(SAMPLES).join("loop_amen.flac"), flac.join("raw/loop_amen.flac")).unwrap();
    let flac_run = tmp.path().join("flac-run");
    let mut args = train_args(flac.to_str().unwrap(), flac_run.to_str().unwrap(), "2");
    args.extend(["--align", "--no-reference"]);
    ok(afx_with_repo_config(tmp.path(), &args));
    let manifest = std::fs::read_to_string(flac_run.join("pairs.json")).unwrap();
    assert!(manifest.contains("loop_amen.flac"), "{manifest}");

    // --pairs and --data together; neither.
    refused(pair_folder(), &["--data", "corpus"], &["--data"]);
    let mut args = train_args("x", run_s, "2");
    args.drain(3..5);
    fails_with(&afx_with_repo_config(tmp.path(), &args), &["--data"]);
    assert!(!run.exists());
}
