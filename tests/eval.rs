//! `afx eval-grads`, `afx compare` and the `fd` / `exact` gradient methods end to end: afx's own test effect
//! (whose true gradient is known) and real zam plugins in worker processes, on the demo corpus of real
//! recordings; bad input refused by flag with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn corpus() -> &'static Path {
    demo_corpus()
}

/// `afx --config plugins.toml ARGS` in `dir`, with the packaged test effect on every plugin path.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env_remove("AFX_TESTFX_FAULT");
    // The test effect beside the system's plugins (the zam chains of plugins.toml).
    for (k, v) in testfx().env() {
        let system = if k == "LV2_PATH" { ":/usr/lib/lv2" } else { "" };
        cmd.env(k, format!("{}{system}", v.display()));
    }
    cmd.arg("--config").arg(repo_config()).args(args).output().expect("run afx")
}

const TESTFX: &str = "urn:afx:testfx";

fn estimator<'a>(report: &'a Value, label: &str) -> &'a Value {
    report["estimators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == label)
        .unwrap_or_else(|| panic!("no estimator {label} in {report:#}"))
}

fn is_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{} is no plot", path.display());
}

#[test]
fn eval_grads_on_the_test_effect_measures_spsa_and_fd_against_its_exact_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let data = corpus().to_str().unwrap();
    let o = ok(run(
        dir.path(),
        &["eval-grads", "--chain", TESTFX, "--data", data, "--examples", "32", "--out"]
            .iter()
            .copied()
            .chain([out.to_str().unwrap(), "--json"])
            .collect::<Vec<_>>(),
    ));
    let report: Value = serde_json::from_str(&stdout(&o)).expect("--json prints the report");
    assert_eq!(report["reference"]["name"], "exact");
    assert_eq!(report["examples"], 32);
    for e in report["estimators"].as_array().unwrap() {
        for field in [
            "name",
            "k",
            "epsilon",
            "h",
            "cosine_mean",
            "cosine_p10",
            "rel_err_mean",
            "sign_agreement",
            "descent_rate",
            "renders_per_estimate",
            "seconds_per_estimate",
        ] {
            assert!(e.get(field).is_some(), "estimator lacks {field}: {e}");
        }
    }
    let cosine = |label: &str| estimator(&report, label)["cosine_mean"].as_f64().unwrap();
    // Finite differences of the packaged plugin agree with the exact gradient of its DSP twin.
    for h in ["0.01", "0.001"] {
        assert!(cosine(&format!("fd h={h}")) >= 0.99, "fd h={h}: {}", cosine(&format!("fd h={h}")));
    }
    // SPSA converges on it as K grows.
    for epsilon in ["0.001", "0.01", "0.05"] {
        let by_k: Vec<f64> = [1, 4, 16, 64].iter().map(|k| cosine(&format!("spsa K={k} ε={epsilon}"))).collect();
        assert!(by_k.windows(2).all(|w| w[0] < w[1]), "ε {epsilon}: cosine does not rise with K: {by_k:?}");
        assert!(by_k[3] >= 0.95, "ε {epsilon}: K=64 cosine {}", by_k[3]);
    }
    assert_eq!(estimator(&report, "spsa K=16 ε=0.01")["renders_per_estimate"], 33);
    assert_eq!(estimator(&report, "fd h=0.01")["renders_per_estimate"], 7);
    assert!(estimator(&report, "exact")["descent_rate"].as_f64().unwrap() >= 0.9);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("| spsa K=64 ε=0.01 |") && markdown.contains("exact (reference)"), "{markdown}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved, report);
    is_png(&out.join("cosine_vs_renders.png"));
    is_png(&out.join("per_param_sign_agreement.png"));
}

