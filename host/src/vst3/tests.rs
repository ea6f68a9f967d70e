//! Tests against the real zam-plugins VST3 bundles (Debian package zam-plugins).

use super::params::DPF_INTERNALS;
use super::*;
use crate::info::Format;
use crate::plugin::Effect;
use crate::render::RenderSettings;
use afx_core::Audio;

/// The zam-plugins bundles: 17 effects, each a DPF build.
const ZAM_DIR: &str = "/usr/lib/vst3";
const ZAM_COUNT: usize = 17;

fn zam_world() -> Vst3World {
    Vst3World::with_dirs(&[PathBuf::from(ZAM_DIR)])
}

/// The backend of the zam plugin with this class name.
fn zam_backend(world: &Vst3World, name: &str) -> Vst3Backend {
    let info = world
        .plugins()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not found in {ZAM_DIR} (install zam-plugins)"));
    world.backend(&info.id).expect("a backend for a scanned id")
}

fn param(info: &PluginInfo, name: &str) -> usize {
    info.params.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("{} has no parameter {name:?}", info.name))
}

/// `seconds` of a 0.5-amplitude 440 Hz sine at 48 kHz.
fn sine(seconds: f32) -> Audio {
    let frames = (48_000.0 * seconds) as usize;
    let samples = (0..frames).map(|n| 0.5 * (std::f32::consts::TAU * 440.0 * n as f32 / 48_000.0).sin()).collect();
    Audio::new(48_000, vec![samples]).unwrap()
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// ZamComp's values with threshold and ratio set.
fn comp_values(info: &PluginInfo, threshold: f32, ratio: f32) -> Vec<f32> {
    let mut values = info.default_values();
    values[param(info, "Threshold")] = threshold;
    values[param(info, "Ratio")] = ratio;
    values
}

#[test]
fn scan_finds_every_zam_plugin_with_its_buses_and_parameters() {
    let plugins = zam_world().plugins();
    assert_eq!(plugins.len(), ZAM_COUNT, "{:?}", plugins.iter().map(|p| &p.name).collect::<Vec<_>>());
    let comp = plugins.iter().find(|p| p.name == "ZamComp").unwrap();
    assert_eq!(comp.format, Format::Vst3);
    assert_eq!(comp.id.len(), 32);
    assert!(comp.id.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(comp.path, PathBuf::from("/usr/lib/vst3/ZamComp.vst3"));
    assert_eq!(comp.main_inputs(), 1);
    assert_eq!(comp.audio_inputs.iter().filter(|p| p.sidechain).count(), 1);
    assert_eq!(comp.audio_outputs.len(), 1);
    let threshold = &comp.params[param(comp, "Threshold")];
    assert_eq!((threshold.min, threshold.max), (-80.0, 0.0));
    assert!(threshold.id.parse::<u32>().is_ok());
    for p in &plugins {
        for spec in &p.params {
            assert!(!DPF_INTERNALS.contains(&spec.name.as_str()), "{}: {} not hidden", p.name, spec.name);
            assert!(spec.min <= spec.default && spec.default <= spec.max, "{}: {spec:?}", p.name);
        }
    }
}

#[test]
fn standard_folders_include_the_installed_zam_plugins() {
    let plugins = Vst3World::new().plugins();
    let zam = plugins.iter().filter(|p| p.path.starts_with(ZAM_DIR)).count();
    assert_eq!(zam, ZAM_COUNT);
}

#[test]
fn unknown_ids_have_no_backend() {
    assert!(zam_world().backend("00000000000000000000000000000000").is_none());
}

#[test]
fn zamcomp_renders_bit_identically_for_a_b_a() {
    let world = zam_world();
    let mut effect = Effect::new(Box::new(zam_backend(&world, "ZamComp")));
    let audio = sine(1.0);
    let settings = RenderSettings::with_block_size(512);
    let a = comp_values(effect.info(), -30.0, 10.0);
    let b = comp_values(effect.info(), -10.0, 2.0);
    let first = effect.render(&audio, &a, &settings).unwrap();
    let other = effect.render(&audio, &b, &settings).unwrap();
    let again = effect.render(&audio, &a, &settings).unwrap();
    assert_eq!(first, again, "state leaked from one render into the next");
    assert_ne!(first, other, "parameters had no effect");
}

#[test]
fn zamcomp_compresses_a_sine_as_the_other_hosts_measured() {
    let world = zam_world();
    let mut effect = Effect::new(Box::new(zam_backend(&world, "ZamComp")));
    let audio = sine(1.0);
    let settings = RenderSettings::with_block_size(512);
    for (threshold, expected) in [(0.0, 0.35355), (-30.0, 0.04186)] {
        let values = comp_values(effect.info(), threshold, 10.0);
        let out = effect.render(&audio, &values, &settings).unwrap();
        let got = rms(out.channel(0));
        assert!((got - expected).abs() < 5e-6, "threshold {threshold}: RMS {got}, expected {expected}");
    }
}

#[test]
fn every_zam_plugin_renders_identically_after_a_render_with_other_values() {
    let world = zam_world();
    let audio = sine(0.25);
    let settings = RenderSettings::with_block_size(512);
    for info in world.plugins() {
        let mut effect = Effect::new(Box::new(world.backend(&info.id).unwrap()));
        let defaults = info.default_values();
        let other: Vec<f32> = info.params.iter().map(|p| p.to_plain(0.7).unwrap()).collect();
        let first = effect.render(&audio, &defaults, &settings).unwrap();
        effect.render(&audio, &other, &settings).unwrap();
        let again = effect.render(&audio, &defaults, &settings).unwrap();
        assert!(first == again, "{}: state leaked from one render into the next", info.name);
    }
}

#[test]
fn renders_do_not_depend_on_the_sample_rate_of_earlier_renders() {
    // DPF constructs plugins at the last rate set in their library; ZamHeadX2 keeps the construction rate.
    let world = zam_world();
    let mut effect = Effect::new(Box::new(zam_backend(&world, "ZamHeadX2")));
    let values = effect.info().default_values();
    let at_48k = sine(0.25);
    let at_44k = Audio::new(44_100, vec![at_48k.channel(0).to_vec()]).unwrap();
    let settings = RenderSettings::default();
    let first = effect.render(&at_48k, &values, &settings).unwrap();
    let other_rate = effect.render(&at_44k, &values, &settings).unwrap();
    assert!(first == effect.render(&at_48k, &values, &settings).unwrap());
    assert!(other_rate == effect.render(&at_44k, &values, &settings).unwrap());
}

#[test]
fn a_world_keeps_working_after_another_thread_unloads_the_same_libraries() {
    let world = zam_world();
    assert_eq!(world.plugins().len(), ZAM_COUNT);
    // The other world runs ModuleExit-worthy teardown when it drops; DPF's ModuleExit frees what every later
    // getClassInfo reads, so it must only run for the last holder in the process.
    let other = std::thread::spawn(|| zam_world().plugins().len()).join().unwrap();
    assert_eq!(other, ZAM_COUNT);
    let mut effect = Effect::new(Box::new(zam_backend(&world, "ZaMaximX2")));
    let values = effect.info().default_values();
    effect.render(&sine(0.1), &values, &RenderSettings::default()).unwrap();
}
