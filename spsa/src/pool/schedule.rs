//! Scheduling: each worker slot's loop, which keeps its worker fed from the batch's shared feed, waits for
//! each answer within the job's time limit, replaces a worker that dies and retries its job once.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use crate::arena::{OUTPUT_BUFFERS, Placements};
use crate::job::{FailureKind, ItemError, Job, JobOutput};

use super::PoolConfig;
use super::handle::Worker;

/// What every slot of a batch shares: where the batch's audio lies in the arena, and the arena's descriptor
/// for replacement workers.
pub(super) struct Batch {
    pub(super) placements: Arc<Placements>,
    pub(super) arena_fd: Option<RawFd>,
}

/// Where worker slots take jobs: first those at hand (a batch's, or handed back, not run), then new ones from
/// the caller's iterator.
pub(super) struct Feed {
    pub(super) returned: Mutex<VecDeque<(usize, Arc<Job>)>>,
    pub(super) incoming: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(usize, Arc<Job>)>>,
    /// The slots taking from this feed.
    pub(super) slots: usize,
}

impl Feed {
    /// The next job; with `wait` false, only one that is ready now. `None` once every job was taken.
    ///
    /// A slot asks without waiting for a second job to hold while it runs one: of the jobs at hand it gets one
    /// only while at least one per slot is left, so the last few go to slots that would otherwise sit idle (a
    /// batch of one item split in four parts runs two parts per worker, not three and one).
    async fn next(&self, wait: bool) -> Option<(usize, Arc<Job>)> {
        {
            let mut returned = self.returned.lock().expect("feed lock");
            if wait || returned.len() >= self.slots {
                if let Some(job) = returned.pop_front() {
                    return Some(job);
                }
            } else if !returned.is_empty() {
                return None;
            }
        }
        if wait { self.incoming.lock().await.recv().await } else { self.incoming.try_lock().ok()?.try_recv().ok() }
    }

    /// Puts a job that was not run back, to be taken first.
    fn hand_back(&self, job: (usize, Arc<Job>)) {
        self.returned.lock().expect("feed lock").push_front(job);
    }
}

type Results = tokio::sync::mpsc::UnboundedSender<(usize, Result<JobOutput, ItemError>)>;

/// Jobs a worker holds at once: the next job waits at the worker while it runs the current one, so the
/// transfer and the wake-up of one hide behind the work of the other.
const DEPTH: usize = 2;
// Checked when compiling, so that neither number changes alone: a worker writes its outputs into its buffers
// in turn, and the pool reads an output only when its result's frame arrives. A worker holding more jobs than
// it has buffers could overwrite an output the pool has not read yet (see `crate::arena`).
const _: () = assert!(DEPTH <= OUTPUT_BUFFERS);

/// One worker slot's loop: keep its worker fed (up to [`DEPTH`] jobs) until the feed runs dry; replace the
/// worker when it dies.
///
/// When a worker dies, the oldest job in flight is the one it was running: that job is retried once, first
/// thing on the fresh worker, then reported. Jobs sent after it never started: they go back to the feed as
/// they were.
pub(super) async fn serve_slot(
    mut worker: Option<Worker>,
    config: &PoolConfig,
    batch: &Batch,
    feed: &Feed,
    results: &Results,
) -> Option<Worker> {
    let store = |index: usize, result: Result<JobOutput, ItemError>| {
        // The receiver lives until every slot has ended.
        let _ = results.send((index, result));
    };
    // (index, job, attempt) sent to the worker, oldest first; and this slot's retry, which goes before the feed.
    let mut in_flight: VecDeque<(usize, Arc<Job>, u32)> = VecDeque::new();
    let mut retry: Option<(usize, Arc<Job>)> = None;
    loop {
        while in_flight.len() < DEPTH {
            let next = match retry.take() {
                Some((index, job)) => Some((index, job, 1)),
                // With a job in flight, only take one that is ready: its answer must not wait for the next.
                None => feed.next(in_flight.is_empty()).await.map(|(index, job)| (index, job, 0)),
            };
            let Some((index, job, attempt)) = next else { break };
            let current = match worker.as_mut() {
                Some(w) => w,
                None => match Worker::start(config, batch.arena_fd).await {
                    Ok(w) => worker.insert(w),
                    Err(e) => {
                        store(index, Err(item_error(config, &job, FailureKind::Plugin(e.to_string()), "")));
                        continue;
                    }
                },
            };
            match current.send(&job, index as u64, config.job_timeout, &batch.placements).await {
                Ok(Ok(())) => in_flight.push_back((index, job, attempt)),
                // The job cannot be sent (too large for a frame): it fails alone, the worker carries on.
                Ok(Err(kind)) => store(index, Err(item_error(config, &job, kind, ""))),
                Err(_) if !in_flight.is_empty() => {
                    // The worker died on an earlier job: receiving that one reports how.
                    hand_back(feed, (index, job), attempt, &mut retry);
                    break;
                }
                Err((kind, stderr)) => {
                    worker = None;
                    if kind.is_retryable() && attempt == 0 {
                        retry = Some((index, job));
                    } else {
                        store(index, Err(item_error(config, &job, kind, &stderr)));
                    }
                }
            }
        }
        let Some((index, job, attempt)) = in_flight.pop_front() else { return worker };
        let current = worker.as_mut().expect("jobs in flight have a worker");
        match current.receive(index as u64, config.job_timeout * job.time_limits()).await {
            Ok(result) => store(index, result.map_err(|kind| item_error(config, &job, kind, ""))),
            Err((kind, stderr)) => {
                tracing::warn!(chain = %config.spec.chain, item = index, attempt, "{kind}");
                worker = None;
                for (later, later_job, later_attempt) in in_flight.drain(..).rev() {
                    hand_back(feed, (later, later_job), later_attempt, &mut None);
                }
                if kind.is_retryable() && attempt == 0 {
                    retry = Some((index, job));
                } else {
                    store(index, Err(item_error(config, &job, kind, &stderr)));
                }
            }
        }
    }
}

/// Puts a job that was not run back: as this slot's retry if it is one, else at the front of the feed.
fn hand_back(feed: &Feed, job: (usize, Arc<Job>), attempt: u32, retry: &mut Option<(usize, Arc<Job>)>) {
    if attempt > 0 {
        *retry = Some(job);
    } else {
        feed.hand_back(job);
    }
}

fn item_error(config: &PoolConfig, job: &Job, kind: FailureKind, stderr: &str) -> ItemError {
    ItemError { chain: config.spec.chain.clone(), theta: job.theta().to_vec(), kind, stderr: stderr.to_string() }
}
