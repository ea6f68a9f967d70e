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
//!
//! # Trajectories
//! θ may hold F rows of P values, row `f` in effect from input frame `f·hop` ([`Frames`]; see
//! `afx_host::automation`). Both estimators then estimate all F·P values. SPSA's renders split the output into
//! the same F segments, one dot per segment, and [`Scoring`] says which segments score a perturbation of row `f`:
//! all of them ([`Scoring::Whole`], DeepAFx's estimator over F·P values, whose variance grows with F·P), or only
//! those from `f` on ([`Scoring::Causal`]): afx renders a curve shifted by the plugin's latency, so a value of
//! row `f` reaches no output before frame `f·hop`, the segments before `f` carry only other rows' noise, and
//! dropping them keeps the estimate unbiased. [`Scoring::Window`] also drops what comes more than `w` rows
//! later: less noise again, biased by effects that outlast `w` hops (a long release, a reverb tail).

use afx_host::Audio;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::job::item_seed;

/// The shape of θ: `rows` rows of parameters (F), row `f` from input frame `f·hop`. One row: fixed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    pub rows: usize,
    pub hop: usize,
}

impl Frames {
    /// One row of fixed values.
    pub const FIXED: Frames = Frames { rows: 1, hop: 0 };

    /// The shape of a θ of `len` values over `num_params` parameters at `hop` (one row when `len` is
    /// `num_params`).
    pub fn of(len: usize, num_params: usize, hop: usize) -> Frames {
        Frames { rows: len.checked_div(num_params).unwrap_or(1).max(1), hop }
    }

    /// The output frames of segment `f` of an output `n` frames long: `f·hop..(f+1)·hop`, the last one to the end.
    fn segment(&self, f: usize, n: usize) -> std::ops::Range<usize> {
        if self.rows == 1 {
            return 0..n;
        }
        let start = (f * self.hop).min(n);
        let end = if f + 1 == self.rows { n } else { ((f + 1) * self.hop).min(n) };
        start..end
    }
}

/// Which output segments score a perturbation of θ's row `f` (see the [module docs](self#trajectories)).
/// Written `whole`, `causal` and `{"window": w}` in JSON; `whole`, `causal` and `window:W` on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// Every segment: DeepAFx's estimator.
    #[default]
    Whole,
    /// Segments `f..F`: unbiased.
    Causal,
    /// Segments `f..=f + w`.
    Window(u32),
}

impl Scoring {
    pub fn is_whole(&self) -> bool {
        *self == Scoring::Whole
    }

    /// The score of each row from the dots of one perturbation's segments.
    fn scores(self, dots: &[f64], out: &mut Vec<f64>) {
        out.clear();
        match self {
            Scoring::Whole => {
                let total: f64 = dots.iter().sum();
                out.resize(dots.len(), total);
            }
            Scoring::Causal => {
                out.resize(dots.len(), 0.0);
                let mut suffix = 0.0;
                for f in (0..dots.len()).rev() {
                    suffix += dots[f];
                    out[f] = suffix;
                }
            }
            Scoring::Window(w) => {
                out.extend((0..dots.len()).map(|f| dots[f..(f + w as usize + 1).min(dots.len())].iter().sum::<f64>()))
            }
        }
    }
}

impl std::fmt::Display for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scoring::Whole => f.write_str("whole"),
            Scoring::Causal => f.write_str("causal"),
            Scoring::Window(w) => write!(f, "window:{w}"),
        }
    }
}

impl std::str::FromStr for Scoring {
    type Err = String;
    fn from_str(s: &str) -> Result<Scoring, String> {
        match s {
            "whole" => Ok(Scoring::Whole),
            "causal" => Ok(Scoring::Causal),
            _ => s.strip_prefix("window:").and_then(|w| w.parse().ok()).map(Scoring::Window).ok_or_else(|| {
                format!("unknown SPSA scoring {s:?}: valid are whole, causal and window:W (W rows after each row)")
            }),
        }
    }
}

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
        sum += channel_dot(gc, pc, mc);
    }
    sum
}

/// ⟨g, p − m⟩ of one channel, in f64.
fn channel_dot(gc: &[f32], pc: &[f32], mc: &[f32]) -> f64 {
    // Eight partial sums keep the reduction vectorisable and its rounding independent of the length. The exact
    // chunks carry no bounds checks (indexing each of three slices did, and kept the loop scalar at a third of
    // the speed).
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
    lanes.iter().sum::<f64>()
}

