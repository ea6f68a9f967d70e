//! Renders whose parameters move ([`afx_host::automation`]): the test effect against its DSP core with the same
//! curve in LV2, CLAP and VST3; constant curves against the static render on a real plugin; steps that land on
//! their frame; a latency plugin whose curve moves with its audio, and the test effect made latent
//! (`AFX_TESTFX_LATENCY`), whose compensated render is its zero-latency core's bit for bit.

use std::path::{Path, PathBuf};

use afx_host::{Audio, Automation, Effect, Format, Host, RenderError, RenderSettings};
use afx_testfx_dsp::{PARAMS, TestFx, param_index};
use afx_testkit::{amen_mono, head};

const FORMATS: [Format; 3] = [Format::Lv2, Format::Clap, Format::Vst3];

/// The test effect's bundle (or file) in `format`, built for this test run.
fn testfx_path(format: Format) -> PathBuf {
    let paths = afx_testkit::testfx();
    only_entry(match format {
        Format::Lv2 => &paths.lv2,
        Format::Clap => &paths.clap,
        Format::Vst3 => &paths.vst3,
    })
}

/// The one test effect bundle (or file) in `folder`.
fn only_entry(folder: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "one test effect bundle in {}", folder.display());
    entries.pop().unwrap()
}

fn testfx(format: Format) -> Effect {
    Host::new().load(testfx_path(format).to_str().unwrap(), None).unwrap()
}

/// A deterministic walk over the test effect's three continuous parameters: one row per hop, values in the
/// core's parameter order (drive, tone, gain, fault).
fn core_rows(frames: usize) -> Vec<[f32; 4]> {
    (0..frames)
        .map(|f| {
            let t = f as f32;
            [6.0 + 10.0 * (0.7 * t).sin().abs(), 300.0 + 2500.0 * (0.3 * t).cos().abs(), -12.0 + t % 7.0, 0.0]
        })
        .collect()
}

/// The core's index of the parameter named `name` (CLAP and VST3 ids are numbers; the names agree).
fn core_index(name: &str) -> usize {
    PARAMS
        .iter()
        .position(|q| q.name.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no test effect parameter {name:?}"))
}

/// The core rows as an [`Automation`] in `effect`'s own parameter order.
fn automation_for(effect: &Effect, hop: usize, rows: &[[f32; 4]]) -> Automation {
    let info = effect.info();
    let order: Vec<usize> = info.params.iter().map(|p| core_index(&p.name)).collect();
    let values = rows.iter().flat_map(|row| order.iter().map(|&i| row[i])).collect();
    Automation::new(hop, info.params.len(), values).unwrap()
}

/// The DSP core with row `f` set before input frame `f·hop`, without latency whatever `AFX_TESTFX_LATENCY` says.
fn core_render(input: &[f32], rate: u32, hop: usize, rows: &[[f32; 4]]) -> Vec<f32> {
    let mut fx = TestFx::with_latency(rate as f32, 0);
    let mut out = vec![0.0; input.len()];
    for (f, row) in rows.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            fx.set_param(i, v);
        }
        let range = f * hop..((f + 1) * hop).min(input.len());
        fx.process(&input[range.clone()], &mut out[range]);
    }
    out
}

fn render(effect: &mut Effect, input: &Audio, automation: &Automation, settings: &RenderSettings) -> Audio {
    let mut output = Audio::silence(input.sample_rate(), input.num_channels(), input.frames());
    effect.render_automated_into(input, None, automation, settings, &mut output).unwrap();
    output
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The first frame where `a` and `b` differ.
fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}

