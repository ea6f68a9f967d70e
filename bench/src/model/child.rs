//! One child of `afx bench model` (`afx bench model-child`): one workload timed in this process at the thread
//! count its environment sets, its memory read from /proc, the result printed as one JSON line.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use afx_core::Audio;
use afx_proxy::train::ProxyTrainer;
use afx_trainer::TrainError;
use afx_trainer::method::spsa::Spsa;
use afx_trainer::method::{self, Gradients, ItemGradient};
use afx_trainer::train::Trainer;
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::error::io_error;
use super::spec::{Inputs, ModelBenchSpec};
use crate::stats::midpoint_median as median;

/// Which network a child times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// The four network parts of a training step.
    Train,
    /// The proxy's training step.
    Tcn,
}

impl Workload {
    pub const ALL: [Workload; 2] = [Workload::Train, Workload::Tcn];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Train => "train",
            Workload::Tcn => "tcn",
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| format!("unknown workload {s:?}: train or tcn"))
    }
}

/// What one child process reports (afx's and the script's print the same JSON object): each timed part's median
/// seconds (the train parts or the TCN step, by workload) and its memory in MiB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildResult {
    pub features_s: Option<f64>,
    pub encoder_forward_s: Option<f64>,
    pub loss_s: Option<f64>,
    pub backward_s: Option<f64>,
    pub tcn_step_s: Option<f64>,
    /// VmRSS after setup, before the warm-up step.
    pub baseline_rss_mib: Option<f64>,
    /// VmHWM over the timed steps (the mark reset after the warm-up).
    pub vm_hwm_mib: Option<f64>,
    /// The working set: `vm_hwm_mib − baseline_rss_mib`.
    pub peak_mem_mib: Option<f64>,
    /// The script's torch version.
    pub version: Option<String>,
    /// The script's agreement with [`write_reference`](super::reference::write_reference) (the train workload at 2 threads reports it).
    pub check: Option<Check>,
}

/// How far PyTorch's values are from afx's at the same weights and inputs (relative: over the largest
/// magnitude of afx's values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Check {
    /// θ `(B, P)` of the encoder and controller.
    pub theta_max_abs_diff: Option<f64>,
    /// The per-item MRSTFT loss.
    pub loss_max_rel_diff: Option<f64>,
    /// dL/dy of the loss: ‖Δ‖₂ / ‖afx's‖₂. In f32 it is only as accurate as its near-silent bins allow (the
    /// log-magnitude term's gradient goes as 1/|X|), so each side's distance to a float64 evaluation (by PyTorch)
    /// is given too: afx agrees with PyTorch when its error is no larger than PyTorch's own.
    pub grad_y_rel_diff: Option<f64>,
    pub grad_y_f64_error_afx: Option<f64>,
    pub grad_y_f64_error_torch: Option<f64>,
    /// The proxy's output over the whole window.
    pub tcn_output_max_rel_diff: Option<f64>,
    /// The proxy step's loss (MRSTFT + L1 on the patch).
    pub tcn_loss_rel_diff: Option<f64>,
}

/// The resident set and its high-water mark from /proc (Linux); `None` elsewhere.
pub mod memory {
    fn status_kib(field: &str) -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// VmRSS in MiB.
    pub fn rss_mib() -> Option<f64> {
        status_kib("VmRSS:").map(|k| k / 1024.0)
    }

    /// VmHWM (peak resident set since start or the last [`reset_peak`]) in MiB.
    pub fn hwm_mib() -> Option<f64> {
        status_kib("VmHWM:").map(|k| k / 1024.0)
    }

