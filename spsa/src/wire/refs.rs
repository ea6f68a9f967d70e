//! References to audio that lies outside the frame: in the pool's arena ([`SharedAudio`], jobs) or in a
//! worker's output buffers ([`OutputAudio`], results); see [`crate::arena`].

use std::sync::Arc;

use afx_host::Audio;

/// The layout of audio outside the frame: `channels` planar runs of `frames` f32 at `sample_rate`. On the wire:
/// the rate (u32), channels (u16) and frames (u32), little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Planar {
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u32,
}

impl Planar {
    /// `audio`'s layout; `None` when it has more channels or frames than the protocol can describe.
    pub fn of(audio: &Audio) -> Option<Planar> {
        let channels = u16::try_from(audio.num_channels()).ok()?;
        let frames = u32::try_from(audio.frames()).ok()?;
        Some(Planar { sample_rate: audio.sample_rate(), channels, frames })
    }

    /// Bytes of samples.
    pub fn len(&self) -> usize {
        self.channels as usize * self.frames as usize * 4
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a job's audio lies in the pool's shared arena: its samples from byte `offset`, written for batch
/// `batch` (an arena is rewritten between batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedAudio {
    pub batch: u64,
    pub offset: u64,
    pub planar: Planar,
}

/// Where a result's audio lies in its worker's output buffers: its samples from byte 0 of buffer `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputAudio {
    pub buffer: u8,
    pub planar: Planar,
}

/// No audio is in an arena: every job's audio goes in its frame.
pub fn inline(_: &Arc<Audio>) -> Option<SharedAudio> {
    None
}

/// Where in the pool's arena a job's audio lies, if it does (else it goes in the frame).
pub type Placement<'a> = &'a dyn Fn(&Arc<Audio>) -> Option<SharedAudio>;
