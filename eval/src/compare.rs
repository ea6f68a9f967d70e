//! `afx compare`: which training method wins for a chain. Every method trains with the same seed, data,
//! model and wall-clock budget ([`afx_trainer::train::train`], one run folder each), then all are scored on the
//! same held-out examples through the REAL chain: MRSTFT, time-domain L1, loudness error (EBU R128, LU) and
//! parameter error, beside rows for the corrupt input, the default parameters and random parameters, as in
//! DeepAFx-ST's table. Proxy methods train through `--proxy`, or through a proxy collected and trained inside
//! the comparison, whose cost is reported beside each method's own training time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use afx_core::run_folder::{read_json, write_json};
use afx_core::{Audio, RunFolder};
use afx_nn::loss::MrStftLoss;
use afx_report::Table;
use afx_spsa::{Pool, item_seed};
use afx_trainer::chain_info::ChainInfo;
use afx_trainer::frontend::batch_tensor;
use afx_trainer::method::GradKind;
use afx_trainer::metrics::Record;
use afx_trainer::pairs::{PairRequest, PairSource, held_out_with_random_theta};
use afx_trainer::run::CheckpointMeta;
use afx_trainer::train::{self, Data, TrainConfig, TrainOptions, Trainer};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{EvalError, loudness};

/// The row of the model's input itself: the raw recording, or its corruption with `Corruption::RandomChain`
/// (DeepAFx-ST's "corrupt input" row).
const INPUT_ROW: &str = "input";

/// The seed stream of the held-out test examples (other crops than training's validation).
const TEST_STREAM: u64 = 0x5445_5354; // "TEST"

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub methods: Vec<GradKind>,
    /// Training budget of each method, in minutes of wall clock.
    pub minutes: f64,
    /// Every method's training settings (its `grad`, `proxy` and `minutes` are set per method).
    pub train: TrainConfig,
    /// Held-out examples every method is scored on.
    pub test_items: usize,
    /// The proxy the proxy methods train through.
    pub proxy: Option<PathBuf>,
    /// What building that proxy cost, when it was built for this comparison.
    pub proxy_cost: Option<ProxyCost>,
}

impl CompareConfig {
    /// Checks the settings, naming the flag of a bad one.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |flag: &str, message: String| Err(EvalError::Flag { flag: flag.into(), message });
        if self.methods.is_empty() {
            return bad("--methods", "name at least one method".into());
        }
        for (i, m) in self.methods.iter().enumerate() {
            if self.methods[..i].contains(m) {
                return bad("--methods", format!("{} is named twice", m.name()));
            }
        }
        if !(self.minutes > 0.0 && self.minutes.is_finite()) {
            return bad("--minutes", format!("give a positive number of minutes (got {})", self.minutes));
        }
        if self.test_items == 0 {
            return bad("--test-items", "give at least one test example".into());
        }
        let mut probe = self.train.clone();
        probe.grad = GradKind::Spsa;
        probe.validate().map_err(|e| EvalError::Flag { flag: "training settings".into(), message: e.to_string() })
    }

    fn needs_proxy(&self) -> bool {
        self.methods.iter().any(|m| m.needs_proxy())
    }
}

/// Scores on the held-out examples (means over the examples every row rendered; lower is better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub mrstft: f64,
    pub l1: f64,
    /// |loudness(output) − loudness(target)| in LU.
    pub loudness_lu: f64,
    /// mean |θ − θ*| (NaN for the input row, which has no θ).
    pub param_error: f64,
}

/// A baseline row: the corrupt input, the default parameters, random parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub scores: Scores,
}

/// One method's training and test scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    pub run: PathBuf,
    pub steps: u64,
    /// Wall-clock seconds of its training (validations included).
    pub train_seconds: f64,
    pub mean_step_s: f64,
    pub failed_items: usize,
    pub scores: Scores,
    /// (training minutes, validation MRSTFT of the trained model): the curve of the comparison's plot. Minutes
    /// add up the steps' own times, so validations do not count against a method.
    pub curve: Vec<(f64, f64)>,
}

