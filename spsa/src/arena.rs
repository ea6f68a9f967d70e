//! The pool's shared arena: one memory file (Linux memfd) per pool that every worker process inherits, so a
//! batch's audio crosses to the workers once, whatever the number of jobs that use it.
//!
//! Before a batch the pool writes each distinct input (by [`Arc`] pointer) once, planar f32 at 64-byte aligned
//! offsets, growing the file with `ftruncate` when the batch needs more; jobs then go through the pipe as
//! [`SharedAudio`] references of a few bytes. Batches are sequential ([`Pool::run`](crate::Pool::run) returns
//! once every result is in), so the next batch may overwrite what the last one wrote; within a batch nothing
//! changes, so a job retried on a replacement worker (which inherits the same file) reads the same samples.
//! Audio that the next batch shares with the last (the same `Arc`: the input of a forward pass, then of its
//! backward pass) is not written again: it keeps its place, the new audio goes beside it.
//! A worker maps the file read-only, remaps it when a reference reaches past its mapping (the file grew), and
//! copies each audio it is handed into a buffer of its own, kept for the next jobs of the same batch.
//!
//! The file only grows (to the largest batch so far, at most 512 MiB of audio per batch; audio beyond that goes
//! in the frames). Elsewhere than Linux there is no arena and audio travels in the frames.
//!
//! The way back has its own memory: each worker process gets [`OUTPUT_BUFFERS`] output files of its own
//! ([`Outputs`] in the pool, [`OutputWriter`] in the worker), and writes each rendered audio into the next of
//! them in turn; the result frame then says which. A pipe would copy the samples twice more and allocate pages
//! for them on every result. The pool copies an output out as soon as its frame arrives, and a worker holds at
//! most as many jobs as it has buffers (the pool's `DEPTH`): by the time it writes a buffer again, the pool has read it.
//! A buffer grows to the largest output written to it (at most 64 MiB; larger audio goes in the frame).

use std::collections::HashMap;
use std::sync::Arc;

use afx_host::Audio;

use crate::job::Job;
use crate::wire::{OutputAudio, SharedAudio, WireError};

/// The environment variable that gives a worker process the arena's file descriptor.
pub const ENV: &str = "AFX_POOL_ARENA_FD";

/// The environment variable that gives a worker process its output buffers' file descriptors, comma-separated.
pub const OUTPUTS_ENV: &str = "AFX_POOL_OUTPUT_FDS";

/// Output buffers per worker process: as many as the jobs it may hold, so that a buffer is written again only
/// after the pool has read what it held (see the module docs).
pub const OUTPUT_BUFFERS: usize = 2;

/// The largest output that goes through a buffer (64 MiB: 6 minutes of stereo at 48 kHz); larger ones go in the
/// frame, so that a worker never holds more than twice this in buffers.
const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// Where each distinct audio of the current batch lies, by `Arc` pointer; holds the audio so that no pointer
/// is reused while the batch runs.
#[derive(Default, Clone)]
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
pub(crate) use linux::{Arena, ArenaView, OutputWriter, Outputs, inherit};

