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

//!
//! The parts: [`mapping`] (memory files and their mappings), [`inputs`] (the arena), [`outputs`] (the
//! output buffers), and a fallback elsewhere than Linux.

#[cfg(not(target_os = "linux"))]
mod fallback;
#[cfg(target_os = "linux")]
mod inputs;
#[cfg(target_os = "linux")]
mod mapping;
#[cfg(target_os = "linux")]
mod outputs;

use std::collections::HashMap;
use std::sync::Arc;

use afx_host::Audio;

use crate::wire::SharedAudio;

/// The environment variable that gives a worker process the arena's file descriptor.
pub const ENV: &str = "AFX_POOL_ARENA_FD";

/// The environment variable that gives a worker process its output buffers' file descriptors, comma-separated.
pub const OUTPUTS_ENV: &str = "AFX_POOL_OUTPUT_FDS";

/// Output buffers per worker process: as many as the jobs it may hold (the pool's `DEPTH`, kept at most this by
/// a compile-time check), so that a buffer is written again only after the pool has read what it held (see the
/// module docs).
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

const ALIGN: usize = 64;

/// The most a batch puts in the arena (512 MiB); the rest of its audio goes in the frames. The parent holds
/// the batch's audio anyway: this bounds the second copy.
const MAX_BYTES: usize = 1 << 29;

#[cfg(target_os = "linux")]
pub(crate) use inputs::{Arena, ArenaView};
#[cfg(target_os = "linux")]
pub(crate) use mapping::inherit;
#[cfg(target_os = "linux")]
pub(crate) use outputs::{OutputWriter, Outputs};

#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::{Arena, ArenaView, OutputWriter, Outputs, inherit};
