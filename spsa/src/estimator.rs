//! Gradient estimators for a black box `y = f(x, θ)`: vector-Jacobian products `ĝ ≈ (∂y/∂θ)ᵀ g` for an
//! upstream gradient `g = ∂L/∂y`, from renders alone.
//!
//! - [`spsa_vjp`]: DeepAFx's simultaneous-perturbation estimator. For k in 1..K: δ_k Rademacher,
//!   `y± = f(x, clip(θ ± εδ_k, 0, 1))`, `ĝ += ⟨g, y₊ − y₋⟩ / (θ₊ − θ₋)` elementwise, averaged over K: 2K renders
//!   whatever the number of parameters P. Where clipping makes the two sides asymmetric, the actual distance
//!   `θ₊ᵢ − θ₋ᵢ` is used (DeepAFx divided by 2ε regardless, which biases the estimate at the bounds). Each
//!   perturbation has its own random stream, so the renders split into ranges ([`spsa_dots`], one scalar per
//!   perturbation) that [`spsa_combine`] sums in a fixed order: the same estimate however they were spread.
//! - [`finite_difference_vjp`]: central differences, one parameter at a time (2P renders): the reference.
//!
//! Both accumulate in f64 and are deterministic given the seed.

use afx_host::Audio;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::job::item_seed;

/// Renders the black box at θ (normalised, in [0, 1]^P) into the given buffer.
pub trait Render {
    type Error;
    fn render(&mut self, theta: &[f32], output: &mut Audio) -> Result<(), Self::Error>;
}

impl<E, F: FnMut(&[f32], &mut Audio) -> Result<(), E>> Render for F {
    type Error = E;
    fn render(&mut self, theta: &[f32], output: &mut Audio) -> Result<(), E> {
        self(theta, output)
    }
}

/// Buffers reused across estimates, so an estimate allocates nothing once warm.
#[derive(Debug)]
pub struct Workspace {
    plus: Audio,
    minus: Audio,
    theta_plus: Vec<f32>,
    theta_minus: Vec<f32>,
    delta: Vec<f32>,
    /// A worker's [`spsa_dots`], kept to be encoded from.
    pub(crate) dots: Vec<f64>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace {
            plus: Audio::silence(1, 1, 0),
            minus: Audio::silence(1, 1, 0),
            theta_plus: vec![],
            theta_minus: vec![],
            delta: vec![],
            dots: vec![],
        }
    }
}

/// ⟨g, y₊ − y₋⟩ over every channel and frame, in f64.
fn dot_difference<'g>(g: impl IntoIterator<Item = &'g [f32]>, plus: &Audio, minus: &Audio) -> f64 {
    let mut sum = 0.0f64;
    for ((gc, pc), mc) in g.into_iter().zip(plus.channels()).zip(minus.channels()) {
        // Eight partial sums keep the reduction vectorisable and its rounding independent of the length. The
        // exact chunks carry no bounds checks (indexing each of three slices did, and kept the loop scalar at a
        // third of the speed).
        let mut lanes = [0.0f64; 8];
        let (g8, p8, m8) = (gc.chunks_exact(8), pc.chunks_exact(8), mc.chunks_exact(8));
        let tail = g8.remainder().iter().zip(p8.remainder()).zip(m8.remainder());
        for ((g, p), m) in g8.zip(p8).zip(m8) {
            for l in 0..8 {
                lanes[l] += f64::from(g[l]) * (f64::from(p[l]) - f64::from(m[l]));
            }
        }
        for ((g, p), m) in tail {
            lanes[0] += f64::from(*g) * (f64::from(*p) - f64::from(*m));
        }
        sum += lanes.iter().sum::<f64>();
    }
    sum
}

/// A Rademacher vector (±1 each with probability 1/2) from `rng`.
fn rademacher(rng: &mut ChaCha8Rng, p: usize, out: &mut Vec<f32>) {
    out.clear();
    let mut bits = 0u64;
    for i in 0..p {
        if i % 64 == 0 {
            bits = rng.next_u64();
        }
        out.push(if bits >> (i % 64) & 1 == 1 { 1.0 } else { -1.0 });
    }
}

