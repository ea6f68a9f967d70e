//! The codec: messages to frames and back, and the protocol's primitives (numbers, strings, bytes, audio in
//! the frame or by reference).

use std::sync::Arc;

use afx_host::Audio;

use crate::job::{FailureKind, Job, JobOutput};

use super::frame::{finish, room};
use super::job::put_job as put_job_fields;
use super::refs::{OutputAudio, Placement, SharedAudio, inline};
use super::{Message, WireError};

const HELLO: u8 = 1;
const JOB: u8 = 2;
const RESULT: u8 = 3;
const OK_AUDIO: u8 = 1;
const OK_GRADIENT: u8 = 2;
const ERR: u8 = 3;
const OK_BYTES: u8 = 4;
const OK_DOTS: u8 = 5;
const KIND_NON_FINITE: u8 = 1;
const KIND_PLUGIN: u8 = 2;
const KIND_TOO_LARGE: u8 = 3;
const INLINE: u8 = 1;
const SHARED: u8 = 2;
const OUTPUT: u8 = 3;

/// Appends the frame for `message` to `out` (cleared first), ready to write in one call; jobs carry their audio
/// inline. Fails, leaving `out` unspecified, when the frame would exceed `MAX_FRAME`.
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    match message {
        Message::Hello { version, layout } => {
            out.push(HELLO);
            put_u32(out, *version);
            put_str(out, layout)?;
        }
        Message::Job { id, job } => {
            let bulk = put_job(out, *id, job, &inline)?;
            room(out, bulk.len())?;
            out.extend_from_slice(bulk);
        }
        Message::Result { id, result } => {
            let result = result.as_ref().map(|output| match output {
                JobOutput::Audio(a) => OutputRef::Audio(a),
                JobOutput::Gradient(g) => OutputRef::Gradient(g),
                JobOutput::Bytes(b) => OutputRef::Bytes(b),
                JobOutput::SpsaDots(d) => OutputRef::SpsaDots(d),
            });
            put_result(out, *id, result)?
        }
    }
    finish(out, 0)
}

