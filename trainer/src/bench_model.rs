//! `afx bench model`: the network side of training, timed in afx (candle, CPU) and in PyTorch in one run.
//!
//! Two workloads, each at the defaults of the command it stands for:
//! - `train`: the network parts of `afx train`'s SPSA step ([`TrainConfig::default`]), through the trainer's own
//!   code: (1) features, the front end's log-STFT of inputs and references ([`Trainer::features`]); (2) encoder
//!   and controller forward ([`Trainer::forward_features`]); (3) the per-item MRSTFT loss of the rendered
//!   output and dL/dy ([`method::loss_gradient`], what SPSA's forward computes after the renders; the "rendered
//!   output" is the input clip itself: plugins are not part of this bench); (4) the backward of the surrogate
//!   Σ θ·stopgrad(g) through controller and encoder, the clip and AdamW ([`Trainer::update`]).
//! - `tcn`: one step of `afx train-proxy` ([`ProxyTrainConfig::default`], [`ProxyTrainer::update`]).
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

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use afx_core::Audio;
use afx_host::{ParamKind, ParamSpec, Scale};
use afx_nn::stft::POWER_FLOOR;
use afx_proxy::train::{ProxyRun, ProxyTrainConfig, ProxyTrainer};
use afx_proxy::{ProxyMeta, ProxyParam};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::chain_info::{ChainInfo, TrainedParam};
use crate::method::spsa::Spsa;
use crate::method::{self, Gradients, ItemGradient};
use crate::train::{TrainConfig, Trainer};
use crate::{TrainError, frontend, model};

/// The PyTorch side, written next to the spec for each run.
pub const TORCH_SCRIPT: &str = include_str!("../../scripts/bench_model_torch.py");

/// A θ entry the proxy applies exactly as an output gain in dB (a compressor's makeup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputGain {
    pub index: usize,
    pub min_db: f64,
    pub max_db: f64,
}

/// The size of θ and its output gains.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamShape {
    pub count: usize,
    pub output_gains: Vec<OutputGain>,
    /// Where the count comes from, for the report.
    pub source: String,
}

impl ParamShape {
    /// The trained parameters of `chain` in `config`, counted from plugins.toml without loading a plugin: each
    /// stage's `train = true` entries, and the last stage's `output_gain` ones with a linear range as gains.
    /// Their order inside a stage is the file's (a plugin's own order needs the plugin; for a benchmark only the
    /// count and the gains matter). `None` when the file has no such chain (or plugin) or it trains nothing.
    pub fn from_config(config: &afx_host::Config, chain: &str) -> Option<ParamShape> {
        let stages: Vec<&str> = match config.chains.get(chain) {
            Some(c) => c.plugins.iter().map(String::as_str).collect(),
            None if config.plugins.contains_key(chain) => vec![chain],
            None => return None,
        };
        let (mut count, mut output_gains) = (0, vec![]);
        for (s, name) in stages.iter().enumerate() {
            let plugin = config.plugins.get(*name)?;
            for entry in plugin.params.values().filter(|e| e.train) {
                let linear = entry.scale.is_none_or(|s| s == Scale::Linear);
                if let (true, true, Some(min), Some(max)) =
                    (s + 1 == stages.len(), entry.output_gain, entry.min, entry.max)
                    && linear
                {
                    output_gains.push(OutputGain { index: count, min_db: f64::from(min), max_db: f64::from(max) });
                }
                count += 1;
            }
        }
        let source = format!("chain {chain} in {}", config.path.display());
        (count > 0).then_some(ParamShape { count, output_gains, source })
    }

    /// `count` parameters, no output gain.
    pub fn plain(count: usize, source: &str) -> ParamShape {
        ParamShape { count, output_gains: vec![], source: source.to_string() }
    }
}

/// Everything both sides need, written by the parent as `spec.json`: afx's configs (its children read them) and
/// the flat shapes the PyTorch script reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBenchSpec {
    /// Timed steps per child (after one warm-up step).
    pub steps: usize,
    pub num_params: usize,
    pub output_gains: Vec<OutputGain>,
    pub train: TrainConfig,
    pub proxy: ProxyTrainConfig,
    /// The inputs (safetensors, see [`write_inputs`]).
    pub inputs: PathBuf,
    /// afx's values at fixed weights, when written ([`write_reference`]).
    pub reference: Option<Reference>,
    pub torch: TorchShapes,
}

