//! The proxy model: gradients against f64 finite differences at batch 2, the analytic output gain checked on
//! the real plugin it stands for, and refusal of a proxy for another chain.

use std::path::{Path, PathBuf};

use afx_host::{Chain, Config, Host, RenderSettings};
use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
use afx_proxy::tcn::TcnConfig;
use afx_proxy::{Proxy, ProxyError, ProxyMeta};
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

fn chain(name: &str) -> Chain {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml"));
    Chain::resolve(&Host::new(), Some(&Config::load(&path).unwrap()), name, None).unwrap()
}

fn meta(chain: &Chain) -> ProxyMeta {
    ProxyMeta {
        chain: chain.name().into(),
        params: ProxyMeta::params_of(chain.layout()),
        sample_rate: 22_050,
        tcn: TcnConfig {
            channels: 3,
            kernel: 3,
            dilations: vec![1, 2],
            input_skip: true,
            cond_hidden: 5,
            batch_norm: true,
        },
    }
}

#[test]
fn proxy_gradients_match_finite_differences_at_batch_2() {
    let chain = chain("eq_comp");
    let p = chain.num_params();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let proxy = Proxy::new(meta(&chain), vb, Path::new("test")).unwrap();
    let x = Var::from_tensor(&pseudo_random((2, 40), 1, &Device::Cpu).unwrap()).unwrap();
    let theta_values = (pseudo_random((2, p), 2, &Device::Cpu).unwrap() * 0.5).unwrap() + 0.5;
    let theta = Var::from_tensor(&theta_values.unwrap()).unwrap();
    // Training mode: BatchNorm with batch statistics, as in `afx train-proxy`; and inference mode, as in NP-FH.
    for train in [true, false] {
        let f = || project(&proxy.forward_t(x.as_tensor(), theta.as_tensor(), train)?, 5);
        let mut vars: Vec<(String, Var)> = vec![("x".into(), x.clone()), ("theta".into(), theta.clone())];
        let data = varmap.data().lock().unwrap();
        for (name, var) in data.iter().filter(|(n, _)| !n.contains("running")) {
            vars.push((name.clone(), var.clone()));
        }
        drop(data);
        let named: Vec<(&str, &Var)> = vars.iter().map(|(n, v)| (n.as_str(), v)).collect();
        for report in GradCheck::default().run(f, &named).unwrap() {
            // A conv bias right before a batch-statistics BatchNorm has a zero gradient (the mean is removed): there
            // the finite difference is rounding noise, so compare absolutely.
            let zero_gradient = train && report.name.ends_with("conv.bias");
            let ok = if zero_gradient { report.max_abs_err < 1e-6 } else { report.rel_err < 1e-6 };
            assert!(ok, "train = {train}: {report}");
        }
    }
}

#[test]
fn the_output_gain_marked_in_plugins_toml_is_an_exact_gain_of_the_real_plugin() {
    // zam_comp's makeup (`mak`, output_gain = true) is applied analytically by proxies; check that ZamComp
    // really scales its output by 10^(dB/20) and nothing else.
    let mut chain = chain("eq_comp");
    let params = chain.params();
    let k = params.iter().position(|p| p.output_gain).expect("eq_comp has an output gain");
    assert_eq!(params.iter().filter(|p| p.output_gain).count(), 1);
    assert_eq!(format!("{}.{}", params[k].stage, params[k].spec.id), "zam_comp.mak");
    let (min, max) = (params[k].spec.min, params[k].spec.max);
    let input = afx_testkit::head(&afx_testkit::amen_mono(), 44_100);
    let mut theta = vec![0.4f32; chain.num_params()];
    theta[k] = 0.0;
    let quiet = chain.render_normalized(&input, &theta, &RenderSettings::default()).unwrap();
    theta[k] = 0.5;
    let loud = chain.render_normalized(&input, &theta, &RenderSettings::default()).unwrap();
    let factor = 10f32.powf((min + 0.5 * (max - min) - min) / 20.0);
    let scale = afx_testkit::rms(quiet.channel(0));
    let err =
        afx_testkit::max_abs_diff(&quiet.channel(0).iter().map(|v| v * factor).collect::<Vec<_>>(), loud.channel(0));
    assert!(scale > 1e-3 && err < 1e-4 * factor * scale.max(1.0), "max abs error {err} (rms {scale})");

    // A chain where the marked plugin is not last: not an output gain of the chain.
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins.toml"));
    let mut config = Config::load(&path).unwrap();
    config.chains.insert(
        "comp_eq".into(),
        afx_host::config::ChainEntry { plugins: vec!["zam_comp".into(), "zam_eq".into()], description: None },
    );
    let reversed = Chain::resolve(&Host::new(), Some(&config), "comp_eq", None).unwrap();
    assert!(reversed.params().iter().all(|p| !p.output_gain));
}

#[test]
fn a_proxy_is_refused_for_another_chain_parameter_list_or_rate() {
    let (eq_comp, comp) = (chain("eq_comp"), chain("zam_comp"));
    let meta = meta(&comp);
    let params = |c: &Chain| -> Vec<(String, afx_host::ParamSpec)> {
        c.params().iter().map(|p| (p.stage.to_string(), p.spec.clone())).collect()
    };
    let own = params(&comp);
    let own_refs: Vec<(&str, &afx_host::ParamSpec)> = own.iter().map(|(s, p)| (s.as_str(), p)).collect();
    meta.check(Path::new("p"), "zam_comp", &own_refs, 22_050).unwrap();

    let other = params(&eq_comp);
    let other_refs: Vec<(&str, &afx_host::ParamSpec)> = other.iter().map(|(s, p)| (s.as_str(), p)).collect();
    let e = meta.check(Path::new("p"), "eq_comp", &other_refs, 22_050).unwrap_err();
    assert!(matches!(e, ProxyError::WrongChain { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("zam_comp.thr") && text.contains("zam_eq.boost1"), "{text}");

    // Same chain name, a narrowed range: θ would mean other values.
    let mut narrowed = own.clone();
    narrowed[0].1.max -= 1.0;
    let refs: Vec<(&str, &afx_host::ParamSpec)> = narrowed.iter().map(|(s, p)| (s.as_str(), p)).collect();
    let e = meta.check(Path::new("p"), "zam_comp", &refs, 22_050).unwrap_err();
    assert!(matches!(e, ProxyError::WrongChain { .. }), "{e}");

    let e = meta.check(Path::new("p"), "zam_comp", &own_refs, 44_100).unwrap_err();
    assert!(e.to_string().contains("22050 Hz"), "{e}");
}
