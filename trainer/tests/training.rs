//! A real (small) training run through a real zam plugin on real recordings, then inference from its folder:
//! validation beats the default- and random-parameter baselines, the run's files are there, inference works
//! at any rate and channel count and its preset replays bit-identically, and bad requests are refused.

mod common;

use std::time::Instant;

use afx_core::RunFolder;
use afx_host::Preset;
use afx_trainer::infer::{TrainedModel, infer, infer_run, render_preset};
use afx_trainer::metrics::Record;
use afx_trainer::train::{TrainConfig, TrainOptions, resume, train};
use afx_trainer::{TrainError, resample};
use candle_core::Device;

#[test]
fn training_through_zam_comp_beats_baselines_and_its_run_infers_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = TrainConfig {
        steps: 400,
        batch: 4,
        clip_seconds: 0.5,
        lr: 5e-3,
        lr_final: 5e-4,
        val_every: 100,
        val_items: 8,
        checkpoint_every: 200,
        seed: 7,
        ..TrainConfig::default()
    };
    let chain = common::chain_info("zam_comp");
    let mut pool = common::pool("zam_comp");
    let data = common::data();
    let started = Instant::now();
    let summary = train(&run, &config, &chain, &mut pool, data, TrainOptions::default()).unwrap();
    let v = summary.validation.clone().unwrap();
    eprintln!(
        "{} steps in {:.0} s ({:.2} s/step); final validation {v:?}",
        summary.steps,
        started.elapsed().as_secs_f64(),
        summary.mean_step_s
    );
    let records = RunFolder::new(&run).read_metrics::<Record>().unwrap();
    let first =
        records.iter().find_map(|r| if let Record::Validation(v) = r { Some(v.clone()) } else { None }).unwrap();
    eprintln!("first validation {first:?}");
    assert_eq!(summary.steps, 400);
    assert!(v.mrstft.trained < v.mrstft.default, "trained {} vs default {}", v.mrstft.trained, v.mrstft.default);
    assert!(v.mrstft.trained < v.mrstft.random, "trained {} vs random {}", v.mrstft.trained, v.mrstft.random);
    let pe = v.param_error.expect("synthetic pairs know θ*");
    assert!(pe.trained < pe.default, "{pe:?}");
    assert!(pe.trained < pe.random, "{pe:?}");
    for file in ["config.json", "metrics.jsonl", "loss.png", "report.md"] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    assert_eq!(records.iter().filter(|r| matches!(r, Record::Step(_))).count(), 400);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| trained model |"), "{report}");

    // Inference on a stereo 44.1 kHz file (rendered whole, at its own rate) and a 16 kHz mono reference.
    let model = TrainedModel::load(&run, &Device::Cpu).unwrap();
    let mut zam = common::pool("zam_comp");
    let input = afx_testkit::recording("loop_tabla.flac");
    let reference = resample::to_rate(&afx_testkit::recording("guit_e_fifths.flac"), 16_000).unwrap();
    let result = infer(&model, &mut zam, &input, &reference).unwrap();
    assert_eq!((result.output.frames(), result.output.num_channels()), (input.frames(), input.num_channels()));
    assert_eq!(result.output.sample_rate(), input.sample_rate());
    assert_eq!(result.params.len(), 6);
    let preset_path = dir.path().join("preset.toml");
    result.preset.save(&preset_path).unwrap();
    let replayed = render_preset(&mut zam, &Preset::load(&preset_path).unwrap(), &input).unwrap();
    assert_eq!(afx_testkit::bits(&replayed), afx_testkit::bits(&result.output), "preset replay is not bit-identical");

    // A reference shorter than one analysis window (0.5 s) is refused, naming the lengths.
    let short = afx_testkit::head(&reference, 4_000);
    let err = infer(&model, &mut zam, &input, &short).unwrap_err();
    assert!(matches!(err, TrainError::TooShort { what: "reference", .. }), "{err}");
    assert!(err.to_string().contains("0.250 s"), "{err}");

    // The run belongs to zam_comp: eq_comp (other parameters) is refused for inference and for resuming.
    let mut eq_pool = common::pool("eq_comp");
    let err = infer_run(&run, &Device::Cpu, &mut eq_pool, &input, &reference, &Default::default()).unwrap_err();
    assert!(matches!(err, TrainError::WrongChain { .. }), "{err}");
    assert!(err.to_string().contains("zam_comp") && err.to_string().contains("eq_comp"), "{err}");
    let err = resume(&run, &common::chain_info("eq_comp"), &mut eq_pool, data, TrainOptions::default()).unwrap_err();
    assert!(matches!(err, TrainError::WrongChain { .. }), "{err}");
    // And a preset of one chain does not render another.
    assert!(render_preset(&mut eq_pool, &result.preset, &input).is_err());
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if !cfg!(feature = "cuda") {
        let err = afx_trainer::device("cuda").unwrap_err();
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
    assert!(afx_trainer::device("tpu").is_err());
    assert!(afx_trainer::device("cpu").is_ok());
}
