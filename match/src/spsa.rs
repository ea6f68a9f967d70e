//! SPSA descent (Spall's simultaneous-perturbation stochastic approximation) with an Adam step, as an ask/tell
//! [`Optimizer`].
//!
//! Each step asks for K pairs θ ± εΔ_k (Δ Rademacher, seeded), all rendered as one batch over the pool's
//! workers. The estimate is ĝ = (1/K) Σ_k (L(θ+εΔ_k) − L(θ−εΔ_k)) / (2ε) · Δ_k, taken from the objective's own
//! values: for one θ that is cheaper than DeepAFx's vector-Jacobian form (no forward render, no dL/dy), exact
//! for a nonlinear loss to O(ε²), and it serves any objective (MRSTFT against a target, or style features).
//! Adam scales the step per parameter; its learning rate decays along a cosine over the budget: with a constant
//! rate SPSA climbed back up late on this chain (notes/anchors.md).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::Optimizer;

/// SPSA descent's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpsaSettings {
    /// Adam's learning rate at the start, in normalised units per step.
    pub lr: f64,
    /// The learning rate at the end of the budget.
    pub lr_final: f64,
    /// Perturbation size ε, in normalised units.
    pub epsilon: f64,
    /// Perturbations K per step (2K renders); `None`: one per worker.
    pub perturbations: Option<usize>,
}

impl Default for SpsaSettings {
    fn default() -> Self {
        SpsaSettings { lr: 0.05, lr_final: 0.005, epsilon: 0.02, perturbations: None }
    }
}

/// The optimizer's state.
pub struct SpsaDescent {
    theta: Vec<f64>,
    settings: SpsaSettings,
    k: usize,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
    lr: f64,
    /// The perturbation directions of the points asked last.
    deltas: Vec<Vec<f64>>,
    /// The points asked last (θ + εΔ_k, θ − εΔ_k for each k, in that order), after clipping to [0, 1].
    asked: Vec<Vec<f64>>,
    rng: ChaCha8Rng,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl SpsaDescent {
    pub fn new(start: &[f32], settings: &SpsaSettings, k: usize, seed: u64) -> SpsaDescent {
        let n = start.len();
        SpsaDescent {
            theta: start.iter().map(|&v| f64::from(v)).collect(),
            settings: settings.clone(),
            k: k.max(1),
            m: vec![0.0; n],
            v: vec![0.0; n],
            steps: 0,
            lr: settings.lr,
            deltas: Vec::new(),
            asked: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Optimizer for SpsaDescent {
    fn ask(&mut self, progress: f64) -> Vec<Vec<f32>> {
        let SpsaSettings { lr, lr_final, epsilon, .. } = self.settings;
        let t = progress.clamp(0.0, 1.0);
        self.lr = lr_final + 0.5 * (lr - lr_final) * (1.0 + (std::f64::consts::PI * t).cos());
        let n = self.theta.len();
        self.deltas = (0..self.k)
            .map(|_| (0..n).map(|_| if self.rng.next_u64() & 1 == 1 { 1.0 } else { -1.0 }).collect())
            .collect();
        self.asked = self
            .deltas
            .iter()
            .flat_map(|delta| {
                let at = |sign: f64| -> Vec<f64> {
                    self.theta.iter().zip(delta).map(|(t, d)| (t + sign * epsilon * d).clamp(0.0, 1.0)).collect()
                };
                [at(1.0), at(-1.0)]
            })
            .collect();
        self.asked.iter().map(|p| p.iter().map(|&v| v as f32).collect()).collect()
    }

    fn tell(&mut self, losses: &[f64]) {
        assert_eq!(losses.len(), self.asked.len(), "one loss per point asked");
        let n = self.theta.len();
        let mut grad = vec![0.0; n];
        let mut used = 0usize;
        for k in 0..self.deltas.len() {
            let (plus, minus) = (losses[2 * k], losses[2 * k + 1]);
            // A failed render leaves its pair out; a step with no pair left does not move θ.
            if !(plus.is_finite() && minus.is_finite()) {
                continue;
            }
            used += 1;
            let (p, q) = (&self.asked[2 * k], &self.asked[2 * k + 1]);
            for j in 0..n {
                // The points as rendered: at a border the clip shortens the difference, so divide by the actual
                // one (it is 2εΔ_j away from the borders). A parameter pinned at a border by both points gets 0.
                let span = p[j] - q[j];
                if span.abs() > 1e-9 {
                    grad[j] += (plus - minus) / span;
                }
            }
        }
        if used == 0 {
            return;
        }
        self.steps += 1;
        let (b1, b2) = (1.0 - BETA1.powi(self.steps), 1.0 - BETA2.powi(self.steps));
        for (((theta, m), v), g) in self.theta.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(&grad) {
            let g = g / used as f64;
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            let step = self.lr * (*m / b1) / ((*v / b2).sqrt() + ADAM_EPS);
            *theta = (*theta - step).clamp(0.0, 1.0);
        }
    }

    fn estimate(&self) -> Vec<f32> {
        self.theta.iter().map(|&v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descend(f: impl Fn(&[f32]) -> f64, start: &[f32], steps: usize) -> Vec<f32> {
        let mut opt = SpsaDescent::new(start, &SpsaSettings::default(), 2, 5);
        for s in 0..steps {
            let points = opt.ask(s as f64 / steps as f64);
            let losses: Vec<f64> = points.iter().map(|p| f(p)).collect();
            opt.tell(&losses);
        }
        opt.estimate()
    }

    #[test]
    fn descends_a_quadratic_to_its_minimum_inside_the_box() {
        let target = [0.2f32, 0.8, 0.5, 0.35, 0.65, 0.1];
        let f = |x: &[f32]| -> f64 { x.iter().zip(&target).map(|(a, b)| f64::from(a - b).powi(2)).sum() };
        let end = descend(f, &[0.5; 6], 400);
        assert!(f(&end) < 1e-3, "{end:?}");
    }

    #[test]
    fn a_minimum_beyond_the_box_ends_on_its_border() {
        // dL/dθ_0 < 0 everywhere: θ_0 must end at 1, and the clipped differences still point there.
        let f = |x: &[f32]| -> f64 { -f64::from(x[0]) + f64::from(x[1] - 0.4).powi(2) };
        let end = descend(f, &[0.5, 0.5], 300);
        assert!(end[0] > 0.99 && (end[1] - 0.4).abs() < 0.05, "{end:?}");
    }

    #[test]
    fn a_failed_pair_is_left_out_and_a_step_of_failures_does_not_move() {
        let mut opt = SpsaDescent::new(&[0.5, 0.5], &SpsaSettings::default(), 1, 0);
        let _ = opt.ask(0.0);
        opt.tell(&[f64::NAN, 1.0]);
        assert_eq!(opt.estimate(), vec![0.5, 0.5]);
    }
}
