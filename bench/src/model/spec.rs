//! What both sides of `afx bench model` read: the spec (afx's configs and the flat shapes the PyTorch script
//! reads, [`ModelBenchSpec`]), the size of θ ([`ParamShape`]), and the inputs ([`write_inputs`], read back by
//! `Inputs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use afx_core::Audio;
use afx_host::{ParamKind, ParamSpec, Scale};
use afx_nn::stft::POWER_FLOOR;
use afx_proxy::train::{ProxyRun, ProxyTrainConfig};
use afx_proxy::{ProxyMeta, ProxyParam};
use afx_trainer::train::TrainConfig;
use afx_trainer::{ChainInfo, TrainError, TrainedParam, frontend, model};
use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::error::io_error;
use crate::signal::test_signal;

/// The PyTorch side, written next to the spec for each run.
pub const TORCH_SCRIPT: &str = include_str!("../../../scripts/bench_model_torch.py");

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
    /// afx's values at fixed weights, when written ([`write_reference`](super::reference::write_reference)).
    pub reference: Option<Reference>,
    pub torch: TorchShapes,
}

/// The files of [`write_reference`](super::reference::write_reference).
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
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::File(afx_core::FileError::format(path, e)))
    }

    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(self).expect("the spec serialises");
        std::fs::write(path, text).map_err(io_error(path))
    }

    /// A chain of `num_params` parameters for the trainer (no plugin is loaded: only its size is used).
    pub(super) fn chain(&self) -> ChainInfo {
        let params = (0..self.num_params)
            .map(|i| TrainedParam { stage: "bench".into(), spec: param(i, 0.0, 1.0), default_normalized: 0.5 })
            .collect();
        ChainInfo { name: "bench".into(), params, stages: vec![] }
    }

    /// What the proxy models: `num_params` parameters, the output gains among them.
    pub(super) fn proxy_run(&self) -> ProxyRun {
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
    let signal = test_signal(sample_rate, 30 * sample_rate as usize);
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
/// through `stand_in_chain`), `grad_theta` `(B, P)` (an SPSA-sized dL/dθ), `tcn_x` `(B, context + patch)`,
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
pub(super) struct Inputs {
    tensors: HashMap<String, Tensor>,
    rate: u32,
}

impl Inputs {
    pub(super) fn read(spec: &ModelBenchSpec) -> Result<Inputs, TrainError> {
        let tensors = candle_core::safetensors::load(&spec.inputs, &Device::Cpu)?;
        Ok(Inputs { tensors, rate: spec.train.sample_rate })
    }

    pub(super) fn tensor(&self, name: &str) -> Result<&Tensor, TrainError> {
        self.tensors.get(name).ok_or_else(|| TrainError::Config(format!("bench inputs: no tensor {name}")))
    }

    /// One mono clip per row, as the trainer takes them.
    pub(super) fn clips(&self, name: &str) -> Result<Vec<Audio>, TrainError> {
        self.tensor(name)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|row| Audio::new(self.rate, vec![row]).map_err(|e| TrainError::Config(e.to_string())))
            .collect()
    }
}
