//! Gradients of black-box plugin chains: a crash-proof worker pool and the SPSA and finite-difference
//! estimators (DeepAFx's perturbed double renders).
//!
//! Not built yet: this crate holds its place in the workspace (host ← spsa ← trainer) until the SPSA issue.
