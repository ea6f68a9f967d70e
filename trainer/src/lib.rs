//! Self-supervised training of an encoder/controller that predicts plugin parameters from (input, style
//! reference), with a choice of gradient method (SPSA, NP-FH, NP-HH, proxy), and whole-file inference.
//!
//! Not built yet: this crate holds its place in the workspace until the trainer issue.