/// What building the proxy cost, when `compare` built it, and how good it came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyCost {
    pub path: PathBuf,
    /// Collecting examples from the real chain, and training the proxy, in seconds.
    pub collect_seconds: f64,
    pub train_seconds: f64,
    pub examples: usize,
    pub steps: u64,
    /// The proxy's held-out MRSTFT against the real chain's output, and the identity's (input vs output).
    pub heldout_mrstft: Option<f64>,
    pub identity_mrstft: Option<f64>,
}

/// Everything `compare` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub chain: String,
    pub minutes_per_method: f64,
    pub batch: usize,
    pub seed: u64,
    pub test_items: usize,
    pub baselines: Vec<Baseline>,
    pub methods: Vec<MethodResult>,
    pub proxy: Option<ProxyCost>,
}

/// Trains every method of `config` into `out/runs/<method>/` and scores them; the report is returned (the
/// caller writes it, see [`crate::report::write_compare_report`]). `progress` hears what starts.
pub fn compare(
    out: &Path,
    chain: &ChainInfo,
    pool: &mut Pool,
    data: Data<'_>,
    config: &CompareConfig,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Result<CompareReport, EvalError> {
    config.validate()?;
    if config.needs_proxy() && config.proxy.is_none() {
        return Err(EvalError::Flag {
            flag: "--proxy".into(),
            message: "the proxy methods need a proxy (give --proxy DIR, or let compare build one)".into(),
        });
    }
    // Each method's trainer is built once before anything trains, so a wrong proxy or chain fails here.
    for &method in &config.methods {
        Trainer::new(method_config(config, method), chain.clone(), device.clone())
            .map_err(|e| EvalError::Flag { flag: format!("--methods {}", method.name()), message: e.to_string() })?;
    }
    let test = TestSet::new(config, pool, data.validation)?;
    let loss = MrStftLoss::new(&config.train.spsa.loss.without_l1(), DType::F32, &Device::Cpu)?;
    let score = |outputs: &[Option<Audio>], thetas: Option<&[Vec<f32>]>| test.score(&loss, outputs, thetas);

    let mut methods = vec![];
    for &method in &config.methods {
        let run_dir = out.join("runs").join(method.name());
        progress(&format!("training {} for {} min into {}", method.name(), config.minutes, run_dir.display()));
        let started = Instant::now();
        let options = TrainOptions { device: device.clone(), ..TrainOptions::default() };
        let summary = train::train(&run_dir, &method_config(config, method), chain, pool, data, options)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let Some((meta, weights)) = RunFolder::new(&run_dir).latest_checkpoint::<CheckpointMeta>()? else {
            return Err(EvalError::NoData(format!("{} wrote no checkpoint", run_dir.display())));
        };
        let trainer = Trainer::from_checkpoint(&meta, &weights, device.clone())?;
        let predicted = afx_trainer::method::theta_rows(&trainer.predict(
            &test.pairs.input_a.iter().collect::<Vec<_>>(),
            &test.pairs.reference_b.iter().collect::<Vec<_>>(),
        )?)?;
        let outputs = render(pool, &test.pairs.input_a, &predicted);
        methods.push(MethodResult {
            method: method.name().into(),
            run: run_dir.clone(),
            steps: summary.steps,
            train_seconds,
            mean_step_s: summary.mean_step_s,
            failed_items: summary.failed_items,
            scores: score(&outputs, Some(&predicted))?,
            curve: curve(&RunFolder::new(&run_dir).read_metrics::<Record>()?),
        });
    }
    let n = test.pairs.len();
    let inputs: Vec<Option<Audio>> = test.pairs.input_a.iter().cloned().map(Some).collect();
    let defaults = vec![chain.default_theta(); n];
    let default_out = render(pool, &test.pairs.input_a, &defaults);
    let random_out = render(pool, &test.pairs.input_a, &test.random_theta);
    let baselines = vec![
        Baseline { name: INPUT_ROW.into(), scores: score(&inputs, None)? },
        Baseline { name: "default parameters".into(), scores: score(&default_out, Some(&defaults))? },
        Baseline { name: "random parameters".into(), scores: score(&random_out, Some(&test.random_theta))? },
    ];
    Ok(CompareReport {
        chain: chain.name.clone(),
        minutes_per_method: config.minutes,
        batch: config.train.batch,
        seed: config.train.seed,
        test_items: n,
        baselines,
        methods,
        proxy: config.proxy_cost.clone(),
    })
}

/// The training settings of `method` in this comparison.
fn method_config(config: &CompareConfig, method: GradKind) -> TrainConfig {
    TrainConfig {
        grad: method,
        minutes: Some(config.minutes),
        proxy: if method.needs_proxy() { config.proxy.clone() } else { None },
        ..config.train.clone()
    }
}

fn render(pool: &mut Pool, inputs: &[Audio], thetas: &[Vec<f32>]) -> Vec<Option<Audio>> {
    pool.render_batch(inputs, thetas).into_iter().map(Result::ok).collect()
}

/// (training minutes, validation MRSTFT) from a run's metrics; a validation with no score (every item failed:
/// NaN) is left out of the curve rather than drawn as a point.
fn curve(records: &[Record]) -> Vec<(f64, f64)> {
    let mut seconds = 0.0;
    let mut points = vec![];
    for r in records {
        match r {
            Record::Step(s) => seconds += s.timing.total_s,
            Record::Validation(v) if v.mrstft.trained.is_finite() => points.push((seconds / 60.0, v.mrstft.trained)),
            Record::Validation(_) => {}
        }
    }
    points
}

/// The held-out examples every row is scored on.
struct TestSet {
    pairs: afx_trainer::pairs::PairBatch,
    random_theta: Vec<Vec<f32>>,
}

impl TestSet {
    fn new(config: &CompareConfig, pool: &mut Pool, source: &dyn PairSource) -> Result<TestSet, EvalError> {
        let seed = item_seed(config.train.seed ^ TEST_STREAM, 0);
        let frames = config.train.frames();
        let hop = config.train.automation_hop.unwrap_or(0);
        let request = PairRequest { frames, batch: config.test_items, corruption: config.train.corruption, seed, hop };
        let (pairs, random_theta) = held_out_with_random_theta(source, pool, &request)?;
        if pairs.is_empty() {
            return Err(EvalError::NoData(format!("no test example rendered: {}", pairs.first_error())));
        }
        Ok(TestSet { pairs, random_theta })
    }

    /// Means over the examples that rendered (a failed render is left out of that row only and logged).
    fn score(
        &self,
        loss: &MrStftLoss,
        outputs: &[Option<Audio>],
        thetas: Option<&[Vec<f32>]>,
    ) -> Result<Scores, EvalError> {
        let (mut mrstft, mut l1, mut lu, mut n) = (0.0, 0.0, 0.0, 0usize);
        for (y, target) in outputs.iter().zip(&self.pairs.target_a) {
            let Some(y) = y else { continue };
            let (yt, tt) = (batch_tensor(&[y], &Device::Cpu)?, batch_tensor(&[target], &Device::Cpu)?);
            mrstft += f64::from(loss.per_item(&yt, &tt)?.to_vec1::<f32>()?[0]);
            l1 += f64::from((&yt - &tt)?.abs()?.mean_all()?.to_scalar::<f32>()?);
            lu += loudness::loudness_error(y, target);
            n += 1;
        }
        let failed = outputs.len() - n;
        if failed > 0 {
            tracing::warn!(failed, "test examples whose render failed are left out of a row");
        }
        let n = n.max(1) as f64;
        let param_error = match (thetas, &self.pairs.theta_star) {
            (Some(t), Some(theta_star)) => {
                let pairs: Vec<f64> = t
                    .iter()
                    .zip(theta_star)
                    .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())))
                    .collect();
                pairs.iter().sum::<f64>() / pairs.len().max(1) as f64
            }
            _ => f64::NAN,
        };
        Ok(Scores { mrstft: mrstft / n, l1: l1 / n, loudness_lu: lu / n, param_error })
    }
}

