//! The pool's batch methods: a batch of one kind of job built from the caller's inputs and θ, and its
//! results handed back as audio or gradients; [`PerturbedRenders`], SPSA's renders made ahead of `g`.

use std::sync::Arc;

use afx_host::{Audio, Automation};

use crate::job::{FailureKind, ItemError, Job};

use super::{Control, Pool};
use crate::estimator::{Frames, Scoring};

impl Pool {
    /// Renders item `i` of `inputs` at `thetas[i]`: the forward pass of a batch.
    ///
    /// Inputs are `Arc<Audio>` (shared as they are) or `Audio` (copied once, into an `Arc`); likewise in the other
    /// batch methods.
    pub fn render_batch<A: Shared>(&mut self, inputs: &[A], thetas: &[Vec<f32>]) -> Vec<Result<Audio, ItemError>> {
        let mut results: Vec<Option<Result<Audio, ItemError>>> = (0..inputs.len()).map(|_| None).collect();
        self.render_batch_each(inputs, thetas, |index, result| results[index] = Some(result));
        results.into_iter().map(|r| r.expect("every item gets a result")).collect()
    }

    /// [`Pool::render_batch`], handing each item's result to `done(index, result)` as soon as it arrives (on
    /// this thread, while the other items render): a caller that copies results into a buffer of its own does
    /// so behind the renders instead of after the batch. Every item gets exactly one call.
    pub fn render_batch_each<A: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        mut done: impl FnMut(usize, Result<Audio, ItemError>),
    ) {
        let hop = self.control.hop;
        let jobs = inputs.iter().zip(thetas).map(|(x, t)| Job::Render { input: x.shared(), theta: t.clone(), hop });
        let mut renders = 0;
        self.run_placed(jobs.collect(), |index, result| {
            let result = result.map(|o| o.into_audio().expect("render jobs give audio"));
            renders += u64::from(result.is_ok());
            done(index, result);
        });
        self.renders += renders;
    }

    /// One render of `input` with every parameter in plain units (one `Vec` per stage), `sidechain` fed to the
    /// plugins' key inputs (silence when `None`): a whole file, as `afx render` and `afx infer` do it, with the
    /// pool's crash, hang and NaN handling.
    pub fn render_values<A: Shared>(
        &mut self,
        input: &A,
        sidechain: Option<&A>,
        values: &[Vec<f32>],
    ) -> Result<Audio, ItemError> {
        let values: Vec<Automation> = values.iter().map(|v| Automation::constant(v)).collect();
        self.render_automated(input, sidechain, values)
    }

    /// [`Pool::render_values`] with parameters that move: one [`Automation`] of plain values per stage (see
    /// [`afx_host::automation`]).
    pub fn render_automated<A: Shared>(
        &mut self,
        input: &A,
        sidechain: Option<&A>,
        values: Vec<Automation>,
    ) -> Result<Audio, ItemError> {
        let job = Job::RenderValues { input: input.shared(), sidechain: sidechain.map(Shared::shared), values };
        let result = self.run(vec![job]).pop().expect("one result per job");
        result.map(|o| o.into_audio().expect("render jobs give audio"))
    }

    /// SPSA estimates of `(∂y/∂θ)ᵀ g` for every item of a batch, K perturbations of size ε each, item `i` drawing
    /// them from `seeds[i]`. Seeds from [`item_seeds`](crate::item_seeds)`(seed, n)` make the results
    /// independent of the number of workers; a sub-batch keeps the seeds its items have in the batch.
    pub fn spsa_batch<A: Shared, G: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        grads: &[G],
        epsilon: f32,
        perturbations: u32,
        seeds: &[u64],
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let control = self.control;
        let jobs = inputs.iter().zip(thetas).zip(grads).zip(seeds).map(|(((x, t), g), &seed)| Job::Spsa {
            input: x.shared(),
            theta: t.clone(),
            hop: control.hop,
            grad: g.shared(),
            epsilon,
            perturbations,
            seed,
            scoring: control.scoring,
        });
        self.gradients_of(jobs.collect())
    }

    /// Renders every item at its θ and at the K pairs θ± of SPSA's perturbations (seeded as
    /// [`Pool::spsa_batch`] seeds them) in one batch, before `g = ∂L/∂y` is known, as DeepAFx's layer
    /// renders its three instances in the forward pass. Each item's render at θ goes to `done(index, result)` as
    /// it arrives; its perturbed renders are kept, and [`PerturbedRenders::vjp`] later gives
    /// `spsa_batch`'s estimate for any `g`, bit for bit, without rendering.
    ///
    /// A training step then runs one batch instead of two (the workers start and drain once), and every job is
    /// one render, the smallest unit to share out: the last jobs leave less of a tail. The cost is memory: 2K
    /// renders per item are held until the gradient is taken. An item whose perturbed renders fail gets that
    /// error; its render at θ is reported to `done` on its own.
    pub fn render_perturbed_each<A: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        epsilon: f32,
        perturbations: u32,
        seeds: &[u64],
        mut done: impl FnMut(usize, Result<Audio, ItemError>),
    ) -> Vec<Result<PerturbedRenders, ItemError>> {
        let (items, pairs) = (inputs.len(), perturbations.max(1) as usize);
        let shared: Vec<Arc<Audio>> = inputs.iter().map(Shared::shared).collect();
        // The renders at θ first (the caller waits for those), then each item's pairs: θ₊ then θ₋ of k = 0, 1, ...
        let Control { hop, scoring } = self.control;
        let mut jobs: Vec<Job> =
            shared.iter().zip(thetas).map(|(x, t)| Job::Render { input: x.clone(), theta: t.clone(), hop }).collect();
        for ((x, theta), &seed) in shared.iter().zip(thetas).zip(seeds) {
            for k in 0..pairs as u32 {
                let (plus, minus) = crate::estimator::spsa_perturbation(theta, epsilon, seed, k);
                jobs.push(Job::Render { input: x.clone(), theta: plus, hop });
                jobs.push(Job::Render { input: x.clone(), theta: minus, hop });
            }
        }
        let num_params = self.num_params();
        let mut perturbed: Vec<Vec<Option<Audio>>> = (0..items).map(|_| vec![None; 2 * pairs]).collect();
        let mut failed: Vec<Option<ItemError>> = (0..items).map(|_| None).collect();
        let mut renders = 0;
        let chain = self.config.spec.chain.clone();
        self.run_placed(jobs, |index, result| {
            let result = result.map(|o| o.into_audio().expect("render jobs give audio"));
            if index < items {
                renders += u64::from(result.is_ok());
                return done(index, result);
            }
            let (item, render) = ((index - items) / (2 * pairs), (index - items) % (2 * pairs));
            let input = &shared[item];
            match result {
                Ok(y) if (y.num_channels(), y.frames()) == (input.num_channels(), input.frames()) => {
                    perturbed[item][render] = Some(y);
                }
                Ok(y) => {
                    let kind = FailureKind::Protocol(format!(
                        "a perturbed render gave {} channels of {} frames for an input of {} channels of {} frames",
                        y.num_channels(),
                        y.frames(),
                        input.num_channels(),
                        input.frames()
                    ));
                    let (chain, theta) = (chain.clone(), thetas[item].clone());
                    failed[item].get_or_insert(ItemError { chain, theta, kind, stderr: String::new() });
                }
                // Named by the item's θ, as `spsa_batch` names it, not the perturbed θ of the render.
                Err(e) => {
                    failed[item].get_or_insert(ItemError { theta: thetas[item].clone(), ..e });
                }
            }
        });
        self.renders += renders;
        perturbed
            .into_iter()
            .zip(failed)
            .zip(thetas.iter().zip(seeds))
            .map(|((renders, failed), (theta, &seed))| match failed {
                Some(e) => Err(e),
                None => {
                    let mut renders = renders.into_iter().map(|y| y.expect("every render of the item arrived"));
                    let pairs = std::iter::from_fn(|| Some((renders.next()?, renders.next()?))).collect();
                    let frames = Frames::of(theta.len(), num_params, hop as usize);
                    Ok(PerturbedRenders { theta: theta.clone(), frames, scoring, epsilon, seed, pairs })
                }
            })
            .collect()
    }

    /// Central finite-difference estimates of `(∂y/∂θ)ᵀ g` for every item of a batch, step `step` in the
    /// normalised space: 2P renders per item, the expensive reference.
    pub fn finite_difference_batch<A: Shared, G: Shared>(
        &mut self,
        inputs: &[A],
        thetas: &[Vec<f32>],
        grads: &[G],
        step: f32,
    ) -> Vec<Result<Vec<f32>, ItemError>> {
        let hop = self.control.hop;
        let jobs = inputs.iter().zip(thetas).zip(grads).map(|((x, t), g)| Job::FiniteDifference {
            input: x.shared(),
            theta: t.clone(),
            hop,
            grad: g.shared(),
            step,
        });
        self.gradients_of(jobs.collect())
    }

    fn gradients_of(&mut self, jobs: Vec<Job>) -> Vec<Result<Vec<f32>, ItemError>> {
        self.run(jobs)
            .into_iter()
            .map(|r| r.map(|o| o.into_gradient().expect("estimator jobs give gradients")))
            .collect()
    }
}

