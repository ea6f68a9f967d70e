//! `afx train`, `afx infer` and `afx render --preset` end to end: a real zam plugin, the demo corpus of real
//! recordings, worker processes; kill -9 and resume; bad input.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn corpus() -> &'static Path {
    demo_corpus()
}

fn config() -> String {
    repo_config().display().to_string()
}

/// A short, small training run's arguments.
fn train_args<'a>(run: &'a str, steps: &'a str, every: &'a str) -> Vec<&'a str> {
    let data = corpus().to_str().unwrap();
    let train = ["train", "--chain", "zam_comp", "--data", data, "--out", run];
    [&train[..], &short_run(steps, "4", every)].concat()
}

fn with_config(args: Vec<&str>) -> Vec<String> {
    let mut all = vec!["--config".to_string(), config()];
    all.extend(args.into_iter().map(String::from));
    all
}

fn run_afx(dir: &Path, args: Vec<&str>) -> std::process::Output {
    let all = with_config(args);
    afx(dir, &all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `afx infer --run RUN -i INPUT -r REFERENCE -o OUTPUT` in `dir`, with the test plugins.toml.
fn infer(dir: &Path, run: &Path, input: &Path, reference: &Path, output: &Path) -> std::process::Output {
    let [run, input, reference, output] = [run, input, reference, output].map(|p| p.to_str().unwrap());
    run_afx(dir, vec!["infer", "--run", run, "-i", input, "-r", reference, "-o", output])
}

fn records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_writes_a_run_and_infer_processes_any_file_with_a_preset_that_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = ok(run_afx(dir.path(), train_args(run.to_str().unwrap(), "30", "15")));
    assert!(stdout(&out).contains("validation MRSTFT: trained"), "{}", stdout(&out));
    for file in ["config.json", "metrics.jsonl", "report.md", "loss.png"] {
        assert!(run.join(file).exists(), "no {file}");
    }
    let recs = records(&run);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "step").count(), 30);
    assert!(recs.iter().filter(|r| r["kind"] == "validation").count() >= 2);

    // A 3-minute 44.1 kHz stereo file made of real recordings, and a 16 kHz mono one.
    let mut left = vec![];
    for name in ["loop_tabla.flac", "loop_mika.flac", "guit_em9.flac", "ambi_sauna.flac", "loop_safari.flac"] {
        left.extend_from_slice(recording(name).channel(0));
    }
    let long: Vec<f32> = left.iter().cycle().take(44_100 * 180).copied().collect();
    let stereo = dir.path().join("long.wav");
    write_wav(&stereo, 44_100, &[long.clone(), long.iter().rev().copied().collect()]);
    let mono16 = dir.path().join("mono16.wav");
    let speech = afx_core::audio_file::load_audio(&corpus().join("speech/s03.wav")).unwrap();
    let speech = afx_datasets::resample::resample(&speech, 16_000).unwrap();
    write_wav(&mono16, 16_000, speech.channels());
    let reference = dir.path().join("ref.wav");
    let r = recording("loop_garzul.flac");
    write_wav(&reference, r.sample_rate(), r.channels());
    for (input, frames, channels, rate) in [(&stereo, 44_100 * 180, 2, 44_100), (&mono16, speech.frames(), 1, 16_000)] {
        let output = dir.path().join("processed.wav");
        let preset = dir.path().join("processed.preset.toml");
        let out = ok(infer(dir.path(), &run, input, &reference, &output));
        assert!(stdout(&out).contains("zam_comp.thr = "), "{}", stdout(&out));
        let (got_rate, y) = read_wav(&output);
        assert_eq!((got_rate, y.len(), y[0].len()), (rate, channels, frames));
        let replay = dir.path().join("replay.wav");
        ok(run_afx(dir.path(), vec!["render", "--preset", arg(&preset), "-i", arg(input), "-o", arg(&replay)]));
        let (_, z) = read_wav(&replay);
        assert!(
            y.iter().zip(&z).all(|(a, b)| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())),
            "preset replay differs"
        );
    }
}

