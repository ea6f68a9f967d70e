//! afx's benchmarks, out of the libraries they measure: each times afx against a reference side by side in one
//! run, so machine noise hits both alike, and reports medians.
//!
//! One module per `afx bench` command:
//! - [`render`]: the harness's render against a direct loop on the format's hosting crate (`bench render`).
//! - [`spsa`]: the worker pool: process vs thread workers vs a direct loop, SPSA on 1 and 2 workers (`bench spsa`).
//! - [`train`]: where a training step's time goes (`bench train`).
//! - [`collect`]: `afx collect` with 1 and 2 worker processes, beside the same work without the pool
//!   (`bench collect`).
//! - [`matching`]: `afx match` against a trained controller on the same held-out pairs (`bench match`).
//! - [`model`]: the network side of training in afx and in PyTorch (`bench model` and its children).
//!
//! What they share: [`stats`] (medians) and [`signal`] (the deterministic test signal). What a bench needs from
//! inside a library is public API there, or behind a feature (afx-host's `direct-render` loops).

// The benches return the libraries' own errors (`TrainError`, `MatchError`) as the libraries do, unboxed; clippy
// flags their size only in a crate other than theirs. A bench calls each such function a handful of times.
#![allow(clippy::result_large_err)]

pub mod collect;
pub mod matching;
pub mod model;
pub mod render;
pub mod signal;
pub mod spsa;
pub mod stats;
pub mod train;