/// DeepAFx-ST's published test scores (LibriTTS, MRSTFT and LUFS error; their own DSP EQ + compressor, 24 kHz),
/// by afx's method names: shown beside afx's for orientation, not as the same task.
pub const PUBLISHED: [(&str, f64, f64); 6] = [
    (INPUT_ROW, 1.187, 2.426),
    ("spsa", 0.635, 1.600),
    ("proxy", 0.676, 1.340),
    ("np-hh", 1.038, 2.679),
    ("np-fh", 1.058, 3.197),
    ("exact", 0.388, 0.823),
];

fn published(name: &str) -> String {
    PUBLISHED.iter().find(|p| p.0 == name).map_or("–".into(), |p| format!("{:.3} / {:.3}", p.1, p.2))
}

/// The Markdown report of `compare`.
pub fn markdown(r: &CompareReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Method comparison: chain `{}`\n", r.chain);
    let _ = writeln!(
        s,
        "Every method trained {} min (wall clock) with batch {}, seed {}, the same data and model; scored on {} \
         held-out examples through the real chain (lower is better).\n",
        r.minutes_per_method, r.batch, r.seed, r.test_items
    );
    let mut table = Table::compact([
        "row",
        "steps",
        "training time",
        "MRSTFT",
        "L1",
        "loudness error (LU)",
        "mean abs(θ − θ*)",
        "DeepAFx-ST published MRSTFT / LUFS error",
    ]);
    for b in &r.baselines {
        let pe = if b.scores.param_error.is_finite() { format!("{:.4}", b.scores.param_error) } else { "–".into() };
        table.row([
            b.name.clone(),
            "–".into(),
            "–".into(),
            format!("{:.4}", b.scores.mrstft),
            format!("{:.5}", b.scores.l1),
            format!("{:.2}", b.scores.loudness_lu),
            pe,
            published(&b.name),
        ]);
    }
    for m in &r.methods {
        let proxy_cost = match (&r.proxy, GradKind::ALL.iter().find(|k| k.name() == m.method)) {
            (Some(p), Some(k)) if k.needs_proxy() => {
                format!(" (+ proxy {:.1} min)", (p.collect_seconds + p.train_seconds) / 60.0)
            }
            _ => String::new(),
        };
        table.row([
            m.method.clone(),
            m.steps.to_string(),
            format!("{:.1} min{}", m.train_seconds / 60.0, proxy_cost),
            format!("{:.4}", m.scores.mrstft),
            format!("{:.5}", m.scores.l1),
            format!("{:.2}", m.scores.loudness_lu),
            format!("{:.4}", m.scores.param_error),
            published(&m.method),
        ]);
    }
    s.push_str(&table.to_string());
    if let Some(p) = &r.proxy {
        let quality = match (p.heldout_mrstft, p.identity_mrstft) {
            (Some(q), Some(i)) => format!("; held-out MRSTFT {q:.3} against the identity's {i:.3}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "\nProxy `{}`, built for this comparison: {} examples collected in {:.1} min, {} training steps in {:.1} \
             min{quality}.",
            p.path.display(),
            p.examples,
            p.collect_seconds / 60.0,
            p.steps,
            p.train_seconds / 60.0
        );
    }
    let best = r.methods.iter().min_by(|a, b| a.scores.mrstft.total_cmp(&b.scores.mrstft));
    if let Some(best) = best {
        let input = r.baselines.first().map_or(f64::NAN, |b| b.scores.mrstft);
        let _ = writeln!(
            s,
            "\nBest MRSTFT: {} ({:.4}, {:+.1} % against the input).",
            best.method,
            best.scores.mrstft,
            100.0 * (best.scores.mrstft / input - 1.0)
        );
    }
    s.push_str(
        "\n`validation_vs_time.png`: validation MRSTFT of each method (real chain, the run's own validation set) \
         against its training time. DeepAFx-ST's numbers are from its paper and logs (LibriTTS, its own DSP, \
         5 s at 24 kHz, 100s of thousands of GPU steps), for orientation only.\n",
    );
    s
}

/// How `compare` builds a proxy when none is given: examples collected from the real chain, then a proxy
/// trained on them for a time budget, with `afx collect` / `afx train-proxy`'s defaults otherwise.
#[derive(Debug, Clone)]
pub struct ProxyBuild {
    pub examples: usize,
    pub minutes: f64,
    pub seed: u64,
    pub sample_rate: u32,
    /// Seconds per collected example.
    pub seconds: f64,
}

/// Collects `build.examples` examples of `chain` into `dir/collection` and trains a proxy on them into
/// `dir/proxy`. A proxy a previous comparison built there whole is reused with the cost it recorded
/// (`dir/cost.json`), so a rerun reports what the proxy really cost.
pub fn build_proxy(
    dir: &Path,
    chain: &afx_host::ChainLayout,
    pool: &mut Pool,
    corpus: &afx_datasets::Corpus,
    build: &ProxyBuild,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Result<ProxyCost, EvalError> {
    use afx_proxy::collect::{self, CollectConfig, ShardSlice, Sources, Uniform};
    use afx_proxy::train::{ProxyTrainConfig, ProxyTrainOptions, latest_checkpoint, train_proxy};
    let (data, proxy, cost_path) = (dir.join("collection"), dir.join("proxy"), dir.join("cost.json"));
    if cost_path.exists() && latest_checkpoint(&proxy).map_err(Box::new)?.is_some() {
        progress(&format!("reusing the proxy in {} (cost from {})", proxy.display(), cost_path.display()));
        return Ok(read_json(&cost_path)?);
    }
    progress(&format!("collecting {} proxy examples into {}", build.examples, data.display()));
    let started = Instant::now();
    let config = CollectConfig {
        examples: build.examples,
        shard_size: 64,
        seed: build.seed,
        sample_rate: build.sample_rate,
        frames: (build.seconds * f64::from(build.sample_rate)).round() as usize,
    };
    let sources = Sources { chain, pool, corpus, sampler: &Uniform };
    collect::collect(&data, sources, &config, ShardSlice { index: 0, count: 1 }, |_, _| {})?;
    collect::write_manifest(&data)?;
    let collect_seconds = started.elapsed().as_secs_f64();
    progress(&format!("training the proxy for {} min into {}", build.minutes, proxy.display()));
    let started = Instant::now();
    // A half-trained proxy left by an interrupted comparison is started afresh, so its cost is measured.
    if proxy.exists() {
        std::fs::remove_dir_all(&proxy).map_err(EvalError::io(&proxy))?;
    }
    let config =
        ProxyTrainConfig { steps: 100_000, minutes: Some(build.minutes), seed: build.seed, ..Default::default() };
    let meta = afx_proxy::ProxyMeta {
        chain: chain.name().to_string(),
        params: afx_proxy::ProxyMeta::params_of(chain),
        sample_rate: build.sample_rate,
        tcn: config.tcn.clone(),
    };
    let options = ProxyTrainOptions { device: device.clone(), ..Default::default() };
    let summary = train_proxy(&proxy, &data, meta, &config, options).map_err(Box::new)?;
    let cost = ProxyCost {
        path: proxy,
        collect_seconds,
        train_seconds: started.elapsed().as_secs_f64(),
        examples: build.examples,
        steps: summary.steps,
        heldout_mrstft: summary.validation.as_ref().map(|q| q.mrstft),
        identity_mrstft: summary.validation.as_ref().map(|q| q.identity_mrstft),
    };
    write_json(&cost_path, &cost)?;
    Ok(cost)
}
