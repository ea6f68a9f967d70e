//! `afx collect`: shards of examples rendered through a real plugin, resumable, splittable across machines.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use afx_proxy::collect::read_examples;
use common::*;

/// A small corpus of real recordings (a manifest puts them all in the training split).
fn corpus() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir_all(&corpus).unwrap();
        let mut files = vec![];
        for name in ["loop_amen.flac", "loop_tabla.flac", "guit_em9.flac"] {
            std::fs::copy(Path::new(SAMPLES).join(name), corpus.join(name)).unwrap();
            files.push(format!("{{\"path\": \"{name}\", \"split\": \"train\"}}"));
        }
        std::fs::write(corpus.join("manifest.json"), format!("{{\"version\": 1, \"files\": [{}]}}", files.join(",")))
            .unwrap();
        (dir, corpus)
    })
    .1
}

fn collect(dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    collect_in_job(dir, out, extra, &[])
}

/// [`collect`] as an array job whose scheduler set `job_env`.
fn collect_in_job(dir: &Path, out: &Path, extra: &[&str], job_env: &[(&str, &str)]) -> std::process::Output {
    let config = repo_config();
    let mut args = vec!["--config", arg(&config), "collect", "--chain", "zam_comp", "--data", arg(corpus())];
    args.extend(["--out", arg(out), "--examples", "10", "--shard-size", "3", "--seconds", "0.25", "--workers", "2"]);
    args.extend(extra);
    let mut command = afx_command(dir);
    for name in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
        command.env_remove(name);
    }
    command.envs(job_env.iter().copied()).args(&args).output().expect("run afx")
}

#[test]
fn an_array_job_takes_its_shards_from_slurm_or_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let by_index = dir.path().join("by-index");
    ok(collect(dir.path(), &by_index, &["--shard", "1/2"]));
    let expected = shards(&by_index);
    assert_eq!(
        expected.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["shard-00001.safetensors", "shard-00003.safetensors"]
    );
    let jobs: [&[(&str, &str)]; 3] = [
        &[("SLURM_ARRAY_TASK_ID", "1")],
        &[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "1")],
        &[("JOB_COMPLETION_INDEX", "1")],
    ];
    for (i, job_env) in jobs.into_iter().enumerate() {
        let out = dir.path().join(format!("job-{i}"));
        ok(collect_in_job(dir.path(), &out, &["--shard", "env/2"], job_env));
        assert!(shards(&out) == expected, "{job_env:?}: not the shards of --shard 1/2");
    }
    let out = dir.path().join("no-job");
    let failed = collect_in_job(dir.path(), &out, &["--shard", "env/2"], &[]);
    fails_with(&failed, &["--shard env/2", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]);
    assert!(!out.exists(), "a refused collect made its folder");
}

fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn shards_hold_real_renders_and_machines_or_restarts_give_the_same_collection() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let out = ok(collect(dir.path(), &whole, &[]));
    assert!(stdout(&out).contains("4 shards, 10 examples"), "{}", stdout(&out));
    let reference = shards(&whole);
    assert_eq!(reference.len(), 4);

    // Each example is the chain's render of its input at its parameters.
    let spec = afx_spsa::WorkerSpec::new(Some(repo_config()), "zam_comp");
    let mut executor = afx_spsa::worker::Executor::new(&spec).unwrap();
    let examples = read_examples(&whole.join("shard-00001.safetensors")).unwrap();
    assert_eq!(examples.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3, 4, 5]);
    for e in &examples {
        assert!(e.params.iter().all(|t| (0.0..=1.0).contains(t)));
        let job = afx_spsa::Job::Render { hop: 0, input: e.input.clone().into(), theta: e.params.clone() };
        assert_eq!(executor.run(&job).unwrap().into_audio().unwrap(), e.output);
    }

    // Two machines, each its half, into one folder: the same files.
    let split = dir.path().join("split");
    ok(collect(dir.path(), &split, &["--shard", "1/2"]));
    assert_eq!(shards(&split).len(), 2);
    ok(collect(dir.path(), &split, &["--shard", "0/2"]));
    assert_eq!(shards(&split), reference);

    // A run killed part-way (two shards done, one write left as a temporary file) resumes without duplicates.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    for (name, bytes) in &reference[..2] {
        std::fs::write(resumed.join(name), bytes).unwrap();
    }
    std::fs::write(resumed.join(".afx-half-written.tmp"), &reference[2].1[..100]).unwrap();
    let out = ok(collect(dir.path(), &resumed, &[]));
    assert!(stdout(&out).contains("wrote 4 examples"), "{}", stdout(&out));
    assert_eq!(shards(&resumed), reference);
    assert!(!resumed.join(".afx-half-written.tmp").exists(), "the killed run's temporary file is still there");
}