#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::{Arena, ArenaView, OutputWriter, Outputs, inherit};

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

        /// Makes this read-only mapping of `fd` reach byte `end`, remapping the whole file if the writer grew
        /// it; false when the file itself is shorter.
        fn reach(&mut self, fd: &OwnedFd, end: usize) -> std::io::Result<bool> {
            if end <= self.len {
                return Ok(true);
            }
            let size = file_size(fd)?;
            if end > size {
                return Ok(false);
            }
            *self = Mapping::EMPTY;
            *self = Mapping::map(fd.as_raw_fd(), size, false)?;
            Ok(true)
        }

        /// Makes this writable mapping of `fd` (a file only its writer resizes) hold at least `len` bytes: the
        /// file grows to at least twice its size, in 64 KiB steps, and is mapped again whole.
        fn grow(&mut self, fd: &OwnedFd, len: usize) -> std::io::Result<()> {
            if len <= self.len {
                return Ok(());
            }
            let len = len.max(self.len * 2).next_multiple_of(1 << 16);
            let size = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
            // SAFETY: ftruncate on a memory file we own only sets its size; it only ever grows here, so every
            // other mapping of it (the workers' or the pool's) stays backed.
            if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            *self = Mapping::EMPTY;
            *self = Mapping::map(fd.as_raw_fd(), len, true)?;
            Ok(())
        }

        /// `channels` planar runs of `frames` f32 from byte `offset`, copied out as audio (into buffers that are
        /// not zeroed first: the copy writes every sample). The range must lie inside the mapping (checked), and
        /// nobody may write it meanwhile (the protocol's part: see the module docs).
        fn read_audio(
            &self,
            offset: usize,
            sample_rate: u32,
            channels: usize,
            frames: usize,
        ) -> Result<Audio, WireError> {
            assert!(offset + channels * frames * 4 <= self.len, "audio read past the end of its mapping");
            let planar = (0..channels)
                .map(|c| {
                    let mut samples = Vec::with_capacity(frames);
                    // SAFETY: channel `c`'s run lies inside the mapping (asserted above) and nothing writes it
                    // meanwhile; `samples` has room for `frames` floats, all written by the copy before `set_len`.
                    unsafe {
                        let from = self.ptr.add(offset + c * frames * 4).cast::<f32>();
                        std::ptr::copy_nonoverlapping(from, samples.as_mut_ptr(), frames);
                        samples.set_len(frames);
                    }
                    samples
                })
                .collect();
            Audio::new(sample_rate, planar).map_err(|e| WireError::Malformed(e.to_string()))
        }
    }

    /// Copies `audio`'s channels, planar, to the bytes from `to`.
    ///
    /// # Safety
    /// `to` must be valid for writes of `audio`'s channels × frames × 4 bytes that nothing else reads or writes
    /// meanwhile.
    unsafe fn write_planar(to: *mut u8, audio: &Audio) {
        let mut offset = 0;
        for channel in audio.channels() {
            let bytes: &[u8] = bytemuck::cast_slice(channel);
            // SAFETY: inside the range the caller vouches for, the channels being laid out one after the other.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to.add(offset), bytes.len()) };
            offset += bytes.len();
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
        at.len().next_multiple_of(ALIGN)
    }

    impl Arena {
        pub(crate) fn new() -> std::io::Result<Arena> {
            Ok(Arena {
                fd: memory_file(c"afx-pool-arena")?,
                map: Mapping::EMPTY,
                batch: 0,
                last: Placements::default(),
            })
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
            for audio in jobs.iter().flat_map(audio_of).flatten() {
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

    /// A new memory file, close-on-exec: worker processes get it through `inherit` alone.
    fn memory_file(name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor that nothing
        // else owns (or -1).
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The size of the file behind `fd`.
    fn file_size(fd: &OwnedFd) -> std::io::Result<usize> {
        // SAFETY: `stat` is plain old data, for which all zeroes is a valid value.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat only fills in `stat` about a descriptor we own.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(usize::try_from(stat.st_size).unwrap_or(0))
    }

    /// The pool's side of one worker process's output buffers: the files, mapped read-only.
    pub(crate) struct Outputs {
        files: [OwnedFd; OUTPUT_BUFFERS],
        maps: [Mapping; OUTPUT_BUFFERS],
    }

    impl Outputs {
        /// New, empty buffers for a worker process about to start.
        pub(crate) fn new() -> std::io::Result<Outputs> {
            let files = [memory_file(c"afx-worker-output")?, memory_file(c"afx-worker-output")?];
            Ok(Outputs { files, maps: [Mapping::EMPTY, Mapping::EMPTY] })
        }

        /// The descriptors the worker inherits, in buffer order.
        pub(crate) fn fds(&self) -> [RawFd; OUTPUT_BUFFERS] {
            [self.files[0].as_raw_fd(), self.files[1].as_raw_fd()]
        }

        /// The audio at `at`, copied out of its buffer (remapped first if the worker grew it).
        pub(crate) fn read(&mut self, at: OutputAudio) -> Result<Audio, WireError> {
            let bad = || WireError::Malformed(format!("output audio {at:?} lies outside the worker's buffers"));
            let b = usize::from(at.buffer);
            let (Some(file), Some(map)) = (self.files.get(b), self.maps.get_mut(b)) else { return Err(bad()) };
            if !map.reach(file, at.len())? {
                return Err(bad());
            }
            // The worker does not write this buffer again before the pool has read it (see the module docs).
            map.read_audio(0, at.sample_rate, at.channels as usize, at.frames as usize)
        }
    }

    /// A worker's side of its output buffers: the files, mapped read-write, and the buffer written next.
    pub(crate) struct OutputWriter {
        files: Vec<OwnedFd>,
        maps: Vec<Mapping>,
        next: usize,
    }

    impl OutputWriter {
        /// The buffers named by [`OUTPUTS_ENV`], if this process was given them.
        pub(crate) fn from_env() -> Option<OutputWriter> {
            let fds: Vec<RawFd> =
                std::env::var(OUTPUTS_ENV).ok()?.split(',').map(|fd| fd.parse().ok()).collect::<Option<_>>()?;
            if fds.len() != OUTPUT_BUFFERS {
                return None;
            }
            let mut files = vec![];
            for fd in fds {
                // SAFETY: F_GETFD only checks that `fd` is an open descriptor.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                    return None;
                }
                // SAFETY: the pool passed this open descriptor to this process for this use alone, so taking
                // ownership of it closes it exactly once.
                files.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            Some(OutputWriter::from_fds(files))
        }

        pub(crate) fn from_fds(files: Vec<OwnedFd>) -> OutputWriter {
            let maps = files.iter().map(|_| Mapping::EMPTY).collect();
            OutputWriter { files, maps, next: 0 }
        }

        /// Writes `audio` into the next buffer and says where; `None` (the audio then goes in the frame) when it
        /// is larger than a buffer may be, or the buffer cannot grow.
        pub(crate) fn write(&mut self, audio: &Audio) -> Option<OutputAudio> {
            let len = audio.num_channels() * audio.frames() * 4;
            let at = OutputAudio {
                buffer: u8::try_from(self.next).ok()?,
                sample_rate: audio.sample_rate(),
                channels: u16::try_from(audio.num_channels()).ok()?,
                frames: u32::try_from(audio.frames()).ok()?,
            };
            if len > MAX_OUTPUT_BYTES {
                return None;
            }
            let map = &mut self.maps[self.next];
            map.grow(&self.files[self.next], len).ok()?;
            // SAFETY: `len <= map.len` (grown above) and the mapping is writable; the pool reads this buffer only
            // after this result's frame, which is written after this copy.
            unsafe { write_planar(map.ptr, audio) };
            self.next = (self.next + 1) % OUTPUT_BUFFERS;
            Some(at)
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
            if !self.map.reach(&self.fd, end)? {
                return Err(bad(at));
            }
            // The pool does not write the arena while a batch runs.
            let audio =
                self.map.read_audio(at.offset as usize, at.sample_rate, at.channels as usize, at.frames as usize);
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

    pub(crate) struct Outputs;

    impl Outputs {
        pub(crate) fn new() -> std::io::Result<Outputs> {
            Err(std::io::Error::other("no output buffers on this platform"))
        }

        pub(crate) fn fds(&self) -> [i32; OUTPUT_BUFFERS] {
            [-1; OUTPUT_BUFFERS]
        }

        pub(crate) fn read(&mut self, at: OutputAudio) -> Result<Audio, WireError> {
            Err(WireError::Malformed(format!("output audio {at:?} on a platform without output buffers")))
        }
    }

    pub(crate) struct OutputWriter;

    impl OutputWriter {
        pub(crate) fn from_env() -> Option<OutputWriter> {
            None
        }

        pub(crate) fn write(&mut self, _: &Audio) -> Option<OutputAudio> {
            None
        }
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
    fn outputs_go_through_the_buffers_in_turn_and_come_back_bit_for_bit() {
        let mut outputs = Outputs::new().unwrap();
        // Descriptors of the writer's own, as a worker inherits them.
        let fds = outputs
            .fds()
            .iter()
            // SAFETY: `outputs` keeps its descriptors open for the whole test.
            .map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().unwrap())
            .collect();
        let mut writer = OutputWriter::from_fds(fds);
        let stereo = Audio::new(48_000, vec![vec![0.25; 300], [-1.0, f32::MIN_POSITIVE, -0.0].repeat(100)]).unwrap();
        let mono = Audio::new(44_100, vec![(0..5000).map(|i| i as f32).collect()]).unwrap();
        // Larger than the first: buffer 0 grows, and the pool's mapping of it with it.
        let long = Audio::new(8000, vec![vec![0.5; 200_000]]).unwrap();
        for (audio, buffer) in [(&stereo, 0), (&mono, 1), (&long, 0)] {
            let at = writer.write(audio).unwrap();
            assert_eq!(at.buffer, buffer);
            let back = outputs.read(at).unwrap();
            assert_eq!(back.sample_rate(), audio.sample_rate());
            for (b, a) in back.channels().iter().zip(audio.channels()) {
                assert_eq!(bytemuck::cast_slice::<f32, u32>(b), bytemuck::cast_slice::<f32, u32>(a));
            }
        }
        let outside = OutputAudio { buffer: 1, sample_rate: 8000, channels: 1, frames: 1 << 20 };
        assert!(outputs.read(outside).is_err(), "past the end of what the worker wrote");
        assert!(outputs.read(OutputAudio { buffer: 2, ..outside }).is_err(), "no third buffer");
    }

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

    #[test]
    fn audio_shared_with_the_last_batch_keeps_its_place_within_twice_a_fresh_layout() {
        let mut arena = Arena::new().unwrap();
        // SAFETY: the arena keeps its descriptor open for the whole test.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(arena.fd()) }.try_clone_to_owned().unwrap();
        let mut view = ArenaView::from_fd(fd);
        let audio = |value: f32| Arc::new(Audio::new(44_100, vec![vec![value; 1000]]).unwrap());
        let render = |input: &Arc<Audio>| Job::Render { input: input.clone(), theta: vec![] };
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
