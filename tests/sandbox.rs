//! Plugins are untrusted native code: afx's test effect, made hostile (`AFX_TESTFX_FAULT`: it writes a file,
//! connects to a loopback port, allocates without bound, forks a lasting child, starts a thousand threads,
//! floods stdout, closes its standard descriptors), at render time and at load time, in each format. In every
//! case nothing is written outside the worker's folder, the loopback listener receives no connection, no process
//! the plugin started outlives the pool, and the other items of the batch are exact; where a cap ends the worker,
//! the item's error names it; and `afx scan` still exits 0 listing every other plugin.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use afx_host::{Audio, Format};
use afx_spsa::{FailureKind, Isolation, Pool, PoolConfig, PoolError, WorkerCommand, WorkerSpec};
use afx_testfx_dsp::{CLAP_ID, LV2_URI, VST3_CLASS_ID};
use common::*;

const FORMATS: [(Format, &str); 3] = [(Format::Lv2, LV2_URI), (Format::Clap, CLAP_ID), (Format::Vst3, VST3_CLASS_ID)];
/// Each worker's memory cap in these tests: small, so the allocation bomb meets it at once.
const MEMORY: u64 = 256 << 20;
/// The modes that misbehave and go on, and those a cap ends (with what the error says).
const SURVIVED: [&str; 5] = ["write-file", "connect", "fork", "stdout", "close-stdio"];
const CAPPED: [(&str, &str); 2] =
    [("threads", "sandbox: thread cap 256 exceeded"), ("alloc", "sandbox: memory cap 256 MiB exceeded")];

/// What a hostile plugin aims at: a file in a stand-in for the user's home, and a loopback listener.
struct Traps {
    _dir: tempfile::TempDir,
    home: PathBuf,
    target: PathBuf,
    listener: TcpListener,
}

impl Traps {
    fn new() -> Traps {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Traps { target: home.join("afx-testfx-was-here.txt"), home, listener, _dir: dir }
    }

    /// The environment that arms `fault` (and points it at the traps) beside the test effect's plugin paths.
    fn env(&self, fault: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            testfx().env().iter().map(|(k, v)| (k.to_string(), v.display().to_string())).collect();
        env.push(("AFX_TESTFX_FAULT".into(), fault.into()));
        env.push(("AFX_TESTFX_TARGET".into(), self.target.display().to_string()));
        env.push(("AFX_TESTFX_PORT".into(), self.listener.local_addr().unwrap().port().to_string()));
        env.push(("HOME".into(), self.home.display().to_string()));
        env
    }

    /// Nothing the plugin tried got out.
    fn assert_contained(&self, what: &str) {
        assert!(!self.target.exists(), "{what}: the plugin wrote {}", self.target.display());
        let home: Vec<_> = std::fs::read_dir(&self.home).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(home.is_empty(), "{what}: the plugin wrote into HOME: {home:?}");
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{what}: the loopback listener received a connection: {other:?}"),
        }
        let survivors = hostile_processes();
        assert!(survivors.is_empty(), "{what}: processes the plugin started are still running: {survivors:?}");
    }
}

/// Processes named `afx-hostile` (the test effect's forked children; its threads of that name are not listed).
fn hostile_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim() == "afx-hostile").then(|| path.display().to_string())
        })
        .collect()
}

/// This process's resident memory (VmRSS), in MiB.
fn resident_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024
}

/// A pool of two sandboxed `afx worker`s hosting the test effect in `format`, `fault` armed.
fn pool(traps: &Traps, format: (Format, &str), fault: &str) -> Result<Pool, PoolError> {
    pool_with(traps, format, fault, true)
}