#[test]
fn torn_and_foreign_shards_are_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(collect(dir.path(), &data, &[]));
    // Another collection (another seed) into the same folder is refused.
    fails_with(&collect(dir.path(), &data, &["--seed", "5"]), &["shard-00000.safetensors", "another collection"]);
    // A torn shard outside this machine's slice is named when the manifest is written.
    let shard = data.join("shard-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&collect(dir.path(), &data, &["--shard", "1/2"]), &["shard-00002.safetensors", "torn"]);
    // Its own slice rewrites it.
    ok(collect(dir.path(), &data, &["--shard", "0/2"]));
    fails_with(&collect(dir.path(), &data, &["--shard", "3/2"]), &["3/2", "I/N"]);
}

#[test]
fn collect_names_an_unknown_chain_a_missing_corpus_and_a_bad_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_config();
    let out = dir.path().join("out");
    let run = |chain: &str, data: &str, extra: &[&str]| {
        let args = [
            "--config",
            arg(&config),
            "collect",
            "--chain",
            chain,
            "--data",
            data,
            "--out",
            arg(&out),
            "--examples",
            "2",
        ];
        afx(dir.path(), &[&args[..], extra].concat())
    };
    let data = corpus();
    let data = data.to_str().unwrap();
    fails_with(&run("zam_cmop", data, &[]), &["zam_cmop", "did you mean", "zam_comp"]);
    fails_with(&run("zam_comp", "no/such/corpus", &[]), &["no/such/corpus"]);
    // A time limit that is no time limit: named, with what would be valid, before anything renders.
    for bad in ["0", "-1", "NaN", "inf"] {
        fails_with(&run("zam_comp", data, &[&format!("--timeout={bad}")]), &["--timeout", bad, "positive"]);
    }
    assert!(!out.exists(), "nothing may be written for bad input");
}

#[test]
fn bench_collect_prints_examples_per_second_with_one_and_two_workers_and_their_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_config();
    let args = ["--config", config.to_str().unwrap(), "bench", "collect", "--chain", "zam_comp", "--examples", "4"];
    // Without --data: the test signal in memory.
    let out = ok(afx(dir.path(), &[&args[..], &["--seconds", "0.1", "--repeats", "1"]].concat()));
    for needle in ["1 worker", "2 workers", "examples/s", "speedup"] {
        assert!(stdout(&out).contains(needle), "{needle:?} missing:\n{}", stdout(&out));
    }
    // With a corpus folder, as JSON.
    let out = ok(afx(
        dir.path(),
        &[&args[..], &["--data", corpus().to_str().unwrap(), "--seconds", "0.25", "--repeats", "2", "--json"]].concat(),
    ));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (one, two) = (r["examples_per_s_1_worker"].as_f64().unwrap(), r["examples_per_s_2_workers"].as_f64().unwrap());
    assert!(one > 0.0 && two > 0.0, "{r}");
    // The median of two rounds' ratios: between them.
    let speedup = r["speedup_2_workers"].as_f64().unwrap();
    let range: Vec<f64> = r["speedup_range"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(range[0] > 0.0 && range[0] <= speedup && speedup <= range[1], "{r}");
    assert!(r["speedup_without_pool"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(
        (r["chain"].as_str(), r["examples"].as_u64(), r["repeats"].as_u64()),
        (Some("zam_comp"), Some(4), Some(2))
    );
}

#[test]
fn bench_collect_names_an_unknown_chain_a_missing_corpus_zero_examples_and_crops_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_config();
    let run = |extra: &[&str]| {
        afx(dir.path(), &[&["--config", config.to_str().unwrap(), "bench", "collect"], extra].concat())
    };
    fails_with(&run(&["--chain", "eq_cmop"]), &["eq_cmop", "did you mean", "eq_comp"]);
    fails_with(&run(&["--data", "no/such/corpus"]), &["no/such/corpus"]);
    fails_with(&run(&["--examples", "0"]), &["--examples"]);
    // Crops longer than the corpus's files: nothing to render, which must not pass for a throughput.
    fails_with(&run(&["--examples", "2", "--seconds", "40", "--repeats", "1"]), &["0 of 2 examples", "40 s"]);
}

/// `afx collect` of afx's test effect, with `AFX_TESTFX_FAULT=fault` (see `afx_testfx_dsp`) in its and its
/// workers' environment: the fault fires in examples whose drive is in its top 1/24.
fn collect_testfx(dir: &Path, out: &Path, fault: &str, extra: &[&str]) -> std::process::Output {
    let config = dir.join("testfx.toml");
    std::fs::write(
        &config,
        "[plugins.fx]\nformat = \"lv2\"\nid = \"urn:afx:testfx\"\n\
         params.drive = { train = true }\nparams.tone = { train = true }\nparams.gain = { train = true }\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_afx"));
    cmd.current_dir(dir).env_remove("AFX_CONFIG").env("AFX_TESTFX_FAULT", fault);
    for (k, v) in testfx().env() {
        cmd.env(k, v);
    }
    let args = ["--config", config.to_str().unwrap(), "collect", "--chain", "fx", "--data"];
    cmd.args(args).arg(corpus()).arg("--out").arg(out);
    cmd.args(["--examples", "120", "--shard-size", "20", "--seconds", "0.1", "--workers", "2"]);
    cmd.args(extra).output().unwrap()
}

