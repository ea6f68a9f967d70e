//! A run stopped mid-way (no final checkpoint, as after kill -9) and resumed ends exactly where an
//! uninterrupted run ends: same metrics and bit-identical weights, losing only the steps since the checkpoint.

mod common;

use std::path::Path;

use afx_core::RunFolder;
use afx_trainer::metrics::Record;
use afx_trainer::run::CheckpointMeta;
use afx_trainer::train::{TrainConfig, TrainOptions, resume, train};

fn losses(run: &Path) -> Vec<(u64, String)> {
    // Timings differ between runs; everything else must not.
    RunFolder::new(run)
        .read_metrics::<Record>()
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Record::Step(mut s) => {
                s.timing = Default::default();
                (s.step, format!("{s:?}"))
            }
            Record::Validation(v) => (v.step, format!("{v:?}")),
        })
        .collect()
}

fn weights(run: &Path) -> Vec<(String, Vec<u32>)> {
    let (_, path) = RunFolder::new(run).latest_checkpoint::<CheckpointMeta>().unwrap().unwrap();
    let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let mut out: Vec<(String, Vec<u32>)> = tensors
        .into_iter()
        .filter(|(name, _)| !name.ends_with("step"))
        .map(|(name, t)| {
            (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn resume_after_a_stop_continues_exactly_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        steps: 6,
        batch: 2,
        clip_seconds: 0.25,
        val_every: 3,
        val_items: 2,
        checkpoint_every: 2,
        seed: 11,
        ..TrainConfig::default()
    };
    let chain = common::chain_info("zam_comp");
    let mut pool = common::pool("zam_comp");
    let data = common::data();

    let whole = dir.path().join("whole");
    train(&whole, &config, &chain, &mut pool, data, TrainOptions::default()).unwrap();

    let cut = dir.path().join("cut");
    let stopped = TrainOptions { stop_after: Some(5), ..TrainOptions::default() };
    let summary = train(&cut, &config, &chain, &mut pool, data, stopped).unwrap();
    assert!(summary.interrupted);
    assert_eq!(
        RunFolder::new(&cut).latest_checkpoint::<CheckpointMeta>().unwrap().unwrap().0.step,
        4,
        "checkpoint after step 4 expected"
    );
    assert_eq!(losses(&cut).last().unwrap().0, 5, "step 5 was logged before the stop");
    // Starting over in a folder with checkpoints is refused.
    assert!(train(&cut, &config, &chain, &mut pool, data, TrainOptions::default()).is_err());

    let resumed = resume(&cut, &chain, &mut pool, data, TrainOptions::default()).unwrap();
    assert_eq!(resumed.steps, 6);
    assert_eq!(losses(&cut), losses(&whole));
    assert_eq!(weights(&cut), weights(&whole), "resumed weights differ from the uninterrupted run's");
}
