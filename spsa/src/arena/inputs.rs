//! The inputs' arena: the pool writes each distinct audio of a batch once ([`Arena`]), a worker copies out
//! the audio its jobs reference ([`ArenaView`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use afx_host::Audio;

use crate::job::Job;
use crate::wire::{Planar, SharedAudio, WireError};

use super::mapping::{Mapping, memory_file, write_planar};
use super::{ALIGN, ENV, MAX_BYTES, Placements};

/// The pool's side: the file, mapped read-write, the batch counter, and the last batch's places (holding
/// its audio until the next batch, so that no pointer of it is reused meanwhile).
pub(crate) struct Arena {
    fd: OwnedFd,
    map: Mapping,
    batch: u64,
    last: Placements,
}

/// The bytes `at` takes, up to the next aligned offset.
fn span_of(at: &SharedAudio) -> usize {
    at.planar.len().next_multiple_of(ALIGN)
}

impl Arena {
    pub(crate) fn new() -> std::io::Result<Arena> {
        Ok(Arena { fd: memory_file(c"afx-pool-arena")?, map: Mapping::EMPTY, batch: 0, last: Placements::default() })
    }

    /// The descriptor number a worker process finds in [`ENV`].
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Writes every distinct audio of `jobs` once and says where each lies. Audio the last batch had (the
    /// same `Arc`: a backward pass over the forward pass's input) stays where it is, not written again,
    /// unless keeping it would take more than twice the space of a fresh layout; the rest of the last
    /// batch's contents are overwritten.
    pub(crate) fn write_batch(&mut self, jobs: &[Job]) -> std::io::Result<Placements> {
        self.batch += 1;
        let last = std::mem::take(&mut self.last);
        let mut distinct: Vec<&Arc<Audio>> = vec![];
        let mut seen = std::collections::HashSet::new();
        for audio in jobs.iter().flat_map(Job::audio).flatten() {
            if seen.insert(Arc::as_ptr(audio) as usize) {
                distinct.push(audio);
            }
        }
        let (kept, new): (Vec<&Arc<Audio>>, Vec<&Arc<Audio>>) =
            distinct.iter().partition(|audio| last.get(audio).is_some());
        let span = |audio: &Arc<Audio>| (audio.num_channels() * audio.frames() * 4).next_multiple_of(ALIGN);
        let fresh: usize = distinct.iter().map(|audio| span(audio)).sum();
        let kept_end = kept.iter().filter_map(|audio| last.get(audio)).map(|at| at.offset as usize + span_of(&at));
        let kept_end = kept_end.max().unwrap_or(0);
        let new_bytes: usize = new.iter().map(|audio| span(audio)).sum();
        let keep = !kept.is_empty() && kept_end + new_bytes <= 2 * fresh;

        let mut placements = Placements::default();
        let mut end = 0usize;
        let mut order = vec![];
        let mut held = vec![];
        if keep {
            for audio in &kept {
                let at = SharedAudio { batch: self.batch, ..last.get(audio).expect("kept audio has a place") };
                placements.places.insert(Arc::as_ptr(audio) as usize, at);
                held.push(Arc::clone(audio));
            }
            end = kept_end;
        }
        let to_write = if keep { new } else { distinct };
        for audio in to_write {
            let Some(planar) = Planar::of(audio) else {
                // Too large to describe: it goes inline, where encoding reports it.
                continue;
            };
            let at = SharedAudio { batch: self.batch, offset: end as u64, planar };
            if end + at.planar.len() > MAX_BYTES {
                continue;
            }
            end = (end + at.planar.len()).next_multiple_of(ALIGN);
            placements.places.insert(Arc::as_ptr(audio) as usize, at);
            order.push((audio.clone(), at));
        }
        self.map.grow(&self.fd, end)?;
        // The workers wait for this copy: a large batch is copied on two threads, half the audio each.
        let base = self.map.ptr as usize;
        if end >= PARALLEL_BYTES && order.len() >= 2 {
            let (first, second) = order.split_at(order.len() / 2);
            std::thread::scope(|scope| {
                scope.spawn(|| copy_into(base, second));
                copy_into(base, first);
            });
        } else {
            copy_into(base, &order);
        }
        held.extend(order.into_iter().map(|(audio, _)| audio));
        placements._held = held;
        self.last = placements.clone();
        Ok(placements)
    }
}

/// Batches of at least this many bytes are written on two threads (a thread costs tens of microseconds,
/// a MiB about a hundred to copy).
const PARALLEL_BYTES: usize = 1 << 20;

/// Copies each audio to its place in the mapping that starts at address `base` (the parent's writable
/// mapping, reserved to hold every place).
fn copy_into(base: usize, order: &[(Arc<Audio>, SharedAudio)]) {
    for (audio, at) in order {
        // SAFETY: every place lies inside the mapping (`write_batch` reserved them all) and places do not
        // overlap, so two threads copying disjoint parts of `order` never write the same byte; the mapping is
        // writable and no worker reads it while the parent writes: batches are sequential.
        unsafe { write_planar((base as *mut u8).add(at.offset as usize), audio) };
    }
}

/// A worker's side: the inherited file, mapped read-only, and the audio it copied out this batch.
pub(crate) struct ArenaView {
    fd: OwnedFd,
    map: Mapping,
    cache: Vec<(SharedAudio, Arc<Audio>)>,
}

impl ArenaView {
    /// The arena named by [`ENV`], if this process was given one.
    pub(crate) fn from_env() -> Option<ArenaView> {
        let fd: RawFd = std::env::var(ENV).ok()?.parse().ok()?;
        // SAFETY: F_GETFD only checks that `fd` is an open descriptor; the pool passed it to this process
        // for this use alone, so taking ownership of it below closes it exactly once.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: see above: the descriptor is open and nothing else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(ArenaView::from_fd(fd))
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> ArenaView {
        ArenaView { fd, map: Mapping::EMPTY, cache: vec![] }
    }

    /// The audio at `at`, copied out of the arena (or the copy made for an earlier job of this batch).
    pub(crate) fn resolve(&mut self, at: SharedAudio) -> Result<Arc<Audio>, WireError> {
        if let Some((_, audio)) = self.cache.iter().find(|(a, _)| *a == at) {
            return Ok(audio.clone());
        }
        let end = (at.offset as usize).checked_add(at.planar.len()).ok_or_else(|| bad(at))?;
        if !self.map.reach(&self.fd, end)? {
            return Err(bad(at));
        }
        // The pool does not write the arena while a batch runs.
        let audio = self.map.read_audio(
            at.offset as usize,
            at.planar.sample_rate,
            at.planar.channels as usize,
            at.planar.frames as usize,
        );
        let audio = Arc::new(audio?);
        // A few recent buffers: the jobs of one SPSA item (its input and gradient), or items that share an
        // input, on this worker.
        self.cache.retain(|(a, _)| a.batch == at.batch);
        if self.cache.len() == CACHED {
            self.cache.remove(0);
        }
        self.cache.push((at, audio.clone()));
        Ok(audio)
    }
}

const CACHED: usize = 4;

fn bad(at: SharedAudio) -> WireError {
    WireError::Malformed(format!("shared audio {at:?} lies outside the arena"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_once_per_distinct_audio_and_read_back_through_the_file() {
        let mut arena = Arena::new().unwrap();
        let a = Arc::new(Audio::new(48_000, vec![vec![0.25; 300], vec![-1.0; 300]]).unwrap());
        let b = Arc::new(Audio::new(44_100, vec![(0..5000).map(|i| i as f32).collect()]).unwrap());
        let jobs = vec![
            Job::Spsa {
                hop: 0,
                scoring: crate::estimator::Scoring::Whole,
                input: a.clone(),
                theta: vec![],
                grad: b.clone(),
                epsilon: 0.1,
                perturbations: 1,
                seed: 0,
            },
            Job::Render { hop: 0, input: a.clone(), theta: vec![] },
            Job::Render { hop: 0, input: Arc::new((*a).clone()), theta: vec![] },
        ];
        let placements = arena.write_batch(&jobs).unwrap();
        assert_eq!(placements.places.len(), 3, "a, b and the copy of a");
        // A descriptor of the view's own, as a worker inherits one.
        // SAFETY: the arena keeps its descriptor open for the whole test.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(arena.fd()) }.try_clone_to_owned().unwrap();
        let mut view = ArenaView::from_fd(fd);
        for audio in [&a, &b] {
            let at = placements.get(audio).unwrap();
            assert_eq!(at.offset % ALIGN as u64, 0);
            assert_eq!(&*view.resolve(at).unwrap(), &**audio);
        }
        // The next batch grows the file: the view remaps.
        let big = Arc::new(Audio::new(8000, vec![vec![0.5; 200_000]]).unwrap());
        let placements = arena.write_batch(&[Job::Render { hop: 0, input: big.clone(), theta: vec![] }]).unwrap();
        assert_eq!(&*view.resolve(placements.get(&big).unwrap()).unwrap(), &*big);
        let outside =
            SharedAudio { batch: 9, offset: 1 << 40, planar: Planar { sample_rate: 8000, channels: 1, frames: 1 } };
        assert!(view.resolve(outside).is_err());
    }

    #[test]
    fn audio_shared_with_the_last_batch_keeps_its_place_within_twice_a_fresh_layout() {
        let mut arena = Arena::new().unwrap();
        // SAFETY: the arena keeps its descriptor open for the whole test.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(arena.fd()) }.try_clone_to_owned().unwrap();
        let mut view = ArenaView::from_fd(fd);
        let audio = |value: f32| Arc::new(Audio::new(44_100, vec![vec![value; 1000]]).unwrap());
        let render = |input: &Arc<Audio>| Job::Render { hop: 0, input: input.clone(), theta: vec![] };
        let (a, b, c, d) = (audio(1.0), audio(2.0), audio(3.0), audio(4.0));
        let span = 4000usize.next_multiple_of(ALIGN) as u64;

        let first = arena.write_batch(&[render(&a), render(&b)]).unwrap();
        assert_eq!((first.get(&a).unwrap().offset, first.get(&b).unwrap().offset), (0, span));
        // b stays where it is and c goes after it; a's place may be overwritten.
        let second = arena.write_batch(&[render(&b), render(&c)]).unwrap();
        assert_eq!((second.get(&b).unwrap().offset, second.get(&c).unwrap().offset), (span, 2 * span));
        for (audio, placements) in [(&b, &second), (&c, &second)] {
            let at = placements.get(audio).unwrap();
            assert_eq!(at.batch, 2, "a kept place is renamed into the new batch");
            assert_eq!(&*view.resolve(at).unwrap(), &**audio);
        }
        // Keeping c puts d at 3 spans: the batch ends at 4, twice a fresh layout's 2, which is allowed.
        let third = arena.write_batch(&[render(&c), render(&d)]).unwrap();
        assert_eq!((third.get(&c).unwrap().offset, third.get(&d).unwrap().offset), (2 * span, 3 * span));
        // Keeping d would end the batch at 5 spans: it is laid out afresh, d written again.
        let e = audio(5.0);
        let fourth = arena.write_batch(&[render(&d), render(&e)]).unwrap();
        assert_eq!((fourth.get(&d).unwrap().offset, fourth.get(&e).unwrap().offset), (0, span));
        for audio in [&d, &e] {
            assert_eq!(&*view.resolve(fourth.get(audio).unwrap()).unwrap(), &**audio);
        }
        // A copy of e (another Arc, equal samples) is not e: it is written anew.
        let copy = Arc::new((*e).clone());
        let fifth = arena.write_batch(&[render(&copy)]).unwrap();
        assert_eq!(fifth.get(&copy).unwrap().offset, 0);
    }
}
