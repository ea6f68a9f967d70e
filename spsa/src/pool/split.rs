//! Spreading a small batch's SPSA items over every worker: each item split into [`Job::SpsaPart`]s of
//! consecutive perturbations, and their dots combined back into the item's estimate, bit for bit the whole
//! job's (see [`Pool::run`](super::Pool::run)).

use crate::estimator::{Frames, Scoring, Workspace, spsa_combine};
use crate::job::{FailureKind, ItemError, Job, JobOutput};

/// How a batch item's result is made from the results of the jobs that ran: one job, or `parts` consecutive
/// [`Job::SpsaPart`]s.
pub(super) enum Item {
    Whole,
    Split { parts: usize, theta: Vec<f32>, frames: Frames, scoring: Scoring, epsilon: f32, seed: u64 },
}

/// The jobs to run for `jobs` on `workers` workers, and how to assemble each item's result (see
/// [`Pool::run`](super::Pool::run)).
pub(super) fn split(jobs: Vec<Job>, workers: usize, num_params: usize) -> (Vec<Job>, Vec<Item>) {
    let want = 2 * workers.max(1);
    if jobs.is_empty() || jobs.len() >= want {
        let items = jobs.iter().map(|_| Item::Whole).collect();
        return (jobs, items);
    }
    let per_item = want.div_ceil(jobs.len()) as u32;
    let (mut work, mut items) = (vec![], vec![]);
    for job in jobs {
        match job {
            Job::Spsa { input, theta, hop, grad, epsilon, perturbations, seed, scoring } if perturbations >= 2 => {
                let parts = per_item.min(perturbations);
                let mut first = 0;
                for part in 0..parts {
                    // Sizes differ by at most one, larger first.
                    let count = perturbations / parts + u32::from(part < perturbations % parts);
                    let (input, grad, theta) = (input.clone(), grad.clone(), theta.clone());
                    work.push(Job::SpsaPart { input, theta, hop, grad, epsilon, first, count, seed });
                    first += count;
                }
                let frames = Frames::of(theta.len(), num_params, hop as usize);
                items.push(Item::Split { parts: parts as usize, theta, frames, scoring, epsilon, seed });
            }
            job => {
                work.push(job);
                items.push(Item::Whole);
            }
        }
    }
    (work, items)
}

/// Each item's result from the results of the jobs `split` made for it, in order: a whole job's as it is, a
/// split item's [`spsa_combine`]d from its parts' dots, or the first failed part's error.
pub(super) fn assemble(
    items: Vec<Item>,
    mut results: impl Iterator<Item = Result<JobOutput, ItemError>>,
    chain: &str,
) -> Vec<Result<JobOutput, ItemError>> {
    let mut work = Workspace::default();
    items
        .into_iter()
        .map(|item| match item {
            Item::Whole => results.next().expect("a result per job"),
            Item::Split { parts, theta, frames, scoring, epsilon, seed } => {
                let mut dots = vec![];
                let mut failed = None;
                for result in results.by_ref().take(parts) {
                    match result {
                        Ok(JobOutput::SpsaDots(d)) => dots.extend(d),
                        Ok(other) => {
                            let kind = FailureKind::Protocol(format!("a part of an SPSA item gave {other:?}"));
                            let chain = chain.to_string();
                            let error = ItemError { chain, theta: theta.clone(), kind, stderr: String::new() };
                            failed.get_or_insert(error);
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => {
                        let estimate = spsa_combine(&theta, frames, scoring, epsilon, seed, &dots, &mut work);
                        Ok(JobOutput::Gradient(estimate))
                    }
                }
            }
        })
        .collect()
}
