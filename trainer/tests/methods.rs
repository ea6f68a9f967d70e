//! The proxy gradient methods on a real chain: NP-FH renders the real chain and its forward value IS the real
//! output (bit for bit) while its gradient is the proxy's; NP-HH renders nothing in a step.

mod common;

use std::path::Path;

use afx_core::Audio;
use afx_host::RenderSettings;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_proxy::tcn::TcnConfig;
use afx_proxy::{Proxy, ProxyMeta};
use afx_trainer::frontend::batch_tensor;
use afx_trainer::method::np_fh::NpFh;
use afx_trainer::method::np_hh::NpHh;
use afx_trainer::method::{GradMethod, MethodBatch, ProxyPath};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::*;

const CHAIN: &str = "eq_comp";
const FRAMES: usize = 11_025;

/// An untrained proxy of `CHAIN` with candle's random initialisation (so dy/dθ is non-zero for every θ), its
/// weights in `varmap`.
fn proxy(varmap: &VarMap) -> Proxy {
    let chain = chain(CHAIN);
    let meta = ProxyMeta {
        chain: CHAIN.into(),
        params: ProxyMeta::params_of(chain.layout()),
        sample_rate: RATE,
        tcn: TcnConfig {
            channels: 4,
            kernel: 3,
            dilations: vec![1, 4],
            input_skip: true,
            cond_hidden: 5,
            batch_norm: true,
        },
    };
    Proxy::new(meta, VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu), Path::new("untrained")).unwrap()
}

fn clips() -> (Vec<Audio>, Vec<Audio>) {
    let inputs: Vec<Audio> = train_set().iter().take(3).map(|a| afx_testkit::head(a, FRAMES)).collect();
    // Targets: the same clips through the real chain at other settings.
    let mut chain = chain(CHAIN);
    let p = chain.num_params();
    let targets = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let theta: Vec<f32> = (0..p).map(|k| ((i * 7 + k * 3) % 10) as f32 / 10.0 + 0.05).collect();
            chain.render_normalized(x, &theta, &RenderSettings::default()).unwrap()
        })
        .collect();
    (inputs, targets)
}

/// What each test starts from: the clips, a pool of `CHAIN`, an untrained proxy path on an MRSTFT of
/// `fft_sizes`, and θ for the batch.
struct Case {
    inputs: Vec<Audio>,
    targets: Vec<Audio>,
    pool: afx_spsa::Pool,
    loss_config: MrStftConfig,
    path: ProxyPath,
    theta: Var,
}

fn case(fft_sizes: Vec<usize>) -> Case {
    let (inputs, targets) = clips();
    let pool = pool(CHAIN);
    let theta = theta_var(inputs.len(), pool.num_params());
    let loss_config = MrStftConfig { fft_sizes, time_l1_weight: 0.0 };
    let path = ProxyPath::new(proxy(&VarMap::new()), &loss_config, &Device::Cpu).unwrap();
    Case { inputs, targets, pool, loss_config, path, theta }
}

fn theta_var(batch: usize, p: usize) -> Var {
    let values: Vec<f32> = (0..batch * p).map(|i| 0.2 + 0.6 * ((i * 37 % 17) as f32 / 17.0)).collect();
    Var::from_tensor(&Tensor::from_vec(values, (batch, p), &Device::Cpu).unwrap()).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = a.iter().chain(&b).fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) as f64 / scale as f64
}

