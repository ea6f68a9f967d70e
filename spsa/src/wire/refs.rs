//! References to audio that lies outside the frame: in the pool's arena ([`SharedAudio`], jobs) or in a
//! worker's output buffers ([`OutputAudio`], results); see [`crate::arena`].

use std::sync::Arc;

use afx_host::Audio;

/// Where a job's audio lies in the pool's shared arena: `channels` planar runs of `frames` f32 from byte
/// `offset`, written for batch `batch` (an arena is rewritten between batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedAudio {
    pub batch: u64,
    pub offset: u64,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u32,
}

impl SharedAudio {
    /// Bytes of samples from `offset`.
    pub fn len(&self) -> usize {
        planar_bytes(self.channels, self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bytes of `channels` planar runs of `frames` f32.
fn planar_bytes(channels: u16, frames: u32) -> usize {
    channels as usize * frames as usize * 4
}

/// Where a result's audio lies in its worker's output buffers: `channels` planar runs of `frames` f32 from
/// byte 0 of buffer `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputAudio {
    pub buffer: u8,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u32,
}

impl OutputAudio {
    /// Bytes of samples.
    pub fn len(&self) -> usize {
        planar_bytes(self.channels, self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// No audio is in an arena: every job's audio goes in its frame.
pub fn inline(_: &Arc<Audio>) -> Option<SharedAudio> {
    None
}

/// Where in the pool's arena a job's audio lies, if it does (else it goes in the frame).
pub type Placement<'a> = &'a dyn Fn(&Arc<Audio>) -> Option<SharedAudio>;