/// A job's output, borrowed: what a worker encodes without copying its buffers first.
#[derive(Debug, Clone, Copy)]
pub enum OutputRef<'a> {
    Audio(&'a Audio),
    Gradient(&'a [f32]),
    Bytes(&'a [u8]),
    SpsaDots(&'a [f64]),
}

/// Like [`encode`] for `Message::Result`, from borrowed output.
pub fn encode_result(id: u64, result: Result<OutputRef<'_>, &FailureKind>, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    put_result(out, id, result)?;
    finish(out, 0)
}

/// Like [`encode`] for the result of a job whose audio the worker wrote to its output buffer `at.buffer`.
pub fn encode_output_result(id: u64, at: OutputAudio, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(RESULT);
    out.extend_from_slice(&id.to_le_bytes());
    out.push(OK_AUDIO);
    out.push(OUTPUT);
    out.push(at.buffer);
    put_u32(out, at.sample_rate);
    out.extend_from_slice(&at.channels.to_le_bytes());
    put_u32(out, at.frames);
    finish(out, 0).expect("a few dozen bytes fit in a frame");
}

fn put_result(out: &mut Vec<u8>, id: u64, result: Result<OutputRef<'_>, &FailureKind>) -> Result<(), WireError> {
    out.push(RESULT);
    out.extend_from_slice(&id.to_le_bytes());
    match result {
        Ok(OutputRef::Audio(a)) => {
            out.push(OK_AUDIO);
            put_inline_audio(out, a)?;
        }
        Ok(OutputRef::Gradient(g)) => {
            out.push(OK_GRADIENT);
            put_f32s(out, g)?;
        }
        Ok(OutputRef::Bytes(b)) => {
            out.push(OK_BYTES);
            put_bytes(out, b)?;
        }
        Ok(OutputRef::SpsaDots(d)) => {
            out.push(OK_DOTS);
            room(out, 4 + d.len() * 8)?;
            put_u32(out, d.len() as u32);
            out.extend_from_slice(bytemuck::cast_slice(d));
        }
        Err(kind) => {
            out.push(ERR);
            let (tag, message) = match kind {
                FailureKind::NonFinite(m) => (KIND_NON_FINITE, m.clone()),
                FailureKind::TooLarge(m) => (KIND_TOO_LARGE, m.clone()),
                other => (KIND_PLUGIN, other.to_string()),
            };
            out.push(tag);
            put_str(out, &message)?;
        }
    }
    Ok(())
}

/// Like [`encode`] for `Message::Job { id, job }`, without owning the job, in two parts: the frame is `out`
/// followed by the returned bytes. A task's request (megabytes for a collect shard) is the second part, written
/// after `out` where it lies instead of being copied into it first; for other jobs it is empty. Audio that
/// `shared` places in the arena goes as a SHARED reference, the rest inline.
pub fn encode_job<'j>(id: u64, job: &'j Job, out: &mut Vec<u8>, shared: Placement<'_>) -> Result<&'j [u8], WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    let bulk = put_job(out, id, job, shared)?;
    finish(out, bulk.len())?;
    Ok(bulk)
}

/// Puts `job` into `out` but for its bulk bytes (a task's request), which it returns to go right after.
fn put_job<'j>(out: &mut Vec<u8>, id: u64, job: &'j Job, shared: Placement<'_>) -> Result<&'j [u8], WireError> {
    out.push(JOB);
    out.extend_from_slice(&id.to_le_bytes());
    put_job_fields(out, job, shared)
}

/// Decodes a frame's payload (without the length prefix); SHARED audio is an error (see [`decode_with`]).
pub fn decode(payload: &[u8]) -> Result<Message, WireError> {
    decode_with(payload, &mut |_| Err(WireError::Malformed("shared audio without an arena".into())))
}

/// Decodes a frame's payload, SHARED audio as `resolve` reads it from the arena.
pub fn decode_with(
    payload: &[u8],
    resolve: &mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
) -> Result<Message, WireError> {
    let mut no_output = |_| Err(WireError::Malformed("output audio without output buffers".into()));
    decode_all(payload, resolve, &mut no_output)
}

/// Decodes a frame a worker sent, OUTPUT audio as `read` copies it out of that worker's output buffers.
pub fn decode_from_worker(
    payload: &[u8],
    read: &mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
) -> Result<Message, WireError> {
    let mut no_arena = |_| Err(WireError::Malformed("shared audio from a worker".into()));
    decode_all(payload, &mut no_arena, read)
}

fn decode_all(
    payload: &[u8],
    resolve: &mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
    read_output: &mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
) -> Result<Message, WireError> {
    let mut r = Cursor { data: payload, at: 0, resolve, read_output };
    let message = match r.u8()? {
        HELLO => Message::Hello { version: r.u32()?, layout: r.str()? },
        JOB => {
            let id = r.u64()?;
            Message::Job { id, job: r.job()? }
        }
        RESULT => {
            let id = r.u64()?;
            let result = match r.u8()? {
                OK_AUDIO => Ok(JobOutput::Audio(r.audio()?)),
                OK_DOTS => Ok(JobOutput::SpsaDots(r.f64s()?)),
                OK_GRADIENT => Ok(JobOutput::Gradient(r.f32s()?)),
                OK_BYTES => Ok(JobOutput::Bytes(r.bytes()?)),
                ERR => match (r.u8()?, r.str()?) {
                    (KIND_NON_FINITE, m) => Err(FailureKind::NonFinite(m)),
                    (KIND_TOO_LARGE, m) => Err(FailureKind::TooLarge(m)),
                    (_, m) => Err(FailureKind::Plugin(m)),
                },
                t => return Err(WireError::Malformed(format!("unknown result tag {t}"))),
            };
            Message::Result { id, result }
        }
        t => return Err(WireError::Malformed(format!("unknown message tag {t}"))),
    };
    if r.at != payload.len() {
        return Err(WireError::Malformed(format!("{} trailing bytes", payload.len() - r.at)));
    }
    Ok(message)
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    put_bytes(out, s.as_bytes())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), WireError> {
    room(out, 4 + b.len())?;
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
    Ok(())
}

// Audio is most of every frame: samples are copied as raw bytes, which is little-endian f32 on the targets
// afx supports (checked at compile time below).
#[cfg(not(target_endian = "little"))]
compile_error!("the worker protocol copies f32 samples as little-endian bytes");

fn put_samples(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(bytemuck::cast_slice(v));
}

pub(super) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) -> Result<(), WireError> {
    room(out, 4 + v.len() * 4)?;
    put_u32(out, v.len() as u32);
    put_samples(out, v);
    Ok(())
}

pub(super) fn put_audio(out: &mut Vec<u8>, a: &Arc<Audio>, shared: Placement<'_>) -> Result<(), WireError> {
    let Some(at) = shared(a) else { return put_inline_audio(out, a) };
    out.push(SHARED);
    out.extend_from_slice(&at.batch.to_le_bytes());
    out.extend_from_slice(&at.offset.to_le_bytes());
    put_u32(out, at.sample_rate);
    out.extend_from_slice(&at.channels.to_le_bytes());
    put_u32(out, at.frames);
    Ok(())
}

fn put_inline_audio(out: &mut Vec<u8>, a: &Audio) -> Result<(), WireError> {
    let samples = a.num_channels().saturating_mul(a.frames()).saturating_mul(4);
    room(out, 11 + samples)?;
    let channels = u16::try_from(a.num_channels())
        .map_err(|_| WireError::Malformed(format!("{} channels: the protocol allows 65535", a.num_channels())))?;
    out.push(INLINE);
    put_u32(out, a.sample_rate());
    out.extend_from_slice(&channels.to_le_bytes());
    put_u32(out, a.frames() as u32);
    out.reserve(samples);
    for c in a.channels() {
        put_samples(out, c);
    }
    Ok(())
}

pub(super) struct Cursor<'a, 'r> {
    data: &'a [u8],
    at: usize,
    resolve: &'r mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
    read_output: &'r mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
}

impl Cursor<'_, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| WireError::Malformed(format!("truncated at byte {}", self.at)))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(super) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub(super) fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(super) fn str(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?).map_err(|e| WireError::Malformed(e.to_string()))
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, WireError> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| WireError::Malformed("length overflow".into()))?)?;
        // The payload buffer has no alignment guarantee for f32: copy bytes into an f32 vector.
        let mut floats = vec![0.0f32; n];
        bytemuck::cast_slice_mut::<f32, u8>(&mut floats).copy_from_slice(bytes);
        Ok(floats)
    }

    pub(super) fn f32s(&mut self) -> Result<Vec<f32>, WireError> {
        let n = self.u32()? as usize;
        self.floats(n)
    }

    fn f64s(&mut self) -> Result<Vec<f64>, WireError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.checked_mul(8).ok_or_else(|| WireError::Malformed("length overflow".into()))?)?;
        let mut floats = vec![0.0f64; n];
        bytemuck::cast_slice_mut::<f64, u8>(&mut floats).copy_from_slice(bytes);
        Ok(floats)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    /// A result's audio: in the frame, or in the worker's output buffers.
    fn audio(&mut self) -> Result<Audio, WireError> {
        match self.u8()? {
            INLINE => self.inline_audio(),
            OUTPUT => {
                let at = OutputAudio {
                    buffer: self.u8()?,
                    sample_rate: self.u32()?,
                    channels: self.u16()?,
                    frames: self.u32()?,
                };
                (self.read_output)(at)
            }
            SHARED => Err(WireError::Malformed("shared audio in a result".into())),
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }

    fn inline_audio(&mut self) -> Result<Audio, WireError> {
        let rate = self.u32()?;
        let channels = self.u16()? as usize;
        let frames = self.u32()? as usize;
        let planar = (0..channels).map(|_| self.floats(frames)).collect::<Result<Vec<_>, _>>()?;
        Audio::new(rate, planar).map_err(|e| WireError::Malformed(e.to_string()))
    }

    /// A job's audio: in the frame, or in the arena.
    pub(super) fn shared_audio(&mut self) -> Result<Arc<Audio>, WireError> {
        match self.u8()? {
            INLINE => Ok(Arc::new(self.inline_audio()?)),
            SHARED => {
                let at = SharedAudio {
                    batch: self.u64()?,
                    offset: self.u64()?,
                    sample_rate: self.u32()?,
                    channels: self.u16()?,
                    frames: self.u32()?,
                };
                (self.resolve)(at)
            }
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }
}
