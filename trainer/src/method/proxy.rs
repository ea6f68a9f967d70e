//! `proxy` (DeepAFx-ST's "NP"): the neural proxy everywhere in training. Its training step is NP-HH's; the two
//! differ in DeepAFx-ST only by what scores the test, and here validation always scores the real chain (the
//! proxy's own score of the same θ is recorded beside it as `proxy`), so the `proxy` row of a comparison reads
//! that second number.

use afx_nn::loss::MrStftConfig;
use afx_proxy::Proxy;
use candle_core::Device;

use super::np_hh::NpHh;
use crate::TrainError;

/// The `proxy` gradient method.
pub fn proxy_method(proxy: Proxy, loss: &MrStftConfig, device: &Device) -> Result<NpHh, TrainError> {
    NpHh::new(proxy, loss, device, "proxy")
}
