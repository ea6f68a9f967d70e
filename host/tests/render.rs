//! The render contract on real plugins, in one process: determinism across renders on the same effect,
//! latency alignment, and the chain's normalised parameter space.

use afx_host::{Audio, Chain, Config, Host, RenderSettings};
use afx_testkit::bits;

fn amen() -> Audio {
    afx_testkit::amen_mono()
}

#[test]
fn a_b_a_on_one_effect_gives_a_bit_identically_for_every_kind_of_plugin() {
    let host = Host::new();
    let input = amen();
    let settings = RenderSettings::default();
    let cases = [
        ("urn:zamaudio:ZamComp", [("thr", -35.0), ("rat", 8.0)], [("thr", -10.0), ("rat", 2.0)]),
        ("urn:zamaudio:ZamEQ2", [("boost1", 9.0), ("f1", 300.0)], [("boost1", -9.0), ("f1", 3000.0)]),
        // atom ports
        (
            "http://gareus.org/oss/lv2/fil4#mono",
            [("gain1", 9.0), ("freq1", 300.0)],
            [("gain1", -9.0), ("freq1", 900.0)],
        ),
        // reports latency
        (
            "http://gareus.org/oss/lv2/dpl#mono",
            [("gain", 12.0), ("threshold", -3.0)],
            [("gain", 3.0), ("threshold", -1.0)],
        ),
    ];
    for (uri, a, b) in cases {
        let mut effect = host.load(uri, None).unwrap();
        let values = |sets: &[(&str, f32)]| {
            let mut v = effect.info().default_values();
            for (id, x) in sets {
                v[effect.info().param_index(id).unwrap()] = *x;
            }
            v
        };
        let (va, vb) = (values(&a), values(&b));
        let a1 = effect.render(&input, &va, &settings).unwrap();
        let b1 = effect.render(&input, &vb, &settings).unwrap();
        let mut a2 = b1.clone();
        effect.render_into(&input, &va, &settings, &mut a2).unwrap();
        assert_ne!(bits(&a1), bits(&b1), "{uri}: parameters had no effect");
        assert_eq!(bits(&a1), bits(&a2), "{uri}: A, B, A differ");
        assert_eq!((a1.frames(), a1.num_channels()), (input.frames(), input.num_channels()));
    }
}

#[test]
fn output_lines_up_with_input_for_any_block_size_through_a_latent_plugin() {
    let host = Host::new();
    let mut dpl = host.load("http://gareus.org/oss/lv2/dpl#mono", None).unwrap();
    let mut values = dpl.info().default_values();
    values[dpl.info().param_index("threshold").unwrap()] = 0.0;
    for rate in [44_100, 48_000, 96_000] {
        for block in [64, 333, 512, 4096] {
            let mut x = vec![0.0f32; 10_000];
            x[5_000] = 0.5;
            let input = Audio::new(rate, vec![x]).unwrap();
            let y = dpl.render(&input, &values, &RenderSettings::with_block_size(block)).unwrap();
            let peak =
                (0..y.frames()).max_by(|&a, &b| y.channel(0)[a].abs().total_cmp(&y.channel(0)[b].abs())).unwrap();
            assert_eq!(peak, 5_000, "rate {rate}, block {block}");
        }
    }
}

#[test]
fn a_chain_maps_theta_through_the_configured_ranges_and_renders_deterministically() {
    let host = Host::new();
    let config = Config::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml").as_ref()).unwrap();
    let mut chain = Chain::resolve(&host, Some(&config), "eq_comp", None).unwrap();
    let p = chain.num_params();
    assert_eq!(p, chain.params().len());
    assert!(p >= 14, "eq_comp trains {p} parameters");
    let zeros = chain.plain_values(&vec![0.0; p]).unwrap();
    let comp = &chain.stages()[1];
    let thr = comp.plugin().param_index("thr").unwrap();
    assert_eq!(zeros[1][thr], -60.0, "thr is trained over [-60, 0]");
    let input = amen();
    let settings = RenderSettings::default();
    let theta_a: Vec<f32> = (0..p).map(|i| (i as f32 * 0.37).fract()).collect();
    let theta_b: Vec<f32> = theta_a.iter().map(|t| 1.0 - t).collect();
    let a1 = chain.render_normalized(&input, &theta_a, &settings).unwrap();
    let b = chain.render_normalized(&input, &theta_b, &settings).unwrap();
    let a2 = chain.render_normalized(&input, &theta_a, &settings).unwrap();
    assert_ne!(bits(&a1), bits(&b));
    assert_eq!(bits(&a1), bits(&a2));
    assert!(chain.render_normalized(&input, &theta_a[1..], &settings).is_err(), "wrong θ length accepted");
}
