//! `afx bench model`: the network side of training, timed in afx (candle, CPU) and in PyTorch in one run.
//!
//! Two workloads, each at the defaults of the command it stands for:
//! - `train`: the network parts of `afx train`'s SPSA step ([`TrainConfig::default`](afx_trainer::train::TrainConfig::default)), through the trainer's own
//!   code: (1) features, the front end's log-STFT of inputs and references ([`Trainer::features`](afx_trainer::train::Trainer::features)); (2) encoder
//!   and controller forward ([`Trainer::forward_features`](afx_trainer::train::Trainer::forward_features)); (3) the per-item MRSTFT loss of the rendered
//!   output and dL/dy ([`method::loss_gradient`](afx_trainer::method::loss_gradient), what SPSA's forward computes after the renders; the "rendered
//!   output" is the input clip itself: plugins are not part of this bench); (4) the backward of the surrogate
//!   Σ θ·stopgrad(g) through controller and encoder, the clip and AdamW ([`Trainer::update`](afx_trainer::train::Trainer::update)).
//! - `tcn`: one step of `afx train-proxy` ([`ProxyTrainConfig::default`](afx_proxy::train::ProxyTrainConfig::default), [`ProxyTrainer::update`](afx_proxy::train::ProxyTrainer::update)).
//!
//! How a run goes:
//! 1. [`ModelBenchSpec::new`] takes the shapes from afx's own defaults and [`write_inputs`] writes the inputs
//!    (crops of real recordings, else a seeded test signal) to a safetensors file; the spec, as JSON, is all the
//!    PyTorch script (`scripts/bench_model_torch.py`) reads: it hard-codes no shape.
//! 2. Each workload runs in child processes of its own, one per side and thread count, so threads and memory
//!    are measured cleanly: afx runs itself (`afx bench model-child`, [`run_child`]) with `RAYON_NUM_THREADS`
//!    and `CANDLE_NUM_THREADS` at 1 and 2; PyTorch runs the script with `torch.set_num_threads` 2 and 1. A
//!    child sets up (inputs, model, optimizer), reads its resident set (VmRSS) as the baseline, runs one
//!    warm-up step, resets the high-water mark (`5` into `/proc/self/clear_refs`), times N steps and reports
//!    each part's median and its working set, VmHWM − baseline.
//! 3. [`write_reference`]: afx's θ, per-item loss, dL/dy, proxy output and proxy loss at fixed weights; the
//!    script loads the same weights and reports how far its values are from afx's (`check`), so the two sides
//!    are shown to compute the same networks and loss.
//!
//! The module's files follow those steps: [`spec`] (1), [`child`] (2, in each child), [`reference`](mod@reference) (3), [`run`]
//! (the parent: 1 to 3 and the figures put together) and [`report`] (the table).

pub mod child;
mod error;
pub mod reference;
pub mod report;
pub mod run;
pub mod spec;

pub use child::{Check, ChildResult, Workload, child_main, run_child};
pub use error::ModelError;
pub use reference::write_reference;
pub use run::{ModelBench, ModelBenchOptions, Side, SideFigures, bench_model, torch_version};
pub use spec::{ModelBenchSpec, OutputGain, ParamShape, write_inputs};
