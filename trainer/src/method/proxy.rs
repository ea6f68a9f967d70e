//! `proxy` (DeepAFx-ST's "NP"): the neural proxy everywhere in training. Its training step is NP-HH's; the two
//! differ in DeepAFx-ST only by what scores the test, and here validation always scores the real chain (the
//! proxy's own score of the same θ is recorded beside it as `proxy`), so the `proxy` row of a comparison reads
//! that second number.

use super::ProxyPath;
use super::np_hh::NpHh;

/// The `proxy` gradient method.
pub fn proxy_method(path: ProxyPath) -> NpHh {
    NpHh::new(path, "proxy")
}