#[test]
fn eval_grads_uses_finite_differences_checked_at_two_steps_where_no_exact_gradient_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let (data, out_s) = (corpus().to_str().unwrap(), out.to_str().unwrap());
    let args = ["eval-grads", "--chain", "zam_comp", "--data", data, "--examples", "4", "--k", "1,8", "--epsilon"];
    let args: Vec<&str> = args.iter().copied().chain(["0.01", "--fd-step", "0.01", "--out", out_s, "--json"]).collect();
    let report: Value = serde_json::from_str(&stdout(&ok(run(dir.path(), &args)))).unwrap();
    assert_eq!(report["reference"]["name"], "fd");
    assert_eq!(report["reference"]["h"].as_f64().unwrap() as f32, 0.001);
    let check = report["reference"]["check"]["cosine_mean"].as_f64().unwrap();
    assert!(check > 0.9, "FD at h = 0.001 and 0.01 disagree on ZamComp: {check}");
    let labels: Vec<&str> =
        report["estimators"].as_array().unwrap().iter().map(|e| e["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["fd h=0.001", "spsa K=1 ε=0.01", "spsa K=8 ε=0.01", "fd h=0.01"]);
    assert_eq!(report["params"].as_array().unwrap().len(), 6, "zam_comp trains six parameters");
}

/// A proxy of zam_comp (a few steps on a tiny collection: only its parameter list matters here).
fn zam_comp_proxy(dir: &Path) -> PathBuf {
    let data = dir.join("collection");
    let proxy = dir.join("proxy");
    let c = corpus().to_str().unwrap();
    let d = data.to_str().unwrap();
    ok(run(dir, &["collect", "--chain", "zam_comp", "--data", c, "--out", d, "--examples", "16", "--shard-size", "8"]));
    let p = proxy.to_str().unwrap();
    ok(run(dir, &["train-proxy", "--data", d, "--out", p, "--steps", "1", "--patch", "2048", "--channels", "2"]));
    proxy
}

/// Gradients of trajectories (1 s at 22.05 kHz, hop 1024: 22 rows of 3 parameters) against the exact gradient
/// of every row: finite differences agree, and SPSA scored per row (causal, a window) is closer than scored
/// against the whole output, at equal renders.
#[test]
fn eval_grads_on_trajectories_scores_spsa_per_row_against_the_exact_gradient_of_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let (data, out_s) = (corpus().to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "eval-grads",
        "--chain",
        TESTFX,
        "--data",
        data,
        "--examples",
        "8",
        "--hop",
        "1024",
        "--k",
        "4,16",
        "--epsilon",
        "0.01",
        "--fd-step",
        "0.01",
        "--scoring",
        "whole,causal,window:1",
        "--out",
        out_s,
        "--json",
    ];
    let report: Value = serde_json::from_str(&stdout(&ok(run(dir.path(), &args)))).expect("--json prints the report");
    assert_eq!((report["hop"].as_u64(), report["rows"].as_u64()), (Some(1024), Some(22)));
    assert_eq!(report["reference"]["name"], "exact");
    let cosine = |label: &str| estimator(&report, label)["cosine_mean"].as_f64().unwrap();
    assert!(cosine("fd h=0.01") >= 0.99, "fd of every row against the exact gradient: {}", cosine("fd h=0.01"));
    assert_eq!(estimator(&report, "fd h=0.01")["renders_per_estimate"], 1 + 2 * 66);
    for k in [4, 16] {
        let [whole, causal, window] = ["", " causal", " window:1"].map(|s| cosine(&format!("spsa K={k} ε=0.01{s}")));
        assert!(whole < causal && causal < window, "K={k}: whole {whole}, causal {causal}, window:1 {window}");
        assert!(window >= 1.5 * whole, "K={k}: window:1 {window} is not 1.5x whole {whole}");
        assert_eq!(estimator(&report, &format!("spsa K={k} ε=0.01 causal"))["scoring"], "causal");
    }
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("trajectories of 22 rows, one every 1024 frames, 66 values"), "{markdown}");
}

#[test]
fn eval_grads_refuses_bad_input_by_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = zam_comp_proxy(dir.path());
    let out = dir.path().join("report");
    let (data, out_s, proxy_s) = (corpus().to_str().unwrap(), out.to_str().unwrap(), proxy.to_str().unwrap());
    let missing = dir.path().join("no-corpus");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--estimators", "spsa,magic"], vec!["unknown estimator \"magic\"", "spsa, fd, exact"]),
        (vec!["--k", "4,0"], vec!["--k", "positive"]),
        (vec!["--epsilon", "0"], vec!["--epsilon", "(0, 0.5)"]),
        (vec!["--epsilon=-0.01"], vec!["--epsilon"]),
        (vec!["--examples", "0"], vec!["--examples", "at least one"]),
        (vec!["--fd-step", "0.7"], vec!["--fd-step"]),
        (vec!["--proxy", proxy_s], vec!["--proxy", "zam_comp", TESTFX]),
        (vec!["--estimators", "np-fh"], vec!["--estimators", "np-fh needs --proxy"]),
        (vec!["--hop", "0"], vec!["--hop", "from 1 to the clip's 22050 frames"]),
        (vec!["--hop", "512", "--estimators", "spsa,np-hh", "--proxy", proxy_s], vec!["--estimators", "trajectories"]),
        (vec!["--hop", "512", "--scoring", "sideways"], vec!["sideways", "whole, causal and window:W"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["eval-grads", "--chain", TESTFX, "--data", data, "--out", out_s];
        if !extra.contains(&"--examples") {
            args.extend(["--examples", "2"]);
        }
        args.extend(extra.iter().copied());
        fails_with(&run(dir.path(), &args), &needles);
        assert!(!out.exists(), "{extra:?} wrote {}", out.display());
    }
    let args = ["eval-grads", "--chain", TESTFX, "--data", missing.to_str().unwrap(), "--out", out_s];
    fails_with(&run(dir.path(), &args), &["--data", "no-corpus"]);
    let args = ["eval-grads", "--chain", "zam_comp", "--data", data, "--estimators", "exact", "--out", out_s];
    fails_with(&run(dir.path(), &args), &["--estimators", "exact", "urn:zamaudio:ZamComp", "test effect"]);
    assert!(!out.exists());
}

