//! CMA-ES (Hansen's covariance matrix adaptation evolution strategy) as an ask/tell [`Optimizer`], as ST-ITO
//! matches one sound, with the population rendered by the pool as one batch.
//!
//! The update is the one of Hansen's tutorial ("The CMA Evolution Strategy: A Tutorial", 2016) and `purecma`:
//! rank-μ and rank-one updates of C, cumulative step-size adaptation of σ, log-linear recombination weights.
//! The `cmaes` crate (0.2) evaluates its population itself, one objective call per point, so the pool could not
//! render a generation as one batch over its workers; the ask/tell loop here is what lets it.
//!
//! Bounds: the search runs unbounded and every point is folded into [0, 1] by reflection at the borders (a
//! triangle wave) before it is rendered, as pycma's `BoundTransform` maps its genotype; the distribution learns
//! from the unfolded points, so a border does not bias its mean.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::Optimizer;

/// CMA-ES's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CmaEsSettings {
    /// λ, points per generation; `None`: 4 + ⌊3 ln P⌋ (Hansen's default), rounded up to a multiple of the
    /// pool's workers so that no worker idles at a generation's end.
    pub population: Option<usize>,
    /// σ₀ in normalised units (ST-ITO: 0.33 from the middle of the range).
    pub sigma: f64,
}

impl Default for CmaEsSettings {
    fn default() -> Self {
        CmaEsSettings { population: None, sigma: 0.25 }
    }
}

impl CmaEsSettings {
    /// The population for `dims` parameters and `workers` workers.
    pub fn population_for(&self, dims: usize, workers: usize) -> usize {
        self.population.unwrap_or_else(|| {
            let hansen = 4 + (3.0 * (dims.max(1) as f64).ln()).floor() as usize;
            hansen.div_ceil(workers.max(1)) * workers.max(1)
        })
    }
}

/// The strategy's state.
pub struct CmaEs {
    n: usize,
    lambda: usize,
    weights: Vec<f64>,
    mu_eff: f64,
    cc: f64,
    cs: f64,
    c1: f64,
    cmu: f64,
    damps: f64,
    chi_n: f64,
    mean: DVector<f64>,
    sigma: f64,
    pc: DVector<f64>,
    ps: DVector<f64>,
    c: DMatrix<f64>,
    /// C = B·diag(d²)·Bᵀ, refreshed every few generations (Hansen: often enough for n/(c1+cμ)/10 evaluations).
    b: DMatrix<f64>,
    d: DVector<f64>,
    evaluations: usize,
    eigen_at: usize,
    /// The unfolded points of the generation asked last.
    asked: Vec<DVector<f64>>,
    rng: ChaCha8Rng,
}