fn pool_with(traps: &Traps, (format, id): (Format, &str), fault: &str, sandbox: bool) -> Result<Pool, PoolError> {
    let mut command = WorkerCommand::new(env!("CARGO_BIN_EXE_afx"));
    command.args.push("worker".into());
    for (k, v) in traps.env(fault) {
        command = command.env(&k, v);
    }
    let spec = WorkerSpec { format: Some(format), ..WorkerSpec::new(None, id) };
    let mut config = PoolConfig::new(spec, Isolation::Process(command));
    config.workers = 2;
    config.sandbox.memory = Some(MEMORY);
    config.sandbox.enabled = sandbox;
    Pool::new(config)
}

/// Three items; the second is armed (drive at the top of its range, where the test effect's faults fire).
fn batch(pool: &Pool, armed: bool) -> (Vec<Arc<Audio>>, Vec<Vec<f32>>) {
    let input = Arc::new(head(&amen_mono(), 22_050));
    // By name: the parameters' ids are numbers in CLAP and VST3.
    let names: Vec<String> = pool.chain().params().iter().map(|p| p.spec.name.to_lowercase()).collect();
    assert!(names.iter().any(|n| n == "drive"), "the test effect has no drive parameter: {names:?}");
    let value = |name: &str, drive: f32| match name {
        "drive" => drive,
        "fault" => 0.0,
        _ => 0.5,
    };
    let theta = |drive: f32| -> Vec<f32> { names.iter().map(|n| value(n, drive)).collect() };
    let thetas = vec![theta(0.3), theta(if armed { 1.0 } else { 0.6 }), theta(0.5)];
    (vec![input; 3], thetas)
}

fn render(pool: &mut Pool, armed: bool) -> Vec<Result<Audio, afx_spsa::ItemError>> {
    let (inputs, thetas) = batch(pool, armed);
    pool.render_batch(&inputs, &thetas)
}

fn reference(traps: &Traps, format: (Format, &str)) -> [Vec<Audio>; 2] {
    let mut pool = pool(traps, format, "none").unwrap();
    let report = pool.sandbox().expect("process workers report their sandbox").clone();
    for rule in ["filesystem", "sockets", "processes", "memory", "threads"] {
        assert!(report.enforced.iter().any(|l| l.starts_with(rule)), "{rule} is not in force: {report}");
    }
    [false, true].map(|armed| render(&mut pool, armed).into_iter().map(Result::unwrap).collect())
}

fn same(a: &Audio, b: &Audio) -> bool {
    a.channels().iter().flatten().map(|v| v.to_bits()).eq(b.channels().iter().flatten().map(|v| v.to_bits()))
}

#[test]
fn without_the_sandbox_the_armed_item_does_write_its_file() {
    // The control of the tests below: the armed θ does fire the fault, so what they see contained was tried.
    for format in FORMATS {
        let traps = Traps::new();
        let mut pool = pool_with(&traps, format, "write-file", false).unwrap();
        let results = render(&mut pool, true);
        assert!(results.iter().all(Result::is_ok), "{}", format.0);
        assert!(traps.target.exists(), "{}: the armed render wrote nothing", format.0);
        std::fs::remove_file(&traps.target).unwrap();
        drop(pool_with(&traps, format, "load-write-file", false).unwrap());
        assert!(traps.target.exists(), "{}: the load wrote nothing", format.0);
    }
}

#[test]
fn hostile_renders_are_contained_and_the_other_items_are_exact() {
    for format in FORMATS {
        let traps = Traps::new();
        let [_, expected] = reference(&traps, format);
        let rss_before = resident_mib();
        for fault in SURVIVED.into_iter().chain(CAPPED.map(|(f, _)| f)) {
            let what = format!("{} {fault} at render", format.0);
            let mut pool = pool(&traps, format, fault).unwrap_or_else(|e| panic!("{what}: {e}"));
            let results = render(&mut pool, true);
            for i in [0, 2] {
                let got = results[i].as_ref().unwrap_or_else(|e| panic!("{what}: item {i} failed: {e}"));
                assert!(same(got, &expected[i]), "{what}: item {i} differs from the unfaulted render");
            }
            // The bomb went off in the worker: this process's memory is what it was.
            let rss = resident_mib();
            assert!(rss < rss_before + 64, "{what}: this process grew from {rss_before} to {rss} MiB");
            match CAPPED.iter().find(|(f, _)| *f == fault) {
                Some((_, message)) => {
                    let error = results[1].as_ref().err().unwrap_or_else(|| panic!("{what}: the armed item rendered"));
                    assert!(matches!(error.kind, FailureKind::Sandbox(_)), "{what}: {error}");
                    assert!(error.to_string().contains(message), "{what}: {error}");
                }
                None => {
                    let got = results[1].as_ref().unwrap_or_else(|e| panic!("{what}: the armed item failed: {e}"));
                    assert!(same(got, &expected[1]), "{what}: the armed item differs from the unfaulted render");
                }
            }
            drop(pool);
            traps.assert_contained(&what);
        }
    }
}

