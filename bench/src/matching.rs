//! `afx bench match`: matching against a trained controller on the same held-out pairs, side by side.
//!
//! The pairs are drawn as a training run's validation draws them (corpus crops of the validation split, the
//! targets rendered at random θ* through the real chain). For each pair: the controller predicts θ from
//! (input_A, reference_B) as in validation; each method matches (input_A, target_A) from the chain's defaults
//! with the same render budget. Everything is scored with the same MRSTFT, on the real chain.

use std::path::Path;

use afx_report::{LineChart, Series, Table, line_chart};
use afx_spsa::Pool;
use afx_trainer::infer::TrainedModel;
use afx_trainer::train::{TrainConfig, ValidationSet};
use afx_trainer::{ChainInfo, ClipSource};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use afx_match::{Budget, MatchConfig, MatchError, Method, Objective, Outcome, optimise};

use crate::stats::midpoint_median as median;

/// One pair's scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairScores {
    /// MRSTFT of the unprocessed input against the target.
    pub input: f64,
    /// MRSTFT of the trained controller's prediction.
    pub controller: f64,
    /// One per method, in the order asked.
    pub matched: Vec<Outcome>,
}

/// What `afx bench match` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub chain: String,
    pub run: String,
    pub methods: Vec<Method>,
    pub renders: u64,
    pub clip_seconds: f64,
    pub sample_rate: u32,
    pub pairs: Vec<PairScores>,
    /// Medians over the pairs.
    pub median_input: f64,
    pub median_controller: f64,
    /// Per method: the median best MRSTFT at the end, its ratio to the controller's, and the median seconds.
    pub median_matched: Vec<f64>,
    pub matched_over_controller: Vec<f64>,
    pub median_seconds: Vec<f64>,
    /// Per method: (renders, median over the pairs of the best MRSTFT after that many renders).
    pub median_curves: Vec<Vec<(u64, f64)>>,
}

/// Runs the comparison on `pairs` held-out pairs from `source` (the corpus's validation split at the run's
/// rate). `pool` must host the run's chain.
pub fn bench(
    pool: &mut Pool,
    run_dir: &Path,
    source: &dyn ClipSource,
    pairs: usize,
    methods: &[Method],
    base: &MatchConfig,
    on_pair: &mut dyn FnMut(usize, &PairScores),
) -> Result<BenchReport, MatchError> {
    let model = TrainedModel::load(run_dir, &Device::Cpu)?;
    let chain = ChainInfo::from_chain(pool.chain());
    afx_trainer::run::check_chain(run_dir, &model.meta.chain, &chain)?;
    let budget = base.budget.renders.ok_or_else(|| MatchError::Config("bench match needs --renders".into()))?;
    let config = TrainConfig { val_items: pairs, ..model.meta.config.clone() };
    let set = ValidationSet::new(&config, pool, source)?;
    let p = &set.pairs;
    let mut scores = Vec::with_capacity(p.len());
    for i in 0..p.len() {
        let objective = Objective::target(&p.input_a[i], &p.target_a[i], f64::INFINITY)?;
        let input = objective.score(&p.input_a[i])?;
        let theta = model.predict(&p.input_a[i], &p.reference_b[i])?;
        let rendered = pool.render_batch(std::slice::from_ref(&p.input_a[i]), &[theta]).pop().expect("one result");
        let controller = match rendered {
            Ok(y) => objective.score(&y)?,
            Err(e) => return Err(MatchError::Start(Box::new(e))),
        };
        let mut matched = Vec::with_capacity(methods.len());
        for &method in methods {
            let config = MatchConfig { method, budget: Budget::renders(budget), ..base.clone() };
            matched.push(optimise(pool, &objective, &chain.default_theta(), &config, &mut |_| {})?);
        }
        let pair = PairScores { input, controller, matched };
        on_pair(i, &pair);
        scores.push(pair);
    }
    let median_of = |f: &dyn Fn(&PairScores) -> f64| median(scores.iter().map(f).collect());
    let median_controller = median_of(&|s| s.controller);
    let median_matched: Vec<f64> = (0..methods.len()).map(|m| median_of(&|s| s.matched[m].best_loss)).collect();
    let grid: Vec<u64> = (0..=40).map(|k| budget * k / 40).collect();
    Ok(BenchReport {
        chain: chain.name.clone(),
        run: run_dir.display().to_string(),
        methods: methods.to_vec(),
        renders: budget,
        clip_seconds: config.clip_seconds,
        sample_rate: config.sample_rate,
        median_input: median_of(&|s| s.input),
        median_controller,
        matched_over_controller: median_matched.iter().map(|m| m / median_controller).collect(),
        median_matched,
        median_seconds: (0..methods.len()).map(|m| median_of(&|s| s.matched[m].seconds)).collect(),
        median_curves: (0..methods.len())
            .map(|m| {
                grid.iter()
                    .map(|&g| (g, median(scores.iter().map(|s| best_after(&s.matched[m], g)).collect())))
                    .collect()
            })
            .collect(),
        pairs: scores,
    })
}