fn train_args<'a>(chain: &'a str, grad: &'a str, run_dir: &'a str) -> Vec<&'a str> {
    let data = corpus().to_str().unwrap();
    let train = ["train", "--chain", chain, "--grad", grad, "--data", data, "--out", run_dir];
    [&train[..], &short_run("3", "2", "3")].concat()
}

#[test]
fn train_with_exact_and_finite_difference_gradients_and_exact_is_refused_for_real_plugins() {
    let dir = tempfile::tempdir().unwrap();
    for grad in ["exact", "fd"] {
        let run_dir = dir.path().join(grad);
        let o = ok(run(dir.path(), &train_args(TESTFX, grad, run_dir.to_str().unwrap())));
        assert!(stdout(&o).contains("3 steps"), "{}", stdout(&o));
        let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
        assert!(report.contains(&format!("gradient method {grad}")), "{report}");
        is_png(&run_dir.join("loss.png"));
    }
    let refused = dir.path().join("refused");
    let o = run(dir.path(), &train_args("zam_comp", "exact", refused.to_str().unwrap()));
    fails_with(&o, &["--grad exact", "urn:zamaudio:ZamComp", "test effect"]);
    assert!(!refused.join("checkpoints").exists());
}

#[test]
fn compare_trains_each_method_on_one_budget_and_scores_all_on_the_same_held_out_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let data = corpus().to_str().unwrap();
    let args = [
        "compare",
        "--chain",
        TESTFX,
        "--data",
        data,
        "--methods",
        "spsa,exact,np-hh",
        "--minutes",
        "0.02",
        "--batch",
        "2",
        "--val-every",
        "2",
        "--test-items",
        "4",
        "--proxy-examples",
        "128",
        "--proxy-minutes",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ok(run(dir.path(), &args));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let methods: Vec<&str> =
        report["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["spsa", "exact", "np-hh"]);
    let baselines: Vec<&str> =
        report["baselines"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(baselines, ["input", "default parameters", "random parameters"]);
    for row in report["methods"].as_array().unwrap().iter().chain(report["baselines"].as_array().unwrap()) {
        let scores = &row["scores"];
        for field in ["mrstft", "l1", "loudness_lu"] {
            assert!(scores[field].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{field} in {row}");
        }
    }
    for m in report["methods"].as_array().unwrap() {
        assert!(m["steps"].as_u64().unwrap() >= 1);
        assert!(!m["curve"].as_array().unwrap().is_empty(), "no validation point: {m}");
        assert!(Path::new(m["run"].as_str().unwrap()).join("report.md").exists());
    }
    // The proxy was collected and trained here, and its cost is reported.
    assert_eq!(report["proxy"]["examples"], 128);
    assert!(report["proxy"]["train_seconds"].as_f64().unwrap() > 0.0);
    assert!(stdout(&o).contains("| np-hh |") && stdout(&o).contains("+ proxy"), "{}", stdout(&o));
    is_png(&out.join("validation_vs_time.png"));

    // Bad input: nothing is trained or written.
    let bad = dir.path().join("bad");
    let bad_s = bad.to_str().unwrap();
    for (chain, extra, needles) in [
        (TESTFX, vec!["--methods", "spsa,sgd"], vec!["--methods", "unknown gradient method \"sgd\""]),
        (TESTFX, vec!["--methods", "spsa,spsa"], vec!["--methods", "twice"]),
        (TESTFX, vec!["--minutes", "0"], vec!["--minutes"]),
        ("zam_comp", vec!["--methods", "exact"], vec!["--methods exact", "test effect"]),
    ] {
        let mut args = vec!["compare", "--chain", chain, "--data", data, "--out", bad_s];
        if !extra.contains(&"--minutes") {
            args.extend(["--minutes", "0.01"]);
        }
        args.extend(extra.iter().copied());
        fails_with(&run(dir.path(), &args), &needles);
        assert!(!bad.exists(), "{extra:?} wrote {bad_s}");
    }
}
