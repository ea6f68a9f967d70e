//! The parent of `afx bench model`: writes the spec, inputs and reference values, runs afx's children and the
//! PyTorch script's, and puts their figures together ([`bench_model`]).

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use afx_trainer::TrainError;

use super::child::{Check, ChildResult, Workload};
use super::error::ModelError;
use super::error::io_error;
use super::reference::write_reference;
use super::spec::{ModelBenchSpec, ParamShape, TORCH_SCRIPT, TorchShapes, write_inputs};

/// One side's medians at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideFigures {
    pub features_s: f64,
    pub encoder_forward_s: f64,
    pub loss_s: f64,
    pub backward_s: f64,
    /// The four network parts of the training step, summed.
    pub train_step_s: f64,
    pub tcn_step_s: f64,
    /// The train workload's working set (VmHWM over the timed steps − VmRSS before the warm-up) and VmHWM.
    pub peak_mem_mib: Option<f64>,
    pub vm_hwm_mib: Option<f64>,
    /// The same for the TCN workload.
    pub tcn_peak_mem_mib: Option<f64>,
    pub tcn_vm_hwm_mib: Option<f64>,
}

impl SideFigures {
    fn new(train: &ChildResult, tcn: &ChildResult) -> Result<SideFigures, ModelError> {
        let get =
            |v: Option<f64>, what: &str| v.ok_or_else(|| ModelError::Bench(format!("a child did not report {what}")));
        let (features_s, encoder_forward_s) =
            (get(train.features_s, "features_s")?, get(train.encoder_forward_s, "encoder_forward_s")?);
        let (loss_s, backward_s) = (get(train.loss_s, "loss_s")?, get(train.backward_s, "backward_s")?);
        Ok(SideFigures {
            features_s,
            encoder_forward_s,
            loss_s,
            backward_s,
            train_step_s: features_s + encoder_forward_s + loss_s + backward_s,
            tcn_step_s: get(tcn.tcn_step_s, "tcn_step_s")?,
            peak_mem_mib: train.peak_mem_mib,
            vm_hwm_mib: train.vm_hwm_mib,
            tcn_peak_mem_mib: tcn.peak_mem_mib,
            tcn_vm_hwm_mib: tcn.vm_hwm_mib,
        })
    }
}

/// One side at 1 and 2 threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub threads_1: SideFigures,
    pub threads_2: SideFigures,
}

/// What [`bench_model`] measured. Ratios are afx over PyTorch (above 1: afx is slower or larger) and `None`
/// (JSON `null`) when PyTorch could not run, with the reason in `torch_skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBench {
    /// What the inputs are.
    pub inputs: String,
    /// Timed steps per child (medians over them), after one warm-up step.
    pub steps: usize,
    pub num_params: usize,
    pub params_from: String,
    pub spec: TorchShapes,
    pub afx: Side,
    pub torch: Option<Side>,
    pub torch_version: Option<String>,
    pub torch_skipped: Option<String>,
    /// PyTorch's values at afx's weights against afx's (see [`write_reference`]).
    pub check: Option<Check>,
    /// afx's four network parts of the training step at 2 threads over PyTorch's.
    pub train_step_over_torch: Option<f64>,
    /// afx's proxy training step at 2 threads over PyTorch's.
    pub tcn_step_over_torch: Option<f64>,
    /// Working sets at 2 threads, afx over PyTorch: the training step's and the proxy step's.
    pub peak_mem_over_torch: Option<f64>,
    pub tcn_peak_mem_over_torch: Option<f64>,
    /// afx's training-step network parts at 1 thread over 2 threads (and the same for its proxy step).
    pub speedup_2_threads: f64,
    pub tcn_speedup_2_threads: f64,
    /// PyTorch's own 2-over-1-thread speedups.
    pub torch_speedup_2_threads: Option<f64>,
    pub torch_tcn_speedup_2_threads: Option<f64>,
}

/// How [`bench_model`] starts its children and where it writes.
#[derive(Debug, Clone)]
pub struct ModelBenchOptions<'a> {
    pub params: ParamShape,
    /// Timed steps per child.
    pub steps: usize,
    /// afx's child: this program with these arguments, then `SPEC --workload W` (`afx bench model-child`).
    pub afx: &'a Path,
    pub afx_args: &'a [&'a str],
    /// The Python interpreter for the PyTorch side.
    pub python: &'a str,
    /// A folder for the spec, inputs, script and reference values.
    pub scratch: &'a Path,
}

/// The torch version `python` imports, or why it cannot (one line).
pub fn torch_version(python: &str) -> Result<String, String> {
    match Command::new(python).args(["-c", "import torch; print(torch.__version__)"]).output() {
        Err(e) => Err(format!("cannot run {python}: {e}")),
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
            Err(format!("{python} cannot import torch ({last})"))
        }
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
    }
}

