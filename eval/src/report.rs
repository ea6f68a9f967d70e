//! What `eval-grads` and `compare` write: `report.json`, `report.md` and PNG plots, each written to a temporary
//! name and renamed, into a folder made only once the work is done (a failed run leaves nothing behind).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use afx_core::run_folder::{write_atomic, write_json};
use afx_report::{BarChart, LineChart, Series, Table, bar_chart, line_chart};

use crate::EvalError;
use crate::compare::CompareReport;
use crate::grads::GradReport;

/// A chart to draw.
enum Chart<'a> {
    Line(LineChart<'a>),
    Bar(BarChart<'a>),
}

/// Draws a chart through a temporary file, so `path` is whole or absent.
fn plot_atomically(path: &Path, chart: &Chart<'_>) -> Result<(), EvalError> {
    let partial = path.with_extension("partial.png");
    match chart {
        Chart::Line(c) => line_chart(&partial, c)?,
        Chart::Bar(c) => bar_chart(&partial, c)?,
    }
    std::fs::rename(&partial, path).map_err(EvalError::io(path))
}

/// Writes `report.json`, `report.md`, `cosine_vs_renders.png` and `per_param_sign_agreement.png` into `out`.
pub fn write_grad_report(out: &Path, report: &GradReport) -> Result<(), EvalError> {
    std::fs::create_dir_all(out).map_err(EvalError::io(out))?;
    write_json(&out.join("report.json"), report)?;
    write_atomic(&out.join("report.md"), grad_markdown(report).as_bytes())?;
    plot_atomically(&out.join("cosine_vs_renders.png"), &Chart::Line(cosine_chart(report)))?;
    plot_atomically(&out.join("per_param_sign_agreement.png"), &Chart::Bar(per_param_chart(report)))
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

/// The Markdown report of `eval-grads`.
pub fn grad_markdown(r: &GradReport) -> String {
    let mut s = String::new();
    let reference = match (&r.reference.name[..], r.reference.h) {
        ("fd", Some(h)) => format!("central finite differences, h = {h}"),
        (name, _) => format!("{name} (the test effect's true gradient, from its DSP twin)"),
    };
    let _ = writeln!(s, "# Gradient evaluation: chain `{}`\n", r.chain);
    let _ = writeln!(
        s,
        "{} examples drawn as training draws them ({} s at {} Hz, seed {}), each at a random θ; {} parameters; loss \
         MRSTFT (FFT sizes {:?}); {} pool workers (seconds are per estimate over a batch through them).\n",
        r.examples,
        r.clip_seconds,
        r.sample_rate,
        r.seed,
        r.params.len(),
        r.loss_fft_sizes,
        r.workers
    );
    if let (Some(hop), Some(rows)) = (r.hop, r.rows) {
        let _ = writeln!(
            s,
            "θ: trajectories of {rows} rows, one every {hop} frames, {} values per example, rendered as automation; \
             SPSA's scoring of the rows is in each label (none: every row scored against the whole output, as \
             DeepAFx does).\n",
            rows * r.params.len()
        );
    }
    let _ = writeln!(s, "Reference: {reference}; failed on {} examples.", r.reference.failed);
    if let Some(c) = &r.reference.check {
        let _ = writeln!(
            s,
            "Reference check: finite differences at h = {} agree with it at cosine {:.4} on average (10th percentile \
             {:.4}).",
            c.h, c.cosine_mean, c.cosine_p10
        );
    }
    let _ = writeln!(
        s,
        "\nDescent: the fraction of examples where θ − {}·ĝ/‖ĝ‖ lowers the real chain's loss.\n",
        r.descent_step
    );
    let mut table = Table::compact([
        "estimator",
        "renders / estimate",
        "s / estimate",
        "cosine mean",
        "median",
        "p10",
        "rel. L2 error",
        "sign agreement",
        "descent",
        "worst parameter (sign agreement)",
    ]);
    for e in &r.estimators {
        let worst = e
            .per_param_sign_agreement
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or("–".into(), |(j, v)| format!("{} ({:.2})", r.params[j], v));
        table.row([
            format!("{}{}", e.label, if e.is_reference { " (reference)" } else { "" }),
            e.renders_per_estimate.to_string(),
            format!("{:.4}", e.seconds_per_estimate),
            format!("{:.3}", e.cosine_mean),
            format!("{:.3}", e.cosine_median),
            format!("{:.3}", e.cosine_p10),
            format!("{:.3}", e.rel_err_mean),
            format!("{:.3}", e.sign_agreement),
            format!("{:.3}", e.descent_rate),
            worst,
        ]);
    }
    s.push_str(&table.to_string());
    s.push_str("\n## Sign agreement per parameter\n\n");
    let shown = shown_in_per_param(r);
    let mut table = Table::compact(["parameter"].into_iter().chain(shown.iter().map(|e| e.label.as_str())));
    for (j, name) in r.params.iter().enumerate() {
        let agreement =
            shown.iter().map(|e| format!("{:.2}", e.per_param_sign_agreement.get(j).copied().unwrap_or(f64::NAN)));
        table.row([name.clone()].into_iter().chain(agreement));
    }
    s.push_str(&table.to_string());
    let _ = writeln!(
        s,
        "\n`cosine_vs_renders.png`: mean cosine to the reference against plugin renders per estimate (log x), one \
         line per estimator family (np-hh renders nothing and is drawn at 1). `per_param_sign_agreement.png`: the \
         table above as bars.\n\nSettings in `report.json` (k = {}, ε = {}, h = {}).",
        fmt_opt(r.estimators.iter().filter_map(|e| e.k).max()),
        fmt_opt(r.estimators.iter().filter_map(|e| e.epsilon).reduce(f32::max)),
        fmt_opt(r.estimators.iter().filter_map(|e| e.h).reduce(f32::max)),
    );
    s
}

/// The estimators the per-parameter views show: the reference aside, each non-SPSA estimator, and SPSA at its
/// smallest and largest K for the ε with the best mean cosine at the largest K.
fn shown_in_per_param(r: &GradReport) -> Vec<&crate::grads::EstimatorReport> {
    let spsa: Vec<_> = r.estimators.iter().filter(|e| e.name == "spsa").collect();
    let k_max = spsa.iter().filter_map(|e| e.k).max();
    let k_min = spsa.iter().filter_map(|e| e.k).min();
    let best_epsilon = spsa
        .iter()
        .filter(|e| e.k == k_max)
        .max_by(|a, b| a.cosine_mean.total_cmp(&b.cosine_mean))
        .and_then(|e| e.epsilon);
    r.estimators
        .iter()
        .filter(|e| !e.is_reference)
        .filter(|e| e.name != "spsa" || (e.epsilon == best_epsilon && (e.k == k_max || e.k == k_min)))
        .collect()
}

fn cosine_chart(r: &GradReport) -> LineChart<'static> {
    let mut families: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in r.estimators.iter().filter(|e| e.cosine_mean.is_finite()) {
        let family = match (e.name.as_str(), e.epsilon) {
            ("spsa", Some(eps)) => match e.scoring {
                None => format!("spsa, ε = {eps}"),
                Some(scoring) => format!("spsa {scoring}, ε = {eps}"),
            },
            ("fd", _) => "fd (each step h)".to_string(),
            ("np-hh", _) => "np-hh / proxy (no render; at 1)".to_string(),
            (name, _) => name.to_string(),
        };
        families.entry(family).or_default().push(((e.renders_per_estimate.max(1)) as f64, e.cosine_mean));
    }
    let series = families
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { markers: true, ..Series::new(name, points) }
        })
        .collect();
    LineChart {
        title: "Gradient estimates vs the reference",
        x_label: "plugin renders per estimate",
        y_label: "mean cosine similarity to the reference",
        log_x: true,
        log_y: false,
        series,
        markers: true,
    }
}

