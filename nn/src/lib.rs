//! candle building blocks shared by `proxy` and `trainer`: conv ops with correct gradients, the
//! differentiable STFT and MRSTFT loss, a saveable optimizer, checkpoint I/O.
//!
//! Not built yet: this crate holds its place in the workspace until the trainer issue.