#[test]
fn hostile_loads_are_contained_and_a_capped_load_fails_the_start_naming_the_cap() {
    for format in FORMATS {
        let traps = Traps::new();
        let [expected, _] = reference(&traps, format);
        for fault in SURVIVED.into_iter().chain(CAPPED.map(|(f, _)| f)) {
            let what = format!("{} {fault} at load", format.0);
            let started = pool(&traps, format, &format!("load-{fault}"));
            match CAPPED.iter().find(|(f, _)| *f == fault) {
                Some((_, message)) => {
                    let error = started.err().unwrap_or_else(|| panic!("{what}: the pool started")).to_string();
                    assert!(error.contains(message), "{what}: {error}");
                }
                None => {
                    let mut pool = started.unwrap_or_else(|e| panic!("{what}: {e}"));
                    for (i, result) in render(&mut pool, false).iter().enumerate() {
                        let got = result.as_ref().unwrap_or_else(|e| panic!("{what}: item {i} failed: {e}"));
                        assert!(same(got, &expected[i]), "{what}: item {i} differs from the unfaulted render");
                    }
                }
            }
            traps.assert_contained(&what);
        }
    }
}

/// `afx scan --format F --json` with the test effect's folder and `extra` plugin folders.
fn scan(traps: &Traps, format: Format, fault: &str, lv2_extra: &Path) -> (std::process::Output, Vec<String>) {
    let cache = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_afx"));
    command.env_remove("AFX_CONFIG").env("AFX_CACHE_DIR", cache.path());
    for (k, v) in traps.env(fault) {
        command.env(k, v);
    }
    command.env("LV2_PATH", format!("{}:{}", testfx().lv2.display(), lv2_extra.display()));
    let out =
        command.args(["--worker-memory", "256M", "scan", "--json", "--format", format.as_str()]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let names =
        json["plugins"].as_array().into_iter().flatten().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    (out, names)
}

#[test]
fn a_scan_survives_every_hostile_load_and_lists_every_other_plugin() {
    // Two of Debian's LV2 bundles beside the test effect's (CLAP and VST3: the system's folders).
    let zam = tempfile::tempdir().unwrap();
    for bundle in ["ZamComp.lv2", "ZamEQ2.lv2"] {
        std::os::unix::fs::symlink(Path::new("/usr/lib/lv2").join(bundle), zam.path().join(bundle)).unwrap();
    }
    for (format, id) in FORMATS {
        let traps = Traps::new();
        let (_, mut others) = scan(&traps, format, "none", zam.path());
        assert!(others.iter().any(|p| p == id), "{format}: the test effect was not found");
        others.retain(|p| p != id);
        assert!(!others.is_empty(), "{format}: no other plugin to compare with");
        for fault in SURVIVED.into_iter().chain(CAPPED.map(|(f, _)| f)) {
            let what = format!("{format} scan with load-{fault}");
            let (out, found) = scan(&traps, format, &format!("load-{fault}"), zam.path());
            assert!(out.status.success(), "{what}: {:?}\n{}", out.status, stderr(&out));
            for other in &others {
                assert!(found.contains(other), "{what}: {other} is missing");
            }
            traps.assert_contained(&what);
        }
    }
}
