//! Every layer the model trains through, and the whole encoder + controller, against f64 finite differences at
//! batch ≥ 2 (candle gets some gradients wrong silently; see nn/).

use afx_nn::gradcheck::{GradCheck, project, pseudo_random};
use afx_trainer::model::{Controller, Encoder, Model, ModelConfig, sigmoid};
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

const TOLERANCE: f64 = 1e-6;

fn small() -> ModelConfig {
    ModelConfig { n_fft: 32, hop: 8, channels: vec![4, 8], groups: 2, hidden: 6 }
}

/// Checks every variable of `varmap` and the extra inputs.
fn check(varmap: &VarMap, inputs: &[(&str, &Var)], f: impl Fn() -> candle_core::Result<candle_core::Tensor>) {
    let data = varmap.data().lock().unwrap();
    let mut named: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    drop(data);
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut vars: Vec<(&str, &Var)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
    vars.extend_from_slice(inputs);
    let reports = GradCheck { eps: 1e-6, max_points: 60 }.run(f, &vars).unwrap();
    for r in &reports {
        assert!(r.rel_err < TOLERANCE, "{r}");
        assert!(r.max_abs_grad > 0.0 || r.name.contains("act"), "no gradient reaches {r}");
    }
}

#[test]
fn encoder_block_gradients_match_finite_differences_at_batch_3() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let encoder = Encoder::new(&small(), VarBuilder::from_varmap(&varmap, DType::F64, &dev).pp("encoder")).unwrap();
    let x = Var::from_tensor(&pseudo_random((3, 1, 17, 9), 1, &dev).unwrap()).unwrap();
    check(&varmap, &[("features", &x)], || project(&encoder.forward(x.as_tensor())?, 2));
}

#[test]
fn controller_gradients_match_finite_differences_at_batch_3() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let controller = Controller::new(5, 7, 4, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
    let a = Var::from_tensor(&pseudo_random((3, 5), 3, &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&pseudo_random((3, 5), 4, &dev).unwrap()).unwrap();
    check(&varmap, &[("emb_input", &a), ("emb_reference", &b)], || {
        project(&controller.forward(a.as_tensor(), b.as_tensor())?, 5)
    });
}

#[test]
fn sigmoid_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&(pseudo_random((2, 6), 6, &dev).unwrap() * 4.0).unwrap()).unwrap();
    let reports = GradCheck::default().run(|| project(&sigmoid(x.as_tensor())?, 7), &[("x", &x)]).unwrap();
    assert!(reports[0].rel_err < TOLERANCE, "{}", reports[0]);
}

#[test]
fn whole_model_gradients_match_finite_differences_at_batch_2() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Model::new(&small(), 3, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
    let x = Var::from_tensor(&pseudo_random((2, 1, 17, 11), 8, &dev).unwrap()).unwrap();
    let r = Var::from_tensor(&pseudo_random((2, 1, 17, 11), 9, &dev).unwrap()).unwrap();
    // The surrogate the SPSA method backpropagates: Σ θ · ĝ with a fixed ĝ.
    check(&varmap, &[("input", &x), ("reference", &r)], || project(&model.forward(x.as_tensor(), r.as_tensor())?, 10));
}
