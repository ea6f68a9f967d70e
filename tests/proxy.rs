//! The neural-proxy pipeline end to end through the CLI on the demo corpus: `afx collect` → `afx train-proxy`
//! (report, resume) → `afx train --grad np-fh | np-hh | proxy`, validated on the real chain in the same metrics
//! format as spsa; and the bad input around it (a proxy of another chain, torn and foreign shards).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

const CHAIN: &str = "zam_comp";

struct Fixture {
    _dir: tempfile::TempDir,
    corpus: PathBuf,
    data: PathBuf,
    proxy: PathBuf,
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let config = repo_config();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend(args);
    afx(dir, &all)
}

/// The demo corpus, a small collection from it and a proxy trained on it (a few steps: these tests check the
/// plumbing; the proxy's quality is measured by `afx train-proxy` on a real budget, see README).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        ok(afx(dir.path(), &["dataset", "build-demo", "--out", corpus.to_str().unwrap()]));
        let data = dir.path().join("data");
        let (c, d) = (corpus.to_str().unwrap(), data.to_str().unwrap());
        ok(run(
            dir.path(),
            &["collect", "--chain", CHAIN, "--data", c, "--out", d, "--examples", "24", "--shard-size", "8"],
        ));
        let proxy = dir.path().join("proxy");
        let out = ok(run(dir.path(), &proxy_args(&data, &proxy, "4")));
        assert!(stdout(&out).contains("held-out MRSTFT: proxy"), "{}", stdout(&out));
        Fixture { _dir: dir, corpus, data, proxy }
    })
}

fn proxy_args<'a>(data: &'a Path, out: &'a Path, steps: &'a str) -> Vec<&'a str> {
    let train = ["train-proxy", "--data", arg(data), "--out", arg(out), "--steps", steps, "--val-every", "2"];
    [&train[..], &["--channels", "4", "--batch", "2", "--patch", "4096"]].concat()
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn train_with<'a>(f: &'a Fixture, grad: &'a str, out: &'a str, chain: &'a str) -> Vec<&'a str> {
    let (data, proxy) = (f.corpus.to_str().unwrap(), f.proxy.to_str().unwrap());
    let train = ["train", "--chain", chain, "--data", data, "--grad", grad, "--proxy", proxy, "--out", out];
    [&train[..], &short_run("2", "2", "2")].concat()
}

#[test]
fn train_proxy_writes_a_report_against_the_identity_and_resumes_exactly() {
    let f = fixture();
    let report = std::fs::read_to_string(f.proxy.join("report.md")).unwrap();
    for needle in ["| proxy |", "| identity (input) |", "SI-SDR", "zam_comp.mak", "by parameter region"] {
        assert!(report.contains(needle), "report.md lacks {needle:?}:\n{report}");
    }
    let dir = tempfile::tempdir().unwrap();
    // 4 steps straight vs 2 steps, then --resume (with --steps 4 in its config: resume a copy made at step 2).
    let whole = dir.path().join("whole");
    ok(run(dir.path(), &proxy_args(&f.data, &whole, "4")));
    let part = dir.path().join("part");
    ok(run(dir.path(), &proxy_args(&f.data, &part, "4")));
    // Simulate a kill after step 2: drop the step-4 checkpoint and the lines after step 2.
    for ext in ["json", "safetensors"] {
        std::fs::remove_file(part.join(format!("checkpoints/step-00000004.{ext}"))).unwrap();
    }
    let out = ok(run(dir.path(), &["train-proxy", "--out", part.to_str().unwrap(), "--resume"]));
    assert!(stdout(&out).contains("4 steps"), "{}", stdout(&out));
    let weights = |run: &Path| std::fs::read(run.join("checkpoints/step-00000004.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&part), "the resumed proxy differs from the uninterrupted one");
    let strip = |v: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("seconds");
                r
            })
            .collect()
    };
    assert_eq!(strip(records(&whole.join("metrics.jsonl"))), strip(records(&part.join("metrics.jsonl"))));
}