/// The files of [`write_reference`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The trainer's VarMap (encoder and controller).
    pub model: PathBuf,
    /// The proxy's VarMap (TCN).
    pub tcn: PathBuf,
    /// `theta`, `loss`, `grad_y`, `tcn_output`, `tcn_loss`.
    pub values: PathBuf,
}

/// The networks, loss and optimizer settings as flat numbers, for the PyTorch script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorchShapes {
    pub train: TrainShapes,
    pub tcn: TcnShapes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossShapes {
    pub fft_sizes: Vec<usize>,
    pub hops: Vec<usize>,
    pub time_l1_weight: f64,
    /// Floor under |X|² before the square root.
    pub power_floor: f64,
}

impl LossShapes {
    fn new(fft_sizes: &[usize], time_l1_weight: f64) -> LossShapes {
        // nn's MrStftLoss: hop n/4, periodic Hann window, zero-padded centred frames.
        let hops = fft_sizes.iter().map(|&n| (n / 4).max(1)).collect();
        LossShapes { fft_sizes: fft_sizes.to_vec(), hops, time_l1_weight, power_floor: POWER_FLOOR }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamShapes {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
}

impl AdamShapes {
    fn new(adam: afx_nn::optim::AdamWConfig, grad_clip: f64) -> AdamShapes {
        AdamShapes {
            lr: adam.lr,
            betas: [adam.beta1, adam.beta2],
            eps: adam.eps,
            weight_decay: adam.weight_decay,
            grad_clip,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainShapes {
    pub batch: usize,
    pub frames: usize,
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop: usize,
    /// The front end divides ln|X| by this.
    pub log_scale: f64,
    pub channels: Vec<usize>,
    /// GroupNorm groups (each layer: min(groups, channels)).
    pub groups: usize,
    pub norm_eps: f64,
    pub hidden: usize,
    pub num_params: usize,
    pub loss: LossShapes,
    pub optimizer: AdamShapes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcnShapes {
    pub batch: usize,
    pub patch: usize,
    /// Frames of context before each patch (receptive field − 1); the network sees `context + patch`.
    pub context: usize,
    pub channels: usize,
    pub kernel: usize,
    pub dilations: Vec<usize>,
    pub cond_hidden: usize,
    pub input_skip: bool,
    pub batch_norm: bool,
    pub num_params: usize,
    pub output_gains: Vec<OutputGain>,
    pub loss: LossShapes,
    pub optimizer: AdamShapes,
}

impl ModelBenchSpec {
    /// The defaults of `afx train` and `afx train-proxy` for θ of `params`; `inputs` is where
    /// [`write_inputs`] puts the inputs.
    pub fn new(params: &ParamShape, steps: usize, inputs: &Path) -> ModelBenchSpec {
        let train = TrainConfig::default();
        let proxy = ProxyTrainConfig::default();
        let m = &train.model;
        let train_shapes = TrainShapes {
            batch: train.batch,
            frames: train.frames(),
            sample_rate: train.sample_rate,
            n_fft: m.n_fft,
            hop: m.hop,
            log_scale: frontend::LOG_SCALE,
            channels: m.channels.clone(),
            groups: m.groups,
            norm_eps: model::NORM_EPS,
            hidden: m.hidden,
            num_params: params.count,
            loss: LossShapes::new(&train.spsa.loss.fft_sizes, train.spsa.loss.time_l1_weight),
            optimizer: AdamShapes::new(train.adam(), train.grad_clip),
        };
        let t = &proxy.tcn;
        let tcn_shapes = TcnShapes {
            batch: proxy.batch,
            patch: proxy.patch,
            context: t.receptive_field() - 1,
            channels: t.channels,
            kernel: t.kernel,
            dilations: t.dilations.clone(),
            cond_hidden: t.cond_hidden,
            input_skip: t.input_skip,
            batch_norm: t.batch_norm,
            num_params: params.count,
            output_gains: params.output_gains.clone(),
            loss: LossShapes::new(&proxy.fft_sizes, proxy.time_l1_weight),
            optimizer: AdamShapes::new(proxy.adam(), proxy.grad_clip),
        };
        ModelBenchSpec {
            steps,
            num_params: params.count,
            output_gains: params.output_gains.clone(),
            train,
            proxy,
            inputs: inputs.to_path_buf(),
            reference: None,
            torch: TorchShapes { train: train_shapes, tcn: tcn_shapes },
        }
    }

    pub fn read(path: &Path) -> Result<ModelBenchSpec, TrainError> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Format { path: path.into(), message: e.to_string() })
    }

    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(self).expect("the spec serialises");
        std::fs::write(path, text).map_err(TrainError::io(path))
    }

    /// A chain of `num_params` parameters for the trainer (no plugin is loaded: only its size is used).
    fn chain(&self) -> ChainInfo {
        let params = (0..self.num_params)
            .map(|i| TrainedParam { stage: "bench".into(), spec: param(i, 0.0, 1.0), default_normalized: 0.5 })
            .collect();
        ChainInfo { name: "bench".into(), params, stages: vec![] }
    }

    /// What the proxy models: `num_params` parameters, the output gains among them.
    fn proxy_run(&self) -> ProxyRun {
        let params = (0..self.num_params)
            .map(|i| match self.output_gains.iter().find(|g| g.index == i) {
                Some(g) => ProxyParam {
                    stage: "bench".into(),
                    spec: param(i, g.min_db as f32, g.max_db as f32),
                    output_gain: true,
                },
                None => ProxyParam { stage: "bench".into(), spec: param(i, 0.0, 1.0), output_gain: false },
            })
            .collect();
        let meta = ProxyMeta {
            chain: "bench".into(),
            params,
            sample_rate: self.train.sample_rate,
            tcn: self.proxy.tcn.clone(),
        };
        ProxyRun { config: self.proxy.clone(), meta, dataset: PathBuf::from("(bench)") }
    }
}

fn param(i: usize, min: f32, max: f32) -> ParamSpec {
    ParamSpec {
        id: format!("p{i}"),
        name: format!("p{i}"),
        unit: None,
        min,
        max,
        default: min,
        scale: Scale::Linear,
        kind: ParamKind::Continuous,
    }
}

/// A stand-in for the chain that made a target: a one-pole low-pass (an EQ's tilt) at −3 dB, run over the
/// whole row. Cheap, deterministic, and not the identity, so the loss and its gradient are not degenerate.
fn stand_in_chain(x: &[f32]) -> Vec<f32> {
    let (a, gain) = (0.7f32, 0.708f32);
    let mut state = 0.0f32;
    x.iter()
        .map(|&s| {
            state = a * state + (1.0 - a) * s;
            gain * state
        })
        .collect()
}

/// The crops the inputs are cut from: the loops of Debian's sonic-pi-samples (real recordings, CC0; the demo
/// corpus's music) when installed, else 30 s of the render bench's test signal (seeded noise under a slow
/// envelope). Returns the corpus and what it is.
fn source_corpus(sample_rate: u32) -> Result<(afx_datasets::Corpus, String), TrainError> {
    let dir = Path::new(afx_datasets::demo::SONIC_PI_SAMPLES);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("loop_") && n.ends_with(".flac"))
    });
    paths.sort();
    let clips: Vec<(PathBuf, Audio)> =
        paths.iter().filter_map(|p| afx_core::audio_file::load_audio(p).ok().map(|a| (p.clone(), a))).collect();
    let corpus_error = |e: afx_datasets::DatasetError| TrainError::NoData(e.to_string());
    if !clips.is_empty() {
        let what = format!(
            "crops of {} real recordings (the loops of sonic-pi-samples in {}) at {sample_rate} Hz",
            clips.len(),
            dir.display()
        );
        return Ok((afx_datasets::Corpus::from_clips(dir, sample_rate, clips).map_err(corpus_error)?, what));
    }
    let signal = afx_host::bench::test_signal(sample_rate, 30 * sample_rate as usize);
    let what = format!(
        "crops of seeded noise under a slow envelope at {sample_rate} Hz (the render bench's test signal: \
         {} is not installed)",
        dir.display()
    );
    let clips = vec![(PathBuf::from("test-signal"), signal)];
    Ok((afx_datasets::Corpus::from_clips(Path::new("(test signal)"), sample_rate, clips).map_err(corpus_error)?, what))
}

