//! One safetensors file holding a model's variables and, optionally, its optimizer state, written atomically by
//! the caller's writer (afx's: `afx_core::atomic`). The folder of numbered checkpoints they go in is
//! `afx_core::run_folder::CheckpointDir`.
//!
//! Variable names are the VarMap's (they mirror the module tree, e.g. `tcn.block0.conv.weight`); optimizer tensors
//! carry [`crate::optim::STATE_PREFIX`].

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor, bail};
use candle_nn::VarMap;

use crate::optim::{AdamW, STATE_PREFIX};

/// Writes `varmap` (and `optimizer`'s state) to `path` through `write`, which must put the bytes there
/// atomically: afx passes `afx_core::atomic::write` (a temporary file beside `path`, fsync, rename), the writer
/// of every other file of a run, so a crash never leaves a half-written checkpoint under `path` and a finished
/// one is on disk. The writer is the caller's, so this crate needs no file-system policy of its own.
pub fn save(
    path: &Path,
    varmap: &VarMap,
    optimizer: Option<&AdamW>,
    write: impl FnOnce(&Path, &[u8]) -> std::result::Result<(), String>,
) -> Result<()> {
    let bytes = to_bytes(varmap, optimizer)?;
    write(path, &bytes).map_err(|e| candle_core::Error::Msg(format!("checkpoint {}: {e}", path.display())))
}

/// The safetensors file [`save`] writes, in memory.
pub fn to_bytes(varmap: &VarMap, optimizer: Option<&AdamW>) -> Result<Vec<u8>> {
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
    safetensors::serialize(&tensors, None).map_err(|e| candle_core::Error::Msg(format!("checkpoint: {e}")))
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

#[cfg(test)]
mod tests {
    use candle_core::DType;
    use candle_nn::{Init, VarBuilder};

    use super::*;

    fn varmap(value: f64) -> VarMap {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        vb.get_with_hints(3, "w", Init::Const(value)).unwrap();
        varmap
    }

    #[test]
    fn save_hands_the_whole_file_to_the_callers_writer_and_reports_its_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let saved = varmap(0.5);
        let mut calls = vec![];
        let write = |p: &Path, bytes: &[u8]| {
            calls.push((p.to_path_buf(), bytes.to_vec()));
            std::fs::write(p, bytes).map_err(|e| e.to_string())
        };
        save(&path, &saved, None, write).unwrap();
        assert_eq!(calls, [(path.clone(), to_bytes(&saved, None).unwrap())], "one call with the whole file");
        let loaded = varmap(0.0);
        load(&path, &loaded, None).unwrap();
        assert_eq!(loaded.data().lock().unwrap()["w"].as_tensor().to_vec1::<f32>().unwrap(), [0.5; 3]);

        let e = save(&path, &saved, None, |_, _| Err("disk full".into())).unwrap_err().to_string();
        assert!(e.contains("disk full") && e.contains("model.safetensors"), "{e}");
    }
}
