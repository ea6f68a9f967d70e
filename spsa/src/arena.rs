//! The pool's shared arena: one memory file (Linux memfd) per pool that every worker process inherits, so a
//! batch's audio crosses to the workers once, whatever the number of jobs that use it.
//!
//! Before a batch the pool writes each distinct input (by [`Arc`] pointer) once, planar f32 at 64-byte aligned
//! offsets, growing the file with `ftruncate` when the batch needs more; jobs then go through the pipe as
//! [`SharedAudio`] references of a few bytes. Batches are sequential ([`Pool::run`](crate::Pool::run) returns
//! once every result is in), so the next batch may overwrite what the last one wrote; within a batch nothing
//! changes, so a job retried on a replacement worker (which inherits the same file) reads the same samples.
//! A worker maps the file read-only, remaps it when a reference reaches past its mapping (the file grew), and
//! copies each audio it is handed into a buffer of its own, kept for the next jobs of the same batch.
//!
//! The file only grows (to the largest batch so far, at most 512 MiB of audio per batch; audio beyond that goes
//! in the frames). Elsewhere than Linux there is no arena and audio travels in the frames.

use std::collections::HashMap;
use std::sync::Arc;

use afx_host::Audio;

use crate::job::Job;
use crate::wire::{SharedAudio, WireError};

/// The environment variable that gives a worker process the arena's file descriptor.
pub const ENV: &str = "AFX_POOL_ARENA_FD";

/// Where each distinct audio of the current batch lies, by `Arc` pointer; holds the audio so that no pointer
/// is reused while the batch runs.
#[derive(Default)]
pub(crate) struct Placements {
    places: HashMap<usize, SharedAudio>,
    _held: Vec<Arc<Audio>>,
}

impl Placements {
    pub(crate) fn get(&self, audio: &Arc<Audio>) -> Option<SharedAudio> {
        self.places.get(&(Arc::as_ptr(audio) as usize)).copied()
    }
}

/// The audio a job reads.
fn audio_of(job: &Job) -> [Option<&Arc<Audio>>; 2] {
    match job {
        Job::Render { input, .. } => [Some(input), None],
        Job::RenderValues { input, sidechain, .. } => [Some(input), sidechain.as_ref()],
        Job::Spsa { input, grad, .. }
        | Job::SpsaPart { input, grad, .. }
        | Job::FiniteDifference { input, grad, .. } => [Some(input), Some(grad)],
        Job::Task { .. } => [None, None],
    }
}

const ALIGN: usize = 64;

/// The most a batch puts in the arena (512 MiB); the rest of its audio goes in the frames. The parent holds
/// the batch's audio anyway: this bounds the second copy.
const MAX_BYTES: usize = 1 << 29;

#[cfg(target_os = "linux")]
pub(crate) use linux::{Arena, ArenaView, inherit};