#[test]
fn a_run_killed_with_sigkill_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = with_config(train_args(run.to_str().unwrap(), "60", "6"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_afx"))
        .args(&args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 mid-run: once the second checkpoint (step 12) is on disk and two more steps are logged after it,
    // so that the resume must both restart from step 12 and drop the logged steps it will redo. Waiting for
    // those events (not for a time) keeps the kill between checkpoints on a machine of any speed: 46 steps are
    // still to go when it lands. The 5-minute bound only stops a hung run from hanging the test.
    let logged_past_checkpoint = || {
        run.join("checkpoints/step-00000012.json").exists()
            && std::fs::read_to_string(run.join("metrics.jsonl"))
                .is_ok_and(|log| log.lines().any(|l| l.starts_with(r#"{"kind":"step","step":14,"#)))
    };
    let start = Instant::now();
    while !logged_past_checkpoint() {
        assert!(start.elapsed() < Duration::from_secs(300), "no step 14 after checkpoint 12 in 5 minutes");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = records(&run).iter().filter(|r| r["kind"] == "step").count();
    assert!((14..60).contains(&before), "{before} steps logged before the kill");

    let resume = vec!["train", "--resume", "--data", arg(corpus()), "--out", arg(&run), "--workers", "2"];
    let out = ok(run_afx(dir.path(), resume));
    assert!(stdout(&out).contains("60 steps"), "{}", stdout(&out));
    let steps: Vec<u64> =
        records(&run).iter().filter(|r| r["kind"] == "step").map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=60).collect::<Vec<_>>(), "steps lost or repeated across the kill");
}

#[test]
fn bad_training_and_inference_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = corpus().to_str().unwrap();
    fails_with(
        &run_afx(dir.path(), vec!["train", "--chain", "eq_cmop", "--data", data, "--out", "x"]),
        &["eq_cmop", "did you mean", "eq_comp"],
    );
    fails_with(
        &run_afx(dir.path(), vec!["train", "--chain", "zam_comp", "--grad", "magic", "--data", data, "--out", "x"]),
        &["magic", "spsa"],
    );
    fails_with(
        &run_afx(dir.path(), vec!["train", "--chain", "zam_comp", "--device", "cuda", "--data", data, "--out", "x"]),
        &["cuda"],
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("broken.flac"), b"not flac").unwrap();
    fails_with(
        &run_afx(dir.path(), vec!["train", "--chain", "zam_comp", "--data", empty.to_str().unwrap(), "--out", "x"]),
        &["no usable audio", "broken.flac"],
    );
    // A finished run of zam_comp cannot be resumed as another chain.
    ok(run_afx(dir.path(), train_args(run.to_str().unwrap(), "2", "2")));
    fails_with(
        &run_afx(
            dir.path(),
            vec!["train", "--resume", "--chain", "zam_eq", "--data", data, "--out", run.to_str().unwrap()],
        ),
        &["zam_comp", "zam_eq"],
    );
    // Resuming may train longer, never differently: --steps extends the finished run (and is remembered), a
    // smaller --steps or another setting is refused by name, and nothing is trained or rewritten then.
    let resume = |extra: &[&str]| {
        let args = ["train", "--resume", "--data", data, "--out", run.to_str().unwrap(), "--workers", "2"];
        run_afx(dir.path(), [&args[..], extra].concat())
    };
    let steps = |run: &std::path::Path| records(run).iter().filter(|r| r["kind"] == "step").count();
    let out = ok(resume(&["--steps", "3"]));
    assert!(stdout(&out).contains("3 steps"), "{}", stdout(&out));
    assert_eq!(steps(&run), 3);
    fails_with(&resume(&["--batch", "8"]), &["batch is 8", "the run's: 4", "steps and minutes"]);
    fails_with(&resume(&["--steps", "2"]), &["steps 2", "3 steps already"]);
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"batch\": 4") && config.contains("\"steps\": 3"), "{config}");
    assert_eq!(steps(&run), 3, "a refused resume must not train");
    // A reference shorter than the encoder's analysis window.
    let amen = amen_mono_wav(dir.path());
    let short = dir.path().join("short.wav");
    write_wav(&short, 44_100, &[vec![0.1; 256]]);
    fails_with(
        &infer(dir.path(), &run, &amen, &short, Path::new("o.wav")),
        &["reference", "the model analyses windows of"],
    );
    assert!(!dir.path().join("o.wav").exists());
    fails_with(
        &infer(dir.path(), Path::new("nowhere"), &amen, &amen, Path::new("o.wav")),
        &["nowhere", "not a run folder"],
    );
}

#[test]
fn bench_train_splits_a_step_into_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus().to_str().unwrap();
    let out = ok(run_afx(
        dir.path(),
        vec!["bench", "train", "--chain", "zam_comp", "--data", data, "--steps", "1", "--batch", "2", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let mean = &v["mean"];
    let parts = ["data_s", "encoder_forward_s", "render_s", "loss_s", "spsa_s", "backward_s"];
    let sum: f64 = parts.iter().map(|p| mean[p].as_f64().unwrap_or_else(|| panic!("no {p} in {v}"))).sum();
    let total = mean["total_s"].as_f64().unwrap();
    assert!(total > 0.0 && sum <= total * 1.05, "parts {sum} vs total {total}");
    let out = ok(run_afx(
        dir.path(),
        vec!["bench", "train", "--chain", "zam_comp", "--data", data, "--steps", "1", "--batch", "2"],
    ));
    assert!(stdout(&out).contains("plugin renders") && stdout(&out).contains("SPSA"), "{}", stdout(&out));
}

#[test]
fn bench_train_names_a_missing_corpus() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        &run_afx(dir.path(), vec!["bench", "train", "--chain", "zam_comp", "--data", "no/such/corpus"]),
        &["no/such/corpus"],
    );
}
