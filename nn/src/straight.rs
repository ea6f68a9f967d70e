//! Straight-through values: a forward value taken from one tensor, a gradient routed to another.
//!
//! NP-FH (DeepAFx-ST) trains with the REAL plugin's output as the forward value and the neural proxy's Jacobian
//! as the backward: `y = y_proxy + stopgrad(y_real − y_proxy)`. Written with `+` and `−` that value is only
//! approximately `y_real` in floating point (`a + (b − a) ≠ b` in general); [`straight_through`] returns
//! `y_real`'s exact bits and hands the incoming gradient to `y_proxy` unchanged.

use candle_core::{CustomOp2, Result, Tensor, bail};

use crate::passthrough::passthrough_fwd;

/// A tensor whose value is `value` bit for bit and whose gradient flows to `gradient_path` as if it were the
/// identity of `gradient_path` (`value` gets none). Both must have the same shape.
///
/// ```
/// use afx_nn::straight::straight_through;
/// use candle_core::{Device, Tensor, Var};
///
/// let real = Tensor::new(&[0.1f32, 0.2, 0.3], &Device::Cpu)?;
/// let theta = Var::new(&[1.0f32, 2.0, 3.0], &Device::Cpu)?;
/// let proxy = (theta.as_tensor() * 0.5)?; // a differentiable stand-in for the real thing
/// let y = straight_through(&real, &proxy)?;
/// assert_eq!(y.to_vec1::<f32>()?, real.to_vec1::<f32>()?);
/// let grads = y.sum_all()?.backward()?;
/// assert_eq!(grads.get(theta.as_tensor()).unwrap().to_vec1::<f32>()?, vec![0.5, 0.5, 0.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn straight_through(value: &Tensor, gradient_path: &Tensor) -> Result<Tensor> {
    if value.dims() != gradient_path.dims() {
        bail!("straight_through: value {:?} and gradient path {:?} differ in shape", value.dims(), gradient_path.dims())
    }
    let value = value.detach().contiguous()?;
    if !gradient_path.track_op() {
        return Ok(value);
    }
    value.apply_op2(gradient_path, StraightThrough)
}

struct StraightThrough;

impl CustomOp2 for StraightThrough {
    fn name(&self) -> &'static str {
        "afx-straight-through"
    }

    passthrough_fwd!(op2);

    fn bwd(
        &self,
        _value: &Tensor,
        _path: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(grad.clone())))
    }
}