#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::{Arena, ArenaView, inherit};

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use super::*;

    /// A shared read-write (parent) or read-only (worker) mapping of the whole file.
    struct Mapping {
        ptr: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain memory owned by its `Arena`/`ArenaView`, which are used from one thread at a
    // time (`&mut self` for every access); nothing in it is tied to the thread that made it.
    unsafe impl Send for Mapping {}

    impl Mapping {
        const EMPTY: Mapping = Mapping { ptr: std::ptr::null_mut(), len: 0 };

        fn map(fd: RawFd, len: usize, writable: bool) -> std::io::Result<Mapping> {
            if len == 0 {
                return Ok(Mapping::EMPTY);
            }
            let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
            // SAFETY: a fresh shared mapping of `len` bytes of a file we hold open, at an address the kernel
            // picks: it aliases no Rust object. The file is at least `len` bytes long (the caller checked or
            // made it so) and is never shrunk, so every byte of the mapping stays backed.
            let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Mapping { ptr: ptr.cast(), len })
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            if self.len > 0 {
                // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once (here); no slice into the
                // mapping outlives the `&mut self` borrow that made it.
                unsafe { libc::munmap(self.ptr.cast(), self.len) };
            }
        }
    }

    /// The pool's side: the file, mapped read-write, and the batch counter.
    pub(crate) struct Arena {
        fd: OwnedFd,
        map: Mapping,
        batch: u64,
    }

    impl Arena {
        pub(crate) fn new() -> std::io::Result<Arena> {
            // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor that
            // nothing else owns (or -1). Close-on-exec: worker processes get it through `inherit` alone.
            let fd = unsafe { libc::memfd_create(c"afx-pool-arena".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` was just created and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok(Arena { fd, map: Mapping::EMPTY, batch: 0 })
        }

        /// The descriptor number a worker process finds in [`ENV`].
        pub(crate) fn fd(&self) -> RawFd {
            self.fd.as_raw_fd()
        }

        /// Writes every distinct audio of `jobs` once (the previous batch's contents are overwritten) and says
        /// where each lies.
        pub(crate) fn write_batch(&mut self, jobs: &[Job]) -> std::io::Result<Placements> {
            self.batch += 1;
            let mut placements = Placements::default();
            let mut end = 0usize;
            let mut order = vec![];
            for audio in jobs.iter().flat_map(audio_of).flatten() {
                let key = Arc::as_ptr(audio) as usize;
                if placements.places.contains_key(&key) {
                    continue;
                }
                let (Ok(channels), Ok(frames)) = (u16::try_from(audio.num_channels()), u32::try_from(audio.frames()))
                else {
                    // Too large to describe: it goes inline, where encoding reports it.
                    continue;
                };
                let at = SharedAudio {
                    batch: self.batch,
                    offset: end as u64,
                    sample_rate: audio.sample_rate(),
                    channels,
                    frames,
                };
                if end + at.len() > MAX_BYTES {
                    continue;
                }
                end = (end + at.len()).next_multiple_of(ALIGN);
                placements.places.insert(key, at);
                order.push((audio.clone(), at));
            }
            self.reserve(end)?;
            for (audio, at) in &order {
                let mut offset = at.offset as usize;
                for channel in audio.channels() {
                    let bytes: &[u8] = bytemuck::cast_slice(channel);
                    // SAFETY: `offset + bytes.len() <= end <= self.map.len` (reserved above), the mapping is
                    // writable, and no worker reads it while the parent writes: batches are sequential.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.ptr.add(offset), bytes.len());
                    }
                    offset += bytes.len();
                }
            }
            placements._held = order.into_iter().map(|(audio, _)| audio).collect();
            Ok(placements)
        }

        /// Grows the file and the mapping to at least `len` bytes.
        fn reserve(&mut self, len: usize) -> std::io::Result<()> {
            if len <= self.map.len {
                return Ok(());
            }
            let len = len.max(self.map.len * 2).next_multiple_of(1 << 16);
            let size = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
            // SAFETY: ftruncate on a memfd we own only sets its size; it only ever grows here, so existing
            // mappings (ours and the workers') stay backed.
            if unsafe { libc::ftruncate(self.fd.as_raw_fd(), size) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.map = Mapping::EMPTY;
            self.map = Mapping::map(self.fd.as_raw_fd(), len, true)?;
            Ok(())
        }
    }

    /// Makes `fd` survive `exec` in a child: call between fork and exec (async-signal-safe).
    pub(crate) fn inherit(fd: RawFd) -> std::io::Result<()> {
        // SAFETY: fcntl(F_SETFD) only changes the descriptor's flags; it is async-signal-safe, as code between
        // fork and exec must be.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
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
            let end = (at.offset as usize).checked_add(at.len()).ok_or_else(|| bad(at))?;
            if end > self.map.len {
                // SAFETY: `stat` is plain old data, for which all zeroes is a valid value.
                let mut stat: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: fstat only fills in `stat` about a descriptor we own.
                if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut stat) } < 0 {
                    return Err(WireError::Io(std::io::Error::last_os_error()));
                }
                let size = usize::try_from(stat.st_size).unwrap_or(0);
                if end > size {
                    return Err(bad(at));
                }
                self.map = Mapping::EMPTY;
                self.map = Mapping::map(self.fd.as_raw_fd(), size, false)?;
            }
            let frames = at.frames as usize;
            let planar = (0..at.channels as usize)
                .map(|c| {
                    let mut samples = vec![0.0f32; frames];
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut samples);
                    // SAFETY: `at.offset + at.len() <= self.map.len` (checked above), so each channel's run lies
                    // inside the mapping; the pool does not write the arena while a batch runs.
                    unsafe {
                        let from = self.map.ptr.add(at.offset as usize + c * frames * 4);
                        std::ptr::copy_nonoverlapping(from, bytes.as_mut_ptr(), bytes.len());
                    }
                    samples
                })
                .collect();
            let audio = Arc::new(Audio::new(at.sample_rate, planar).map_err(|e| WireError::Malformed(e.to_string()))?);
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
}

#[cfg(not(target_os = "linux"))]
mod fallback {
    use super::*;

    pub(crate) struct Arena;

    impl Arena {
        pub(crate) fn new() -> std::io::Result<Arena> {
            Err(std::io::Error::other("no shared arena on this platform"))
        }

        pub(crate) fn fd(&self) -> i32 {
            -1
        }

        pub(crate) fn write_batch(&mut self, _: &[Job]) -> std::io::Result<Placements> {
            Ok(Placements::default())
        }
    }

    pub(crate) fn inherit(_: i32) -> std::io::Result<()> {
        Ok(())
    }

    pub(crate) struct ArenaView;

    impl ArenaView {
        pub(crate) fn from_env() -> Option<ArenaView> {
            None
        }

        pub(crate) fn resolve(&mut self, at: SharedAudio) -> Result<Arc<Audio>, WireError> {
            Err(WireError::Malformed(format!("shared audio {at:?} on a platform without an arena")))
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_once_per_distinct_audio_and_read_back_through_the_file() {
        let mut arena = Arena::new().unwrap();
        let a = Arc::new(Audio::new(48_000, vec![vec![0.25; 300], vec![-1.0; 300]]).unwrap());
        let b = Arc::new(Audio::new(44_100, vec![(0..5000).map(|i| i as f32).collect()]).unwrap());
        let jobs = vec![
            Job::Spsa { input: a.clone(), theta: vec![], grad: b.clone(), epsilon: 0.1, perturbations: 1, seed: 0 },
            Job::Render { input: a.clone(), theta: vec![] },
            Job::Render { input: Arc::new((*a).clone()), theta: vec![] },
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
        let placements = arena.write_batch(&[Job::Render { input: big.clone(), theta: vec![] }]).unwrap();
        assert_eq!(&*view.resolve(placements.get(&big).unwrap()).unwrap(), &*big);
        let outside = SharedAudio { batch: 9, offset: 1 << 40, sample_rate: 8000, channels: 1, frames: 1 };
        assert!(view.resolve(outside).is_err());
    }
}