fn per_param_chart(r: &GradReport) -> BarChart<'static> {
    BarChart {
        title: "Sign agreement with the reference, per parameter",
        x_label: "parameter",
        y_label: "fraction of examples with the reference's sign",
        categories: r.params.clone(),
        series: shown_in_per_param(r)
            .into_iter()
            .map(|e| (e.label.clone(), e.per_param_sign_agreement.clone()))
            .collect(),
        y_range: Some((0.0, 1.0)),
    }
}

/// Writes `compare`'s `report.json`, `report.md` and `validation_vs_time.png` into `out`.
pub fn write_compare_report(out: &Path, report: &CompareReport) -> Result<(), EvalError> {
    std::fs::create_dir_all(out).map_err(EvalError::io(out))?;
    write_json(&out.join("report.json"), report)?;
    write_atomic(&out.join("report.md"), crate::compare::markdown(report).as_bytes())?;
    let chart = LineChart {
        title: "Validation MRSTFT (real chain) against training time",
        x_label: "training wall-clock time (minutes)",
        y_label: "validation MRSTFT",
        log_x: false,
        log_y: false,
        series: report
            .methods
            .iter()
            .map(|m| Series { markers: true, ..Series::new(m.method.clone(), m.curve.clone()) })
            .collect(),
        markers: true,
    };
    plot_atomically(&out.join("validation_vs_time.png"), &Chart::Line(chart))
}
