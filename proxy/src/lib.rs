//! Neural proxies of plugin chains (DeepAFx-ST's NP, NP-HH and NP-FH need one):
//!
//! 1. [`collect`]: (input, parameters, output) examples rendered through the REAL chain by the worker pool,
//!    written as shards any number of machines can produce and one manifest merges.
//! 2. [`dataset`]: a collection read back, whole shards held out for validation.
//! 3. [`tcn`]: the conditional TCN (causal dilated conv, BatchNorm, FiLM from θ, PReLU, 1×1 residuals).
//! 4. [`model::Proxy`]: the TCN plus what it models (chain, parameter list, rate); output gains marked in
//!    plugins.toml are applied exactly instead of learned. Loading refuses a proxy of another chain.
//! 5. [`train`]: `afx train-proxy` (MRSTFT + L1, checkpoints, exact resume) and [`quality`]: proxy vs identity
//!    on held-out examples (MRSTFT, SI-SDR).

pub mod collect;
pub mod dataset;
mod error;
mod load;
pub mod model;
pub mod quality;
pub mod tcn;
pub mod train;

pub use error::ProxyError;
pub use model::{Proxy, ProxyMeta, ProxyParam};