    /// Resets VmHWM to the current resident set; false where the kernel does not allow it.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// Runs `step` once to warm up and `steps` times timed, measuring memory as the module doc says; `step` returns
/// the seconds of each part. Returns each part's median and the memory figures.
fn timed(
    steps: usize,
    mut step: impl FnMut(u64) -> Result<Vec<f64>, TrainError>,
) -> Result<(Vec<f64>, ChildResult), TrainError> {
    let baseline = memory::rss_mib();
    step(1)?;
    let reset = memory::reset_peak();
    let mut parts: Vec<Vec<f64>> = vec![];
    for s in 0..steps {
        let seconds = step(s as u64 + 2)?;
        parts.resize(seconds.len(), vec![]);
        for (all, t) in parts.iter_mut().zip(seconds) {
            all.push(t);
        }
    }
    let hwm = if reset { memory::hwm_mib() } else { None };
    let result = ChildResult {
        baseline_rss_mib: baseline,
        vm_hwm_mib: hwm,
        peak_mem_mib: baseline.zip(hwm).map(|(b, h)| h - b),
        ..ChildResult::default()
    };
    Ok((parts.into_iter().map(median).collect(), result))
}

/// One child's measurement of `workload` in this process, at the thread count its environment sets.
pub fn run_child(spec: &ModelBenchSpec, workload: Workload) -> Result<ChildResult, TrainError> {
    if spec.steps == 0 {
        return Err(TrainError::Config("--steps must be positive".into()));
    }
    let inputs = Inputs::read(spec)?;
    match workload {
        Workload::Train => {
            let mut trainer = Trainer::new(spec.train.clone(), spec.chain(), Device::Cpu)?;
            let spsa = Spsa::new(spec.train.spsa.clone())?;
            let (input, reference, target) =
                (inputs.clips("input")?, inputs.clips("reference")?, inputs.clips("target")?);
            let (input, reference, target): (Vec<&Audio>, Vec<&Audio>, Vec<&Audio>) =
                (input.iter().collect(), reference.iter().collect(), target.iter().collect());
            let grad_theta = inputs.tensor("grad_theta")?.to_vec2::<f32>()?;
            let (parts, result) = timed(spec.steps, |step| {
                let t = Instant::now();
                let (x, r) = trainer.features(&input, &reference)?;
                let features = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let theta = trainer.forward_features(&x, &r)?;
                let forward = t.elapsed().as_secs_f64();
                let t = Instant::now();
                // The rendered output is the input clip itself: no plugin in this bench.
                let scored = method::loss_gradient(spsa.loss(), &input, &target)?;
                let loss = t.elapsed().as_secs_f64();
                let items = scored
                    .losses
                    .iter()
                    .zip(&grad_theta)
                    .map(|(&loss, g)| Ok(ItemGradient { loss, grad: g.clone() }))
                    .collect();
                let gradients = Gradients { items, timing: Default::default(), output: None };
                let t = Instant::now();
                trainer.update(&gradients, &theta, spec.train.lr_at(step))?;
                Ok(vec![features, forward, loss, t.elapsed().as_secs_f64()])
            })?;
            Ok(ChildResult {
                features_s: Some(parts[0]),
                encoder_forward_s: Some(parts[1]),
                loss_s: Some(parts[2]),
                backward_s: Some(parts[3]),
                ..result
            })
        }
        Workload::Tcn => {
            let mut trainer = ProxyTrainer::new(&spec.proxy_run(), &Device::Cpu, Path::new("(bench)"))?;
            let (x, target, theta) =
                (inputs.tensor("tcn_x")?, inputs.tensor("tcn_target")?, inputs.tensor("tcn_theta")?);
            let (parts, result) = timed(spec.steps, |_| {
                let t = Instant::now();
                trainer.update(&spec.proxy, x, target, theta)?;
                Ok(vec![t.elapsed().as_secs_f64()])
            })?;
            Ok(ChildResult { tcn_step_s: Some(parts[0]), ..result })
        }
    }
}

/// `afx bench model-child SPEC --workload W`: one child's measurement, printed as one JSON line.
pub fn child_main(spec: &Path, workload: Workload) -> Result<(), TrainError> {
    let spec = ModelBenchSpec::read(spec)?;
    let result = run_child(&spec, workload)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&result).expect("serialises")).map_err(io_error("stdout"))
}
