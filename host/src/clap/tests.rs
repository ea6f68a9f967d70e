//! Tests against the CLAP plugins of Debian's `zam-plugins` (the same DSP as its LV2 bundles).

use super::*;
use crate::plugin::Effect;
use crate::render::RenderSettings;
use afx_core::Audio;

const ZAMCOMP: &str = "com.zamaudio.ZamComp";
const SETTINGS: RenderSettings = RenderSettings::with_block_size(512);

fn effect(id: &str) -> Effect {
    let backend = ClapWorld::new().backend(id).unwrap_or_else(|| panic!("{id} is not installed (zam-plugins)"));
    Effect::new(Box::new(backend))
}

/// Default values with some parameters (by name) changed.
fn values(info: &PluginInfo, set: &[(&str, f32)]) -> Vec<f32> {
    let mut values = info.default_values();
    for (name, value) in set {
        let index = info.params.iter().position(|p| p.name == *name).unwrap_or_else(|| panic!("no {name}"));
        values[index] = *value;
    }
    values
}

fn sine(amplitude: f32, hz: f32, rate: u32, frames: usize) -> Audio {
    let samples =
        (0..frames).map(|n| amplitude * (2.0 * std::f32::consts::PI * hz * n as f32 / rate as f32).sin()).collect();
    Audio::new(rate, vec![samples]).unwrap()
}

/// A reproducible drum-like test signal: decaying noise bursts over a low sine, mono, 1 s at 44.1 kHz.
fn hits() -> Audio {
    let mut seed = 1u32;
    let samples = (0..44_100)
        .map(|n| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            let envelope = (-((n % 11_025) as f32) / 2_000.0).exp();
            0.8 * envelope * noise + 0.2 * (2.0 * std::f32::consts::PI * 60.0 * n as f32 / 44_100.0).sin()
        })
        .collect();
    Audio::new(44_100, vec![samples]).unwrap()
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64).sqrt()
}

fn max_abs_difference(a: &Audio, b: &Audio) -> f32 {
    assert_eq!((a.num_channels(), a.frames()), (b.num_channels(), b.frames()));
    a.channels().iter().flatten().zip(b.channels().iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn finds_every_zam_plugin_in_usr_lib_clap() {
    let plugins = ClapWorld::new().plugins();
    let zam: Vec<&PluginInfo> =
        plugins.iter().filter(|p| p.path.starts_with("/usr/lib/clap") && p.id.starts_with("com.zamaudio.")).collect();
    assert_eq!(zam.len(), 17, "{:?}", zam.iter().map(|p| &p.id).collect::<Vec<_>>());
    let comp = zam.iter().find(|p| p.id == ZAMCOMP).unwrap();
    assert_eq!(comp.format, Format::Clap);
    assert_eq!(comp.path, Path::new("/usr/lib/clap/ZamComp.clap"));
    assert_eq!(comp.audio_inputs.iter().map(|p| p.sidechain).collect::<Vec<_>>(), [false, true]);
    assert_eq!(comp.audio_outputs.len(), 1);
    // The meters (gain reduction, output level) are read-only and left out.
    let names: Vec<&str> = comp.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Attack", "Release", "Knee", "Ratio", "Threshold", "Makeup", "Slew", "Sidechain"]);
    let thr = &comp.params[4];
    assert_eq!((thr.id.as_str(), thr.min, thr.max, thr.default), ("4", -80.0, 0.0, 0.0));
    assert_eq!(comp.params[7].kind, ParamKind::Toggle);
}

#[test]
fn folders_are_searched_in_order_recursively_and_each_file_counts_once() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nested = first.path().join("vendor/sub");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("b.clap"), b"").unwrap();
    std::fs::write(first.path().join("c.clap"), b"").unwrap();
    std::fs::write(first.path().join("notes.txt"), b"").unwrap();
    std::fs::write(second.path().join("a.clap"), b"").unwrap();
    std::os::unix::fs::symlink(first.path(), second.path().join("loop")).unwrap();
    let folders = [first.path().to_path_buf(), second.path().to_path_buf(), first.path().to_path_buf()];
    let found = find_clap_files(&folders);
    assert_eq!(found, [first.path().join("c.clap"), nested.join("b.clap"), second.path().join("a.clap")]);
}

#[test]
fn zamcomp_renders_are_bit_identical_and_independent_of_the_previous_render() {
    let mut comp = effect(ZAMCOMP);
    let audio = hits();
    let a = values(comp.info(), &[("Threshold", -30.0), ("Ratio", 6.0), ("Attack", 5.0)]);
    let b = values(comp.info(), &[("Threshold", -12.0), ("Ratio", 20.0), ("Release", 300.0), ("Makeup", 6.0)]);
    let first = comp.render(&audio, &a, &SETTINGS).unwrap();
    let other = comp.render(&audio, &b, &SETTINGS).unwrap();
    let again = comp.render(&audio, &a, &SETTINGS).unwrap();
    assert_eq!(first.channels(), again.channels());
    assert_ne!(first.channels(), other.channels());
    assert!(rms(first.channel(0)) < rms(audio.channel(0)));
}

#[test]
fn zamcomp_on_a_sine_matches_the_levels_measured_through_other_hosts() {
    let mut comp = effect(ZAMCOMP);
    let audio = sine(0.5, 440.0, 48_000, 48_000);
    for (threshold, expected) in [(0.0, 0.35355), (-30.0, 0.04186)] {
        let v = values(comp.info(), &[("Threshold", threshold), ("Ratio", 10.0)]);
        let out = comp.render(&audio, &v, &SETTINGS).unwrap();
        let got = rms(out.channel(0));
        assert!((got - expected).abs() < 5e-6, "threshold {threshold}: RMS {got}, expected {expected}");
    }
}

#[test]
fn zamcomp_through_clap_equals_zamcomp_through_lv2() {
    let mut clap = effect(ZAMCOMP);
    let lv2 = crate::lv2::Lv2World::new().backend("urn:zamaudio:ZamComp").expect("LV2 ZamComp");
    let mut lv2 = Effect::new(Box::new(lv2));
    let audio = hits();
    // Same parameters in the same order; LV2 names the ports as CLAP names the parameters.
    let names = |e: &Effect| e.info().params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&clap), names(&lv2));
    let v = values(clap.info(), &[("Threshold", -30.0), ("Ratio", 6.0), ("Attack", 5.0)]);
    let through_clap = clap.render(&audio, &v, &SETTINGS).unwrap();
    let through_lv2 = lv2.render(&audio, &v, &SETTINGS).unwrap();
    assert_eq!(max_abs_difference(&through_clap, &through_lv2), 0.0);
}