/// The best loss after `renders` renders (the start's loss before any step).
fn best_after(outcome: &Outcome, renders: u64) -> f64 {
    outcome.curve.iter().take_while(|c| c.renders <= renders.max(1)).last().map_or(outcome.start_loss, |c| c.best)
}

/// The report as a markdown table.
pub fn markdown(r: &BenchReport) -> String {
    let mut table = Table::new(["", "median MRSTFT", "vs controller", "median time per pair"]);
    table.row([
        "input (unprocessed)".to_string(),
        format!("{:.4}", r.median_input),
        format!("{:.2}x", r.median_input / r.median_controller),
        "–".into(),
    ]);
    table.row(["trained controller".to_string(), format!("{:.4}", r.median_controller), "1.00x".into(), "–".into()]);
    for (m, method) in r.methods.iter().enumerate() {
        table.row([
            format!("match, {method}"),
            format!("{:.4}", r.median_matched[m]),
            format!("{:.2}x", r.matched_over_controller[m]),
            format!("{:.1} s", r.median_seconds[m]),
        ]);
    }
    format!(
        "Chain `{}`, {} held-out pairs of {:.2} s at {} Hz, {} renders per match from the chain's defaults; \
         controller: run `{}`.\n\n{table}",
        r.chain,
        r.pairs.len(),
        r.clip_seconds,
        r.sample_rate,
        r.renders,
        r.run,
    )
}

/// Writes `bench.json`, `report.md` and `curves.png` (median best MRSTFT against renders, per method, beside
/// the controller's and the input's medians) into `dir`.
pub fn write_report(dir: &Path, r: &BenchReport) -> Result<(), MatchError> {
    let fail = |path: &Path, message: String| MatchError::Write { path: path.to_path_buf(), message };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let path = dir.join("bench.json");
    let text = serde_json::to_string_pretty(r).map_err(|e| fail(&path, e.to_string()))?;
    afx_core::atomic::write(&path, text.as_bytes()).map_err(|e| fail(&path, e))?;
    let path = dir.join("report.md");
    afx_core::atomic::write(&path, markdown(r).as_bytes()).map_err(|e| fail(&path, e))?;
    let mut series: Vec<Series> = r
        .methods
        .iter()
        .zip(&r.median_curves)
        .map(|(m, c)| Series::new(format!("match, {m}"), c.iter().map(|&(x, y)| (x.max(1) as f64, y)).collect()))
        .collect();
    let flat = |name: &str, y: f64| Series::new(name, vec![(1.0, y), (r.renders as f64, y)]);
    series.push(flat("trained controller", r.median_controller));
    series.push(flat("input (unprocessed)", r.median_input));
    let title = format!("afx match vs a trained controller: {} ({} pairs)", r.chain, r.pairs.len());
    let chart = LineChart {
        title: &title,
        x_label: "renders",
        y_label: "median best MRSTFT",
        log_x: false,
        log_y: true,
        series,
        markers: false,
    };
    line_chart(&dir.join("curves.png"), &chart)?;
    Ok(())
}
