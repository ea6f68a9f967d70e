//! Corpora from real recordings in every supported format, with broken files among them.

use std::path::Path;
use std::process::Command;

use afx_core::audio_file::load_audio;
use afx_datasets::{Corpus, DatasetError, Manifest, Split};
use afx_testkit::{SAMPLES, write_wav};

/// `name` from sonic-pi-samples converted by sox to `to` (any extension sox writes).
fn convert(name: &str, to: &Path) {
    let status = Command::new("sox").arg(Path::new(SAMPLES).join(name)).arg(to).status().expect("sox (Debian)");
    assert!(status.success(), "sox {name} -> {}", to.display());
}

/// A user corpus: nested folders, WAV (16-bit and float), FLAC, OGG, MP3, and three broken files.
fn user_corpus(dir: &Path) {
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    convert("loop_amen.flac", &dir.join("amen16.wav"));
    convert("loop_garzul.flac", &dir.join("a/garzul.ogg"));
    convert("loop_mika.flac", &dir.join("a/b/mika.mp3"));
    std::fs::copy(Path::new(SAMPLES).join("guit_em9.flac"), dir.join("a/guit.flac")).unwrap();
    let tabla = afx_testkit::recording("loop_tabla.flac");
    write_wav(&dir.join("a/b/tabla-float.wav"), tabla.sample_rate(), tabla.channels());
    let flac = std::fs::read(Path::new(SAMPLES).join("ambi_drone.flac")).unwrap();
    std::fs::write(dir.join("truncated.flac"), &flac[..flac.len() / 3]).unwrap();
    std::fs::write(dir.join("empty.wav"), b"").unwrap();
    std::fs::write(dir.join("notes.mp3"), b"these are not the sounds you are looking for").unwrap();
    std::fs::write(dir.join("readme.txt"), b"not audio, not listed").unwrap();
}

#[test]
fn every_format_decodes_to_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    user_corpus(dir.path());
    let reference = afx_testkit::recording("loop_amen.flac");
    let wav = load_audio(&dir.path().join("amen16.wav")).unwrap();
    assert_eq!((wav.sample_rate(), wav.num_channels(), wav.frames()), (44_100, 2, reference.frames()));
    // 16-bit WAV of a 16-bit FLAC: the same samples.
    assert_eq!(wav.channel(0), reference.channel(0));
    for lossy in ["a/garzul.ogg", "a/b/mika.mp3"] {
        let audio = load_audio(&dir.path().join(lossy)).unwrap();
        assert!(audio.frames() > 44_100 * 7, "{lossy}: {} frames", audio.frames());
    }
    // A FLAC cut to a third either decodes what is there or fails naming the file; it never panics.
    let full = afx_testkit::recording("ambi_drone.flac").frames();
    match load_audio(&dir.path().join("truncated.flac")) {
        Ok(partial) => assert!(partial.frames() < full / 2, "{} of {full} frames", partial.frames()),
        Err(e) => assert!(e.to_string().contains("truncated.flac"), "{e}"),
    }
    for bad in ["empty.wav", "notes.mp3"] {
        let e = load_audio(&dir.path().join(bad)).unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
}

#[test]
fn a_folder_without_manifest_is_split_by_file_and_broken_files_are_skipped_by_name() {
    let dir = tempfile::tempdir().unwrap();
    user_corpus(dir.path());
    let manifest = Manifest::for_folder(dir.path()).unwrap();
    assert_eq!(manifest.files.len(), 8, "{manifest:?}");
    assert!(!manifest.files.iter().any(|f| f.path.ends_with("readme.txt")));
    let mut loaded = 0;
    let mut skipped = vec![];
    for split in [Split::Train, Split::Val, Split::Test] {
        match Corpus::open(dir.path(), split, 22_050) {
            Ok(c) => {
                assert!(c.clips().iter().all(|(_, a)| a.sample_rate() == 22_050 && a.num_channels() == 1));
                loaded += c.len();
                skipped.extend(c.skipped().iter().cloned());
            }
            Err(DatasetError::Empty { skipped: s, .. }) => skipped.extend(s),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(loaded >= 5, "only {loaded} files loaded; skipped: {skipped:?}");
    for bad in ["empty.wav", "notes.mp3"] {
        assert!(skipped.iter().any(|s| s.contains(bad)), "{bad} not reported: {skipped:?}");
    }
}

#[test]
fn crops_are_deterministic_loud_enough_and_the_right_length() {
    let dir = tempfile::tempdir().unwrap();
    user_corpus(dir.path());
    let manifest = Manifest::for_folder(dir.path()).unwrap();
    let mut all_train = manifest.clone();
    for f in &mut all_train.files {
        f.split = Split::Train;
    }
    all_train.write(dir.path()).unwrap();
    let corpus = Corpus::open(dir.path(), Split::Train, 22_050).unwrap();
    let a = corpus.crop(3, 22_050).unwrap();
    assert_eq!(a, corpus.crop(3, 22_050).unwrap());
    assert_ne!(a, corpus.crop(4, 22_050).unwrap());
    for seed in 0..20 {
        let c = corpus.crop(seed, 22_050).unwrap();
        assert_eq!((c.frames(), c.sample_rate()), (22_050, 22_050));
        let rms = (c.channel(0).iter().map(|s| s * s).sum::<f32>() / 22_050.0).sqrt();
        let peak = c.channel(0).iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(rms > 0.02 && peak <= 0.95 + 1e-6, "seed {seed}: rms {rms}, peak {peak}");
    }
    assert!(corpus.crop(0, 22_050 * 60).is_none(), "no file is a minute long");
}

#[test]
fn a_folder_with_no_audio_or_a_bad_manifest_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Corpus::open(dir.path(), Split::Train, 22_050).unwrap_err().to_string();
    assert!(e.contains("holds no usable audio"), "{e}");
    std::fs::write(dir.path().join("manifest.json"), "{\"version\": 1, \"files\": [{\"path\": 3}]}").unwrap();
    let e = Corpus::open(dir.path(), Split::Train, 22_050).unwrap_err().to_string();
    assert!(e.contains("manifest.json"), "{e}");
    let e = Corpus::open(&dir.path().join("nope"), Split::Train, 22_050).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}