/// Writes the inputs of both workloads to `spec.inputs` (f32 safetensors) and says what they are:
/// `input`, `reference`, `target` `(B, L)` (a crop's two halves, as training pairs are cut, and the input
/// through [`stand_in_chain`]), `grad_theta` `(B, P)` (an SPSA-sized dL/dθ), `tcn_x` `(B, context + patch)`,
/// `tcn_target` `(B, patch)` and `tcn_theta` `(B, P)` for the proxy.
pub fn write_inputs(spec: &ModelBenchSpec) -> Result<String, TrainError> {
    let (train, tcn) = (&spec.torch.train, &spec.torch.tcn);
    let (corpus, what) = source_corpus(train.sample_rate)?;
    let crop = |seed: u64, frames: usize| {
        corpus.crop(seed, frames).ok_or_else(|| TrainError::NoData(format!("no crop of {frames} frames in {what}")))
    };
    let (mut input, mut reference, mut target) = (vec![], vec![], vec![]);
    for b in 0..train.batch {
        let clip = crop(b as u64, 2 * train.frames)?;
        let (a, r) = clip.channel(0).split_at(train.frames);
        input.extend_from_slice(a);
        reference.extend_from_slice(r);
        target.extend(stand_in_chain(a));
    }
    let window = tcn.context + tcn.patch;
    let (mut tcn_x, mut tcn_target) = (vec![], vec![]);
    for b in 0..tcn.batch {
        let clip = crop(1000 + b as u64, window)?;
        tcn_x.extend_from_slice(clip.channel(0));
        tcn_target.extend_from_slice(&stand_in_chain(clip.channel(0))[tcn.context..]);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x4245_4e43); // "BENC"
    let mut uniform = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32)).collect()
    };
    let p = spec.num_params;
    let grad_theta = uniform(train.batch * p, -0.05, 0.05);
    let tcn_theta = uniform(tcn.batch * p, 0.0, 1.0);
    let dev = &Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        ("input", Tensor::from_vec(input, (train.batch, train.frames), dev)?),
        ("reference", Tensor::from_vec(reference, (train.batch, train.frames), dev)?),
        ("target", Tensor::from_vec(target, (train.batch, train.frames), dev)?),
        ("grad_theta", Tensor::from_vec(grad_theta, (train.batch, p), dev)?),
        ("tcn_x", Tensor::from_vec(tcn_x, (tcn.batch, window), dev)?),
        ("tcn_target", Tensor::from_vec(tcn_target, (tcn.batch, tcn.patch), dev)?),
        ("tcn_theta", Tensor::from_vec(tcn_theta, (tcn.batch, p), dev)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&tensors, &spec.inputs)?;
    Ok(what)
}

