//! Elsewhere than Linux: no arena and no output buffers; audio travels in the frames.

use std::sync::Arc;

use afx_host::Audio;

use crate::job::Job;
use crate::wire::{OutputAudio, SharedAudio, WireError};

use super::{OUTPUT_BUFFERS, Placements};

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