/// ⟨g, y₊ − y₋⟩ of each of `frames`' segments, appended to `out` (one value, over the whole output, for one row:
/// bit for bit the dot of fixed values).
fn segment_dots(g: &[&[f32]], plus: &Audio, minus: &Audio, frames: Frames, out: &mut Vec<f64>) {
    if frames.rows == 1 {
        out.push(dot_difference(g.iter().copied(), plus, minus));
        return;
    }
    let n = plus.frames();
    for f in 0..frames.rows {
        let r = frames.segment(f, n);
        let channels = g.iter().zip(plus.channels()).zip(minus.channels());
        out.push(channels.map(|((gc, pc), mc)| channel_dot(&gc[r.clone()], &pc[r.clone()], &mc[r.clone()])).sum());
    }
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
/// of each of `frames`' segments (one, over the whole output, for fixed values), perturbation after
/// perturbation: `count · frames.rows` values. [`spsa_combine`] turns the dots of all K perturbations into the
/// estimate.
#[allow(clippy::too_many_arguments)]
pub fn spsa_dots<R: Render>(
    render: &mut R,
    theta: &[f32],
    frames: Frames,
    g: &Audio,
    epsilon: f32,
    first: u32,
    count: u32,
    seed: u64,
    work: &mut Workspace,
) -> Result<Vec<f64>, R::Error> {
    let mut dots = Vec::with_capacity(count as usize * frames.rows);
    let g: Vec<&[f32]> = channels(g).collect();
    for k in first..first.saturating_add(count) {
        perturb(theta, epsilon, seed, k, work);
        render.render(&work.theta_plus, &mut work.plus)?;
        render.render(&work.theta_minus, &mut work.minus)?;
        segment_dots(&g, &work.plus, &work.minus, frames, &mut dots);
    }
    Ok(dots)
}

/// The SPSA estimate from the dots of perturbations `0..K` ([`spsa_dots`]: `K · frames.rows` values):
/// `ĝᵢ = 1/K Σ_k s_k(row of i) / (θ₊ᵢ − θ₋ᵢ)`, the scores `s_k` of each row as `scoring` sums the segments'
/// dots, accumulated in f64 in the order of k. A pure function of its arguments: however the dots were computed
/// (one job, or parts on several workers), the estimate is the same bit for bit.
pub fn spsa_combine(
    theta: &[f32],
    frames: Frames,
    scoring: Scoring,
    epsilon: f32,
    seed: u64,
    dots: &[f64],
    work: &mut Workspace,
) -> Vec<f32> {
    let mut sum = vec![0.0f64; theta.len()];
    let per_row = theta.len() / frames.rows.max(1);
    let mut scores = vec![];
    for (k, segments) in dots.chunks(frames.rows.max(1)).enumerate() {
        perturb(theta, epsilon, seed, k as u32, work);
        scoring.scores(segments, &mut scores);
        for (i, ((acc, &plus), &minus)) in sum.iter_mut().zip(&work.theta_plus).zip(&work.theta_minus).enumerate() {
            let distance = f64::from(plus) - f64::from(minus);
            if distance != 0.0 {
                *acc += scores[i / per_row.max(1)] / distance;
            }
        }
    }
    let k = (dots.len() / frames.rows.max(1)).max(1) as f64;
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
pub fn spsa_from_renders(
    theta: &[f32],
    frames: Frames,
    scoring: Scoring,
    epsilon: f32,
    seed: u64,
    g: &[&[f32]],
    renders: &[(Audio, Audio)],
) -> Vec<f32> {
    let mut dots = vec![];
    for (plus, minus) in renders {
        segment_dots(g, plus, minus, frames, &mut dots);
    }
    spsa_combine(theta, frames, scoring, epsilon, seed, &dots, &mut Workspace::default())
}

/// An audio's channels as slices.
fn channels(audio: &Audio) -> impl Iterator<Item = &[f32]> {
    audio.channels().iter().map(Vec::as_slice)
}

/// SPSA estimate of `(∂y/∂θ)ᵀ g` with K perturbations of size ε (at least one), seeded: perturbation k is
/// seeded with [`item_seed`]`(seed, k)`.
///
/// `g` must have the shape of the render's output (the input's channels and frames).
#[allow(clippy::too_many_arguments)]
pub fn spsa_vjp<R: Render>(
    render: &mut R,
    theta: &[f32],
    frames: Frames,
    scoring: Scoring,
    g: &Audio,
    epsilon: f32,
    perturbations: usize,
    seed: u64,
    work: &mut Workspace,
) -> Result<Vec<f32>, R::Error> {
    let k = perturbations.max(1) as u32;
    let dots = spsa_dots(render, theta, frames, g, epsilon, 0, k, seed, work)?;
    Ok(spsa_combine(theta, frames, scoring, epsilon, seed, &dots, work))
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
        let a = spsa_vjp(&mut quadratic, &theta, Frames::FIXED, Scoring::Whole, &g(), 1e-2, 1, 7, &mut work).unwrap();
        let b = spsa_vjp(&mut quadratic, &theta, Frames::FIXED, Scoring::Whole, &g(), 1e-2, 1, 7, &mut work).unwrap();
        let c = spsa_vjp(&mut quadratic, &theta, Frames::FIXED, Scoring::Whole, &g(), 1e-2, 1, 8, &mut work).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut mean = [0.0f64; 3];
        let runs = 4000;
        for seed in 0..runs {
            let e = spsa_vjp(&mut quadratic, &theta, Frames::FIXED, Scoring::Whole, &g(), 1e-2, 1, seed, &mut work)
                .unwrap();
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
        let whole =
            spsa_vjp(&mut quadratic, &theta, Frames::FIXED, Scoring::Whole, &g(), 1e-2, 7, 3, &mut work).unwrap();
        for cuts in [vec![0, 7], vec![0, 1, 7], vec![0, 3, 4, 7], (0..=7).collect()] {
            let mut dots = vec![];
            for w in cuts.windows(2) {
                let part =
                    spsa_dots(&mut quadratic, &theta, Frames::FIXED, &g(), 1e-2, w[0], w[1] - w[0], 3, &mut work);
                dots.extend(part.unwrap());
            }
            assert_eq!(
                spsa_combine(&theta, Frames::FIXED, Scoring::Whole, 1e-2, 3, &dots, &mut Workspace::default()),
                whole,
                "{cuts:?}"
            );
        }
    }

    #[test]
    fn spsa_from_renders_made_beforehand_is_bit_identical_to_spsa_vjp() {
        let theta = [0.2, 0.5, 0.999];
        let g = g();
        for k in [1u32, 4] {
            let whole = spsa_vjp(
                &mut quadratic,
                &theta,
                Frames::FIXED,
                Scoring::Whole,
                &g,
                1e-2,
                k as usize,
                11,
                &mut Workspace::default(),
            )
            .unwrap();
            let renders: Vec<(Audio, Audio)> = (0..k)
                .map(|k| {
                    let (plus, minus) = spsa_perturbation(&theta, 1e-2, 11, k);
                    let mut y = (Audio::silence(1, 1, 0), Audio::silence(1, 1, 0));
                    quadratic(&plus, &mut y.0).unwrap();
                    quadratic(&minus, &mut y.1).unwrap();
                    y
                })
                .collect();
            let estimate =
                spsa_from_renders(&theta, Frames::FIXED, Scoring::Whole, 1e-2, 11, &[g.channel(0)], &renders);
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
        let est =
            spsa_vjp(&mut linear, &[1.0], Frames::FIXED, Scoring::Whole, &g, 0.1, 4, 1, &mut Workspace::default())
                .unwrap();
        assert!((est[0] - 24.0).abs() < 1e-4, "{est:?}");
        let fd = finite_difference_vjp(&mut linear, &[1.0], &g, 0.1, &mut Workspace::default()).unwrap();
        assert!((fd[0] - 24.0).abs() < 1e-4, "{fd:?}");
    }

    /// A causal black box over a trajectory of `ROWS` rows of 2 parameters, hop `HOP`: within row f's segment,
    /// y[n] = Σ_p θ_{f,p}² · x_p[n], plus a short echo of the row before (its values reach one segment further,
    /// as a compressor's release does), so the exact VJP is known and a row reaches no earlier output.
    const ROWS: usize = 8;
    const HOP: usize = 16;

    fn trajectory_box(theta: &[f32], out: &mut Audio) -> Result<(), ()> {
        let x = |p: usize, n: usize| ((n * (p + 3)) as f32 * 0.37).sin();
        let y = (0..ROWS * HOP)
            .map(|n| {
                let f = n / HOP;
                let here: f32 = (0..2).map(|p| theta[2 * f + p].powi(2) * x(p, n)).sum();
                let echo = if f > 0 { 0.5 * theta[2 * (f - 1)] * x(1, n) } else { 0.0 };
                here + echo
            })
            .collect();
        *out = Audio::new(48_000, vec![y]).unwrap();
        Ok(())
    }

    fn trajectory_exact(theta: &[f32], g: &[f32]) -> Vec<f64> {
        let x = |p: usize, n: usize| f64::from(((n * (p + 3)) as f32 * 0.37).sin());
        let mut grad = vec![0.0f64; theta.len()];
        for (n, &gn) in g.iter().enumerate() {
            let f = n / HOP;
            for p in 0..2 {
                grad[2 * f + p] += f64::from(gn) * 2.0 * f64::from(theta[2 * f + p]) * x(p, n);
            }
            if f > 0 {
                grad[2 * (f - 1)] += f64::from(gn) * 0.5 * x(1, n);
            }
        }
        grad
    }

    fn cosine(a: &[f32], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn causal_scoring_is_unbiased_and_closer_than_whole_scoring_on_a_trajectory() {
        let theta: Vec<f32> = (0..2 * ROWS).map(|i| 0.2 + 0.6 * ((i * 5) % 7) as f32 / 7.0).collect();
        let g =
            Audio::new(48_000, vec![(0..ROWS * HOP).map(|n| ((n * 13) % 11) as f32 / 5.0 - 1.0).collect()]).unwrap();
        let exact = trajectory_exact(&theta, g.channel(0));
        let frames = Frames { rows: ROWS, hop: HOP };
        let mut work = Workspace::default();
        let (mut mean, mut cos_whole, mut cos_causal, mut cos_window) = (vec![0.0f64; theta.len()], 0.0, 0.0, 0.0);
        let seeds = 400;
        for seed in 0..seeds {
            let mut estimate =
                |scoring| spsa_vjp(&mut trajectory_box, &theta, frames, scoring, &g, 1e-3, 1, seed, &mut work).unwrap();
            let (whole, causal, window) =
                (estimate(Scoring::Whole), estimate(Scoring::Causal), estimate(Scoring::Window(1)));
            for (m, c) in mean.iter_mut().zip(&causal) {
                *m += f64::from(*c) / seeds as f64;
            }
            cos_whole += cosine(&whole, &exact) / seeds as f64;
            cos_causal += cosine(&causal, &exact) / seeds as f64;
            cos_window += cosine(&window, &exact) / seeds as f64;
        }
        // Unbiased: the mean of 400 one-perturbation estimates is close to the exact gradient.
        assert!(cosine(&mean.iter().map(|&m| m as f32).collect::<Vec<_>>(), &exact) > 0.97);
        // The echo lasts one segment, so a window of one row drops only noise: unbiased here too, and the closest.
        assert!(cos_causal > cos_whole && cos_window > cos_causal, "{cos_whole} {cos_causal} {cos_window}");
    }

    #[test]
    fn trajectory_dots_split_into_parts_combine_bit_for_bit() {
        let theta: Vec<f32> = (0..2 * ROWS).map(|i| 0.1 + 0.05 * i as f32).collect();
        let g = Audio::new(48_000, vec![(0..ROWS * HOP).map(|n| (n % 5) as f32 - 2.0).collect()]).unwrap();
        let frames = Frames { rows: ROWS, hop: HOP };
        let mut work = Workspace::default();
        for scoring in [Scoring::Whole, Scoring::Causal, Scoring::Window(2)] {
            let whole = spsa_vjp(&mut trajectory_box, &theta, frames, scoring, &g, 1e-2, 5, 3, &mut work).unwrap();
            let mut dots = vec![];
            for (first, count) in [(0, 2), (2, 1), (3, 2)] {
                dots.extend(
                    spsa_dots(&mut trajectory_box, &theta, frames, &g, 1e-2, first, count, 3, &mut work).unwrap(),
                );
            }
            assert_eq!(dots.len(), 5 * ROWS);
            assert_eq!(spsa_combine(&theta, frames, scoring, 1e-2, 3, &dots, &mut Workspace::default()), whole);
        }
    }
}
