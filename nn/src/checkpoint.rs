//! One safetensors file holding a model's variables and, optionally, its optimizer state, written atomically.
//!
//! Variable names are the VarMap's (they mirror the module tree, e.g. `tcn.block0.conv.weight`); optimizer tensors
//! carry [`crate::optim::STATE_PREFIX`].

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor, bail};
use candle_nn::VarMap;

use crate::optim::{AdamW, STATE_PREFIX};

/// Writes `varmap` (and `optimizer`'s state) to `path` through a temporary file in the same folder and a rename,
/// so a crash never leaves a half-written checkpoint under `path`.
pub fn save(path: &Path, varmap: &VarMap, optimizer: Option<&AdamW>) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = match varmap.data().lock() {
        Ok(data) => data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(),
        Err(_) => bail!("checkpoint: the VarMap's lock is poisoned"),
    };
    if tensors.keys().any(|k| k.starts_with(STATE_PREFIX)) {
        bail!("checkpoint: a model variable name starts with the reserved prefix {STATE_PREFIX:?}")
    }
    if let Some(opt) = optimizer {
        tensors.extend(opt.state()?);
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        candle_core::Error::Msg(format!("checkpoint: renaming {} to {}: {e}", tmp.display(), path.display()))
    })
}

/// Loads a checkpoint written by [`save`] into an existing `varmap` (build the model first: every variable must
/// be in the file) and, if given, `optimizer`.
pub fn load(path: &Path, varmap: &VarMap, optimizer: Option<&mut AdamW>) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| candle_core::Error::Msg(format!("checkpoint {}: {e}", path.display())))?;
    match varmap.data().lock() {
        Ok(data) => {
            for (name, var) in data.iter() {
                let Some(t) = tensors.get(name) else {
                    bail!("checkpoint {}: no tensor for variable {name}", path.display())
                };
                if t.dims() != var.dims() {
                    bail!("checkpoint {}: {name} has shape {:?}, the model {:?}", path.display(), t.dims(), var.dims())
                }
                var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
            }
        }
        Err(_) => bail!("checkpoint: the VarMap's lock is poisoned"),
    }
    if let Some(opt) = optimizer {
        opt.load_state(&tensors)?;
    }
    Ok(())
}

/// A folder of numbered checkpoints, `step-NNNNNNNN.safetensors` (the weights, [`save`]) each with a
/// `step-NNNNNNNN.json` written by the caller AFTER the weights: a checkpoint counts once its JSON exists, so a
/// kill at any moment leaves the previous one usable. Runs of the trainer and of the proxy both keep one.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: std::path::PathBuf,
}

impl CheckpointDir {
    pub fn new(dir: impl Into<std::path::PathBuf>) -> CheckpointDir {
        CheckpointDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Paths of the weights and metadata of the checkpoint after `step` steps.
    pub fn paths(&self, step: u64) -> (std::path::PathBuf, std::path::PathBuf) {
        (self.dir.join(format!("step-{step:08}.safetensors")), self.dir.join(format!("step-{step:08}.json")))
    }

    /// The metadata file of the newest complete checkpoint (none when the folder is missing or empty).
    pub fn latest(&self) -> std::io::Result<Option<std::path::PathBuf>> {
        Ok(self.stems()?.pop().map(|stem| self.dir.join(format!("{stem}.json"))))
    }

    /// Removes all but the newest `keep` checkpoints.
    pub fn prune(&self, keep: usize) -> std::io::Result<()> {
        let stems = self.stems()?;
        let drop = stems.len().saturating_sub(keep);
        for stem in &stems[..drop] {
            // The JSON first: without it the weights are ignored, so a kill between the two removals is harmless.
            for ext in ["json", "safetensors"] {
                match std::fs::remove_file(self.dir.join(format!("{stem}.{ext}"))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// `step-NNNNNNNN` of every checkpoint with metadata, oldest first.
    fn stems(&self) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut stems: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|n| n.starts_with("step-"))
            .collect();
        stems.sort();
        Ok(stems)
    }
}
