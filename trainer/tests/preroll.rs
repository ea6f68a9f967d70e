//! A pre-roll (a user pair's crop, see `PairBatch::preroll_a`) through the real eq_comp chain: the chain renders
//! pre-roll + input, the loss scores only what follows the pre-roll, and the gradient estimate's dL/dy is zero
//! over the pre-roll, so the finite-difference estimate is the derivative of that loss.

mod common;

use afx_core::Audio;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_trainer::frontend::batch_tensor;
use afx_trainer::method::fd::FiniteDifference;
use afx_trainer::method::{GradMethod, MethodBatch};
use afx_trainer::pairs::{tail, with_preroll};
use candle_core::{DType, Device, Tensor};
use common::*;

const FRAMES: usize = 8_192;
const PREROLL: usize = 4_096;

#[test]
fn the_loss_scores_after_the_preroll_and_its_gradient_is_the_derivative_of_that_loss() {
    let recording = &train_set()[0];
    let slice = |from: usize, frames: usize| {
        Audio::new(recording.sample_rate(), vec![recording.channel(0)[from..from + frames].to_vec()]).unwrap()
    };
    // The crop starts 0.4 s in; its pre-roll is the audio before it.
    let start = 8_820;
    let (input, preroll) = (slice(start, FRAMES), slice(start - PREROLL, PREROLL));
    let mut pool = pool("eq_comp");
    let p = pool.num_params();
    // The target: the whole file up to the crop's end through the chain at θ*, cut to the crop (a processed file).
    let theta_star: Vec<f32> = (0..p).map(|k| 0.3 + 0.4 * ((k * 5 % 7) as f32 / 7.0)).collect();
    let whole = slice(0, start + FRAMES);
    let target = tail(&pool.render_batch(&[whole], std::slice::from_ref(&theta_star)).pop().unwrap().unwrap(), FRAMES);
    let theta: Vec<f32> = (0..p).map(|k| 0.25 + 0.5 * ((k * 3 % 11) as f32 / 11.0)).collect();
    let loss_config = MrStftConfig { fft_sizes: vec![256, 512, 1024], time_l1_weight: 0.0 };
    let loss = MrStftLoss::new(&loss_config, DType::F32, &Device::Cpu).unwrap();
    let score = |theta: &[f32], pool: &mut afx_spsa::Pool| -> f64 {
        let y = pool.render_batch(&[with_preroll(&preroll, &input)], &[theta.to_vec()]).pop().unwrap().unwrap();
        let y = batch_tensor(&[&tail(&y, FRAMES)], &Device::Cpu).unwrap();
        let t = batch_tensor(&[&target], &Device::Cpu).unwrap();
        f64::from(loss.forward(&y, &t).unwrap().to_scalar::<f32>().unwrap())
    };

    let h = 0.01f32;
    let mut fd = FiniteDifference::new(h, &loss_config).unwrap();
    let (inputs, targets, prerolls) = ([input.clone()], [target.clone()], [preroll.clone()]);
    let theta_t = Tensor::from_vec(theta.clone(), (1, p), &Device::Cpu).unwrap();
    let plain_batch = MethodBatch::new(&inputs, &targets, &theta_t, 0);
    let out = fd.gradients(&mut pool, MethodBatch { preroll: &prerolls, ..plain_batch }).unwrap();
    let item = out.items[0].as_ref().unwrap();
    // The loss is the crop's after the pre-roll, bit for bit the same render.
    assert_eq!(item.loss, score(&theta, &mut pool));
    // Without the pre-roll the crop starts with the compressor at rest: another loss.
    let plain = fd.gradients(&mut pool, plain_batch).unwrap();
    assert_ne!(plain.items[0].as_ref().unwrap().loss, item.loss);

    // dL/dθ_j from the estimator (dL/dy over the scored part only) against central differences of that loss.
    // They agree to first order in h; a parameter where the loss curves sharply within ±h (a filter's frequency
    // near a band edge) may not, so one of them is allowed to differ. A dL/dy not aligned with the scored part
    // (zeros in the wrong place) gives no agreement at all.
    let (mut checked, mut agree) = (0, 0);
    for j in 0..p {
        let (mut up, mut down) = (theta.clone(), theta.clone());
        up[j] += h;
        down[j] -= h;
        let quotient = (score(&up, &mut pool) - score(&down, &mut pool)) / (2.0 * f64::from(h));
        let estimate = f64::from(item.grad[j]);
        if quotient.abs() > 0.05 {
            checked += 1;
            if (estimate - quotient).abs() <= 0.15 * quotient.abs() {
                agree += 1;
            } else {
                eprintln!("parameter {j}: estimate {estimate}, difference quotient {quotient}");
            }
        }
    }
    assert!(checked >= 8 && agree + 1 >= checked, "{agree} of {checked} parameters agree");
}
