//! Memory files and their mappings, the ground both arenas stand on: a memory file made close-on-exec and
//! passed to a worker process on purpose ([`inherit`]), its size, and a [`Mapping`] of it, shared read-write
//! by the side that writes it and read-only by the side that reads it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use afx_host::Audio;

use crate::wire::WireError;

/// A shared read-write (parent) or read-only (worker) mapping of the whole file.
pub(super) struct Mapping {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

// SAFETY: the mapping is plain memory owned by its `Arena`/`ArenaView`, which are used from one thread at a
// time (`&mut self` for every access); nothing in it is tied to the thread that made it.
unsafe impl Send for Mapping {}

impl Mapping {
    pub(super) const EMPTY: Mapping = Mapping { ptr: std::ptr::null_mut(), len: 0 };

    pub(super) fn map(fd: RawFd, len: usize, writable: bool) -> std::io::Result<Mapping> {
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
    pub(super) fn reach(&mut self, fd: &OwnedFd, end: usize) -> std::io::Result<bool> {
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
    pub(super) fn grow(&mut self, fd: &OwnedFd, len: usize) -> std::io::Result<()> {
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
    pub(super) fn read_audio(
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
pub(super) unsafe fn write_planar(to: *mut u8, audio: &Audio) {
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

/// A new memory file, close-on-exec: worker processes get it through `inherit` alone.
pub(super) fn memory_file(name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
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
pub(super) fn file_size(fd: &OwnedFd) -> std::io::Result<usize> {
    // SAFETY: `stat` is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only fills in `stat` about a descriptor we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(stat.st_size).unwrap_or(0))
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