/// Perturbation `k` of an SPSA estimate seeded `seed`: `θ± = clip(θ ± εδ_k, 0, 1)`, δ_k Rademacher from its own
/// stream ([`item_seed`]`(seed, k)`), so any range of perturbations can be drawn without the others.
fn perturb(theta: &[f32], epsilon: f32, seed: u64, k: u32, work: &mut Workspace) {
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, k as usize));
    rademacher(&mut rng, theta.len(), &mut work.delta);
    work.theta_plus.clear();
    work.theta_minus.clear();
    for (&t, &d) in theta.iter().zip(&work.delta) {
        work.theta_plus.push((t + epsilon * d).clamp(0.0, 1.0));
        work.theta_minus.push((t - epsilon * d).clamp(0.0, 1.0));
    }
}

/// The renders of SPSA perturbations `first..first + count` (seeded as [`spsa_vjp`] seeds them): `⟨g, y₊ − y₋⟩`
/// of each, in order. [`spsa_combine`] turns the dots of all K perturbations into the estimate.
#[allow(clippy::too_many_arguments)]
pub fn spsa_dots<R: Render>(
    render: &mut R,
    theta: &[f32],
    g: &Audio,
    epsilon: f32,
    first: u32,
    count: u32,
    seed: u64,
    work: &mut Workspace,
) -> Result<Vec<f64>, R::Error> {
    let mut dots = Vec::with_capacity(count as usize);
    for k in first..first.saturating_add(count) {
        perturb(theta, epsilon, seed, k, work);
        render.render(&work.theta_plus, &mut work.plus)?;
        render.render(&work.theta_minus, &mut work.minus)?;
        dots.push(dot_difference(channels(g), &work.plus, &work.minus));
    }
    Ok(dots)
}

/// The SPSA estimate from the dots of perturbations `0..dots.len()` (K = `dots.len()`): `ĝ = 1/K Σ_k s_k / (θ₊ −
/// θ₋)`, summed in f64 in the order of k. A pure function of its arguments: however the dots were computed
/// (one job, or parts on several workers), the estimate is the same bit for bit.
pub fn spsa_combine(theta: &[f32], epsilon: f32, seed: u64, dots: &[f64], work: &mut Workspace) -> Vec<f32> {
    let mut sum = vec![0.0f64; theta.len()];
    for (k, &s) in dots.iter().enumerate() {
        perturb(theta, epsilon, seed, k as u32, work);
        for ((acc, &plus), &minus) in sum.iter_mut().zip(&work.theta_plus).zip(&work.theta_minus) {
            let distance = f64::from(plus) - f64::from(minus);
            if distance != 0.0 {
                *acc += s / distance;
            }
        }
    }
    let k = dots.len().max(1) as f64;
    sum.into_iter().map(|s| (s / k) as f32).collect()
}

/// θ₊ and θ₋ of perturbation `k` of an SPSA estimate seeded `seed`: what [`spsa_dots`] renders for it. A caller
/// that renders them itself, before `g` is known, gets the estimate from [`spsa_from_renders`].
pub fn spsa_perturbation(theta: &[f32], epsilon: f32, seed: u64, k: u32) -> (Vec<f32>, Vec<f32>) {
    let mut work = Workspace::default();
    perturb(theta, epsilon, seed, k, &mut work);
    (work.theta_plus, work.theta_minus)
}

/// The SPSA estimate from renders made already: `renders[k]` = (y₊, y₋) of [`spsa_perturbation`]`(θ, ε, seed,
/// k)`, K = `renders.len()`; `g` one slice per channel, the renders' shape. Bit for bit what [`spsa_vjp`] gives
/// with the same arguments: the same dots, combined by [`spsa_combine`].
pub fn spsa_from_renders(theta: &[f32], epsilon: f32, seed: u64, g: &[&[f32]], renders: &[(Audio, Audio)]) -> Vec<f32> {
    let dots: Vec<f64> = renders.iter().map(|(plus, minus)| dot_difference(g.iter().copied(), plus, minus)).collect();
    spsa_combine(theta, epsilon, seed, &dots, &mut Workspace::default())
}