#[test]
fn the_test_effect_follows_a_curve_to_the_sample_in_every_format() {
    let input = head(&amen_mono(), 30_000);
    // Hops that do and do not divide the block, one below the LV2 minimum split with a block that divides it.
    for (hop, block) in [(1000, 512), (512, 512), (4096, 512), (77, 128)] {
        let rows = core_rows(Automation::rows_for(input.frames(), hop));
        let expected = core_render(input.channel(0), input.sample_rate(), hop, &rows);
        let settings = RenderSettings { block_size: block, min_split: 32 };
        for format in FORMATS {
            let mut effect = testfx(format);
            let automation = automation_for(&effect, hop, &rows);
            let y = render(&mut effect, &input, &automation, &settings);
            assert!(
                same_bits(y.channel(0), &expected),
                "{format:?} hop {hop} block {block}: first difference at frame {:?}",
                first_difference(y.channel(0), &expected)
            );
        }
    }
}

#[test]
fn lv2_defers_a_change_closer_than_min_split_to_the_one_before() {
    let input = head(&amen_mono(), 4096);
    let hop = 20;
    let rows = core_rows(Automation::rows_for(input.frames(), hop));
    let settings = RenderSettings { block_size: 512, min_split: 32 };
    let mut effect = testfx(Format::Lv2);
    let automation = automation_for(&effect, hop, &rows);
    let y = render(&mut effect, &input, &automation, &settings);
    // The rule, written out: a change due at frame c applies at max(c, previous + 32).
    let mut fx = TestFx::new(input.sample_rate() as f32);
    let x = input.channel(0);
    let mut expected = vec![0.0; x.len()];
    let (mut applied_at, mut row, mut pos) = (0usize, 0usize, 0usize);
    for (i, &v) in rows[0].iter().enumerate() {
        fx.set_param(i, v);
    }
    while pos < x.len() {
        let next = (row + 1 < rows.len()).then(|| ((row + 1) * hop).max(applied_at + 32));
        let end = next.unwrap_or(x.len()).min(x.len());
        fx.process(&x[pos..end], &mut expected[pos..end]);
        pos = end;
        if let Some(at) = next.filter(|&at| at < x.len()) {
            // Every row due by then applies at once.
            while row + 1 < rows.len() && (row + 1) * hop <= at {
                row += 1;
            }
            for (i, &v) in rows[row].iter().enumerate() {
                fx.set_param(i, v);
            }
            applied_at = at;
        }
    }
    assert!(same_bits(y.channel(0), &expected), "first difference at {:?}", first_difference(y.channel(0), &expected));
    // CLAP and VST3 take the changes as timed events: exact.
    let exact = core_render(x, input.sample_rate(), hop, &rows);
    for format in [Format::Clap, Format::Vst3] {
        let mut effect = testfx(format);
        let automation = automation_for(&effect, hop, &rows);
        assert!(same_bits(render(&mut effect, &input, &automation, &settings).channel(0), &exact), "{format:?}");
    }
}

/// ZamComp in `format`, from the zam-plugins package.
fn zam_comp(format: Format) -> Effect {
    let path = match format {
        Format::Lv2 => "/usr/lib/lv2/ZamComp.lv2/",
        Format::Clap => "/usr/lib/clap/ZamComp.clap",
        Format::Vst3 => "/usr/lib/vst3/ZamComp.vst3",
    };
    Host::new().load(path, None).unwrap()
}

#[test]
fn constant_automation_renders_bit_identically_to_the_static_render_on_a_real_plugin() {
    let input = amen_mono();
    let settings = RenderSettings::default();
    for format in FORMATS {
        let mut comp = zam_comp(format);
        let mut values = comp.info().default_values();
        values[comp.info().find_param("thr").or_else(|| comp.info().find_param("Threshold")).unwrap()] = -30.0;
        let fixed = comp.render(&input, &values, &settings).unwrap();
        for hop in [256, 1000] {
            let frames = Automation::rows_for(input.frames(), hop);
            let automation = Automation::new(hop, values.len(), values.repeat(frames)).unwrap();
            let moving = render(&mut comp, &input, &automation, &settings);
            assert!(same_bits(moving.channel(0), fixed.channel(0)), "{format:?} hop {hop}");
        }
        let one_row = render(&mut comp, &input, &Automation::constant(&values), &settings);
        assert!(same_bits(one_row.channel(0), fixed.channel(0)), "{format:?} one row");
    }
}

