//! Reproducible initialisation: candle's CPU generator cannot be seeded, so two runs with one seed would start
//! from different weights. [`seeded_uniform`] re-draws a VarMap's weights from a seed.

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Re-draws every weight matrix/kernel (rank ≥ 2) of `varmap` uniform in ±gain(name)/√fan_in, as PyTorch's
/// default, from a stream keyed by `seed` and the variable's name (so adding a layer does not shift the others),
/// and zeroes `zero_bias(name)` 1-D tensors. Other 1-D tensors (norm scales, PReLU slopes, running statistics)
/// keep their constructor values.
pub fn seeded_uniform(
    varmap: &VarMap,
    seed: u64,
    gain: impl Fn(&str) -> f64,
    zero_bias: impl Fn(&str) -> bool,
) -> Result<()> {
    let Ok(data) = varmap.data().lock() else { bail!("init: the VarMap's lock is poisoned") };
    for (name, var) in data.iter() {
        let dims = var.dims().to_vec();
        let values = if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let bound = gain(name) / (fan_in as f64).sqrt();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
            let v: Vec<f32> = (0..var.elem_count())
                .map(|_| (((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound) as f32)
                .collect();
            Tensor::from_vec(v, dims.as_slice(), var.device())?
        } else if zero_bias(name) {
            Tensor::zeros(dims.as_slice(), DType::F32, var.device())?
        } else {
            continue;
        };
        var.set(&values.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// FNV-1a: a hash of a variable's name that, unlike std's, is the same in every Rust version.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}