/// An audio's channels as slices.
fn channels(audio: &Audio) -> impl Iterator<Item = &[f32]> {
    audio.channels().iter().map(Vec::as_slice)
}

/// SPSA estimate of `(∂y/∂θ)ᵀ g` with K perturbations of size ε (at least one), seeded: perturbation k is
/// seeded with [`item_seed`]`(seed, k)`.
///
/// `g` must have the shape of the render's output (the input's channels and frames).
pub fn spsa_vjp<R: Render>(
    render: &mut R,
    theta: &[f32],
    g: &Audio,
    epsilon: f32,
    perturbations: usize,
    seed: u64,
    work: &mut Workspace,
) -> Result<Vec<f32>, R::Error> {
    let k = perturbations.max(1) as u32;
    let dots = spsa_dots(render, theta, g, epsilon, 0, k, seed, work)?;
    Ok(spsa_combine(theta, epsilon, seed, &dots, work))
}

/// Central finite-difference estimate of `(∂y/∂θ)ᵀ g`, step `h` in the normalised space, one parameter at a
/// time (clipped to [0, 1], dividing by the actual distance).
pub fn finite_difference_vjp<R: Render>(
    render: &mut R,
    theta: &[f32],
    g: &Audio,
    h: f32,
    work: &mut Workspace,
) -> Result<Vec<f32>, R::Error> {
    let mut grad = Vec::with_capacity(theta.len());
    for i in 0..theta.len() {
        work.theta_plus.clear();
        work.theta_plus.extend_from_slice(theta);
        work.theta_minus.clear();
        work.theta_minus.extend_from_slice(theta);
        work.theta_plus[i] = (theta[i] + h).clamp(0.0, 1.0);
        work.theta_minus[i] = (theta[i] - h).clamp(0.0, 1.0);
        let distance = f64::from(work.theta_plus[i]) - f64::from(work.theta_minus[i]);
        render.render(&work.theta_plus, &mut work.plus)?;
        render.render(&work.theta_minus, &mut work.minus)?;
        let s = dot_difference(channels(g), &work.plus, &work.minus);
        grad.push(if distance == 0.0 { 0.0 } else { (s / distance) as f32 });
    }
    Ok(grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth function of θ whose VJP is known exactly: y[n] = Σ_i θ_i² · x_i[n] (x_i fixed signals).
    fn quadratic(theta: &[f32], out: &mut Audio) -> Result<(), ()> {
        let frames = 64;
        let y: Vec<f32> = (0..frames)
            .map(|n| theta.iter().enumerate().map(|(i, t)| t * t * ((n * (i + 1)) as f32 * 0.1).sin()).sum())
            .collect();
        *out = Audio::new(48_000, vec![y]).unwrap();
        Ok(())
    }

    fn exact(theta: &[f32], g: &Audio) -> Vec<f32> {
        (0..theta.len())
            .map(|i| (0..64).map(|n| g.channel(0)[n] * 2.0 * theta[i] * ((n * (i + 1)) as f32 * 0.1).sin()).sum())
            .collect()
    }

    fn g() -> Audio {
        Audio::new(48_000, vec![(0..64).map(|n| ((n * 7) % 5) as f32 - 2.0).collect()]).unwrap()
    }

    #[test]
    fn finite_differences_match_the_exact_vjp_of_a_quadratic() {
        let theta = [0.2, 0.5, 0.9];
        let fd = finite_difference_vjp(&mut quadratic, &theta, &g(), 1e-2, &mut Workspace::default()).unwrap();
        for (a, b) in fd.iter().zip(exact(&theta, &g())) {
            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn spsa_is_deterministic_per_seed_and_unbiased_on_average() {
        let theta = [0.2, 0.5, 0.9];
        let mut work = Workspace::default();
        let a = spsa_vjp(&mut quadratic, &theta, &g(), 1e-2, 1, 7, &mut work).unwrap();
        let b = spsa_vjp(&mut quadratic, &theta, &g(), 1e-2, 1, 7, &mut work).unwrap();
        let c = spsa_vjp(&mut quadratic, &theta, &g(), 1e-2, 1, 8, &mut work).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut mean = [0.0f64; 3];
        let runs = 4000;
        for seed in 0..runs {
            let e = spsa_vjp(&mut quadratic, &theta, &g(), 1e-2, 1, seed, &mut work).unwrap();
            for i in 0..3 {
                mean[i] += f64::from(e[i]) / runs as f64;
            }
        }
        let truth = exact(&theta, &g());
        let scale = truth.iter().map(|t| t.abs()).fold(0.0, f32::max) as f64;
        for i in 0..3 {
            assert!((mean[i] - f64::from(truth[i])).abs() < 0.05 * scale, "{mean:?} vs {truth:?}");
        }
    }

    #[test]
    fn spsa_split_into_ranges_of_perturbations_is_bit_identical_to_the_whole() {
        let theta = [0.2, 0.5, 0.999];
        let mut work = Workspace::default();
        let whole = spsa_vjp(&mut quadratic, &theta, &g(), 1e-2, 7, 3, &mut work).unwrap();
        for cuts in [vec![0, 7], vec![0, 1, 7], vec![0, 3, 4, 7], (0..=7).collect()] {
            let mut dots = vec![];
            for w in cuts.windows(2) {
                let part = spsa_dots(&mut quadratic, &theta, &g(), 1e-2, w[0], w[1] - w[0], 3, &mut work);
                dots.extend(part.unwrap());
            }
            assert_eq!(spsa_combine(&theta, 1e-2, 3, &dots, &mut Workspace::default()), whole, "{cuts:?}");
        }
    }

    #[test]
    fn spsa_from_renders_made_beforehand_is_bit_identical_to_spsa_vjp() {
        let theta = [0.2, 0.5, 0.999];
        let g = g();
        for k in [1u32, 4] {
            let whole = spsa_vjp(&mut quadratic, &theta, &g, 1e-2, k as usize, 11, &mut Workspace::default()).unwrap();
            let renders: Vec<(Audio, Audio)> = (0..k)
                .map(|k| {
                    let (plus, minus) = spsa_perturbation(&theta, 1e-2, 11, k);
                    let mut y = (Audio::silence(1, 1, 0), Audio::silence(1, 1, 0));
                    quadratic(&plus, &mut y.0).unwrap();
                    quadratic(&minus, &mut y.1).unwrap();
                    y
                })
                .collect();
            let estimate = spsa_from_renders(&theta, 1e-2, 11, &[g.channel(0)], &renders);
            assert_eq!(estimate, whole, "K = {k}");
        }
    }

    #[test]
    fn clipping_at_a_bound_divides_by_the_actual_distance() {
        // At θ = 1 the + side clips: the one-sided difference over ε is still the right slope of a linear map.
        let mut linear = |theta: &[f32], out: &mut Audio| -> Result<(), ()> {
            *out = Audio::new(48_000, vec![vec![3.0 * theta[0]; 8]]).unwrap();
            Ok(())
        };
        let g = Audio::new(48_000, vec![vec![1.0; 8]]).unwrap();
        let est = spsa_vjp(&mut linear, &[1.0], &g, 0.1, 4, 1, &mut Workspace::default()).unwrap();
        assert!((est[0] - 24.0).abs() < 1e-4, "{est:?}");
        let fd = finite_difference_vjp(&mut linear, &[1.0], &g, 0.1, &mut Workspace::default()).unwrap();
        assert!((fd[0] - 24.0).abs() < 1e-4, "{fd:?}");
    }
}
