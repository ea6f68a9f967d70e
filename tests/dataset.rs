//! `afx dataset`: the demo corpus builds the same on every run, and `check` reports what training will see.

mod common;

use common::*;

#[test]
fn the_demo_corpus_builds_deterministically_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(afx(dir.path(), &["dataset", "build-demo", "--out", a.to_str().unwrap()]));
    ok(afx(dir.path(), &["dataset", "build-demo", "--out", b.to_str().unwrap()]));
    let manifest = std::fs::read_to_string(a.join("manifest.json")).unwrap();
    assert_eq!(manifest, std::fs::read_to_string(b.join("manifest.json")).unwrap());
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let files = v["files"].as_array().unwrap();
    assert!(files.len() >= 40, "{} files", files.len());
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert_eq!(std::fs::read(a.join(path)).unwrap(), std::fs::read(b.join(path)).unwrap(), "{path} differs");
    }
    for split in ["train", "val", "test"] {
        assert!(files.iter().any(|f| f["split"] == split), "no {split} file");
    }
    assert!(files.iter().any(|f| f["path"].as_str().unwrap().starts_with("speech/")));
    let out = ok(afx(dir.path(), &["dataset", "check", a.to_str().unwrap()]));
    let text = stdout(&out);
    assert!(text.contains("train:") && !text.contains("skipped"), "{text}");
}

#[test]
fn check_names_the_files_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let amen = afx_testkit::amen_mono();
    write_wav(&dir.path().join("good.wav"), amen.sample_rate(), amen.channels());
    std::fs::write(dir.path().join("broken.flac"), b"fLaC but nothing else").unwrap();
    let out = afx(dir.path(), &["dataset", "check", dir.path().to_str().unwrap()]);
    assert!(stdout(&out).contains("broken.flac"), "{}", stdout(&out));
    let empty = tempfile::tempdir().unwrap();
    fails_with(&afx(dir.path(), &["dataset", "check", empty.path().to_str().unwrap()]), &["no usable audio"]);
}

#[test]
fn build_demo_into_a_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, b"a file, not a folder").unwrap();
    fails_with(&afx(dir.path(), &["dataset", "build-demo", "--out", file.to_str().unwrap()]), &["taken"]);
}
