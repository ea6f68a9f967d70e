//! `AFX_TESTFX_FAULT=load-abort|load-segfault|load-hang` breaks the packaged test effect where a host merely
//! loads it, in every format: LV2's `lv2_descriptor`, CLAP's entry `init`, VST3's `GetPluginFactory`. The
//! render-time values (`abort`, `segfault`, ...) leave loading alone, as does no value at all.
//!
//! Each load runs in a child process (this test binary again, running only [`load_child`]), since it is meant to
//! crash.

use std::ffi::c_void;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use afx_testfx::bundle;

/// Set in a child: `<format> <path>` of the packaged file to load.
const CHILD: &str = "AFX_TESTFX_LOAD_CHILD";

/// Signal numbers on Linux.
const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;

/// How long the load-hang child must still be running to count as hung. A slow machine cannot make a hung load
/// return, so this window cannot fail the test spuriously.
const HANG_AFTER: Duration = Duration::from_secs(2);
/// A guard for the loads that must return (a good one takes milliseconds): only against a hang, never a time
/// window a busy machine could miss.
const RETURNS_WITHIN: Duration = Duration::from_secs(120);

/// The cdylib cargo built for this test run: `<target>/<profile>/libafx_testfx.so`.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().and_then(Path::parent).unwrap().join(bundle::LIBRARY_FILE);
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// The binary a host of `format` opens, and the path it hands the entry point.
fn binary(bundles: &bundle::Bundles, format: &str) -> PathBuf {
    match format {
        "lv2" => bundles.lv2.join(bundle::LV2_BINARY),
        "clap" => bundles.clap.clone(),
        "vst3" => bundles.vst3.join("Contents/x86_64-linux/AfxTest.so"),
        _ => unreachable!("unknown format {format}"),
    }
}

/// Not a test of its own: the body of a child process, which opens one packaged binary and calls its entry point
/// the way a host of that format does. The test below runs it by name among the ignored tests, so a normal run
/// neither runs nor counts it.
#[test]
#[ignore = "the body of a child process of load_faults_break_every_format_at_load_and_render_faults_do_not"]
fn load_child() {
    let spec =
        std::env::var(CHILD).expect("run as a child of the test below, with the binary in AFX_TESTFX_LOAD_CHILD");
    let (format, path) = spec.split_once(' ').unwrap();
    // SAFETY: our own plugin library; loading it may crash or hang, which is what the parent observes.
    let library = unsafe { libloading::Library::new(path) }.unwrap();
    match format {
        "lv2" => {
            // SAFETY: the LV2 entry point's signature, from the LV2 spec.
            let entry = unsafe { library.get::<extern "C" fn(u32) -> *const c_void>(b"lv2_descriptor") }.unwrap();
            assert!(!entry(0).is_null());
        }
        "clap" => {
            // SAFETY: as above; clack-host looks up `clap_entry` and calls its `init` with the file's path.
            let entry = unsafe { clack_host::prelude::PluginEntry::load(path) }.unwrap();
            assert!(entry.get_plugin_factory().is_some());
        }
        "vst3" => {
            // SAFETY: the VST3 entry point's signature (it returns a factory with one reference for the caller).
            let entry = unsafe { library.get::<extern "system" fn() -> *mut c_void>(b"GetPluginFactory") }.unwrap();
            let factory = entry();
            assert!(!factory.is_null());
            // SAFETY: the factory `GetPluginFactory` returned, whose one reference is ours to release.
            drop(unsafe { vst3::ComPtr::from_raw(factory.cast::<vst3::Steinberg::IPluginFactory>()) });
        }
        _ => panic!("unknown format {format}"),
    }
    println!("loaded {format}");
}

/// Loads `path` as `format` in a child with `AFX_TESTFX_FAULT=fault`; `None` when it was still running after
/// `limit` (it is then killed).
fn load(format: &str, path: &Path, fault: &str, limit: Duration) -> Option<(ExitStatus, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "load_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{format} {}", path.display()))
        .env("AFX_TESTFX_FAULT", fault)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            return Some((out.status, text));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn load_faults_break_every_format_at_load_and_render_faults_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = bundle::package(&library(), dir.path()).unwrap();
    for format in ["lv2", "clap", "vst3"] {
        let path = binary(&bundles, format);
        for fault in ["", "abort", "segfault", "hang", "nan", "load-bogus"] {
            let (status, text) =
                load(format, &path, fault, RETURNS_WITHIN).unwrap_or_else(|| panic!("{format} {fault:?}: hung"));
            assert!(status.success(), "{format} with AFX_TESTFX_FAULT={fault:?} failed to load ({status}):\n{text}");
            assert!(text.contains(&format!("loaded {format}")), "{format} {fault:?}: child did not load:\n{text}");
        }
        for (fault, signal) in [("load-abort", SIGABRT), ("load-segfault", SIGSEGV)] {
            let (status, text) =
                load(format, &path, fault, RETURNS_WITHIN).unwrap_or_else(|| panic!("{format} {fault}: hung"));
            assert_eq!(status.signal(), Some(signal), "{format} {fault}: {status}\n{text}");
            assert!(text.contains("deliberate"), "{format} {fault}: no last words:\n{text}");
        }
        assert!(load(format, &path, "load-hang", HANG_AFTER).is_none(), "{format} load-hang: the load returned");
    }
}
