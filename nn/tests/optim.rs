//! AdamW state survives a checkpoint: save → load → continue equals never stopping.

use afx_nn::checkpoint;
use afx_nn::conv::{Conv1d, Conv1dConfig, Padding};
use afx_nn::film::Film;
use afx_nn::gradcheck::pseudo_random;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_nn::optim::{AdamW, AdamWConfig};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

struct Model {
    conv: Conv1d,
    film: Film,
}

fn build(varmap: &VarMap) -> Result<Model> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
    let cfg = Conv1dConfig { dilation: 2, padding: Padding::Causal, bias: true };
    Ok(Model { conv: Conv1d::new(1, 2, 5, cfg, vb.pp("conv"))?, film: Film::new(3, 2, vb.pp("film"))? })
}

/// `steps` updates; data and learning rate depend only on the optimizer's step count, as in a resumable trainer.
fn train(model: &Model, opt: &mut AdamW, steps: usize) -> Result<()> {
    let config = MrStftConfig { fft_sizes: vec![32, 64], time_l1_weight: 1.0 };
    let loss_fn = MrStftLoss::new(&config, DType::F32, &Device::Cpu)?;
    for _ in 0..steps {
        let seed = opt.steps() * 10;
        opt.set_learning_rate(1e-2 / (1.0 + opt.steps() as f64));
        let x = pseudo_random((2, 1, 256), seed, &Device::Cpu)?.to_dtype(DType::F32)?;
        let cond = pseudo_random((2, 3), seed + 1, &Device::Cpu)?.to_dtype(DType::F32)?;
        let y = model.film.forward(&model.conv.forward(&x)?, &cond)?.sum_keepdim(1)?;
        let loss = loss_fn.forward(&y, &(&x * 0.5)?)?;
        opt.backward_step(&loss)?;
    }
    Ok(())
}

fn snapshot(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<(String, Vec<f32>)> = varmap
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().flatten_all().and_then(|t| t.to_vec1()).expect("values")))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn adamw_resumed_from_a_checkpoint_matches_an_uninterrupted_run_exactly() {
    let config = AdamWConfig { lr: 1e-2, ..AdamWConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");

    // Uninterrupted: 6 steps.
    let varmap = VarMap::new();
    let model = build(&varmap).unwrap();
    let initial: Vec<(String, Tensor)> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap())).collect();
    let mut opt = AdamW::new(&varmap, config).unwrap();
    train(&model, &mut opt, 6).unwrap();
    let straight = snapshot(&varmap);

    // Interrupted: same start, 3 steps, checkpoint, a fresh process's model and optimizer, 3 more steps.
    let mut varmap_a = VarMap::new();
    let model_a = build(&varmap_a).unwrap();
    for (name, t) in &initial {
        varmap_a.set_one(name, t).unwrap();
    }
    let mut opt_a = AdamW::new(&varmap_a, config).unwrap();
    train(&model_a, &mut opt_a, 3).unwrap();
    checkpoint::save(&path, &varmap_a, Some(&opt_a), |p, bytes| std::fs::write(p, bytes).map_err(|e| e.to_string()))
        .unwrap();

    let varmap_b = VarMap::new();
    let model_b = build(&varmap_b).unwrap();
    let mut opt_b = AdamW::new(&varmap_b, config).unwrap();
    checkpoint::load(&path, &varmap_b, Some(&mut opt_b)).unwrap();
    assert_eq!(opt_b.steps(), 3);
    train(&model_b, &mut opt_b, 3).unwrap();
    let resumed = snapshot(&varmap_b);
    assert_eq!(straight, resumed, "resumed parameters differ from the uninterrupted run");

    // Without the optimizer state the run diverges: the test can tell the difference.
    let varmap_c = VarMap::new();
    let model_c = build(&varmap_c).unwrap();
    let mut opt_c = AdamW::new(&varmap_c, config).unwrap();
    checkpoint::load(&path, &varmap_c, None).unwrap();
    train(&model_c, &mut opt_c, 3).unwrap();
    assert_ne!(straight, snapshot(&varmap_c), "fresh moments should change the trajectory");
}