/// One item's SPSA renders, made before its upstream gradient was known (see
/// [`Pool::render_perturbed_each`]): the K pairs (y₊, y₋) and what they were rendered at.
#[derive(Debug, Clone)]
pub struct PerturbedRenders {
    theta: Vec<f32>,
    frames: Frames,
    scoring: Scoring,
    epsilon: f32,
    seed: u64,
    pairs: Vec<(Audio, Audio)>,
}

impl PerturbedRenders {
    /// The SPSA estimate of `(∂y/∂θ)ᵀ g` for `g` given one slice per channel, of the renders' shape: what
    /// [`Pool::spsa_batch`] returns for this item, bit for bit. No render; a dot product per pair.
    ///
    /// # Panics
    /// When `g` does not have the renders' shape ([`PerturbedRenders::shape`]).
    pub fn vjp(&self, g: &[&[f32]]) -> Vec<f32> {
        let (channels, frames) = self.shape();
        assert!(
            g.len() == channels && g.iter().all(|c| c.len() == frames),
            "∂L/∂y must have the renders' {channels} channels of {frames} frames"
        );
        crate::estimator::spsa_from_renders(
            &self.theta,
            self.frames,
            self.scoring,
            self.epsilon,
            self.seed,
            g,
            &self.pairs,
        )
    }

    /// The renders' (channels, frames): the item's input's.
    pub fn shape(&self) -> (usize, usize) {
        let (plus, _) = &self.pairs[0];
        (plus.num_channels(), plus.frames())
    }
}

/// Audio the pool shares without copying: an owned `Audio` is moved into a new `Arc` (one copy of a borrowed
/// one), an `Arc<Audio>` is shared as it is.
pub trait Shared {
    fn shared(&self) -> Arc<Audio>;
}

impl Shared for Arc<Audio> {
    fn shared(&self) -> Arc<Audio> {
        self.clone()
    }
}

impl Shared for Audio {
    fn shared(&self) -> Arc<Audio> {
        Arc::new(self.clone())
    }
}
