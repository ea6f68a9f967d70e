//! Loading a trained proxy for inference: the newest checkpoint of a proxy run as a [`Proxy`]. Apart from
//! `model` so that the model needs nothing from training (whose run folder holds the checkpoints).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use afx_core::FileError;

use crate::ProxyError;
use crate::model::Proxy;
use crate::train::latest_checkpoint;

impl Proxy {
    /// The newest checkpoint of the proxy run in `dir`, for inference (BatchNorm running statistics; the weights
    /// are constants, not variables, so a backward through the proxy computes no gradient for them).
    pub fn load(dir: &Path, device: &Device) -> Result<Proxy, ProxyError> {
        let (checkpoint, weights) =
            latest_checkpoint(dir)?.ok_or_else(|| ProxyError::NoCheckpoint { path: dir.to_path_buf() })?;
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(&weights, device).map_err(|e| FileError::format(&weights, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Proxy::new(checkpoint.meta, vb, dir)
            .map_err(|e| FileError::format(&weights, format!("does not fit its metadata: {e}")).into())
    }
}