#[test]
fn np_fh_renders_the_real_chain_forwards_its_exact_output_and_backpropagates_through_the_proxy() {
    let Case { inputs, targets, mut pool, loss_config, path, theta } = case(vec![256, 512, 1024]);
    let p = pool.num_params();
    let mut method = NpFh::new(path, &loss_config).unwrap();

    let before = pool.renders();
    let step = method.gradients(&mut pool, MethodBatch::new(&inputs, &targets, theta.as_tensor(), 0)).unwrap();
    assert_eq!(pool.renders() - before, inputs.len() as u64, "one real render per item");
    assert_eq!(step.ok(), inputs.len());

    // The forward value is the real chain's output, bit for bit.
    let rows: Vec<Vec<f32>> = theta.as_tensor().to_vec2().unwrap();
    let real: Vec<Audio> = pool.render_batch(&inputs, &rows).into_iter().map(Result::unwrap).collect();
    let forward: Vec<Vec<f32>> = step.output.as_ref().unwrap().to_vec2().unwrap();
    for (y, r) in forward.iter().zip(&real) {
        let y_bits: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        let r_bits: Vec<u32> = r.channel(0).iter().map(|v| v.to_bits()).collect();
        assert!(y_bits == r_bits, "NP-FH's forward value differs from the real render");
    }
    let proxy = method.proxy().unwrap();
    let x = batch_tensor(&inputs.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let y_proxy = proxy.forward_t(&x, theta.as_tensor(), false).unwrap();
    assert!(max_rel_diff(&y_proxy, step.output.as_ref().unwrap()) > 1e-2, "the untrained proxy should differ");

    // dL_i/dθ_i = (∂y_proxy/∂θ)ᵀ · dL_i/dy evaluated at the REAL output, item by item.
    let rows: Vec<f32> = step.items.iter().flat_map(|g| g.as_ref().unwrap().grad.clone()).collect();
    let g_np_fh = Tensor::from_vec(rows, (inputs.len(), p), &Device::Cpu).unwrap();
    let loss = MrStftLoss::new(&loss_config, DType::F32, &Device::Cpu).unwrap();
    let target = batch_tensor(&targets.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let y_real = Var::from_tensor(&batch_tensor(&real.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap()).unwrap();
    let per_item = loss.per_item(y_real.as_tensor(), &target).unwrap();
    for (item, l) in step.items.iter().zip(per_item.to_vec1::<f32>().unwrap()) {
        assert_eq!(item.as_ref().unwrap().loss, f64::from(l), "the item's loss is the real output's");
    }
    let g_y = per_item.sum_all().unwrap().backward().unwrap();
    let g_y = g_y.get(y_real.as_tensor()).unwrap().detach();
    let vjp = (&y_proxy * &g_y).unwrap().sum_all().unwrap().backward().unwrap();
    let expected = vjp.get(theta.as_tensor()).unwrap();
    let err = max_rel_diff(&g_np_fh, expected);
    assert!(err < 1e-5, "NP-FH gradient vs proxy VJP at the real output: rel. error {err:.2e}");
    assert!(g_np_fh.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);

    // And it is not plain NP (the proxy's own output in the loss), which DeepAFx-ST's release trained instead.
    let np = loss.per_item(&y_proxy, &target).unwrap().sum_all().unwrap().backward().unwrap();
    let err = max_rel_diff(&g_np_fh, np.get(theta.as_tensor()).unwrap());
    assert!(err > 1e-2, "NP-FH's gradient equals plain NP's (rel. difference {err:.2e})");
    // The proxy's own weights take no part: only θ and whatever θ depends on are updated by the trainer.
}

#[test]
fn np_hh_trains_on_the_proxy_without_rendering() {
    let Case { inputs, targets, mut pool, loss_config, path, theta } = case(vec![256, 512]);
    let p = pool.num_params();
    let mut method = NpHh::new(path, "np-hh");
    let before = pool.renders();
    let step = method.gradients(&mut pool, MethodBatch::new(&inputs, &targets, theta.as_tensor(), 0)).unwrap();
    assert_eq!(pool.renders(), before, "np-hh renders nothing in a training step");
    let x = batch_tensor(&inputs.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let y_proxy = method.proxy().unwrap().forward_t(&x, theta.as_tensor(), false).unwrap();
    assert_eq!(max_rel_diff(&y_proxy, step.output.as_ref().unwrap()), 0.0);
    // The value is autodiff through the proxy's own output, item by item.
    let loss = MrStftLoss::new(&loss_config, DType::F32, &Device::Cpu).unwrap();
    let target = batch_tensor(&targets.iter().collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let grads = loss.per_item(&y_proxy, &target).unwrap().sum_all().unwrap().backward().unwrap();
    let expected = grads.get(theta.as_tensor()).unwrap();
    let rows: Vec<f32> = step.items.iter().flat_map(|g| g.as_ref().unwrap().grad.clone()).collect();
    let got = Tensor::from_vec(rows, (inputs.len(), p), &Device::Cpu).unwrap();
    assert!(max_rel_diff(&got, expected) < 1e-5);
    // The training surrogate carries the mean of those gradients onto θ.
    let surrogate = step.surrogate(theta.as_tensor()).unwrap().unwrap();
    let injected = surrogate.backward().unwrap();
    let mean = (expected / inputs.len() as f64).unwrap();
    assert!(max_rel_diff(injected.get(theta.as_tensor()).unwrap(), &mean) < 1e-6);
}
