//! How the CPU kernels (`layers_cpu`, `spectral_cpu`, `conv`) become candle custom ops: an argument as the op
//! receives it ([`Arg`]), its contiguous data ([`data`]), the `cpu_fwd` of an op written once per arity
//! (`cpu_fwd!`), and the f32/f64 dispatch of a kernel generic over its element type (`by_dtype!`, or
//! `same_dtype!` for kernels that take the storages' slices).

use candle_core::{CpuStorage, Layout, Result, WithDType, bail};

/// One argument of a CPU custom op: its storage and the layout through which to read it.
pub(crate) type Arg<'a> = (&'a CpuStorage, &'a Layout);

/// The contiguous data of a storage seen through `layout`.
pub(crate) fn data<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => bail!("afx-nn layer kernel: expected a contiguous tensor, got strides {:?}", layout.stride()),
    }
}

/// The `cpu_fwd` method of a `CustomOp1`/`CustomOp2`/`CustomOp3`, for use inside its `impl`:
/// `cpu_fwd!(|self, x, w| body)` binds `self` and each argument, an [`Arg`], for `body`, which returns the
/// output storage and shape.
macro_rules! cpu_fwd {
    (|$self:ident, $a1:ident| $body:expr) => {
        $crate::custom_op::cpu_fwd!(@args $self [s1 l1 $a1] $body);
    };
    (|$self:ident, $a1:ident, $a2:ident| $body:expr) => {
        $crate::custom_op::cpu_fwd!(@args $self [s1 l1 $a1, s2 l2 $a2] $body);
    };
    (|$self:ident, $a1:ident, $a2:ident, $a3:ident| $body:expr) => {
        $crate::custom_op::cpu_fwd!(@args $self [s1 l1 $a1, s2 l2 $a2, s3 l3 $a3] $body);
    };
    // Each argument as `storage layout arg`: the storage and layout parameters, and the name `body` sees them by.
    (@args $self:ident [$($storage:ident $layout:ident $arg:ident),+] $body:expr) => {
        fn cpu_fwd(
            &$self,
            $($storage: &candle_core::CpuStorage, $layout: &candle_core::Layout),+
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            $(let $arg: $crate::custom_op::Arg = ($storage, $layout);)+
            $body
        }
    };
}
pub(crate) use cpu_fwd;

/// `by_dtype!("what", storage, |T| body)`: `body` with the type `T` standing for f32 or f64, by the storage's
/// element type; any other type fails with "what: {dtype} is not supported (f32 or f64)".
macro_rules! by_dtype {
    ($what:literal, $storage:expr, |$t:ident| $body:expr) => {
        match candle_core::backend::BackendStorage::dtype($storage) {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            other => candle_core::bail!(concat!($what, ": {:?} is not supported (f32 or f64)"), other),
        }
    };
}
pub(crate) use by_dtype;

/// `same_dtype!("error", |a, b| (s1, s2) => body)`: `body` with `a`, `b` bound to the storages' slices when all
/// are f32 or all are f64, its `Vec` wrapped in the matching `CpuStorage`; else fails with "error".
macro_rules! same_dtype {
    ($err:expr, |$($slice:ident),+| ($($storage:expr),+) => $body:expr) => {
        match ($($storage,)+) {
            ($(candle_core::CpuStorage::F32($slice),)+) => candle_core::CpuStorage::F32($body),
            ($(candle_core::CpuStorage::F64($slice),)+) => candle_core::CpuStorage::F64($body),
            _ => candle_core::bail!("{}", $err),
        }
    };
}
pub(crate) use same_dtype;