/// A step of the test effect's gain lands on its frame: before it the output is the static render's bit for
/// bit, from it on the static render of the new value scaled (the gain is the last stage, so the step shows at
/// once).
#[test]
fn a_gain_step_lands_on_its_frame_in_every_format() {
    let input = head(&amen_mono(), 8192);
    let hop = 1500;
    let rows = Automation::rows_for(input.frames(), hop);
    let gain = param_index("gain").unwrap();
    for format in FORMATS {
        let mut effect = testfx(format);
        let at = effect.info().find_param("gain").unwrap();
        let mut values = effect.info().default_values();
        values[at] = 0.0;
        let before = effect.render(&input, &values, &RenderSettings::default()).unwrap();
        values[at] = -12.0;
        let after = effect.render(&input, &values, &RenderSettings::default()).unwrap();
        // Gain 0 dB up to row 3, then -12 dB.
        let step_row = 3;
        let mut all = vec![];
        for f in 0..rows {
            values[at] = if f < step_row { 0.0 } else { -12.0 };
            all.extend_from_slice(&values);
        }
        let automation = Automation::new(hop, values.len(), all).unwrap();
        let y = render(&mut effect, &input, &automation, &RenderSettings::default());
        let step = step_row * hop;
        assert_eq!(first_difference(y.channel(0), before.channel(0)), Some(step), "{format:?} (PARAMS[{gain}])");
        assert!(same_bits(&y.channel(0)[step..], &after.channel(0)[step..]), "{format:?}: after the step");
    }
    assert_eq!(PARAMS[gain].id, "gain");
}

/// x42's dpl limiter reports its lookahead as latency L. A change at input frame c reaches it at its frame c + L, so
/// the compensated output is the static render's, bit for bit, up to frame c: the curve moved with the audio.
#[test]
fn a_latency_plugin_gets_its_curve_shifted_with_its_audio() {
    let host = Host::new();
    let mut dpl = host.load("http://gareus.org/oss/lv2/dpl#mono", None).unwrap();
    let input = head(&amen_mono(), 16_384);
    let settings = RenderSettings::default();
    let mut values = dpl.info().default_values();
    let threshold = dpl.info().param_index("threshold").unwrap();
    values[threshold] = 0.0;
    let fixed = dpl.render(&input, &values, &settings).unwrap();
    assert!(dpl.latency().unwrap() > 0, "dpl reports its lookahead as latency");
    let hop = 4000;
    let rows = Automation::rows_for(input.frames(), hop);
    let mut all = vec![];
    for f in 0..rows {
        values[threshold] = if f < 2 { 0.0 } else { -8.0 };
        all.extend_from_slice(&values);
    }
    let automation = Automation::new(hop, values.len(), all).unwrap();
    let y = render(&mut dpl, &input, &automation, &settings);
    let changed = first_difference(y.channel(0), fixed.channel(0)).expect("a lower threshold changes the output");
    assert!(changed >= 2 * hop, "the output changed at frame {changed}, before the curve did (frame {})", 2 * hop);
}

