//! The "forward is a copy, backward is ours" trick that gives any candle computation a hand-written gradient.
//!
//! A layer computes its output `y` with stock candle ops on DETACHED inputs (so candle records no graph for it), then
//! calls `y.apply_op3(x, w, op)`. The op's forward copies `y`; its `bwd` returns the gradients for `x` and `w`
//! computed by the layer's own formulas. This is how [`crate::conv::conv1d`] avoids candle 0.11.1's wrong conv1d
//! backward and how [`crate::stft::Stft`] avoids computing a gradient for its constant DFT basis.

use candle_core::{CpuStorage, Layout, Result, Shape, bail};

/// Copies a contiguous CPU tensor's storage: the forward of every pass-through op.
pub(crate) fn copy_cpu(storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("pass-through op: the forward value must be contiguous (layout {layout:?})")
    };
    let copy = match storage {
        CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[start..end].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[start..end].to_vec()),
        other => bail!("pass-through op: unsupported dtype {:?}", candle_core::backend::BackendStorage::dtype(other)),
    };
    Ok((copy, layout.shape().clone()))
}

/// Copies a contiguous CUDA tensor's storage (the CUDA backend's clone copies the whole buffer, so the value must
/// start at offset 0; the layers only pass freshly computed outputs).
#[cfg(feature = "cuda")]
pub(crate) fn copy_cuda(
    storage: &candle_core::CudaStorage,
    layout: &Layout,
) -> Result<(candle_core::CudaStorage, Shape)> {
    use candle_core::backend::BackendStorage;
    match layout.contiguous_offsets() {
        Some((0, _)) => Ok((storage.try_clone(layout)?, layout.shape().clone())),
        _ => bail!("pass-through op: the forward value must be contiguous from offset 0 (layout {layout:?})"),
    }
}

/// Implements the forward halves of `CustomOp2`/`CustomOp3` for a pass-through op: copy the first argument.
macro_rules! passthrough_fwd {
    (op2) => {
        $crate::custom_op::cpu_fwd!(|self, value, _x| $crate::passthrough::copy_cpu(value.0, value.1));
        $crate::passthrough::passthrough_fwd!(@cuda [_: &candle_core::CudaStorage, _: &candle_core::Layout]);
    };
    (op3) => {
        $crate::custom_op::cpu_fwd!(|self, value, _x, _w| $crate::passthrough::copy_cpu(value.0, value.1));
        $crate::passthrough::passthrough_fwd!(@cuda
            [_: &candle_core::CudaStorage, _: &candle_core::Layout,
             _: &candle_core::CudaStorage, _: &candle_core::Layout]);
    };
    // The CUDA forward, with the (ignored) arguments after the first as `[...]`.
    (@cuda [$($rest:tt)*]) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s1: &candle_core::CudaStorage,
            l1: &candle_core::Layout,
            $($rest)*
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            $crate::passthrough::copy_cuda(s1, l1)
        }
    };
}
pub(crate) use passthrough_fwd;