/// An example as (normalised θ, input and output samples as bits).
type ExampleBits = (Vec<f32>, Vec<u32>, Vec<u32>);

/// Every example of a collection by index.
fn examples_by_index(dir: &Path) -> std::collections::BTreeMap<u64, ExampleBits> {
    let bits = |a: &afx_core::Audio| a.channels().concat().iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    shards(dir)
        .iter()
        .flat_map(|(name, _)| read_examples(&dir.join(name)).unwrap())
        .map(|e| (e.index, (e.params.clone(), bits(&e.input), bits(&e.output))))
        .collect()
}

/// Excluded examples of a collection by index, with why.
fn excluded(dir: &Path) -> std::collections::BTreeMap<u64, String> {
    shards(dir).iter().flat_map(|(name, _)| afx_proxy::collect::read_meta(&dir.join(name)).unwrap().excluded).collect()
}

#[test]
fn examples_that_crash_the_plugin_or_render_nan_are_excluded_and_the_rest_match_a_clean_collection() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    ok(collect_testfx(dir.path(), &clean, "none", &[]));
    let reference = examples_by_index(&clean);
    assert_eq!(reference.len(), 120);
    assert!(excluded(&clean).is_empty());
    // Drive (the first parameter) in its top 1/24 arms the fault; the seed puts a few examples there.
    let armed: Vec<u64> =
        reference.iter().filter(|(_, (theta, ..))| theta[0] >= 23.0 / 24.0).map(|(i, _)| *i).collect();
    assert!(!armed.is_empty() && armed.len() < 20, "{armed:?}");

    // A crash kills the worker running the shard's task: the shard is collected again one render job per
    // example, so the crash costs only its own example. A hang is a render past --timeout: the worker's
    // watchdog ends it after one time limit, not after the shard's 20 (each shard: 20 renders).
    for (fault, reason) in [("segfault", "signal 11"), ("nan", "non-finite"), ("hang", "timed out")] {
        let out = dir.path().join(fault);
        let collected = ok(collect_testfx(dir.path(), &out, fault, &["--timeout", "1"]));
        if fault == "hang" {
            // The events, not the time, say who ended each hang. The watchdog's exit is logged for every shard
            // task that held an armed example (and its retry); any job the pool itself timed out (the
            // examples' own jobs) ran out of one limit, never of the task's 20 limits.
            let log = stderr(&collected);
            let watchdog = format!("worker exited with code {}", afx_spsa::worker::WATCHDOG_EXIT);
            let shards: std::collections::BTreeSet<u64> = armed.iter().map(|i| i / 20).collect();
            assert!(log.matches(&watchdog).count() >= shards.len(), "no watchdog exit per hung shard:\n{log}");
            let timeouts: Vec<&str> = log.lines().filter(|l| l.contains("timed out after")).collect();
            assert!(timeouts.iter().all(|l| l.contains("timed out after 1.0 s")), "{timeouts:#?}");
        }
        let excluded = excluded(&out);
        assert_eq!(excluded.keys().copied().collect::<Vec<_>>(), armed, "{fault}: {excluded:?}");
        assert!(excluded.values().all(|why| why.contains(reason)), "{fault}: {excluded:?}");
        let kept = examples_by_index(&out);
        assert_eq!(kept.len(), 120 - armed.len());
        for (index, example) in &kept {
            assert!(reference[index] == *example, "{fault}: example {index} differs from the clean collection's");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["total_examples"].as_u64(), Some(120 - armed.len() as u64), "{manifest}");
    }
}
