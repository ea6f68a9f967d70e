//! afx's values at fixed weights, which the PyTorch script loads to show that both sides compute the same
//! networks and loss.

use std::collections::HashMap;
use std::path::Path;

use afx_core::Audio;
use afx_proxy::train::ProxyTrainer;
use afx_trainer::TrainError;
use afx_trainer::method;
use afx_trainer::method::spsa::Spsa;
use afx_trainer::train::Trainer;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::spec::{Inputs, ModelBenchSpec, Reference};

/// Re-draws every weight of `varmap` from `seed`, 1-D ones (biases, norm scales, PReLU slopes) included, so that
/// a check at these weights exercises every one of them (unlike training's init, which zeroes biases and scales
/// the last layers down).
fn check_weights(varmap: &VarMap, seed: u64) -> Result<(), TrainError> {
    afx_nn::init::seeded_uniform(varmap, seed, |_| 1.0, |_| false)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Ok(named) = varmap.data().lock() else {
        return Err(TrainError::Config("the VarMap's lock is poisoned".into()));
    };
    let mut names: Vec<&String> = named.keys().collect();
    names.sort();
    for name in names {
        let var = &named[name];
        if var.rank() != 1 {
            continue;
        }
        let current = var.to_vec1::<f32>()?;
        let drawn: Vec<f32> =
            current.iter().map(|&v| v + 0.2 * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)).collect();
        var.set(&Tensor::from_vec(drawn, current.len(), var.device())?)?;
    }
    Ok(())
}

/// Computes afx's values at fixed weights (`check_weights`) on the bench's inputs and writes them, with the
/// weights, into `dir`: θ from the trainer's model, the per-item loss and dL/dy from the SPSA method's loss
/// code, the proxy's output over the whole window and its training loss. Returns the files (set them as the
/// spec's `reference`).
pub fn write_reference(spec: &ModelBenchSpec, dir: &Path) -> Result<Reference, TrainError> {
    let inputs = Inputs::read(spec)?;
    let reference = Reference {
        model: dir.join("reference-model.safetensors"),
        tcn: dir.join("reference-tcn.safetensors"),
        values: dir.join("reference-values.safetensors"),
    };
    let trainer = Trainer::new(spec.train.clone(), spec.chain(), Device::Cpu)?;
    check_weights(trainer.varmap(), 1)?;
    trainer.varmap().save(&reference.model)?;
    let (input, reference_clips, target) =
        (inputs.clips("input")?, inputs.clips("reference")?, inputs.clips("target")?);
    let input: Vec<&Audio> = input.iter().collect();
    let theta = trainer.predict(&input, &reference_clips.iter().collect::<Vec<_>>())?;
    let spsa = Spsa::new(spec.train.spsa.clone())?;
    let scored = method::loss_gradient(spsa.loss(), &input, &target.iter().collect::<Vec<_>>())?;
    let loss = Tensor::new(scored.losses.iter().map(|&l| l as f32).collect::<Vec<f32>>(), &Device::Cpu)?;
    let grad_rows: Vec<&[f32]> = scored.grad_y.iter().map(|g| g.channel(0)).collect();
    let grad_y = Tensor::new(grad_rows.concat(), &Device::Cpu)?.reshape((grad_rows.len(), ()))?;

    let mut proxy = ProxyTrainer::new(&spec.proxy_run(), &Device::Cpu, Path::new("(bench)"))?;
    check_weights(proxy.varmap(), 2)?;
    proxy.varmap().save(&reference.tcn)?;
    let (x, tcn_target, tcn_theta) =
        (inputs.tensor("tcn_x")?, inputs.tensor("tcn_target")?, inputs.tensor("tcn_theta")?);
    let tcn_output = proxy.proxy().forward_t(x, tcn_theta, true)?.detach();
    // The loss `afx train-proxy` steps on (computed before its update changes the weights).
    let tcn_loss = proxy.update(&spec.proxy, x, tcn_target, tcn_theta)?;
    let values: HashMap<String, Tensor> = [
        ("theta", theta.detach()),
        ("loss", loss),
        ("grad_y", grad_y),
        ("tcn_output", tcn_output),
        ("tcn_loss", Tensor::new(&[tcn_loss as f32], &Device::Cpu)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&values, &reference.values)?;
    Ok(reference)
}