/// Runs a child and parses the JSON object it prints last on stdout.
fn run_json(mut command: Command, what: &str) -> Result<ChildResult, ModelError> {
    let out = command.output().map_err(|e| ModelError::Bench(format!("{what}: cannot start: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ModelError::Bench(format!("{what} failed ({}):\n{}", out.status, tail.join("\n"))));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        return Err(ModelError::Bench(format!("{what} printed no result; its stderr:\n{stderr}")));
    };
    serde_json::from_str(line).map_err(|e| ModelError::Bench(format!("{what} printed {line:?}: {e}")))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a / b).filter(|r| r.is_finite() && *r > 0.0)
}

/// Writes the spec and inputs, runs afx's children at 1 and 2 threads and, when `python` imports torch, the
/// script's at 2 and 1 threads (after afx's reference values), and puts the figures together.
pub fn bench_model(options: &ModelBenchOptions<'_>) -> Result<ModelBench, ModelError> {
    if options.steps == 0 {
        return Err(ModelError::Train(TrainError::Config("--steps must be positive".into())));
    }
    if options.params.count == 0 {
        return Err(ModelError::Train(TrainError::Config("the chain has no trained parameter".into())));
    }
    let scratch = options.scratch;
    let spec_path = scratch.join("spec.json");
    let mut spec = ModelBenchSpec::new(&options.params, options.steps, &scratch.join("inputs.safetensors"));
    let inputs = write_inputs(&spec)?;
    let torch = torch_version(options.python);
    if torch.is_ok() {
        spec.reference = Some(write_reference(&spec, scratch)?);
    }
    spec.write(&spec_path)?;
    let script = scratch.join("bench_model_torch.py");
    std::fs::write(&script, TORCH_SCRIPT).map_err(io_error(&script))?;

    let afx_child = |workload: Workload, threads: usize| {
        let mut command = Command::new(options.afx);
        command.args(options.afx_args).arg(&spec_path).args(["--workload", workload.name()]);
        command.env("RAYON_NUM_THREADS", threads.to_string()).env("CANDLE_NUM_THREADS", threads.to_string());
        run_json(command, &format!("afx's {} child at {threads} thread(s)", workload.name()))
    };
    let torch_child = |workload: Workload, threads: usize, check: bool| {
        let mut command = Command::new(options.python);
        command.arg(&script).arg(&spec_path).args(["--workload", workload.name(), "--threads", &threads.to_string()]);
        if check {
            command.arg("--check");
        }
        for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
            command.env(var, threads.to_string());
        }
        run_json(command, &format!("the PyTorch script's {} child at {threads} thread(s)", workload.name()))
    };
    // Per workload: afx at 1 and 2 threads, then PyTorch at 2 and 1 (the 2-thread one checks its values).
    let mut afx = [vec![], vec![]];
    let mut torch_results: [Vec<ChildResult>; 2] = [vec![], vec![]];
    for workload in Workload::ALL {
        afx[0].push(afx_child(workload, 1)?);
        afx[1].push(afx_child(workload, 2)?);
        if torch.is_ok() {
            torch_results[1].push(torch_child(workload, 2, true)?);
            torch_results[0].push(torch_child(workload, 1, false)?);
        }
    }
    let side = |r: &[Vec<ChildResult>; 2]| -> Result<Side, ModelError> {
        Ok(Side { threads_1: SideFigures::new(&r[0][0], &r[0][1])?, threads_2: SideFigures::new(&r[1][0], &r[1][1])? })
    };
    let afx = side(&afx)?;
    let torch_side = if torch.is_ok() { Some(side(&torch_results)?) } else { None };
    let check = torch_results[1].iter().filter_map(|r| r.check.clone()).reduce(|a, b| Check {
        theta_max_abs_diff: a.theta_max_abs_diff.or(b.theta_max_abs_diff),
        loss_max_rel_diff: a.loss_max_rel_diff.or(b.loss_max_rel_diff),
        grad_y_rel_diff: a.grad_y_rel_diff.or(b.grad_y_rel_diff),
        grad_y_f64_error_afx: a.grad_y_f64_error_afx.or(b.grad_y_f64_error_afx),
        grad_y_f64_error_torch: a.grad_y_f64_error_torch.or(b.grad_y_f64_error_torch),
        tcn_output_max_rel_diff: a.tcn_output_max_rel_diff.or(b.tcn_output_max_rel_diff),
        tcn_loss_rel_diff: a.tcn_loss_rel_diff.or(b.tcn_loss_rel_diff),
    });
    let t2 = torch_side.as_ref().map(|t| &t.threads_2);
    let t1 = torch_side.as_ref().map(|t| &t.threads_1);
    let a2 = &afx.threads_2;
    Ok(ModelBench {
        inputs,
        steps: options.steps,
        num_params: options.params.count,
        params_from: options.params.source.clone(),
        spec: spec.torch.clone(),
        train_step_over_torch: ratio(Some(a2.train_step_s), t2.map(|t| t.train_step_s)),
        tcn_step_over_torch: ratio(Some(a2.tcn_step_s), t2.map(|t| t.tcn_step_s)),
        peak_mem_over_torch: ratio(a2.peak_mem_mib, t2.and_then(|t| t.peak_mem_mib)),
        tcn_peak_mem_over_torch: ratio(a2.tcn_peak_mem_mib, t2.and_then(|t| t.tcn_peak_mem_mib)),
        speedup_2_threads: afx.threads_1.train_step_s / a2.train_step_s,
        tcn_speedup_2_threads: afx.threads_1.tcn_step_s / a2.tcn_step_s,
        torch_speedup_2_threads: ratio(t1.map(|t| t.train_step_s), t2.map(|t| t.train_step_s)),
        torch_tcn_speedup_2_threads: ratio(t1.map(|t| t.tcn_step_s), t2.map(|t| t.tcn_step_s)),
        torch_version: torch_results[1].iter().find_map(|r| r.version.clone()).or(torch.clone().ok()),
        torch_skipped: torch.err(),
        afx,
        torch: torch_side,
        check,
    })
}