/// The inputs of [`write_inputs`], read back.
struct Inputs {
    tensors: HashMap<String, Tensor>,
    rate: u32,
}

impl Inputs {
    fn read(spec: &ModelBenchSpec) -> Result<Inputs, TrainError> {
        let tensors = candle_core::safetensors::load(&spec.inputs, &Device::Cpu)?;
        Ok(Inputs { tensors, rate: spec.train.sample_rate })
    }

    fn tensor(&self, name: &str) -> Result<&Tensor, TrainError> {
        self.tensors.get(name).ok_or_else(|| TrainError::Config(format!("bench inputs: no tensor {name}")))
    }

    /// One mono clip per row, as the trainer takes them.
    fn clips(&self, name: &str) -> Result<Vec<Audio>, TrainError> {
        self.tensor(name)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|row| Audio::new(self.rate, vec![row]).map_err(|e| TrainError::Config(e.to_string())))
            .collect()
    }
}

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
    /// The script's agreement with [`write_reference`] (the train workload at 2 threads reports it).
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
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

/// Re-draws every weight of `varmap` from `seed`, 1-D ones (biases, norm scales, PReLU slopes) included, so that
/// a check at these weights exercises every one of them (unlike training's init, which zeroes biases and scales
/// the last layers down).
fn check_weights(varmap: &VarMap, seed: u64) -> Result<(), TrainError> {
    afx_nn::init::seeded_uniform(varmap, seed, |_| 1.0, |_| false)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Ok(named) = varmap.data().lock() else {
        return Err(TrainError::Config("the VarMap's lock is poisoned".into()));
    };
    let mut names: Vec<&String> = named.keys().collect();
    names.sort();
    for name in names {
        let var = &named[name];
        if var.rank() != 1 {
            continue;
        }
        let current = var.to_vec1::<f32>()?;
        let drawn: Vec<f32> =
            current.iter().map(|&v| v + 0.2 * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)).collect();
        var.set(&Tensor::from_vec(drawn, current.len(), var.device())?)?;
    }
    Ok(())
}