#[test]
fn np_fh_np_hh_and_proxy_train_end_to_end_and_validate_on_the_real_chain() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let spsa_run = dir.path().join("spsa");
    let mut spsa = train_with(f, "spsa", spsa_run.to_str().unwrap(), CHAIN);
    spsa.retain(|a| *a != "--proxy" && *a != f.proxy.to_str().unwrap());
    ok(run(dir.path(), &spsa));
    let spsa_validation: Vec<String> = records(&spsa_run.join("metrics.jsonl"))
        .into_iter()
        .filter(|r| r["kind"] == "validation")
        .map(|r| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>().join(","))
        .collect();
    for grad in ["np-fh", "np-hh", "proxy"] {
        let out_dir = dir.path().join(grad);
        let out = ok(run(dir.path(), &train_with(f, grad, out_dir.to_str().unwrap(), CHAIN)));
        assert!(stdout(&out).contains("validation MRSTFT: trained"), "{grad}: {}", stdout(&out));
        let records = records(&out_dir.join("metrics.jsonl"));
        let validations: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "validation").collect();
        assert_eq!(validations.len(), 1, "{grad}");
        let v = validations[0];
        // The same metrics as spsa (on the real chain), plus the proxy's score of the same θ.
        let mut keys: Vec<String> = v.as_object().unwrap().keys().filter(|k| *k != "proxy").cloned().collect();
        keys.sort();
        let mut expected: Vec<String> = spsa_validation[0].split(',').map(String::from).collect();
        expected.sort();
        assert_eq!(keys, expected, "{grad}");
        assert!(v["mrstft"]["trained"].as_f64().unwrap().is_finite());
        assert!(v["proxy"].as_f64().unwrap().is_finite());
        let steps: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "step").collect();
        assert_eq!(steps.len(), 2);
        let render_s = steps[1]["timing"]["render_s"].as_f64().unwrap();
        assert_eq!(render_s > 0.0, grad == "np-fh", "{grad}: render time {render_s}");
        let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
        assert!(report.contains(&format!("gradient method {grad} (proxy ")), "{report}");
    }
}

#[test]
fn a_proxy_of_another_chain_or_without_proxy_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // eq_comp has other parameters than the proxy's zam_comp.
    fails_with(
        &run(dir.path(), &train_with(f, "np-fh", out.to_str().unwrap(), "eq_comp")),
        &["is a proxy of chain \"zam_comp\"", "not of chain \"eq_comp\"", "zam_comp.thr"],
    );
    let mut args = train_with(f, "np-hh", out.to_str().unwrap(), CHAIN);
    args.retain(|a| *a != "--proxy" && *a != f.proxy.to_str().unwrap());
    fails_with(&run(dir.path(), &args), &["np-hh", "--proxy"]);
    let mut args = train_with(f, "np-hh", out.to_str().unwrap(), CHAIN);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let i = args.iter().position(|a| *a == f.proxy.to_str().unwrap()).unwrap();
    args[i] = empty.to_str().unwrap();
    fails_with(&run(dir.path(), &args), &["holds no proxy checkpoint"]);
    let i = args.iter().position(|a| *a == "np-hh").unwrap();
    args[i] = "np-xx";
    fails_with(&run(dir.path(), &args), &["np-xx", "spsa, fd, exact, np-fh, np-hh, proxy"]);
}

#[test]
fn train_proxy_names_torn_and_foreign_shards_and_too_little_data() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(&f.data).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
    }
    let shard = data.join("shard-00001.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.path().join("proxy");
    fails_with(&run(dir.path(), &proxy_args(&data, &out, "2")), &["shard-00001.safetensors", "torn"]);
    assert!(!out.join("checkpoints").exists(), "nothing is written for a refused dataset");

    // A shard of another collection (other seed) among them.
    let other = dir.path().join("other");
    let c = f.corpus.to_str().unwrap();
    ok(run(
        dir.path(),
        &["collect", "--chain", CHAIN, "--data", c, "--out", other.to_str().unwrap(), "--examples", "8", "--seed", "9"],
    ));
    std::fs::copy(other.join("shard-00000.safetensors"), data.join("shard-00001.safetensors")).unwrap();
    fails_with(&run(dir.path(), &proxy_args(&data, &out, "2")), &["shard-00001.safetensors", "another collection"]);

    // One shard cannot be split into training and validation.
    fails_with(&run(dir.path(), &proxy_args(&other, &out, "2")), &["1 shard", "at least 2"]);
    fails_with(&run(dir.path(), &proxy_args(&dir.path().join("missing"), &out, "2")), &["missing"]);
}