impl CmaEs {
    /// A search around `start` (in [0, 1]) with step `settings.sigma` and `lambda` points per generation.
    pub fn new(start: &[f32], settings: &CmaEsSettings, lambda: usize, seed: u64) -> CmaEs {
        let n = start.len();
        let lambda = lambda.max(2);
        let mu = lambda / 2;
        let raw: Vec<f64> = (0..mu).map(|i| (mu as f64 + 0.5).ln() - ((i + 1) as f64).ln()).collect();
        let total: f64 = raw.iter().sum();
        let weights: Vec<f64> = raw.iter().map(|w| w / total).collect();
        let mu_eff = 1.0 / weights.iter().map(|w| w * w).sum::<f64>();
        let nf = n as f64;
        let cc = (4.0 + mu_eff / nf) / (nf + 4.0 + 2.0 * mu_eff / nf);
        let cs = (mu_eff + 2.0) / (nf + mu_eff + 5.0);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mu_eff);
        let cmu = (1.0 - c1).min(2.0 * (mu_eff - 2.0 + 1.0 / mu_eff) / ((nf + 2.0).powi(2) + mu_eff));
        let damps = 1.0 + 2.0 * (((mu_eff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + cs;
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        CmaEs {
            n,
            lambda,
            weights,
            mu_eff,
            cc,
            cs,
            c1,
            cmu,
            damps,
            chi_n,
            mean: DVector::from_iterator(n, start.iter().map(|&v| f64::from(v))),
            sigma: settings.sigma,
            pc: DVector::zeros(n),
            ps: DVector::zeros(n),
            c: DMatrix::identity(n, n),
            b: DMatrix::identity(n, n),
            d: DVector::from_element(n, 1.0),
            evaluations: 0,
            eigen_at: 0,
            asked: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The current step size σ.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    fn standard_normal(&mut self) -> f64 {
        // Box–Muller on two uniforms in (0, 1].
        let u = |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let (u1, u2) = (u(&mut self.rng), u(&mut self.rng));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn update_eigen(&mut self) {
        // Symmetrise against rounding, then C = B·diag(λ)·Bᵀ; d = √λ (clamped: C stays positive definite in
        // exact arithmetic, rounding can put an eigenvalue at −1e-17).
        let c = (&self.c + self.c.transpose()) * 0.5;
        let eigen = SymmetricEigen::new(c.clone());
        self.c = c;
        self.b = eigen.eigenvectors;
        self.d = eigen.eigenvalues.map(|v| v.max(1e-20).sqrt());
        self.eigen_at = self.evaluations;
    }
}

/// `x` folded into [0, 1] by reflection at 0 and 1 (period 2).
pub fn reflect(x: f64) -> f64 {
    let r = x.rem_euclid(2.0);
    if r > 1.0 { 2.0 - r } else { r }
}

impl Optimizer for CmaEs {
    fn ask(&mut self, _progress: f64) -> Vec<Vec<f32>> {
        let gap = (self.lambda as f64 / (self.c1 + self.cmu) / self.n as f64 / 10.0).max(1.0) as usize;
        if self.evaluations >= self.eigen_at + gap {
            self.update_eigen();
        }
        self.asked = (0..self.lambda)
            .map(|_| {
                let z = DVector::from_iterator(self.n, (0..self.n).map(|_| self.standard_normal()));
                let y = &self.b * z.component_mul(&self.d);
                &self.mean + y * self.sigma
            })
            .collect();
        self.asked.iter().map(|x| x.iter().map(|&v| reflect(v) as f32).collect()).collect()
    }

    fn tell(&mut self, losses: &[f64]) {
        assert_eq!(losses.len(), self.asked.len(), "one loss per point asked");
        self.evaluations += losses.len();
        // Failed renders (NaN or ∞) rank last; ties keep the order asked.
        let mut order: Vec<usize> = (0..losses.len()).collect();
        let key = |i: usize| if losses[i].is_finite() { losses[i] } else { f64::INFINITY };
        order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
        let old = self.mean.clone();
        let mut mean = DVector::zeros(self.n);
        for (w, &i) in self.weights.iter().zip(&order) {
            mean += &self.asked[i] * *w;
        }
        self.mean = mean;
        let y_w = (&self.mean - &old) / self.sigma;
        // C^(-1/2)·y_w = B·diag(1/d)·Bᵀ·y_w.
        let inv_sqrt_c_y = &self.b * (self.b.transpose() * &y_w).component_div(&self.d);
        self.ps = &self.ps * (1.0 - self.cs) + inv_sqrt_c_y * (self.cs * (2.0 - self.cs) * self.mu_eff).sqrt();
        let generations = self.evaluations as f64 / self.lambda as f64;
        let ps_norm = self.ps.norm() / (1.0 - (1.0 - self.cs).powf(2.0 * generations)).sqrt();
        let hsig = ps_norm / self.chi_n < 1.4 + 2.0 / (self.n as f64 + 1.0);
        let h = if hsig { 1.0 } else { 0.0 };
        self.pc = &self.pc * (1.0 - self.cc) + &y_w * (h * (self.cc * (2.0 - self.cc) * self.mu_eff).sqrt());
        let mut rank_mu = DMatrix::zeros(self.n, self.n);
        for (w, &i) in self.weights.iter().zip(&order) {
            let step = (&self.asked[i] - &old) / self.sigma;
            rank_mu += &step * step.transpose() * *w;
        }
        let rank_one = &self.pc * self.pc.transpose() + &self.c * ((1.0 - h) * self.cc * (2.0 - self.cc));
        self.c = &self.c * (1.0 - self.c1 - self.cmu) + rank_one * self.c1 + rank_mu * self.cmu;
        self.sigma *= ((self.cs / self.damps) * (self.ps.norm() / self.chi_n - 1.0)).exp();
        // Matching needs no step below a rounding-level change of a parameter, nor one that folds the whole range.
        self.sigma = self.sigma.clamp(1e-6, 1.0);
    }

    fn estimate(&self) -> Vec<f32> {
        self.mean.iter().map(|&v| reflect(v) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl Fn(&[f32]) -> f64, start: &[f32], evaluations: usize, seed: u64) -> (Vec<f32>, f64) {
        let settings = CmaEsSettings { population: None, sigma: 0.3 };
        let lambda = settings.population_for(start.len(), 2);
        let mut es = CmaEs::new(start, &settings, lambda, seed);
        let mut best = (start.to_vec(), f(start));
        for _ in 0..evaluations / lambda {
            let points = es.ask(0.0);
            let losses: Vec<f64> = points.iter().map(|p| f(p)).collect();
            for (p, &l) in points.iter().zip(&losses) {
                if l < best.1 {
                    best = (p.clone(), l);
                }
            }
            es.tell(&losses);
        }
        best
    }

    #[test]
    fn finds_the_minimum_of_an_ill_conditioned_quadratic_inside_the_box() {
        // f(θ) = Σ 10^(3j/(n−1)) (θ_j − t_j)²: axis ratio 1000, the shape CMA-ES exists for.
        let target: Vec<f32> = (0..8).map(|j| 0.1 + 0.1 * j as f32).collect();
        let f = |x: &[f32]| -> f64 {
            x.iter()
                .zip(&target)
                .enumerate()
                .map(|(j, (a, b))| 10f64.powf(3.0 * j as f64 / 7.0) * f64::from(a - b).powi(2))
                .sum()
        };
        let (best, loss) = run(f, &[0.5; 8], 3000, 7);
        assert!(loss < 1e-6, "loss {loss} at {best:?}");
    }

    #[test]
    fn a_minimum_on_the_border_is_reached_through_the_reflection() {
        let f = |x: &[f32]| -> f64 { x.iter().map(|&v| f64::from(v)).sum() };
        let (best, loss) = run(f, &[0.5; 4], 1200, 3);
        assert!(loss < 1e-3 && best.iter().all(|&v| (0.0..=1.0).contains(&v)), "loss {loss} at {best:?}");
    }

    #[test]
    fn reflect_folds_into_the_unit_interval() {
        for (x, want) in [(0.3, 0.3), (1.2, 0.8), (-0.25, 0.25), (2.1, 0.1), (-1.5, 0.5), (1.0, 1.0)] {
            assert!((reflect(x) - want).abs() < 1e-12, "{x}: {}", reflect(x));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_search_and_another_seed_another() {
        let f = |x: &[f32]| -> f64 { x.iter().map(|&v| f64::from(v - 0.3).powi(2)).sum() };
        assert_eq!(run(f, &[0.5; 5], 200, 1), run(f, &[0.5; 5], 200, 1));
        assert_ne!(run(f, &[0.5; 5], 200, 1).0, run(f, &[0.5; 5], 200, 2).0);
    }
}
