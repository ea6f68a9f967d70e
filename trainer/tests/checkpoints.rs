//! A run's checkpoints are written through `afx_core::atomic` (temporary file, fsync, rename): a write that
//! cannot be renamed into place leaves nothing behind, and a checkpoint written again replaces the old one whole.

mod common;

use std::path::Path;

use afx_core::RunFolder;
use afx_trainer::run::CheckpointMeta;
use afx_trainer::train::{TrainConfig, Trainer};
use candle_core::{Device, Tensor};

fn trainer() -> Trainer {
    Trainer::new(TrainConfig { seed: 5, ..TrainConfig::default() }, common::chain_info("zam_comp"), Device::Cpu)
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_that_cannot_be_renamed_into_place_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // A non-empty folder where the weights go: writing them succeeds, renaming onto it fails.
    let (weights, _) = RunFolder::new(&run).checkpoints().paths(0);
    std::fs::create_dir_all(weights.join("in-the-way")).unwrap();
    let err = trainer().save_checkpoint(&run).unwrap_err();
    eprintln!("{err}");
    assert_eq!(
        names(RunFolder::new(&run).checkpoints().path()),
        ["step-00000000.safetensors"],
        "a temporary file was left behind"
    );
}

#[test]
fn a_checkpoint_written_again_replaces_the_old_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let trainer = trainer();
    trainer.save_checkpoint(&run).unwrap();
    let (weights, _) = RunFolder::new(&run).checkpoints().paths(0);
    let name = "controller.fc2.bias";
    let stored = |path: &Path| -> Vec<f32> {
        candle_core::safetensors::load(path, &Device::Cpu).unwrap()[name].to_vec1().unwrap()
    };
    let old = stored(&weights);
    // Change one variable and write the checkpoint of the same step again.
    let var = trainer.varmap().data().lock().unwrap()[name].clone();
    let changed: Vec<f32> = old.iter().map(|x| x + 1.0).collect();
    var.set(&Tensor::new(changed.as_slice(), &Device::Cpu).unwrap()).unwrap();
    trainer.save_checkpoint(&run).unwrap();
    assert_eq!(stored(&weights), changed, "the checkpoint was not replaced");
    assert_eq!(names(RunFolder::new(&run).checkpoints().path()), ["step-00000000.json", "step-00000000.safetensors"]);
    // And it loads whole into a fresh trainer.
    let (meta, path) = RunFolder::new(&run).latest_checkpoint::<CheckpointMeta>().unwrap().unwrap();
    let loaded = Trainer::from_checkpoint(&meta, &path, Device::Cpu).unwrap();
    let loaded_var = loaded.varmap().data().lock().unwrap()[name].as_tensor().to_vec1::<f32>().unwrap();
    assert_eq!(loaded_var, changed);
}
