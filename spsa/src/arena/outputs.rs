//! Each worker process's output buffers: the worker writes each rendered audio into the next of them in turn
//! ([`OutputWriter`]), the pool copies it out when the result's frame arrives ([`Outputs`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use afx_host::Audio;

use crate::wire::{OutputAudio, Planar, WireError};

use super::mapping::{Mapping, memory_file, write_planar};
use super::{MAX_OUTPUT_BYTES, OUTPUT_BUFFERS, OUTPUTS_ENV};

/// The pool's side of one worker process's output buffers: the files, mapped read-only.
pub(crate) struct Outputs {
    files: [OwnedFd; OUTPUT_BUFFERS],
    maps: [Mapping; OUTPUT_BUFFERS],
}

impl Outputs {
    /// New, empty buffers for a worker process about to start.
    pub(crate) fn new() -> std::io::Result<Outputs> {
        let files: Vec<OwnedFd> =
            (0..OUTPUT_BUFFERS).map(|_| memory_file(c"afx-worker-output")).collect::<Result<_, _>>()?;
        let files = files.try_into().unwrap_or_else(|_| unreachable!("OUTPUT_BUFFERS files were made"));
        Ok(Outputs { files, maps: [const { Mapping::EMPTY }; OUTPUT_BUFFERS] })
    }

    /// The descriptors the worker inherits, in buffer order.
    pub(crate) fn fds(&self) -> [RawFd; OUTPUT_BUFFERS] {
        self.files.each_ref().map(|file| file.as_raw_fd())
    }

    /// The audio at `at`, copied out of its buffer (remapped first if the worker grew it).
    pub(crate) fn read(&mut self, at: OutputAudio) -> Result<Audio, WireError> {
        let bad = || WireError::Malformed(format!("output audio {at:?} lies outside the worker's buffers"));
        let b = usize::from(at.buffer);
        let (Some(file), Some(map)) = (self.files.get(b), self.maps.get_mut(b)) else { return Err(bad()) };
        if !map.reach(file, at.planar.len())? {
            return Err(bad());
        }
        // The worker does not write this buffer again before the pool has read it (see the module docs).
        map.read_audio(0, at.planar.sample_rate, at.planar.channels as usize, at.planar.frames as usize)
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
        let at = OutputAudio { buffer: u8::try_from(self.next).ok()?, planar: Planar::of(audio)? };
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

#[cfg(test)]
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
        let outside = OutputAudio { buffer: 1, planar: Planar { sample_rate: 8000, channels: 1, frames: 1 << 20 } };
        assert!(outputs.read(outside).is_err(), "past the end of what the worker wrote");
        assert!(outputs.read(OutputAudio { buffer: 2, ..outside }).is_err(), "no third buffer");
    }
}