#[test]
fn bad_automation_is_an_error_naming_the_parameter_and_row() {
    let input = head(&amen_mono(), 2048);
    let mut effect = testfx(Format::Clap);
    let p = effect.info().params.len();
    let drive = effect.info().find_param("drive").unwrap();
    let mut rows = effect.info().default_values().repeat(4);
    rows[2 * p + drive] = 99.0;
    let automation = Automation::new(512, p, rows).unwrap();
    let mut output = Audio::silence(input.sample_rate(), 1, input.frames());
    let err = effect.render_automated_into(&input, None, &automation, &RenderSettings::default(), &mut output);
    let err = err.unwrap_err();
    assert!(matches!(err, RenderError::BadAutomatedValue { row: 2, frame: 1024, .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("{:?}", effect.info().params[drive].id)) && err.to_string().contains("row 2"),
        "{err}"
    );

    let short = Automation::new(512, p, effect.info().default_values().repeat(3)).unwrap();
    let err = effect.render_automated_into(&input, None, &short, &RenderSettings::default(), &mut output).unwrap_err();
    assert!(err.to_string().contains("needs 4 rows"), "{err}");
}

/// The test effect in `format` from the folder the parent test put in `LV2_PATH`, `CLAP_PATH` or `VST3_PATH`.
/// A child must not call [`afx_testkit::testfx`]: that packages the bundles again, and rewriting the .ttl files
/// while the parent's other tests read them made lilv find a plugin without a name (a panic in those tests).
fn testfx_from_parent(format: Format) -> Effect {
    let var = match format {
        Format::Lv2 => "LV2_PATH",
        Format::Clap => "CLAP_PATH",
        Format::Vst3 => "VST3_PATH",
    };
    let folder = std::env::var_os(var).unwrap_or_else(|| panic!("{var} not set: run as a child of the test below"));
    Host::new().load(only_entry(Path::new(&folder)).to_str().unwrap(), None).unwrap()
}

/// The latency the test effect reports in the child of the test below.
const CHILD_LATENCY: usize = 300;

/// Not a test of its own: the body of the child process of
/// `a_latent_test_effect_follows_its_curve_and_renders_its_zero_latency_core_in_every_format`, which runs it by
/// name among the ignored tests with `AFX_TESTFX_LATENCY=300` (so a normal run neither runs nor counts it).
#[test]
#[ignore = "the body of a child process of \
            a_latent_test_effect_follows_its_curve_and_renders_its_zero_latency_core_in_every_format"]
fn latent_test_effect_child() {
    let latency = std::env::var("AFX_TESTFX_LATENCY");
    assert_eq!(latency.as_deref(), Ok("300"), "run as a child of the test below, with AFX_TESTFX_LATENCY=300");
    let input = head(&amen_mono(), 30_000);
    let (x, rate) = (input.channel(0), input.sample_rate());
    let (hop, block) = (1000, 512);
    let rows = core_rows(Automation::rows_for(input.frames(), hop));
    let expected = core_render(x, rate, hop, &rows);
    let expected_fixed = core_render(x, rate, x.len(), &rows[..1]);
    let settings = RenderSettings { block_size: block, min_split: 32 };
    for format in FORMATS {
        let mut effect = testfx_from_parent(format);
        // LV2's latency output port is not a parameter.
        assert_eq!(effect.info().params.len(), PARAMS.len(), "{format:?}: {:?}", effect.info().params);
        let automation = automation_for(&effect, hop, &rows);
        let y = render(&mut effect, &input, &automation, &settings);
        assert_eq!(effect.latency(), Some(CHILD_LATENCY), "{format:?}");
        // The host delivers row f at the plugin's frame f·hop + L, where the delayed input sample f·hop meets it,
        // and trims L frames: the zero-latency core with the same curve.
        assert!(
            same_bits(y.channel(0), &expected),
            "{format:?} hop {hop} block {block}: first difference at frame {:?}",
            first_difference(y.channel(0), &expected)
        );
        // A static render: the latency is compensated.
        let fixed = effect.render(&input, automation.row(0), &settings).unwrap();
        assert_eq!(effect.latency(), Some(CHILD_LATENCY), "{format:?} static");
        assert!(
            same_bits(fixed.channel(0), &expected_fixed),
            "{format:?} static: first difference at frame {:?}",
            first_difference(fixed.channel(0), &expected_fixed)
        );
    }
    println!("latent test effect rendered its core in every format");
}

#[test]
fn a_latent_test_effect_follows_its_curve_and_renders_its_zero_latency_core_in_every_format() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", "latent_test_effect_child", "--nocapture"])
        .env("AFX_TESTFX_LATENCY", CHILD_LATENCY.to_string())
        .env_remove("AFX_TESTFX_FAULT");
    for (name, path) in afx_testkit::testfx().env() {
        child.env(name, path);
    }
    let out = child.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child failed:\n{stdout}\n{stderr}");
    // --exact runs nothing, successfully, when the name is wrong.
    assert!(stdout.contains("latent test effect rendered its core in every format"), "{stdout}\n{stderr}");
}