/// Computes afx's values at fixed weights ([`check_weights`]) on the bench's inputs and writes them, with the
/// weights, into `dir`: θ from the trainer's model, the per-item loss and dL/dy from the SPSA method's loss
/// code, the proxy's output over the whole window and its training loss. Returns the files (set them as the
/// spec's `reference`).
pub fn write_reference(spec: &ModelBenchSpec, dir: &Path) -> Result<Reference, TrainError> {
    let inputs = Inputs::read(spec)?;
    let reference = Reference {
        model: dir.join("reference-model.safetensors"),
        tcn: dir.join("reference-tcn.safetensors"),
        values: dir.join("reference-values.safetensors"),
    };
    let trainer = Trainer::new(spec.train.clone(), spec.chain(), Device::Cpu)?;
    check_weights(trainer.varmap(), 1)?;
    trainer.varmap().save(&reference.model)?;
    let (input, reference_clips, target) =
        (inputs.clips("input")?, inputs.clips("reference")?, inputs.clips("target")?);
    let input: Vec<&Audio> = input.iter().collect();
    let theta = trainer.predict(&input, &reference_clips.iter().collect::<Vec<_>>())?;
    let spsa = Spsa::new(spec.train.spsa.clone())?;
    let scored = method::loss_gradient(spsa.loss(), &input, &target.iter().collect::<Vec<_>>())?;
    let loss = Tensor::new(scored.losses.iter().map(|&l| l as f32).collect::<Vec<f32>>(), &Device::Cpu)?;
    let grad_rows: Vec<&[f32]> = scored.grad_y.iter().map(|g| g.channel(0)).collect();
    let grad_y = Tensor::new(grad_rows.concat(), &Device::Cpu)?.reshape((grad_rows.len(), ()))?;

    let mut proxy = ProxyTrainer::new(&spec.proxy_run(), &Device::Cpu, Path::new("(bench)"))?;
    check_weights(proxy.varmap(), 2)?;
    proxy.varmap().save(&reference.tcn)?;
    let (x, tcn_target, tcn_theta) =
        (inputs.tensor("tcn_x")?, inputs.tensor("tcn_target")?, inputs.tensor("tcn_theta")?);
    let tcn_output = proxy.proxy().forward_t(x, tcn_theta, true)?.detach();
    // The loss `afx train-proxy` steps on (computed before its update changes the weights).
    let tcn_loss = proxy.update(&spec.proxy, x, tcn_target, tcn_theta)?;
    let values: HashMap<String, Tensor> = [
        ("theta", theta.detach()),
        ("loss", loss),
        ("grad_y", grad_y),
        ("tcn_output", tcn_output),
        ("tcn_loss", Tensor::new(&[tcn_loss as f32], &Device::Cpu)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&values, &reference.values)?;
    Ok(reference)
}

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
    fn new(train: &ChildResult, tcn: &ChildResult) -> Result<SideFigures, TrainError> {
        let get =
            |v: Option<f64>, what: &str| v.ok_or_else(|| TrainError::Bench(format!("a child did not report {what}")));
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
fn run_json(mut command: Command, what: &str) -> Result<ChildResult, TrainError> {
    let out = command.output().map_err(|e| TrainError::Bench(format!("{what}: cannot start: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(TrainError::Bench(format!("{what} failed ({}):\n{}", out.status, tail.join("\n"))));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        return Err(TrainError::Bench(format!("{what} printed no result; its stderr:\n{stderr}")));
    };
    serde_json::from_str(line).map_err(|e| TrainError::Bench(format!("{what} printed {line:?}: {e}")))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a / b).filter(|r| r.is_finite() && *r > 0.0)
}

/// Writes the spec and inputs, runs afx's children at 1 and 2 threads and, when `python` imports torch, the
/// script's at 2 and 1 threads (after afx's reference values), and puts the figures together.
pub fn bench_model(options: &ModelBenchOptions<'_>) -> Result<ModelBench, TrainError> {
    if options.steps == 0 {
        return Err(TrainError::Config("--steps must be positive".into()));
    }
    if options.params.count == 0 {
        return Err(TrainError::Config("the chain has no trained parameter".into()));
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
    std::fs::write(&script, TORCH_SCRIPT).map_err(TrainError::io(&script))?;

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
    let side = |r: &[Vec<ChildResult>; 2]| -> Result<Side, TrainError> {
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

impl ModelBench {
    /// The report as a table: one row per part, afx at 1 and 2 threads, PyTorch at 2, afx/PyTorch.
    pub fn table(&self) -> String {
        let (a1, a2) = (&self.afx.threads_1, &self.afx.threads_2);
        let t2 = self.torch.as_ref().map(|t| &t.threads_2);
        let ms = |v: f64| format!("{:.1} ms", v * 1e3);
        let mib = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0} MiB"));
        let ratio = |a: Option<f64>, t: Option<f64>| match a.zip(t) {
            Some((a, t)) if t > 0.0 => format!("{:.2}x", a / t),
            _ => "–".into(),
        };
        let t = &self.spec;
        let mut text = format!(
            "afx bench model: the network side of `afx train`'s SPSA step (batch {}, {} frames at {} Hz, {} \
             parameters: {})\nand of `afx train-proxy`'s step (batch {} x {} frames after {} of context, TCN {} \
             channels), afx (candle, CPU) vs PyTorch{}\ninputs: {}\nmedians of {} steps after one warm-up; each \
             side and thread count in a process of its own\n\n",
            t.train.batch,
            t.train.frames,
            t.train.sample_rate,
            self.num_params,
            self.params_from,
            t.tcn.batch,
            t.tcn.patch,
            t.tcn.context,
            t.tcn.channels,
            self.torch_version.as_ref().map_or(String::new(), |v| format!(" {v} (CPU)")),
            self.inputs,
            self.steps,
        );
        text.push_str(&format!(
            "{:<38} {:>12} {:>12} {:>14} {:>10}\n",
            "part", "afx 1 thread", "afx 2 thr.", "torch 2 thr.", "afx/torch"
        ));
        type Part = fn(&SideFigures) -> f64;
        let rows: [(&str, Part); 6] = [
            ("features (log-STFT, input + reference)", |s| s.features_s),
            ("encoder + controller forward", |s| s.encoder_forward_s),
            ("MRSTFT loss + dL/dy", |s| s.loss_s),
            ("backward (θ·g) + clip + AdamW", |s| s.backward_s),
            ("= training step, network parts", |s| s.train_step_s),
            ("proxy TCN step (train-proxy)", |s| s.tcn_step_s),
        ];
        for (what, get) in rows {
            text.push_str(&format!(
                "{what:<38} {:>12} {:>12} {:>14} {:>10}\n",
                ms(get(a1)),
                ms(get(a2)),
                t2.map_or("–".into(), |t| ms(get(t))),
                ratio(Some(get(a2)), t2.map(get))
            ));
        }
        for (what, a1v, a2v, tv) in [
            ("working set, training step", a1.peak_mem_mib, a2.peak_mem_mib, t2.and_then(|t| t.peak_mem_mib)),
            ("working set, TCN step", a1.tcn_peak_mem_mib, a2.tcn_peak_mem_mib, t2.and_then(|t| t.tcn_peak_mem_mib)),
            ("VmHWM (whole process), training step", a1.vm_hwm_mib, a2.vm_hwm_mib, t2.and_then(|t| t.vm_hwm_mib)),
            (
                "VmHWM (whole process), TCN step",
                a1.tcn_vm_hwm_mib,
                a2.tcn_vm_hwm_mib,
                t2.and_then(|t| t.tcn_vm_hwm_mib),
            ),
        ] {
            text.push_str(&format!(
                "{what:<38} {:>12} {:>12} {:>14} {:>10}\n",
                mib(a1v),
                mib(a2v),
                mib(tv),
                ratio(a2v, tv)
            ));
        }
        let x = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}x"));
        text.push_str(&format!(
            "\n2 threads over 1: afx training step {:.2}x, TCN step {:.2}x; PyTorch {}, {}\n",
            self.speedup_2_threads,
            self.tcn_speedup_2_threads,
            x(self.torch_speedup_2_threads),
            x(self.torch_tcn_speedup_2_threads)
        ));
        match (&self.torch_skipped, &self.check) {
            (Some(reason), _) => text.push_str(&format!("PyTorch columns skipped: {reason}\n")),
            (None, Some(c)) => {
                let e = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1e}"));
                text.push_str(&format!(
                    "PyTorch at afx's weights vs afx (relative unless |Δ|): θ max |Δ| {}, loss {}, dL/dy {} (each \
                     side's f32 vs float64: afx {}, PyTorch {}), TCN output {}, TCN loss {}\n",
                    e(c.theta_max_abs_diff),
                    e(c.loss_max_rel_diff),
                    e(c.grad_y_rel_diff),
                    e(c.grad_y_f64_error_afx),
                    e(c.grad_y_f64_error_torch),
                    e(c.tcn_output_max_rel_diff),
                    e(c.tcn_loss_rel_diff)
                ));
            }
            (None, None) => {}
        }
        text
    }
}

/// `afx bench model-child SPEC --workload W`: one child's measurement, printed as one JSON line.
pub fn child_main(spec: &Path, workload: Workload) -> Result<(), TrainError> {
    let spec = ModelBenchSpec::read(spec)?;
    let result = run_child(&spec, workload)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&result).expect("serialises")).map_err(TrainError::io("stdout"))
}
