//! `afx scan` survives plugins that crash or hang when loaded (each file is described in a child process), names
//! them with the reason, and caches what it found: an unchanged file is not described again, a touched one is,
//! a removed one is dropped. Real plugins (Debian's zam-plugins) beside afx's test effect, broken at load by
//! `AFX_TESTFX_FAULT=load-*`; zam ignores the variable. lilv reads an LV2 bundle's Turtle without running its
//! code, so the scan also calls each LV2 library's entry point (`lv2_descriptor`): the test effect fails in all
//! three formats.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// A scan setting: the test effect's folders first, then the system folders (zam), a private cache and HOME.
struct Setup {
    dir: tempfile::TempDir,
    lv2_path: String,
    clap_dir: PathBuf,
}

impl Setup {
    /// `with_system_lv2`: also every LV2 bundle in /usr/lib/lv2 (slower: ~160 bundles), else only zam's ZamComp.
    fn new(with_system_lv2: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        // A private copy of the .clap file, to touch and remove.
        let clap_dir = dir.path().join("clap");
        std::fs::create_dir_all(&clap_dir).unwrap();
        std::fs::copy(testfx().clap.join("AfxTest.clap"), clap_dir.join("AfxTest.clap")).unwrap();
        let lv2_path = if with_system_lv2 {
            format!("{}:/usr/lib/lv2", testfx().lv2.display())
        } else {
            let lv2 = dir.path().join("lv2");
            std::fs::create_dir_all(&lv2).unwrap();
            std::os::unix::fs::symlink("/usr/lib/lv2/ZamComp.lv2", lv2.join("ZamComp.lv2")).unwrap();
            format!("{}:{}", testfx().lv2.display(), lv2.display())
        };
        Setup { dir, lv2_path, clap_dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn scan(&self, fault: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_afx"));
        cmd.current_dir(self.dir.path())
            .env_remove("AFX_CONFIG")
            .env_remove("AFX_TESTFX_FAULT")
            .env("HOME", self.dir.path())
            .env("AFX_CACHE_DIR", self.cache())
            .env("LV2_PATH", &self.lv2_path)
            .env("CLAP_PATH", &self.clap_dir)
            .env("VST3_PATH", &testfx().vst3)
            .arg("scan")
            .args(args);
        if let Some(fault) = fault {
            cmd.env("AFX_TESTFX_FAULT", fault);
        }
        cmd.output().unwrap()
    }

    fn scan_json(&self, fault: Option<&str>, args: &[&str]) -> Value {
        let out = ok(self.scan(fault, &[&["--json"], args].concat()));
        serde_json::from_slice(&out.stdout).expect("scan --json prints one JSON object")
    }
}

fn names(scan: &Value, format: &str) -> Vec<String> {
    let plugins = scan["plugins"].as_array().unwrap();
    plugins.iter().filter(|p| p["format"] == format).map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

/// (format, file name, reason) of every failed file.
fn failed(scan: &Value) -> Vec<(String, String, String)> {
    let failed = scan["failed"].as_array().unwrap();
    failed
        .iter()
        .map(|f| {
            let path = Path::new(f["path"].as_str().unwrap());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (f["format"].as_str().unwrap().into(), name, f["reason"].as_str().unwrap().into())
        })
        .collect()
}

fn stat(scan: &Value, key: &str) -> u64 {
    scan["stats"][key].as_u64().unwrap()
}

#[test]
fn a_plugin_that_segfaults_at_load_fails_alone_and_the_cache_spares_a_second_scan() {
    let setup = Setup::new(true);
    let first = setup.scan_json(Some("load-segfault"), &[]);
    for format in ["lv2", "clap", "vst3"] {
        let zam: Vec<String> = names(&first, format).into_iter().filter(|n| n.starts_with("Za")).collect();
        assert_eq!(zam.len(), 17, "{format}: {zam:?}");
    }
    for format in ["lv2", "clap", "vst3"] {
        assert!(!names(&first, format).contains(&"afx test effect".to_string()), "{format}");
    }
    // Only the test effect's files (the system may hold LV2 plugins that are broken for real: Debian 12's swh
    // mbeq and pitch_scale lack a symbol of fftw).
    let failed: Vec<_> = failed(&first).into_iter().filter(|(_, name, _)| name.contains("fx")).collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for ((format, name, reason), (want_format, want_name)) in
        failed.iter().zip([("clap", "AfxTest.clap"), ("lv2", "afx-testfx.lv2"), ("vst3", "AfxTest.vst3")])
    {
        assert_eq!((format.as_str(), name.as_str()), (want_format, want_name));
        assert!(reason.starts_with("killed by signal 11 (SIGSEGV)"), "{reason}");
        assert!(reason.contains("deliberate Segfault fault at load"), "the plugin's last words are lost: {reason}");
    }
    assert_eq!(stat(&first, "described"), stat(&first, "files"));

    // Nothing changed: everything, failures included, comes from the cache; no child runs.
    let second = setup.scan_json(Some("load-segfault"), &[]);
    assert_eq!((stat(&second, "described"), stat(&second, "cached")), (0, stat(&first, "files")));
    assert_eq!(second["plugins"], first["plugins"]);
    assert_eq!(second["failed"], first["failed"]);

    // The text listing names the failed files and why; the exit status is still success.
    let text = ok(setup.scan(Some("load-segfault"), &[]));
    let listing = stdout(&text);
    assert!(listing.contains("FAILED clap ") && listing.contains("AfxTest.clap"), "{listing}");
    assert!(listing.contains("killed by signal 11 (SIGSEGV)"), "{listing}");
    assert!(stderr(&text).contains(&format!("{} failed files", first["failed"].as_array().unwrap().len())));
}

#[test]
fn a_plugin_that_hangs_at_load_times_out_alone() {
    let setup = Setup::new(false);
    // The limit applies to every plugin file: long enough that a real plugin loads inside it on a busy 2-core
    // machine (ZamVerb's VST3 once took over 1.5 s there), short enough to keep the three hung files cheap.
    let scan = setup.scan_json(Some("load-hang"), &["--timeout", "5"]);
    assert!(names(&scan, "clap").contains(&"ZamComp".to_string()));
    assert!(names(&scan, "lv2").contains(&"ZamComp".to_string()));
    let failed = failed(&scan);
    let hung: Vec<(&str, &str)> = failed.iter().map(|(f, n, _)| (f.as_str(), n.as_str())).collect();
    assert_eq!(hung, [("clap", "AfxTest.clap"), ("lv2", "afx-testfx.lv2"), ("vst3", "AfxTest.vst3")]);
    for (_, _, reason) in &failed {
        assert_eq!(reason, "timed out after 5 s");
    }
}

#[test]
fn a_touched_file_is_described_again_a_removed_one_dropped_and_rescan_describes_all() {
    let setup = Setup::new(false);
    let first = setup.scan_json(None, &["--format", "clap"]);
    let files = stat(&first, "files");
    assert!(names(&first, "clap").contains(&"afx test effect".to_string()));
    assert!(failed(&first).is_empty(), "{:?}", failed(&first));

    // Touched: described again, alone, and now it fails (the fault is armed this time).
    let clap = setup.clap_dir.join("AfxTest.clap");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    std::fs::File::options().write(true).open(&clap).unwrap().set_modified(later).unwrap();
    let touched = setup.scan_json(Some("load-abort"), &["--format", "clap"]);
    assert_eq!((stat(&touched, "described"), stat(&touched, "cached")), (1, files - 1));
    let failed_now = failed(&touched);
    assert_eq!(failed_now.len(), 1);
    assert!(failed_now[0].2.starts_with("killed by signal 6 (SIGABRT)"), "{failed_now:?}");

    // The other formats' cache entries survive a scan of one format.
    let all = setup.scan_json(None, &[]);
    assert_eq!(stat(&all, "cached"), files);

    // Removed: gone from the result and the cache.
    std::fs::remove_file(&clap).unwrap();
    let removed = setup.scan_json(None, &["--format", "clap"]);
    assert_eq!((stat(&removed, "files"), stat(&removed, "described")), (files - 1, 0));
    assert!(failed(&removed).is_empty());
    assert!(!std::fs::read_to_string(setup.cache().join("scan.json")).unwrap().contains("AfxTest.clap"));

    // --rescan ignores the cache.
    let rescan = setup.scan_json(None, &["--format", "clap", "--rescan"]);
    assert_eq!(stat(&rescan, "described"), files - 1);
}

#[test]
fn a_corrupt_cache_is_a_warning_and_a_full_scan() {
    let setup = Setup::new(false);
    std::fs::create_dir_all(setup.cache()).unwrap();
    std::fs::write(setup.cache().join("scan.json"), "{ not json").unwrap();
    let out = ok(setup.scan(None, &["--format", "vst3", "--json"]));
    assert!(stderr(&out).contains("is corrupt"), "{}", stderr(&out));
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stat(&scan, "described"), stat(&scan, "files"));
    assert!(names(&scan, "vst3").contains(&"afx test effect".to_string()));
}

#[test]
fn describe_prints_one_file_as_json_and_a_bad_file_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(afx(dir.path(), &["describe", "--format", "vst3", "/usr/lib/vst3/ZamComp.vst3"]));
    let line = stdout(&out).lines().rev().find(|l| l.starts_with('{')).unwrap().to_string();
    let report: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(report["plugins"][0]["name"], "ZamComp");
    let out = ok(afx(dir.path(), &["describe", "--format", "lv2", "/usr/lib/clap"]));
    assert!(stdout(&out).contains("not an LV2 bundle: it has no manifest.ttl"), "{}", stdout(&out));
}

#[test]
fn render_takes_a_plugin_by_path_and_names_the_choices_in_a_file_with_several() {
    let dir = tempfile::tempdir().unwrap();
    let input = amen_mono_wav(dir.path());
    let input = input.to_str().unwrap();
    for path in ["/usr/lib/vst3/ZamComp.vst3", "/usr/lib/clap/ZamComp.clap", "/usr/lib/lv2/ZamComp.lv2"] {
        let output = dir.path().join("out.wav");
        let out = afx(dir.path(), &["render", "--plugin", path, "-i", input, "-o", output.to_str().unwrap()]);
        ok(out);
        assert!(output.exists());
    }
    // In plugins.toml too.
    let config = dir.path().join("plugins.toml");
    std::fs::write(&config, "[plugins.comp]\nformat = \"clap\"\nid = \"/usr/lib/clap/ZamComp.clap\"\n").unwrap();
    let config = config.to_str().unwrap();
    let out = ok(afx(dir.path(), &["render", "--config", config, "--plugin", "comp", "-i", input, "-o", "y.wav"]));
    assert!(stdout(&out).contains("Threshold"), "{}", stdout(&out));
    let several = afx(dir.path(), &["render", "--plugin", "/usr/lib/lv2/fil4.lv2", "-i", input, "-o", "x.wav"]);
    fails_with(&several, &["/usr/lib/lv2/fil4.lv2", "holds 2 plugins", "http://gareus.org/oss/lv2/fil4#mono"]);
    let none = afx(dir.path(), &["render", "--plugin", "/usr/lib/lv2/units.lv2", "-i", input, "-o", "x.wav"]);
    fails_with(&none, &["/usr/lib/lv2/units.lv2 holds no plugin"]);
    let wrong = afx(dir.path(), &["render", "--plugin", "/no/such/Thing.clap", "-i", input, "-o", "x.wav"]);
    fails_with(&wrong, &["/no/such/Thing.clap does not exist", ".vst3 bundle, a .clap file or an LV2 bundle folder"]);
}
